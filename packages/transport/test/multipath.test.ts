// Multipath on loopback aliases: each path's tunnels bind their own local address (127.0.0.2, 127.0.0.3),
// a relay in front of the server tells them apart by source address and cuts one path mid-download.
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, Server, type Connection, type PathInfo } from '../src/index.js';
import { PathRelay, canBind, expectedHash, hashOf, source, until, type PathState } from '@gkd/test-support';

const key = randomBytes(32);
const A = '127.0.0.2';
const B = '127.0.0.3';
const aliases = (await canBind(A)) && (await canBind(B));
if (!aliases)
  console.log(`multipath tests skipped: this machine cannot bind ${A} and ${B} (Linux loopback can without setup; elsewhere add them as loopback aliases)`);

/** Keepalive settings short enough for a test: a dead path is noticed within KEEPALIVE_TIMEOUT (the deadline is also ≥ 1 s + 4 × RTT, and RTT is tiny here). */
const KEEPALIVE_TIMEOUT = 1000;

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

/** A server whose every stream is a download of `total` bytes, behind a path relay; a client on two paths. */
async function rig(total: number): Promise<{ client: Client; relay: PathRelay }> {
  const server = await Server.bind('127.0.0.1:0', { key, session: { keepaliveInterval: 100, keepaliveTimeout: KEEPALIVE_TIMEOUT } });
  void (async () => {
    for await (const conn of server) {
      conn.on('error', () => undefined);
      source(total).pipe(conn);
    }
  })();
  const relay = await PathRelay.start({ host: '127.0.0.1', port: server.address().port });
  const client = Client.create(`127.0.0.1:${relay.port}`, {
    key,
    paths: [
      { via: A, tunnels: 2 },
      { via: B, tunnels: 2 },
    ],
    session: { keepaliveInterval: 100, keepaliveTimeout: KEEPALIVE_TIMEOUT },
    handshakeTimeout: 500,
    reconnectMax: 200,
  });
  cleanup.push(async () => {
    client.close();
    await relay.close();
    await server.close();
  });
  return { client, relay };
}

/** Read `conn` to the end, noting the longest gap between two arrivals after `mark()` was called (ms). */
function watchGaps(conn: Connection): { mark: () => void; longestGap: () => number; received: () => number } {
  let last = 0;
  let marked = false;
  let gap = 0;
  let bytes = 0;
  conn.on('data', (d: Buffer) => {
    bytes += d.length;
    const now = performance.now();
    if (marked) gap = Math.max(gap, now - last);
    last = now;
  });
  return {
    mark: () => {
      marked = true;
      last = performance.now();
    },
    longestGap: () => gap,
    received: () => bytes,
  };
}

