import { FAILURE_KINDS, type FailureKind } from './failure.js';

/** Which front-end an event or counter belongs to. */
export type ProxyKind = 'socks' | 'http';

/**
 * What a front-end reports through `onEvent`. One `open-failed` per failed open (the CLI logs one line
 * each), one `client-error` per client dropped for breaking the protocol, failing authentication or
 * timing out in the handshake. `client` is the client's `address:port`; `destination` is `host:port`
 * (IPv6 in brackets).
 */
export type ProxyEvent =
  | { type: 'opened'; proxy: ProxyKind; client: string; destination: string /** ms from request to open */; ms: number }
  | { type: 'udp-associated'; proxy: 'socks'; client: string /** the relay's `address:port` */; relay: string }
  | {
      type: 'open-failed';
      proxy: ProxyKind;
      client: string;
      destination: string;
      kind: FailureKind;
      /** What the client was told: the SOCKS REP code, or the HTTP status. */
      reply: number;
      message: string;
      /** ms from request to failure */
      ms: number;
    }
  | { type: 'client-error'; proxy: ProxyKind; client: string /** connection state when it happened */; state: string; message: string };

/** Counters of one front-end since it started listening. A snapshot; metrics read it on demand. */
export interface ProxyCounters {
  /** Client connections accepted. */
  accepted: number;
  /** Client connections open now. */
  active: number;
  /** Connections refused at accept because all `maxConnections` were established (none in a handshake to evict). */
  dropped: number;
  /** Connections evicted while still in their handshake, to make room for a newer one (see `maxHandshakes`). */
  evicted: number;
  /** Connections in their handshake now. */
  handshaking: number;
  /** Opens that succeeded (the client got success and bytes flow). */
  opened: number;
  /** Failed opens, by kind. */
  failed: Record<FailureKind, number>;
  /** Opens abandoned because the client went away while waiting. */
  cancelled: number;
  /** Clients dropped for a protocol violation or a handshake timeout. */
  clientErrors: number;
  /** Clients that failed username/password authentication (SOCKS), or sent no or a wrong Proxy-Authorization (HTTP, 407). */
  authFailures: number;
  /** SOCKS5 UDP associations started. */
  udpAssociations: number;
  /** SOCKS5 UDP associations open now. */
  udpActive: number;
  /** Datagrams from local clients passed to the tunnels. */
  datagramsUp: number;
  /** Datagrams from the tunnels delivered to local clients. */
  datagramsDown: number;
  /** Datagrams dropped on the way: every tunnel backed up or none up, a local send error, no client port yet. */
  datagramsDropped: number;
  /** Datagrams refused from local clients: bad header, FRAG ≠ 0, unknown address type, oversized, from an address the association does not name. */
  datagramsRejected: number;
}

/** Mutable counters behind `stats()`. */
export class Counters {
  accepted = 0;
  active = 0;
  dropped = 0;
  evicted = 0;
  opened = 0;
  cancelled = 0;
  clientErrors = 0;
  authFailures = 0;
  udpAssociations = 0;
  udpActive = 0;
  datagramsUp = 0;
  datagramsDown = 0;
  datagramsDropped = 0;
  datagramsRejected = 0;
  readonly failed: Record<FailureKind, number> = Object.fromEntries(FAILURE_KINDS.map((k) => [k, 0])) as Record<FailureKind, number>;

  /** A copy that later updates do not change; `handshaking` comes from the front-end's Admission. */
  snapshot(handshaking: number): ProxyCounters {
    const { accepted, active, dropped, evicted, opened, cancelled, clientErrors, authFailures } = this;
    const { udpAssociations, udpActive, datagramsUp, datagramsDown, datagramsDropped, datagramsRejected } = this;
    return {
      accepted,
      active,
      dropped,
      evicted,
      handshaking,
      opened,
      cancelled,
      clientErrors,
      authFailures,
      failed: { ...this.failed },
      udpAssociations,
      udpActive,
      datagramsUp,
      datagramsDown,
      datagramsDropped,
      datagramsRejected,
    };
  }
}

/** Call the user's event hook; a hook that throws must not take a connection (or the process) down. */
export function emitSafely(hook: ((event: ProxyEvent) => void) | undefined, event: ProxyEvent): void {
  if (!hook) return;
  try {
    hook(event);
  } catch {
    // the hook is for logging; its failure is not ours to handle
  }
}

/** `address:port` of a socket's peer, IPv6 in brackets; `unknown` once the socket lost its address. */
export function peerOf(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string {
  const host = socket.remoteAddress;
  if (!host) return 'unknown';
  return host.includes(':') ? `[${host}]:${socket.remotePort}` : `${host}:${socket.remotePort}`;
}

/** Whole milliseconds since `started` (a performance.now() reading). */
export function msSince(started: number): number {
  return Math.round(performance.now() - started);
}
