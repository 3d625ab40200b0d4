import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { NoTunnelError } from '@gkd/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpProxyServer, type HttpProxyOptions, type Opener, type ProxyEvent } from '../src/index.js';
import { connectRaw, curl, directOpener, failingOpener, fixedOpener, readAll, readBytes, sha256, silentOpener, startOrigin, type Origin } from './helpers.js';

let origin: Origin;
beforeAll(async () => {
  origin = await startOrigin('127.0.0.1');
});
afterAll(() => origin.close());

async function withProxy(
  options: Partial<HttpProxyOptions> & { opener: Opener },
  run: (proxy: string, server: HttpProxyServer) => Promise<void>,
): Promise<void> {
  const server = await HttpProxyServer.listen({ port: 0, ...options });
  try {
    await run(`http://127.0.0.1:${server.address().port}`, server);
  } finally {
    await server.close();
  }
}

describe('plain HTTP through the proxy (curl -x)', () => {
  it('downloads 4 MiB byte-exact, with the request line rewritten to origin-form', async () => {
    const fake = directOpener();
    await withProxy({ opener: fake.opener }, async (proxy) => {
      const before = origin.requests.length;
      const r = await curl(['-x', proxy, `http://127.0.0.1:${origin.port}/blob`]);
      expect(r.stderr).toBe('');
      expect(sha256(r.stdout)).toBe(origin.blobSha);
      expect(origin.requests.slice(before).map((q) => q.url)).toEqual(['/blob']);
    });
    expect(fake.calls.map((c) => c.destination)).toEqual([{ type: 'ipv4', host: '127.0.0.1', port: origin.port }]);
  });

  it('drops hop-by-hop and Proxy-* headers both ways, sets Host and Connection: close upstream, passes names unresolved', async () => {
    const fake = directOpener({ localhost: '127.0.0.1' });
    await withProxy({ opener: fake.opener }, async (proxy) => {
      const r = await curl([
        '-x',
        proxy,
        '-D',
        '-',
        '-H',
        'Proxy-Authorization: Basic eDp5',
        '-H',
        'Connection: keep-alive, X-Secret',
        '-H',
        'X-Secret: 1',
        '-H',
        'Keep-Alive: timeout=5',
        '-H',
        'TE: trailers',
        '-H',
        'X-Keep: yes',
        `http://localhost:${origin.port}/echo?q=1`,
      ]);
      expect(r.stderr).toBe('');
      const text = r.stdout.toString();
      const [head, body] = text.split('\r\n\r\n') as [string, string];
      expect(head).not.toMatch(/X-Hop/i); // the origin named it in Connection
      const seen = JSON.parse(body) as { url: string; rawHeaders: string[] };
      expect(seen.url).toBe('/echo?q=1');
      const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      expect(names).not.toContain('proxy-authorization');
      expect(names).not.toContain('x-secret');
      expect(names).not.toContain('keep-alive');
      expect(names).not.toContain('te');
      expect(seen.rawHeaders).toEqual(expect.arrayContaining(['X-Keep', 'yes', 'Host', `localhost:${origin.port}`, 'Connection', 'close']));
    });
    expect(fake.calls.map((c) => c.destination)).toEqual([{ type: 'domain', host: 'localhost', port: origin.port }]);
  });

  it('keeps the client connection alive across requests (one upstream connection each)', async () => {
    await withProxy({ opener: directOpener().opener }, async (proxy, server) => {
      const r = await curl(['-x', proxy, `http://127.0.0.1:${origin.port}/echo?a`, `http://127.0.0.1:${origin.port}/echo?b`]);
      expect(r.code).toBe(0);
      expect(server.stats()).toMatchObject({ accepted: 1, opened: 2 });
    });
  });

  it('forwards a request body byte-exact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gkd-http-'));
    const file = join(dir, 'body.bin');
    const body = randomBytes(3 * 1024 * 1024 + 7);
    writeFileSync(file, body);
    try {
      await withProxy({ opener: directOpener().opener }, async (proxy) => {
        const r = await curl(['-x', proxy, '--data-binary', `@${file}`, `http://127.0.0.1:${origin.port}/upload`]);
        expect(r.stdout.toString()).toBe(sha256(body));
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a response cut by the upstream reaches the client as an error, not as a short success', async () => {
    const cutter = net.createServer((s) => {
      s.once('data', () => {
        // chunked: a proxy that ended its response here would hand the client a well-formed, short body
        s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n');
        s.once('drain', () => s.destroy());
        if (s.writableLength === 0) s.destroy();
      });
    });
    cutter.listen(0, '127.0.0.1');
    await once(cutter, 'listening');
    await withProxy({ opener: directOpener().opener }, async (proxy) => {
      const r = await curl(['-x', proxy, `http://127.0.0.1:${(cutter.address() as AddressInfo).port}/`]);
      expect(r.code).toBe(18);
      expect(r.stderr).toMatch(/transfer closed with outstanding read data remaining/);
      expect(r.stdout.toString()).toBe('0123456789');
    });
    cutter.close();
  });
});

