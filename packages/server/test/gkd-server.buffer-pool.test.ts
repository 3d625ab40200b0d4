import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, defaultSessionConfig, type Connection } from '@gkd/transport';
import { until } from '@gkd/test-support';
import type { GkdServer } from '../src/index.js';
import { recordingDestination, type Behaviour } from './support/destination.js';
import { defer, newKey, runCleanups, startServer } from './support/harness.js';

afterEach(runCleanups);

/**
 * `limits.maxBufferedBytes`: the server-wide pool bounds what all peers together make the server hold,
 * shared so that every peer moves. Peers download endless streams from a destination that writes as
 * fast as it can, through a relay that stops forwarding the server's bytes (the tunnels drain slower
 * than the destinations fill: not at all, for a while).
 */

const KiB = 1024;
const MiB = 1024 * KiB;
const PEERS = 6;
const STREAMS = 2; // per peer
const POOL = 2 * MiB; // maxBufferedBytes: 1 MiB per direction
const FRAME = defaultSessionConfig.maxPayload;

/** An endless download: the same 256 KiB written again and again while the socket takes it. */
const endless: Behaviour = (socket) => {
  const blob = Buffer.alloc(256 * KiB, 7);
  const pump = () => {
    while (!socket.destroyed && socket.write(blob));
  };
  socket.on('drain', pump);
  socket.on('error', () => undefined);
  pump();
};

/** A loopback relay in front of the server whose server → client direction can be held (not at first: handshakes and opens must pass). */
async function holdingRelay(targetPort: number): Promise<{ port: number; hold(on: boolean): void }> {
  const towardsClient = new Set<net.Socket>();
  let held = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect({ host: '127.0.0.1', port: targetPort });
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.once('close', () => sockets.delete(s));
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    towardsClient.add(outbound);
    if (held) outbound.pause();
    inbound.once('close', () => outbound.destroy());
    outbound.once('close', () => inbound.destroy());
  });
  server.listen({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  defer(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    hold(on: boolean) {
      held = on;
      for (const s of towardsClient) {
        if (on) s.pause();
        else s.resume();
      }
    },
  };
}

/** What the server holds for all peers: its pool's figure and the streams' own unacknowledged bytes. */
function held(server: GkdServer): { pool: number; unacked: number; perPeer: number[] } {
  const stats = server.stats();
  const perPeer = stats.peers.map((p) => p.streams.reduce((n, s) => n + s.unacked, 0));
  return { pool: stats.pools!.send.used, unacked: perPeer.reduce((a, b) => a + b, 0), perPeer };
}

describe('GkdServer: the server-wide buffer pool (limits.maxBufferedBytes)', () => {
  it('bounds what all peers together hold, and every peer still makes progress', { timeout: 60_000 }, async () => {
    const dest = await recordingDestination(endless);
    defer(() => dest.close());
    const users = Object.fromEntries(Array.from({ length: PEERS }, (_, i) => [`peer${i}`, newKey()]));
    const server = await startServer({ users, allow: [`127.0.0.1:${dest.port}`], limits: { maxBufferedBytes: POOL } });
    const relay = await holdingRelay(server.address().port);
    const received = new Array<number>(PEERS).fill(0);
    const conns: Connection[] = [];
    for (const [i, [user, key]] of Object.entries(users).entries()) {
      const client = await Client.connect(`127.0.0.1:${relay.port}`, { user, key, tunnels: 2 });
      defer(() => client.close());
      for (let s = 0; s < STREAMS; s++) {
        const conn = await client.open({ host: '127.0.0.1', port: dest.port });
        conn.on('error', () => undefined);
        conn.on('data', (d: Buffer) => {
          received[i] = received[i]! + d.length;
        });
        conns.push(conn);
      }
    }
    const bound = POOL / 2 + PEERS * STREAMS * FRAME;

    // Held: the destinations fill the server until the pool stops it. Without the pool each peer's
    // streams could hold their windows' worth (4 MiB each, 48 MiB in all) of its 16 MiB send budget.
    relay.hold(true);
    await until(
      () => {
        const now = held(server);
        return now.pool >= POOL / 2 && now.perPeer.every((n) => n >= FRAME);
      },
      20_000,
      'the send pool to fill, with bytes of every peer in it',
    );
    const h = held(server);
    expect(h.pool).toBeLessThanOrEqual(bound);
    expect(h.unacked).toBeLessThanOrEqual(bound);

    // Released: everyone drains at loopback speed while the destinations keep writing; the bound holds
    // at every sample and no peer is left out.
    relay.hold(false);
    const start = [...received];
    let samples = 0;
    await until(
      () => {
        const now = held(server);
        expect(now.pool).toBeLessThanOrEqual(bound);
        expect(now.unacked).toBeLessThanOrEqual(bound);
        samples++;
        return received.every((n, i) => n - start[i]! >= 4 * MiB);
      },
      40_000,
      'every peer to receive 4 MiB more',
    );
    expect(samples).toBeGreaterThan(1);
    expect(server.stats().pools!.send.limit).toBe(POOL / 2);
    for (const c of conns) c.destroy();
  });

  it('lets a late peer move when an early one filled the pool and never takes its bytes', { timeout: 60_000 }, async () => {
    const dest = await recordingDestination(endless);
    defer(() => dest.close());
    const users = { early: newKey(), late: newKey() };
    const server = await startServer({ users, allow: [`127.0.0.1:${dest.port}`], limits: { maxBufferedBytes: POOL } });
    // The early peer's tunnels go through a relay that never forwards the server's bytes: it holds
    // whatever it is sent, for good.
    const stuck = await holdingRelay(server.address().port);
    const early = await Client.connect(`127.0.0.1:${stuck.port}`, { user: 'early', key: users.early, tunnels: 2 });
    defer(() => early.close());
    for (let s = 0; s < STREAMS; s++) (await early.open({ host: '127.0.0.1', port: dest.port })).on('error', () => undefined);
    stuck.hold(true);
    await until(() => held(server).pool >= POOL / 2, 20_000, 'the early peer to fill the send pool');

    // The late peer connects directly and reads: the pool is full (and what the early peer holds
    // cannot be taken back), yet it moves, one frame per stream per acknowledgement at least.
    const late = await Client.connect(`127.0.0.1:${server.address().port}`, { user: 'late', key: users.late, tunnels: 2 });
    defer(() => late.close());
    let got = 0;
    const conn = await late.open({ host: '127.0.0.1', port: dest.port });
    conn.on('data', (d: Buffer) => (got += d.length));
    await until(() => got >= 4 * MiB, 20_000, 'the late peer to receive 4 MiB');
    expect(held(server).pool).toBeLessThanOrEqual(POOL / 2 + 3 * STREAMS * FRAME);
    conn.destroy();
  });
});
