import { ConfigError } from '@gkd/protocol';
import { DEFAULT_CONNECT_TIMEOUT } from './dial.js';
import { compilePolicy, type Policy } from './policy.js';

/**
 * Resource limits of one server. The transport enforces them; this module only defines and checks them.
 * A "peer" is one authenticated identity: a user name, or the server's single key when it has no user
 * list. The budget the transport accounts is `maxBufferedBytes` (256 MiB with the defaults; without
 * it, `maxPeers × maxBufferedBytesPerPeer` would be 1 GiB); the worst case with per-stream and per-tunnel overhead on top is about 21.6 GiB with the
 * defaults (LIMITS.md, "Per session and per peer", has the arithmetic).
 */
export interface ServerLimits {
  /** Peers with at least one live session at once. Default 32. Beyond it: REJECT `LIMIT_EXCEEDED`. */
  maxPeers: number;
  /** Sessions on the whole server at once (including sessions in their no-tunnel grace period). Default 256. */
  maxSessions: number;
  /**
   * Sessions one peer may hold at once. Default 8: a few devices, plus the old session that lingers for
   * the grace period after a client restarts and opens a new one.
   */
  maxSessionsPerPeer: number;
  /**
   * Live tunnels in one session; announced in WELCOME (lowered to `maxTunnelsPerPeer`), so adaptive
   * clients (`--tunnels auto`) stay under it. Default 32: what an adaptive client uses on a lossy link.
   */
  maxTunnelsPerSession: number;
  /** Live tunnels of one peer over all its sessions. Default 64: two sessions at the per-session cap. */
  maxTunnelsPerPeer: number;
  /** Live tunnels on the whole server. Default 1 024: 32 peers at the per-session cap. */
  maxTunnels: number;
  /** Open streams in one session (PROTOCOL.md §9). Default 1024. Beyond it: OPEN_FAIL `LIMIT_EXCEEDED`. */
  maxStreamsPerSession: number;
  /**
   * Bytes the server may buffer for one peer across all its sessions and streams (receive reorder
   * buffers and unsent data towards the peer), in bytes. Default 32 MiB: two full 16 MiB windows, i.e.
   * one stream at the maximum window in each direction (≈ 1.3 Gbit/s at 200 ms RTT).
   */
  maxBufferedBytesPerPeer: number;
  /**
   * Bytes the server may buffer for all peers together (the sum of every peer's budget above), in
   * bytes; half for receive windows, half for unacknowledged sent bytes. Each peer that holds bytes
   * gets at least `maxBufferedBytes / 2 / active peers` per direction, and every stream at least one
   * frame (16 KiB) so nothing deadlocks. Default 256 MiB: 100 peers × 8 tunnels downloading fit in a
   * 512 MiB worker with room for Node, the heap and garbage not yet collected (LIMITS.md). 0: no
   * server-wide bound (each peer still has `maxBufferedBytesPerPeer`).
   */
  maxBufferedBytes: number;
  /** Time a new tunnel has to complete its handshake, in milliseconds (PROTOCOL.md §4). Default 10 000. */
  handshakeTimeout: number;
  /**
   * Tunnels still in their handshake (not yet authenticated) at once. Default 256. When full, a new
   * connection evicts the oldest handshake, so idle sockets cannot lock peers out until they time out.
   */
  maxHandshakes: number;
  /**
   * Tunnels in their handshake at once from one remote address (the PROXY header's, with
   * `proxyProtocol`). Default 32. When full, a new one from there evicts that address's oldest. A
   * tunnel joining a live session (its routing token names it) counts with its session instead, up to
   * `maxTunnelsPerSession`. At most `maxHandshakes`.
   */
  maxHandshakesPerAddress: number;
  /**
   * Time a session may stay with no open stream before the server sends GOAWAY `IDLE_TIMEOUT` and frees
   * it, in milliseconds. Default 1 800 000 (30 min). 0 disables.
   */
  idleSessionTimeout: number;
  /** SOCKS5 UDP associations one peer may have open at once, over all its sessions. Default 64. Beyond it: DATAGRAM_CLOSE `LIMIT_EXCEEDED`. */
  maxAssociationsPerPeer: number;
  /** Time a UDP association may pass no datagram (either way) before the server closes it, in milliseconds. Default 120 000 (2 min). */
  associationIdleTimeout: number;
}