describe('CONNECT tunnels (curl -p -x)', () => {
  it('downloads 4 MiB byte-exact through a tunnel', async () => {
    const fake = directOpener();
    await withProxy({ opener: fake.opener }, async (proxy) => {
      const r = await curl(['-p', '-x', proxy, `http://127.0.0.1:${origin.port}/blob`]);
      expect(r.stderr).toBe('');
      expect(sha256(r.stdout)).toBe(origin.blobSha);
    });
    expect(fake.calls.map((c) => c.destination)).toEqual([{ type: 'ipv4', host: '127.0.0.1', port: origin.port }]);
  });

  it('bytes sent right behind the CONNECT request are delivered first', async () => {
    const echo = new PassThrough();
    await withProxy({ opener: fixedOpener(echo).opener }, async (proxy) => {
      const socket = await connectRaw(Number(new URL(proxy).port));
      socket.write('CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\nearly');
      const established = 'HTTP/1.1 200 Connection established\r\n\r\n';
      expect((await readBytes(socket, established.length)).toString()).toBe(established);
      socket.write(' bird');
      expect((await readBytes(socket, 10)).toString()).toBe('early bird');
      socket.destroy();
    });
  });
});

describe('failures map to HTTP statuses', () => {
  it.each([
    ['GENERAL_FAILURE', failingOpener(0x01).opener, 502],
    ['NOT_ALLOWED', failingOpener(0x02).opener, 403],
    ['NETWORK_UNREACHABLE', failingOpener(0x03).opener, 502],
    ['HOST_UNREACHABLE', failingOpener(0x04).opener, 502],
    ['CONNECTION_REFUSED', failingOpener(0x05).opener, 502],
    ['TIMEOUT', failingOpener(0x06).opener, 504],
    ['UNAVAILABLE', (() => Promise.reject(new NoTunnelError('no tunnel'))) as Opener, 503],
    ['NO_ANSWER', silentOpener().opener, 504],
  ])('%s → %i, for CONNECT and for plain requests', async (kind, opener, status) => {
    const events: ProxyEvent[] = [];
    await withProxy({ opener, openTimeout: 200, onEvent: (e) => events.push(e) }, async (proxy, server) => {
      const tunnel = await curl(['-p', '-x', proxy, `http://127.0.0.1:${origin.port}/blob`]);
      expect(tunnel.code).toBe(56);
      expect(tunnel.stderr).toBe(`curl: (56) CONNECT tunnel failed, response ${status}\n`);
      const plain = await curl(['-x', proxy, '-w', '\n%{http_code}', `http://127.0.0.1:${origin.port}/blob`]);
      expect(plain.stdout.toString()).toBe(`gkd: cannot reach 127.0.0.1:${origin.port}: ${kind}\n\n${status}`);
      expect(server.stats().failed[kind as 'TIMEOUT']).toBe(2);
    });
    expect(events).toMatchObject([
      { type: 'open-failed', proxy: 'http', kind, reply: status },
      { type: 'open-failed', proxy: 'http', kind, reply: status },
    ]);
  });
});

