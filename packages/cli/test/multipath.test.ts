// `gkd client --via` through the real binary: two paths on loopback aliases (127.0.0.2, 127.0.0.3)
// behind a relay that tells them apart by source address; one path is cut and restored. The logs,
// the metrics and a download through SOCKS5 show each path.
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Server } from '@gkd/transport';
import { PathRelay, canBind, curl, ensureBuilt, gkd, killAll, runGkd, startOrigin, until, type Origin } from '@gkd/test-support';

const A = '127.0.0.2';
const B = '127.0.0.3';
const aliases = (await canBind(A)) && (await canBind(B));
if (!aliases) console.log(`gkd client --via tests skipped: this machine cannot bind ${A} and ${B} (Linux loopback can without setup)`);

let origin: Origin;
let key = '';
let relay: PathRelay | undefined;

beforeAll(async () => {
  if (!aliases) return;
  await ensureBuilt();
  origin = await startOrigin();
  key = (await runGkd(['keygen'])).stdout.trim();
}, 300_000);
afterEach(async () => {
  await killAll();
  await relay?.close();
  relay = undefined;
});
afterAll(() => origin?.close());

describe.skipIf(!aliases)('gkd client --via', () => {
  it('bonds two paths: tunnels, logs and metrics per path; a cut path is logged down and back', async () => {
    const server = gkd(['server', '--plaintext', '--listen', '127.0.0.1:0', '--allow', `127.0.0.1:${origin.port}`], { env: { GKD_KEY: key } });
    const [, at] = await server.waitFor('stdout', /server listening on 127\.0\.0\.1:(\d+)/);
    relay = await PathRelay.start({ host: '127.0.0.1', port: Number(at) });
    const metricsPort = await getPort({ host: '127.0.0.1' });
    const client = gkd(
      [
        'client',
        '--plaintext',
        '--server',
        `127.0.0.1:${relay.port}`,
        '--via',
        `${A}:2`,
        '--via',
        `${B}:3`,
        '--socks',
        '127.0.0.1:0',
        '--metrics',
        `127.0.0.1:${metricsPort}`,
      ],
      { env: { GKD_KEY: key } },
    );
    const ready = await client.ready();
    await client.waitFor('stderr', /tunnel \d on path 127\.0\.0\.\d up \(5\/5\)/);
    expect(ready.tunnels).toBe(5);
    expect(client.stderr).toMatch(/connecting 5 tunnels to 127\.0\.0\.1:\d+ on paths 127\.0\.0\.2 \(2\), 127\.0\.0\.3 \(3\)/);
    expect(client.stderr.match(/tunnel [01] on path 127\.0\.0\.2 up/g)).toHaveLength(2);
    expect(client.stderr.match(/tunnel [234] on path 127\.0\.0\.3 up/g)).toHaveLength(3);
    expect(relay.accepted.get(A)).toBe(2);
    expect(relay.accepted.get(B)).toBe(3);

    const r = await curl(['--socks5-hostname', `127.0.0.1:${ready.socksPort}`, `http://127.0.0.1:${origin.port}/blob`]);
    expect(r.sha256).toBe(origin.blobSha);

    const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const value = (text: string, series: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      if (!line) throw new Error(`no series ${series} in:\n${text}`);
      return Number(line.slice(series.length + 1));
    };
    // A path's RTT is known once one of its tunnels had a PONG (keepalive PINGs go once a second).
    await until(async () => (await metrics()).includes(`gkd_path_rtt_seconds{path="${A}"}`), 10_000, `path ${A}'s RTT in the metrics`, 100);
    let text = await metrics();
    expect(value(text, `gkd_path_tunnels_up{path="${A}"}`)).toBe(2);
    expect(value(text, `gkd_path_tunnels_up{path="${B}"}`)).toBe(3);
    expect(value(text, `gkd_path_tunnels_configured{path="${B}"}`)).toBe(3);
    expect(value(text, `gkd_path_rtt_seconds{path="${A}"}`)).toBeGreaterThan(0);
    // The relay counted what it passed to each source address: the metrics' per-path bytes agree with it.
    const wireIn = value(text, `gkd_path_bytes_total{path="${A}",direction="in"}`) + value(text, `gkd_path_bytes_total{path="${B}",direction="in"}`);
    expect(wireIn).toBeGreaterThan(origin.blob.length);
    for (const p of [A, B]) {
      const relayed = relay.bytesDown.get(p) ?? 0;
      const counted = value(text, `gkd_path_bytes_total{path="${p}",direction="in"}`);
      expect(counted, `path ${p}: metrics ${counted}, relay ${relayed}`).toBeLessThanOrEqual(relayed);
      expect(counted, `path ${p}: metrics ${counted}, relay ${relayed}`).toBeGreaterThan(relayed * 0.9);
    }

    relay.set(B, 'reset');
    await client.waitFor(
      'stderr',
      /warn {2}path 127\.0\.0\.3 down: none of its 3 tunnels is up.*connections carry on over 127\.0\.0\.2; it rejoins when it answers again/,
    );
    text = await metrics();
    expect(value(text, `gkd_path_tunnels_up{path="${B}"}`)).toBe(0);
    expect(value(text, `gkd_path_tunnels_up{path="${A}"}`)).toBe(2);
    const during = await curl(['--socks5-hostname', `127.0.0.1:${ready.socksPort}`, `http://127.0.0.1:${origin.port}/blob`]);
    expect(during.sha256).toBe(origin.blobSha);

    relay.set(B, 'open');
    await client.waitFor('stderr', /info {2}path 127\.0\.0\.3 back after \d+\.\d s/);
    // Its three tunnels up again: three more lines than at the start.
    await client.waitFor('stderr', /tunnel [234] on path 127\.0\.0\.3 up/, { count: 6, timeoutMs: 20_000 });
    expect(value(await metrics(), `gkd_path_tunnels_up{path="${B}"}`)).toBe(3);
  }, 60_000);

  it('--tunnels auto on two paths: one controller per path, the server cap shared, each change logged with its path', async () => {
    // A library server announcing a per-session cap of 6: the two paths start at 4 each and must share it.
    const server = await Server.bind('127.0.0.1:0', { key, maxTunnelsPerSession: 6 });
    relay = await PathRelay.start({ host: '127.0.0.1', port: server.address().port });
    const metricsPort = await getPort({ host: '127.0.0.1' });
    try {
      const client = gkd(
        [
          'client',
          '--plaintext',
          '--server',
          `127.0.0.1:${relay.port}`,
          '--via',
          A,
          '--via',
          B,
          '--socks',
          '127.0.0.1:0',
          '--metrics',
          `127.0.0.1:${metricsPort}`,
        ],
        { env: { GKD_KEY: key } },
      );
      await client.ready();
      expect(client.stderr).toMatch(/connecting 8 tunnels to 127\.0\.0\.1:\d+ on paths 127\.0\.0\.2 \(auto from 4: 2–32\), 127\.0\.0\.3 \(auto from 4: 2–32\)/);
      await client.waitFor('stderr', /info {2}path 127\.0\.0\.2 tunnels 4 → 3: the server allows 6 tunnels per session/);
      await client.waitFor('stderr', /info {2}path 127\.0\.0\.3 tunnels 4 → 3: the server allows 6 tunnels per session/);
      const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const value = (text: string, series: string): number | undefined => {
        const line = text.split('\n').find((l) => l.startsWith(`${series} `));
        return line === undefined ? undefined : Number(line.slice(series.length + 1));
      };
      await until(
        async () => {
          const text = await metrics();
          return value(text, `gkd_path_tunnels_up{path="${A}"}`) === 3 && value(text, `gkd_path_tunnels_up{path="${B}"}`) === 3;
        },
        10_000,
        'three tunnels up on each path',
        100,
      );
      const text = await metrics();
      expect(value(text, `gkd_path_tunnels_configured{path="${A}"}`)).toBe(3);
      expect(value(text, `gkd_path_tunnels_configured{path="${B}"}`)).toBe(3);
      expect(value(text, 'gkd_tunnels_configured')).toBe(6);
      expect(value(text, 'gkd_tunnels_ceiling')).toBe(6);
    } finally {
      await killAll();
      await server.close();
    }
  }, 60_000);

  it('refuses a --via of an address family no --server address has, naming the flag', async () => {
    const r = await runGkd(['client', '--plaintext', '--server', '127.0.0.1:9', '--via', '[::1]:2'], { env: { GKD_KEY: key } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--via: ::1 is an IPv6 address, and no server address is of that family \(127\.0\.0\.1\)/);
    const bad = await runGkd(['client', '--plaintext', '--server', '127.0.0.1:9', '--via', 'wlan0:x'], { env: { GKD_KEY: key } });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--via wlan0:x: the tunnel count in "wlan0:x" must be a number/);
  });
});
