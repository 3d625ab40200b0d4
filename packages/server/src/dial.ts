import dns from 'node:dns';
import net from 'node:net';
import { OpenFailedError, Reason, formatAddress, parseIPv4, parseIPv6, type Address, type ReasonCode } from '@gkd/protocol';
import { normalizeHostName, type Policy, type PolicyVerdict } from './policy.js';

/** Default deadline of a whole dial (resolution and connection), in milliseconds. */
export const DEFAULT_CONNECT_TIMEOUT = 10_000;

/** Default Happy Eyeballs "connection attempt delay" (RFC 8305 §5), in milliseconds. */
export const DEFAULT_ATTEMPT_DELAY = 250;

/** Default idle time before the first TCP keepalive probe on a dialed socket, in milliseconds. */
export const DEFAULT_KEEPALIVE_INITIAL_DELAY = 60_000;

/** One address a name resolved to, as `dns.lookup(name, { all: true })` returns it. */
export interface ResolvedAddress {
  address: string;
  family: number;
}

/**
 * Resolves a host name to every IPv4 and IPv6 address it has, in the resolver's preferred order.
 * Rejects with an error whose `code` is a `dns` code (`ENOTFOUND`, `EAI_AGAIN`, …) when the name does not
 * resolve. `signal` aborts when the dial no longer needs the answer; a resolver may ignore it.
 */
export type Resolver = (hostname: string, signal: AbortSignal) => Promise<readonly ResolvedAddress[]>;

/** The system resolver (`getaddrinfo` through `dns.lookup`), both families, in the system's order (RFC 6724). */
export const systemResolver: Resolver = (hostname) => dns.promises.lookup(hostname, { all: true, family: 0, order: 'verbatim' });

/** Options of `dialDestination`. */
export interface DialOptions {
  /** The destination policy. Every resolved address is checked; denied ones are never dialed. */
  policy: Policy;
  /** Deadline of the whole dial, resolution included, in milliseconds. Default 10 000. */
  timeout?: number;
  /**
   * Happy Eyeballs connection attempt delay, in milliseconds: how long an attempt runs alone before the
   * next address is tried alongside it (RFC 8305 §5). Default 250.
   */
  attemptDelay?: number;
  /** Idle time before the first TCP keepalive probe, in milliseconds. Default 60 000. */
  keepAliveInitialDelay?: number;
  /** Name resolver. Default: `systemResolver`. Tests inject one. */
  resolver?: Resolver;
  /** Abort the dial (the peer reset the stream while it was dialing). */
  signal?: AbortSignal;
}

/**
 * The OPEN_FAIL reason for a connect or resolve error, from its `code`:
 *
 * | code | reason |
 * | --- | --- |
 * | ECONNREFUSED | CONNECTION_REFUSED |
 * | EHOSTUNREACH, EHOSTDOWN, ENOTFOUND, EAI_AGAIN, EAI_NONAME, EAI_NODATA, EAI_FAIL, ENODATA | HOST_UNREACHABLE |
 * | ENETUNREACH, ENETDOWN, EADDRNOTAVAIL | NETWORK_UNREACHABLE |
 * | ETIMEDOUT | TIMEOUT |
 * | anything else | GENERAL_FAILURE |
 */
export function reasonForDialError(err: unknown): ReasonCode {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  switch (code) {
    case 'ECONNREFUSED':
      return Reason.CONNECTION_REFUSED;
    case 'EHOSTUNREACH':
    case 'EHOSTDOWN':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
    case 'EAI_NODATA':
    case 'EAI_FAIL':
    case 'ENODATA':
      return Reason.HOST_UNREACHABLE;
    case 'ENETUNREACH':
    case 'ENETDOWN':
    case 'EADDRNOTAVAIL':
      return Reason.NETWORK_UNREACHABLE;
    case 'ETIMEDOUT':
      return Reason.TIMEOUT;
    default:
      return Reason.GENERAL_FAILURE;
  }
}

/**
 * When every address failed, the reason reported is the one that got closest to the destination:
 * a refusal (the host answered) before "host unreachable" (a router near it answered) before a timeout
 * before "network unreachable" (we have no route; typically IPv6 on an IPv4-only server).
 */
const REASON_RANK: readonly number[] = [Reason.CONNECTION_REFUSED, Reason.HOST_UNREACHABLE, Reason.TIMEOUT, Reason.NETWORK_UNREACHABLE, Reason.GENERAL_FAILURE];

