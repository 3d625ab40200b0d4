import { once } from 'node:events';
import net, { type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpProxyServer, SocksServer, type ProxyCounters } from '../src/index.js';
import { connectRaw, directOpener, readAll, socksConnect, startOrigin, type Origin } from './helpers.js';
import { until } from '@gkd/test-support';

// Issue 16, finding 6: a local user holding maxConnections handshake-less sockets locked every other
// local application out of the SOCKS (and HTTP) port until the handshake timeout. Here the flood fills
// maxConnections from 127.0.0.2–5 (as other hosts, or a local user binding other loopback addresses,
// would); legitimate clients on 127.0.0.1 must still be served at once, and what the flood holds must
// stay within maxHandshakes. A smaller limit than the default keeps the test fast; the default limits
// go through the same Admission in admission.test.ts.

const SUCCESS = '05000001000000000000';
const LIMITS = { maxConnections: 512, maxHandshakes: 128, maxHandshakesPerAddress: 64 };
const HOSTILE_ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];

let origin: Origin;
beforeAll(async () => {
  origin = await startOrigin('127.0.0.1', 1024);
});
afterAll(() => origin.close());

/** Reject when `promise` takes longer than `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} not done within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * Open `count` hostile sockets from the hostile addresses, each sending `greeting` (or nothing) and
 * then idling. Returns them, open or already closed by the server.
 */
async function flood(port: number, count: number, greeting: (i: number) => Buffer | undefined): Promise<Socket[]> {
  const sockets: Socket[] = [];
  for (let batch = 0; batch < count; batch += 64) {
    const opened = [];
    for (let i = batch; i < Math.min(count, batch + 64); i++) {
      const socket = net.connect({ port, host: '127.0.0.1', localAddress: HOSTILE_ADDRESSES[i % HOSTILE_ADDRESSES.length] });
      socket.on('error', () => {});
      socket.on('data', () => {});
      sockets.push(socket);
      opened.push(
        once(socket, 'connect').then(
          () => {
            const bytes = greeting(i);
            if (bytes) socket.write(bytes);
          },
          () => {},
        ),
      );
    }
    await Promise.all(opened);
  }
  return sockets;
}

const openCount = (sockets: Socket[]): number => sockets.filter((s) => !s.destroyed && !s.readableEnded).length;

/** One complete SOCKS5 CONNECT and HTTP exchange from 127.0.0.1. */
async function socksExchange(port: number): Promise<void> {
  const socket = await connectRaw(port);
  expect((await socksConnect(socket, '127.0.0.1', origin.port)).toString('hex')).toBe(SUCCESS);
  socket.end('GET /echo HTTP/1.0\r\n\r\n');
  const { data } = await readAll(socket);
  expect(data.toString()).toMatch(/^HTTP\/1\.1 200 OK/);
}

/** One complete absolute-URI request through the HTTP proxy from 127.0.0.1. */
async function httpExchange(port: number): Promise<void> {
  const socket = await connectRaw(port);
  socket.write(`GET http://127.0.0.1:${origin.port}/echo HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nConnection: close\r\n\r\n`);
  const { data } = await readAll(socket);
  expect(data.toString()).toMatch(/^HTTP\/1\.1 200 OK/);
}

function expectWithinLimits(stats: ProxyCounters): void {
  expect(stats.handshaking).toBeLessThanOrEqual(LIMITS.maxHandshakes);
  expect(stats.active).toBeLessThanOrEqual(LIMITS.maxConnections);
}

