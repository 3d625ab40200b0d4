// Data through the real binary: server + client, `up`, the HTTP proxy, JSON logs, metrics, config
// file and environment precedence, TLS. curl is the application; the destination is a loopback origin.
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { curl, ensureBuilt, gkd, killAll, lines, runGkd, startOrigin, type Origin, testTmpDir } from '@gkd/test-support';

let origin: Origin;
let key = '';
const dir = testTmpDir('gkd-cli-proxy');

beforeAll(async () => {
  await ensureBuilt();
  origin = await startOrigin();
  key = (await runGkd(['keygen'])).stdout.trim();
}, 300_000);
afterEach(killAll);
afterAll(() => origin.close());

const blobUrl = (): string => `http://127.0.0.1:${origin.port}/blob`;

describe('gkd server + gkd client', () => {
  it('carries a download through SOCKS5 intact (sha256), logging tunnels on both sides (default TLS, the client given the link)', async () => {
    const listen = await getPort({ host: '127.0.0.1' });
    const socks = await getPort({ host: '127.0.0.1' });
    const server = gkd(['server', '--listen', `127.0.0.1:${listen}`, '--allow', `127.0.0.1:${origin.port}`], { env: { GKD_KEY: key } });
    await server.waitFor('stdout', new RegExp(`^gkd: server listening on 127\\.0\\.0\\.1:${listen} `, 'm'));
    const link = await runGkd(['link', '--listen', `127.0.0.1:${listen}`], { env: { GKD_KEY: key } });
    expect(link.code).toBe(0);
    const client = gkd(['client', '--tunnels', '4', '--socks', `127.0.0.1:${socks}`], { env: { GKD_LINK: link.stdout.trim() } });
    const ready = await client.ready();
    expect(ready).toEqual({ socksPort: socks, httpPort: undefined, tunnels: 4, server: `127.0.0.1:${listen}` });

    const r = await curl(['--socks5-hostname', `127.0.0.1:${socks}`, blobUrl()]);
    expect(r.code).toBe(0);
    expect(r.sha256).toBe(origin.blobSha);

    // With one worker process per core (the default) the server's lines carry `worker N: `.
    await server.waitFor('stderr', /info {2}(?:worker \d+: )?tunnel \d+ up \(session [0-9a-f]{8}, from 127\.0\.0\.1\)/, { count: 4 });
    expect(client.stderr.match(/info {2}tunnel \d up \(\d\/4\)/g)).toHaveLength(4);
    expect(client.stdout).toBe(`gkd: SOCKS5 proxy on 127.0.0.1:${socks} (server 127.0.0.1:${listen}, 4 tunnels up)\n`);
    expect(client.stdout).not.toContain('\r');
  });

  it('a client with the wrong key is refused: both sides say so once, and the client exits 2 (issue 16, finding 4)', async () => {
    const server = gkd(['server', '--plaintext', '--listen', '127.0.0.1:0'], { env: { GKD_KEY: key } });
    const [, at] = await server.waitFor('stdout', /server listening on (127\.0\.0\.1:\d+)/);
    const wrong = (await runGkd(['keygen'])).stdout.trim();
    const client = gkd(['client', '--plaintext', '--server', at!, '--tunnels', '8', '--socks', '127.0.0.1:0'], { env: { GKD_KEY: wrong } });
    expect(await client.exited).toEqual({ code: 2, signal: null });
    expect(client.stderr.match(/error the server rejected our key \(bad proof.*\); check the key \(GKD_KEY \/ --key, or the link\)\. Exiting\./g)).toHaveLength(
      1,
    );
    // No reconnect warnings (the --plaintext warning at start aside).
    expect(client.stderr.replace(/^.*warn {2}--plaintext: .*\n/m, '')).not.toMatch(/warn/);
    await server.waitFor('stderr', /warn {2}(?:worker \d+: )?refused a tunnel from 127\.0\.0\.1: .*proof/);
    // One handshake was tried, not one per tunnel (the other tunnels waited for it and never dialed).
    expect(server.stderr.match(/refused a tunnel/g)).toHaveLength(1);
  });
});

