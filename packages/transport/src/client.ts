import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import {
  AuthError,
  AuthMode,
  ConfigError,
  GkdError,
  NoTunnelError,
  Reason,
  SESSION_ID_LENGTH,
  SessionLostError,
  newRoutingToken,
  toAddress,
  type Address,
} from '@gkd/protocol';
import { checkInt, parseKey, resolveSessionConfig, type KeyInput, type SessionConfig } from './config.js';
import { clientHandshake } from './handshake.js';
import { writePreface } from './preface.js';
import type { Association } from './datagram.js';
import { Session, type SessionStats } from './session.js';
import type { Connection } from './stream.js';
import { Tunnel, tunnelOptions } from './tunnel.js';
import { parseHostPort, type HostPort } from './address.js';

/** TLS settings of a client: verify the server with a CA, or pin its certificate's SHA-256 fingerprint. */
export interface ClientTlsOptions {
  /** PEM CA certificate(s) to verify the server with (default: the system's CAs). */
  ca?: string | Buffer;
  /** SHA-256 fingerprint of the server certificate (hex, colons optional). Replaces CA verification. */
  fingerprint?: string;
  /** Name to verify the certificate against (default: the server host). */
  servername?: string;
}

/** Client settings. Times in ms. */
export interface ClientOptions {
  /** The key (≥ 128 bits; hex or base64 text, or bytes). */
  key: KeyInput;
  /** User name, when the server has several users. */
  user?: string;
  /** Number of tunnels. Default 4. */
  tunnels?: number;
  /** Session (flow control, keepalive, grace) settings. */
  session?: Partial<SessionConfig>;
  /** TLS for the tunnels; plain TCP when absent. */
  tls?: ClientTlsOptions;
  /** Custom tunnel connector (tests, relays): returns a connected Duplex for tunnel `index`. */
  connect?: (index: number) => Promise<Duplex>;
  /** TCP connect timeout per attempt, in ms. Default 10 000. */
  connectTimeout?: number;
  /** Handshake timeout, in ms. Default 10 000. */
  handshakeTimeout?: number;
  /** How long `open()` waits for the server's answer, in ms. Default 20 000. */
  openTimeout?: number;
  /** How long `open()` waits for a tunnel when none is up, in ms. Default 10 000. */
  tunnelWaitTimeout?: number;
  /** First reconnect delay, in ms (doubles per failure, with jitter). Default 100. */
  reconnectMin?: number;
  /** Largest reconnect delay, in ms. Default 1 000. */
  reconnectMax?: number;
  /**
   * After the server rejects our key (REJECT BAD_PROOF to a NEW, or a server that cannot prove it holds
   * the key, or a pinned certificate that does not match), no tunnel tries again for this long, in ms;
   * it doubles per further rejection. Default 10 000. A rejected key does not heal in half a second,
   * and retrying it at that pace looks like an attack in the server's logs.
   */
  rejectedRetryMin?: number;
  /** Largest wait after a rejected key, in ms. Default 300 000. */
  rejectedRetryMax?: number;
}

interface ResolvedClientOptions {
  key: Buffer;
  user: string;
  tunnels: number;
  session: SessionConfig;
  tls: ClientTlsOptions | undefined;
  connect: ((index: number) => Promise<Duplex>) | undefined;
  connectTimeout: number;
  handshakeTimeout: number;
  openTimeout: number;
  tunnelWaitTimeout: number;
  reconnectMin: number;
  reconnectMax: number;
  rejectedRetryMin: number;
  rejectedRetryMax: number;
}

