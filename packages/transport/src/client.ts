import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import {
  AbortError,
  AuthError,
  AuthMode,
  ClosedError,
  ConfigError,
  NoTunnelError,
  Reason,
  SESSION_ID_LENGTH,
  SessionLostError,
  newRoutingToken,
  toAddress,
  type Address,
} from '@gkd/protocol';
import { abortable } from './abort.js';
import { checkInt, parseKey, resolveSessionConfig, type KeyInput, type SessionConfig } from './config.js';
import { clientHandshake } from './handshake.js';
import { writePreface } from './preface.js';
import type { Association } from './datagram.js';
import { Session, type SessionStats } from './session.js';
import type { Connection } from './stream.js';
import { Tunnel, tunnelOptions } from './tunnel.js';
import type { AdaptiveConfig, CountDecision } from './adaptive.js';
import { parseHostPort, type HostPort } from './address.js';
import { MAX_TOTAL_TUNNELS, PathPlan, type PathInfo, type PathOptions } from './multipath.js';
import { PathCounts, type PathCountDecision, type PathSample } from './path-counts.js';

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
  /**
   * Number of tunnels (1–256), or `'auto'`: the client picks it from what more tunnels buy (adaptive.ts;
   * between `minTunnels` and `maxTunnels`, never above the server's WELCOME cap). Default 4. With
   * `paths`: the tunnels of each path that names no count of its own; `'auto'` there gives each such
   * path its own controller (path-counts.ts: `minTunnels`–`maxTunnels` per path, the server's cap
   * shared between the paths).
   */
  tunnels?: number | 'auto';
  /** With `tunnels: 'auto'`: fewest tunnels (per path, with several). Default 2. */
  minTunnels?: number;
  /**
   * With `tunnels: 'auto'`: most tunnels (the server's cap may be lower). Default 32. Per path with
   * several, lowered so that every path's slots fit in 256.
   */
  maxTunnels?: number;
  /**
   * With `tunnels: 'auto'`: the controller's finer settings (tests, tuning). With several adaptive
   * paths `start` is per path, and defaults to 8 in all split over them (`defaultPathStart`: 4 each for two).
   */
  adaptive?: Partial<Omit<AdaptiveConfig, 'min' | 'max'>>;
  /**
   * Network paths (multipath.ts): each path's tunnels start from its own local address or interface, and
   * all of them join the one session. Default: one path over the system's route.
   */
  paths?: PathOptions[];
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
  tunnels: number | 'auto';
  minTunnels: number;
  maxTunnels: number;
  adaptive: Partial<Omit<AdaptiveConfig, 'min' | 'max'>>;
  paths: PathOptions[] | undefined;
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
    minTunnels: o.minTunnels ?? 2,
    maxTunnels: o.maxTunnels ?? 32,
    adaptive: o.adaptive ?? {},
    paths: o.paths,
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
  if (r.tunnels !== 'auto') checkInt('tunnels', r.tunnels, 1, 256);
  checkInt('minTunnels', r.minTunnels, 1, 256);
  checkInt('maxTunnels', r.maxTunnels, r.minTunnels, 256);
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
 * The client's life, changed only in `transition`:
 * - `founding`: the session has no secret yet: one slot runs the NEW handshake, the others wait for it;
 * - `joined`: the secret is known: every slot JOINs (and re-joins after a tunnel loss);
 * - `dormant`: the server closed the idle session (GOAWAY IDLE_TIMEOUT): tunnels stay down until the
 *   next open or associate wakes the client (→ `founding`, a new session);
 * - `closed`: `close()` was called; final.
 * A lost session (grace period over, or the server forgot it) goes back to `founding`.
 */
export type ClientState = 'founding' | 'joined' | 'dormant' | 'closed';

const clientTransitions: Record<ClientState, readonly ClientState[]> = {
  founding: ['joined', 'dormant', 'closed'],
  joined: ['founding', 'dormant', 'closed'],
  dormant: ['founding', 'closed'],
  closed: [],
};

