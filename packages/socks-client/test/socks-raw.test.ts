import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net, { type AddressInfo, type Socket } from 'node:net';
import { Duplex, PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SocksServer, type Opener, type ProxyEvent, type SocksServerOptions } from '../src/index.js';
import {
  connectRaw,
  connectRequest,
  directOpener,
  failingOpener,
  fixedOpener,
  readAll,
  readBytes,
  sha256,
  silentOpener,
  socksConnect,
  startOrigin,
  type Origin,
} from './helpers.js';

// Raw-socket tests: exact bytes on the wire, hostile clients, and the piping rules.

const SUCCESS = '05000001000000000000';
const reply = (rep: number): string => `05${rep.toString(16).padStart(2, '0')}0001000000000000`;

let origin: Origin;
beforeAll(async () => {
  origin = await startOrigin('127.0.0.1', 64 * 1024);
});
afterAll(() => origin.close());

async function withSocks(options: Partial<SocksServerOptions> & { opener: Opener }, run: (port: number, server: SocksServer) => Promise<void>): Promise<void> {
  const server = await SocksServer.listen({ port: 0, ...options });
  try {
    await run(server.address().port, server);
  } finally {
    await server.close();
  }
}

/** One complete, successful CONNECT and HTTP exchange: proof the server is still serving. */
async function stillServes(port: number): Promise<void> {
  const socket = await connectRaw(port);
  expect((await socksConnect(socket, '127.0.0.1', origin.port)).toString('hex')).toBe(SUCCESS);
  socket.end('GET /echo HTTP/1.0\r\n\r\n');
  const { data } = await readAll(socket);
  expect(data.toString()).toMatch(/^HTTP\/1\.1 200 OK/);
}

describe('replies on the wire', () => {
  it('success is a full RFC 1928 reply (BND 0.0.0.0:0) and bytes then flow', async () => {
    await withSocks({ opener: directOpener().opener }, stillServes);
  });

  it.each([1, 2, 3, 4, 5, 6])('a failed open is a full 10-byte reply with REP %i, then the socket closes', async (reason) => {
    await withSocks({ opener: failingOpener(reason).opener }, async (port) => {
      const socket = await connectRaw(port);
      expect((await socksConnect(socket, '127.0.0.1', 80)).toString('hex')).toBe(reply(reason));
      const rest = await readAll(socket);
      expect(rest.data.length).toBe(0);
      expect(rest.error).toBeUndefined(); // a clean FIN, not a reset that could eat the reply
    });
  });

  it.each([
    ['BIND', 0x02, 0x07],
    ['UDP ASSOCIATE', 0x03, 0x07],
    ['an unknown command', 0x09, 0x07],
  ])('%s gets REP 07 and never reaches the opener', async (_name, cmd, rep) => {
    const fake = directOpener();
    const events: ProxyEvent[] = [];
    await withSocks({ opener: fake.opener, onEvent: (e) => events.push(e) }, async (port) => {
      const socket = await connectRaw(port);
      socket.write(Buffer.from([0x05, 0x01, 0x00]));
      expect((await readBytes(socket, 2)).toString('hex')).toBe('0500');
      socket.write(connectRequest('127.0.0.1', origin.port, cmd));
      expect((await readBytes(socket, 10)).toString('hex')).toBe(reply(rep));
      expect((await readAll(socket)).data.length).toBe(0);
      await stillServes(port);
    });
    expect(fake.calls.map((c) => c.destination.port)).toEqual([origin.port]); // only stillServes' request
    expect(events[0]).toMatchObject({ type: 'client-error', state: 'request' });
  });

  it('an unknown address type gets REP 08', async () => {
    await withSocks({ opener: directOpener().opener }, async (port) => {
      const socket = await connectRaw(port);
      socket.write(Buffer.from([0x05, 0x01, 0x00]));
      await readBytes(socket, 2);
      socket.write(Buffer.from([0x05, 0x01, 0x00, 0x02, 1, 2, 3, 4, 0, 80]));
      expect((await readBytes(socket, 10)).toString('hex')).toBe(reply(8));
    });
  });

  it('an IPv6 literal with leading zeros reaches the opener intact (raw ATYP 04, no IPv6 needed)', async () => {
    const fake = directOpener({ '2001:db8:102:304::1': '127.0.0.1', '1:203:405:607:809:a0b:c0d:e0f': '127.0.0.1' });
    await withSocks({ opener: fake.opener }, async (port) => {
      for (const host of ['2001:db8:102:304::1', '1:203:405:607:809:a0b:c0d:e0f']) {
        const socket = await connectRaw(port);
        expect((await socksConnect(socket, host, origin.port)).toString('hex')).toBe(SUCCESS);
        socket.destroy();
      }
    });
    expect(fake.calls.map((c) => c.destination)).toEqual([
      { type: 'ipv6', host: '2001:db8:102:304::1', port: origin.port },
      { type: 'ipv6', host: '1:203:405:607:809:a0b:c0d:e0f', port: origin.port },
    ]);
  });

  it('a destination with port 0 or control characters is refused with REP 01 before any open', async () => {
    const fake = directOpener();
    await withSocks({ opener: fake.opener }, async (port, server) => {
      for (const [host, p] of [
        ['127.0.0.1', 0],
        ['bad\nname', 80],
      ] as const) {
        const socket = await connectRaw(port);
        expect((await socksConnect(socket, host, p)).toString('hex')).toBe(reply(1));
      }
      expect(server.stats().clientErrors).toBe(2);
    });
    expect(fake.calls).toEqual([]);
  });
});