function resolveClientOptions(o: ClientOptions): ResolvedClientOptions {
  if (!o || o.key === undefined) throw new ConfigError('key is required; make one with `gkd keygen`');
  const r: ResolvedClientOptions = {
    key: parseKey('key', o.key),
    user: o.user ?? '',
    tunnels: o.tunnels ?? 4,
    session: resolveSessionConfig(o.session),
    tls: o.tls,
    connect: o.connect,
    connectTimeout: o.connectTimeout ?? 10_000,
    handshakeTimeout: o.handshakeTimeout ?? 10_000,
    openTimeout: o.openTimeout ?? 20_000,
    tunnelWaitTimeout: o.tunnelWaitTimeout ?? 10_000,
    reconnectMin: o.reconnectMin ?? 100,
    reconnectMax: o.reconnectMax ?? 1000,
    rejectedRetryMin: o.rejectedRetryMin ?? 10_000,
    rejectedRetryMax: o.rejectedRetryMax ?? 300_000,
  };
  checkInt('tunnels', r.tunnels, 1, 256);
  checkInt('connectTimeout', r.connectTimeout, 1, 600_000);
  checkInt('handshakeTimeout', r.handshakeTimeout, 1, 600_000);
  checkInt('openTimeout', r.openTimeout, 1, 3_600_000);
  checkInt('tunnelWaitTimeout', r.tunnelWaitTimeout, 0, 3_600_000);
  checkInt('reconnectMin', r.reconnectMin, 1, 600_000);
  checkInt('reconnectMax', r.reconnectMax, r.reconnectMin, 3_600_000);
  checkInt('rejectedRetryMin', r.rejectedRetryMin, 1, 3_600_000);
  checkInt('rejectedRetryMax', r.rejectedRetryMax, r.rejectedRetryMin, 86_400_000);
  if (Buffer.byteLength(r.user) > 255) throw new ConfigError('user must be at most 255 bytes');
  return r;
}

/**
 * Client events: 'tunnel-up' (index), 'tunnel-down' (index, error), 'reconnecting' (index, delayMs, error),
 * 'session' (id: a new session started), 'session-lost' (error), 'auth-failed' (error),
 * 'dormant' (error: the server closed the idle session; tunnels stay down until the next open), 'awake'.
 */
export class Client extends EventEmitter {
  readonly server: HostPort;
  private readonly opts: ResolvedClientOptions;
  private session!: Session;
  private sessionId!: Buffer;
  /** The routing token of the current session: sent in the preface of each of its tunnels, new per session. */
  private routingToken!: Buffer;
  private secret: Buffer | null = null;
  private founding: Promise<void> | null = null;
  private closed = false;
  private readonly sockets = new Set<Duplex>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private lastError: Error | null = null;
  /** Rejections of our key in a row, and until when (Date.now() ms) no tunnel may try again. */
  private keyRejections = 0;
  private rejectedUntil = 0;
  /** Set while the server closed our idle session: tunnels stay down until the next open wakes them. */
  private dormant: { promise: Promise<void>; wake: () => void } | null = null;

  private constructor(server: HostPort, options: ClientOptions) {
    super();
    this.server = server;
    this.opts = resolveClientOptions(options);
    // Every open() that finds no tunnel up waits with its own 'tunnel-up' and 'auth-failed' listener
    // (removed when it is done): a proxy opening many connections at once legitimately has more than 10.
    this.setMaxListeners(0);
    this.newSession();
  }

  /** Start a client that connects its tunnels in the background and keeps them up. */
  static create(server: string | HostPort, options: ClientOptions): Client {
    const c = new Client(typeof server === 'string' ? parseHostPort(server) : server, options);
    for (let i = 0; i < c.opts.tunnels; i++) void c.runSlot(i);
    return c;
  }

  /** Start a client and wait until its first tunnel is up; rejects on a refused handshake or after the connect timeout. */
  static async connect(server: string | HostPort, options: ClientOptions): Promise<Client> {
    const c = Client.create(server, options);
    try {
      await c.waitForTunnel(c.opts.connectTimeout + c.opts.handshakeTimeout, true);
    } catch (err) {
      c.close();
      throw err;
    }
    return c;
  }

