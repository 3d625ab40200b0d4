import { Duplex } from 'node:stream';
import {
  ClosedError,
  type FlowControlError,
  FrameType,
  GkdError,
  OpenFailedError,
  ProtocolError,
  Reason,
  ReorderBuffer,
  StreamResetError,
  type AckFrame,
  type Address,
  type Frame,
} from '@gkd/protocol';
import type { ByteBudget } from './budget.js';
import type { SessionConfig } from './config.js';
import { StreamRetention, keptData, type KeptData } from './retention.js';

/**
 * Stream states. All transitions happen in `transition`:
 * opening → open → (local-fin | remote-fin) → closed; opening|open|local-fin|remote-fin → failed.
 * `local-fin`: we sent FIN; `remote-fin`: the peer's FIN was delivered; `closed`: both, all acknowledged.
 */
export type StreamState = 'opening' | 'open' | 'local-fin' | 'remote-fin' | 'closed' | 'failed';

const transitions: Record<StreamState, StreamState[]> = {
  opening: ['open', 'failed'],
  open: ['local-fin', 'remote-fin', 'failed'],
  'local-fin': ['closed', 'failed'],
  'remote-fin': ['closed', 'failed'],
  closed: [],
  failed: [],
};

/** What a stream needs from its session. */
export interface StreamHost {
  readonly config: SessionConfig;
  /** The stream has frames to send (data or FIN). */
  requestSend(stream: Connection): void;
  /** Send a control frame on some tunnel (or hold it until one is up). */
  sendControl(frame: Frame): void;
  /** Send this stream's ACK soon (coalesced). */
  scheduleAck(stream: Connection): void;
  /** The stream is finished (normally or not); forget it. */
  streamEnded(stream: Connection, how: 'normal' | 'reset'): void;
  /** Smallest smoothed RTT of the live tunnels, in ms. */
  rtt(): number;
  /** The receive window a new stream should ask for, in bytes (before the budget is consulted). */
  startWindow(): number;
  /** A stream's receive window grew to `bytes`. */
  windowGrew?(bytes: number): void;
  /** Budget for the receive windows this end grants. */
  readonly recvBudget: ByteBudget;
  /** Budget for the unacknowledged bytes this end holds. */
  readonly sendBudget: ByteBudget;
  /** The stream cannot send until send budget is released: wake it then. */
  waitSendBudget(stream: Connection): void;
}

/** A snapshot of one stream for stats. */
export interface StreamStats {
  id: number;
  state: StreamState;
  destination: Address | null;
  /** Bytes delivered to the application. */
  bytesIn: number;
  /** Bytes framed and sent (first transmissions). */
  bytesOut: number;
  /** Current receive window, in bytes. */
  window: number;
  /** Bytes sent but not yet acknowledged. */
  unacked: number;
  /** Out-of-order segments held. */
  reorderDepth: number;
  /** Bytes received but not yet read by the application (reorder buffer + readable buffer). */
  buffered: number;
  /** Bytes the application wrote that are not framed yet (the Duplex's write buffer included). */
  pending: number;
  /** Frames sent again (after a tunnel loss, or as head-of-line copies). */
  resent: number;
  /** Payload bytes sent again (after a tunnel loss, or as head-of-line copies). */
  resentBytes: number;
  /** Payload bytes received that carried nothing new (copies the peer sent again). */
  duplicateBytes: number;
}

/**
 * One virtual connection: a Node Duplex whose bytes travel as DATA frames over all tunnels of its
 * session. `write()` returns false when the buffer is full, then `'drain'`; `end()` sends FIN
 * (half-close) and `'finish'` fires once the peer acknowledged every byte; `destroy(err)` sends RST.
 */
export class Connection extends Duplex {
  readonly id: number;
  /** The target the opener asked for (null in library mode). */
  readonly destination: Address | null;
  streamState: StreamState;
  /** Frames re-sent (after tunnel losses, or as head-of-line copies). */
  resent = 0;
  /** Payload bytes re-sent (after tunnel losses, or as head-of-line copies). */
  resentBytes = 0;
  /** Payload bytes received that carried nothing new. */
  duplicateBytes = 0;
  /** Head-of-line copies acknowledged too soon after they were sent to be what the peer received first (see StreamRetention.ackTo). */
  lateCopies = 0;
  /** The reason of the RST this end sent, or null (the session answers late frames with it). */
  resetReason: number | null = null;