/**
 * Client events: 'tunnel-up' (index), 'tunnel-down' (index, error), 'reconnecting' (index, delayMs, error),
 * 'session' (id: a new session started), 'session-lost' (error), 'auth-failed' (error),
 * 'dormant' (error: the server closed the idle session; tunnels stay down until the next open), 'awake',
 * 'tunnels' (TunnelsEvent: a target tunnel count changed, with the reason; with `paths`, one path's count, named), 'tunnel-retired' (index),
 * 'path-up' (PathInfo: its first tunnel came up), 'path-down' (PathInfo, error: its last tunnel went down).
 */
/** The 'tunnels' event: a target count changed. With `paths`, `from`/`target` are the path's counts and `path` its name. */
export type TunnelsEvent = CountDecision & { path?: string };

export class Client extends EventEmitter {
  /** The (first) server address. */
  readonly server: HostPort;
  /** Every server address (several: one server reachable at its IPv4 and IPv6 addresses, say). */
  readonly servers: readonly HostPort[];
  private readonly opts: ResolvedClientOptions;
  private readonly plan: PathPlan;
  /** The open tunnels of each path (by path name), for 'path-up'/'path-down' and `pathTunnelsUp`. */
  private readonly pathTunnels = new Map<string, Set<Tunnel>>();
  private session!: Session;
  private sessionId!: Buffer;
  /** The routing token of the current session: sent in the preface of each of its tunnels, new per session. */
  private routingToken!: Buffer;
  private secret: Buffer | null = null;
  /** Where the client is in its life (see ClientState). */
  private clientState: ClientState = 'founding';
  /** While founding: settles when the slot running NEW finishes (the others wait for the secret). */
  private founding: Promise<void> | null = null;
  private readonly sockets = new Set<Duplex>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private lastError: Error | null = null;
  /** Rejections of our key in a row, and until when (Date.now() ms) no tunnel may try again. */
  private keyRejections = 0;
  private rejectedUntil = 0;
  /** While dormant: what the slots wait on, and how the next open wakes them. */
  private wakeUp: { promise: Promise<void>; wake: () => void } | null = null;
  /** How many tunnel slots should run now: the fixed count, or the controller's target (within the server's cap). */
  private target: number;
  /** The adaptive counts, one controller per path that adapts (`tunnels: 'auto'`), else null. */
  private readonly counts: PathCounts | null;
  /** `paths` was given: events and per-path samples name their path (a single unbound path is sampled from the session, as before multipath). */
  private readonly named: boolean;
  /** Per path: its tunnels attached to the session now, and the wire bytes of those closed (monotonic, in bytes). */
  private readonly pathAttached: Set<Tunnel>[];
  private readonly pathBytesClosed: number[];
  private driver: NodeJS.Timeout | undefined;
  /** Slots whose loop is running, and the tunnel each has up. */
  private readonly running = new Set<number>();
  private readonly slotTunnels = new Map<number, Tunnel>();
  private readonly retired = new WeakSet<Tunnel>();
  /** Paths (by index) with a lazy step down pending: their extra tunnels go once the path is quiet. */
  private readonly retireWhenQuiet = new Set<number>();
  /** The server's per-session tunnel cap from WELCOME (null until known, or an old server). */
  private serverCap: number | null = null;
  /** Changes of the target so far, by direction (monotonic; for metrics). */
  readonly tunnelChanges = { up: 0, down: 0 };
  private ceilingTimer: NodeJS.Timeout | undefined;

