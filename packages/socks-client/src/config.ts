import { Buffer } from 'node:buffer';
import { ConfigError } from '@gkd/protocol';
import type { ProxyEvent } from './events.js';
import type { Opener } from './opener.js';
import type { Associator } from './udp-association.js';

/** Username and password a local client must present (SOCKS: RFC 1929; HTTP: Basic); each 1–255 bytes of UTF-8. */
export interface SocksAuth {
  username: string;
  password: string;
}

/** Settings of a SocksServer. All times in milliseconds. */
export interface SocksServerConfig {
  /** Address to listen on. Default `127.0.0.1`: an unauthenticated proxy on a public address is an open relay. */
  host: string;
  /** TCP port; 0 picks a free one. Default 1080. */
  port: number;
  /** Opens each proxied connection (the gkd transport in production). Required. */
  opener: Opener;
  /** Require username/password (method 0x02) instead of no authentication (0x00). Default: none. */
  auth: SocksAuth | undefined;
  /** From accept until the SOCKS request is complete (greeting, auth, request), in ms. Default 10 000. */
  handshakeTimeout: number;
  /** Longest wait for the opener's answer, in ms; then REP 0x01 and close. Default 15 000. */
  openTimeout: number;
  /**
   * Most client connections open at once, in the handshake or established. When all are taken, a new
   * connection evicts the oldest one still in its handshake; only when every one is established is the
   * newcomer refused at accept. Default 4096.
   */
  maxConnections: number;
  /**
   * Most connections still in their handshake (greeting, auth, request) at once; past it a new connection
   * evicts the oldest, so idle sockets cannot lock legitimate clients out. Default 4096, as
   * `maxConnections`: a local application may open a thousand connections at once, all from one
   * address, and must not evict its own handshakes; lower it for a listener other hosts can reach.
   */
  maxHandshakes: number;
  /** Most handshakes in progress from one remote address (at most `maxHandshakes`); past it a new one evicts that address's oldest. Default 4096 (local clients all come from 127.0.0.1). */
  maxHandshakesPerAddress: number;
  /** Called for each notable event (one per failed open, one per client dropped). Default: none. */
  onEvent: ((event: ProxyEvent) => void) | undefined;
  /** Opens a UDP association for each UDP ASSOCIATE. Default: none, and UDP ASSOCIATE gets REP 0x07. */
  associator: Associator | undefined;
  /** A UDP association with no datagram either way for this long is closed, in ms. Default 120 000. */
  udpIdleTimeout: number;
}

/** What SocksServer.listen takes: `opener` and any settings to change from the defaults. */
export type SocksServerOptions = Partial<SocksServerConfig> & { opener: Opener };

/** Settings of an HttpProxyServer. All times in milliseconds, sizes in bytes. */
export interface HttpProxyConfig {
  /** Address to listen on. Default `127.0.0.1`. */
  host: string;
  /** TCP port; 0 picks a free one. Default 8080. */
  port: number;
  /** Opens each proxied connection. Required. */
  opener: Opener;
  /** Longest time to receive a request's headers, in ms (against slowloris); then 408 and close. Default 10 000. */
  headersTimeout: number;
  /** Longest wait for the opener's answer, in ms; then 504. Default 15 000. */
  openTimeout: number;
  /** Largest request line plus headers, in bytes; larger gets 431 and close. Default 16 384. */
  maxHeaderSize: number;
  /**
   * Require `Proxy-Authorization: Basic` with this username and password (RFC 9110 §11.7.1, 407
   * otherwise) on every request and CONNECT. Default: none.
   */
  auth: SocksAuth | undefined;
  /**
   * Most client connections open at once, in the handshake or established. When all are taken, a new
   * connection evicts the oldest one still in its handshake; only when every one is established is the
   * newcomer refused at accept. Default 4096.
   */
  maxConnections: number;
  /**
   * Most connections still in their handshake (request headers not yet complete, or idle between keep-alive requests) at once; past it a new connection
   * evicts the oldest, so idle sockets cannot lock legitimate clients out. Default 4096, as
   * `maxConnections`: a local application may open a thousand connections at once, all from one
   * address, and must not evict its own handshakes; lower it for a listener other hosts can reach.
   */
  maxHandshakes: number;
  /** Most handshakes in progress from one remote address (at most `maxHandshakes`); past it a new one evicts that address's oldest. Default 4096 (local clients all come from 127.0.0.1). */
  maxHandshakesPerAddress: number;
  /** Called for each notable event (one per failed open, one per client dropped). Default: none. */
  onEvent: ((event: ProxyEvent) => void) | undefined;
}

