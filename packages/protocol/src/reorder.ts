import { FlowControlError, ProtocolError } from './errors.js';

/** Options of a ReorderBuffer. */
export interface ReorderOptions {
  /** Initial receive window, in bytes: the buffer accepts bytes below `next + window` only. */
  window: number;
  /** Most out-of-order segments held at once; one more is a flow-control violation. Default 1024. */
  maxSegments?: number;
}

/** What `insert` did with a segment. */
export interface InsertResult {
  /** Contiguous bytes now releasable in stream order (possibly empty). */
  released: Buffer[];
  /** True if the segment carried no new byte (a duplicate or already delivered): the receiver should re-ACK. */
  duplicate: boolean;
}

/**
 * Per-stream reorder buffer keyed by byte offset. Accepts segments in any order, releases contiguous
 * bytes in order exactly once, drops duplicates and already-delivered bytes, and refuses any byte at or
 * beyond its limit, so it never holds more than the window. Pure: no I/O, no timers.
 */
export class ReorderBuffer {
  private readonly segments = new Map<number, Buffer>();
  private nextOffset = 0;
  private heldBytes = 0;
  private limitOffset: number;
  readonly maxSegments: number;

  constructor(options: ReorderOptions) {
    if (!Number.isSafeInteger(options.window) || options.window < 1) throw new RangeError('window must be a positive integer');
    this.limitOffset = options.window;
    this.maxSegments = options.maxSegments ?? 1024;
  }

  /** Offset of the next byte to release: every byte below it has been released. */
  get next(): number {
    return this.nextOffset;
  }

  /** Exclusive upper bound of acceptable offsets (absolute). */
  get limit(): number {
    return this.limitOffset;
  }

  /** Bytes held out of order. Never exceeds `limit - next`. */
  get size(): number {
    return this.heldBytes;
  }

  /** Number of out-of-order segments held. */
  get depth(): number {
    return this.segments.size;
  }

  /** Raise the limit (the receiver granted more credit). A lower value is ignored: windows never shrink. */
  extendLimit(limit: number): void {
    if (limit > this.limitOffset) this.limitOffset = limit;
  }

  /**
   * Insert the segment that starts at stream byte `offset`. Throws FlowControlError if any byte lies
   * at or beyond the limit or too many segments are held, ProtocolError for an empty segment.
   */
  insert(offset: number, data: Buffer): InsertResult {
    const len = data.length;
    if (len === 0) throw new ProtocolError('empty DATA segment');
    let start = offset;
    const end = offset + len;
    if (end > this.limitOffset) {
      throw new FlowControlError(`segment [${offset}, ${end}) beyond the window limit ${this.limitOffset}`);
    }
    if (end <= this.nextOffset) return { released: [], duplicate: true };
    let seg = data;
    if (start < this.nextOffset) {
      seg = seg.subarray(this.nextOffset - start);
      start = this.nextOffset;
    }
    if (start === this.nextOffset) {
      const released = [seg];
      this.nextOffset = start + seg.length;
      this.drain(released);
      return { released, duplicate: false };
    }
    const existing = this.segments.get(start);
    if (existing && existing.length >= seg.length) return { released: [], duplicate: true };
    if (!existing && this.segments.size >= this.maxSegments) {
      throw new FlowControlError(`more than ${this.maxSegments} out-of-order segments`);
    }
    // Do not let a small view pin a large receive slab: copy it.
    if (seg.buffer.byteLength > seg.length * 2 + 4096) seg = Buffer.from(seg);
    if (existing) this.heldBytes -= existing.length;
    this.segments.set(start, seg);
    this.heldBytes += seg.length;
    return { released: [], duplicate: false };
  }

  /** Move every segment that has become contiguous into `out`. */
  private drain(out: Buffer[]): void {
    for (;;) {
      const seg = this.segments.get(this.nextOffset);
      if (seg) {
        this.segments.delete(this.nextOffset);
        this.heldBytes -= seg.length;
        out.push(seg);
        this.nextOffset += seg.length;
        continue;
      }
      if (this.segments.size === 0) return;
      // A peer may send overlapping segments of different sizes. Trim or drop any segment that starts
      // below `next`; rare, and bounded by maxSegments.
      let changed = false;
      for (const [start, s] of this.segments) {
        if (start >= this.nextOffset) continue;
        this.segments.delete(start);
        this.heldBytes -= s.length;
        const end = start + s.length;
        if (end > this.nextOffset) {
          const rest = s.subarray(this.nextOffset - start);
          const other = this.segments.get(this.nextOffset);
          if (!other || other.length < rest.length) {
            if (other) this.heldBytes -= other.length;
            this.segments.set(this.nextOffset, rest);
            this.heldBytes += rest.length;
          }
        }
        changed = true;
      }
      if (!changed) return;
    }
  }
}
