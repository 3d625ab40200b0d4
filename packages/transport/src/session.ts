import { EventEmitter } from 'node:events';
import {
  AbortError,
  ClosedError,
  FlowControlError,
  FrameType,
  type GkdError,
  LimitError,
  OpenFailedError,
  ProtocolError,
  Reason,
  SessionLostError,
  isAssociationFrame,
  isStreamFrame,
  type AckFrame,
  type Address,
  type Frame,
  type OpenFrame,
} from '@gkd/protocol';
import { ByteBudget } from './budget.js';
import { DatagramChannel, type DatagramStats } from './datagram.js';
import type { SessionConfig } from './config.js';
import { arrivalMs } from './path.js';
import { copyHelps } from './hol.js';
import { pickerFor, type TunnelPicker } from './scheduler.js';
import { FailoverQueue, type KeptData, type KeptFrame } from './retention.js';
import { Connection, type StreamHost, type StreamStats } from './stream.js';
import type { Tunnel, TunnelStats } from './tunnel.js';

/** How many ended stream ids a session remembers (to answer late frames correctly). */
const CLOSED_MEMORY = 4096;

/** How many ids below the highest one seen a session remembers as not opened yet (see `onOpen`). */
const UNSEEN_MEMORY = 4096;

/** How often a session looks for overdue head-of-line frames while it has unacknowledged data, in ms. */
const HOL_CHECK_MS = 10;

/** Most frames one head-of-line re-send copies (the head and the same tunnel's frames behind it). */
const HOL_MAX_FRAMES = 16;

/** How far past the head a head-of-line re-send looks for frames stuck on the same tunnel. */
const HOL_SCAN = 256;

/**
 * Head-of-line copies may cost at most this share of the DATA bytes sent (a token bucket: each byte
 * sent earns this much credit, a copy spends its size). When ACKs are late for a reason no other
 * tunnel can fix (a CPU-bound receiver, an overloaded machine), every head frame looks overdue; the
 * budget keeps the copies from adding load exactly then.
 */
const HOL_BUDGET = 0.05;

/** Credit a session starts with, and the most it can save up, for head-of-line copies, in bytes. */
const HOL_CREDIT_START = 256 * 1024;
const HOL_CREDIT_MAX = 4 * 1024 * 1024;

/** A stream's first bytes that go before other streams' frames, on the express lane while it has room (bytes). */
const EXPRESS_STREAM_BYTES = 64 * 1024;

/**
 * Session states. All transitions happen in `transition`: open → draining → lost; open → lost.
 * `open`: streams may be opened; `draining`: GOAWAY SHUTDOWN sent or received, existing streams finish
 * and no new one opens; `lost`: the grace period ran out with no tunnel, or the session was closed.
 * Whether a tunnel is up is a separate matter: a session in any state but `lost` may be waiting for
 * one (its grace timer runs).
 */
export type SessionState = 'open' | 'draining' | 'lost';

const sessionTransitions: Record<SessionState, SessionState[]> = {
  open: ['draining', 'lost'],
  draining: ['lost'],
  lost: [],
};

/** An OPEN the acceptor has to answer: accept it (OPEN_OK) or reject it (OPEN_FAIL). */
export interface OpenRequest {
  readonly stream: number;
  /** Destination asked for, or null in library mode. */
  readonly destination: Address | null;
  /** Accept: sends OPEN_OK and returns the connection. */
  accept(): Connection;
  /** Refuse with an OPEN_FAIL reason (0x01–0x06). */
  reject(reason: number, message?: string): void;
  /** Aborted if the opener reset the stream before it was answered. */
  readonly signal: AbortSignal;
}

/** Session totals and per-tunnel / per-stream snapshots. */
export interface SessionStats {
  id: string;
  tunnelsUp: number;
  streamsOpen: number;
  bytesIn: number;
  bytesOut: number;
  resentFrames: number;
  /** Payload bytes re-sent (after tunnel losses, or as head-of-line copies). */
  resentBytes: number;
  /** Frames copied onto another tunnel because the receiver waited for them (head-of-line re-sends). */
  holResentFrames: number;
  /**
   * Of those, copies the peer acknowledged less than 0.9 RTT after they were sent: the first
   * transmission (or TCP's repair of it) got there first, so the copy was not needed. A lower bound
   * on wasted copies (a copy acknowledged later may still have lost the race).
   */
  holLateFrames: number;
  /** Payload bytes received that carried nothing new (the peer's copies). */
  duplicateBytes: number;
  /** Receive-window bytes granted (reserved from the receive budget). */
  recvBudgetUsed: number;
  /** Unacknowledged sent bytes held (reserved from the send budget). */
  sendBudgetUsed: number;
  /** Control and data frames waiting to be (re-)sent: a lost tunnel's unconfirmed frames, frames held while no tunnel is up. */
  heldFrames: number;
  /** UDP associations and datagram counters (datagram.ts). */
  datagrams: DatagramStats;
  tunnels: TunnelStats[];
  streams: StreamStats[];
}