/** The server component's configuration, every field filled in. */
export interface ServerConfig {
  /** Deadline of one dial, name resolution included, in milliseconds. Default 10 000. */
  connectTimeout: number;
  /** Destination allow rules (`policy.ts` syntax). Default none. */
  allow: readonly string[];
  /** Destination deny rules. Default none (the built-in default ranges still apply). */
  deny: readonly string[];
  /**
   * Accept OPEN with no destination (ATYP 0x00): the stream goes to the embedding application instead
   * of being dialed. Default false: such an OPEN gets OPEN_FAIL `NOT_ALLOWED`.
   */
  allowLibraryMode: boolean;
  /**
   * Every tunnel connection starts with a PROXY protocol header (v1 or v2) from a load balancer
   * (HAProxy `send-proxy-v2`); its source address is the peer's for limits and logs. A connection
   * without one is refused. Default false: a header is never accepted. Only for a port nothing but
   * the balancer can reach.
   */
  proxyProtocol: boolean;
  limits: ServerLimits;
}

/** What a caller may pass: any subset; `limits` may be partial too. */
export type ServerConfigInput = Partial<Omit<ServerConfig, 'limits'>> & { limits?: Partial<ServerLimits> };

/** A validated configuration with its destination policy compiled. */
export interface ResolvedServerConfig extends ServerConfig {
  /** `allow` and `deny` compiled; pass to `dialDestination`. */
  readonly policy: Policy;
}

/** The default limits (the reasons are in the doc comments of `ServerLimits` and in LIMITS.md). */
export const DEFAULT_LIMITS: Readonly<ServerLimits> = Object.freeze({
  maxPeers: 32,
  maxSessions: 256,
  maxSessionsPerPeer: 8,
  maxTunnelsPerSession: 32,
  maxTunnelsPerPeer: 64,
  maxTunnels: 1024,
  maxStreamsPerSession: 1024,
  maxBufferedBytesPerPeer: 32 * 1024 * 1024,
  maxBufferedBytes: 256 * 1024 * 1024,
  handshakeTimeout: 10_000,
  maxHandshakes: 256,
  maxHandshakesPerAddress: 32,
  idleSessionTimeout: 30 * 60_000,
  maxAssociationsPerPeer: 64,
  associationIdleTimeout: 120_000,
});

/** The default server configuration. */
export const DEFAULT_SERVER_CONFIG: Readonly<ServerConfig> = Object.freeze({
  connectTimeout: DEFAULT_CONNECT_TIMEOUT,
  allow: Object.freeze([]) as readonly string[],
  deny: Object.freeze([]) as readonly string[],
  allowLibraryMode: false,
  proxyProtocol: false,
  limits: DEFAULT_LIMITS,
});

/** Largest delay a Node timer accepts, in milliseconds (about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface IntRule {
  min: number;
  max: number;
  /** Zero is accepted (and means "disabled") even when below `min`. */
  zeroDisables?: boolean;
  unit: string;
}

const LIMIT_RULES: Record<keyof ServerLimits, IntRule> = {
  maxPeers: { min: 1, max: 2 ** 32 - 1, unit: 'peers' },
  maxSessions: { min: 1, max: 2 ** 32 - 1, unit: 'sessions' },
  maxSessionsPerPeer: { min: 1, max: 2 ** 32 - 1, unit: 'sessions' },
  maxTunnelsPerSession: { min: 1, max: 65_535, unit: 'tunnels' }, // WELCOME carries it as a u16
  maxTunnelsPerPeer: { min: 1, max: 1_000_000, unit: 'tunnels' },
  maxTunnels: { min: 1, max: 1_000_000, unit: 'tunnels' },
  maxStreamsPerSession: { min: 1, max: 2 ** 31, unit: 'streams' }, // odd u32 ids: 2^31 per session at most
  maxBufferedBytesPerPeer: { min: 1, max: Number.MAX_SAFE_INTEGER, unit: 'bytes' },
  // Two frames (one per direction) at least; 0: no server-wide pool, only the per-peer budgets.
  maxBufferedBytes: { min: 2 * 16 * 1024, max: Number.MAX_SAFE_INTEGER, zeroDisables: true, unit: 'bytes' },
  handshakeTimeout: { min: 1, max: MAX_TIMER_MS, unit: 'ms' },
  maxHandshakes: { min: 1, max: 1_000_000, unit: 'handshakes' },
  maxHandshakesPerAddress: { min: 1, max: 1_000_000, unit: 'handshakes' },
  idleSessionTimeout: { min: 1, max: MAX_TIMER_MS, zeroDisables: true, unit: 'ms' },
  maxAssociationsPerPeer: { min: 0, max: 65_536, unit: 'associations' }, // 0: UDP relay off
  associationIdleTimeout: { min: 1, max: MAX_TIMER_MS, unit: 'ms' },
};

