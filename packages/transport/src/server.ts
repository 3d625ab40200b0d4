import type { Association } from './datagram.js';
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import {
  AuthError,
  AuthMode,
  BadPrefaceError,
  CHALLENGE_FLAG_USERS,
  ClosedError,
  ConfigError,
  FrameType,
  HandshakeTimeoutError,
  LimitError,
  ProtocolError,
  ProxyHeaderError,
  Reason,
  authProof,
  encode,
  proofEquals,
  sessionSecret,
  welcomeProof,
  type AuthFrame,
  type Frame,
  type ProofInput,
} from '@gkd/protocol';
import { parseHostPort, type HostPort } from './address.js';
import { checkInt, parseKey, resolveSessionConfig, type KeyInput, type SessionConfig } from './config.js';
import { newNonce } from './handshake.js';
import { readPreface } from './preface.js';
import { readProxyHeader } from './proxy-header.js';
import { ByteBudget } from './budget.js';
import { BytePool } from './pool.js';
import { Session, type OpenRequest, type SessionStats } from './session.js';
import type { Connection } from './stream.js';
import { Tunnel, tunnelOptions } from './tunnel.js';

/** Who is on the other end of a session. */
export interface PeerInfo {
  /** User name ('' with a single key). */
  user: string;
  /** Hex session id. */
  sessionId: string;
  /** Remote address of the tunnel that founded the session. */
  remoteAddress: string | undefined;
  /** Hex routing token of the founding tunnel's preface (PROTOCOL.md §4.1): what a balancer or worker master routes on. */
  routingToken: string;
}

/** Server settings. Times in ms. */
export interface ServerOptions {
  /** The one pre-shared key (single-user mode). */
  key?: KeyInput;
  /** Several users: user name → key. Mutually exclusive with `key`. */
  users?: Record<string, KeyInput> | Map<string, KeyInput>;
  /** Session (flow control, keepalive, grace) settings. */
  session?: Partial<SessionConfig>;
  /** TLS for the tunnels: PEM certificate and private key. Plain TCP when absent. */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /**
   * Decide every OPEN. When absent, every OPEN is accepted and the connection is yielded by
   * `accept()` / `for await`, with `connection.destination` telling what the opener asked for.
   */
  onOpen?: (request: OpenRequest, peer: PeerInfo) => void;
  /** Called for each new UDP association a peer starts (its first DATAGRAM); close it to refuse. Without it, associations are refused. */
  onAssociation?: (association: Association, peer: PeerInfo) => void;
  /** AUTH must arrive within this many ms. Default 10 000. */
  handshakeTimeout?: number;
  /** Most sessions at once, over all users. Default 1 024. */
  maxSessions?: number;
  /** Most sessions per user at once. Default 64. */
  maxSessionsPerUser?: number;
  /** Most tunnels per session at once; announced to the client in WELCOME. Default 64. */
  maxTunnelsPerSession?: number;
  /** Most tunnels per user at once, over all its sessions. Default 256. */
  maxTunnelsPerUser?: number;
  /** Most tunnels at once over all users. Default 4 096. */
  maxTunnels?: number;
  /** Most open streams per session. Default 1 024. */
  maxStreamsPerSession?: number;
  /** Most distinct users (peers) with a live session at once. Default 1 024. */
  maxPeers?: number;
  /**
   * Bytes one user may make the server buffer, over all its sessions and streams (receive windows plus
   * unacknowledged sent bytes), in bytes. Default: each session has its own `session.sessionWindowBudget`.
   */
  maxBufferedBytesPerUser?: number;
  /**
   * Bytes all peers together may make the server buffer (the sum of every budget above: receive
   * windows plus unacknowledged sent bytes), in bytes; half for each direction, shared fairly among
   * the peers that hold bytes (pool.ts). Default: no server-wide bound.
   */
  maxBufferedBytes?: number;
  /** Close a session with no open stream for this long (GOAWAY IDLE_TIMEOUT), in ms. 0 disables. Default 0. */
  idleSessionTimeout?: number;
  /**
   * Tunnels still handshaking, at most. Default 256. When full, a new connection evicts the oldest
   * handshake (so sockets that never authenticate cannot lock legitimate peers out until they time out).
   */
  maxHandshakes?: number;
  /**
   * Tunnels handshaking at once from one remote address; when full, a new one from there evicts that
   * address's oldest. Default 32. A tunnel whose routing preface names a live session (a JOIN of a
   * session already authenticated) leaves its address's count for its session's, capped at
   * `maxTunnelsPerSession`: a busy client host adding tunnels to its sessions is not evicted by its own
   * new sessions, nor by a flood from its address.
   */
  maxHandshakesPerAddress?: number;
  /**
   * Every connection starts with a PROXY protocol header (v1 or v2, PROTOCOL.md §4.2), as a load balancer
   * sends with `send-proxy-v2`: the address it names is the peer's for the per-address handshake cap,
   * the logs and `PeerInfo`. A connection without a valid one is refused. Default false: a header is
   * then never accepted (it would fail as a bad preface). Enable it only when nothing but the balancer
   * can reach the port: anyone who can connect may claim any address.
   */
  proxyProtocol?: boolean;
  /** Connections waiting in `accept()`, at most; more are refused. Default 1 024. */
  maxAcceptQueue?: number;
}