/** Shared by the head-of-line checks of one round (see `rescueContext`). */
interface RescueContext {
  usable: Tunnel[];
  byId: Map<number, Tunnel>;
  corked: Set<Tunnel>;
  /** performance.now() at the start of the round, in ms. */
  now: number;
  /** How long past its due time a frame on tunnel `id` may wait before it is overdue, in ms. */
  grace: (id: number) => number;
}

/**
 * The tunnel manager of one session: it owns the tunnels and the streams, schedules frames onto
 * tunnels, re-sends a lost tunnel's unconfirmed frames on the others, and keeps the streams alive for
 * the grace period when no tunnel is up. Shared by client and server.
 *
 * Events: 'tunnel-up' (tunnel), 'tunnel-down' (tunnel, error), 'lost' (error), 'open' (OpenRequest, server role).
 */
export class Session extends EventEmitter implements StreamHost {
  readonly config: SessionConfig;
  readonly role: 'client' | 'server';
  /** Hex session id. */
  readonly id: string;
  /** Largest number of streams the peer may have open at once. */
  maxStreams = 1024;

  private readonly tunnels: Tunnel[] = [];
  private readonly streams = new Map<number, Connection>();
  private readonly ended = new Map<number, { how: 'normal' | 'reset'; received: number; reason: number }>();
  private readonly pendingOpens = new Set<number>();
  private readonly ready = new Set<Connection>();
  private readonly ackQueue = new Set<Connection>();
  private ackScheduled = false;
  /** A lost tunnel's unconfirmed frames, waiting for the live tunnels (retention.ts). */
  private readonly failover = new FailoverQueue({
    live: (id) => this.streams.has(id),
    needsResend: (id, offset, length) => this.streams.get(id)?.needsResend(offset, length) ?? false,
    scheduleAck: (id) => this.scheduleAck(this.streams.get(id)!),
    finalAck: (id): AckFrame | null => {
      const end = this.ended.get(id);
      return end?.how === 'normal' ? { type: FrameType.ACK, stream: id, ack: end.received, window: 0 } : null;
    },
  });
  private heldControl: Frame[] = [];
  private pumping = false;
  private readonly pick: TunnelPicker;
  private nextLocalId = 1;
  private maxPeerId = 0;
  /** Peer ids below `maxPeerId` whose OPEN has not arrived yet (it was overtaken on another tunnel). */
  private readonly unseenPeerIds = new Set<number>();
  private graceTimer: NodeJS.Timeout | undefined;
  readonly recvBudget: ByteBudget;
  readonly sendBudget: ByteBudget;
  private readonly budgetBlocked = new Set<Connection>();
  private lostError: GkdError | null = null;
  private resentFrames = 0;
  private resentBytesClosed = 0;
  private duplicateBytesClosed = 0;
  private holResent = 0;
  private lateCopiesClosed = 0;
  private holTimer: NodeJS.Timeout | undefined;
  /** Bytes of head-of-line copies this session may still send (see HOL_BUDGET). */
  private holCredit = HOL_CREDIT_START;
  private bytesInClosed = 0;
  private bytesOutClosed = 0;
  private sessionState: SessionState = 'open';
  /** True once the session drained (GOAWAY SHUTDOWN), also after it was lost. */
  private drained = false;
  private lastStreamChange = Date.now();
  /** SOCKS5 UDP associations: unreliable DATAGRAM frames, sent only on a tunnel with room (datagram.ts). */
  readonly datagrams: DatagramChannel<Tunnel>;