function checkInt(option: string, value: unknown, rule: IntRule): number {
  const ok = typeof value === 'number' && Number.isInteger(value) && ((value >= rule.min && value <= rule.max) || (rule.zeroDisables === true && value === 0));
  if (!ok) {
    const range = `${rule.zeroDisables ? '0 (disabled) or ' : ''}an integer ${rule.min}–${rule.max} ${rule.unit}`;
    throw new ConfigError(`invalid server option ${option}: must be ${range}, got ${describe(value)}`);
  }
  return value;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

function rejectUnknown(prefix: string, input: object, known: readonly string[]): void {
  for (const key of Object.keys(input)) {
    if (!known.includes(key)) throw new ConfigError(`unknown server option ${prefix}${key}`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Fill in defaults, validate, and compile the destination policy. Throws ConfigError naming the first
 * bad option (`limits.maxPeers`, `deny[2]`, …); unknown options are errors too, so a typo is not
 * silently ignored. The result is frozen.
 */
export function resolveServerConfig(input: ServerConfigInput = {}): ResolvedServerConfig {
  if (!isPlainObject(input)) throw new ConfigError('server options must be an object');
  rejectUnknown('', input, ['connectTimeout', 'allow', 'deny', 'allowLibraryMode', 'proxyProtocol', 'limits']);
  const d = DEFAULT_SERVER_CONFIG;

  const connectTimeout = checkInt('connectTimeout', input.connectTimeout ?? d.connectTimeout, {
    min: 1,
    max: MAX_TIMER_MS,
    unit: 'ms',
  });

  const allowLibraryMode = input.allowLibraryMode ?? d.allowLibraryMode;
  if (typeof allowLibraryMode !== 'boolean') {
    throw new ConfigError(`invalid server option allowLibraryMode: must be true or false, got ${describe(allowLibraryMode)}`);
  }

  const proxyProtocol = input.proxyProtocol ?? d.proxyProtocol;
  if (typeof proxyProtocol !== 'boolean') {
    throw new ConfigError(`invalid server option proxyProtocol: must be true or false, got ${describe(proxyProtocol)}`);
  }

  const rules = (key: 'allow' | 'deny'): readonly string[] => {
    const value: unknown = input[key] ?? d[key];
    if (!Array.isArray(value)) throw new ConfigError(`invalid server option ${key}: must be an array of rule strings, got ${describe(value)}`);
    return Object.freeze([...(value as unknown[])]) as readonly string[];
  };
  const allow = rules('allow');
  const deny = rules('deny');
  const policy = compilePolicy({ allow, deny }); // ConfigError names the rule, e.g. deny[2]

  const limitsInput: unknown = input.limits ?? {};
  if (!isPlainObject(limitsInput)) throw new ConfigError(`invalid server option limits: must be an object, got ${describe(limitsInput)}`);
  rejectUnknown('limits.', limitsInput, Object.keys(LIMIT_RULES));
  const limits = {} as ServerLimits;
  for (const key of Object.keys(LIMIT_RULES) as (keyof ServerLimits)[]) {
    limits[key] = checkInt(`limits.${key}`, limitsInput[key] ?? DEFAULT_LIMITS[key], LIMIT_RULES[key]);
  }
  if (limits.maxHandshakesPerAddress > limits.maxHandshakes) {
    throw new ConfigError(
      `invalid server option limits.maxHandshakesPerAddress: must be at most limits.maxHandshakes (${limits.maxHandshakes}), got ${limits.maxHandshakesPerAddress}`,
    );
  }

  return Object.freeze({ connectTimeout, allow, deny, allowLibraryMode, proxyProtocol, limits: Object.freeze(limits), policy });
}
