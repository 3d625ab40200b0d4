import { EventEmitter } from 'node:events';
import type * as net from 'node:net';
import { type GkdError, OpenFailedError, Reason, formatAddress, reasonName, type Address } from '@gkd/protocol';
import { Server, type Association, type Connection, type KeyInput, type OpenRequest, type PeerInfo, type SessionConfig, type HostPort } from '@gkd/transport';
import { resolveServerConfig, type ResolvedServerConfig, type ServerConfigInput } from './config.js';
import { dialDestination, type Resolver } from './dial.js';
import { splice } from './splice.js';
import { relayAssociation, type UdpCounters } from './udp-relay.js';

/** Everything a gkd server needs: transport (keys, TLS, session tuning) and server (policy, limits) settings. */
export interface GkdServerOptions extends ServerConfigInput {
  /**
   * Where to listen for tunnels, `host:port`. null: no listener; tunnels arrive through
   * `transport.handleConnection` (a worker of `gkd server --workers`, whose master accepts them).
   */
  listen: string | HostPort | null;
  /** The one pre-shared key (≥ 128 bits). */
  key?: KeyInput;
  /** Several users: user name → key. */
  users?: Record<string, KeyInput>;
  /** TLS certificate and key (PEM) for the tunnel port. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Flow-control / keepalive tuning. */
  session?: Partial<SessionConfig>;
  /** Name resolver for destinations (tests inject one). Default: the system resolver. */
  resolver?: Resolver;
  /** Receives library-mode streams when `allowLibraryMode` is set. */
  onLibraryStream?: (conn: Connection, peer: PeerInfo) => void;
}

/** One OPEN's outcome, for logs and metrics. */
export interface OpenEvent {
  peer: PeerInfo;
  destination: string;
  /** Time to answer the OPEN, in ms. */
  ms: number;
  /** OPEN_FAIL reason name when it failed. */
  reason?: string;
  message?: string;
}

/** A datagram the destination policy (or DNS) refused, for logs: once per association and destination. */
export interface DatagramDeniedEvent {
  peer: PeerInfo;
  destination: string;
  message: string;
}

/** Counters for metrics (the UDP ones: see UdpCounters). */
export interface GkdServerCounters extends UdpCounters {
  opens: number;
  openFailures: Record<string, number>;
  activeStreams: number;
  /** Bytes from destinations to peers. */
  bytesDown: number;
  /** Bytes from peers to destinations. */
  bytesUp: number;
}

/**
 * The gkd server: the transport server, plus what it does with each OPEN — check the destination
 * policy on the resolved address, dial with a timeout and Happy Eyeballs, answer OPEN_OK / OPEN_FAIL
 * with the right reason, then splice both ways with half-close and backpressure.
 *
 * Events: 'open' (OpenEvent), 'open-failed' (OpenEvent), 'datagram-denied' (DatagramDeniedEvent), 'session' (peer), 'session-end' (peer, err),
 * 'tunnel-up' (peer, index), 'tunnel-down' (peer, index, err), 'refused' (remoteAddress, err).
 */
export class GkdServer extends EventEmitter {
  readonly config: ResolvedServerConfig;
  readonly transport: Server;
  readonly counters: GkdServerCounters = {
    opens: 0,
    openFailures: {},
    activeStreams: 0,
    bytesDown: 0,
    bytesUp: 0,
    associations: 0,
    datagramsUp: 0,
    datagramsDown: 0,
    datagramsDropped: 0,
    datagramsDenied: 0,
  };
  /** Open UDP associations per peer (user name). */
  private readonly associationsByPeer = new Map<string, number>();
  private readonly resolver: Resolver | undefined;
  private readonly onLibraryStream: GkdServerOptions['onLibraryStream'];

  private constructor(options: GkdServerOptions) {
    super();
    const { listen: _l, key, users, tls, session, resolver, onLibraryStream, ...serverInput } = options;
    this.config = resolveServerConfig(serverInput);
    this.resolver = resolver;
    this.onLibraryStream = onLibraryStream;
    const l = this.config.limits;
    this.transport = new Server({
      key,
      users,
      tls,
      session,
      onOpen: (req, peer) => void this.handleOpen(req, peer),
      onAssociation: (a, peer) => this.handleAssociation(a, peer),
      handshakeTimeout: l.handshakeTimeout,
      maxHandshakes: l.maxHandshakes,
      maxHandshakesPerAddress: l.maxHandshakesPerAddress,
      proxyProtocol: this.config.proxyProtocol,
      maxPeers: l.maxPeers,
      maxSessions: l.maxSessions,
      maxSessionsPerUser: l.maxSessionsPerPeer,
      maxTunnelsPerSession: l.maxTunnelsPerSession,
      maxTunnelsPerUser: l.maxTunnelsPerPeer,
      maxTunnels: l.maxTunnels,
      maxStreamsPerSession: l.maxStreamsPerSession,
      maxBufferedBytesPerUser: l.maxBufferedBytesPerPeer,
      ...(l.maxBufferedBytes > 0 ? { maxBufferedBytes: l.maxBufferedBytes } : {}),
      idleSessionTimeout: l.idleSessionTimeout,
    });
    for (const ev of ['session', 'session-end', 'tunnel-up', 'tunnel-down', 'refused']) {
      this.transport.on(ev, (...args: unknown[]) => this.emit(ev, ...args));
    }
    this.transport.on('error', (err) => this.emit('error', err));
  }

