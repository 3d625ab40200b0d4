import { availableParallelism } from 'node:os';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { ConfigError } from '@gkd/protocol';
import { DEFAULT_LIMITS, compilePolicy, type ServerLimits } from '@gkd/server';
import type { SocksAuth } from '@gkd/socks-client';
import { DEFAULT_PATH_TUNNELS, PathPlan, parseHostPort, parseKey, parseVia, type ClientTlsOptions, type HostPort, type PathOptions } from '@gkd/transport';
import { UsageError, type Args } from './args.js';
import { parseLink } from './link.js';
import { defaultStateDir } from './state.js';
import { checkCongestion } from './tuning.js';

/** Log verbosity. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
/** `pretty`: one human line per event; `json`: one JSON object per line. */
export type LogFormat = 'pretty' | 'json';

/** Default port of a gkd server. */
export const DEFAULT_SERVER_PORT = 9990;
/** Default SOCKS5 address. */
export const DEFAULT_SOCKS: HostPort = { host: '127.0.0.1', port: 1080 };

/** What every long-running command takes. */
export interface CommonSettings {
  logLevel: LogLevel;
  logFormat: LogFormat;
  /** Where to serve /metrics; undefined: no metrics. */
  metrics: HostPort | undefined;
  /** How long streams may drain after SIGINT/SIGTERM, in milliseconds. */
  drainMs: number;
  /** TCP congestion control for the tunnel sockets (checked against the kernel), or undefined for the system's. */
  congestion: string | undefined;
}

/** The server's destination policy rules (validated). */
export interface PolicySettings {
  allow: string[];
  deny: string[];
}

/** A TLS certificate, its key and the certificate's SHA-256 fingerprint (`AB:CD:…`, for clients to pin). */
export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
  fingerprint: string;
}

/** The server's identity as the flags give it; state.ts fills in what comes from --state-dir. */
export interface ServerIdentitySettings {
  listen: HostPort;
  /** One key, or several users (name → key); undefined: the key in the state directory. */
  auth: { key: Buffer } | { users: Record<string, Buffer>; file: string } | undefined;
  /** --tls-cert/--tls-key; 'self-signed': the state directory's certificate (the default); 'plaintext': --plaintext. */
  tls: TlsFiles | 'self-signed' | 'plaintext';
  /** The state directory (--state-dir, else the XDG default). */
  stateDir: string;
  /** How to name --state-dir in a message (with where it came from). */
  stateDirLabel: string;
  /** The key was given with --key (visible in `ps`). */
  keyOnCommandLine: boolean;
}

/** `gkd server`. */
export interface ServerSettings extends CommonSettings, PolicySettings, ServerIdentitySettings {
  /** Worker processes (1: this process serves the tunnels itself). Default: the available cores. */
  workers: number;
  /** The server limits given by flags (--max-peers, --max-tunnels-per-peer, …), per worker; the rest keep `@gkd/server`'s defaults. */
  limits: Partial<ServerLimits>;
  /** Every tunnel connection starts with a PROXY protocol header from a load balancer (--proxy-protocol). */
  proxyProtocol: boolean;
}

/** `gkd link`. */
export interface LinkSettings extends ServerIdentitySettings {
  /** --host; undefined: guess. */
  host: string | undefined;
  /** --user: only this user's link. */
  user: string | undefined;
}

/** The local proxy side, shared by `gkd client` and `gkd up`. */
export interface ProxySettings {
  /** A fixed count, or 'auto' (the client picks it between minTunnels and maxTunnels). */
  tunnels: number | 'auto';
  minTunnels: number;
  maxTunnels: number;
  /** With 'auto': the count to start from. */
  startTunnels: number;
  /** --start-tunnels was given: with several paths it is per path; else each path starts from its share of 8. */
  startTunnelsGiven: boolean;
  socks: HostPort;
  /** --socks was not given anywhere: `gkd up` may move to a free port. */
  socksIsDefault: boolean;
  http: HostPort | undefined;
  socksAuth: SocksAuth | undefined;
  /** No status line. */
  quiet: boolean;
}

