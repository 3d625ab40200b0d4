import { FrameType, isAssociationFrame, isStreamFrame, type AckFrame, type Frame } from '@gkd/protocol';
import { overdueFrames } from './hol.js';

/**
 * Retention: the frames this end keeps because the peer may not have them yet, and what becomes of
 * them when a tunnel dies (failover, PROTOCOL.md §6) or a receiver waits for one (head-of-line
 * re-send, hol.ts). One type, `KeptFrame`, describes a kept frame wherever it is kept:
 *
 * - a stream keeps each DATA frame it sent (`StreamRetention`) until the peer's cumulative ACK covers it;
 *   the head-of-line re-send looks there for the frame the receiver is blocked on;
 * - a tunnel keeps every frame it sent except PING/PONG (`TunnelRetention`) until a PONG proves the
 *   peer processed it;
 * - when a tunnel dies, its unconfirmed frames go into the session's `FailoverQueue`, and from there
 *   onto the other tunnels. The receiver drops duplicates; OPEN, FIN, ACK and RST are idempotent.
 *
 * A DATA frame is one object shared by all three (the stream's record, which also says where and when
 * its latest copy went): nothing is copied, and its payload is freed once the stream's ACK and every
 * tunnel's PONG have let go of it. None of this is counted against the receive or send budgets: the
 * payloads are the stream's unacknowledged bytes, already reserved from the send budget (LIMITS.md).
 */

/** A DATA frame a stream sent and the peer has not acknowledged yet, with where its latest copy went. */
export interface KeptData {
  readonly kind: 'data';
  readonly stream: number;
  readonly offset: number;
  readonly payload: Buffer;
  /** Id of the tunnel that carried the latest scheduled copy (0 until sent). A failover re-send does not change it. */
  tunnel: number;
  /** When the latest scheduled copy was written (performance.now(), ms). */
  sentAt: number;
  /** When its ACK is expected at the latest, barring loss (performance.now(), ms). */
  due: number;
  /** The tunnel's byte position just after the latest scheduled copy: once the tunnel's PONGs confirm it, the peer has the frame. */
  end: number;
  /** Copies scheduled: 1, plus one per head-of-line re-send (failover re-sends are not counted). */
  copies: number;
}

/** A control frame (anything but DATA and ACK) a tunnel sent, kept to be sent again as it was. */
export interface KeptControl {
  readonly kind: 'control';
  readonly frame: Frame;
}

/** An ACK a tunnel sent: only the stream is kept, since after a loss a fresh ACK replaces it. */
export interface KeptAck {
  readonly kind: 'ack';
  readonly stream: number;
}

/** A frame kept because the peer may not have processed it (see the module comment). */
export type KeptFrame = KeptData | KeptControl | KeptAck;

/** A frame waiting in a `FailoverQueue` (ACKs there are whole frames: `KeptControl`). */
export type ResendFrame = KeptData | KeptControl;

/** A stream's DATA frame as it is cut, before any tunnel has carried it. */
export function keptData(stream: number, offset: number, payload: Buffer): KeptData {
  return { kind: 'data', stream, offset, payload, tunnel: 0, sentAt: 0, due: 0, end: 0, copies: 1 };
}

/** The kept form of a control frame a tunnel sends: an ACK keeps only its stream. */
export function keptControl(frame: Frame): KeptControl | KeptAck {
  return frame.type === FrameType.ACK ? { kind: 'ack', stream: frame.stream } : { kind: 'control', frame };
}

/** Put in the slots of acknowledged frames, so their payloads are freed now, not at the next compaction. */
const ACKED: KeptData = keptData(0, 0, Buffer.alloc(0));

/** Put in the slots of confirmed frames, for the same reason. */
const CONFIRMED: KeptAck = { kind: 'ack', stream: 0 };

/** A stream's slots are compacted once more than this many acknowledged ones lead the list (and they are the majority). */
const STREAM_COMPACT = 256;

/** A tunnel's slots are compacted once more than this many confirmed ones lead the list (and they are the majority). */
const TUNNEL_COMPACT = 1024;

