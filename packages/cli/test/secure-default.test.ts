// Secure by default, through the real binary: a default `gkd server` serves TLS with a certificate
// it made and keeps; a client given the link pins it. A wiretap finds none of the payload; another
// certificate (a man in the middle) and a plaintext server are refused before any stream opens.
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { recordingRelay, type RecordingRelay, testTmpDir } from '@gkd/test-support';
import { parseLink } from '../src/link.js';
import { curl, ensureBuilt, gkd, killAll, runGkd, startOrigin, type GkdProcess, type Origin } from '@gkd/test-support';

let origin: Origin;
const relays: RecordingRelay[] = [];
const base = testTmpDir('gkd-secure');
let dirs = 0;
/** A fresh state directory (each server its own certificate and key). */
const stateDir = (): string => join(base, `state-${dirs++}`);

beforeAll(async () => {
  await ensureBuilt();
  origin = await startOrigin();
}, 300_000);
afterEach(async () => {
  await killAll();
  await Promise.all(relays.splice(0).map((r) => r.close()));
});
afterAll(() => origin.close());

const blobUrl = (): string => `http://127.0.0.1:${origin.port}/blob`;

/** Start `gkd server` on a free loopback port; resolves with its port once it listens. */
async function server(state: string, extra: string[] = []): Promise<{ proc: GkdProcess; port: number }> {
  const proc = gkd(['server', '--listen', '127.0.0.1:0', '--allow', `127.0.0.1:${origin.port}`, '--log-level', 'debug', ...extra], {
    env: { GKD_STATE_DIR: state },
  });
  const [, port] = await proc.waitFor('stdout', /^gkd: server listening on 127\.0\.0\.1:(\d+)/m);
  return { proc, port: Number(port) };
}

/** `gkd link` for a server's state directory and port. */
async function link(state: string, port: number, extra: string[] = []): Promise<string> {
  const r = await runGkd(['link', '--listen', `127.0.0.1:${port}`, ...extra], { env: { GKD_STATE_DIR: state } });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return r.stdout.trim();
}

const viaPort = (text: string, port: number): string => text.replace(/:\d+\?/, `:${port}?`);

/** How many of 64 evenly spaced 32-byte slices of `payload` occur in one of the `captures`. */
function slicesFound(payload: Buffer, captures: Buffer[]): number {
  let found = 0;
  for (let i = 0; i < 64; i++) {
    const at = Math.floor((i * (payload.length - 32)) / 63);
    const needle = payload.subarray(at, at + 32);
    if (captures.some((c) => c.includes(needle))) found++;
  }
  return found;
}

/**
 * Default server, a client given the link through a recording relay, one download and one request
 * across; returns what the wiretap saw each way (one Buffer per tunnel).
 */
async function downloadThroughWiretap(plaintext: boolean): Promise<{ up: Buffer[]; down: Buffer[]; key: string }> {
  const state = stateDir();
  const { port } = await server(state, plaintext ? ['--plaintext'] : []);
  const relay = await recordingRelay(port);
  relays.push(relay);
  const text = await link(state, port, plaintext ? ['--plaintext'] : []);
  const socks = await getPort({ host: '127.0.0.1' });
  const client = gkd(['client', '--tunnels', '2', '--socks', `127.0.0.1:${socks}`, ...(plaintext ? ['--plaintext'] : [])], {
    env: { GKD_LINK: viaPort(text, relay.port) },
  });
  await client.ready();
  const r = await curl(['--socks5-hostname', `127.0.0.1:${socks}`, blobUrl()]);
  expect(r.code).toBe(0);
  expect(r.sha256).toBe(origin.blobSha);
  client.kill();
  await client.exited;
  return {
    up: relay.fromClient.map((c) => Buffer.concat(c)),
    down: relay.fromServer.map((c) => Buffer.concat(c)),
    key: parseLink('link', text).key,
  };
}

describe('the wire', () => {
  it('control: with --plaintext on both ends the wiretap sees the payload, the request and nothing of the key', async () => {
    const { up, down, key } = await downloadThroughWiretap(true);
    expect(slicesFound(origin.blob, down)).toBeGreaterThan(48); // some slices straddle frame headers
    expect(up.some((c) => c.includes('GET /blob HTTP/1.1'))).toBe(true);
    expect([...up, ...down].some((c) => c.includes(key) || c.includes(Buffer.from(key, 'base64url')))).toBe(false);
  });

  it('by default (TLS, pinned from the link) the wiretap finds none of the payload, the request or the key', async () => {
    const { up, down, key } = await downloadThroughWiretap(false);
    expect(down.reduce((n, c) => n + c.length, 0)).toBeGreaterThan(origin.blob.length); // it did carry the download
    expect(slicesFound(origin.blob, down)).toBe(0);
    expect(slicesFound(origin.blob, up)).toBe(0);
    expect(up.some((c) => c.includes('GET /blob'))).toBe(false);
    expect([...up, ...down].some((c) => c.includes(key) || c.includes(Buffer.from(key, 'base64url')))).toBe(false);
  });
});