describe('a flood of handshake-less sockets on the SOCKS port (#16 finding 6)', () => {
  it('maxConnections greeting-only sockets from 4 addresses: 8 concurrent legitimate CONNECTs all succeed, proxied connections survive, the flood holds at most maxHandshakes', async () => {
    const server = await SocksServer.listen({ port: 0, opener: directOpener().opener, ...LIMITS });
    const port = server.address().port;
    const hostile: Socket[] = [];
    try {
      // two proxied connections made before the flood: established, so never evicted for a handshake
      const proxied = await Promise.all([connectRaw(port), connectRaw(port)]);
      for (const s of proxied) expect((await socksConnect(s, '127.0.0.1', origin.port)).toString('hex')).toBe(SUCCESS);

      // half send a greeting and idle in the request state, half send nothing
      hostile.push(...(await flood(port, LIMITS.maxConnections, (i) => (i % 2 === 0 ? Buffer.from([0x05, 0x01, 0x00]) : undefined))));
      await within(Promise.all(Array.from({ length: 8 }, () => socksExchange(port))), 5_000, '8 legitimate CONNECTs');
      await until(() => openCount(hostile) <= LIMITS.maxHandshakes, 5_000, 'evicted hostile sockets to close');

      for (const s of proxied) {
        s.end('GET /echo HTTP/1.0\r\n\r\n');
        expect((await readAll(s)).data.toString()).toMatch(/^HTTP\/1\.1 200 OK/);
      }
      const stats = server.stats();
      expectWithinLimits(stats);
      expect(stats).toMatchObject({ dropped: 0, opened: 10 });
      expect(stats.evicted).toBeGreaterThanOrEqual(LIMITS.maxConnections - LIMITS.maxHandshakes);
      expect(openCount(hostile)).toBeLessThanOrEqual(LIMITS.maxHandshakes);
    } finally {
      for (const s of hostile) s.destroy();
      await server.close();
    }
  });

  it('a flood that reconnects every evicted socket (churn) still lets 8 CONNECTs through, and what it holds stays bounded', async () => {
    const server = await SocksServer.listen({ port: 0, opener: directOpener().opener, ...LIMITS });
    const port = server.address().port;
    const hostile = new Set<Socket>();
    let reconnects = 0;
    let stopping = false;
    const attacker = (address: string): void => {
      const socket = net.connect({ port, host: '127.0.0.1', localAddress: address });
      hostile.add(socket);
      socket.on('error', () => {});
      socket.on('data', () => {});
      socket.once('connect', () => socket.write(Buffer.from([0x05, 0x01, 0x00])));
      socket.once('close', () => {
        hostile.delete(socket);
        if (stopping) return;
        reconnects++;
        attacker(address);
      });
    };
    const samples: ProxyCounters[] = [];
    const sampler = setInterval(() => samples.push(server.stats()), 5);
    try {
      // more than maxConnections, so the flood churns with or without eviction
      for (let i = 0; i < LIMITS.maxConnections + 64; i++) attacker(HOSTILE_ADDRESSES[i % HOSTILE_ADDRESSES.length]!);
      await until(() => reconnects >= LIMITS.maxConnections, 10_000, 'the flood to churn');
      await within(Promise.all(Array.from({ length: 8 }, () => socksExchange(port))), 5_000, '8 legitimate CONNECTs');
      expect(hostile.size).toBeLessThanOrEqual(LIMITS.maxConnections + 64);
    } finally {
      stopping = true;
      clearInterval(sampler);
      for (const s of hostile) s.destroy();
      await server.close();
    }
    expect(samples.length).toBeGreaterThan(0);
    for (const s of samples) expectWithinLimits(s);
  });
});

describe('a flood of header-less sockets on the HTTP port (#16 finding 6)', () => {
  it('maxConnections sockets with half a request line from 4 addresses: 8 concurrent legitimate requests all succeed', async () => {
    const server = await HttpProxyServer.listen({ port: 0, opener: directOpener().opener, ...LIMITS });
    const port = server.address().port;
    const hostile: Socket[] = [];
    try {
      hostile.push(...(await flood(port, LIMITS.maxConnections, (i) => (i % 2 === 0 ? Buffer.from('GET http://127.0.0.1/ HT') : undefined))));
      await within(Promise.all(Array.from({ length: 8 }, () => httpExchange(port))), 5_000, '8 legitimate requests');
      await until(() => openCount(hostile) <= LIMITS.maxHandshakes, 5_000, 'evicted hostile sockets to close');
      const stats = server.stats();
      expectWithinLimits(stats);
      expect(stats).toMatchObject({ dropped: 0, opened: 8 });
      expect(openCount(hostile)).toBeLessThanOrEqual(LIMITS.maxHandshakes);
    } finally {
      for (const s of hostile) s.destroy();
      await server.close();
    }
  });

  it('an idle keep-alive connection is evictable again; one with a request in progress is not', async () => {
    const server = await HttpProxyServer.listen({ port: 0, opener: directOpener().opener, maxConnections: 2, maxHandshakes: 2, maxHandshakesPerAddress: 2 });
    const port = server.address().port;
    try {
      // keep-alive client: one request answered, then idle
      const idle = await connectRaw(port);
      const idleGone = readAll(idle);
      idle.write(`GET http://127.0.0.1:${origin.port}/echo HTTP/1.1\r\nHost: x\r\n\r\n`);
      await until(() => server.stats().opened === 1 && server.stats().handshaking === 1, 5_000, 'the keep-alive client to go idle');
      // a CONNECT tunnel: established
      const tunnel = await connectRaw(port);
      tunnel.write(`CONNECT 127.0.0.1:${origin.port} HTTP/1.1\r\nHost: x\r\n\r\n`);
      await until(() => server.stats().opened === 2, 5_000, 'the tunnel to open');
      // a third connection takes the idle keep-alive one's slot; the tunnel stays
      await httpExchange(port);
      const { data } = await idleGone;
      expect(data.toString()).toMatch(/^HTTP\/1\.1 200 OK/);
      expect(server.stats()).toMatchObject({ evicted: 1, dropped: 0 });
      tunnel.end('GET /echo HTTP/1.0\r\n\r\n');
      expect((await readAll(tunnel)).data.toString()).toMatch(/200 Connection established[\s\S]*HTTP\/1\.1 200 OK/);
    } finally {
      await server.close();
    }
  });
});
