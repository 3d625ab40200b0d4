import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BadPrefaceError,
  Decoder,
  ErrorCode,
  FrameType,
  PREFACE_LENGTH,
  Reason,
  decodePreface,
  encodePreface,
  newRoutingToken,
  type Frame,
} from '@gkd/protocol';
import { Client, Server } from '../src/index.js';
import { until } from '@gkd/test-support';

/**
 * The routing preface on real sockets (PROTOCOL.md §4.1): every tunnel of a session carries the same
 * token and a new session a new one; a server refuses a tunnel without it (a version-1 client).
 */

const key = randomBytes(32);
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A TCP relay in front of `target()` that records the first 20 bytes each connection sent. */
async function prefaceTap(target: () => number): Promise<{ port: number; prefaces: Buffer[] }> {
  const prefaces: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  const relay = net.createServer((inbound) => {
    const outbound = net.connect(target(), '127.0.0.1');
    sockets.add(inbound).add(outbound);
    let head = Buffer.alloc(0);
    inbound.on('data', (d: Buffer) => {
      if (head.length < PREFACE_LENGTH) {
        head = Buffer.concat([head, d]);
        if (head.length >= PREFACE_LENGTH) prefaces.push(head.subarray(0, PREFACE_LENGTH));
      }
    });
    inbound.pipe(outbound).pipe(inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => relay.close(() => r()));
  });
  return { port: (relay.address() as net.AddressInfo).port, prefaces };
}

/** A raw socket to `port` that collects the frames the server sends. */
async function rawSocket(port: number): Promise<{ socket: net.Socket; frames: Frame[]; closed: Promise<void> }> {
  const socket = net.connect(port, '127.0.0.1');
  cleanups.push(() => socket.destroy());
  const frames: Frame[] = [];
  const decoder = new Decoder();
  socket.on('data', (d: Buffer) => frames.push(...decoder.push(d)));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, frames, closed };
}

async function startServer(handshakeTimeout: number): Promise<{ server: Server; refused: Error[] }> {
  const server = await Server.bind('127.0.0.1:0', { key, handshakeTimeout });
  cleanups.push(() => server.close());
  const refused: Error[] = [];
  server.on('refused', (_a: unknown, e: Error) => refused.push(e));
  return { server, refused };
}

describe('routing preface', () => {
  it('every tunnel of a session sends the same token; the next session (after a server restart) a fresh one', async () => {
    let { server } = await startServer(10_000);
    let target = server.address().port;
    const tap = await prefaceTap(() => target);
    const client = Client.create(`127.0.0.1:${tap.port}`, { key, tunnels: 4, reconnectMax: 100 });
    cleanups.push(() => client.close());
    await until(() => client.tunnelsUp === 4, 10_000, 'four tunnels');
    const first = tap.prefaces.map((p) => decodePreface(p).token.toString('hex'));
    expect(first).toHaveLength(4);
    expect(new Set(first).size).toBe(1);

    // The server forgets the session: the client founds a new one, with a new token on all its tunnels.
    await server.close();
    ({ server } = await startServer(10_000));
    target = server.address().port;
    await until(() => client.tunnelsUp === 4 && server.stats().sessions === 1, 10_000, 'a new session on four tunnels');
    const later = tap.prefaces.slice(4).map((p) => decodePreface(p).token.toString('hex'));
    const fresh = later.filter((t) => t !== first[0]);
    expect(new Set(fresh).size).toBe(1);
    expect(fresh.length).toBeGreaterThanOrEqual(4);
  });

  it('a preface written one byte at a time is read, and the handshake follows', async () => {
    const { server } = await startServer(10_000);
    const peer = await rawSocket(server.address().port);
    for (const byte of encodePreface(newRoutingToken())) {
      peer.socket.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    await until(() => peer.frames.length > 0, 5_000, 'CHALLENGE');
    expect(peer.frames[0]!.type).toBe(FrameType.CHALLENGE);
  });

  it('a version-1 client (silent until CHALLENGE) gets REJECT BAD_VERSION after the handshake timeout, and is closed', async () => {
    const { server, refused } = await startServer(300);
    const peer = await rawSocket(server.address().port);
    const t0 = Date.now();
    await peer.closed;
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(peer.frames).toEqual([expect.objectContaining({ type: FrameType.REJECT, reason: Reason.BAD_VERSION })]);
    expect((peer.frames[0] as { message: string }).message).toMatch(/routing preface/);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toBeInstanceOf(BadPrefaceError);
    expect((refused[0] as BadPrefaceError).code).toBe(ErrorCode.BAD_PREFACE);
    expect(server.stats().handshaking).toBe(0);
  });

  it('a connection that closes without a byte (a health check) frees its handshake slot at once and is not a refusal; one cut mid-preface is', async () => {
    const { server, refused } = await startServer(60_000);
    const checks = await Promise.all(Array.from({ length: 5 }, () => rawSocket(server.address().port)));
    await until(() => server.stats().handshaking === 5, 5_000, 'five handshakes in progress');
    for (const c of checks) c.socket.end();
    await until(() => server.stats().handshaking === 0, 5_000, 'the slots freed, long before the 60 s timeout');
    expect(refused).toEqual([]);
    const cut = await rawSocket(server.address().port);
    cut.socket.end(encodePreface(newRoutingToken()).subarray(0, 7));
    await until(() => refused.length === 1, 5_000, 'a refusal');
    expect(refused[0]).toBeInstanceOf(BadPrefaceError);
    expect(server.stats().handshaking).toBe(0);
  });

  it('bytes that cannot start a preface (a version-1 frame) are refused at once with REJECT BAD_VERSION', async () => {
    const { server, refused } = await startServer(60_000);
    const peer = await rawSocket(server.address().port);
    peer.socket.write(Buffer.from([0x01, 0x02, 0, 0]));
    await peer.closed; // long before the 60 s handshake timeout (the test would time out)
    expect(peer.frames).toEqual([expect.objectContaining({ type: FrameType.REJECT, reason: Reason.BAD_VERSION })]);
    expect(refused[0]).toBeInstanceOf(BadPrefaceError);
    expect(refused[0]!.message).toMatch(/version-1 client/);
    expect(server.stats().sessions).toBe(0);
  });
});