  /** @param budgets shared receive/send budgets (a server shares them among one user's sessions); by default the session's own. */
  constructor(role: 'client' | 'server', id: string, config: SessionConfig, budgets?: { recv: ByteBudget; send: ByteBudget }) {
    super();
    this.role = role;
    this.id = id;
    this.config = config;
    this.recvBudget = budgets?.recv ?? new ByteBudget(Math.floor(config.sessionWindowBudget / 2));
    this.sendBudget = budgets?.send ?? new ByteBudget(Math.floor(config.sessionWindowBudget / 2));
    this.pick = pickerFor(config.scheduler);
    this.datagrams = new DatagramChannel<Tunnel>(role, {
      tunnels: () => this.tunnels.filter((t) => t.usable),
      pick: (tunnels, bytes) => this.pick(tunnels, bytes, 0, true),
      sendControl: (f) => this.sendControl(f),
      highWater: (t) => t.highWater,
    });
  }

  /** When the session last became stream-less (ms since the epoch), or null while it has streams. */
  get idleSince(): number | null {
    return this.streams.size === 0 ? this.lastStreamChange : null;
  }

  /** True once this end called goAway(): tunnels that join later get a GOAWAY too. */
  private wentAway = false;

  /** True after the peer sent GOAWAY (or goAway() was called): no new streams. */
  get draining(): boolean {
    return this.drained;
  }

  /** The session's lifecycle state (see SessionState). */
  get state(): SessionState {
    return this.sessionState;
  }

  /** Move to `to`; throws on a transition the state machine does not have. */
  private transition(to: SessionState): void {
    if (this.sessionState === to) return;
    if (!sessionTransitions[this.sessionState].includes(to)) throw new Error(`session ${this.id}: illegal transition ${this.sessionState} → ${to}`);
    this.sessionState = to;
    if (to === 'draining') this.drained = true;
  }

  /** True once the session expired (grace period) or was closed. */
  get lost(): boolean {
    return this.lostError !== null;
  }