  /** Resolve once at least one tunnel is up. */
  waitForTunnel(timeoutMs = this.opts.tunnelWaitTimeout, failOnAuth = false): Promise<void> {
    if (this.session.liveTunnels > 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.off('tunnel-up', onUp);
        this.off('auth-failed', onAuth);
        if (err) reject(err);
        else resolve();
      };
      const onUp = () => done();
      const onAuth = (err: Error) => {
        if (failOnAuth) done(err);
      };
      const timer = setTimeout(
        () => done(new NoTunnelError(`no tunnel to ${this.server.host}:${this.server.port} within ${timeoutMs} ms${this.lastError ? `: ${this.lastError.message}` : ''}`)),
        timeoutMs,
      );
      this.on('tunnel-up', onUp);
      this.on('auth-failed', onAuth);
    });
  }

  /** After a GOAWAY the session takes no new streams; wait until it is replaced (server restarted). */
  private waitForNewSession(): Promise<void> {
    const old = this.session;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('session', onNew);
        reject(new NoTunnelError(`the server is going away and no new session came up within ${this.opts.tunnelWaitTimeout} ms`));
      }, this.opts.tunnelWaitTimeout);
      const onNew = () => {
        if (this.session === old) return;
        clearTimeout(timer);
        this.off('session', onNew);
        resolve();
      };
      this.on('session', onNew);
    });
  }

  /** Open a proxied connection to `destination`; resolves after the server connected it (OPEN_OK). */
  async open(destination: { host: string; port: number } | Address): Promise<Connection> {
    const addr = 'type' in destination ? destination : toAddress(destination.host, destination.port);
    return this.openStream(addr);
  }

  /**
   * Open a UDP association (PROTOCOL.md §5a) once a tunnel is up. Nothing is sent until its first
   * datagram; it ends with `close()`, when the server closes it, or with the session (its 'close' event).
   */
  async associate(): Promise<Association> {
    if (this.closed) throw new GkdError('GKD_ERR_CLOSED', 'client is closed');
    this.wake();
    if (this.session.draining) await this.waitForNewSession();
    await this.waitForTunnel();
    return this.session.datagrams.associate();
  }

  /** Open a library-mode connection (no destination: the server application accepts it). */
  async getConnection(): Promise<Connection> {
    return this.openStream(null);
  }

  private async openStream(addr: Address | null): Promise<Connection> {
    if (this.closed) throw new GkdError('GKD_ERR_CLOSED', 'client is closed');
    this.wake();
    if (this.session.draining) await this.waitForNewSession();
    await this.waitForTunnel();
    return this.session.open(addr, this.opts.openTimeout);
  }

  /** Tunnels up right now. */
  get tunnelsUp(): number {
    return this.session.liveTunnels;
  }

  /** Configured number of tunnels. */
  get tunnelCount(): number {
    return this.opts.tunnels;
  }

  stats(): SessionStats {
    return this.session.stats();
  }

  /** Close every tunnel and fail open streams. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dormant?.wake(); // let the slots see `closed` and return
    for (const t of this.timers) clearTimeout(t);
    this.session.close(Reason.NORMAL, 'client closed');
    for (const s of this.sockets) s.destroy();
  }

  private newSession(): void {
    this.sessionId = randomBytes(SESSION_ID_LENGTH);
    this.routingToken = newRoutingToken();
    this.secret = null;
    this.founding = null;
    const s = new Session('client', this.sessionId.toString('hex'), this.opts.session);
    s.on('tunnel-up', (t: Tunnel) => this.emit('tunnel-up', t.index));
    s.on('tunnel-down', (t: Tunnel, err?: Error) => this.emit('tunnel-down', t.index, err));
    s.on('lost', (err: Error & { reason?: number }) => {
      if (this.session !== s || this.closed) return;
      if (err.reason === Reason.IDLE_TIMEOUT) {
        // Nothing was using it: reconnect when something does, not now (or every idle timeout would
        // make a new session on the server for nothing).
        let wake!: () => void;
        const promise = new Promise<void>((r) => (wake = r));
        this.dormant = { promise, wake };
        this.emit('dormant', err);
      } else this.emit('session-lost', err);
      this.newSession();
    });
    this.session = s;
    this.emit('session', s.id);
  }

  /** Leave the dormant state (a stream is wanted): the tunnel slots reconnect. */
  private wake(): void {
    const d = this.dormant;
    if (!d) return;
    this.dormant = null;
    d.wake();
    this.emit('awake');
  }

  /** True while the tunnels are down on purpose: the server closed the idle session, and nothing has asked for a stream since. */
  get isDormant(): boolean {
    return this.dormant !== null;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  /** Keep tunnel `index` up for the client's lifetime: connect, handshake, wait for loss, back off, repeat. */
  private async runSlot(index: number): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      if (this.dormant) {
        await this.dormant.promise;
        continue;
      }
      const held = this.rejectedUntil - Date.now();
      if (held > 0) {
        await this.sleep(held);
        continue;
      }
      try {
        await this.bringUp(index);
        failures = 0;
        continue;
      } catch (err) {
        if (this.closed) return;
        this.lastError = err as Error;
        if (err instanceof AuthError && err.reason === Reason.UNKNOWN_SESSION) continue; // bringUp replaced the session
        if (err instanceof AuthError && err.reason === Reason.BAD_PROOF) {
          // Every tunnel waits, not just this one: the next attempt is one handshake, not one per tunnel.
          this.keyRejections++;
          const delay = Math.min(this.opts.rejectedRetryMax, this.opts.rejectedRetryMin * 2 ** Math.min(this.keyRejections - 1, 30));
          this.rejectedUntil = Date.now() + delay;
          this.emit('auth-failed', err);
          this.emit('reconnecting', index, delay, err);
          continue;
        }
        if (err instanceof AuthError) this.emit('auth-failed', err);
        failures++;
        const base = Math.min(this.opts.reconnectMax, this.opts.reconnectMin * 2 ** Math.min(failures - 1, 20));
        const delay = Math.round(base * (0.5 + Math.random() * 0.5));
        this.emit('reconnecting', index, delay, err);
        await this.sleep(delay);
      }
    }
  }

  /** One life of a tunnel: resolves when it closes after having been up; rejects if it never came up. */
  private async bringUp(index: number): Promise<void> {
    // Tunnels other than the founder wait for the session secret.
    while (!this.secret && this.founding) await this.founding.catch(() => undefined);
    if (this.rejectedUntil > Date.now()) return; // the founder's key was just rejected: runSlot waits
    const session = this.session;
    const mode = this.secret ? AuthMode.JOIN : AuthMode.NEW;
    const founder: { settle?: () => void } = {};
    if (mode === AuthMode.NEW) this.founding = new Promise<void>((r) => (founder.settle = r));
    try {
      const socket = await this.dial(index, this.routingToken);
      if (this.closed) {
        socket.destroy();
        throw new GkdError('GKD_ERR_CLOSED', 'client closed');
      }
      if (this.dormant) {
        // The session went idle while we dialed: do not found a new one nobody asked for.
        socket.destroy();
        return; // `finally` lets the other slots stop waiting for a founder
      }
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      const c = this.opts.session;
      const t = new Tunnel(socket, tunnelOptions(c, index));
      t.transition('handshaking');
      let hs: Awaited<ReturnType<typeof clientHandshake>>;
      try {
        hs = await clientHandshake(t, {
          mode,
          sessionId: this.sessionId,
          tunnelIndex: index,
          user: this.opts.user,
          key: mode === AuthMode.NEW ? this.opts.key : this.secret!,
          timeoutMs: this.opts.handshakeTimeout,
        });
      } catch (err) {
        if (err instanceof AuthError && err.reason === Reason.UNKNOWN_SESSION && session === this.session && !session.lost) {
          // The server forgot this session (it restarted): its streams cannot continue; start a new one.
          session.expire(new SessionLostError('the server no longer knows this session (restarted?)', Reason.UNKNOWN_SESSION));
        }
        throw err;
      }
      const { secret, welcome } = hs;
      if (session !== this.session || session.lost) {
        t.close();
        throw new GkdError('GKD_ERR_CLOSED', 'session replaced during the handshake');
      }
      if (mode === AuthMode.NEW) {
        this.secret = secret;
        this.keyRejections = 0;
      }
      session.maxStreams = welcome.maxStreams;
      const closed = new Promise<void>((resolve) => {
        session.addTunnel(t);
        const prev = t.handlers.close;
        t.handlers.close = (tt, u, err) => {
          prev?.(tt, u, err);
          resolve();
        };
      });
      founder.settle?.();
      founder.settle = undefined;
      await closed;
    } finally {
      if (founder.settle) {
        this.founding = null;
        founder.settle();
      }
    }
  }

  /** Connect tunnel `index` and send the routing preface (PROTOCOL.md §4.1) first, before TLS. */
  private async dial(index: number, token: Buffer): Promise<Duplex> {
    if (this.opts.connect) {
      const d = await this.opts.connect(index);
      writePreface(d, token);
      return d;
    }
    const { host, port } = this.server;
    const timeout = this.opts.connectTimeout;
    return new Promise((resolve, reject) => {
      const raw = net.connect({ host, port });
      let socket: net.Socket = raw;
      const tlsOpts = this.opts.tls;
      const fp = tlsOpts?.fingerprint?.replace(/:/g, '').toUpperCase();
      raw.once('connect', () => {
        writePreface(raw, token);
        if (!tlsOpts) {
          clearTimeout(timer);
          raw.removeListener('error', onError);
          resolve(raw);
          return;
        }
        raw.removeListener('error', onError);
        raw.on('error', () => undefined); // the TLS socket on top reports it
        socket = tls.connect({
          socket: raw,
          host, // checkServerIdentity checks this name (or IP), as when tls.connect dials itself
          servername: tlsOpts.servername ?? (net.isIP(host) ? undefined : host),
          ca: tlsOpts.ca,
          rejectUnauthorized: !fp,
        });
        socket.once('error', onError);
        socket.once('secureConnect', () => {
          clearTimeout(timer);
          if (fp) {
            const cert = (socket as tls.TLSSocket).getPeerCertificate();
            const got = cert?.fingerprint256?.replace(/:/g, '').toUpperCase();
            if (got !== fp) {
              socket.destroy();
              reject(new AuthError(`server certificate fingerprint ${cert?.fingerprint256 ?? '(none)'} does not match the pinned one ${colonHex(fp)}`));
              return;
            }
          }
          socket.removeListener('error', onError);
          resolve(socket);
        });
      });
      const timer = setTimeout(() => {
        socket.destroy();
        raw.destroy();
        reject(new NoTunnelError(`connect to ${host}:${port} timed out after ${timeout} ms`));
      }, timeout);
      const onError = (err: Error) => {
        clearTimeout(timer);
        raw.destroy();
        // A certificate that does not verify (unknown CA, wrong name, expired) is as final as a wrong
        // fingerprint: report it as an AuthError, so Client.connect fails now instead of retrying
        // until its timeout. Node sets authorizationError just before it destroys the socket for it.
        const verifyError = tlsOpts && socket !== raw ? (socket as tls.TLSSocket).authorizationError : null;
        if (verifyError) reject(new AuthError(`server certificate rejected: ${err.message}`));
        else if (tlsOpts && socket !== raw && notTls(err)) {
          // A plaintext server answers a ClientHello with frame bytes: final too, and the fix is on the
          // operator's side, so say it instead of retrying a connection that can never be encrypted.
          reject(new AuthError(`${host}:${port} did not answer TLS (${(err as { reason?: string }).reason ?? err.message}): is the server running with --plaintext? Both ends must ask for plaintext`));
        } else reject(err);
      };
      raw.once('error', onError);
    });
  }
}

/** `ABCD…` → `AB:CD:…`, as Node prints `fingerprint256`. */
function colonHex(hex: string): string {
  return hex.toUpperCase().replace(/(..)(?!$)/g, '$1:');
}

/** An OpenSSL record-layer error: the peer's bytes are not TLS (a plaintext server answered). */
function notTls(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return /^ERR_SSL_(WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|RECORD_LENGTH_MISMATCH|UNEXPECTED_RECORD|HTTP_REQUEST)/.test(code) || /wrong version number|packet length too long/i.test(err.message);
}