interface ResolvedServerOptions {
  keys: Map<string, Buffer>;
  usersMode: boolean;
  session: SessionConfig;
  tls: ServerOptions['tls'];
  onOpen: ServerOptions['onOpen'];
  onAssociation: ServerOptions['onAssociation'];
  handshakeTimeout: number;
  maxSessions: number;
  maxSessionsPerUser: number;
  maxTunnelsPerSession: number;
  maxTunnelsPerUser: number;
  maxTunnels: number;
  maxStreamsPerSession: number;
  maxHandshakes: number;
  maxHandshakesPerAddress: number;
  proxyProtocol: boolean;
  maxAcceptQueue: number;
  maxPeers: number;
  maxBufferedBytesPerUser: number | undefined;
  maxBufferedBytes: number | undefined;
  idleSessionTimeout: number;
}

function resolveServerOptions(o: ServerOptions): ResolvedServerOptions {
  const keys = new Map<string, Buffer>();
  if (o.key !== undefined && o.users !== undefined) throw new ConfigError('give either key or users, not both');
  if (o.key !== undefined) keys.set('', parseKey('key', o.key));
  else if (o.users !== undefined) {
    const entries = o.users instanceof Map ? [...o.users.entries()] : Object.entries(o.users);
    for (const [user, k] of entries) {
      if (!user || Buffer.byteLength(user) > 255) throw new ConfigError(`users: invalid user name "${user}"`);
      keys.set(user, parseKey(`users.${user}`, k));
    }
    if (keys.size === 0) throw new ConfigError('users is empty');
  } else throw new ConfigError('key (or users) is required; make one with `gkd keygen`');
  const r: ResolvedServerOptions = {
    keys,
    usersMode: o.users !== undefined,
    session: resolveSessionConfig(o.session),
    tls: o.tls,
    onOpen: o.onOpen,
    onAssociation: o.onAssociation,
    handshakeTimeout: o.handshakeTimeout ?? 10_000,
    maxSessions: o.maxSessions ?? 1024,
    maxSessionsPerUser: o.maxSessionsPerUser ?? 64,
    maxTunnelsPerSession: o.maxTunnelsPerSession ?? 64,
    maxTunnelsPerUser: o.maxTunnelsPerUser ?? 256,
    maxTunnels: o.maxTunnels ?? 4096,
    maxStreamsPerSession: o.maxStreamsPerSession ?? 1024,
    maxHandshakes: o.maxHandshakes ?? 256,
    maxHandshakesPerAddress: o.maxHandshakesPerAddress ?? 32,
    proxyProtocol: o.proxyProtocol ?? false,
    maxAcceptQueue: o.maxAcceptQueue ?? 1024,
    maxPeers: o.maxPeers ?? 1024,
    maxBufferedBytesPerUser: o.maxBufferedBytesPerUser,
    maxBufferedBytes: o.maxBufferedBytes,
    idleSessionTimeout: o.idleSessionTimeout ?? 0,
  };
  checkInt('maxPeers', r.maxPeers, 1, 1_000_000);
  if (r.maxBufferedBytesPerUser !== undefined)
    checkInt('maxBufferedBytesPerUser', r.maxBufferedBytesPerUser, 2 * r.session.maxPayload, Number.MAX_SAFE_INTEGER);
  if (r.maxBufferedBytes !== undefined) checkInt('maxBufferedBytes', r.maxBufferedBytes, 2 * r.session.maxPayload, Number.MAX_SAFE_INTEGER);
  checkInt('idleSessionTimeout', r.idleSessionTimeout, 0, 2_147_483_647);
  checkInt('handshakeTimeout', r.handshakeTimeout, 1, 600_000);
  checkInt('maxSessions', r.maxSessions, 1, 1_000_000);
  checkInt('maxSessionsPerUser', r.maxSessionsPerUser, 1, 1_000_000);
  checkInt('maxTunnelsPerSession', r.maxTunnelsPerSession, 1, 65_535);
  checkInt('maxTunnelsPerUser', r.maxTunnelsPerUser, 1, 1_000_000);
  checkInt('maxTunnels', r.maxTunnels, 1, 1_000_000);
  checkInt('maxStreamsPerSession', r.maxStreamsPerSession, 1, 1_000_000);
  checkInt('maxHandshakes', r.maxHandshakes, 1, 1_000_000);
  checkInt('maxHandshakesPerAddress', r.maxHandshakesPerAddress, 1, r.maxHandshakes);
  checkInt('maxAcceptQueue', r.maxAcceptQueue, 0, 1_000_000);
  if (typeof r.proxyProtocol !== 'boolean') throw new ConfigError(`proxyProtocol must be true or false, got ${String(r.proxyProtocol)}`);
  return r;
}