  private constructor(servers: HostPort[], options: ClientOptions) {
    super();
    this.opts = resolveClientOptions(options);
    const o = this.opts;
    let perPathMax = o.maxTunnels;
    if (o.paths && o.paths.length > 0) {
      // Each path owns a range of slots (numbered path by path): its count, or, when it adapts, the most
      // it may have, so that retiring a path's extra tunnels retires that path's highest slots.
      if (o.tunnels === 'auto') {
        const fixedSum = o.paths.reduce((n, p) => n + (p.tunnels ?? 0), 0);
        const adaptive = o.paths.filter((p) => p.tunnels === undefined).length;
        if (adaptive > 0) perPathMax = Math.min(o.maxTunnels, Math.floor((MAX_TOTAL_TUNNELS - fixedSum) / adaptive));
        if (adaptive > 0 && perPathMax < o.minTunnels) {
          throw new ConfigError(
            `paths: ${adaptive} adaptive paths of at least ${o.minTunnels} tunnels each and ${fixedSum} fixed tunnels are more than ${MAX_TOTAL_TUNNELS} in all`,
          );
        }
      }
      this.plan = new PathPlan(servers, o.paths, o.tunnels === 'auto' ? perPathMax : o.tunnels);
      // A user's count wins: with every path's count given, nothing adapts.
      if (o.tunnels !== 'auto' || this.plan.paths.every((p) => p.fixed)) o.tunnels = this.plan.total;
    } else {
      // One path: it must hold every slot the controller may start.
      this.plan = new PathPlan(servers, undefined, o.tunnels === 'auto' ? o.maxTunnels : o.tunnels);
    }
    this.named = o.paths !== undefined && o.paths.length > 0;
    this.pathAttached = this.plan.paths.map(() => new Set<Tunnel>());
    this.pathBytesClosed = this.plan.paths.map(() => 0);
    this.servers = servers;
    this.server = servers[0]!;
    this.counts =
      o.tunnels === 'auto'
        ? new PathCounts(
            this.plan.paths.map((p) => (p.fixed ? { name: p.name, fixed: p.tunnels } : { name: p.name })),
            { ...o.adaptive, min: o.minTunnels, max: perPathMax },
          )
        : null;
    this.target = this.counts ? this.counts.total : (o.tunnels as number);
    // Every open() that finds no tunnel up waits with its own 'tunnel-up' and 'auth-failed' listener
    // (removed when it is done): a proxy opening many connections at once legitimately has more than 10.
    this.setMaxListeners(0);
    this.newSession();
  }

  /**
   * Start a client that connects its tunnels in the background and keeps them up. `server` may list
   * several addresses of the same server: each path spreads its tunnels over those it can reach.
   */
  static create(server: string | HostPort | readonly (string | HostPort)[], options: ClientOptions): Client {
    const list = (Array.isArray(server) ? server : [server]) as (string | HostPort)[];
    const c = new Client(
      list.map((s) => (typeof s === 'string' ? parseHostPort(s) : s)),
      options,
    );
    c.startSlots();
    if (c.counts) {
      c.driver = setInterval(() => c.drive(), 100);
      c.driver.unref();
    }
    return c;
  }

