import type { Duplex } from 'node:stream';
import type { SessionConfig } from './config.js';
import { kernelSocket, type KernelSocket } from './kernel.js';
import { PathEstimator, type PathMode, type PathView } from './path.js';
import { TunnelRetention, keptControl, type KeptData, type KeptFrame } from './retention.js';
import { ClosedError, Decoder, FrameType, LimitError, Reason, encode, encodeDataHeader, type Frame } from '@gkd/protocol';

/** Tunnel states. Transitions (all in `transition`): connecting → handshaking → open → draining → closed; any → closed. */
/**
 * `retiring`: the client no longer wants this tunnel (adaptive tunnel count): it takes no new frames,
 * still reads and answers PINGs, and ends once the peer confirmed everything sent on it.
 */
export type TunnelState = 'connecting' | 'handshaking' | 'open' | 'draining' | 'retiring' | 'closed';

/** The least a tunnel queues ahead when `adaptDepth` shrinks it, in bytes. */
const MIN_DEPTH = 16 * 1024;

const allowed: Record<TunnelState, TunnelState[]> = {
  connecting: ['handshaking', 'closed'],
  handshaking: ['open', 'closed'],
  open: ['draining', 'retiring', 'closed'],
  draining: ['closed'],
  retiring: ['closed'],
  closed: [],
};

/** Callbacks a tunnel's owner installs. */
export interface TunnelHandlers {
  /** A frame arrived while handshaking. */
  handshake?(frame: Frame): void;
  /** A frame (other than PING/PONG) arrived on an open or draining tunnel. */
  frame?(frame: Frame, tunnel: Tunnel): void;
  /** The socket's send buffer drained below the high-water mark. */
  drain?(tunnel: Tunnel): void;
  /** The tunnel closed; `unconfirmed` are the frames the peer may not have processed. */
  close?(tunnel: Tunnel, unconfirmed: KeptFrame[], error: Error | undefined): void;
}

/** Tunnel settings, in ms and bytes. */
export interface TunnelOptions {
  index: number;
  maxBody: number;
  keepaliveInterval: number;
  keepaliveTimeout: number;
  confirmFrames: number;
  confirmBytes: number;
  highWater: number;
  maxUnconfirmed: number;
  /** Use the kernel's socket controls and statistics where they work: 'auto' not on loopback, 'on' always, 'off' never. */
  kernel: 'auto' | 'on' | 'off';
  /** TCP_NOTSENT_LOWAT to set, in bytes (0: leave the kernel's default). */
  notSentLowat: number;
  /** How far ahead a tunnel queues (kernel unsent plus user space), in ms at its send rate; 0: always `notSentLowat`. */
  depthMs: number;
  /** User-space high-water mark once TCP_NOTSENT_LOWAT is set, in bytes. */
  tunedHighWater: number;
  /** Congestion control to set on the socket, or null for the system default. */
  congestion: string | null;
  /** Turn on the kernel's TCP pacing. */
  pacing: boolean;
}

/** The kernel's view of a tunnel's socket, for stats (times in ms, rates in bytes/s). */
export interface TunnelKernelStats {
  rtt: number;
  minRtt: number;
  /** Congestion window, in segments. */
  cwnd: number;
  /** Bytes written to the kernel and not sent yet. */
  notSent: number;
  deliveryRate: number;
  /** Segments retransmitted over the tunnel's life. */
  retransmits: number;
  /** 0 open, 1 disorder, 2 CWR, 3 recovery, 4 loss. */
  caState: number;
}