describe('hostile clients', () => {
  const cases: [string, (s: Socket) => void, RegExp | null][] = [
    ['wrong version (a SOCKS4 request)', (s) => s.write(Buffer.from('040100507f00000100', 'hex')), /Incompatible SOCKS protocol version: 4/],
    ['an empty method list', (s) => s.write(Buffer.from([0x05, 0x00])), /empty methods/],
    ['a truncated greeting, then FIN', (s) => s.end(Buffer.from([0x05, 0x03, 0x00])), /middle of the handshake/],
    ['a truncated request, then FIN', (s) => s.end(Buffer.from('050100050100030a6578', 'hex')), /middle of the handshake/],
    ['only method 0x02 offered to a server without auth', (s) => s.write(Buffer.from([0x05, 0x01, 0x02])), /No acceptable authentication/],
    ['1 MiB of junk after a valid greeting', (s) => s.write(Buffer.concat([Buffer.from([0x05, 0x01, 0x00]), Buffer.alloc(1 << 20, 0xaa)])), /Incompatible/],
    ['a request with a wrong version octet', (s) => s.write(Buffer.from('050100040100017f0000010050', 'hex')), /Incompatible SOCKS protocol version: 4/],
    ['silence (slowloris)', () => {}, /handshake not complete within 300 ms/],
    ['one byte, then silence (slowloris)', (s) => s.write(Buffer.from([0x05])), /handshake not complete within 300 ms/],
  ];

  it.each(cases)('%s: socket closed, clear error, server still serving', async (_name, send, message) => {
    const events: ProxyEvent[] = [];
    await withSocks({ opener: directOpener().opener, handshakeTimeout: 300, onEvent: (e) => events.push(e) }, async (port, server) => {
      const socket = await connectRaw(port);
      const done = readAll(socket);
      send(socket);
      const { data } = await done; // resolves only once the server closed the socket
      expect(data.length).toBeLessThanOrEqual(12);
      await stillServes(port);
      expect(server.stats().clientErrors).toBe(1);
    });
    expect(events.filter((e) => e.type === 'client-error')).toMatchObject([{ message: expect.stringMatching(message!) }]);
  });

  it('a bare connect-and-close (port probe) is not reported', async () => {
    const events: ProxyEvent[] = [];
    await withSocks({ opener: directOpener().opener, onEvent: (e) => events.push(e) }, async (port, server) => {
      const socket = await connectRaw(port);
      socket.end();
      await readAll(socket);
      await stillServes(port);
      expect(server.stats().clientErrors).toBe(0);
    });
    expect(events.map((e) => e.type)).toEqual(['opened']);
  });

  it('connections beyond maxConnections are dropped at accept when every one is established', async () => {
    await withSocks({ opener: directOpener().opener, maxConnections: 1 }, async (port, server) => {
      const first = await connectRaw(port);
      expect((await socksConnect(first, '127.0.0.1', origin.port)).toString('hex')).toBe(SUCCESS); // piping: never evicted
      const second = await connectRaw(port);
      const { data } = await readAll(second);
      expect(data.length).toBe(0);
      expect(server.stats()).toMatchObject({ accepted: 1, dropped: 1, evicted: 0 });
      first.end('GET /echo HTTP/1.0\r\n\r\n');
      expect((await readAll(first)).data.toString()).toMatch(/^HTTP\/1\.1 200 OK/);
    });
  });

  it('at maxConnections a new connection evicts the oldest still in its handshake instead of being dropped', async () => {
    await withSocks({ opener: directOpener().opener, maxConnections: 1 }, async (port, server) => {
      const first = await connectRaw(port);
      first.write(Buffer.from([0x05, 0x01, 0x00]));
      await readBytes(first, 2); // the first is surely accepted, and idles after its greeting
      const firstGone = readAll(first);
      await stillServes(port);
      expect((await firstGone).data.length).toBe(0);
      expect(server.stats()).toMatchObject({ accepted: 2, dropped: 0, evicted: 1 });
    });
  });
});