/** What HttpProxyServer.listen takes: `opener` and any settings to change from the defaults. */
export type HttpProxyOptions = Partial<HttpProxyConfig> & { opener: Opener };

export const defaultSocksServerConfig: Omit<SocksServerConfig, 'opener'> = {
  host: '127.0.0.1',
  port: 1080,
  auth: undefined,
  handshakeTimeout: 10_000,
  openTimeout: 15_000,
  maxConnections: 4096,
  maxHandshakes: 4096,
  maxHandshakesPerAddress: 4096,
  onEvent: undefined,
  associator: undefined,
  udpIdleTimeout: 120_000,
};

export const defaultHttpProxyConfig: Omit<HttpProxyConfig, 'opener'> = {
  host: '127.0.0.1',
  port: 8080,
  headersTimeout: 10_000,
  openTimeout: 15_000,
  maxHeaderSize: 16 * 1024,
  auth: undefined,
  maxConnections: 4096,
  maxHandshakes: 4096,
  maxHandshakesPerAddress: 4096,
  onEvent: undefined,
};

const HOUR = 3_600_000;

/** Merge `options` over the defaults and validate every field; throws ConfigError naming the option. */
export function resolveSocksServerConfig(options: SocksServerOptions): SocksServerConfig {
  const c: SocksServerConfig = { ...defaultSocksServerConfig, ...withoutUndefined(options) } as SocksServerConfig;
  checkCommon(c);
  checkInt('handshakeTimeout', c.handshakeTimeout, 1, HOUR);
  checkInt('udpIdleTimeout', c.udpIdleTimeout, 1, 24 * HOUR);
  if (c.associator !== undefined && typeof c.associator !== 'function')
    throw new ConfigError('associator must be a function (signal) => Promise<DatagramAssociation>');
  checkAuth(c.auth);
  return c;
}

/** Merge `options` over the defaults and validate every field; throws ConfigError naming the option. */
export function resolveHttpProxyConfig(options: HttpProxyOptions): HttpProxyConfig {
  const c: HttpProxyConfig = { ...defaultHttpProxyConfig, ...withoutUndefined(options) } as HttpProxyConfig;
  checkCommon(c);
  checkInt('headersTimeout', c.headersTimeout, 1, HOUR);
  checkInt('maxHeaderSize', c.maxHeaderSize, 1024, 1024 * 1024);
  checkAuth(c.auth);
  return c;
}

function checkAuth(auth: SocksAuth | undefined): void {
  if (auth === undefined) return;
  if (typeof auth !== 'object' || auth === null) throw new ConfigError('auth must be { username, password }');
  checkCredential('auth.username', auth.username);
  checkCredential('auth.password', auth.password);
}

function checkCommon(c: SocksServerConfig | HttpProxyConfig): void {
  if (typeof c.host !== 'string' || c.host.length === 0) throw new ConfigError(`host must be a non-empty string, got ${String(c.host)}`);
  checkInt('port', c.port, 0, 65535);
  if (typeof c.opener !== 'function') throw new ConfigError('opener must be a function (destination, signal) => Promise<Duplex>');
  checkInt('openTimeout', c.openTimeout, 1, HOUR);
  checkInt('maxConnections', c.maxConnections, 1, 1_000_000);
  checkInt('maxHandshakes', c.maxHandshakes, 1, 1_000_000);
  checkInt('maxHandshakesPerAddress', c.maxHandshakesPerAddress, 1, c.maxHandshakes);
  if (c.onEvent !== undefined && typeof c.onEvent !== 'function') throw new ConfigError('onEvent must be a function');
}

function checkInt(name: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
}

function checkCredential(name: string, value: unknown): void {
  if (typeof value !== 'string') throw new ConfigError(`${name} must be a string`);
  const bytes = Buffer.byteLength(value);
  if (bytes < 1 || bytes > 255) throw new ConfigError(`${name} must be 1–255 bytes of UTF-8 (RFC 1929), got ${bytes}`);
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