describe('hostile and malformed requests', () => {
  async function exchange(port: number, request: string | Buffer): Promise<string> {
    const socket = await connectRaw(port);
    const result = readAll(socket);
    socket.write(request);
    return (await result).data.toString();
  }
  async function stillServes(proxy: string): Promise<void> {
    const r = await curl(['-x', proxy, `http://127.0.0.1:${origin.port}/echo`]);
    expect(r.code).toBe(0);
  }

  it('headers over maxHeaderSize get 431 and a closed socket', async () => {
    // 4 KiB, below node's own 16 KiB default, so the test sees whether the option is applied.
    await withProxy({ opener: directOpener().opener, maxHeaderSize: 4096 }, async (proxy, server) => {
      const port = Number(new URL(proxy).port);
      const answer = await exchange(port, `GET http://127.0.0.1:${origin.port}/echo HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
      expect(server.stats().clientErrors).toBe(1);
      await stillServes(proxy);
    });
  });

  it('headers that never finish (slowloris) get 408 after headersTimeout and a closed socket', async () => {
    const events: ProxyEvent[] = [];
    await withProxy({ opener: directOpener().opener, headersTimeout: 300, onEvent: (e) => events.push(e) }, async (proxy) => {
      const answer = await exchange(Number(new URL(proxy).port), `GET http://127.0.0.1:${origin.port}/echo HTTP/1.1\r\nHost: x\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
      await stillServes(proxy);
    });
    expect(events[0]).toMatchObject({ type: 'client-error', proxy: 'http', message: expect.stringMatching(/^408/) });
  });

  it.each([
    ['an origin-form request (not a proxy request)', 'GET /echo HTTP/1.1\r\nHost: x\r\n\r\n', /send an absolute http:\/\/ URI/],
    ['an https:// absolute URI', 'GET https://127.0.0.1/ HTTP/1.1\r\nHost: x\r\n\r\n', /send an absolute http:\/\/ URI/],
    ['CONNECT without a port', 'CONNECT example.com HTTP/1.1\r\nHost: x\r\n\r\n', /CONNECT target must be host:port/],
    ['garbage', 'HELLO\r\n\r\n', /Bad Request/],
  ])('%s gets 400', async (_name, request, body) => {
    const fake = directOpener();
    await withProxy({ opener: fake.opener }, async (proxy) => {
      const answer = await exchange(Number(new URL(proxy).port), request);
      expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
      expect(answer).toMatch(body);
      await stillServes(proxy);
    });
    expect(fake.calls).toHaveLength(1); // stillServes only
  });

  it.each([
    ['CONNECT', 'CONNECT gkd-test.invalid:443 HTTP/1.1\r\nHost: gkd-test.invalid:443\r\n\r\n'],
    ['a plain request', 'GET http://gkd-test.invalid/ HTTP/1.1\r\nHost: gkd-test.invalid\r\n\r\n'],
  ])('a client that leaves during %s aborts the open', async (_name, request) => {
    const silent = silentOpener();
    await withProxy({ opener: silent.opener }, async (proxy, server) => {
      const socket = await connectRaw(Number(new URL(proxy).port));
      socket.write(request);
      await silent.called;
      socket.destroy();
      expect(await silent.aborted).toMatchObject({ message: 'client connection closed' });
      expect(server.stats().cancelled).toBe(1);
    });
    expect(silent.calls[0]?.destination).toMatchObject({ type: 'domain', host: 'gkd-test.invalid' });
  });
});

describe('proxy authentication (Proxy-Authorization: Basic)', () => {
  const auth = { username: 'alice', password: 'pässword:with colon' };
  const target = () => `http://127.0.0.1:${origin.port}/echo?auth`;

  it('plain HTTP: no credentials or wrong ones get 407 with a Basic challenge and never open; the right ones pass', async () => {
    const fake = directOpener();
    const events: ProxyEvent[] = [];
    await withProxy({ opener: fake.opener, auth, onEvent: (e) => events.push(e) }, async (proxy, server) => {
      const none = await curl(['-sS', '-D', '-', '-o', '/dev/null', '-x', proxy, target()]);
      expect(none.stdout.toString()).toMatch(/^HTTP\/1\.1 407 .*\r\n(.*\r\n)*Proxy-Authenticate: Basic realm="gkd"/i);
      const wrong = await curl(['-sS', '-D', '-', '-o', '/dev/null', '-x', proxy, '-U', 'alice:nope', target()]);
      expect(wrong.stdout.toString()).toMatch(/^HTTP\/1\.1 407 /);
      const wrongUser = await curl(['-sS', '-D', '-', '-o', '/dev/null', '-x', proxy, '-U', `bob:${auth.password}`, target()]);
      expect(wrongUser.stdout.toString()).toMatch(/^HTTP\/1\.1 407 /);
      expect(fake.calls).toHaveLength(0);
      const ok = await curl(['-sS', '-x', proxy, '-U', `${auth.username}:${auth.password}`, target()]);
      expect(ok.stderr).toBe('');
      expect((JSON.parse(ok.stdout.toString()) as { url: string }).url).toBe('/echo?auth');
      expect(fake.calls).toHaveLength(1);
      expect(server.stats().authFailures).toBe(3);
      expect(events.filter((e) => e.type === 'client-error' && e.state === 'auth')).toHaveLength(3);
    });
  });

  it('CONNECT: 407 without the right credentials (nothing opened), 200 and a byte-exact tunnel with them', async () => {
    const fake = directOpener();
    await withProxy({ opener: fake.opener, auth }, async (proxy, server) => {
      const denied = await curl(['-sS', '-p', '-x', proxy, '-o', '/dev/null', '-w', '%{http_connect}', `http://127.0.0.1:${origin.port}/blob`]);
      expect(denied.stdout.toString()).toBe('407');
      expect(denied.code).not.toBe(0);
      expect(fake.calls).toHaveLength(0);
      const r = await curl(['-sS', '-p', '-x', proxy, '-U', `${auth.username}:${auth.password}`, `http://127.0.0.1:${origin.port}/blob`]);
      expect(r.stderr).toBe('');
      expect(sha256(r.stdout)).toBe(origin.blobSha);
      expect(fake.calls).toHaveLength(1);
      expect(server.stats().authFailures).toBe(1);
    });
  });

  it('a malformed Proxy-Authorization (not Basic, no colon, bad base64) is a 407, not a crash', async () => {
    await withProxy({ opener: directOpener().opener, auth }, async (proxy) => {
      for (const header of ['Bearer abc', 'Basic', `Basic ${Buffer.from('nocolon').toString('base64')}`, 'Basic !!!', `Basic ${'A'.repeat(8000)}`]) {
        const r = await curl(['-sS', '-D', '-', '-o', '/dev/null', '-x', proxy, '-H', `Proxy-Authorization: ${header}`, target()]);
        expect(r.stdout.toString(), header).toMatch(/^HTTP\/1\.1 407 /);
      }
    });
  });

  it('auth is validated like the SOCKS one', async () => {
    await expect(HttpProxyServer.listen({ port: 0, opener: directOpener().opener, auth: { username: '', password: 'x' } })).rejects.toThrow(
      /auth\.username must be 1–255 bytes/,
    );
  });
});
