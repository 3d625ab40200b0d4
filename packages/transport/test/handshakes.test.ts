import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AuthMode, FrameType, encodePreface, newRoutingToken, sessionSecret } from '@gkd/protocol';
import { Client, Server } from '../src/index.js';
import { WirePeer, newSessionId, until } from '@gkd/test-support';

/**
 * Sockets that connect and never authenticate: the server holds at most `maxHandshakes` of them and at
 * most `maxHandshakesPerAddress` from one address; past either, a new connection evicts the oldest
 * one, so a pile of idle sockets cannot lock a legitimate peer out until the handshake timeout.
 * (Linux routes all of 127/8 to loopback: 127.0.0.2 and 127.0.0.3 stand for two hostile hosts.)
 */

const key = randomBytes(32);
let server: Server | undefined;
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.close();
  server = undefined;
});

/** A socket from `localAddress` that connects and then says nothing (not even the routing preface). */
async function idle(port: number, localAddress: string): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  sockets.push(socket);
  socket.on('error', () => undefined);
  socket.on('data', () => undefined);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, closed };
}

describe('handshakes in progress', () => {
  it('are capped per address and in total, by evicting the oldest: a legitimate client connects at once', async () => {
    server = await Server.bind('127.0.0.1:0', { key, maxHandshakes: 16, maxHandshakesPerAddress: 8, handshakeTimeout: 60_000 });
    const refused: string[] = [];
    server.on('refused', (_addr: string, err: Error) => refused.push(err.message));
    const port = server.address().port;

    const fromA = [];
    for (let i = 0; i < 8; i++) fromA.push(await idle(port, '127.0.0.2'));
    await until(() => server!.stats().handshaking === 8, 5000, '8 handshakes from 127.0.0.2');
    // The 9th from the same address evicts that address's oldest (a legitimate client behind the same
    // NAT address still gets through); the count stays at 8.
    await idle(port, '127.0.0.2');
    await fromA.shift()!.closed;
    expect(refused.at(-1)).toMatch(/handshake evicted: more than 8 in progress from .*127\.0\.0\.2/);
    expect(server.stats().handshaking).toBe(8);

    for (let i = 0; i < 8; i++) await idle(port, '127.0.0.3');
    await until(() => server!.stats().handshaking === 16, 5000, '16 handshakes');

    // Full. A legitimate client (127.0.0.1) connects without waiting for the 60 s handshake timeout:
    // its connection evicts the oldest idle one (now the second from 127.0.0.2).
    const started = Date.now();
    const client = await Client.connect(`127.0.0.1:${port}`, { key, tunnels: 1 });
    try {
      expect(Date.now() - started).toBeLessThan(30_000);
      await fromA[0]!.closed;
      expect(refused).toContain('handshake evicted: more than 16 in progress');
      expect(fromA.slice(1).every((x) => !x.socket.destroyed)).toBe(true);
      expect(server.stats().handshaking).toBe(15);
    } finally {
      client.close();
    }
  }, 60_000);

  it('a tunnel joining a live session counts with its session, not its address: new connections from that address do not evict it', async () => {
    server = await Server.bind('127.0.0.1:0', { key, maxHandshakes: 64, maxHandshakesPerAddress: 2, maxTunnelsPerSession: 3, handshakeTimeout: 60_000 });
    const refused: string[] = [];
    server.on('refused', (_addr: string, err: Error) => refused.push(err.message));
    const port = server.address().port;
    const token = newRoutingToken();
    const sessionId = newSessionId();
    const founder = await WirePeer.connect(port, { preface: encodePreface(token), challenge: true });
    const { answer, input } = await founder.handshake({ mode: AuthMode.NEW, sessionId, key });
    expect(answer?.type).toBe(FrameType.WELCOME);
    const secret = sessionSecret(key, input!);
    // Two more tunnels of that session are in their handshake (CHALLENGE read, AUTH not sent yet)...
    const joins = [
      await WirePeer.connect(port, { preface: encodePreface(token), challenge: true }),
      await WirePeer.connect(port, { preface: encodePreface(token), challenge: true }),
    ];
    // ...when four new connections come from the same address (another client on the host founding
    // sessions, or a flood). With 2 per address they evict each other, not the session's tunnels.
    for (let i = 0; i < 4; i++) await WirePeer.connect(port, { challenge: true });
    expect(refused).toEqual(['handshake evicted: more than 2 in progress from 127.0.0.1', 'handshake evicted: more than 2 in progress from 127.0.0.1']);
    for (const [i, peer] of joins.entries()) {
      const joined = await peer.handshake({ mode: AuthMode.JOIN, sessionId, key: secret, tunnelIndex: i + 1 });
      expect(joined.answer?.type, `join ${i + 1}`).toBe(FrameType.WELCOME);
    }
    // A session's group is capped too (at maxTunnelsPerSession, 3 here): a 4th claim of the token evicts its oldest.
    const claims = [];
    for (let i = 0; i < 4; i++) claims.push(await WirePeer.connect(port, { preface: encodePreface(token), challenge: true }));
    await claims[0]!.closed;
    expect(refused.at(-1)).toBe('handshake evicted: more than 3 tunnels of one session in progress');
    expect(claims.slice(1).every((c) => c.isOpen)).toBe(true);
  });

  it('options are validated', () => {
    expect(() => new Server({ key, maxHandshakes: 4, maxHandshakesPerAddress: 5 })).toThrow(/maxHandshakesPerAddress/);
  });
});

describe('a client whose key the server rejects (issue 16, finding 4)', () => {
  it('says so plainly and backs off hard, all tunnels together: one handshake per wait, the wait doubling', async () => {
    server = await Server.bind('127.0.0.1:0', { key });
    const refusedAt: number[] = [];
    server.on('refused', () => refusedAt.push(Date.now()));
    const client = Client.create(`127.0.0.1:${server.address().port}`, {
      key: randomBytes(32),
      tunnels: 8,
      reconnectMin: 10,
      reconnectMax: 20,
      rejectedRetryMin: 300,
      rejectedRetryMax: 60_000,
    });
    const failures: Error[] = [];
    client.on('auth-failed', (err: Error) => failures.push(err));
    try {
      await until(() => failures.length >= 3, 10_000, 'three rejections');
      expect(failures[0]!.message).toMatch(/^the server rejected our key \(bad proof/);
      // One refused handshake per attempt (not one per tunnel), 300 ms and then 600 ms apart.
      expect(refusedAt).toHaveLength(3);
      expect(refusedAt[1]! - refusedAt[0]!).toBeGreaterThanOrEqual(290);
      expect(refusedAt[2]! - refusedAt[1]!).toBeGreaterThanOrEqual(590);
    } finally {
      client.close();
    }
  });

  it('rejectedRetryMin/Max are validated', () => {
    expect(() => Client.create('127.0.0.1:1', { key, rejectedRetryMin: 2000, rejectedRetryMax: 1000 })).toThrow(/rejectedRetryMax/);
  });
});