/** `gkd client`. */
export interface ClientSettings extends CommonSettings, ProxySettings {
  /** The first server address (the one messages name). */
  server: HostPort;
  /** Every server address (--server repeated; the link gives one). */
  servers: HostPort[];
  /** --via paths; undefined: one path over the system's route. */
  paths: PathOptions[] | undefined;
  key: Buffer;
  user: string | undefined;
  /** Undefined only with --plaintext. */
  tls: ClientTlsOptions | undefined;
  keyOnCommandLine: boolean;
  /** The link was given on the command line (visible in `ps`). */
  linkOnCommandLine: boolean;
}

/** `gkd up`. */
export interface UpSettings extends CommonSettings, ProxySettings, PolicySettings {}

const NO_KEY_HINT =
  'Make one with `gkd keygen` and pass it as GKD_KEY=<key> (preferred: command lines are visible to other users), --key <key>, or "key" in the --config file.';

/** Validate the flags of `gkd server`. Throws UsageError naming the flag. */
export function serverSettings(args: Args): ServerSettings {
  return {
    ...common(args),
    ...policy(args),
    ...serverIdentity(args),
    workers: workerCount(args, args.string('workers')),
    limits: serverLimits(args),
    proxyProtocol: args.bool('proxy-protocol') ?? false,
  };
}

/** The server-limit flags: flag name → `@gkd/server` limit and its bounds (those `resolveServerConfig` enforces). */
export const LIMIT_FLAGS: readonly { flag: string; limit: keyof ServerLimits; max: number }[] = [
  { flag: 'max-peers', limit: 'maxPeers', max: 1_000_000 },
  { flag: 'max-tunnels-per-session', limit: 'maxTunnelsPerSession', max: 65_535 },
  { flag: 'max-tunnels-per-peer', limit: 'maxTunnelsPerPeer', max: 1_000_000 },
  { flag: 'max-total-tunnels', limit: 'maxTunnels', max: 1_000_000 },
  { flag: 'max-handshakes', limit: 'maxHandshakes', max: 1_000_000 },
  { flag: 'max-handshakes-per-address', limit: 'maxHandshakesPerAddress', max: 1_000_000 },
];

/** The server-limit flags given (1 up to each one's bound), checked together where one bounds another. */
function serverLimits(args: Args): Partial<ServerLimits> {
  const limits: Partial<ServerLimits> = {};
  for (const { flag, limit, max } of LIMIT_FLAGS) {
    const text = args.string(flag);
    if (text === undefined) continue;
    const n = Number(text);
    if (!/^\s*\d+\s*$/.test(text) || n < 1 || n > max) throw new UsageError(`${args.label(flag)} must be a number 1–${max}, got "${text}"`);
    limits[limit] = n;
  }
  const buffered = maxBuffered(args, args.string('max-buffered'));
  if (buffered !== undefined) limits.maxBufferedBytes = buffered;
  const perAddress = limits.maxHandshakesPerAddress ?? DEFAULT_LIMITS.maxHandshakesPerAddress;
  const total = limits.maxHandshakes ?? DEFAULT_LIMITS.maxHandshakes;
  if (perAddress > total)
    throw new UsageError(
      `${args.label(limits.maxHandshakesPerAddress === undefined ? 'max-handshakes' : 'max-handshakes-per-address')} leaves --max-handshakes-per-address (${perAddress}) above --max-handshakes (${total})`,
    );
  return limits;
}

/** --max-buffered: 0 (no server-wide bound) or 1–1 048 576 MiB, returned in bytes. */
function maxBuffered(args: Args, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || n > 1_048_576) throw new UsageError(`${args.label('max-buffered')} must be a number of MiB 0–1048576, got "${text}"`);
  return n * 1024 * 1024;
}

/**
 * --workers: a count 1–256, or `auto`; not given, `auto`: one per core Node reports as available
 * (`os.availableParallelism()`, which counts the CPUs this process may run on), at most 256.
 */
export function workerCount(args: Args, text: string | undefined, cores: number = availableParallelism()): number {
  if (text === undefined || text.trim() === 'auto') return Math.max(1, Math.min(256, cores));
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || n < 1 || n > 256) throw new UsageError(`${args.label('workers')} must be a number 1–256 or auto, got "${text}"`);
  return n;
}