interface Target {
  address: string;
  family: 4 | 6;
}

/**
 * Dial `dest` for a peer: resolve it (names are resolved here, on the server), drop every address the
 * policy denies, connect to the rest with Happy Eyeballs, and return the connected socket with
 * TCP_NODELAY and keepalive on. The caller owns the socket and must attach an 'error' listener.
 *
 * Rejects with `OpenFailedError` whose `reason` is the OPEN_FAIL reason: NOT_ALLOWED when the policy
 * denies the name or every address it resolved to (nothing is dialed), HOST_UNREACHABLE when the name
 * does not resolve, TIMEOUT when the deadline (`timeout`, covering resolution and connection) passes,
 * else the reason of the connect error (`reasonForDialError`). If `signal` aborts first, every attempt
 * is destroyed and the promise rejects with `signal.reason`.
 */
export async function dialDestination(dest: Address, options: DialOptions): Promise<net.Socket> {
  const { policy, signal, resolver = systemResolver } = options;
  const timeout = checkMs('timeout', options.timeout ?? DEFAULT_CONNECT_TIMEOUT, 1);
  const attemptDelay = checkMs('attemptDelay', options.attemptDelay ?? DEFAULT_ATTEMPT_DELAY, 0);
  const keepAliveDelay = checkMs('keepAliveInitialDelay', options.keepAliveInitialDelay ?? DEFAULT_KEEPALIVE_INITIAL_DELAY, 0);
  signal?.throwIfAborted();

  // One signal for "stop everything": the caller's abort or the deadline.
  const stop = new AbortController();
  const onCallerAbort = () => stop.abort(signal!.reason);
  signal?.addEventListener('abort', onCallerAbort, { once: true });
  const timedOut = new Error('deadline');
  const timer = setTimeout(() => stop.abort(timedOut), timeout);
  let stage = 'resolving';
  try {
    const targets = await allowedTargets(dest, policy, resolver, stop.signal);
    stage = 'connecting to';
    return await connectFirst(targets, dest.port, attemptDelay, keepAliveDelay, stop.signal);
  } catch (err) {
    if (stop.signal.aborted && stop.signal.reason === timedOut) {
      throw new OpenFailedError(Reason.TIMEOUT, `${stage} ${formatAddress(dest)} took longer than ${timeout} ms`);
    }
    throw err; // an OpenFailedError, or the caller's abort reason
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onCallerAbort);
  }
}

function checkMs(name: string, value: number, min: number): number {
  if (!Number.isFinite(value) || value < min || value > 2 ** 31 - 1) {
    throw new RangeError(`${name} must be ${min}–${2 ** 31 - 1} ms, got ${value}`);
  }
  return value;
}

function toTarget(text: string): Target | null {
  const v4 = parseIPv4(text);
  if (v4) return { address: text, family: 4 };
  const v6 = parseIPv6(text);
  return v6 ? { address: text.replace(/^\[|\]$/g, ''), family: 6 } : null;
}

/** Resolve `dest` and keep the addresses the policy allows, in Happy Eyeballs order. */
async function allowedTargets(dest: Address, policy: Policy, resolver: Resolver, signal: AbortSignal): Promise<Target[]> {
  const { port } = dest;
  const literal = toTarget(dest.host);
  if (dest.type !== 'domain' || literal) {
    if (!literal) throw new OpenFailedError(Reason.GENERAL_FAILURE, `invalid ${dest.type} address ${dest.host}`);
    const verdict = policy.check(literal.address, port);
    if (!verdict.allowed) throw notAllowed(verdict);
    return [literal];
  }

  const name = normalizeHostName(dest.host);
  if (!name) throw new OpenFailedError(Reason.HOST_UNREACHABLE, 'invalid host name');
  const early = policy.checkName(name, port);
  if (early) throw notAllowed(early); // refused before any DNS query

  let resolved: readonly ResolvedAddress[];
  try {
    resolved = await abortable(resolver(name, signal), signal);
  } catch (err) {
    if (signal.aborted) throw err;
    const code = (err as { code?: unknown } | null)?.code;
    throw new OpenFailedError(reasonForDialError(err), `resolving ${name}: ${typeof code === 'string' ? code : String(err)}`, { cause: err });
  }

  const allowed: Target[] = [];
  let firstDenial: PolicyVerdict | undefined;
  const seen = new Set<string>();
  for (const r of resolved) {
    if (seen.has(r.address)) continue;
    seen.add(r.address);
    const target = toTarget(r.address);
    const verdict = policy.check(r.address, port, name);
    if (verdict.allowed && target) allowed.push(target);
    else firstDenial ??= verdict;
  }
  if (allowed.length === 0) {
    if (!firstDenial) throw new OpenFailedError(Reason.HOST_UNREACHABLE, `${name} has no addresses`);
    throw notAllowed(firstDenial, name);
  }
  return interleaveFamilies(allowed);
}