describe('username/password on the wire', () => {
  const auth = { username: 'alice', password: 's3cret' };
  const credentials = (user: string, pass: string): Buffer =>
    Buffer.concat([Buffer.from([0x01, user.length]), Buffer.from(user), Buffer.from([pass.length]), Buffer.from(pass)]);

  it('concurrent clients whose credentials arrive byte by byte, interleaved, each get their own verdict', async () => {
    await withSocks({ opener: directOpener().opener, auth }, async (port) => {
      const clients = await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const socket = await connectRaw(port);
          socket.setNoDelay(true);
          socket.write(Buffer.from([0x05, 0x01, 0x02]));
          expect((await readBytes(socket, 2)).toString('hex')).toBe('0502');
          return { socket, bytes: i % 2 === 0 ? credentials('alice', 's3cret') : credentials('mallory', 'guess!') };
        }),
      );
      const verdicts = clients.map((c) => readBytes(c.socket, 2).then((b) => b.toString('hex')));
      const longest = Math.max(...clients.map((c) => c.bytes.length));
      for (let i = 0; i < longest; i++) for (const c of clients) if (i < c.bytes.length) c.socket.write(c.bytes.subarray(i, i + 1));
      expect(await Promise.all(verdicts)).toEqual(clients.map((_, i) => (i % 2 === 0 ? '0100' : '0101')));
      for (const c of clients) c.socket.destroy();
      await stillServesWithAuth(port);
    });
  });

  it('a bad sub-negotiation version is refused and the socket closed', async () => {
    await withSocks({ opener: directOpener().opener, auth }, async (port, server) => {
      const socket = await connectRaw(port);
      socket.write(Buffer.from([0x05, 0x01, 0x02]));
      await readBytes(socket, 2);
      socket.write(Buffer.from([0x05, 0x05]));
      await readAll(socket);
      expect(server.stats().authFailures).toBe(1);
    });
  });

  async function stillServesWithAuth(port: number): Promise<void> {
    const socket = await connectRaw(port);
    socket.write(Buffer.from([0x05, 0x01, 0x02]));
    await readBytes(socket, 2);
    socket.write(credentials('alice', 's3cret'));
    expect((await readBytes(socket, 2)).toString('hex')).toBe('0100');
    socket.write(connectRequest('127.0.0.1', origin.port));
    expect((await readBytes(socket, 10)).toString('hex')).toBe(SUCCESS);
    socket.destroy();
  }
});

describe('while the opener works', () => {
  it.each([
    ['closes (FIN)', (s: Socket) => s.end()],
    ['is destroyed', (s: Socket) => s.destroy()],
    ['resets (RST)', (s: Socket) => s.resetAndDestroy()],
  ])('a client that %s aborts the open through the AbortSignal', async (_name, leave) => {
    const silent = silentOpener();
    await withSocks({ opener: silent.opener }, async (port, server) => {
      const socket = await connectRaw(port);
      socket.write(Buffer.from([0x05, 0x01, 0x00]));
      await readBytes(socket, 2);
      socket.write(connectRequest('gkd-test.invalid', 443));
      await silent.called;
      leave(socket);
      expect(await silent.aborted).toMatchObject({ message: 'client connection closed' });
      expect(server.stats()).toMatchObject({ cancelled: 1, opened: 0 });
    });
  });

  it('bytes the client sends before the reply are delivered first, in order', async () => {
    const echo = new PassThrough();
    await withSocks({ opener: fixedOpener(echo).opener }, async (port) => {
      const socket = await connectRaw(port);
      socket.write(Buffer.from([0x05, 0x01, 0x00]));
      await readBytes(socket, 2);
      socket.write(Buffer.concat([connectRequest('127.0.0.1', 9), Buffer.from('early bird')]));
      expect((await readBytes(socket, 10)).toString('hex')).toBe(SUCCESS);
      socket.write(' and the worm');
      expect((await readBytes(socket, 23)).toString()).toBe('early bird and the worm');
      socket.destroy();
    });
  });
});

