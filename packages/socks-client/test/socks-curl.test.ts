import dns from 'node:dns';
import { NoTunnelError } from '@gkd/protocol';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SocksServer, type Opener, type ProxyEvent } from '../src/index.js';
import { curl, directOpener, failingOpener, hasIPv6Loopback, sha256, silentOpener, startOrigin, type Origin } from './helpers.js';

// End to end with the real curl binary: curl → SocksServer → fake opener (node:net) → local HTTP origin.

const ipv6 = await hasIPv6Loopback();
if (!ipv6) console.log('IPv6 tests skipped: this machine cannot listen on [::1]');

let origin: Origin;
let origin6: Origin | undefined;

beforeAll(async () => {
  origin = await startOrigin('127.0.0.1');
  if (ipv6) origin6 = await startOrigin('::1');
});
afterAll(async () => {
  await origin.close();
  await origin6?.close();
});

async function withSocks<T>(
  options: Partial<Parameters<typeof SocksServer.listen>[0]> & { opener: Opener },
  run: (proxy: string, server: SocksServer) => Promise<T>,
): Promise<T> {
  const server = await SocksServer.listen({ port: 0, ...options });
  try {
    return await run(`127.0.0.1:${server.address().port}`, server);
  } finally {
    await server.close();
  }
}

describe('curl --socks5 (client resolves, IPv4)', () => {
  it('downloads 4 MiB byte-exact through the opener', async () => {
    const fake = directOpener();
    await withSocks({ opener: fake.opener }, async (proxy, server) => {
      const r = await curl(['--socks5', proxy, `http://127.0.0.1:${origin.port}/blob`]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.length).toBe(origin.blob.length);
      expect(sha256(r.stdout)).toBe(origin.blobSha);
      expect(fake.calls.map((c) => c.destination)).toEqual([{ type: 'ipv4', host: '127.0.0.1', port: origin.port }]);
      expect(server.stats()).toMatchObject({ accepted: 1, opened: 1 });
    });
  });
});

describe('curl --socks5-hostname (names are not resolved locally)', () => {
  it.each(['localhost', 'gkd-test.invalid'])('passes %s to the opener as a domain and downloads byte-exact', async (name) => {
    const fake = directOpener({ [name]: '127.0.0.1' });
    await withSocks({ opener: fake.opener }, async (proxy) => {
      const lookup = vi.spyOn(dns, 'lookup'); // after listen(), which looks up its own host
      try {
        const r = await curl(['--socks5-hostname', proxy, `http://${name}:${origin.port}/blob`]);
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        expect(sha256(r.stdout)).toBe(origin.blobSha);
        expect(lookup).not.toHaveBeenCalled(); // socksv5's own dns.lookup path is never taken
      } finally {
        lookup.mockRestore();
      }
    });
    expect(fake.calls.map((c) => c.destination)).toEqual([{ type: 'domain', host: name, port: origin.port }]);
  });
});

describe('IPv6', () => {
  it.skipIf(!ipv6)('downloads from [::1] byte-exact', async () => {
    const fake = directOpener();
    await withSocks({ opener: fake.opener }, async (proxy) => {
      const r = await curl(['--socks5', proxy, `http://[::1]:${origin6!.port}/blob`]);
      expect(r.stderr).toBe('');
      expect(sha256(r.stdout)).toBe(origin6!.blobSha);
    });
    expect(fake.calls.map((c) => c.destination)).toEqual([{ type: 'ipv6', host: '::1', port: origin6!.port }]);
  });

  it.skipIf(!ipv6)('hands an IPv6 literal with leading zeros in its byte pairs to the opener intact', async () => {
    // 2001:db8:102:304::1 has groups 0x0102 and 0x0304: unpatched socksv5 turned them into 102→12, 304→34.
    const fake = directOpener({ '2001:db8:102:304::1': '127.0.0.1' });
    await withSocks({ opener: fake.opener }, async (proxy) => {
      const r = await curl(['--socks5', proxy, `http://[2001:db8:102:304::1]:${origin.port}/blob`]);
      expect(r.stderr).toBe('');
      expect(sha256(r.stdout)).toBe(origin.blobSha);
    });
    expect(fake.calls.map((c) => c.destination)).toEqual([{ type: 'ipv6', host: '2001:db8:102:304::1', port: origin.port }]);
  });
});