describe('gkd up', () => {
  it('is a working SOCKS5 proxy in one command (with --allow for a loopback destination)', async () => {
    const up = gkd(['up', '--socks', '127.0.0.1:0', '--tunnels', '3', '--allow', '127.0.0.1']);
    const ready = await up.ready();
    expect(ready.tunnels).toBe(3);
    expect(ready.server).toMatch(/^127\.0\.0\.1:\d+$/);
    const r = await curl(['--socks5-hostname', `127.0.0.1:${ready.socksPort}`, blobUrl()]);
    expect(r.code).toBe(0);
    expect(r.sha256).toBe(origin.blobSha);
  });

  it('keeps the default-deny policy: loopback is refused without --allow, with one log line and the hint', async () => {
    const up = gkd(['up', '--socks', '127.0.0.1:0', '--tunnels', '2']);
    const { socksPort } = await up.ready();
    const r = await curl(['--socks5-hostname', `127.0.0.1:${socksPort}`, blobUrl()]);
    expect(r.code).not.toBe(0);
    const [line] = await up.waitFor(
      'stderr',
      /warn {2}OPEN 127\.0\.0\.1:\d+ failed: NOT_ALLOWED \(.*loopback.*denied by default\); to allow it, pass --allow 127\.0\.0\.1:\d+/,
    );
    expect(line).toContain(`127.0.0.1:${origin.port}`);
    // Logged once (by the embedded server), not twice.
    expect(up.stderr.match(/NOT_ALLOWED/g)).toHaveLength(1);
  });

  it('--http serves an HTTP proxy too (curl -x, plain and CONNECT)', async () => {
    const up = gkd(['up', '--socks', '127.0.0.1:0', '--http', '127.0.0.1:0', '--tunnels', '2', '--allow', '127.0.0.1']);
    const { httpPort } = await up.ready();
    expect(httpPort).toBeGreaterThan(0);
    const plain = await curl(['-x', `http://127.0.0.1:${httpPort}`, blobUrl()]);
    expect(plain.code).toBe(0);
    expect(plain.sha256).toBe(origin.blobSha);
    const tunnel = await curl(['-p', '-x', `http://127.0.0.1:${httpPort}`, blobUrl()]);
    expect(tunnel.code).toBe(0);
    expect(tunnel.sha256).toBe(origin.blobSha);
  });

  it('--socks-user/--socks-pass require authentication on the SOCKS5 port and on the --http port', async () => {
    const up = gkd(['up', '--socks', '127.0.0.1:0', '--http', '127.0.0.1:0', '--tunnels', '1', '--allow', '127.0.0.1', '--socks-user', 'me'], {
      env: { GKD_SOCKS_PASS: 'secret' },
    });
    const { socksPort, httpPort } = await up.ready();
    const denied = await curl(['--socks5-hostname', `127.0.0.1:${socksPort}`, blobUrl()]);
    expect(denied.code).not.toBe(0);
    const ok = await curl(['--socks5-hostname', `127.0.0.1:${socksPort}`, '--proxy-user', 'me:secret', blobUrl()]);
    expect(ok.code).toBe(0);
    expect(ok.sha256).toBe(origin.blobSha);
    // The HTTP port is no back door: 407 for plain HTTP and CONNECT without the credentials.
    const plainDenied = await curl(['-x', `http://127.0.0.1:${httpPort}`, '-w', '%{http_code}', '-o', '/dev/null', blobUrl()]);
    expect(plainDenied.stdout).toBe('407');
    const connectDenied = await curl(['-p', '-x', `http://127.0.0.1:${httpPort}`, '-w', '%{http_connect}', '-o', '/dev/null', blobUrl()]);
    expect(connectDenied.stdout).toBe('407');
    for (const tunnel of [[], ['-p']]) {
      const r = await curl([...tunnel, '-x', `http://127.0.0.1:${httpPort}`, '--proxy-user', 'me:secret', blobUrl()]);
      expect(r.code).toBe(0);
      expect(r.sha256).toBe(origin.blobSha);
    }
  });
});

describe('precedence: flags > environment > config file > defaults', () => {
  it('applies each source over the next (seen in the ready line tunnel count)', async () => {
    const file = join(dir, 'up.json');
    writeFileSync(file, JSON.stringify({ tunnels: 2, socks: '127.0.0.1:0', 'log-level': 'warn' }));
    const tunnelsWith = async (args: string[], env: Record<string, string>): Promise<{ tunnels: number; stderr: string }> => {
      const up = gkd(['up', '--config', file, ...args], { env });
      const { tunnels } = await up.ready();
      up.kill();
      await up.exited;
      return { tunnels, stderr: up.stderr };
    };
    const fromFile = await tunnelsWith([], {});
    expect(fromFile.tunnels).toBe(2);
    expect(fromFile.stderr).not.toMatch(/ info /); // log-level warn from the file
    expect((await tunnelsWith([], { GKD_TUNNELS: '3' })).tunnels).toBe(3);
    const fromFlag = await tunnelsWith(['--tunnels', '4', '--log-level', 'info'], { GKD_TUNNELS: '3', GKD_LOG_LEVEL: 'error' });
    expect(fromFlag.tunnels).toBe(4);
    expect(fromFlag.stderr).toMatch(/ info /);
  });
});

describe('--log-format json', () => {
  it('writes one JSON object per stderr line, with the event fields', async () => {
    const up = gkd(['up', '--socks', '127.0.0.1:0', '--tunnels', '2', '--log-format', 'json', '--log-level', 'debug']);
    await up.ready();
    up.kill();
    expect((await up.exited).code).toBe(0);
    const records = lines(up.stderr).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(records.length).toBeGreaterThan(3);
    for (const r of records) {
      expect(r).toEqual(
        expect.objectContaining({ level: expect.stringMatching(/^(error|warn|info|debug)$/), message: expect.any(String), time: expect.any(String) }),
      );
    }
    expect(records.filter((r) => r.event === 'tunnel-up' && r.level === 'info')).toHaveLength(2);
    expect(records.some((r) => r.message === 'stopped')).toBe(true);
  });
});

