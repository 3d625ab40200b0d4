import { PassThrough } from 'node:stream';
import { ConfigError, NoTunnelError, OpenFailedError, Reason, SessionLostError, StreamResetError } from '@gkd/protocol';
import { describe, expect, it } from 'vitest';
import { toDestination } from '../src/destination.js';
import { endToEndHeaders, parseAuthority, rawResponse } from '../src/http-headers.js';
import {
  classifyOpenError,
  defaultHttpProxyConfig,
  defaultSocksServerConfig,
  openWithin,
  OpenTimeoutError,
  resolveHttpProxyConfig,
  resolveSocksServerConfig,
  type Opener,
} from '../src/index.js';

const opener: Opener = () => new Promise(() => {});

describe('config', () => {
  it('fills defaults', () => {
    const c = resolveSocksServerConfig({ opener });
    expect(c).toMatchObject({ host: '127.0.0.1', port: 1080, handshakeTimeout: 10_000, openTimeout: 15_000, auth: undefined });
    expect(resolveHttpProxyConfig({ opener })).toMatchObject({ ...defaultHttpProxyConfig, opener });
    expect(defaultSocksServerConfig.maxConnections).toBe(4096);
  });

  it.each([
    [{ port: 70000 }, /port/],
    [{ port: 1.5 }, /port/],
    [{ host: '' }, /host/],
    [{ handshakeTimeout: 0 }, /handshakeTimeout/],
    [{ openTimeout: -1 }, /openTimeout/],
    [{ maxConnections: 0 }, /maxConnections/],
    [{ maxHandshakes: 0 }, /maxHandshakes/],
    [{ maxHandshakesPerAddress: 0 }, /maxHandshakesPerAddress/],
    [{ maxHandshakes: 8, maxHandshakesPerAddress: 9 }, /maxHandshakesPerAddress must be an integer in \[1, 8\]/],
    [{ auth: { username: '', password: 'x' } }, /auth\.username/],
    [{ auth: { username: 'u', password: 'x'.repeat(256) } }, /auth\.password/],
    [{ opener: 42 }, /opener/],
    [{ onEvent: 'log' }, /onEvent/],
  ])('rejects %o with a ConfigError naming the option', (bad, name) => {
    const attempt = (): unknown => resolveSocksServerConfig({ opener, ...(bad as object) });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(name);
  });

  it('validates the HTTP proxy options', () => {
    expect(() => resolveHttpProxyConfig({ opener, maxHeaderSize: 10 })).toThrow(/maxHeaderSize/);
    expect(() => resolveHttpProxyConfig({ opener, headersTimeout: 0 })).toThrow(/headersTimeout/);
    expect(() => resolveHttpProxyConfig({ opener, port: -1 })).toThrow(ConfigError);
    expect(() => resolveHttpProxyConfig({ opener, maxHandshakes: 1.5 })).toThrow(/maxHandshakes/);
  });
});

describe('classifyOpenError', () => {
  it.each([
    [new OpenFailedError(Reason.NOT_ALLOWED), 'NOT_ALLOWED', 0x02, 403],
    [new OpenFailedError(Reason.NETWORK_UNREACHABLE), 'NETWORK_UNREACHABLE', 0x03, 502],
    [new OpenFailedError(Reason.HOST_UNREACHABLE), 'HOST_UNREACHABLE', 0x04, 502],
    [new OpenFailedError(Reason.CONNECTION_REFUSED), 'CONNECTION_REFUSED', 0x05, 502],
    [new OpenFailedError(Reason.TIMEOUT), 'TIMEOUT', 0x06, 504],
    [new OpenFailedError(Reason.GENERAL_FAILURE), 'GENERAL_FAILURE', 0x01, 502],
    [new OpenFailedError(Reason.LIMIT_EXCEEDED), 'GENERAL_FAILURE', 0x01, 502],
    [new OpenTimeoutError(100), 'NO_ANSWER', 0x01, 504],
    [new NoTunnelError('no tunnel'), 'UNAVAILABLE', 0x01, 503],
    [new SessionLostError('gone'), 'UNAVAILABLE', 0x01, 503],
    [new StreamResetError(Reason.CONNECTION_REFUSED), 'GENERAL_FAILURE', 0x01, 502],
    [new Error('boom'), 'GENERAL_FAILURE', 0x01, 502],
    ['a string', 'GENERAL_FAILURE', 0x01, 502],
  ])('%s → %s, REP %i, HTTP %i', (err, kind, rep, status) => {
    expect(classifyOpenError(err)).toMatchObject({ kind, rep, status });
  });
});

