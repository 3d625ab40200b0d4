// What a user gets from `npm i -g` of the packed packages (issue 21): every package is packed the way
// `pnpm release:pack` does it, the tarballs are installed with npm into an empty prefix, and the
// installed `gkd` (not the workspace's) is driven with curl. Nothing here may depend on the workspace:
// no pnpm patch, no source alias, no hoisted dependency. Needs npm and the registry for the tarballs'
// third-party dependencies (about 5 s with a warm npm cache).
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, curl, ensureBuilt, gkd, killAll, runGkd, startWeb, type GkdProcess, type Web } from '@gkd/test-support';

const run = promisify(execFile);

async function hasIPv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
}

/** Our environment without pnpm's npm_config_* / npm_package_* (set by `pnpm test`), so npm uses its own defaults. */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_(config|package|lifecycle)_/i.test(k)) env[k] = v;
  return env;
}

const dir = mkdtempSync(join(tmpdir(), 'gkd-packed-'));
const prefix = join(dir, 'prefix');
const installedBin = join(prefix, 'lib/node_modules/@gkd/cli/bin/gkd.js');
let web4: Web;
let web6: Web | undefined;
let up: GkdProcess;
let socks = '';
let httpProxy = '';

beforeAll(async () => {
  await ensureBuilt(); // the workspace's dist, fresh, is what gets packed
  const out = join(dir, 'tarballs');
  await run(process.execPath, [join(ROOT, 'scripts/release/pack.mjs'), '--no-build', '--out', out], { cwd: ROOT });
  const tarballs = readdirSync(out)
    .filter((f) => f.endsWith('.tgz'))
    .map((f) => join(out, f));
  expect(tarballs.map((t) => t.slice(out.length + 1)).sort()).toEqual(
    ['cli', 'protocol', 'server', 'socks-client', 'transport'].map((p) => `gkd-${p}-0.1.0.tgz`),
  );
  // As the README has it, `npm i -g ./release/*.tgz`: relative paths need the ./ (npm reads `release/x.tgz` as a GitHub repo).
  const relative = tarballs.map((t) => `./tarballs/${t.slice(out.length + 1)}`);
  await run('npm', ['i', '-g', '--prefix', prefix, '--no-audit', '--no-fund', ...relative], { cwd: dir, env: npmEnv(), maxBuffer: 16 << 20 });

  web4 = await startWeb(1024 * 1024);
  if (await hasIPv6Loopback()) web6 = await startWeb(1024 * 1024, '::1');
  up = gkd(['up', '--socks', '127.0.0.1:0', '--http', '127.0.0.1:0', '--tunnels', '4', '--allow', '127.0.0.1,::1', '--quiet'], { bin: installedBin, cwd: dir });
  const ready = await up.ready();
  socks = `127.0.0.1:${ready.socksPort}`;
  httpProxy = `http://127.0.0.1:${ready.httpPort}`;
}, 300_000);

afterAll(async () => {
  await killAll();
  await web4?.close();
  await web6?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('gkd installed with npm from the packed tarballs', () => {
  it('is the installed copy, with no workspace link and no socksv5 from the registry', () => {
    expect(existsSync(join(prefix, 'bin/gkd'))).toBe(true);
    const socksClient = join(prefix, 'lib/node_modules/@gkd/socks-client');
    expect(existsSync(join(socksClient, 'vendor/socksv5/lib/server.parser.js'))).toBe(true);
    expect(existsSync(join(socksClient, 'node_modules/socksv5'))).toBe(false);
    for (const name of ['protocol', 'transport', 'server', 'socks-client', 'cli']) {
      for (const file of ['README.md', 'LICENSE', 'package.json'])
        expect(existsSync(join(prefix, 'lib/node_modules/@gkd', name, file)), `${name}/${file}`).toBe(true);
    }
    expect(up.stderr).toMatch(/tunnel 3 up \(4\/4\)/);
  });

  it('gkd --version names the version and the commit the build came from', async () => {
    const installed = await runGkd(['--version'], { bin: installedBin, cwd: dir });
    expect(installed.code).toBe(0);
    const m = /^gkd 0\.1\.0 \(commit ([0-9a-f]{12})(, with uncommitted changes)?\)\n$/.exec(installed.stdout);
    expect(m, installed.stdout).not.toBeNull();
    // The commit is this repository's HEAD or one of its ancestors (the dist may predate the last commit).
    execFileSync('git', ['merge-base', '--is-ancestor', m![1]!, 'HEAD'], { cwd: ROOT });
    expect(installed.stdout).toBe((await runGkd(['--version'])).stdout);
  });

  it('curl --socks5 to an IPv4 destination', async () => {
    const r = await curl(['--socks5', socks, `http://127.0.0.1:${web4.port}/file`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.sha256).toBe(web4.fileSha256);
  });

  it('curl --socks5 to an IPv6 destination, [::1]', async (ctx) => {
    if (!web6) {
      console.log('skipped: this machine has no IPv6 loopback (::1)');
      ctx.skip();
    }
    const r = await curl(['--socks5', socks, `http://[::1]:${web6!.port}/file`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.sha256).toBe(web6!.fileSha256);
  });

  it('curl --socks5-hostname to a domain name, resolved by the server', async () => {
    const r = await curl(['--socks5-hostname', socks, `http://localhost:${web4.port}/file`]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.sha256).toBe(web4.fileSha256);
  });

  it('a refused destination answers REP 5, a denied one REP 2 (full replies, as curl reports them)', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const refused = await curl(['--socks5', socks, `http://127.0.0.1:${closedPort}/`]);
    expect(refused.code).toBe(97);
    expect(refused.stderr).toMatch(/SOCKS5.*\(5\)/);
    const denied = await curl(['--socks5', socks, 'http://10.255.255.1:80/']);
    expect(denied.code).toBe(97);
    expect(denied.stderr).toMatch(/SOCKS5.*\(2\)/);
  });

  it('the HTTP proxy port: plain HTTP and CONNECT', async () => {
    const plain = await curl(['-x', httpProxy, `http://127.0.0.1:${web4.port}/file`]);
    expect(plain.code).toBe(0);
    expect(plain.sha256).toBe(web4.fileSha256);
    const tunnelled = await curl(['-p', '-x', httpProxy, `http://127.0.0.1:${web4.port}/file`]);
    expect(tunnelled.code).toBe(0);
    expect(tunnelled.sha256).toBe(web4.fileSha256);
  });
});