/** Validate the flags of `gkd link`. Throws UsageError naming the flag. */
export function linkSettings(args: Args): LinkSettings {
  const host = args.string('host');
  if (host !== undefined && !/^(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*|[A-Za-z0-9.-]+)$/.test(host.trim())) {
    throw new UsageError(`${args.label('host')} must be a host name or an address (no port: that comes from --listen), got "${host}"`);
  }
  return { ...serverIdentity(args), host: host?.trim().replace(/^\[(.*)\]$/, '$1'), user: args.string('user') };
}

function serverIdentity(args: Args): ServerIdentitySettings {
  const usersFile = args.string('users');
  const keyText = args.string('key');
  let auth: ServerSettings['auth'];
  if (usersFile !== undefined && keyText !== undefined) {
    throw new UsageError(`give ${args.label('users')} or ${args.label('key')}, not both`);
  }
  if (usersFile !== undefined) auth = { users: loadUsers(args.label('users'), usersFile), file: usersFile };
  else if (keyText !== undefined) auth = { key: key(args, keyText) };

  const certFile = args.string('tls-cert');
  const keyFile = args.string('tls-key');
  let tls: ServerSettings['tls'] = 'self-signed';
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new UsageError(
      `${certFile === undefined ? args.label('tls-key') : args.label('tls-cert')} needs ${certFile === undefined ? '--tls-cert' : '--tls-key'} too`,
    );
  }
  const plaintext = args.bool('plaintext') ?? false;
  if (plaintext && certFile !== undefined) throw new UsageError(`give ${args.label('plaintext')} or ${args.label('tls-cert')}, not both`);
  if (certFile !== undefined && keyFile !== undefined) tls = serverTls(args, certFile, keyFile);
  else if (plaintext) tls = 'plaintext';

  const stateText = args.string('state-dir');
  if (stateText !== undefined && stateText.trim() === '') throw new UsageError(`${args.label('state-dir')} must be a directory, got ""`);
  return {
    listen: hostPort(args, 'listen', args.string('listen') ?? `0.0.0.0:${DEFAULT_SERVER_PORT}`, { host: '0.0.0.0' }),
    auth,
    tls,
    stateDir: resolve(stateText ?? defaultStateDir()),
    stateDirLabel: stateText === undefined ? 'the state directory' : args.label('state-dir'),
    keyOnCommandLine: args.onCommandLine('key'),
  };
}

/** Validate the flags of `gkd client`. Throws UsageError naming the flag. */
export function clientSettings(args: Args): ClientSettings {
  const linkText = args.string('link');
  if (linkText !== undefined) return clientFromLink(args, linkText);
  const keyText = args.string('key');
  if (keyText === undefined) throw new UsageError(`no key: the client needs the server's key. ${NO_KEY_HINT}`);
  const serverTexts = args.list('server');
  if (serverTexts === undefined || serverTexts.length === 0) throw new UsageError('needs --server HOST[:PORT], the gkd server to connect to');
  const servers = serverTexts.map((text) => hostPort(args, 'server', withDefaultPort(text), { minPort: 1 }));

  const user = args.string('user');
  if (user !== undefined && (user.length === 0 || Buffer.byteLength(user) > 255))
    throw new UsageError(`${args.label('user')} must be 1–255 bytes, got "${user}"`);

  return {
    ...common(args),
    ...proxy(args),
    ...multipath(args, servers),
    key: key(args, keyText),
    user,
    tls: clientTlsOrPlaintext(args),
    keyOnCommandLine: args.onCommandLine('key'),
    linkOnCommandLine: false,
  };
}

/** The flags a link replaces: giving one of them with a link is an error, not a silent override. */
const IN_THE_LINK = ['server', 'key', 'user', 'tls', 'tls-fingerprint', 'tls-ca'] as const;