describe('piping', () => {
  it('half-close: the client FIN reaches the remote, and the remote can still answer', async () => {
    const remoteServer = net.createServer({ allowHalfOpen: true }, (s) => {
      let n = 0;
      s.on('data', (c: Buffer) => (n += c.length));
      s.on('end', () => s.end(`received ${n} bytes`));
    });
    remoteServer.listen(0, '127.0.0.1');
    await once(remoteServer, 'listening');
    const remotePort = (remoteServer.address() as AddressInfo).port;
    await withSocks({ opener: directOpener().opener }, async (port) => {
      const socket = await connectRaw(port);
      expect((await socksConnect(socket, '127.0.0.1', remotePort)).toString('hex')).toBe(SUCCESS);
      socket.end(Buffer.alloc(300_000, 1));
      const { data, error } = await readAll(socket);
      expect(error).toBeUndefined();
      expect(data.toString()).toBe('received 300000 bytes');
    });
    remoteServer.close();
  });

  it('the remote ending ends the client socket while the client may still send', async () => {
    const received: Buffer[] = [];
    const remote = new Duplex({
      read() {},
      write(chunk: Buffer, _e, cb) {
        received.push(chunk);
        cb();
      },
    });
    await withSocks({ opener: fixedOpener(remote).opener }, async (port) => {
      const socket = await connectRaw(port);
      expect((await socksConnect(socket, '127.0.0.1', 9)).toString('hex')).toBe(SUCCESS);
      remote.push('bye');
      remote.push(null);
      const ended = once(socket, 'end');
      expect((await readBytes(socket, 3)).toString()).toBe('bye');
      socket.resume();
      await ended;
      const finished = once(remote, 'finish');
      socket.end('late words');
      await finished;
      expect(Buffer.concat(received).toString()).toBe('late words');
    });
  });

  it('a remote error resets the client (RST), so a cut transfer never looks complete', async () => {
    const echo = new PassThrough();
    await withSocks({ opener: fixedOpener(echo).opener }, async (port) => {
      const socket = await connectRaw(port);
      expect((await socksConnect(socket, '127.0.0.1', 9)).toString('hex')).toBe(SUCCESS);
      socket.write('ping');
      expect((await readBytes(socket, 4)).toString()).toBe('ping');
      const result = readAll(socket);
      echo.destroy(new Error('stream reset by peer'));
      expect((await result).error?.code).toBe('ECONNRESET');
    });
  });

  it('a client error destroys the remote', async () => {
    const echo = new PassThrough();
    await withSocks({ opener: fixedOpener(echo).opener }, async (port) => {
      const socket = await connectRaw(port);
      expect((await socksConnect(socket, '127.0.0.1', 9)).toString('hex')).toBe(SUCCESS);
      const closed = once(echo, 'close');
      socket.resetAndDestroy();
      await closed;
      expect(echo.destroyed).toBe(true);
    });
  });

  it('backpressure: a client that does not read pauses the remote, then gets every byte', async () => {
    const chunk = randomBytes(64 * 1024);
    const total = 128 * 1024 * 1024;
    let produced = 0;
    const remote = new Duplex({
      read() {
        if (produced >= total) return void this.push(null);
        produced += chunk.length;
        this.push(chunk);
      },
      write(_c, _e, cb) {
        cb();
      },
    });
    // Without backpressure the remote would be drained to its end into the proxy's memory.
    const firstStop = Promise.race([once(remote, 'pause').then(() => 'paused'), once(remote, 'end').then(() => 'ended')]);
    await withSocks({ opener: fixedOpener(remote).opener }, async (port) => {
      const socket = await connectRaw(port);
      expect((await socksConnect(socket, '127.0.0.1', 9)).toString('hex')).toBe(SUCCESS);
      // From here nothing reads the client socket (readBytes left it paused).
      expect(await firstStop).toBe('paused');
      expect(produced).toBeLessThan(total / 4);
      const hash = createHash('sha256');
      let got = 0;
      socket.on('data', (c: Buffer) => {
        hash.update(c);
        got += c.length;
      });
      socket.resume();
      await once(socket, 'end');
      expect(got).toBe(total);
      const expected = createHash('sha256');
      for (let i = 0; i < total / chunk.length; i++) expected.update(chunk);
      expect(hash.digest('hex')).toBe(expected.digest('hex'));
      socket.destroy();
    });
  });

  it('close() drops piping clients and destroys their remotes', async () => {
    const echo = new PassThrough();
    const server = await SocksServer.listen({ port: 0, opener: fixedOpener(echo).opener });
    const socket = await connectRaw(server.address().port);
    expect((await socksConnect(socket, '127.0.0.1', 9)).toString('hex')).toBe(SUCCESS);
    const result = readAll(socket);
    await server.close();
    await result;
    expect(echo.destroyed).toBe(true);
    expect(server.stats().active).toBe(0);
  });

  it('an onEvent hook that throws does not disturb the proxy', async () => {
    await withSocks(
      {
        opener: failingOpener(5).opener,
        onEvent: () => {
          throw new Error('logger down');
        },
      },
      async (port) => {
        const socket = await connectRaw(port);
        expect((await socksConnect(socket, '127.0.0.1', 80)).toString('hex')).toBe(reply(5));
      },
    );
  });
});

it('sha256 helper sanity', () => {
  expect(sha256(Buffer.from(''))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});