/** A snapshot of one tunnel for stats. */
export interface TunnelStats {
  id: number;
  index: number;
  state: TunnelState;
  /** Smoothed round-trip time, in ms (null before the first PONG). */
  rtt: number | null;
  bytesIn: number;
  bytesOut: number;
  framesIn: number;
  framesOut: number;
  /** Bytes waiting in the socket's send buffer. */
  queued: number;
  /** Bytes written that no PONG has confirmed yet (socket buffer, kernel buffers, path, peer's unread input). */
  inflight: number;
  /** Delivery rate while bytes were in flight, measured from PONG confirmations, in bytes per second (null until measured). */
  rate: number | null;
  /** Frames sent but not yet confirmed by a PONG. */
  unconfirmed: number;
  /** 'kernel': TCP_INFO feeds the path estimate and TCP_NOTSENT_LOWAT keeps frames in user space; 'user': PING timing only. */
  mode: PathMode;
  /** The socket's congestion control (null where it cannot be read). */
  congestion: string | null;
  /** TCP_NOTSENT_LOWAT in force, in bytes (0: none). */
  notSentLowat: number;
  /** True if this tunnel is the session's express lane (`expressLane`). */
  express: boolean;
  /** True if the kernel paces this tunnel (SO_MAX_PACING_RATE). */
  pacing: boolean;
  /** The kernel's view (null in user mode). */
  kernel: TunnelKernelStats | null;
}

/** The tunnel settings that come from a session config, for tunnel `index` (-1 until the handshake names it). */
export function tunnelOptions(c: SessionConfig, index: number): TunnelOptions {
  return {
    index,
    maxBody: c.maxBody,
    keepaliveInterval: c.keepaliveInterval,
    keepaliveTimeout: c.keepaliveTimeout,
    confirmFrames: c.confirmFrames,
    confirmBytes: c.confirmBytes,
    highWater: c.tunnelHighWater,
    maxUnconfirmed: c.maxUnconfirmedFrames,
    kernel: c.socketTuning,
    notSentLowat: c.notSentLowat,
    depthMs: c.tunnelDepth,
    tunedHighWater: c.tunedHighWater,
    congestion: c.congestion,
    pacing: c.pacing,
  };
}

let nextTunnelId = 1;

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.x.y.z). */
export function isLoopback(address: string): boolean {
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || /^127\./.test(a);
}

/**
 * One real connection (TCP, TLS or in-memory) carrying frames of one session: decoding, writing,
 * keepalive, RTT, delivery-rate measurement and the retained frames that make failover lossless.
 */
export class Tunnel implements PathView {
  readonly id = nextTunnelId++;
  readonly index: number;
  state: TunnelState = 'connecting';
  handlers: TunnelHandlers = {};
  /** Smoothed RTT in ms, or null before the first PONG. */
  srtt: number | null = null;
  /** Delivery rate in bytes/s while bytes were in flight (from PONG confirmations), or null before it could be measured. */
  rate: number | null = null;
  bytesIn = 0;
  bytesOut = 0;
  framesIn = 0;
  framesOut = 0;
  /** The path estimate (kernel TCP_INFO where available, else PING timing). */
  readonly path: PathEstimator;
  /** Congestion control in use (null where it cannot be read); see also `congestionError`. */
  readonly congestion: string | null = null;
  /** Why the requested congestion control could not be set, or null. */
  readonly congestionError: string | null = null;
  /** TCP_NOTSENT_LOWAT in force, in bytes (0: none). */
  readonly notSentLowat: number = 0;
  /** True if the kernel paces this tunnel's TCP (SO_MAX_PACING_RATE set). */
  readonly pacing: boolean = false;
  /** The express lane's queue bound (see `expressLane()`), in bytes; 0 on other tunnels. */
  readonly express: number = 0;
  /** Until when (performance.now(), ms) the scheduler counts one more RTT for this tunnel. */
  penalisedUntil = 0;
  /** When (performance.now(), ms) `adaptDepth` last looked at the rate. */
  private depthAt = -Infinity;