describe('username/password (RFC 1929)', () => {
  const auth = { username: 'alice', password: 's3cret' };

  it('accepts the right credentials', async () => {
    await withSocks({ opener: directOpener().opener, auth }, async (proxy) => {
      const r = await curl(['-x', `socks5://alice:s3cret@${proxy}`, `http://127.0.0.1:${origin.port}/blob`]);
      expect(r.stderr).toBe('');
      expect(sha256(r.stdout)).toBe(origin.blobSha);
    });
  });

  it('rejects a wrong password, and a client that offers no credentials', async () => {
    const events: ProxyEvent[] = [];
    const fake = directOpener();
    await withSocks({ opener: fake.opener, auth, onEvent: (e) => events.push(e) }, async (proxy, server) => {
      const wrong = await curl(['-x', `socks5://alice:wrong@${proxy}`, `http://127.0.0.1:${origin.port}/blob`]);
      expect(wrong.code).toBe(97);
      expect(wrong.stderr).toBe('curl: (97) User was rejected by the SOCKS5 server (1 1).\n');
      const none = await curl(['-x', `socks5://${proxy}`, `http://127.0.0.1:${origin.port}/blob`]);
      expect(none.code).toBe(97);
      expect(none.stderr).toBe('curl: (97) No authentication method was acceptable.\n');
      expect(server.stats()).toMatchObject({ authFailures: 1, clientErrors: 1, opened: 0 });
    });
    expect(fake.calls).toEqual([]);
    expect(events).toMatchObject([
      { type: 'client-error', proxy: 'socks', state: 'auth', message: 'authentication failed for user "alice"' },
      { type: 'client-error', proxy: 'socks', state: 'greeting', message: 'No acceptable authentication method offered' },
    ]);
  });
});

describe('failure replies as curl reports them', () => {
  // curl 7.88 prints the REP code in parentheses, for every code; newer curls add text. We assert
  // the exit code 97 (CURLE_PROXY) and the code curl saw, which proves a full reply reached it
  // (with a 2-byte reply curl reports a closed connection instead).
  it.each([
    [0x01, 'GENERAL_FAILURE'],
    [0x02, 'NOT_ALLOWED'],
    [0x03, 'NETWORK_UNREACHABLE'],
    [0x04, 'HOST_UNREACHABLE'],
    [0x05, 'CONNECTION_REFUSED'],
    [0x06, 'TIMEOUT'],
  ])('OpenFailedError reason %i → REP %i (%s)', async (reason, kind) => {
    const events: ProxyEvent[] = [];
    await withSocks({ opener: failingOpener(reason).opener, onEvent: (e) => events.push(e) }, async (proxy, server) => {
      const r = await curl(['--socks5', proxy, `http://127.0.0.1:${origin.port}/blob`]);
      expect(r.code).toBe(97);
      expect(r.stderr).toBe(`curl: (97) Can't complete SOCKS5 connection to 127.0.0.1. (${reason})\n`);
      const named = await curl(['--socks5-hostname', proxy, `http://gkd-test.invalid:${origin.port}/blob`]);
      expect(named.stderr).toBe(`curl: (97) Can't complete SOCKS5 connection to gkd-test.invalid. (${reason})\n`);
      expect(server.stats().failed[kind as 'TIMEOUT']).toBe(2);
    });
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({ type: 'open-failed', proxy: 'socks', destination: `127.0.0.1:${origin.port}`, kind, reply: reason });
  });

  it('a connection refused at the destination (the real path) → REP 5', async () => {
    const closed = await startOrigin();
    const port = closed.port;
    await closed.close();
    await withSocks({ opener: directOpener().opener }, async (proxy) => {
      const r = await curl(['--socks5', proxy, `http://127.0.0.1:${port}/blob`]);
      expect(r.stderr).toBe(`curl: (97) Can't complete SOCKS5 connection to 127.0.0.1. (5)\n`);
    });
  });

  it.each([
    ['NoTunnelError', new NoTunnelError('no tunnel within 5000 ms'), 'UNAVAILABLE'],
    ['a plain Error', new Error('boom'), 'GENERAL_FAILURE'],
  ])('%s → REP 1', async (_name, error, kind) => {
    await withSocks({ opener: () => Promise.reject(error) }, async (proxy, server) => {
      const r = await curl(['--socks5', proxy, `http://127.0.0.1:${origin.port}/blob`]);
      expect(r.stderr).toBe(`curl: (97) Can't complete SOCKS5 connection to 127.0.0.1. (1)\n`);
      expect(server.stats().failed[kind as 'UNAVAILABLE']).toBe(1);
    });
  });

  it('an opener that never answers → REP 1 after openTimeout, and its signal is aborted', async () => {
    const silent = silentOpener();
    await withSocks({ opener: silent.opener, openTimeout: 200 }, async (proxy, server) => {
      const r = await curl(['--socks5', proxy, `http://127.0.0.1:${origin.port}/blob`]);
      expect(r.stderr).toBe(`curl: (97) Can't complete SOCKS5 connection to 127.0.0.1. (1)\n`);
      expect(await silent.aborted).toMatchObject({ name: 'OpenTimeoutError', timeout: 200 });
      expect(server.stats().failed.NO_ANSWER).toBe(1);
    });
  });
});