/** One server-wide pool (`maxBufferedBytes`, one per direction), for stats. */
export interface PoolStats {
  /** Bytes reserved by all peers together. */
  used: number;
  /** The pool's size: half of `maxBufferedBytes`, in bytes. */
  limit: number;
  /** Peers (or sessions, without per-user budgets) holding bytes from it. */
  activeMembers: number;
}

function poolStats(p: BytePool): PoolStats {
  return { used: p.used, limit: p.limit, activeMembers: p.activeMembers };
}

/** Stands in for a key or session secret that does not exist, so a refusal costs the same HMAC. */
const NO_SECRET = Buffer.alloc(32);
/** The REJECT message for a NEW that fails: the same for a wrong key and an unknown user. */
const WRONG_KEY = 'bad proof (wrong key, or unknown user)';
/** The REJECT message for a JOIN that fails: the same for an unknown session and a wrong session proof. */
const NO_SUCH_SESSION = 'unknown session (or wrong session proof)';

interface SessionEntry {
  session: Session;
  secret: Buffer;
  peer: PeerInfo;
}

/**
 * The server side of the transport: accepts tunnels, authenticates them, groups them into sessions
 * keyed by (user, session id), and hands out streams. Events: 'session' (peer), 'session-end' (peer, error),
 * 'tunnel-up' (peer, index), 'tunnel-down' (peer, index, error), 'refused' (remoteAddress, error).
 */
export class Server extends EventEmitter {
  private readonly opts: ResolvedServerOptions;
  private listener: net.Server | null = null;
  private readonly sessions = new Map<string, SessionEntry>();
  private readonly perUser = new Map<string, number>();
  private readonly budgets = new Map<string, { recv: ByteBudget; send: ByteBudget }>();
  /** The server-wide pools (`maxBufferedBytes`), one per direction; undefined without that bound. */
  private readonly pools: { recv: BytePool; send: BytePool } | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly sockets = new Set<Duplex>();
  /** Handshakes in progress, oldest first: how to refuse each. */
  private readonly handshakes = new Map<Duplex, (err: Error) => void>();
  /**
   * The same, grouped (oldest first): `a<address>` for each remote address, `t<token>` for tunnels
   * whose routing token names a live session. Each handshake is in one group at most.
   */
  private readonly handshakeGroups = new Map<string, Set<Duplex>>();
  /** Routing tokens (hex) of live sessions → how many sessions carry each (a token is random per session, so almost always 1). */
  private readonly liveTokens = new Map<string, number>();
  private readonly queue: Connection[] = [];
  private readonly waiters: { resolve: (c: Connection) => void; reject: (e: Error) => void }[] = [];
  private closed = false;
  private secureContext: tls.SecureContext | undefined;