describe.skipIf(!aliases)('multipath over loopback aliases', () => {
  it('every path binds its own local address and all tunnels join one session', async () => {
    const { client, relay } = await rig(1);
    await until(() => client.tunnelsUp === 4, 10_000, 'four tunnels up');
    expect(relay.accepted.get(A)).toBeGreaterThanOrEqual(2);
    expect(relay.accepted.get(B)).toBeGreaterThanOrEqual(2);
    expect([...relay.accepted.keys()].sort()).toEqual([A, B]);
    expect(client.pathTunnelsUp(A)).toBe(2);
    expect(client.pathTunnelsUp(B)).toBe(2);
    expect(client.paths.map((p) => [p.name, p.first, p.tunnels])).toEqual([
      [A, 0, 2],
      [B, 2, 2],
    ]);
    // One session: the four tunnels are the one session's.
    expect(client.stats().tunnels.filter((t) => t.state === 'open').length).toBe(4);
  });

  it.each<[Exclude<PathState, 'open'>, string]>([
    ['blackhole', 'stops forwarding (an interface gone down: only keepalives notice)'],
    ['reset', 'resets its connections and refuses new ones'],
  ])(
    'a path that %s mid-download: no byte lost, the stall stays within the keepalive deadline, the path rejoins',
    async (mode) => {
      const total = 48 * 1024 * 1024;
      const want = expectedHash(total);
      const { client, relay } = await rig(total);
      await until(() => client.tunnelsUp === 4, 10_000, 'four tunnels up');
      const downs: string[] = [];
      const ups: string[] = [];
      const retriedSlots = new Set<number>();
      client.on('path-down', (p: PathInfo) => downs.push(p.name));
      client.on('path-up', (p: PathInfo) => ups.push(p.name));
      client.on('reconnecting', (index: number) => retriedSlots.add(index));
      const slotsDown: number[] = [];
      client.on('tunnel-down', (index: number) => slotsDown.push(index));

      const conn = await client.getConnection();
      const gaps = watchGaps(conn);
      const got = hashOf(conn);
      await until(() => gaps.received() >= total / 8, 20_000, 'an eighth of the download');
      relay.set(B, mode);
      gaps.mark();
      expect(await got).toEqual(await want);
      await until(() => client.pathTunnelsUp(B) === 0, 10_000, `path ${B} noticed down`);

      // The stall: the frames in flight on the cut path wait at most for the keepalive deadline, then go on the other path.
      console.log(`multipath ${mode}: longest stall after the cut ${gaps.longestGap().toFixed(0)} ms (keepalive deadline ${KEEPALIVE_TIMEOUT} ms)`);
      expect(gaps.longestGap()).toBeLessThan(KEEPALIVE_TIMEOUT + 1000); // + scheduling slack on a shared 2-core machine
      expect(downs).toEqual([B]);
      // Only the cut path's slots went down and retried; path A's tunnels never did.
      expect(slotsDown.every((i) => i === 2 || i === 3)).toBe(true);
      await until(() => retriedSlots.has(2) && retriedSlots.has(3), 5000, 'the cut path retrying');
      expect([...retriedSlots].every((i) => i === 2 || i === 3)).toBe(true);
      expect(client.pathTunnelsUp(A)).toBe(2);

      // Back: the path's tunnels rejoin the same session by themselves, and a new download uses both paths again.
      const acceptedBefore = relay.accepted.get(B) ?? 0;
      relay.set(B, 'open');
      await until(() => client.pathTunnelsUp(B) === 2, 10_000, `path ${B} back up`);
      expect(ups).toContain(B);
      expect(relay.accepted.get(B)).toBeGreaterThan(acceptedBefore);
      const second = await client.getConnection();
      expect(await hashOf(second)).toEqual(await want);
    },
    60_000,
  );
});

describe('several server addresses', () => {
  it('a tunnel whose server address does not answer moves to the next one', async () => {
    const server = await Server.bind('127.0.0.1:0', { key });
    // A port nothing listens on: bound, then closed.
    const dead = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
    const client = Client.create([`127.0.0.1:${dead}`, `127.0.0.1:${server.address().port}`], { key, tunnels: 4, reconnectMin: 20, reconnectMax: 100 });
    cleanup.push(async () => {
      client.close();
      await server.close();
    });
    // Slots 0 and 2 start on the dead address (the path spreads its tunnels over both); after one
    // refused dial each they must try the live one, or only two tunnels would ever come up.
    await until(() => client.tunnelsUp === 4, 10_000, 'all four tunnels up');
  });
});

describe('a path bound to an interface by name', () => {
  const lo = Object.entries(networkInterfaces()).find(([, infos]) => infos?.some((i) => i.internal && i.family === 'IPv4'))?.[0];
  if (!lo) console.log('interface-path test skipped: no loopback interface with an IPv4 address in os.networkInterfaces()');
  // On one machine the only interface a test can name is loopback, whose address is the default source
  // anyway: this checks that an interface path resolves and connects; the alias tests above check binding.
  it.skipIf(!lo)("dials from the interface's address", async () => {
    const server = await Server.bind('127.0.0.1:0', { key });
    const relay = await PathRelay.start({ host: '127.0.0.1', port: server.address().port });
    const client = await Client.connect(`127.0.0.1:${relay.port}`, { key, paths: [{ via: lo!, tunnels: 1 }] });
    cleanup.push(async () => {
      client.close();
      await relay.close();
      await server.close();
    });
    const address = networkInterfaces()[lo!]!.find((i) => i.family === 'IPv4')!.address;
    expect([...relay.accepted.keys()]).toEqual([address]);
    expect(client.pathTunnelsUp(lo!)).toBe(1);
  });

  it('an interface that is not there fails the dial with GKD_ERR_PATH_DOWN and the slot keeps retrying', async () => {
    const client = Client.create('127.0.0.1:9', { key, paths: [{ via: 'gkdnone0', tunnels: 1 }], reconnectMin: 20, reconnectMax: 100 });
    cleanup.push(async () => client.close());
    const errors: Error[] = [];
    client.on('reconnecting', (_i: number, _d: number, err: Error) => errors.push(err));
    await until(() => errors.length >= 2, 5000, 'two failed attempts');
    expect((errors[0] as Error & { code?: string }).code).toBe('GKD_ERR_PATH_DOWN');
    expect(errors[0]!.message).toMatch(/interface gkdnone0 is not there/);
  });
});
