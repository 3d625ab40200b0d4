// deploy/: the systemd units and their environment files (issue 21). `systemd-analyze verify` and
// `security --offline` check the units where systemd-analyze exists (.ci/run installs it); the
// environment examples are fed to the real gkd binary.
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { flagsFor, envName } from '../packages/cli/src/flags.js';
import { ROOT, ensureBuilt, gkd, killAll, runGkd } from '@gkd/test-support';

const run = promisify(execFile);
const DEPLOY = join(ROOT, 'deploy');
const dir = mkdtempSync(join(tmpdir(), 'gkd-deploy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function systemdAnalyze(): boolean {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** KEY=value lines of an EnvironmentFile; `commented` also takes `#GKD_X=` lines (documented options). */
function envFile(name: string, commented = false): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(join(DEPLOY, name), 'utf8').split('\n')) {
    const m = (commented ? /^#?(GKD_[A-Z_]+)=(.*)$/ : /^(GKD_[A-Z_]+)=(.*)$/).exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

describe.each([
  ['gkd-server.service', 'server', '/etc/gkd/server.env'],
  ['gkd-client.service', 'client', '/etc/gkd/client.env'],
] as const)('deploy/%s', (unit, command, envPath) => {
  const text = readFileSync(join(DEPLOY, unit), 'utf8');

  it('runs `gkd ' + command + '` as a throwaway user, hardened, with the key only in a root-only environment file', () => {
    expect(text).toMatch(new RegExp(`^ExecStart=/usr/local/bin/gkd ${command}$`, 'm')); // no --key: it would show in ps
    expect(text).toMatch(new RegExp(`^EnvironmentFile=${envPath}$`, 'm'));
    for (const line of ['DynamicUser=yes', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'Restart=on-failure', 'CapabilityBoundingSet=']) {
      expect(text).toMatch(new RegExp(`^${line}$`, 'm'));
    }
    expect(text).not.toMatch(/^MemoryDenyWriteExecute=yes/m); // would kill Node's JIT
  });

  it('passes systemd-analyze verify with no warning, and its offline security exposure is at most 2.5', async (ctx) => {
    if (!systemdAnalyze()) {
      console.log(`skipped: systemd-analyze is not installed (Debian: apt-get install systemd); ${unit} not verified`);
      ctx.skip();
    }
    // verify insists that ExecStart's program exists: point it at a stand-in, the rest is the file as shipped.
    const stub = join(dir, 'gkd');
    writeFileSync(stub, '#!/bin/sh\nexit 0\n');
    chmodSync(stub, 0o755);
    const copy = join(dir, unit);
    writeFileSync(copy, text.replaceAll('/usr/local/bin/gkd', stub));
    const verify = await run('systemd-analyze', ['verify', copy]).catch((err: { stdout: string; stderr: string; code: number }) => err);
    expect(`${verify.stdout}${verify.stderr}`).toBe('');
    const security = await run('systemd-analyze', ['security', '--offline=yes', '--threshold=25', copy]).catch((err: { stdout: string; stderr: string }) => ({
      ...err,
      failed: true,
    }));
    expect('failed' in security ? security.stdout + security.stderr : '').toBe('');
    expect(security.stdout).toMatch(/Overall exposure level for .*: [0-2]\.\d/);
  });
});

describe('deploy/*.env.example', () => {
  beforeAll(async () => {
    await ensureBuilt();
  }, 300_000);
  afterEach(killAll);

  it.each([
    ['server.env.example', 'server'],
    ['client.env.example', 'client'],
  ] as const)('%s names only flags of gkd %s', (file, command) => {
    const known = new Set(flagsFor(command).map((f) => envName(f.name)));
    const named = Object.keys(envFile(file, true));
    expect(named.length).toBeGreaterThan(3);
    for (const name of named) expect(known.has(name), name).toBe(true);
  });

  it('start gkd server and gkd client (a fresh state directory, free ports, the link from gkd link): the client reaches the server over TLS', async () => {
    const state = mkdtempSync(join(tmpdir(), 'gkd-deploy-state-'));
    try {
      const server = gkd(['server'], { env: { ...envFile('server.env.example'), GKD_STATE_DIR: state, GKD_LISTEN: '127.0.0.1:0' } });
      const [, at] = await server.waitFor('stdout', /server listening on (127\.0\.0\.1:(\d+)) \(TLS/);
      const link = (await runGkd(['link', '--host', '127.0.0.1', '--listen', at!], { env: { GKD_STATE_DIR: state } })).stdout.trim();
      expect(link).toMatch(/^gkd:\/\/127\.0\.0\.1:\d+\?v=1&key=.+&fp=[0-9A-Fa-f]{64}$/);
      const client = gkd(['client'], { env: { ...envFile('client.env.example'), GKD_LINK: link, GKD_SOCKS: '127.0.0.1:0' } });
      const ready = await client.ready();
      expect(ready.tunnels).toBe(Number(envFile('client.env.example').GKD_TUNNELS));
      expect(server.stderr).toMatch(/^\{.*"level":"info"/m); // GKD_LOG_FORMAT=json took effect
    } finally {
      rmSync(state, { recursive: true, force: true });
    }
  });
});