  private readonly socket: Duplex;
  private readonly kernel: KernelSocket | null;
  private readonly decoder: Decoder;
  private readonly opts: TunnelOptions;
  /** Frames sent and not yet confirmed by a PONG, handed to the `close` handler for failover (retention.ts). */
  private readonly retention = new TunnelRetention();
  private unconfirmedFrames = 0;
  private unconfirmedBytes = 0;
  private nextPingId = 1;
  private confirmPingOutstanding = false;
  /** More than `maxUnconfirmed` frames are kept: the tunnel closes on the next turn. */
  private overLimit = false;
  /** When the oldest PING still unanswered was sent (performance.now()), or null if every PING was answered. */
  private unansweredSince: number | null = null;
  /** Outstanding PINGs: when each was sent (performance.now()) and `writtenTotal` just before it. */
  private readonly pingSent = new Map<number, { at: number; written: number }>();
  private lastReceived = Date.now();
  private keepaliveTimer: NodeJS.Timeout | undefined;
  private rateTimer: NodeJS.Timeout | undefined;
  private writtenTotal = 0;
  /** `writtenTotal` at the last PING a PONG answered: the peer has processed every byte below it. */
  private confirmedTotal = 0;
  /** When (performance.now(), ms) the latest PING a PONG answered was sent: the peer processed all this tunnel sent before then. */
  confirmedSentAt = -Infinity;
  private lastSample = { time: performance.now(), confirmed: 0, inflight: 0 };
  private closeError: Error | undefined;
  private early: Frame[] = [];
  /** While retiring: how many bytes written the peer must confirm before this end sends FIN. */
  private retireWatch: { goal: number; end: () => void } | null = null;
  /** Our side ended (FIN sent while retiring): nothing more may be written. */
  private ended = false;
  /** True while reading is paused because the peer does not read what we send (see `onData`). */
  private readPaused = false;