  constructor(options: ServerOptions) {
    super();
    this.opts = resolveServerOptions(options);
    const total = this.opts.maxBufferedBytes;
    if (total !== undefined) this.pools = { recv: new BytePool(Math.floor(total / 2)), send: new BytePool(Math.floor(total / 2)) };
    const idle = this.opts.idleSessionTimeout;
    if (idle > 0) {
      this.idleTimer = setInterval(() => this.closeIdleSessions(), Math.max(50, Math.min(idle / 4, 60_000)));
      this.idleTimer.unref();
    }
  }

  private closeIdleSessions(): void {
    const now = Date.now();
    for (const e of [...this.sessions.values()]) {
      const streams = e.session.idleSince;
      const datagrams = e.session.datagrams.idleSince;
      // A session that carries only UDP associations is in use too.
      const since = streams === null || datagrams === null ? null : Math.max(streams, datagrams);
      if (since !== null && now - since >= this.opts.idleSessionTimeout) e.session.close(Reason.IDLE_TIMEOUT, 'session idle');
    }
  }

  /** Create a server and listen on `address` (`host:port`; port 0 picks a free one). */
  // Shadows Function.prototype.bind on purpose: `Server.bind(address, options)` is the API the seed had.
  static override async bind(address: string | HostPort, options: ServerOptions): Promise<Server> {
    const s = new Server(options);
    await s.listen(typeof address === 'string' ? parseHostPort(address, '0.0.0.0') : address);
    return s;
  }

  /** Listen on a TCP (or TLS) port. */
  listen(hp: HostPort): Promise<void> {
    // Always a plain listener: the routing preface comes before TLS, so TLS starts in handleConnection.
    const l = net.createServer((s) => this.handleConnection(s));
    this.listener = l;
    return new Promise((resolve, reject) => {
      l.once('error', reject);
      l.listen(hp.port, hp.host, () => {
        l.off('error', reject);
        l.on('error', (err) => this.emit('error', err));
        resolve();
      });
    });
  }

  /** The listening address. */
  address(): net.AddressInfo {
    const a = this.listener?.address();
    if (!a || typeof a === 'string') throw new ClosedError('server is not listening');
    return a;
  }