function notAllowed(verdict: PolicyVerdict, name?: string): OpenFailedError {
  return new OpenFailedError(Reason.NOT_ALLOWED, name ? `${name}: ${verdict.reason}` : verdict.reason);
}

/** RFC 8305 §4: alternate the families, starting with the family the resolver put first. */
function interleaveFamilies(targets: Target[]): Target[] {
  const first = targets[0]!.family;
  const a = targets.filter((t) => t.family === first);
  const b = targets.filter((t) => t.family !== first);
  const out: Target[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (i < a.length) out.push(a[i]!);
    if (i < b.length) out.push(b[i]!);
  }
  return out;
}

/** `promise`, or a rejection with `signal.reason` as soon as `signal` aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) {
      promise.catch(() => {});
      reject(signal.reason);
      return;
    }
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * Happy Eyeballs (RFC 8305 §5) over pre-resolved, policy-checked addresses: start with the first; start
 * the next one when the running attempt fails or after `attemptDelay` ms, keeping earlier attempts
 * running; the first to connect wins and every other attempt is destroyed.
 *
 * Written here rather than using `net.connect({ autoSelectFamily })`: Node's version is sequential —
 * it aborts each attempt after the delay instead of racing it (nodejs/node#54359), so a destination
 * more than 250 ms away fails on every address but the last — and it only works when Node itself
 * resolves the name, while the policy needs to see the addresses first.
 */
function connectFirst(targets: readonly Target[], port: number, attemptDelay: number, keepAliveDelay: number, signal: AbortSignal): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const attempts = new Set<net.Socket>();
    const failures: Error[] = [];
    let next = 0;
    let staggerTimer: NodeJS.Timeout | undefined;
    let settled = false;

    const settle = () => {
      settled = true;
      clearTimeout(staggerTimer);
      signal.removeEventListener('abort', onAbort);
      for (const s of attempts) s.destroy();
      attempts.clear();
    };
    const onAbort = () => {
      if (settled) return;
      settle();
      reject(signal.reason);
    };
    const fail = (err: Error) => {
      failures.push(err);
      if (settled) return;
      if (next < targets.length)
        startNext(); // an attempt failed: do not wait for the delay
      else if (attempts.size === 0) {
        settle();
        reject(allFailed(failures, targets.length));
      }
    };
    const startNext = () => {
      clearTimeout(staggerTimer);
      const target = targets[next++]!;
      let socket: net.Socket;
      try {
        // An IP literal as host: net.connect does no lookup, so only policy-checked addresses are dialed.
        // allowHalfOpen: the destination's FIN must not end our side; the peer may still be sending (half-close).
        socket = net.connect({ host: target.address, port, family: target.family, allowHalfOpen: true });
      } catch (err) {
        fail(err instanceof Error ? err : new Error(String(err)));
        return;
      }
      attempts.add(socket);
      const onError = (err: Error) => {
        attempts.delete(socket);
        socket.destroy();
        fail(err);
      };
      socket.on('error', onError); // stays on the losers: a late error must not crash the process
      socket.once('connect', () => {
        if (settled) return;
        attempts.delete(socket);
        socket.off('error', onError);
        settle();
        socket.setNoDelay(true);
        socket.setKeepAlive(true, keepAliveDelay);
        resolve(socket);
      });
      if (next < targets.length) staggerTimer = setTimeout(startNext, attemptDelay);
    };

    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    else startNext();
  });
}

function allFailed(failures: readonly Error[], tried: number): OpenFailedError {
  let best = failures[0]!;
  let bestRank = REASON_RANK.indexOf(reasonForDialError(best));
  for (const f of failures) {
    const rank = REASON_RANK.indexOf(reasonForDialError(f));
    if (rank < bestRank) [best, bestRank] = [f, rank];
  }
  const more = tried > 1 ? `; ${tried} addresses tried` : '';
  return new OpenFailedError(reasonForDialError(best), `${best.message}${more}`, { cause: best });
}