/**
 * The DATA frames one stream sent and the peer has not acknowledged, oldest first. The first one
 * starts at the peer's cumulative ACK: it is the frame the receiver is waiting for.
 */
export class StreamRetention {
  private frames: KeptData[] = [];
  private head = 0;

  /** Frames kept (sent, not acknowledged). */
  get count(): number {
    return this.frames.length - this.head;
  }

  /** Keep a frame just cut (offsets ascend, gap-free). */
  keep(frame: KeptData): void {
    this.frames.push(frame);
  }

  /**
   * The peer's cumulative ACK reached `ack` (a stream offset, in bytes): let go of every frame that ends
   * at or below it. Returns how many of them were head-of-line copies whose latest copy went out too
   * recently for that copy's ACK (`tooRecent(sentAt)`, asked only for copied frames): the first
   * transmission (or TCP's own repair of it) got there first and the copy was not needed.
   */
  ackTo(ack: number, tooRecent?: (sentAt: number) => boolean): number {
    let h = this.head;
    let late = 0;
    while (h < this.frames.length) {
      const f = this.frames[h]!;
      if (f.offset + f.payload.length > ack) break;
      if (f.copies > 1 && tooRecent?.(f.sentAt)) late++;
      this.frames[h] = ACKED;
      h++;
    }
    this.head = h;
    if (h > STREAM_COMPACT && h * 2 > this.frames.length) {
      this.frames = this.frames.slice(h);
      this.head = 0;
    }
    return late;
  }

  /** The kept frames, oldest first, up to `max` of them (no copy of the list). */
  *oldest(max = Infinity): Generator<KeptData> {
    const end = Math.min(this.frames.length, this.head + max);
    for (let i = this.head; i < end; i++) yield this.frames[i]!;
  }

  /**
   * The frames to copy onto other tunnels because the receiver is blocked on the first one (hol.ts,
   * `overdueFrames`), looking at the oldest `scan` frames; oldest first, at most `max`, empty if the
   * head is not overdue. The callbacks are `overdueFrames`'s.
   */
  overdue(
    scan: number,
    now: number,
    grace: (tunnel: number) => number,
    live: (tunnel: number) => boolean,
    max: number,
    confirmed: (tunnel: number) => number,
    movingSince: (tunnel: number, sentAt: number) => boolean,
  ): KeptData[] {
    return overdueFrames(this.oldest(scan), now, grace, live, max, confirmed, movingSince);
  }

  /** The stream ended: keep nothing (tunnels and a failover queue may still hold the frames; they check the stream first). */
  clear(): void {
    this.frames = [];
    this.head = 0;
  }
}

/**
 * The frames one tunnel sent that no PONG has confirmed yet, oldest first. Each is tagged with the id
 * of the next PING the tunnel would send when it was written: a PONG for that id or a later one
 * proves the peer processed it.
 */
export class TunnelRetention {
  private frames: KeptFrame[] = [];
  private tags: number[] = [];
  private head = 0;
  private counted = 0;

  /** Frames kept (ACKs included). */
  get length(): number {
    return this.frames.length - this.head;
  }

  /** DATA and control frames kept, ACKs aside (they are re-generated per stream): what `maxUnconfirmedFrames` limits. */
  get frameCount(): number {
    return this.counted;
  }

  /** Keep `frame`, sent before PING `tag`. */
  keep(frame: KeptFrame, tag: number): void {
    this.frames.push(frame);
    this.tags.push(tag);
    if (frame.kind !== 'ack') this.counted++;
  }

  /** A PONG answered PING `id`: everything tagged with an id ≤ `id` was sent before that PING, so the peer processed it. */
  confirm(id: number): void {
    let h = this.head;
    while (h < this.frames.length && this.tags[h]! <= id) {
      if (this.frames[h]!.kind !== 'ack') this.counted--;
      // Free the confirmed frame (and a DATA payload) now: compaction waits for TUNNEL_COMPACT of them.
      this.frames[h] = CONFIRMED;
      h++;
    }
    this.head = h;
    if (h > TUNNEL_COMPACT && h * 2 > this.frames.length) {
      this.frames = this.frames.slice(h);
      this.tags = this.tags.slice(h);
      this.head = 0;
    }
  }