  /**
   * Serve one tunnel from its first byte (any Duplex: TCP, in-memory): with `proxyProtocol` the PROXY
   * header, then the routing preface (PROTOCOL.md §4.1), then TLS when the server has a certificate,
   * then the handshake. `routed`: whoever handed this socket over (the `gkd server --workers` master)
   * already read the header and the preface: `token` is the preface's, `remoteAddress` the peer's
   * address (the PROXY header's, or the socket's).
   */
  handleConnection(socket: Duplex, routed?: { token: Buffer; remoteAddress?: string | undefined }): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const socketAddress = (socket as net.Socket).remoteAddress;
    /** The peer's address: the socket's, or the one the PROXY header (or the master) names. */
    let remoteAddress = routed?.remoteAddress ?? socketAddress;
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    /** Set once the preface (and TLS) are through and frames flow: refusals then go out as REJECT on it. */
    let tunnel: Tunnel | null = null;
    let stopReading: (() => void) | null = null;
    let stage: 'proxy' | 'preface' | 'handshake' = routed ? 'handshake' : this.opts.proxyProtocol ? 'proxy' : 'preface';
    let done = false;
    let group: string | null = null;
    const leaveGroup = () => {
      if (group === null) return;
      const members = this.handshakeGroups.get(group);
      members?.delete(socket);
      if (members?.size === 0) this.handshakeGroups.delete(group);
      group = null;
    };
    const finish = () => {
      if (done) return false;
      done = true;
      clearTimeout(timer);
      this.handshakes.delete(socket);
      leaveGroup();
      return true;
    };
    const refuse = (err: Error) => {
      if (!finish()) return;
      this.emit('refused', remoteAddress, err);
      if (tunnel) tunnel.fail(err);
      else this.refuseRaw(socket, err, stopReading);
    };
    /** Join a group; when it is full, its oldest handshake is evicted first. */
    const joinGroup = (key: string, cap: number, evicted: () => string) => {
      leaveGroup();
      let members = this.handshakeGroups.get(key);
      if (members && members.size >= cap) this.handshakes.get(members.values().next().value!)?.(new LimitError(evicted()));
      members = this.handshakeGroups.get(key);
      if (!members) {
        members = new Set();
        this.handshakeGroups.set(key, members);
      }
      members.add(socket);
      group = key;
    };
    const joinAddressGroup = () => {
      const address = remoteAddress ?? '';
      joinGroup(
        `a${address}`,
        this.opts.maxHandshakesPerAddress,
        () => `handshake evicted: more than ${this.opts.maxHandshakesPerAddress} in progress from ${address || 'this address'}`,
      );
    };
    // When full (per address, then in total), evict the oldest handshake rather than refuse the new
    // one: a legitimate handshake takes one RTT, so only a flood of new connections (not a pile of idle
    // ones, nor an attacker behind the same NAT address) can keep one from completing. Behind a PROXY
    // header the address is known only once the header is read: the group is joined then.
    const addressKnown = routed !== undefined || !this.opts.proxyProtocol;
    if (addressKnown) joinAddressGroup();
    if (this.handshakes.size >= this.opts.maxHandshakes) {
      const oldest = this.handshakes.values().next().value!;
      oldest(new LimitError(`handshake evicted: more than ${this.opts.maxHandshakes} in progress`));
    }
    this.handshakes.set(socket, refuse);
    const timer = setTimeout(
      () =>
        refuse(
          stage === 'handshake'
            ? new HandshakeTimeoutError(this.opts.handshakeTimeout)
            : stage === 'proxy'
              ? new ProxyHeaderError(
                  `no PROXY protocol header within ${this.opts.handshakeTimeout} ms (this server is set to sit behind a balancer that sends one)`,
                )
              : new BadPrefaceError(
                  `no routing preface within ${this.opts.handshakeTimeout} ms (a version-1 client? it must be upgraded to protocol version 2)`,
                ),
        ),
      this.opts.handshakeTimeout,
    );
    const start = (token: Buffer) => {
      stage = 'handshake';
      if (done) return;
      // A JOIN for a live session (its token is known): counted with its session, not its address,
      // so a host founding many sessions at once (or a flood from its address) cannot evict the
      // tunnels of sessions it already authenticated. The token is only a claim until AUTH proves it;
      // guessing one takes 2^128 tries, and a claim buys at most maxTunnelsPerSession slots, still
      // under maxHandshakes.
      const hex = token.toString('hex');
      if (this.liveTokens.has(hex))
        joinGroup(
          `t${hex}`,
          this.opts.maxTunnelsPerSession,
          () => `handshake evicted: more than ${this.opts.maxTunnelsPerSession} tunnels of one session in progress`,
        );
      const tlsOpts = this.opts.tls;
      if (!tlsOpts) {
        tunnel = this.startHandshake(socket, remoteAddress, token, finish, refuse);
        socket.resume();
        return;
      }
      this.secureContext ??= tls.createSecureContext({ cert: tlsOpts.cert, key: tlsOpts.key });
      // Unshifted bytes (the start of the ClientHello) are fed to TLS by TLSSocket itself.
      const secure = new tls.TLSSocket(socket as net.Socket, { isServer: true, secureContext: this.secureContext });
      this.sockets.add(secure);
      secure.once('close', () => this.sockets.delete(secure));
      secure.on('error', (err) => refuse(err));
      secure.once('secure', () => {
        if (!done) tunnel = this.startHandshake(secure, remoteAddress, token, finish, refuse);
      });
    };
    if (routed) {
      start(routed.token);
      return;
    }
    let sentPreface = false;
    const readThePreface = () => {
      stage = 'preface';
      stopReading = readPreface(socket, start, refuse);
    };
    if (this.opts.proxyProtocol) {
      const reader = readProxyHeader(
        socket,
        (header, more) => {
          if (done) return;
          remoteAddress = header.source?.address ?? socketAddress;
          sentPreface = more;
          joinAddressGroup();
          if (done) return;
          readThePreface();
          socket.once('data', () => (sentPreface = true));
          socket.resume(); // the header reader paused it; the preface reader takes over
        },
        refuse,
      );
      stopReading = reader.stop;
      // Closed before the PROXY header was whole: a refusal, unless it sent nothing at all (a port scan).
      socket.once('close', () => {
        if (stage !== 'proxy') return;
        if (reader.decoder.bufferedBytes === 0) finish();
        else refuse(new ProxyHeaderError('closed during the PROXY protocol header'));
      });
    } else {
      socket.once('data', () => (sentPreface = true));
      readThePreface();
    }
    // A connection that closes before its preface frees its handshake slot now. One that sent nothing
    // (past a PROXY header): a balancer's health check or a port scan, not worth a refusal in the logs.
    socket.once('close', () => {
      if (stage !== 'preface') return;
      if (!sentPreface) {
        finish();
        return;
      }
      refuse(new BadPrefaceError('closed during the routing preface'));
    });
  }

  /** Refuse a tunnel before frames flow: on plain TCP a REJECT (a version-1 client reads it), on TLS just close. */
  private refuseRaw(socket: Duplex, err: Error & { reason?: number | undefined }, stopReading: (() => void) | null): void {
    stopReading?.();
    if (this.opts.tls || socket.destroyed || !socket.writable) {
      socket.destroy();
      return;
    }
    const reason = err.reason ?? Reason.GENERAL_FAILURE;
    socket.end(encode({ type: FrameType.REJECT, reason, message: err.message }));
    // A peer that never reads must not keep the socket: it is ours to close.
    setTimeout(() => socket.destroy(), 1000).unref();
  }

  /** The frame handshake on a tunnel whose preface (and TLS) are done: CHALLENGE, AUTH, WELCOME. */
  private startHandshake(socket: Duplex, remoteAddress: string | undefined, token: Buffer, finish: () => boolean, refuse: (err: Error) => void): Tunnel {
    const c = this.opts.session;
    const t = new Tunnel(socket, tunnelOptions(c, -1));
    t.transition('handshaking');
    const nonce = newNonce();
    t.handlers.close = (_t, _u, err) => {
      if (finish()) this.emit('refused', remoteAddress, err ?? new AuthError('closed during the handshake', Reason.GENERAL_FAILURE));
    };
    t.handlers.handshake = (f: Frame) => {
      if (f.type !== FrameType.AUTH) return refuse(new ProtocolError('expected AUTH'));
      let result: { entry: SessionEntry; proof: Buffer; index: number };
      try {
        result = this.authenticate(f, nonce, remoteAddress, token);
      } catch (err) {
        return refuse(err as Error);
      }
      finish();
      t.handlers.handshake = undefined;
      t.handlers.close = undefined;
      t.write(
        encode({
          type: FrameType.WELCOME,
          proof: result.proof,
          maxBody: c.maxBody,
          maxStreams: this.opts.maxStreamsPerSession,
          maxTunnels: this.announcedTunnelCap,
        }),
      );
      (t as { index: number }).index = result.index;
      t.transition('open');
      result.entry.session.addTunnel(t);
    };
    t.write(encode({ type: FrameType.CHALLENGE, nonce, flags: this.opts.usersMode ? CHALLENGE_FLAG_USERS : 0 }));
    return t;
  }

  /** Check an AUTH; returns the session to join and the WELCOME proof, or throws AuthError with the REJECT reason. */
  private authenticate(f: AuthFrame, nonce: Buffer, remoteAddress: string | undefined, token: Buffer): { entry: SessionEntry; proof: Buffer; index: number } {
    const user = this.opts.usersMode ? f.user : '';
    if (!this.opts.usersMode && f.user !== '') throw new AuthError('this server has no users; send no user name');
    const input: ProofInput = { mode: f.mode, serverNonce: nonce, clientNonce: f.clientNonce, sessionId: f.sessionId, tunnelIndex: f.tunnelIndex, user };
    const sid = f.sessionId.toString('hex');
    const mapKey = `${user}\0${sid}`;
    if (f.mode === AuthMode.NEW) {
      const key = this.opts.keys.get(user);
      // Compute a proof even for an unknown user, and answer alike, so neither timing nor the REJECT
      // tells which users exist.
      const expected = authProof(key ?? NO_SECRET, input);
      if (!proofEquals(expected, f.proof) || !key) throw new AuthError(WRONG_KEY, Reason.BAD_PROOF);
      if (this.sessions.has(mapKey)) throw new AuthError('session id already in use', Reason.SESSION_EXISTS);
      if (this.sessions.size >= this.opts.maxSessions) throw new AuthError('too many sessions on this server', Reason.LIMIT_EXCEEDED);
      if (!this.perUser.has(user) && this.perUser.size >= this.opts.maxPeers) throw new AuthError('too many peers on this server', Reason.LIMIT_EXCEEDED);
      if ((this.perUser.get(user) ?? 0) >= this.opts.maxSessionsPerUser) throw new AuthError(`too many sessions for user "${user}"`, Reason.LIMIT_EXCEEDED);
      this.checkTunnelCaps(user);
      const entry = this.createSession(mapKey, user, sid, sessionSecret(key, input), remoteAddress, token.toString('hex'));
      return { entry, proof: welcomeProof(key, input), index: f.tunnelIndex };
    }
    // A session that does not exist and a proof that does not match one that does get the same answer,
    // after the same work: a peer without the session's secret must not learn whether it exists.
    const entry = this.sessions.get(mapKey);
    const expected = authProof(entry?.secret ?? NO_SECRET, input);
    if (!proofEquals(expected, f.proof) || !entry) throw new AuthError(NO_SUCH_SESSION, Reason.UNKNOWN_SESSION);
    if (entry.session.tunnelCount >= this.opts.maxTunnelsPerSession) throw new AuthError('too many tunnels in this session', Reason.LIMIT_EXCEEDED);
    this.checkTunnelCaps(user);
    return { entry, proof: welcomeProof(entry.secret, input), index: f.tunnelIndex };
  }

  /** The per-session tunnel cap WELCOME announces: the session cap, lowered to the per-user cap (u16). */
  private get announcedTunnelCap(): number {
    return Math.min(this.opts.maxTunnelsPerSession, this.opts.maxTunnelsPerUser, 65_535);
  }

  /** Throw LIMIT_EXCEEDED if one more tunnel for `user` would pass the per-user or the global tunnel cap. */
  private checkTunnelCaps(user: string): void {
    let total = 0;
    let mine = 0;
    for (const e of this.sessions.values()) {
      total += e.session.tunnelCount;
      if (e.peer.user === user) mine += e.session.tunnelCount;
    }
    if (total >= this.opts.maxTunnels) throw new AuthError('too many tunnels on this server', Reason.LIMIT_EXCEEDED);
    if (mine >= this.opts.maxTunnelsPerUser) throw new AuthError(`too many tunnels for user "${user}"`, Reason.LIMIT_EXCEEDED);
  }

  private createSession(mapKey: string, user: string, sid: string, secret: Buffer, remoteAddress: string | undefined, routingToken: string): SessionEntry {
    let budgets = this.budgets.get(user);
    const pools = this.pools;
    if (!budgets && this.opts.maxBufferedBytesPerUser !== undefined) {
      const half = Math.floor(this.opts.maxBufferedBytesPerUser / 2);
      budgets = { recv: new ByteBudget(half, pools?.recv), send: new ByteBudget(half, pools?.send) };
      this.budgets.set(user, budgets);
    }
    // Without per-user budgets, each session's own budgets still draw on the server-wide pools.
    const own = budgets === undefined && pools !== undefined;
    if (own) {
      const half = Math.floor(this.opts.session.sessionWindowBudget / 2);
      budgets = { recv: new ByteBudget(half, pools.recv), send: new ByteBudget(half, pools.send) };
    }
    const sessionBudgets = budgets;
    const session = new Session('server', sid, this.opts.session, budgets);
    session.maxStreams = this.opts.maxStreamsPerSession;
    const peer: PeerInfo = { user, sessionId: sid, remoteAddress, routingToken };
    const entry: SessionEntry = { session, secret, peer };
    this.sessions.set(mapKey, entry);
    this.perUser.set(user, (this.perUser.get(user) ?? 0) + 1);
    this.liveTokens.set(routingToken, (this.liveTokens.get(routingToken) ?? 0) + 1);
    session.on('open', (req: OpenRequest) => this.onOpen(req, peer));
    const onAssociation = this.opts.onAssociation;
    if (onAssociation) session.datagrams.onAssociation = (a) => onAssociation(a, peer);
    session.on('tunnel-up', (t: Tunnel) => this.emit('tunnel-up', peer, t.index));
    session.on('tunnel-down', (t: Tunnel, err?: Error) => this.emit('tunnel-down', peer, t.index, err));
    session.on('lost', (err: Error) => {
      if (this.sessions.get(mapKey) === entry) {
        this.sessions.delete(mapKey);
        const tokens = (this.liveTokens.get(routingToken) ?? 1) - 1;
        if (tokens > 0) this.liveTokens.set(routingToken, tokens);
        else this.liveTokens.delete(routingToken);
        const n = (this.perUser.get(user) ?? 1) - 1;
        if (n > 0) this.perUser.set(user, n);
        else {
          this.perUser.delete(user);
          const b = this.budgets.get(user);
          this.budgets.delete(user);
          b?.recv.leave();
          b?.send.leave();
        }
      }
      if (own) {
        sessionBudgets?.recv.leave();
        sessionBudgets?.send.leave();
      }
      this.emit('session-end', peer, err);
    });
    this.emit('session', peer);
    return entry;
  }

  private onOpen(req: OpenRequest, peer: PeerInfo): void {
    if (this.opts.onOpen) {
      this.opts.onOpen(req, peer);
      return;
    }
    if (this.queue.length >= this.opts.maxAcceptQueue && this.waiters.length === 0) {
      req.reject(Reason.GENERAL_FAILURE, 'accept queue full');
      return;
    }
    const conn = req.accept();
    const w = this.waiters.shift();
    if (w) w.resolve(conn);
    else this.queue.push(conn);
  }

  /** The next connection opened by a peer (library mode, or any OPEN when no `onOpen` is set). */
  accept(): Promise<Connection> {
    const c = this.queue.shift();
    if (c) return Promise.resolve(c);
    if (this.closed) return Promise.reject(new ClosedError('server closed'));
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Connection> {
    for (;;) {
      let c: Connection;
      try {
        c = await this.accept();
      } catch {
        return;
      }
      yield c;
    }
  }

  /** Stats of every session, and of the server-wide pools when `maxBufferedBytes` is set. */
  stats(): { sessions: number; handshaking: number; peers: SessionStats[]; pools?: { recv: PoolStats; send: PoolStats } } {
    const pools = this.poolStats();
    return {
      sessions: this.sessions.size,
      handshaking: this.handshakes.size,
      peers: [...this.sessions.values()].map((e) => e.session.stats()),
      ...(pools ? { pools } : {}),
    };
  }

  /** The server-wide pools (`maxBufferedBytes`), or undefined without that bound. */
  poolStats(): { recv: PoolStats; send: PoolStats } | undefined {
    const p = this.pools;
    return p ? { recv: poolStats(p.recv), send: poolStats(p.send) } : undefined;
  }

  /** Peers with a live session. */
  peers(): PeerInfo[] {
    return [...this.sessions.values()].map((e) => e.peer);
  }

  /** Stop accepting tunnels and streams; tell peers (GOAWAY); existing streams may finish. */
  goAway(): void {
    this.listener?.close();
    for (const e of this.sessions.values()) e.session.goAway();
  }

  /** Close everything now. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.idleTimer);
    for (const w of this.waiters.splice(0)) w.reject(new ClosedError('server closed'));
    for (const e of [...this.sessions.values()]) e.session.close(Reason.SHUTDOWN, 'server shutting down');
    for (const s of this.sockets) s.destroy();
    const l = this.listener;
    if (l) await new Promise<void>((resolve) => l.close(() => resolve()));
  }
}