describe('refusals, before any stream', () => {
  it('a man in the middle with another certificate: the client names both fingerprints and opens nothing', async () => {
    const real = await server(stateDir());
    const [, realFp] = await real.proc.waitFor('stderr', /fingerprint ([0-9A-F:]{95})/);
    const mitmState = stateDir();
    const mitm = await server(mitmState);
    const [, mitmFp] = await mitm.proc.waitFor('stderr', /fingerprint ([0-9A-F:]{95})/);
    expect(mitmFp).not.toBe(realFp);
    // The MITM even holds the same key: only the certificate gives it away.
    writeFileSync(join(mitmState, 'key'), readFileSync(join(base, 'state-' + (dirs - 2), 'key')));
    const realLink = await link(join(base, 'state-' + (dirs - 2)), real.port);
    const socks = await getPort({ host: '127.0.0.1' });
    const client = gkd(['client', '--tunnels', '2', '--socks', `127.0.0.1:${socks}`], { env: { GKD_LINK: viaPort(realLink, mitm.port) } });
    await client.waitFor(
      'stderr',
      new RegExp(`error cannot trust the server: server certificate fingerprint ${mitmFp} does not match the pinned one ${realFp}`),
    );
    // No tunnel came up, so no stream could open (a SOCKS request would get a failure after the bounded wait).
    expect(client.stderr).not.toMatch(/tunnel \d+ up/);
    expect(client.stdout).not.toMatch(/tunnels? up/);
    expect(mitm.proc.stderr).not.toMatch(/new session|tunnel \d+ up/);
  });

  it('a plaintext server: a default client refuses it, saying --plaintext, and opens nothing', async () => {
    const tlsState = stateDir();
    const tlsServer = await server(tlsState);
    const pinned = await link(tlsState, tlsServer.port);
    const plain = await server(stateDir(), ['--plaintext']);
    expect(plain.proc.stdout).toMatch(/\(plain TCP, one key\)/);
    await plain.proc.waitFor('stderr', /warn {2}--plaintext: the tunnels are NOT encrypted/);
    const socks = await getPort({ host: '127.0.0.1' });
    const client = gkd(['client', '--tunnels', '1', '--socks', `127.0.0.1:${socks}`], { env: { GKD_LINK: viaPort(pinned, plain.port) } });
    await client.waitFor('stderr', /error cannot trust the server: 127\.0\.0\.1:\d+ did not answer TLS \(.*\): is the server running with --plaintext\?/);
    expect(client.stdout).not.toMatch(/tunnels? up/);
    expect(plain.proc.stderr).not.toMatch(/new session|tunnel \d+ up/);
  });

  it('a --plaintext client facing a TLS server: after the handshake timeout it says to drop --plaintext', async () => {
    const state = stateDir();
    const s = await server(state);
    const key = readFileSync(join(state, 'key'), 'utf8').trim();
    const client = gkd(['client', '--plaintext', '--server', `127.0.0.1:${s.port}`, '--tunnels', '1', '--socks', '127.0.0.1:0'], { env: { GKD_KEY: key } });
    await client.waitFor('stderr', /error no handshake from 127\.0\.0\.1:\d+ over plain TCP: a server that runs TLS .* drop --plaintext/, {
      timeoutMs: 30_000,
    });
    expect(s.proc.stderr).not.toMatch(/new session|tunnel \d+ up/);
  });
});