  /** Start a client and wait until its first tunnel is up; rejects on a refused handshake or after the connect timeout. */
  static async connect(server: string | HostPort | readonly (string | HostPort)[], options: ClientOptions): Promise<Client> {
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
        () =>
          done(
            new NoTunnelError(
              `no tunnel to ${this.server.host}:${this.server.port} within ${timeoutMs} ms${this.lastError ? `: ${this.lastError.message}` : ''}`,
            ),
          ),
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

  /**
   * Open a proxied connection to `destination`; resolves after the server connected it (OPEN_OK).
   * `signal` (undici-style) gives up before then: the wait for a tunnel ends, an OPEN already sent is
   * cancelled on the wire (RST `CANCELLED`, so the server drops the destination connection), and the
   * promise rejects with AbortError (`GKD_ERR_ABORTED`). Once open, the signal no longer matters:
   * `destroy()` the connection instead.
   */
  async open(destination: { host: string; port: number } | Address, options: { signal?: AbortSignal } = {}): Promise<Connection> {
    const addr = 'type' in destination ? destination : toAddress(destination.host, destination.port);
    return this.openStream(addr, options.signal);
  }

  /**
   * Open a UDP association (PROTOCOL.md §5a) once a tunnel is up. Nothing is sent until its first
   * datagram; it ends with `close()`, when the server closes it, or with the session (its 'close' event).
   */
  async associate(): Promise<Association> {
    if (this.closed) throw new ClosedError('client is closed');
    this.wake();
    if (this.session.draining) await this.waitForNewSession();
    await this.waitForTunnel();
    return this.session.datagrams.associate();
  }

  /** Open a library-mode connection (no destination: the server application accepts it). */
  async getConnection(): Promise<Connection> {
    return this.openStream(null);
  }

  private async openStream(addr: Address | null, signal?: AbortSignal): Promise<Connection> {
    if (this.closed) throw new ClosedError('client is closed');
    if (signal?.aborted) throw new AbortError(signal.reason);
    this.wake();
    if (this.session.draining) await abortable(this.waitForNewSession(), signal);
    await abortable(this.waitForTunnel(), signal);
    return this.session.open(addr, this.opts.openTimeout, signal);
  }

  /** Tunnels up right now. */
  get tunnelsUp(): number {
    return this.session.liveTunnels;
  }

  /** Tunnels the client keeps up now (over all paths): the fixed count (within the server's cap), or the adaptive target. */
  get tunnelCount(): number {
    return this.target;
  }

  /** True with `tunnels: 'auto'` (with `paths`: when at least one path names no count). */
  get adaptive(): boolean {
    return this.counts !== null;
  }

  /** Most tunnels allowed now (over all paths): `maxTunnels` (or the fixed count), lowered by the server's cap. */
  get tunnelCeiling(): number {
    const c = this.counts;
    if (c) {
      let n = 0;
      for (let i = 0; i < c.size; i++) n += c.ceiling(i);
      return Math.min(n, c.sumCap);
    }
    return Math.min(this.opts.tunnels as number, this.serverCap ?? Infinity);
  }

  /** Tunnels path `name` keeps up now: its count, or its adaptive target. */
  pathTunnelCount(name: string): number {
    const i = this.plan.paths.findIndex((p) => p.name === name);
    if (i < 0) return 0;
    if (this.counts) return this.counts.target(i);
    return this.plan.paths.length === 1 ? this.target : this.plan.paths[i]!.tunnels;
  }

  /** True when path `name`'s count adapts (`tunnels: 'auto'` and no count of its own). */
  pathAdaptive(name: string): boolean {
    const i = this.plan.paths.findIndex((p) => p.name === name);
    return i >= 0 && this.counts !== null && this.counts.adaptive(i);
  }

  /** The server's per-session tunnel cap from WELCOME, or null (not yet known, or a server that predates it). */
  get serverTunnelCap(): number | null {
    return this.serverCap;
  }

  /** The goodput over the adaptive controllers' last epochs (summed over paths), in bytes/s (null if fixed or unknown). */
  get measuredRate(): number | null {
    const c = this.counts;
    if (!c) return null;
    let sum: number | null = null;
    for (let i = 0; i < c.size; i++) {
      const r = c.lastRate(i);
      if (r !== null) sum = (sum ?? 0) + r;
    }
    return sum;
  }

  /** The index (in `paths`) of the path slot `slot` belongs to. */
  private pathIndex(slot: number): number {
    return this.plan.paths.indexOf(this.plan.pathOf(slot));
  }

  /** Whether slot `index` should have a tunnel now: below the fixed count, or below its path's target. */
  private wanted(index: number): boolean {
    if (!this.counts) return index < this.target;
    if (index < 0 || index >= this.plan.total) return false;
    const p = this.pathIndex(index);
    return index - this.plan.paths[p]!.first < this.counts.target(p);
  }

  /** Start the loop of every wanted slot that is not running. */
  private startSlots(): void {
    const start = (i: number) => {
      if (this.running.has(i)) return;
      this.running.add(i);
      void this.runSlot(i).finally(() => this.running.delete(i));
    };
    if (!this.counts) {
      for (let i = 0; i < this.target; i++) start(i);
      return;
    }
    this.plan.paths.forEach((p, k) => {
      for (let i = 0; i < this.counts!.target(k); i++) start(p.first + i);
    });
  }

  /** One observation per path: the wire bytes, live tunnels and lowest RTT of the tunnels that had its slots. */
  private pathSample(k: number): PathSample {
    let bytes = this.pathBytesClosed[k]!;
    let live = 0;
    let rtt = Infinity;
    for (const t of this.pathAttached[k]!) {
      bytes += t.bytesIn + t.bytesOut;
      if (!t.usable) continue;
      live++;
      const r = t.pathRtt;
      if (r !== null && r < rtt) rtt = r;
    }
    // As Session.rtt(): at least 5 ms, so epochs on loopback are not shorter than the controller allows.
    return { bytes, live, rttMs: live > 0 ? (Number.isFinite(rtt) ? Math.max(rtt, 5) : 50) : null };
  }

  /** One controller step per adaptive path (every 100 ms with `tunnels: 'auto'`). */
  private drive(): void {
    const c = this.counts;
    if (!c || this.clientState === 'closed' || this.clientState === 'dormant') return;
    const s = this.session;
    const now = performance.now();
    const samples = this.named
      ? this.plan.paths.map((_, k) => this.pathSample(k))
      : [{ bytes: s.wireBytes(), live: s.liveTunnels, rttMs: s.liveTunnels > 0 ? s.rtt() : null }];
    for (const d of c.sample(now, samples)) this.apply(d);
    // A lazy step down: a path's extra tunnels go once it has been quiet for a second.
    for (const k of [...this.retireWhenQuiet]) if (c.quietFor(k, now) >= 1000) this.retireExtra(k);
  }

  /** Apply a path's new target: start missing slots, retire the tunnels of its slots above it (now, or when quiet if lazy). */
  private apply(d: PathCountDecision): void {
    if (this.closed) return;
    this.target = this.counts!.total;
    if (d.target > d.from) this.tunnelChanges.up++;
    else this.tunnelChanges.down++;
    const { path, ...decision } = d;
    const event: TunnelsEvent = this.named ? { ...decision, path: this.plan.paths[path]!.name } : decision;
    this.emit('tunnels', event);
    if (d.target > d.from && Number.isFinite(this.counts!.sumCap)) {
      // Growing into room under the server's cap: another path's lazy step down cannot wait for quiet,
      // its extra tunnels still count on the server, which would refuse this path's new ones.
      for (const k of [...this.retireWhenQuiet]) if (k !== path) this.retireExtra(k);
    }
    this.startSlots();
    if (d.lazy) this.retireWhenQuiet.add(path);
    else this.retireExtra(path);
  }

  /** A fixed count lowered by the server's cap: the highest slots go. */
  private applyFixed(d: CountDecision): void {
    if (this.closed) return;
    this.target = d.target;
    this.tunnelChanges.down++;
    this.emit('tunnels', d);
    this.retireExtra();
  }

  /**
   * Retire the tunnels of slots no longer wanted (never the last live one): those of `path` (its lazy
   * step down is due), and of any path with no lazy step down pending.
   */
  private retireExtra(path?: number): void {
    if (path !== undefined) this.retireWhenQuiet.delete(path);
    const timeout = Math.max(2000, 4 * this.session.rtt());
    for (const [i, t] of this.slotTunnels) {
      if (this.wanted(i) || !t.usable) continue;
      if (this.counts && this.retireWhenQuiet.has(this.pathIndex(i))) continue; // that path waits until it is quiet
      if (this.session.liveTunnels <= 1) break; // never retire the last live tunnel
      this.retired.add(t);
      t.retire(timeout);
    }
  }

  /** The server's cap is known (WELCOME) or was hit (a JOIN refused with LIMIT_EXCEEDED); with `tunnels: 'auto'` the paths share it. */
  private capTunnels(cap: number, reason: string, forMs = 0): void {
    const c = this.counts;
    if (c) {
      for (const d of c.setCap(cap, performance.now(), reason)) this.apply(d);
      if (forMs > 0) {
        clearTimeout(this.ceilingTimer);
        this.ceilingTimer = setTimeout(() => {
          for (const d of c.setCap(this.serverCap ?? Infinity, performance.now(), 'retry')) this.apply(d);
        }, forMs);
        this.ceilingTimer.unref();
      }
    } else if (cap < this.target) {
      const from = this.target;
      this.applyFixed({ target: Math.max(1, cap), from, reason });
    }
  }

  /** The network paths, in tunnel-index order (one, `default`, unless `paths` was given). */
  get paths(): readonly PathInfo[] {
    return this.plan.paths;
  }

  /** Tunnels of path `name` up right now. */
  pathTunnelsUp(name: string): number {
    return this.pathTunnels.get(name)?.size ?? 0;
  }

  private notePath(t: Tunnel, up: boolean, err?: Error): void {
    if (t.index < 0 || t.index >= this.plan.total) return;
    const path = this.plan.pathOf(t.index);
    let set = this.pathTunnels.get(path.name);
    if (!set) {
      set = new Set();
      this.pathTunnels.set(path.name, set);
    }
    const before = set.size;
    if (up) set.add(t);
    else set.delete(t);
    if (before === 0 && set.size === 1) this.emit('path-up', path);
    else if (before === 1 && set.size === 0) this.emit('path-down', path, err);
  }

  /** The path tunnel `index` belongs to. */
  pathOf(index: number): PathInfo {
    return this.plan.pathOf(index);
  }

  stats(): SessionStats {
    return this.session.stats();
  }

  /** Close every tunnel and fail open streams. */
  close(): void {
    if (this.closed) return;
    this.transition('closed');
    clearInterval(this.driver);
    clearTimeout(this.ceilingTimer);
    this.wakeUp?.wake(); // let the slots see `closed` and return
    for (const t of this.timers) clearTimeout(t);
    this.session.close(Reason.NORMAL, 'client closed');
    for (const s of this.sockets) s.destroy();
  }

  /** The client's state (see ClientState). */
  get state(): ClientState {
    return this.clientState;
  }

  private get closed(): boolean {
    return this.clientState === 'closed';
  }

  /** Move to `to`; throws on a transition the state machine does not have. */
  private transition(to: ClientState): void {
    if (this.clientState === to) return;
    if (!clientTransitions[this.clientState].includes(to)) throw new Error(`client: illegal transition ${this.clientState} → ${to}`);
    this.clientState = to;
  }

  private newSession(): void {
    this.sessionId = randomBytes(SESSION_ID_LENGTH);
    this.routingToken = newRoutingToken();
    this.secret = null;
    this.founding = null;
    if (!this.closed) this.transition('founding');
    const s = new Session('client', this.sessionId.toString('hex'), this.opts.session);
    s.on('tunnel-up', (t: Tunnel) => {
      this.notePath(t, true);
      this.emit('tunnel-up', t.index);
    });
    s.on('tunnel-down', (t: Tunnel, err?: Error) => {
      if (this.retired.has(t)) this.emit('tunnel-retired', t.index);
      else this.emit('tunnel-down', t.index, err);
      this.notePath(t, false, err);
    });
    s.on('lost', (err: Error & { reason?: number }) => {
      if (this.session !== s || this.closed) return;
      this.newSession();
      if (err.reason === Reason.IDLE_TIMEOUT) {
        // Nothing was using it: reconnect when something does, not now (or every idle timeout would
        // make a new session on the server for nothing).
        let wake!: () => void;
        const promise = new Promise<void>((r) => (wake = r));
        this.wakeUp = { promise, wake };
        this.transition('dormant');
        this.emit('dormant', err);
      } else this.emit('session-lost', err);
    });
    this.session = s;
    this.emit('session', s.id);
  }

  /** Leave the dormant state (a stream is wanted): the tunnel slots reconnect. */
  private wake(): void {
    const d = this.wakeUp;
    if (this.clientState !== 'dormant' || !d) return;
    this.wakeUp = null;
    this.transition('founding');
    d.wake();
    this.emit('awake');
  }

  /** True while the tunnels are down on purpose: the server closed the idle session, and nothing has asked for a stream since. */
  get isDormant(): boolean {
    return this.clientState === 'dormant';
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
    while (!this.closed && this.wanted(index)) {
      if (this.clientState === 'dormant') {
        await this.wakeUp!.promise;
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
      } catch (err) {
        if (this.closed) return;
        this.lastError = err as Error;
        if (err instanceof AuthError && err.reason === Reason.UNKNOWN_SESSION) continue; // bringUp replaced the session
        if (this.counts && err instanceof AuthError && err.reason === Reason.LIMIT_EXCEEDED && this.session.liveTunnels > 0 && index > 0) {
          // The server's per-user or global tunnel cap (WELCOME cannot foresee those): stay at what we
          // have for a minute instead of knocking every second. This slot is above the new target.
          // With paths, a path that just took its share back from another may knock while the other's
          // tunnels are still retiring (the server counts them until they close): that is no cap, retry.
          // And a slot no longer wanted (its path came down while it knocked) has learnt nothing new.
          const retiring = this.named && this.session.tunnelCount > this.session.liveTunnels;
          if (this.named && !this.wanted(index)) return;
          if (!retiring) {
            const cap = this.named ? this.session.liveTunnels : Math.min(index, this.session.liveTunnels);
            this.capTunnels(Math.max(1, cap), `the server refused tunnel ${index + 1} (${err.message})`, 60_000);
            if (!this.wanted(index)) return;
          }
        }
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
    // With paths, the founder's WELCOME may have shared out fewer tunnels than were waiting: a JOIN
    // now would only be refused (LIMIT_EXCEEDED), or accepted and closed.
    if (this.named && !this.wanted(index)) return;
    const session = this.session;
    const mode = this.secret ? AuthMode.JOIN : AuthMode.NEW;
    const founder: { settle?: () => void } = {};
    if (mode === AuthMode.NEW) this.founding = new Promise<void>((r) => (founder.settle = r));
    try {
      const socket = await this.dial(index, this.routingToken);
      if (this.closed) {
        socket.destroy();
        throw new ClosedError('client closed');
      }
      if (this.clientState === 'dormant') {
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
        throw new ClosedError('session replaced during the handshake');
      }
      if (mode === AuthMode.NEW) {
        this.secret = secret;
        this.keyRejections = 0;
        this.transition('joined');
      }
      session.maxStreams = welcome.maxStreams;
      if (welcome.maxTunnels !== undefined && welcome.maxTunnels !== this.serverCap) {
        this.serverCap = welcome.maxTunnels;
        this.capTunnels(welcome.maxTunnels, `the server allows ${welcome.maxTunnels} tunnels per session`);
      }
      if (!this.wanted(index)) {
        t.close(); // the target dropped while this slot was connecting
        return;
      }
      this.slotTunnels.set(index, t);
      const path = index < this.plan.total ? this.pathIndex(index) : -1;
      const closed = new Promise<void>((resolve) => {
        session.addTunnel(t);
        if (path >= 0) this.pathAttached[path]!.add(t);
        const prev = t.handlers.close;
        t.handlers.close = (tt, u, err) => {
          prev?.(tt, u, err);
          if (this.slotTunnels.get(index) === t) this.slotTunnels.delete(index);
          if (path >= 0 && this.pathAttached[path]!.delete(t)) this.pathBytesClosed[path] = this.pathBytesClosed[path]! + t.bytesIn + t.bytesOut;
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

  /** Connect tunnel `index` on its path and send the routing preface (PROTOCOL.md §4.1) first, before TLS. */
  private async dial(index: number, token: Buffer): Promise<Duplex> {
    if (this.opts.connect) {
      const d = await this.opts.connect(index);
      writePreface(d, token);
      return d;
    }
    const target = this.plan.target(index);
    const { host, port, localAddress, family } = target;
    const bind = localAddress === undefined ? {} : { localAddress, family };
    const from = localAddress === undefined ? '' : ` from ${localAddress} (path ${target.path.name})`;
    const timeout = this.opts.connectTimeout;
    const dialing = new Promise<Duplex>((resolve, reject) => {
      const raw = net.connect({ host, port, ...bind });
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
          // With several server addresses, an address verifies as the server's name (any of them that is one).
          servername: tlsOpts.servername ?? (net.isIP(host) ? this.servers.find((x) => !net.isIP(x.host))?.host : host),
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
        reject(new NoTunnelError(`connect to ${host}:${port}${from} timed out after ${timeout} ms`));
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
          reject(
            new AuthError(
              `${host}:${port} did not answer TLS (${(err as { reason?: string }).reason ?? err.message}): is the server running with --plaintext? Both ends must ask for plaintext`,
            ),
          );
        } else reject(from ? Object.assign(err, { message: `${err.message}${from}` }) : err);
      };
      raw.once('error', onError);
    });
    // The next attempt of this slot tries the path's next server address (the same one when it has one).
    dialing.catch(() => this.plan.failed(index));
    return dialing;
  }
}

/** `ABCD…` → `AB:CD:…`, as Node prints `fingerprint256`. */
function colonHex(hex: string): string {
  return hex.toUpperCase().replace(/(..)(?!$)/g, '$1:');
}

/** An OpenSSL record-layer error: the peer's bytes are not TLS (a plaintext server answered). */
function notTls(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  return (
    /^ERR_SSL_(WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|RECORD_LENGTH_MISMATCH|UNEXPECTED_RECORD|HTTP_REQUEST)/.test(code) ||
    /wrong version number|packet length too long/i.test(err.message)
  );
}