function clientFromLink(args: Args, text: string): ClientSettings {
  const label = args.label('link');
  const link = parseLink(label, text);
  for (const name of IN_THE_LINK) {
    const set = name === 'tls' ? args.bool(name) !== undefined : args.string(name) !== undefined;
    if (set)
      throw new UsageError(`give ${label} or ${args.label(name)}, not both (the link holds the server, the key, the user and the certificate's fingerprint)`);
  }
  const plaintext = args.bool('plaintext') ?? false;
  let tls: ClientTlsOptions | undefined;
  if (link.tls === 'plaintext') {
    if (!plaintext) throw new UsageError(`${label} is for a server run with --plaintext: its tunnels are not encrypted. Add --plaintext to connect anyway`);
  } else {
    if (plaintext) throw new UsageError(`${args.label('plaintext')}, but ${label} pins the server's certificate: drop --plaintext`);
    tls = { fingerprint: link.tls.fingerprint };
  }
  let linkKey: Buffer;
  try {
    linkKey = parseKey('key=', link.key);
  } catch (err) {
    throw new UsageError(`${label}: ${(err as Error).message.replace(/; make one with `gkd keygen`$/, '')}`);
  }
  return {
    ...common(args),
    ...proxy(args),
    ...multipath(args, [{ host: link.host, port: link.port }]),
    key: linkKey,
    user: link.user,
    tls,
    keyOnCommandLine: false,
    linkOnCommandLine: args.onCommandLine('link'),
  };
}

/** The servers and the --via paths, checked together (a path of one address family needs a server address of it). */
function multipath(args: Args, servers: HostPort[]): { server: HostPort; servers: HostPort[]; paths: PathOptions[] | undefined } {
  const vias = args.list('via');
  let paths: PathOptions[] | undefined;
  try {
    paths = vias?.map((text) => parseVia(text, `${args.label('via')} ${text}`));
    const tunnelsText = args.string('tunnels') ?? 'auto';
    new PathPlan(servers, paths, tunnelsText.trim() === 'auto' ? DEFAULT_PATH_TUNNELS : integer(args, 'tunnels', tunnelsText, 1, 256));
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message.replace(/^paths(\[\d+\])?/, args.label('via')));
    throw err;
  }
  return { server: servers[0]!, servers, paths };
}

/** TLS settings from the flags; without any, the client refuses to start unless --plaintext. */
function clientTlsOrPlaintext(args: Args): ClientTlsOptions | undefined {
  const tls = clientTls(args);
  const plaintext = args.bool('plaintext') ?? false;
  if (plaintext) {
    if (tls !== undefined) throw new UsageError(`give ${args.label('plaintext')} or TLS flags (--tls, --tls-fingerprint, --tls-ca), not both`);
    return undefined;
  }
  if (tls === undefined) {
    throw new UsageError(
      "no way to check the server's certificate: pass the server's link (`gkd link` on the server prints it), " +
        '--tls-fingerprint (the server logs it), --tls-ca FILE, or --tls for a certificate from a public CA. ' +
        'For an unencrypted tunnel (trusted links, benchmarks), pass --plaintext here and on the server',
    );
  }
  return tls;
}

/** Validate the flags of `gkd up`. Throws UsageError naming the flag. */
export function upSettings(args: Args): UpSettings {
  return { ...common(args), ...proxy(args), ...policy(args) };
}

function common(args: Args): CommonSettings {
  const metrics = args.string('metrics');
  return {
    logLevel: oneOf(args, 'log-level', args.string('log-level') ?? 'info', ['error', 'warn', 'info', 'debug'] as const),
    logFormat: oneOf(args, 'log-format', args.string('log-format') ?? 'pretty', ['pretty', 'json'] as const),
    metrics: metrics === undefined ? undefined : hostPort(args, 'metrics', metrics),
    drainMs: seconds(args, 'drain-timeout', args.string('drain-timeout') ?? '10', 3600),
    congestion: congestion(args.string('congestion')),
  };
}

function congestion(name: string | undefined): string | undefined {
  if (name === undefined || name === '') return undefined;
  checkCongestion(name);
  return name;
}