  private readonly host: StreamHost;
  // --- send side ---
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private pendingCb: ((err?: Error | null) => void) | null = null;
  private finRequested = false;
  private finSent = false;
  private finalCb: ((err?: Error | null) => void) | null = null;
  private sentOffset = 0;
  /** Largest cumulative ACK from the peer: every byte below it arrived. */
  ackedOffset = 0;
  private peerLimit: number;
  /** DATA frames sent and not acknowledged yet, oldest first (retention.ts): re-sent after a tunnel loss or when overdue. */
  readonly retention = new StreamRetention();
  // --- receive side ---
  private readonly reorder: ReorderBuffer;
  private window: number;
  private advertisedLimit: number;
  private delivered = 0;
  private remoteFinal: number | null = null;
  private remoteEnded = false;
  private epochTime = Date.now();
  private epochConsumed = 0;
  /** Most bytes held in the reorder buffer (behind a gap) during the current window epoch. */
  private epochHeld = 0;
  /** The peer sent up to the limit we advertised since the window last grew (it waits for our credit). */
  private peerAtLimit = false;
  /** When the window last grew (ms since the epoch). */
  private lastGrowth = 0;
  private resetByPeer = false;
  private released = false;
  private recvReleased = false;
  private openWaiter: { resolve: () => void; reject: (err: Error) => void } | null = null;

  constructor(host: StreamHost, id: number, destination: Address | null, state: 'opening', peerWindow: number) {
    super({ allowHalfOpen: true, readableHighWaterMark: 64 * 1024, writableHighWaterMark: 64 * 1024 });
    this.host = host;
    this.id = id;
    this.destination = destination;
    this.streamState = state;
    this.peerLimit = peerWindow;
    // The start window comes out of the receive budget: at most a quarter of what is free (a burst of
    // new streams must not take it all), at least `initialWindow` while that is free, and when the
    // budget is spent a stream still gets one frame's worth.
    const cfg = host.config;
    const budget = host.recvBudget;
    const want = Math.min(host.startWindow(), cfg.maxWindow, Math.max(cfg.initialWindow, Math.floor(budget.free / 4)));
    this.window = budget.reserve(want, cfg.maxPayload);
    this.advertisedLimit = this.window;
    this.reorder = new ReorderBuffer({ window: this.window, maxSegments: 1024 });
  }

  /** Move to `to`; throws on a transition the state machine does not have. */
  transition(to: StreamState): void {
    if (this.streamState === to) return;
    if (!transitions[this.streamState].includes(to)) {
      throw new Error(`stream ${this.id}: illegal transition ${this.streamState} → ${to}`);
    }
    this.streamState = to;
  }

  /** The receive window this end grants, for OPEN and OPEN_OK. */
  get initialWindow(): number {
    return this.window;
  }