describe('state directory', () => {
  it('a restart reuses the certificate and the key (same fingerprint, same link); files 0600, directory 0700; no secret in the logs', async () => {
    const state = stateDir();
    const first = await server(state);
    const [, fp1] = await first.proc.waitFor('stderr', /fingerprint ([0-9A-F:]{95})/);
    expect(first.proc.stderr).toMatch(/made a new key in .*\/key/);
    expect(first.proc.stderr).toMatch(/made a self-signed TLS certificate in .*tls-cert\.pem/);
    const link1 = await link(state, first.port);
    first.proc.kill();
    expect((await first.proc.exited).code).toBe(0);

    const second = await server(state, ['--listen', `127.0.0.1:${first.port}`]);
    const [, fp2] = await second.proc.waitFor('stderr', /fingerprint ([0-9A-F:]{95})/);
    expect(fp2).toBe(fp1);
    expect(second.proc.stderr).toMatch(/using the key in .*\/key/);
    expect(second.proc.stderr).toMatch(/using the TLS certificate in .*tls-cert\.pem/);
    expect(await link(state, second.port)).toBe(link1);
    expect(parseLink('link', link1).tls).toEqual({ fingerprint: fp1!.replace(/:/g, '') });

    expect(statSync(state).mode & 0o777).toBe(0o700);
    for (const f of ['key', 'tls-cert.pem', 'tls-key.pem']) expect(statSync(join(state, f)).mode & 0o777).toBe(0o600);
    const key = parseLink('link', link1).key;
    expect(readFileSync(join(state, 'key'), 'utf8').trim()).toBe(key);
    for (const out of [first.proc.stderr, second.proc.stderr, second.proc.stdout]) {
      expect(out).not.toContain(key);
      expect(out).not.toContain('gkd://');
    }
    // stdout is a pipe here: the server says how to get the link instead of printing the key.
    expect(second.proc.stdout).toMatch(/connection link: run `gkd link --host NAME --listen 127\.0\.0\.1:\d+`/);
  });

  it('gkd link before any server start says to start the server first (exit 2)', async () => {
    const r = await runGkd(['link', '--host', 'vps.example.com'], { env: { GKD_STATE_DIR: stateDir() } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no key .* in .*: start `gkd server` once first/);
    expect(r.stdout).toBe('');
  });

  it('--users: one link per user; --user picks one; --host names the server', async () => {
    const keys = { alice: (await runGkd(['keygen'])).stdout.trim(), bob: (await runGkd(['keygen'])).stdout.trim() };
    const users = join(base, 'users.json');
    writeFileSync(users, JSON.stringify(keys));
    const state = stateDir();
    const s = await server(state, ['--users', users]);
    const r = await runGkd(['link', '--users', users, '--host', 'vps.example.com', '--listen', `0.0.0.0:${s.port}`], { env: { GKD_STATE_DIR: state } });
    expect(r.code).toBe(0);
    const parsed = r.stdout
      .trim()
      .split('\n')
      .map((l) => parseLink('link', l));
    expect(parsed.map((l) => [l.user, l.key, l.host, l.port])).toEqual([
      ['alice', keys.alice, 'vps.example.com', s.port],
      ['bob', keys.bob, 'vps.example.com', s.port],
    ]);
    const bob = await runGkd(['link', '--users', users, '--user', 'bob', '--host', 'vps.example.com', '--listen', `0.0.0.0:${s.port}`], {
      env: { GKD_STATE_DIR: state },
    });
    expect(bob.stdout.trim().split('\n')).toHaveLength(1);
    expect(parseLink('link', bob.stdout).user).toBe('bob');
    // bob's link works against the server.
    const socks = await getPort({ host: '127.0.0.1' });
    const client = gkd(['client', '--tunnels', '1', '--socks', `127.0.0.1:${socks}`], {
      env: { GKD_LINK: bob.stdout.trim().replace('vps.example.com', '127.0.0.1') },
    });
    await client.ready();
    const got = await curl(['--socks5-hostname', `127.0.0.1:${socks}`, blobUrl()]);
    expect(got.sha256).toBe(origin.blobSha);
  });

  it('a link in the config file works, without a warning', async () => {
    const state = stateDir();
    const s = await server(state);
    const config = join(base, 'client.json');
    writeFileSync(config, JSON.stringify({ link: await link(state, s.port), tunnels: 1, socks: '127.0.0.1:0' }), { mode: 0o600 });
    const client = gkd(['client', '--config', config]);
    await client.ready();
    expect(client.stderr).not.toMatch(/warn/);
  });

  it('a link on the command line works and warns like --key does', async () => {
    const state = stateDir();
    const s = await server(state);
    const text = await link(state, s.port);
    const client = gkd(['client', text, '--tunnels', '1', '--socks', '127.0.0.1:0']);
    await client.ready();
    expect(client.stderr).toMatch(/warn {2}the link \(which holds the key\) was given on the command line/);
    expect(client.stderr).not.toContain(parseLink('link', text).key);
  });
});