function proxy(args: Args): ProxySettings {
  const socksText = args.string('socks');
  const httpText = args.string('http');
  const user = args.string('socks-user');
  const pass = args.string('socks-pass');
  if ((user === undefined) !== (pass === undefined)) {
    throw new UsageError(
      `${user === undefined ? args.label('socks-pass') : args.label('socks-user')} needs ${user === undefined ? '--socks-user' : '--socks-pass'} too`,
    );
  }
  for (const [name, v] of [
    ['socks-user', user],
    ['socks-pass', pass],
  ] as const) {
    if (v !== undefined && (v.length === 0 || Buffer.byteLength(v) > 255)) throw new UsageError(`${args.label(name)} must be 1–255 bytes (RFC 1929)`);
  }
  const socks = socksText === undefined ? DEFAULT_SOCKS : hostPort(args, 'socks', socksText);
  const http = httpText === undefined ? undefined : hostPort(args, 'http', httpText);
  if (http && http.port !== 0 && http.port === socks.port && http.host === socks.host) {
    throw new UsageError(`${args.label('http')} and --socks cannot share ${http.host}:${http.port}`);
  }
  const tunnelsText = args.string('tunnels') ?? 'auto';
  const tunnels = tunnelsText.trim() === 'auto' ? 'auto' : integer(args, 'tunnels', tunnelsText, 1, 256);
  const minText = args.string('min-tunnels');
  const maxText = args.string('max-tunnels');
  const startText = args.string('start-tunnels');
  if (tunnels !== 'auto' && (minText !== undefined || maxText !== undefined || startText !== undefined)) {
    const given = minText !== undefined ? 'min-tunnels' : maxText !== undefined ? 'max-tunnels' : 'start-tunnels';
    throw new UsageError(`${args.label(given)} is for --tunnels auto; ${args.label('tunnels')} ${tunnels} fixes the count`);
  }
  const minTunnels = integer(args, 'min-tunnels', minText ?? '2', 1, 256);
  const maxTunnels = integer(args, 'max-tunnels', maxText ?? String(Math.max(32, minTunnels)), 1, 256);
  if (maxTunnels < minTunnels) throw new UsageError(`${args.label('max-tunnels')} (${maxTunnels}) must be at least --min-tunnels (${minTunnels})`);
  const startTunnels = integer(args, 'start-tunnels', startText ?? String(Math.min(maxTunnels, Math.max(16, minTunnels))), minTunnels, maxTunnels);
  return {
    tunnels,
    minTunnels,
    maxTunnels,
    startTunnels,
    startTunnelsGiven: startText !== undefined,
    socks,
    socksIsDefault: socksText === undefined,
    http,
    socksAuth: user !== undefined && pass !== undefined ? { username: user, password: pass } : undefined,
    quiet: args.bool('quiet') ?? false,
  };
}

function policy(args: Args): PolicySettings {
  const allow = args.list('allow') ?? [];
  const deny = args.list('deny') ?? [];
  for (const [name, rules] of [
    ['allow', allow],
    ['deny', deny],
  ] as const) {
    for (const rule of rules) {
      try {
        compilePolicy({ [name]: [rule] });
      } catch (err) {
        const why = (err as Error).message.replace(/^invalid (allow|deny)\[\d+\] rule "[^"]*": /, '');
        throw new UsageError(`${args.label(name)} ${JSON.stringify(rule)}: ${why}`);
      }
    }
  }
  return { allow, deny };
}

function key(args: Args, text: string): Buffer {
  try {
    return parseKey(args.label('key'), text);
  } catch (err) {
    throw new UsageError(`${(err as Error).message.replace(/; make one with `gkd keygen`$/, '')}. ${NO_KEY_HINT}`);
  }
}

/**
 * Read and validate a users file: `{ "alice": "<key>", … }`. Throws UsageError naming the file and
 * the user.
 */
