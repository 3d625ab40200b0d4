// Adaptive tunnel counts per path (tunnels: 'auto' with several paths), end to end on the loopback
// aliases 127.0.0.2 and 127.0.0.3 behind a relay that tells the paths apart by source address.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, Server, type ClientOptions, type TunnelsEvent } from '../src/index.js';
import { PathRelay, canBind, echoRandom, until } from '@gkd/test-support';

const key = randomBytes(32);
const A = '127.0.0.2';
const B = '127.0.0.3';
const aliases = (await canBind(A)) && (await canBind(B));
if (!aliases)
  console.log(
    `multipath auto tests skipped: this machine cannot bind ${A} and ${B} (Linux loopback can without setup; elsewhere add them as loopback aliases)`,
  );

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

/** An echo server with a per-session cap of `cap` tunnels, behind a path relay, and an adaptive client on paths A and B. */
async function rig(cap: number, opts: Partial<ClientOptions>): Promise<{ client: Client; server: Server; relay: PathRelay; refused: () => number }> {
  const server = await Server.bind('127.0.0.1:0', { key, maxTunnelsPerSession: cap });
  let refused = 0;
  server.on('refused', () => refused++);
  void (async () => {
    for await (const conn of server) {
      conn.on('error', () => undefined);
      conn.pipe(conn);
    }
  })();
  const relay = await PathRelay.start({ host: '127.0.0.1', port: server.address().port });
  const client = Client.create(`127.0.0.1:${relay.port}`, {
    key,
    tunnels: 'auto',
    paths: [{ via: A }, { via: B }],
    handshakeTimeout: 2000,
    reconnectMax: 200,
    ...opts,
  });
  cleanup.push(async () => {
    client.close();
    await relay.close();
    await server.close();
  });
  return { client, server, relay, refused: () => refused };
}

/** Tunnels up on the server, over all sessions. */
const tunnelsOf = (server: Server) => server.stats().peers.reduce((n, s) => n + s.tunnelsUp, 0);

describe.skipIf(!aliases)("tunnels: 'auto' on two paths", () => {
  it('each path has its own controller; the WELCOME cap is shared; a path retires its own highest slots mid-transfer without losing a byte', async () => {
    // busyRate out of reach: every epoch looks idle, so each path shrinks to its minimum after 2 s,
    // while the echo below is running.
    const { client, server, refused } = await rig(6, { minTunnels: 1, maxTunnels: 8, adaptive: { idleShrinkMs: 2000, busyRate: 1e12 } });
    const events: TunnelsEvent[] = [];
    const sums: number[] = [];
    client.on('tunnels', (d: TunnelsEvent) => {
      events.push(d);
      sums.push(client.tunnelCount);
    });
    const retired: number[] = [];
    client.on('tunnel-retired', (i: number) => retired.push(i));
    let downs = 0;
    client.on('tunnel-down', () => downs++);
    const [pa, pb] = client.paths;
    // Each path owns the slots it may grow into (maxTunnels), and starts at 8 split over the two.
    expect([pa!.first, pa!.tunnels, pb!.first, pb!.tunnels]).toEqual([0, 8, 8, 8]);
    expect([client.pathTunnelCount(A), client.pathTunnelCount(B)]).toEqual([4, 4]);
    expect(client.pathAdaptive(A) && client.pathAdaptive(B)).toBe(true);

    // The server allows 6: 4 + 4 does not fit, each path comes down to its share, 3.
    await until(() => client.serverTunnelCap === 6, 5000, 'WELCOME read');
    await until(() => client.pathTunnelsUp(A) === 3 && client.pathTunnelsUp(B) === 3, 5000, 'three tunnels on each path');
    expect(events.slice(0, 2)).toEqual([
      { path: A, from: 4, target: 3, reason: 'the server allows 6 tunnels per session' },
      { path: B, from: 4, target: 3, reason: 'the server allows 6 tunnels per session' },
    ]);
    expect(client.tunnelCount).toBe(6);
    expect(client.tunnelCeiling).toBe(6);

    const conn = await client.getConnection();
    // Hold the rest back until both paths have shrunk: their tunnels retire with the stream open.
    const echo = await echoRandom(conn, 24 * 1024 * 1024, async (off) => {
      if (off === 4 * 1024 * 1024) {
        await until(() => client.pathTunnelCount(A) === 1 && client.pathTunnelCount(B) === 1, 10_000, 'both paths shrink');
      }
    });
    expect(echo).toEqual({ bytes: 24 * 1024 * 1024, intact: true });

    // Each path's own controller decided its own step, named; each retired its own highest slots.
    const idle = events.filter((d) => /idle for 2 s/.test(d.reason));
    expect(idle.map((d) => [d.path, d.from, d.target]).sort()).toEqual([
      [A, 3, 1],
      [B, 3, 1],
    ]);
    await until(() => retired.length === 4 && tunnelsOf(server) === 2, 10_000, 'four tunnels retired on both ends');
    expect(retired.sort((x, y) => x - y)).toEqual([1, 2, pb!.first + 1, pb!.first + 2]);
    expect(downs).toBe(0);
    expect(client.pathTunnelsUp(A)).toBe(1);
    expect(client.pathTunnelsUp(B)).toBe(1);
    // The sum of the targets never passed the server's cap once it was known.
    expect(Math.max(...sums)).toBeLessThanOrEqual(6);
    // Slots that were already handshaking when WELCOME came may each be refused once; no more after.
    expect(refused()).toBeLessThanOrEqual(2);
  }, 60_000);
});