describe('toDestination', () => {
  it('recognises literals, canonicalises IPv6 and keeps names unresolved', () => {
    expect(toDestination('10.0.0.1', 80)).toEqual({ type: 'ipv4', host: '10.0.0.1', port: 80 });
    expect(toDestination('2001:0db8:0102:0304:0000:0000:0000:0001', 443)).toEqual({ type: 'ipv6', host: '2001:db8:102:304::1', port: 443 });
    expect(toDestination('[::1]', 1)).toEqual({ type: 'ipv6', host: '::1', port: 1 });
    expect(toDestination('example.com', 443)).toEqual({ type: 'domain', host: 'example.com', port: 443 });
  });
  it.each([
    ['', 80],
    ['a b', 80],
    ['a\u0000b', 80],
    ['x'.repeat(256), 80],
    ['example.com', 0],
  ])('rejects %j port %i', (host, port) => {
    expect(() => toDestination(host, port)).toThrow(RangeError);
  });
});

describe('HTTP header helpers', () => {
  it('drops hop-by-hop, Proxy-* and Connection-named headers, keeps order, case and repeats', () => {
    const raw = [
      'Host',
      'a',
      'Proxy-Authorization',
      'Basic x',
      'Connection',
      'keep-alive, X-Secret',
      'X-Secret',
      '1',
      'Keep-Alive',
      '5',
      'TE',
      'trailers',
      'Transfer-Encoding',
      'chunked',
      'Upgrade',
      'h2c',
      'Proxy-Connection',
      'keep-alive',
      'Set-Cookie',
      'a=1',
      'set-cookie',
      'b=2',
      'X-Keep',
      'yes',
    ];
    expect(endToEndHeaders(raw)).toEqual(['Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'X-Keep', 'yes']);
  });
  it('parses CONNECT authorities', () => {
    expect(parseAuthority('example.com:443')).toEqual({ host: 'example.com', port: 443 });
    expect(parseAuthority('[2001:db8::1]:8443')).toEqual({ host: '2001:db8::1', port: 8443 });
    for (const bad of ['example.com', ':443', 'a:b', '/x:1', 'a b:1', '[::1]']) expect(() => parseAuthority(bad)).toThrow(RangeError);
  });
  it('builds self-delimited responses', () => {
    expect(rawResponse(502, 'nope')).toBe(
      'HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope\n',
    );
  });
});

describe('openWithin', () => {
  const dest = { type: 'ipv4', host: '10.0.0.1', port: 80 } as const;

  it('rejects with OpenTimeoutError and aborts the opener when it does not answer', async () => {
    let signal: AbortSignal | undefined;
    const err = await openWithin(
      (_d, s) => {
        signal = s;
        return new Promise(() => {});
      },
      dest,
      20,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenTimeoutError);
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBe(err);
  });

  it('destroys a duplex that arrives after the wait ended', async () => {
    let resolveLate!: (d: PassThrough) => void;
    const controller = new AbortController();
    const pending = openWithin(() => new Promise((r) => (resolveLate = r)), dest, 60_000, controller.signal).catch((e: unknown) => e);
    controller.abort(new Error('client left'));
    expect(((await pending) as Error).message).toBe('client left');
    const late = new PassThrough();
    resolveLate(late);
    await new Promise((r) => late.once('close', r));
    expect(late.destroyed).toBe(true);
  });

  it('passes a synchronous throw through as a rejection', async () => {
    const boom: Opener = () => {
      throw new Error('sync boom');
    };
    await expect(openWithin(boom, dest, 1000)).rejects.toThrow('sync boom');
  });
});