export function loadUsers(label: string, file: string): Record<string, Buffer> {
  const where = `${label} ${file}`;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`${where}: cannot read it (${(err as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${where}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`${where}: must be a JSON object of user names and keys, like { "alice": "<key from gkd keygen>" }`);
  }
  const users: Record<string, Buffer> = {};
  for (const [user, value] of Object.entries(parsed)) {
    if (user.length === 0 || Buffer.byteLength(user) > 255) throw new UsageError(`${where}: user name "${user}" must be 1–255 bytes`);
    if (typeof value !== 'string')
      throw new UsageError(`${where}: user "${user}": the key must be a string (from \`gkd keygen\`), got ${JSON.stringify(value)}`);
    try {
      users[user] = parseKey('the key', value);
    } catch (err) {
      throw new UsageError(`${where}: user "${user}": ${(err as Error).message.replace(/; make one with `gkd keygen`$/, '')}; make one with \`gkd keygen\``);
    }
  }
  if (Object.keys(users).length === 0) throw new UsageError(`${where}: no users in it`);
  return users;
}

function serverTls(args: Args, certFile: string, keyFile: string): TlsFiles {
  const cert = readFlagFile(args, 'tls-cert', certFile);
  const key = readFlagFile(args, 'tls-key', keyFile);
  let fingerprint: string;
  try {
    fingerprint = new X509Certificate(cert).fingerprint256;
  } catch (err) {
    throw new UsageError(`${args.label('tls-cert')} ${certFile}: not a PEM certificate (${(err as Error).message})`);
  }
  try {
    createPrivateKey(key);
  } catch (err) {
    throw new UsageError(`${args.label('tls-key')} ${keyFile}: not a PEM private key (${(err as Error).message})`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new UsageError(`${args.label('tls-key')} ${keyFile} does not go with --tls-cert ${certFile} (${(err as Error).message})`);
  }
  return { cert, key, fingerprint };
}

function clientTls(args: Args): ClientTlsOptions | undefined {
  const caFile = args.string('tls-ca');
  const fp = args.string('tls-fingerprint');
  if (caFile !== undefined && fp !== undefined) throw new UsageError(`give ${args.label('tls-ca')} or ${args.label('tls-fingerprint')}, not both`);
  if (fp !== undefined) {
    const hex = fp.replace(/:/g, '');
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
      throw new UsageError(`${args.label('tls-fingerprint')} must be a SHA-256 fingerprint: 64 hex digits, colons allowed (the server logs it), got "${fp}"`);
    }
    return { fingerprint: hex };
  }
  if (caFile !== undefined) {
    const ca = readFlagFile(args, 'tls-ca', caFile);
    try {
      new X509Certificate(ca);
    } catch (err) {
      throw new UsageError(`${args.label('tls-ca')} ${caFile}: not a PEM certificate (${(err as Error).message})`);
    }
    return { ca };
  }
  return args.bool('tls') ? {} : undefined;
}

function readFlagFile(args: Args, name: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(`${args.label(name)} ${file}: cannot read it (${(err as Error).message})`);
  }
}

function hostPort(args: Args, name: string, text: string, opts: { host?: string; minPort?: number } = {}): HostPort {
  let hp: HostPort;
  try {
    hp = parseHostPort(text, opts.host ?? '127.0.0.1', args.label(name));
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  if (hp.port < (opts.minPort ?? 0)) throw new UsageError(`${args.label(name)}: invalid port in "${text}" (must be ${opts.minPort}–65535)`);
  return hp;
}

/** `host` → `host:9990`, `[::1]` → `[::1]:9990`; anything with a port as it is. */
function withDefaultPort(text: string): string {
  const s = text.trim();
  if (s.startsWith('[')) return s.endsWith(']') ? `${s}:${DEFAULT_SERVER_PORT}` : s;
  return s.includes(':') ? s : `${s}:${DEFAULT_SERVER_PORT}`;
}

function integer(args: Args, name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || n < min || n > max) throw new UsageError(`${args.label(name)} must be an integer ${min}–${max}, got "${text}"`);
  return n;
}

function seconds(args: Args, name: string, text: string, max: number): number {
  const n = Number(text);
  if (!/^\s*\d+(\.\d+)?\s*$/.test(text) || n > max) throw new UsageError(`${args.label(name)} must be a number of seconds 0–${max}, got "${text}"`);
  return Math.round(n * 1000);
}

function oneOf<T extends string>(args: Args, name: string, text: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(text)) throw new UsageError(`${args.label(name)} must be one of ${choices.join(', ')}, got "${text}"`);
  return text as T;
}