  /** The tunnel died: hand over the unconfirmed frames, oldest first, and keep nothing. */
  takeUnconfirmed(): KeptFrame[] {
    const out = this.frames.slice(this.head);
    this.frames = [];
    this.tags = [];
    this.head = 0;
    this.counted = 0;
    return out;
  }
}

/** Most control frames about streams no longer live that a failover queue keeps to re-send. */
export const STALE_RESEND_MEMORY = 4096;

/** What a `FailoverQueue` asks its session about streams. */
export interface FailoverStreams {
  /** True while stream `id` is live (not ended, not forgotten). */
  live(id: number): boolean;
  /** True if stream `id` is live and still needs the bytes [`offset`, `offset` + `length`) delivered. */
  needsResend(id: number, offset: number, length: number): boolean;
  /** Send live stream `id`'s ACK again soon (a fresh one: the lost one may be stale). */
  scheduleAck(id: number): void;
  /** The ACK to repeat for stream `id` if it ended normally (its final ACK), or null (reset, or forgotten). */
  finalAck(id: number): AckFrame | null;
}

/** Re-sent control frames are deduplicated by this key: one per frame type and stream (or association). */
function frameKey(frame: Frame): string {
  if (isAssociationFrame(frame)) return `${frame.type}:a${frame.association}`;
  return isStreamFrame(frame) ? `${frame.type}:${frame.stream}` : `${frame.type}`;
}

/**
 * A session's frames waiting to go out again on its live tunnels after a tunnel died (PROTOCOL.md
 * §6), oldest first: DATA its stream has not had acknowledged, every control frame once per (type,
 * stream), and a fresh ACK instead of an old one.
 */
export class FailoverQueue {
  private queue: ResendFrame[] = [];

  constructor(private readonly streams: FailoverStreams) {}

  /** Frames waiting. */
  get length(): number {
    return this.queue.length;
  }

  /**
   * Queue a dead tunnel's unconfirmed frames (from `TunnelRetention.takeUnconfirmed`). Control frames
   * are queued once per (type, stream): repeats say nothing new. Those about streams no longer live
   * (answers to a peer's stray frames, resets) are kept up to STALE_RESEND_MEMORY: a peer that provokes
   * answers without confirming them must not fill this session's memory. ACKs are not queued: a live
   * stream sends a fresh one, a stream that ended normally repeats its final one.
   */
  add(unconfirmed: readonly KeptFrame[]): void {
    const acks = new Set<number>();
    const queued = new Set<string>();
    let stale = 0;
    for (const e of this.queue) {
      if (e.kind !== 'control') continue;
      queued.add(frameKey(e.frame));
      if (this.isStale(e.frame)) stale++;
    }
    for (const e of unconfirmed) {
      if (e.kind === 'data') {
        if (this.streams.needsResend(e.stream, e.offset, e.payload.length)) this.queue.push(e);
      } else if (e.kind === 'ack') {
        acks.add(e.stream);
      } else {
        const key = frameKey(e.frame);
        if (queued.has(key)) continue;
        if (this.isStale(e.frame) && ++stale > STALE_RESEND_MEMORY) continue;
        queued.add(key);
        this.queue.push(e);
      }
    }
    for (const id of acks) {
      if (this.streams.live(id)) this.streams.scheduleAck(id);
      else {
        const ack = this.streams.finalAck(id);
        if (ack && ++stale <= STALE_RESEND_MEMORY) this.queue.push({ kind: 'control', frame: ack });
      }
    }
  }

  /** The oldest frame waiting, or undefined. */
  peek(): ResendFrame | undefined {
    return this.queue[0];
  }

  /** Drop the oldest frame (it was sent, or is no longer needed). */
  shift(): void {
    this.queue.shift();
  }

  /** Forget every frame (the session is gone). */
  clear(): void {
    this.queue = [];
  }

  /** A frame about a stream that is no longer live (an OPEN counts as live: its stream may still be opening). */
  private isStale(frame: Frame): boolean {
    return isStreamFrame(frame) && frame.type !== FrameType.OPEN && !this.streams.live(frame.stream);
  }
}