describe('--metrics', () => {
  it('serves the named Prometheus metrics at /metrics after a transfer', async () => {
    const up = gkd(['up', '--socks', '127.0.0.1:0', '--tunnels', '3', '--metrics', '127.0.0.1:0', '--allow', `127.0.0.1:${origin.port}`]);
    const [, metricsAt] = await up.waitFor('stderr', /metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/);
    const { socksPort } = await up.ready();
    const ok = await curl(['--socks5-hostname', `127.0.0.1:${socksPort}`, blobUrl()]);
    expect(ok.sha256).toBe(origin.blobSha);
    const refusedPort = await getPort({ host: '127.0.0.1' }); // not allowed: refused by policy, never dialed
    await curl(['--socks5-hostname', `127.0.0.1:${socksPort}`, `http://127.0.0.1:${refusedPort}/`]);
    await up.waitFor('stderr', /OPEN 127\.0\.0\.1:\d+ failed: NOT_ALLOWED/);

    const res = await fetch(metricsAt!);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/plain/);
    const text = await res.text();
    const value = (series: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      if (!line) throw new Error(`no series ${series} in:\n${text}`);
      return Number(line.slice(series.length + 1));
    };
    for (const name of [
      'gkd_tunnel_bytes_total',
      'gkd_tunnel_frames_total',
      'gkd_tunnels_up',
      'gkd_streams_open',
      'gkd_tunnel_rtt_seconds',
      'gkd_resent_frames_total',
      'gkd_hol_late_frames_total',
      'gkd_reorder_depth',
      'gkd_open_failures_total',
      'gkd_peers_connected',
      'gkd_stream_bytes_total',
      'gkd_opens_total',
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    let wireIn = 0;
    for (let i = 0; i < 3; i++) wireIn += value(`gkd_tunnel_bytes_total{side="client",tunnel="${i}",direction="in"}`);
    expect(wireIn).toBeGreaterThan(origin.blob.length);
    expect(value('gkd_stream_bytes_total{side="client",direction="in"}')).toBeGreaterThan(origin.blob.length);
    expect(value('gkd_tunnels_up{side="client"}')).toBe(3);
    expect(value('gkd_tunnels_up{side="server"}')).toBe(3);
    expect(value('gkd_opens_total{side="server"}')).toBe(1);
    expect(value('gkd_open_failures_total{side="server",reason="NOT_ALLOWED"}')).toBe(1);
    expect(value('gkd_open_failures_total{side="client",reason="NOT_ALLOWED"}')).toBe(1);
    expect(value('gkd_peers_connected')).toBe(1);
    expect(value('gkd_resent_frames_total{side="client"}')).toBe(0);
    expect((await fetch(metricsAt!.replace('/metrics', '/'))).status).toBe(404);
  });
});

describe('TLS', () => {
  const haveOpenssl = (() => {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  if (!haveOpenssl) console.log('skipping the TLS test: openssl is not installed (it makes the test certificate)');

  it.skipIf(!haveOpenssl)('client pins the certificate fingerprint the server logs', async () => {
    const cert = join(dir, 'cert.pem');
    const certKey = join(dir, 'key.pem');
    if (!existsSync(cert)) {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:prime256v1',
          '-nodes',
          '-keyout',
          certKey,
          '-out',
          cert,
          '-days',
          '1',
          '-subj',
          '/CN=gkd-test',
        ],
        { stdio: 'ignore' },
      );
    }
    const server = gkd(['server', '--listen', '127.0.0.1:0', '--tls-cert', cert, '--tls-key', certKey, '--allow', '127.0.0.1'], { env: { GKD_KEY: key } });
    const [, at] = await server.waitFor('stdout', /server listening on (127\.0\.0\.1:\d+) \(TLS, one key\)/);
    const [, fingerprint] = await server.waitFor('stderr', /TLS certificate SHA-256 fingerprint ([0-9A-F:]{95})/);
    const client = gkd(['client', '--server', at!, '--tunnels', '2', '--socks', '127.0.0.1:0', '--tls-fingerprint', fingerprint!], { env: { GKD_KEY: key } });
    const { socksPort } = await client.ready();
    const r = await curl(['--socks5-hostname', `127.0.0.1:${socksPort}`, blobUrl()]);
    expect(r.sha256).toBe(origin.blobSha);

    const wrongPin = gkd(['client', '--server', at!, '--tunnels', '1', '--socks', '127.0.0.1:0', '--tls-fingerprint', 'AB'.repeat(32)], {
      env: { GKD_KEY: key },
    });
    await wrongPin.waitFor('stderr', /fingerprint .* does not match the pinned one/);
  });
});