  constructor(socket: Duplex, opts: TunnelOptions) {
    this.socket = socket;
    this.opts = opts;
    this.index = opts.index;
    this.decoder = new Decoder({ maxBody: opts.maxBody });
    const s = socket as Duplex & { setNoDelay?: (v: boolean) => void; setKeepAlive?: (v: boolean, d: number) => void };
    s.setNoDelay?.(true);
    s.setKeepAlive?.(true, 10_000);
    const remote = (socket as Duplex & { remoteAddress?: string }).remoteAddress;
    const loopback = remote !== undefined && isLoopback(remote);
    this.kernel = opts.kernel === 'on' || (opts.kernel === 'auto' && !loopback) ? kernelSocket(socket) : null;
    if (this.kernel) {
      if (opts.notSentLowat > 0 && this.kernel.setNotSentLowat(opts.notSentLowat)) this.notSentLowat = opts.notSentLowat;
      if (opts.pacing) this.pacing = this.kernel.setPacing();
      if (opts.congestion) {
        try {
          this.kernel.setCongestion(opts.congestion);
        } catch (err) {
          this.congestionError = (err as Error).message;
        }
      }
      this.congestion = this.kernel.congestion();
    }
    const k = this.kernel;
    this.path = new PathEstimator(k ? () => k.info() : null);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      if (this.readPaused) {
        this.readPaused = false;
        this.socket.resume();
      }
      this.handlers.drain?.(this);
    });
    socket.on('error', (err) => this.close(err));
    socket.on('close', () => this.close(this.closeError));
    socket.on('end', () => this.close(new ClosedError('tunnel closed by peer')));
  }

  /** Move to `to`; throws on a transition the state machine does not have. */
  transition(to: TunnelState): void {
    if (this.state === to) return;
    if (!allowed[this.state].includes(to)) throw new Error(`tunnel ${this.id}: illegal transition ${this.state} → ${to}`);
    this.state = to;
    if (to === 'open') this.startTimers();
  }

  /** True if the scheduler may give this tunnel new frames. */
  get usable(): boolean {
    return this.state === 'open';
  }

  /** Bytes waiting in the socket's send buffer. */
  get queued(): number {
    return this.socket.writableLength;
  }

  /**
   * Bytes written on this tunnel that no PONG has confirmed yet: the socket's send buffer plus whatever
   * sits in kernel buffers, on the path and unread at the peer. Unlike `queued` it sees a queue that
   * builds beyond the socket (a slow link behind a large kernel buffer). It over-counts by up to one
   * confirmation interval (`confirmFrames` / `confirmBytes`, or a keepalive when traffic is light).
   */
  get inflight(): number {
    return this.writtenTotal - this.confirmedTotal;
  }

  /** Bytes written on this tunnel so far (its byte position), including handshake bytes. */
  get written(): number {
    return this.writtenTotal;
  }

  /** The byte position below which a PONG proved the peer processed everything written on this tunnel. */
  get confirmed(): number {
    return this.confirmedTotal;
  }

  /**
   * True if the send buffer is below the high-water mark. With TCP_NOTSENT_LOWAT the kernel holds at
   * most that much unsent, so frames wait in user space, where the scheduler can still choose a
   * tunnel for them: the mark is then low (`highWater`: half the tunnel's depth), and a tunnel takes a
   * frame only when it can send it soon.
   */
  get hasRoom(): boolean {
    return this.socket.writableLength < this.highWater;
  }

  /** The user-space high-water mark: the express bound, half the kernel's unsent bound (16 KiB to `tunedHighWater`) with one, `highWater` without. */
  get highWater(): number {
    if (this.express > 0) return this.express;
    if (this.notSentLowat === 0) return this.opts.highWater;
    return Math.min(this.opts.tunedHighWater, Math.max(MIN_DEPTH, this.notSentLowat >> 1));
  }

  /**
   * Keep this tunnel's queue about `depthMs` deep at its send rate (kernel mode, not the express lane):
   * TCP_NOTSENT_LOWAT follows rate × depthMs between 16 KiB and the configured `notSentLowat`, and the
   * user-space mark follows at half that. A frame handed to a slow tunnel then waits about as long as
   * on a fast one, instead of up to a second behind 128 KiB + 64 KiB at 1.6 Mbit/s (scenario (b)), which
   * is how long the receiver may wait for it; 100 ms still outlasts an event-loop pause, so the tunnel
   * does not run dry. Looks at most every 20 ms and changes the option only on a 25 % move.
   */
  adaptDepth(now: number): void {
    if (!this.kernel || this.opts.depthMs <= 0 || this.notSentLowat === 0 || this.express > 0) return;
    if (now - this.depthAt < 20) return;
    this.depthAt = now;
    const rate = this.sendRate;
    if (rate === null || rate <= 0) return;
    const want = Math.round(Math.min(this.opts.notSentLowat, Math.max(MIN_DEPTH, (rate * this.opts.depthMs) / 1000)));
    const have = this.notSentLowat;
    if (want === have || (Math.abs(want - have) < have / 4 && want !== this.opts.notSentLowat && want !== MIN_DEPTH)) return;
    if (this.kernel.setNotSentLowat(want)) (this as { notSentLowat: number }).notSentLowat = want;
  }

  /**
   * Make this tunnel the session's express lane: at most `bytes` unsent in the kernel
   * (TCP_NOTSENT_LOWAT) and `bytes` queued in user space, so a frame the scheduler puts here leaves
   * within `bytes` at the tunnel's rate instead of behind the other tunnels' deeper queues (128 KiB
   * unsent + 64 KiB is ~120 ms at 12 Mbit/s). Kernel mode only; returns false (and changes nothing)
   * without it.
   */
  expressLane(bytes: number): boolean {
    if (!this.kernel || this.notSentLowat === 0 || bytes <= 0) return false;
    if (!this.kernel.setNotSentLowat(bytes)) return false;
    (this as { notSentLowat: number }).notSentLowat = bytes;
    (this as { express: number }).express = bytes;
    return true;
  }

  /** See PathView: user-space queue plus kernel unsent bytes with kernel access, unconfirmed bytes without. */
  get backlog(): number {
    return this.path.mode === 'kernel' ? this.socket.writableLength + this.path.notSent() : this.inflight;
  }

  /** See PathView: bytes/s from the kernel's congestion window and RTT, or from PONG confirmations. */
  get sendRate(): number | null {
    return this.path.rate(this.rate);
  }

  /** See PathView: room in the congestion window, in bytes (0 in user mode). */
  get sendRoom(): number {
    return this.path.sendRoom();
  }

  /** See PathView: the kernel's smoothed RTT, or the PING RTT, in ms. */
  get pathRtt(): number | null {
    return this.path.rtt(this.srtt);
  }

  /** Send a control frame (kept until confirmed unless it is PING/PONG). */
  send(frame: Frame): void {
    if (this.state === 'closed') return;
    const buf = encode(frame);
    this.write(buf);
    this.framesOut++;
    if (frame.type === FrameType.PING || frame.type === FrameType.PONG) return;
    if (this.state === 'connecting' || this.state === 'handshaking') return; // handshake frames are not retained
    this.retention.keep(keptControl(frame), this.nextPingId);
    this.noteUnconfirmed(buf.length);
  }

  /** Send a stream's DATA frame without copying the payload; the frame itself is kept (by reference) until confirmed. */
  sendData(frame: KeptData): void {
    if (this.state === 'closed') return;
    const { payload } = frame;
    const head = encodeDataHeader(frame.stream, frame.offset, payload.length);
    this.write(head);
    this.write(payload);
    this.framesOut++;
    this.retention.keep(frame, this.nextPingId);
    this.noteUnconfirmed(head.length + payload.length);
  }

  /** Batch the writes of one scheduling round into few syscalls. */
  cork(): void {
    this.socket.cork();
  }
  uncork(): void {
    this.socket.uncork();
  }

  /** Send GOAWAY and stop taking new frames; the peer may finish its streams. */
  goAway(reason: number, message = ''): void {
    if (this.state !== 'open') return;
    this.send({ type: FrameType.GOAWAY, reason, message });
    this.transition('draining');
  }

  /**
   * Retire the tunnel without losing a frame: it takes no new frames at once (`usable` turns false),
   * PINGs to have everything it carried confirmed, then ends its side (FIN). The peer then closes it;
   * the peer's frames still in flight on it are read as usual, and those it had not seen confirmed it
   * re-sends on its other tunnels (PROTOCOL.md §6), where duplicates are dropped. After `timeoutMs`
   * without that confirmation it ends anyway (the unconfirmed frames fail over the same way); after
   * another `timeoutMs` without the peer's close, it is destroyed.
   */
  retire(timeoutMs: number): void {
    if (this.state !== 'open') return;
    this.transition('retiring');
    const goal = this.writtenTotal;
    const timer = setTimeout(() => end(), timeoutMs);
    timer.unref();
    const end = () => {
      clearTimeout(timer);
      this.retireWatch = null;
      if (this.state !== 'retiring') return;
      this.ended = true;
      this.socket.end();
      setTimeout(() => this.close(), timeoutMs).unref();
    };
    this.retireWatch = { goal, end };
    if (this.confirmedTotal >= goal) end();
    else this.ping();
  }

  /** Close the tunnel (idempotent). The unconfirmed frames go to the `close` handler. */
  close(error?: Error): void {
    if (this.state === 'closed') return;
    this.closeError = error;
    this.state = 'closed';
    clearInterval(this.keepaliveTimer);
    clearInterval(this.rateTimer);
    const unconfirmed = this.retention.takeUnconfirmed();
    this.pingSent.clear();
    this.socket.destroy();
    this.handlers.close?.(this, unconfirmed, error);
  }

  /** Send a protocol-level complaint (if possible) and close. */
  fail(error: Error & { reason?: number | undefined }): void {
    if (this.state === 'closed') return;
    try {
      const reason = error.reason ?? Reason.PROTOCOL_ERROR;
      if (this.state === 'handshaking') this.write(encode({ type: FrameType.REJECT, reason, message: error.message }));
      else this.write(encode({ type: FrameType.GOAWAY, reason, message: error.message }));
      this.socket.end();
    } catch {
      /* socket already gone */
    }
    this.close(error);
  }

  /** Write raw bytes (used by the handshake and by `send`). */
  write(buf: Buffer): void {
    if (this.ended) return; // retired: our side sent FIN (a late PONG to the peer's PING is moot)
    this.bytesOut += buf.length;
    this.writtenTotal += buf.length;
    this.socket.write(buf);
  }

  stats(): TunnelStats {
    return {
      id: this.id,
      index: this.index,
      state: this.state,
      rtt: this.srtt,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      framesIn: this.framesIn,
      framesOut: this.framesOut,
      queued: this.queued,
      inflight: this.inflight,
      rate: this.rate,
      unconfirmed: this.retention.length,
      mode: this.path.mode,
      congestion: this.congestion,
      notSentLowat: this.notSentLowat,
      express: this.express > 0,
      pacing: this.pacing,
      kernel: this.kernelStats(),
    };
  }

  private kernelStats(): TunnelKernelStats | null {
    const i = this.state === 'closed' ? null : this.path.sample();
    if (!i) return null;
    return {
      rtt: i.rtt / 1000,
      minRtt: i.minRtt / 1000,
      cwnd: i.cwnd,
      notSent: i.notSent,
      deliveryRate: i.deliveryRate,
      retransmits: i.totalRetrans,
      caState: i.caState,
    };
  }

  /** Dead-peer deadline in ms: the configured timeout, but at least 1 s + 4 × RTT. */
  get deadline(): number {
    return Math.max(this.opts.keepaliveTimeout, 1000 + 4 * (this.srtt ?? 0));
  }

  private noteUnconfirmed(bytes: number): void {
    if (this.retention.frameCount > this.opts.maxUnconfirmed && !this.overLimit) {
      // Closed on the next turn, not here: the caller may be in the middle of a scheduling round that
      // would hand the next frame to a tunnel closed under it. Until then the tunnel takes frames as usual.
      this.overLimit = true;
      setImmediate(() =>
        this.fail(new LimitError(`tunnel ${this.index}: the peer confirmed none of the last ${this.opts.maxUnconfirmed} frames (it does not answer PINGs)`)),
      );
    }
    this.unconfirmedFrames++;
    this.unconfirmedBytes += bytes;
    if (!this.confirmPingOutstanding && (this.unconfirmedFrames >= this.opts.confirmFrames || this.unconfirmedBytes >= this.opts.confirmBytes)) {
      this.confirmPingOutstanding = true;
      this.ping();
    }
  }

  private ping(): void {
    const id = this.nextPingId;
    this.nextPingId = (this.nextPingId + 1) >>> 0 || 1;
    this.unconfirmedFrames = 0;
    this.unconfirmedBytes = 0;
    if (this.pingSent.size > 4096) this.pingSent.delete(this.pingSent.keys().next().value as number);
    const at = performance.now();
    this.pingSent.set(id, { at, written: this.writtenTotal });
    if (this.unansweredSince === null) this.unansweredSince = at;
    this.send({ type: FrameType.PING, id });
  }

  private startTimers(): void {
    this.lastReceived = Date.now();
    // Handshake bytes are not traffic the scheduler should weigh: count in-flight bytes from here.
    this.confirmedTotal = this.writtenTotal;
    this.keepaliveTimer = setInterval(
      () => {
        if (this.ended) return; // retired: waiting for the peer's close (bounded by retire's timer)
        if (Date.now() - this.lastReceived > this.deadline) {
          this.fail(new ClosedError(`tunnel ${this.index}: nothing received for ${this.deadline} ms`, Reason.KEEPALIVE_TIMEOUT));
          return;
        }
        // A peer that keeps sending but answers no PING confirms nothing, and every frame sent to it
        // stays retained: that is as dead as silence (yamux and HTTP/2 keepalives do the same). Twice the
        // silence deadline: a PING waits behind whatever is queued in the tunnel (seen: 3 s on a lossy
        // 100 ms path), and the smoothed RTT that stretches the deadline lags a queue that is growing.
        const pongDeadline = 2 * this.deadline;
        if (this.unansweredSince !== null && performance.now() - this.unansweredSince > pongDeadline) {
          this.fail(new ClosedError(`tunnel ${this.index}: no PING answered for ${Math.round(pongDeadline)} ms`, Reason.KEEPALIVE_TIMEOUT));
          return;
        }
        this.ping();
      },
      Math.min(this.opts.keepaliveInterval, Math.max(50, this.opts.keepaliveTimeout / 4)),
    );
    this.keepaliveTimer.unref();
    this.rateTimer = setInterval(() => this.tick(), 200);
    this.rateTimer.unref();
  }

  /**
   * Every 200 ms: confirm what is still unconfirmed, and take a delivery-rate sample.
   *
   * The rate is bytes confirmed by PONGs per second, over intervals that had bytes in flight from start
   * to end. The socket's own drain rate is no substitute: a slow link behind large kernel buffers
   * drains the socket at memory speed until megabytes are queued out of sight. An interval that began
   * with less in flight than the tunnel could deliver in it at the current estimate was limited by what
   * we sent, not by the tunnel: its sample may raise the estimate but never lower it, or a tunnel the
   * scheduler stopped using would look slower and slower and never get traffic again.
   */
  private tick(): void {
    // A few frames that never reach `confirmFrames` would otherwise wait for the keepalive PING, and
    // count as in flight (and make the tunnel look busy) for up to a keepalive interval.
    if (this.unconfirmedFrames > 0 && !this.confirmPingOutstanding) {
      this.confirmPingOutstanding = true;
      this.ping();
    }
    const now = performance.now();
    const inflight = this.inflight;
    const s = this.lastSample;
    if (s.inflight > 0 && inflight > 0) {
      const delivered = this.confirmedTotal - s.confirmed;
      // No PONG yet (a slow or long path): let the interval grow rather than sample zero.
      if (delivered === 0) return;
      const dt = (now - s.time) / 1000;
      const r = delivered / dt;
      const backlogged = this.rate === null || s.inflight >= this.rate * dt;
      if (backlogged || r > this.rate!) this.rate = this.rate === null ? r : 0.7 * this.rate + 0.3 * r;
    }
    this.lastSample = { time: now, confirmed: this.confirmedTotal, inflight };
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.lastReceived = Date.now();
    this.bytesIn += chunk.length;
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    for (const frame of frames) {
      if ((this.state as TunnelState) === 'closed') return;
      if (this.overLimit) {
        // Closing on the next turn: take nothing more from a peer that confirms nothing (unprocessed
        // frames are unconfirmed, so a peer that is merely broken re-sends them elsewhere).
        this.socket.pause();
        return;
      }
      this.framesIn++;
      try {
        this.dispatch(frame);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
    }
    // Most frames we send are answers to the peer's (PONG, ACK, RST, OPEN_FAIL), and the scheduler
    // stops giving us DATA at `highWater`. So a send buffer far past `highWater` means the peer sends
    // but does not read: stop reading it until the buffer drains, or it could make us queue answers
    // without bound (a PING flood). If it stays silent meanwhile, the keepalive deadline closes us.
    if (!this.readPaused && this.socket.writableLength > 4 * this.opts.highWater) {
      this.readPaused = true;
      this.socket.pause();
    }
  }

  private dispatch(frame: Frame): void {
    if (this.state === 'handshaking' || this.state === 'connecting') {
      this.handlers.handshake?.(frame);
      return;
    }
    switch (frame.type) {
      case FrameType.PING:
        this.send({ type: FrameType.PONG, id: frame.id });
        return;
      case FrameType.PONG:
        this.onPong(frame.id);
        return;
      case FrameType.GOAWAY:
        if (this.state === 'open') this.transition('draining');
        this.handlers.frame?.(frame, this);
        return;
      default:
        // Frames may follow WELCOME in the same read, before the session has attached: hold them.
        if (this.handlers.frame) this.handlers.frame(frame, this);
        else if (this.early.length < 4096) this.early.push(frame);
        else throw new Error('too many frames before the session attached');
    }
  }

  /** Deliver frames that arrived before a frame handler was installed. */
  flushEarly(): void {
    const early = this.early;
    this.early = [];
    for (const f of early) {
      if (this.state === 'closed' || !this.handlers.frame) return;
      try {
        this.handlers.frame(f, this);
      } catch (err) {
        this.fail(err as Error);
        return;
      }
    }
  }

  private onPong(id: number): void {
    const ping = this.pingSent.get(id);
    if (ping === undefined) return; // unknown or forged id: confirms nothing
    const sent = ping.at;
    if (ping.written > this.confirmedTotal) this.confirmedTotal = ping.written;
    if (sent > this.confirmedSentAt) this.confirmedSentAt = sent;
    for (const k of this.pingSent.keys()) {
      if (k > id) break;
      this.pingSent.delete(k);
    }
    const next = this.pingSent.values().next();
    this.unansweredSince = next.done ? null : next.value.at;
    const rtt = performance.now() - sent;
    this.srtt = this.srtt === null ? rtt : 0.875 * this.srtt + 0.125 * rtt;
    this.retention.confirm(id);
    if (this.confirmPingOutstanding) this.confirmPingOutstanding = false;
    if (this.retireWatch && this.confirmedTotal >= this.retireWatch.goal) this.retireWatch.end();
  }
}