  /** A promise that settles when the open is answered (opener side). */
  waitOpen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.openWaiter = { resolve, reject };
    });
  }

  // ---------------------------------------------------------------- Duplex plumbing

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.enqueue([chunk], cb);
  }

  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this.enqueue(
      chunks.map((c) => c.chunk),
      cb,
    );
  }

  private enqueue(chunks: Buffer[], cb: (err?: Error | null) => void): void {
    if (this.streamState === 'failed' || this.streamState === 'closed') {
      cb(new ClosedError('stream is closed'));
      return;
    }
    for (const c of chunks) {
      if (c.length === 0) continue; // a zero-length write sends nothing
      this.pending.push(c);
      this.pendingBytes += c.length;
    }
    if (this.pendingBytes === 0) {
      cb();
      return;
    }
    this.pendingCb = cb;
    this.host.requestSend(this);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.finRequested = true;
    this.finalCb = cb;
    this.host.requestSend(this);
    this.maybeSendFin();
  }

  override _read(): void {
    this.maybeUpdateWindow();
  }

  /**
   * Every consumption path (flowing mode, pipe, async iteration, explicit read) goes through read().
   * `_read` alone is not enough: after Node calls `_read` and we have nothing to push, it does not call
   * it again until we push, so a reader that drains a full window would never open it again.
   */
  // biome-ignore lint/suspicious/noExplicitAny: the signature of Readable.read, which this overrides.
  override read(size?: number): any {
    const chunk: unknown = super.read(size);
    if (chunk !== null && !this.remoteEnded) this.maybeUpdateWindow();
    return chunk;
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (this.streamState !== 'closed' && this.streamState !== 'failed') {
      if (!this.resetByPeer) {
        const reason = err instanceof GkdError && err.reason !== undefined ? err.reason : Reason.CANCELLED;
        this.resetReason = reason;
        this.host.sendControl({ type: FrameType.RST, stream: this.id, reason, message: err?.message ?? '' });
      }
      this.streamState = 'failed';
      this.openWaiter?.reject(err ?? new ClosedError('stream destroyed before it opened'));
      this.openWaiter = null;
      this.release('reset');
    }
    cb(err);
  }

  // ---------------------------------------------------------------- send side (called by the session)

  /** Bytes this stream may send now: the peer's limit, capped by our own max window. */
  private credit(): number {
    const limit = Math.min(this.peerLimit, this.ackedOffset + this.host.config.maxWindow);
    return Math.min(limit - this.sentOffset, this.budgetRoom());
  }

  /**
   * Bytes the send budget lets this stream hold unacknowledged now. A stream with nothing
   * unacknowledged may always send one frame, even past the budget: other streams (of this peer, or
   * of other peers sharing a server-wide pool) that hold the budget and are not acknowledged must not
   * stop it for good. So the bound is the budget plus one frame per stream (LIMITS.md).
   */
  private budgetRoom(): number {
    const free = this.host.sendBudget.free;
    return this.sentOffset === this.ackedOffset ? Math.max(free, this.host.config.maxPayload) : free;
  }

  /** True if the peer granted credit but the send budget is spent (the session wakes us on release). */
  get blockedOnBudget(): boolean {
    const limit = Math.min(this.peerLimit, this.ackedOffset + this.host.config.maxWindow);
    return this.pendingBytes > 0 && limit > this.sentOffset && this.budgetRoom() <= 0;
  }

  /** Bytes sent so far (the next frame's offset). */
  get sent(): number {
    return this.sentOffset;
  }

  /** Bytes this stream may still send before the peer's window (or our max window, or the send budget) holds it. */
  get creditLeft(): number {
    return Math.max(0, this.credit());
  }

  /** True if `takeFrame` would return a frame now. */
  get canSend(): boolean {
    return (
      this.pendingBytes > 0 &&
      (this.streamState === 'open' || this.streamState === 'remote-fin') &&
      this.credit() > 0 &&
      this.retention.count < this.host.config.maxUnackedFrames
    );
  }

  /**
   * Cut the next DATA frame from the pending bytes, assign its offset (only now, so offsets are
   * gap-free) and keep it for retransmission. Returns null if nothing may be sent.
   */
  takeFrame(): KeptData | null {
    if (!this.canSend) return null;
    const size = Math.min(this.host.config.maxPayload, this.credit(), this.pendingBytes);
    let payload: Buffer;
    const first = this.pending[0]!;
    if (first.length <= size) {
      // Coalesce small chunks up to `size` (one copy), or take the chunk as is.
      if (first.length === size || this.pending.length === 1) {
        payload = first;
        this.pending.shift();
      } else {
        const parts: Buffer[] = [];
        let n = 0;
        while (this.pending.length > 0 && n < size) {
          const c = this.pending[0]!;
          if (n + c.length <= size) {
            parts.push(c);
            n += c.length;
            this.pending.shift();
          } else {
            parts.push(c.subarray(0, size - n));
            this.pending[0] = c.subarray(size - n);
            n = size;
          }
        }
        payload = Buffer.concat(parts, n);
      }
    } else {
      payload = first.subarray(0, size);
      this.pending[0] = first.subarray(size);
    }
    this.pendingBytes -= payload.length;
    // Exactly the payload, even past the budget for a stream's one guaranteed frame (`budgetRoom`).
    this.host.sendBudget.reserve(payload.length, payload.length);
    const offset = this.sentOffset;
    this.sentOffset += payload.length;
    const frame = keptData(this.id, offset, payload);
    this.retention.keep(frame);
    if (this.pendingBytes === 0 && this.pendingCb) {
      const cb = this.pendingCb;
      this.pendingCb = null;
      process.nextTick(cb);
    }
    if (this.pendingBytes === 0) queueMicrotask(() => this.maybeSendFin());
    return frame;
  }

  /** True if the DATA frame at `offset` still needs delivering (not yet acknowledged, stream alive). */
  needsResend(offset: number, length: number): boolean {
    return this.streamState !== 'failed' && offset + length > this.ackedOffset;
  }

  private maybeSendFin(): void {
    if (!this.finRequested || this.finSent || this.pendingBytes > 0) return;
    if (this.streamState !== 'open' && this.streamState !== 'remote-fin') return;
    this.finSent = true;
    this.host.sendControl({ type: FrameType.FIN, stream: this.id, offset: this.sentOffset });
    this.transition(this.streamState === 'open' ? 'local-fin' : 'closed');
    this.maybeFinish();
  }

  /** Call `_final`'s callback once the peer acknowledged every byte; close when both sides are done. */
  private maybeFinish(): void {
    if (!this.finSent || this.ackedOffset < this.sentOffset) return;
    if (this.finalCb) {
      const cb = this.finalCb;
      this.finalCb = null;
      cb();
    }
    if (this.streamState === 'closed') this.release('normal');
  }

  // ---------------------------------------------------------------- receive side (called by the session)

  /** Handle a frame for this stream. Throws ProtocolError/FlowControlError (the session resets the stream). */
  onFrame(frame: Frame): void {
    switch (frame.type) {
      case FrameType.DATA:
        return this.onData(frame.offset, frame.payload);
      case FrameType.ACK:
        return this.onAck(frame);
      case FrameType.FIN:
        return this.onFin(frame.offset);
      case FrameType.RST:
        this.resetByPeer = true;
        if (this.streamState === 'opening') {
          this.fail(new OpenFailedError(frame.reason < 0x10 ? frame.reason : Reason.GENERAL_FAILURE, frame.message || 'reset while opening'));
        } else {
          this.fail(new StreamResetError(frame.reason, frame.message));
        }
        return;
      case FrameType.OPEN_OK:
        // Only an answer to our own OPEN counts: a repeat (re-sent after a tunnel loss) is ignored, and
        // so is one sent to the acceptor, which must not open a stream its application has not accepted.
        if (this.streamState !== 'opening' || !this.openWaiter) return;
        this.peerLimit = Math.max(this.peerLimit, frame.window);
        this.transition('open');
        this.openWaiter.resolve();
        this.openWaiter = null;
        this.host.requestSend(this);
        return;
      case FrameType.OPEN_FAIL:
        if (this.streamState !== 'opening' || !this.openWaiter) return;
        this.resetByPeer = true;
        this.fail(new OpenFailedError(frame.reason, frame.message));
        return;
      default:
        throw new ProtocolError(`unexpected frame type ${frame.type} on stream ${this.id}`);
    }
  }

  /** Destroy with `err`, without sending RST if the peer already reset. */
  fail(err: Error): void {
    if (this.openWaiter) {
      // Nobody holds this stream yet: the error goes to whoever awaits the open, not to an 'error' event.
      this.openWaiter.reject(err);
      this.openWaiter = null;
      this.discard();
      return;
    }
    if (this.streamState === 'opening') {
      // The acceptor's side of an OPEN not answered yet (the server is still dialing): the application
      // has not got the stream, so nobody listens for 'error', and emitting it would crash the process.
      // Tell the peer (unless it reset first) and drop the stream quietly; its 'close' aborts the open.
      if (!this.resetByPeer) {
        const reason = err instanceof GkdError && err.reason !== undefined ? err.reason : Reason.GENERAL_FAILURE;
        this.resetReason = reason;
        this.host.sendControl({ type: FrameType.RST, stream: this.id, reason, message: err.message });
      }
      this.discard();
      return;
    }
    this.destroy(err);
  }

  /** Drop a stream that was never handed out (a failed or refused open): no RST, no 'error' event. */
  discard(): void {
    this.resetByPeer = true;
    this.destroy();
  }

  /** Mark the open as accepted (acceptor side, after OPEN_OK is sent). */
  accepted(): void {
    this.transition('open');
  }

  private onData(offset: number, payload: Buffer): void {
    if (this.streamState === 'failed' || this.streamState === 'closed') return;
    if (this.remoteFinal !== null && offset + payload.length > this.remoteFinal) {
      throw new ProtocolError(`DATA beyond FIN offset ${this.remoteFinal}`);
    }
    const { released, duplicate } = this.reorder.insert(offset, payload);
    if (this.reorder.size > this.epochHeld) this.epochHeld = this.reorder.size;
    // The sender used (nearly) all the credit we gave: it is held by our window, not by its data.
    if (offset + payload.length + this.host.config.maxPayload > this.advertisedLimit) this.peerAtLimit = true;
    for (const buf of released) {
      this.delivered += buf.length;
      this.push(buf);
    }
    if (duplicate) this.duplicateBytes += payload.length;
    if (duplicate || released.length > 0) this.host.scheduleAck(this);
    this.checkRemoteEnd();
  }

  private onFin(offset: number): void {
    if (this.remoteFinal !== null) {
      if (offset !== this.remoteFinal) throw new ProtocolError(`FIN offset changed from ${this.remoteFinal} to ${offset}`);
      this.host.scheduleAck(this);
      return;
    }
    if (offset < this.reorder.next || offset > this.reorder.limit) throw new ProtocolError(`FIN offset ${offset} out of range`);
    this.remoteFinal = offset;
    this.checkRemoteEnd();
  }

  private checkRemoteEnd(): void {
    if (this.remoteEnded || this.remoteFinal === null || this.reorder.next !== this.remoteFinal) return;
    if (this.reorder.size > 0) throw new ProtocolError('DATA beyond FIN');
    this.remoteEnded = true;
    // No more bytes can arrive: the receive window's budget is free for other streams now.
    this.host.recvBudget.release(this.window);
    this.recvReleased = true;
    this.push(null);
    this.host.scheduleAck(this);
    if (this.streamState === 'open') this.transition('remote-fin');
    else if (this.streamState === 'local-fin') {
      this.transition('closed');
      this.maybeFinish();
    }
  }

  private onAck(f: AckFrame): void {
    if (f.ack > this.sentOffset) throw new ProtocolError(`ACK ${f.ack} beyond sent offset ${this.sentOffset}`);
    const limit = f.ack + f.window;
    if (limit > this.peerLimit) this.peerLimit = limit;
    if (f.ack > this.ackedOffset) {
      this.host.sendBudget.release(f.ack - this.ackedOffset);
      this.ackedOffset = f.ack;
      // An ACK within 0.9 of the best RTT after a copy left cannot be for that copy.
      this.lateCopies += this.retention.ackTo(f.ack, (sentAt) => performance.now() - sentAt < 0.9 * this.host.rtt());
      this.maybeFinish();
    }
    // Also when only the send budget stops us: the pump then registers the stream for the budget's
    // release. Waking it only when it can send now would lose it when it ran out of window credit and
    // budget at once: the budget's release would find nobody waiting, and the stream would hang.
    if (this.canSend || this.blockedOnBudget) this.host.requestSend(this);
  }

  /** The ACK to send now: everything below `next`, and the (never shrinking) limit. */
  makeAck(): AckFrame {
    const consumed = this.delivered - this.readableLength;
    const limit = Math.max(this.advertisedLimit, consumed + this.window);
    this.advertisedLimit = limit;
    this.reorder.extendLimit(limit);
    const next = this.reorder.next;
    return { type: FrameType.ACK, stream: this.id, ack: next, window: Math.min(0xffffffff, limit - next) };
  }

  /**
   * Grow (double) the window when, over the window just consumed, the window and not the reader was
   * the limit: the reader consumed a whole window in under two RTTs, or at least half a window sat in
   * the reorder buffer behind a gap. The second rule matters under loss: a segment lost on one tunnel
   * holds back what the other tunnels delivered, each window then takes longer than two RTTs to drain,
   * and without it the window never grows and caps the stream at window / stall time. A slow reader
   * fills the readable buffer in order and leaves the reorder buffer empty, so it does not grow it.
   * Then ACK if the limit moved enough.
   */
  private maybeUpdateWindow(): void {
    if (this.streamState === 'failed' || this.remoteEnded) return;
    const consumed = this.delivered - this.readableLength;
    // Slow start for the window: a sender that reached our limit while our reader keeps up (little
    // unread in order) is held by the window alone; double it, at most once per RTT. This takes a
    // new stream from 256 KiB to 16 MiB in about six RTTs instead of one window's transfer time per
    // doubling (about 10 s at 1–2 MB/s). A slow reader leaves unread bytes and does not grow it.
    if (this.peerAtLimit) {
      this.peerAtLimit = false;
      const now = Date.now();
      if (this.readableLength < this.window / 4 && now - this.lastGrowth >= this.host.rtt()) this.growWindow(now);
    }
    if (consumed - this.epochConsumed >= this.window) {
      const now = Date.now();
      const fast = now - this.epochTime < 2 * this.host.rtt();
      const heldBehindGap = this.epochHeld >= this.window / 2;
      if (fast || heldBehindGap) this.growWindow(now);
      this.epochTime = now;
      this.epochConsumed = consumed;
      this.epochHeld = this.reorder.size;
    }
    if (consumed + this.window - this.advertisedLimit >= this.window / 4) this.host.scheduleAck(this);
  }

  /** Double the receive window (up to `maxWindow`, if the receive budget has room). */
  private growWindow(now: number): void {
    const cfg = this.host.config;
    if (this.window >= cfg.maxWindow) return;
    const grow = Math.min(this.window, cfg.maxWindow - this.window);
    if (!this.host.recvBudget.tryReserve(grow)) return;
    this.window += grow;
    this.lastGrowth = now;
    this.host.windowGrew?.(this.window);
    this.host.scheduleAck(this);
  }

  /** Called after an ACK batch is flushed, so a reader that keeps up keeps the window moving. */
  afterAckFlush(): void {
    this.maybeUpdateWindow();
  }

  // ---------------------------------------------------------------- retransmission and lifecycle

  /** Bytes written by the application and not framed yet. */
  get pendingLength(): number {
    return this.pendingBytes;
  }

  /** True while some sent byte is not acknowledged. */
  get hasUnacked(): boolean {
    return this.retention.count > 0;
  }

  /** True if the stream has bytes to send but no credit (peer's window, our max window or the unacked-frame cap). */
  get heldAtWindow(): boolean {
    return this.pendingBytes > 0 && (this.streamState === 'open' || this.streamState === 'remote-fin') && !this.canSend && !this.blockedOnBudget;
  }

  private release(how: 'normal' | 'reset'): void {
    this.pending = [];
    this.pendingBytes = 0;
    this.retention.clear();
    if (!this.released) {
      this.released = true;
      if (!this.recvReleased) this.host.recvBudget.release(this.window);
      this.recvReleased = true;
      this.host.sendBudget.release(this.sentOffset - this.ackedOffset);
    }
    this.host.streamEnded(this, how);
  }

  /** Fail a stream whose open was never answered or whose session is gone. */
  abort(err: GkdError): void {
    this.resetByPeer = true; // nobody to tell
    this.fail(err);
  }

  stats(): StreamStats {
    return {
      id: this.id,
      state: this.streamState,
      destination: this.destination,
      bytesIn: this.delivered,
      bytesOut: this.sentOffset,
      window: this.window,
      unacked: this.sentOffset - this.ackedOffset,
      reorderDepth: this.reorder.depth,
      buffered: this.reorder.size + this.readableLength,
      pending: this.pendingBytes + this.writableLength,
      resent: this.resent,
      resentBytes: this.resentBytes,
      duplicateBytes: this.duplicateBytes,
    };
  }

  /** Reset this stream because the peer broke flow control or the protocol. */
  protocolReset(err: FlowControlError | ProtocolError): void {
    this.fail(err);
  }
}
