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
  // Held out-of-order segments, sorted by start offset and never overlapping, so `heldBytes` counts
  // each stream byte at most once and stays within [next, limit). Parallel arrays: a binary search
  // finds the neighbours of a new segment; at most `maxSegments` entries, so splicing is cheap.
  private readonly starts: number[] = [];
  private readonly bufs: Buffer[] = [];
  private nextOffset = 0;
  private heldBytes = 0;
  private limitOffset: number;
  readonly maxSegments: number;

  constructor(options: ReorderOptions) {
    if (!Number.isSafeInteger(options.window) || options.window < 1) throw new RangeError('window must be a positive integer');
    const maxSegments = options.maxSegments ?? 1024;
    if (!Number.isSafeInteger(maxSegments) || maxSegments < 1) throw new RangeError('maxSegments must be a positive integer');
    this.limitOffset = options.window;
    this.maxSegments = maxSegments;
  }

  /** Offset of the next byte to release: every byte below it has been released. */
  get next(): number {
    return this.nextOffset;
  }

  /** Exclusive upper bound of acceptable offsets (absolute). */
  get limit(): number {
    return this.limitOffset;
  }

  /** Bytes held out of order, each stream byte counted once. Never exceeds `limit - next`. */
  get size(): number {
    return this.heldBytes;
  }

  /** Number of out-of-order segments held. */
  get depth(): number {
    return this.starts.length;
  }

  /** Raise the limit (the receiver granted more credit). A lower value is ignored: windows never shrink. */
  extendLimit(limit: number): void {
    if (limit > this.limitOffset) this.limitOffset = limit;
  }

  /**
   * Insert the segment that starts at stream byte `offset`. Throws FlowControlError if any byte lies
   * at or beyond the limit or too many segments would be held, ProtocolError for an empty segment.
   * The buffer's state is unchanged when it throws.
   */
  insert(offset: number, data: Buffer): InsertResult {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`invalid offset ${offset}`);
    const len = data.length;
    if (len === 0) throw new ProtocolError('empty DATA segment');
    let start = offset;
    let end = offset + len;
    if (end > this.limitOffset) {
      throw new FlowControlError(`segment [${offset}, ${end}) beyond the window limit ${this.limitOffset}`);
    }
    if (end <= this.nextOffset) return { released: [], duplicate: true };
    if (start <= this.nextOffset) {
      const released = [start < this.nextOffset ? data.subarray(this.nextOffset - start) : data];
      this.nextOffset = end;
      this.drain(released);
      return { released, duplicate: false };
    }

    // Out of order: keep only the bytes no held segment has. A held segment that covers the new
    // start or end trims it; held segments inside it are replaced by it (so the count grows by at most one).
    const starts = this.starts;
    const bufs = this.bufs;
    let i = this.firstEndingAfter(start);
    if (i < starts.length && starts[i]! <= start) {
      const heldEnd = starts[i]! + bufs[i]!.length;
      if (heldEnd >= end) return { released: [], duplicate: true };
      start = heldEnd;
      i++;
    }
    let j = i;
    let replacedBytes = 0;
    while (j < starts.length && starts[j]! < end) {
      const heldEnd = starts[j]! + bufs[j]!.length;
      if (heldEnd > end) {
        end = starts[j]!;
        break;
      }
      replacedBytes += bufs[j]!.length;
      j++;
    }
    // Nothing new: the bytes between the trimmed ends are all in held segments already.
    if (start >= end || end - start === replacedBytes) return { released: [], duplicate: true };
    if (starts.length - (j - i) + 1 > this.maxSegments) {
      throw new FlowControlError(`more than ${this.maxSegments} out-of-order segments`);
    }
    let seg = data.subarray(start - offset, end - offset);
    // Do not let a small view pin a large receive slab: copy it.
    if (seg.buffer.byteLength > seg.length * 2 + 4096) seg = Buffer.from(seg);
    starts.splice(i, j - i, start);
    bufs.splice(i, j - i, seg);
    this.heldBytes += seg.length - replacedBytes;
    return { released: [], duplicate: false };
  }

  /** Index of the first held segment that ends after `offset` (segments are sorted and disjoint). */
  private firstEndingAfter(offset: number): number {
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! + this.bufs[mid]!.length > offset) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Move every held segment that has become contiguous into `out`, trimming what was already released. */
  private drain(out: Buffer[]): void {
    let k = 0;
    while (k < this.starts.length) {
      const start = this.starts[k]!;
      if (start > this.nextOffset) break;
      const seg = this.bufs[k]!;
      k++;
      this.heldBytes -= seg.length;
      const end = start + seg.length;
      if (end <= this.nextOffset) continue; // wholly covered by what was just released
      out.push(start === this.nextOffset ? seg : seg.subarray(this.nextOffset - start));
      this.nextOffset = end;
    }
    if (k > 0) {
      this.starts.splice(0, k);
      this.bufs.splice(0, k);
    }
  }
}