  /** Tunnels that take new frames. */
  get liveTunnels(): number {
    return this.tunnels.filter((t) => t.usable).length;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  // ------------------------------------------------------------------ tunnels

  /** Attach an open tunnel: it starts carrying frames, and held frames are re-sent on it. */
  addTunnel(t: Tunnel): void {
    if (this.lostError) {
      t.close(this.lostError);
      return;
    }
    this.tunnels.push(t);
    if (t.index === 0 && this.config.expressLane > 0) t.expressLane(this.config.expressLane);
    t.handlers.frame = (f) => this.onFrame(f);
    t.handlers.drain = () => this.pump();
    t.handlers.close = (tt, unconfirmed, err) => this.onTunnelClose(tt, unconfirmed, err);
    if (this.graceTimer) {
      clearTimeout(this.graceTimer);
      this.graceTimer = undefined;
    }
    const held = this.heldControl;
    this.heldControl = [];
    for (const f of held) this.sendControl(f);
    this.emit('tunnel-up', t);
    t.flushEarly();
    // A tunnel whose handshake finished after goAway() must hear it too, or the peer would open streams on it.
    if (this.wentAway) t.goAway(Reason.SHUTDOWN, 'going away');
    this.pump();
  }

  /** Number of tunnels attached (any state but closed). */
  get tunnelCount(): number {
    return this.tunnels.length;
  }

  private onTunnelClose(t: Tunnel, unconfirmed: KeptFrame[], err: Error | undefined): void {
    const i = this.tunnels.indexOf(t);
    if (i >= 0) {
      this.tunnels.splice(i, 1);
      this.wireBytesClosed += t.bytesIn + t.bytesOut;
    }
    if (this.lostError) return;
    this.failover.add(unconfirmed);
    this.emit('tunnel-down', t, err);
    if (this.liveTunnels === 0 && !this.graceTimer) {
      this.graceTimer = setTimeout(() => this.expire(), this.config.gracePeriod);
      this.graceTimer.unref();
    }
    this.pump();
  }

  /** Fail every stream with SESSION_LOST and forget everything (grace period over, or closed). */
  expire(err: GkdError = new SessionLostError(`session ${this.id}: no tunnel for ${this.config.gracePeriod} ms`)): void {
    if (this.lostError) return;
    this.lostError = err;
    this.transition('lost');
    clearTimeout(this.graceTimer);
    for (const s of [...this.streams.values()]) s.abort(err);
    this.streams.clear();
    this.ready.clear();
    this.ackQueue.clear();
    clearTimeout(this.holTimer);
    this.holTimer = undefined;
    this.failover.clear();
    this.heldControl = [];
    this.datagrams.closeAll(err.reason ?? Reason.SESSION_LOST, err.message);
    for (const t of [...this.tunnels]) t.close(err);
    this.emit('lost', err);
  }

  /** Close the session: GOAWAY on every tunnel, fail the streams, close the tunnels. */
  close(reason: number = Reason.SHUTDOWN, message = 'session closed'): void {
    // Tell the peer which streams die now, so it fails them at once instead of after its grace period.
    for (const id of this.streams.keys()) this.sendControl({ type: FrameType.RST, stream: id, reason, message });
    for (const t of this.tunnels) {
      try {
        t.send({ type: FrameType.GOAWAY, reason, message });
      } catch {
        /* ignore */
      }
    }
    this.expire(new ClosedError(message, reason));
  }

  /** Stop accepting new streams; existing ones finish. */
  goAway(): void {
    this.wentAway = true;
    if (this.sessionState === 'open') this.transition('draining');
    for (const t of this.tunnels) t.goAway(Reason.SHUTDOWN, 'going away');
  }

  // ------------------------------------------------------------------ streams

  /**
   * Open a stream (opener side): sends OPEN and resolves once OPEN_OK arrives. No answer within
   * `timeoutMs` (milliseconds), or `signal` aborting first, cancels the stream on the wire (RST
   * CANCELLED, so a late OPEN_OK opens nothing) and rejects.
   */
  async open(destination: Address | null, timeoutMs: number, signal?: AbortSignal): Promise<Connection> {
    if (signal?.aborted) throw new AbortError(signal.reason);
    if (this.lostError) throw this.lostError;
    if (this.drained) throw new ClosedError('session is going away');
    if (this.streams.size >= this.maxStreams) throw new LimitError(`more than ${this.maxStreams} open streams`);
    const id = this.nextLocalId;
    this.nextLocalId += 2;
    const s = new Connection(this, id, destination, 'opening', 0);
    this.streams.set(id, s);
    const opened = s.waitOpen();
    // Tell the server to drop it if the OPEN (or its answer) is merely late, or no longer wanted.
    const cancel = (message: string, err: Error): void => {
      this.sendControl({ type: FrameType.RST, stream: id, reason: Reason.CANCELLED, message });
      s.fail(err);
    };
    const timer = setTimeout(() => cancel('open timed out', new OpenFailedError(Reason.TIMEOUT, `no answer to OPEN within ${timeoutMs} ms`)), timeoutMs);
    const onAbort = (): void => cancel('open aborted', new AbortError(signal!.reason));
    signal?.addEventListener('abort', onAbort, { once: true });
    this.sendControl({ type: FrameType.OPEN, stream: id, window: s.initialWindow, destination });
    try {
      await opened;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
    return s;
  }

  requestSend(stream: Connection): void {
    if (!this.streams.has(stream.id)) return;
    this.ready.add(stream);
    this.pump();
  }

  sendControl(frame: Frame): void {
    if (this.lostError) return;
    const live = this.tunnels.filter((t) => t.usable || (t.state === 'draining' && isStreamFrame(frame)));
    if (live.length === 0) {
      this.heldControl.push(frame);
      return;
    }
    // Control frames are small and must not wait behind a full buffer: the express lane if there is
    // one, else the tunnel that would deliver them first, room or not.
    const best = this.expressOf(live) ?? this.pick(live, 64, 0, true) ?? live[0]!;
    best.send(frame);
  }

  /** The express lane among `tunnels` (usable, kernel mode, `expressLane` set), or undefined. */
  private expressOf(tunnels: readonly Tunnel[]): Tunnel | undefined {
    if (this.config.expressLane === 0) return undefined;
    for (const t of tunnels) if (t.express > 0 && t.usable) return t;
    return undefined;
  }

  scheduleAck(stream: Connection): void {
    this.ackQueue.add(stream);
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    setImmediate(() => this.flushAcks());
  }

  private flushAcks(): void {
    this.ackScheduled = false;
    const streams = [...this.ackQueue];
    this.ackQueue.clear();
    for (const s of streams) {
      if (s.streamState === 'failed') continue;
      this.sendControl(s.makeAck());
    }
    for (const s of streams) s.afterAckFlush();
  }

  streamEnded(stream: Connection, how: 'normal' | 'reset'): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    this.lastStreamChange = Date.now();
    this.ready.delete(stream);
    this.pendingOpens.delete(stream.id);
    const st = stream.stats();
    this.bytesInClosed += st.bytesIn;
    this.bytesOutClosed += st.bytesOut;
    this.resentFrames += stream.resent;
    this.resentBytesClosed += stream.resentBytes;
    this.duplicateBytesClosed += stream.duplicateBytes;
    this.lateCopiesClosed += stream.lateCopies;
    this.ended.set(stream.id, { how, received: st.bytesIn, reason: stream.resetReason ?? Reason.STREAM_CLOSED });
    if (this.ended.size > CLOSED_MEMORY) this.ended.delete(this.ended.keys().next().value as number);
    this.emit('stream-end', stream, how);
  }

  waitSendBudget(stream: Connection): void {
    this.budgetBlocked.add(stream);
    if (this.budgetBlocked.size === 1) {
      this.sendBudget.onRelease(() => {
        const blocked = [...this.budgetBlocked];
        this.budgetBlocked.clear();
        for (const s of blocked) if (this.streams.has(s.id)) this.ready.add(s);
        this.pump();
      });
    }
  }

  /** Largest receive window a stream of this session grew to, in bytes (what it learned of the path). */
  private learnedWindow = 0;

  startWindow(): number {
    return Math.max(this.config.startWindow, this.learnedWindow);
  }

  windowGrew(bytes: number): void {
    if (bytes > this.learnedWindow) this.learnedWindow = bytes;
  }

  rtt(): number {
    let best = Infinity;
    for (const t of this.tunnels) {
      // The kernel's RTT where known: a PING's RTT includes the data queued ahead of it.
      const r = t.usable ? t.pathRtt : null;
      if (r !== null && r < best) best = r;
    }
    // Before any RTT is known, and on very fast paths, assume 5 ms so windows can still grow.
    return Number.isFinite(best) ? Math.max(best, 5) : 50;
  }

  // ------------------------------------------------------------------ scheduling

  /** Move frames onto tunnels while some tunnel has room: re-sends first, then streams round-robin. */
  pump(): void {
    if (this.pumping || this.lostError) return;
    this.pumping = true;
    const corked = new Set<Tunnel>();
    try {
      // Draining tunnels (GOAWAY SHUTDOWN, either way) still carry the streams already open (PROTOCOL.md §7).
      const usable = this.tunnels.filter((t) => t.usable || t.state === 'draining');
      if (usable.length === 0) return;
      const now = performance.now();
      for (const t of usable) t.adaptDepth(now);
      for (let e = this.failover.peek(); e !== undefined; e = this.failover.peek()) {
        if (e.kind === 'control') {
          this.failover.shift();
          this.sendControl(e.frame);
          continue;
        }
        const t = this.pick(usable, e.payload.length);
        if (!t) return;
        this.failover.shift();
        const s = this.streams.get(e.stream);
        if (!s?.needsResend(e.offset, e.payload.length)) continue;
        if (!corked.has(t)) {
          t.cork();
          corked.add(t);
        }
        s.resent++;
        s.resentBytes += e.payload.length;
        // Not `sendTracked`: the head-of-line record keeps naming the dead tunnel, so hol.ts leaves the frame to failover.
        t.sendData(e);
      }
      // A new connection's first bytes (a page, an answer) go first, on the express lane while it has
      // room: they would otherwise wait their round-robin turn behind a download's frames, and then
      // behind its deep tunnel queues.
      const lane = this.expressOf(usable);
      if (lane) {
        for (const s of this.ready) {
          while (s.sent < EXPRESS_STREAM_BYTES && s.canSend) {
            const bytes = Math.min(this.config.maxPayload, s.pendingLength);
            const t = lane.hasRoom ? lane : this.pick(usable, bytes, s.pendingLength - bytes);
            if (!t) break;
            const f = s.takeFrame();
            if (!f) break;
            if (!corked.has(t)) {
              t.cork();
              corked.add(t);
            }
            this.sendTracked(t, f);
            this.holCredit = Math.min(HOL_CREDIT_MAX, this.holCredit + HOL_BUDGET * f.payload.length);
          }
        }
      }
      while (this.ready.size > 0) {
        const s = this.ready.values().next().value as Connection;
        if (!s.canSend) {
          this.ready.delete(s);
          if (s.blockedOnBudget) this.waitSendBudget(s);
          // Held at its window: the receiver may be waiting for one frame stuck on a slow tunnel.
          else if (s.heldAtWindow) this.rescue(s, this.rescueContext(usable, corked));
          continue;
        }
        const bytes = Math.min(this.config.maxPayload, s.pendingLength);
        const t = this.pick(usable, bytes, s.pendingLength - bytes);
        if (!t) return;
        const f = s.takeFrame();
        if (!f) {
          this.ready.delete(s);
          continue;
        }
        if (!corked.has(t)) {
          t.cork();
          corked.add(t);
        }
        this.sendTracked(t, f);
        this.holCredit = Math.min(HOL_CREDIT_MAX, this.holCredit + HOL_BUDGET * f.payload.length);
        // Round-robin between streams: move this one to the back.
        this.ready.delete(s);
        if (s.canSend) this.ready.add(s);
        else if (s.blockedOnBudget) this.waitSendBudget(s);
      }
    } finally {
      for (const t of corked) t.uncork();
      this.pumping = false;
    }
    this.armHolTimer();
  }

  /** Write a stream's DATA frame on `t` and note where and when, and when its ACK is due. */
  private sendTracked(t: Tunnel, f: KeptData): void {
    const now = performance.now();
    // Due: the frame's arrival over this tunnel (its backlog, rate and half RTT), the ACK's way back
    // (half the best RTT) and the peer's ACK coalescing (one turn of its event loop, a few ms).
    f.due = now + arrivalMs(t, f.payload.length, 0, now) + this.rtt() / 2 + 5;
    f.tunnel = t.id;
    f.sentAt = now;
    t.sendData(f);
    f.end = t.written;
  }

  /**
   * Head-of-line re-send (hol.ts): if the frame `s`'s receiver waits for is overdue on its tunnel,
   * copy it (and the same tunnel's frames stuck behind it) onto the tunnels that would deliver them
   * first, and penalise the tunnel that held them for one RTT.
   */
  private rescue(s: Connection, ctx: RescueContext): void {
    const { usable, byId, corked, now } = ctx;
    if (!this.config.holResend || usable.length < 2 || !s.hasUnacked || this.holCredit < this.config.maxPayload) return;
    const moving = (id: number, sentAt: number): boolean => usable.some((t) => t.id !== id && t.confirmedSentAt > sentAt);
    const frames = s.retention.overdue(
      HOL_SCAN,
      now,
      ctx.grace,
      (id) => byId.has(id),
      HOL_MAX_FRAMES,
      (id) => byId.get(id)?.confirmed ?? 0,
      moving,
    );
    if (frames.length === 0) return;
    const slow = byId.get(frames[0]!.tunnel);
    if (slow) slow.penalisedUntil = now + Math.max(20, slow.pathRtt ?? this.rtt());
    const others = usable.filter((t) => t !== slow);
    for (const f of frames) {
      if (this.holCredit < f.payload.length) break;
      const t = this.pick(others, f.payload.length, 0);
      if (!t) break;
      this.holCredit -= f.payload.length;
      if (!corked.has(t)) {
        t.cork();
        corked.add(t);
      }
      f.copies++;
      s.resent++;
      s.resentBytes += f.payload.length;
      this.holResent++;
      this.sendTracked(t, f);
    }
  }

  /** What one round of head-of-line checks shares: the usable tunnels by id, the clock, the corked tunnels. */
  private rescueContext(usable: Tunnel[], corked: Set<Tunnel>): RescueContext {
    const byId = new Map(usable.map((t) => [t.id, t]));
    return { usable, byId, corked, now: performance.now(), grace: (id) => Math.max(20, byId.get(id)?.pathRtt ?? this.rtt()) };
  }

  /** While any stream has unacknowledged data, look for overdue head-of-line frames every HOL_CHECK_MS. */
  private armHolTimer(): void {
    if (this.holTimer || !this.config.holResend || this.lostError) return;
    this.holTimer = setTimeout(() => {
      this.holTimer = undefined;
      if (this.lostError) return;
      const usable = this.tunnels.filter((t) => t.usable || t.state === 'draining');
      let waiting = false;
      const corked = new Set<Tunnel>();
      const ctx = this.rescueContext(usable, corked);
      // A copy must be able to speed its stream up (hol.ts copyHelps), judged at the tunnels' combined rate.
      let rate = 0;
      for (const t of usable) rate += t.sendRate ?? 0;
      const rtt = this.rtt();
      try {
        for (const s of this.streams.values()) {
          if (!s.hasUnacked) continue;
          waiting = true;
          if (copyHelps(s.pendingLength, s.creditLeft, rate, rtt)) this.rescue(s, ctx);
        }
      } finally {
        for (const t of corked) t.uncork();
      }
      if (waiting) this.armHolTimer();
    }, HOL_CHECK_MS);
    this.holTimer.unref();
  }

  // ------------------------------------------------------------------ receiving

  private onFrame(frame: Frame): void {
    if (this.lostError) return;
    if (frame.type === FrameType.GOAWAY) {
      // IDLE_TIMEOUT is the server's to send (a client's is ignored, like any other reason).
      if (frame.reason === Reason.NORMAL || (frame.reason === Reason.IDLE_TIMEOUT && this.role === 'client')) {
        // The peer closed the session for good (its streams were reset before): free it now, no grace period.
        const why = frame.reason === Reason.IDLE_TIMEOUT ? 'peer closed the idle session' : 'peer closed the session';
        this.expire(new ClosedError(`${why}${frame.message ? `: ${frame.message}` : ''}`, frame.reason));
        return;
      }
      if (frame.reason === Reason.SHUTDOWN) {
        if (this.sessionState === 'open') this.transition('draining');
        this.emit('goaway', frame);
      }
      return;
    }
    if (isAssociationFrame(frame)) {
      this.datagrams.onFrame(frame);
      return;
    }
    if (!isStreamFrame(frame)) throw new ProtocolError(`unexpected frame type 0x${frame.type.toString(16)} after the handshake`);
    if (frame.type === FrameType.OPEN) {
      this.onOpen(frame);
      return;
    }
    const s = this.streams.get(frame.stream);
    if (!s) {
      this.onStaleFrame(frame);
      return;
    }
    try {
      s.onFrame(frame);
    } catch (err) {
      if (err instanceof FlowControlError || err instanceof ProtocolError) s.protocolReset(err);
      else throw err;
    }
  }

  /** A frame for a stream that is not live: answer so the sender can finish, or ignore. */
  private onStaleFrame(frame: Frame & { stream: number }): void {
    const id = frame.stream;
    const peerOpened = (id % 2 === 1) === (this.role === 'server');
    const known = peerOpened ? id <= this.maxPeerId : id < this.nextLocalId;
    if (!known) throw new ProtocolError(`frame type 0x${frame.type.toString(16)} for stream ${id}, which was never opened`);
    // The opener gave up on an OPEN that has not arrived yet: when it does, it is a repeat (refused), not new.
    if (frame.type === FrameType.RST) this.unseenPeerIds.delete(id);
    if (frame.type !== FrameType.DATA && frame.type !== FrameType.FIN) return;
    const end = this.ended.get(id);
    if (end?.how === 'normal') {
      this.sendControl({ type: FrameType.ACK, stream: id, ack: end.received, window: 0 });
    } else {
      // The reason of our own RST if we reset it: the answer may overtake that RST on another tunnel,
      // and the opener should learn why (e.g. CONNECTION_REFUSED), not just that the stream is gone.
      this.sendControl({ type: FrameType.RST, stream: id, reason: end?.reason ?? Reason.STREAM_CLOSED, message: '' });
    }
  }

  private onOpen(frame: OpenFrame): void {
    const id = frame.stream;
    if (this.role !== 'server' || id % 2 !== 1) {
      this.sendControl({ type: FrameType.OPEN_FAIL, stream: id, reason: Reason.NOT_ALLOWED, message: 'this end accepts no streams' });
      return;
    }
    if (id <= this.maxPeerId && !this.unseenPeerIds.delete(id)) {
      // A repeat after a tunnel loss: answer with the current state, never open twice.
      const s = this.streams.get(id);
      if (s && !this.pendingOpens.has(id)) this.sendControl({ type: FrameType.OPEN_OK, stream: id, window: s.initialWindow });
      else if (!s) this.sendControl({ type: FrameType.OPEN_FAIL, stream: id, reason: Reason.GENERAL_FAILURE, message: 'stream already closed' });
      return;
    }
    if (id > this.maxPeerId) {
      // Ids are allocated in order, but OPENs travel on different tunnels: one whose tunnel died is
      // re-sent after OPENs sent later on others. Remember the ids skipped, so that late first OPEN is
      // taken as new, not as a repeat of a closed stream (which would fail it). Bounded: a peer that
      // skips ids wholesale gets the repeat answer for the ids past the bound.
      for (let k = this.maxPeerId === 0 ? 1 : this.maxPeerId + 2; k < id && this.unseenPeerIds.size < UNSEEN_MEMORY; k += 2) this.unseenPeerIds.add(k);
      this.maxPeerId = id;
    }
    if (this.drained) {
      this.sendControl({ type: FrameType.OPEN_FAIL, stream: id, reason: Reason.GENERAL_FAILURE, message: 'server is shutting down' });
      return;
    }
    if (this.streams.size >= this.maxStreams) {
      this.sendControl({ type: FrameType.OPEN_FAIL, stream: id, reason: Reason.LIMIT_EXCEEDED, message: `more than ${this.maxStreams} streams` });
      return;
    }
    const s = new Connection(this, id, frame.destination, 'opening', frame.window);
    this.streams.set(id, s);
    this.lastStreamChange = Date.now();
    this.pendingOpens.add(id);
    const ac = new AbortController();
    s.once('close', () => ac.abort());
    let answered = false;
    const req: OpenRequest = {
      stream: id,
      destination: frame.destination,
      signal: ac.signal,
      accept: () => {
        if (answered) throw new Error('open already answered');
        answered = true;
        if (s.streamState === 'failed') return s; // the opener gave up meanwhile
        this.pendingOpens.delete(id);
        s.accepted();
        this.sendControl({ type: FrameType.OPEN_OK, stream: id, window: s.initialWindow });
        return s;
      },
      reject: (reason, message = '') => {
        if (answered) return;
        answered = true;
        this.pendingOpens.delete(id);
        if (s.streamState === 'failed') return;
        this.sendControl({ type: FrameType.OPEN_FAIL, stream: id, reason, message });
        s.discard(); // the application never saw it: no 'error' event
        // Remember it as reset: late frames get RST, a repeated OPEN gets OPEN_FAIL.
      },
    };
    if (this.listenerCount('open') === 0) {
      req.reject(Reason.NOT_ALLOWED, 'no handler for new streams');
      return;
    }
    this.emit('open', req);
  }

  // ------------------------------------------------------------------ stats

  /**
   * Bytes the tunnels carried so far, both directions, closed tunnels included (monotonic), in bytes.
   * What the tunnels carry, not what streams delivered in order: on a lossy path in-order delivery
   * comes in bursts (a gap holds everything behind it), too noisy to judge a tunnel count by.
   */
  wireBytes(): number {
    let n = this.wireBytesClosed;
    for (const t of this.tunnels) n += t.bytesIn + t.bytesOut;
    return n;
  }
  private wireBytesClosed = 0;

  stats(): SessionStats {
    const streams = [...this.streams.values()].map((s) => s.stats());
    let bytesIn = this.bytesInClosed;
    let bytesOut = this.bytesOutClosed;
    let resent = this.resentFrames;
    let resentBytes = this.resentBytesClosed;
    let duplicateBytes = this.duplicateBytesClosed;
    let late = this.lateCopiesClosed;
    for (const s of this.streams.values()) {
      late += s.lateCopies;
      resent += s.resent;
      resentBytes += s.resentBytes;
      duplicateBytes += s.duplicateBytes;
    }
    for (const st of streams) {
      bytesIn += st.bytesIn;
      bytesOut += st.bytesOut;
    }
    return {
      id: this.id,
      tunnelsUp: this.liveTunnels,
      streamsOpen: this.streams.size,
      bytesIn,
      bytesOut,
      resentFrames: resent,
      resentBytes,
      holResentFrames: this.holResent,
      holLateFrames: late,
      duplicateBytes,
      recvBudgetUsed: this.recvBudget.used,
      sendBudgetUsed: this.sendBudget.used,
      heldFrames: this.failover.length + this.heldControl.length,
      datagrams: this.datagrams.stats(),
      tunnels: this.tunnels.map((t) => t.stats()),
      streams,
    };
  }
}