  /** Validate the options, listen, and serve. */
  static async start(options: GkdServerOptions): Promise<GkdServer> {
    const s = new GkdServer(options);
    if (options.listen === null) return s;
    const hp = typeof options.listen === 'string' ? undefined : options.listen;
    if (hp) await s.transport.listen(hp);
    else {
      const { parseHostPort } = await import('@gkd/transport');
      await s.transport.listen(parseHostPort(options.listen as string, '0.0.0.0', 'listen'));
    }
    return s;
  }

  /** The tunnel port's address. */
  address(): net.AddressInfo {
    return this.transport.address();
  }

  private async handleOpen(req: OpenRequest, peer: PeerInfo): Promise<void> {
    const started = Date.now();
    const dest = req.destination;
    if (!dest) {
      if (this.config.allowLibraryMode && this.onLibraryStream) {
        this.onLibraryStream(req.accept(), peer);
      } else {
        this.fail(req, peer, '(library mode)', started, Reason.NOT_ALLOWED, 'library-mode streams are not allowed on this server');
      }
      return;
    }
    const where = formatAddress(dest);
    let socket: net.Socket;
    try {
      socket = await dialDestination(dest, {
        policy: this.config.policy,
        timeout: this.config.connectTimeout,
        signal: req.signal,
        ...(this.resolver ? { resolver: this.resolver } : {}),
      });
    } catch (err) {
      if (req.signal.aborted) return; // the peer gave up; nothing to answer
      const reason = err instanceof OpenFailedError && err.reason !== undefined ? err.reason : Reason.GENERAL_FAILURE;
      const detail = err instanceof OpenFailedError ? (err.detail ?? '') : err instanceof Error ? err.message : String(err);
      this.fail(req, peer, where, started, reason, detail);
      return;
    }
    socket.on('error', () => undefined);
    if (req.signal.aborted) {
      socket.destroy();
      return;
    }
    const conn = req.accept();
    this.counters.opens++;
    this.counters.activeStreams++;
    this.emit('open', { peer, destination: where, ms: Date.now() - started } satisfies OpenEvent);
    splice(conn, socket, {
      onUp: (n) => (this.counters.bytesUp += n),
      onDown: (n) => (this.counters.bytesDown += n),
      onClose: () => this.counters.activeStreams--,
    });
  }

  /** A peer's new UDP association: within the per-peer limit, relay it (udp-relay.ts); else close it with LIMIT_EXCEEDED. */
  private handleAssociation(a: Association, peer: PeerInfo): void {
    const max = this.config.limits.maxAssociationsPerPeer;
    const n = this.associationsByPeer.get(peer.user) ?? 0;
    if (n >= max) {
      a.close(Reason.LIMIT_EXCEEDED, max === 0 ? 'UDP relay is off on this server' : `more than ${max} UDP associations`);
      return;
    }
    this.associationsByPeer.set(peer.user, n + 1);
    a.once('close', () => {
      const left = (this.associationsByPeer.get(peer.user) ?? 1) - 1;
      if (left > 0) this.associationsByPeer.set(peer.user, left);
      else this.associationsByPeer.delete(peer.user);
    });
    relayAssociation(a, {
      policy: this.config.policy,
      idleTimeout: this.config.limits.associationIdleTimeout,
      counters: this.counters,
      ...(this.resolver ? { resolver: this.resolver } : {}),
      onDenied: (destination, message) => this.emit('datagram-denied', { peer, destination, message } satisfies DatagramDeniedEvent),
    });
  }

  private fail(req: OpenRequest, peer: PeerInfo, where: string, started: number, reason: number, message: string): void {
    req.reject(reason, message);
    const name = reasonName(reason);
    this.counters.openFailures[name] = (this.counters.openFailures[name] ?? 0) + 1;
    this.emit('open-failed', { peer, destination: where, ms: Date.now() - started, reason: name, message } satisfies OpenEvent);
  }

  /** Peers and sessions, for stats. */
  stats(): ReturnType<Server['stats']> {
    return this.transport.stats();
  }

  /** Graceful shutdown: stop accepting, tell peers (GOAWAY), let streams drain up to `drainMs`, then close. */
  async shutdown(drainMs = 10_000): Promise<void> {
    this.transport.goAway();
    const end = Date.now() + drainMs;
    while (this.counters.activeStreams > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    await this.close();
  }

  /** Close now: every stream fails, every tunnel closes. */
  close(): Promise<void> {
    return this.transport.close();
  }
}

/** Re-exported for callers that build destinations. */
export type { Address, GkdError };