describe("paths with tunnels: 'auto' (no network)", () => {
  it('a path with its own count keeps it; the other adapts, from 16 (the single-path start) as the only adaptive path; a single unbound path is as before', () => {
    const client = Client.create('127.0.0.1:9', { key, tunnels: 'auto', paths: [{ via: '127.0.0.1' }, { via: 'lo', tunnels: 1 }] });
    client.close();
    expect(client.adaptive).toBe(true);
    expect(client.pathAdaptive('127.0.0.1')).toBe(true);
    expect(client.pathAdaptive('lo')).toBe(false);
    expect(client.paths.map((p) => [p.tunnels, p.fixed])).toEqual([
      [32, false],
      [1, true],
    ]);
    expect(client.pathTunnelCount('127.0.0.1')).toBe(16);
    expect(client.pathTunnelCount('lo')).toBe(1);
    expect(client.tunnelCount).toBe(17);
    // Every path with a count of its own: nothing adapts.
    const fixed = Client.create('127.0.0.1:9', {
      key,
      tunnels: 'auto',
      paths: [
        { via: '127.0.0.1', tunnels: 3 },
        { via: 'lo', tunnels: 1 },
      ],
    });
    fixed.close();
    expect(fixed.adaptive).toBe(false);
    expect(fixed.tunnelCount).toBe(4);
    // Without paths, 'auto' stays adaptive and the one path holds every slot the controller may start.
    const auto = Client.create('127.0.0.1:9', { key, tunnels: 'auto', maxTunnels: 12 });
    auto.close();
    expect(auto.adaptive).toBe(true);
    expect(auto.pathOf(11).name).toBe('default');
    expect(auto.pathTunnelCount('default')).toBe(12); // the start (16) within maxTunnels
  });

  it('many adaptive paths: each owns at most its share of the 256 slots', () => {
    const paths = Array.from({ length: 10 }, (_, i) => ({ via: `127.0.0.${i + 1}` }));
    const client = Client.create('127.0.0.1:9', { key, tunnels: 'auto', paths });
    client.close();
    expect(client.paths.every((p) => p.tunnels === 25)).toBe(true);
    expect(() => Client.create('127.0.0.1:9', { key, tunnels: 'auto', minTunnels: 30, maxTunnels: 40, paths })).toThrow(/more than 256 in all/);
  });
});
