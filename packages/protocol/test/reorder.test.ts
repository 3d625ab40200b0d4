import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, FlowControlError, ProtocolError, Reason, ReorderBuffer } from '../src/index.js';
import { Rng } from '@gkd/test-support';

/** Byte `i` of the test stream. */
const byteAt = (i: number) => (i * 131 + (i >>> 8) * 7 + 3) & 0xff;
const streamBytes = (from: number, to: number) => Buffer.from(Array.from({ length: to - from }, (_, k) => byteAt(from + k)));

/** Cut [0, length) at the given points into segments [start, end). */
function segmentsOf(length: number, cuts: number[]): Array<[number, number]> {
  const points = [...new Set([0, ...cuts.map((c) => c % length), length])].sort((a, b) => a - b);
  const out: Array<[number, number]> = [];
  for (let i = 0; i + 1 < points.length; i++) if (points[i]! < points[i + 1]!) out.push([points[i]!, points[i + 1]!]);
  return out;
}

function state(rb: ReorderBuffer) {
  return { next: rb.next, limit: rb.limit, size: rb.size, depth: rb.depth };
}

describe('ReorderBuffer', () => {
  it('any permutation, with duplicates and a second overlapping segmentation, delivers the bytes exactly once in order', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 4000 }),
        fc.array(fc.nat(), { maxLength: 60 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        fc.integer(),
        (length, cuts, otherCuts, dupPicks, seed) => {
          const first = segmentsOf(length, cuts);
          const second = otherCuts.length > 0 ? segmentsOf(length, otherCuts) : [];
          const all = [...first, ...second];
          const deliveries = new Rng(seed).shuffle([...all, ...dupPicks.map((k) => all[k % all.length]!)]);
          const rb = new ReorderBuffer({ window: length, maxSegments: 1_000_000 });
          const out: Buffer[] = [];
          for (const [s, e] of deliveries) {
            out.push(...rb.insert(s, streamBytes(s, e)).released);
            expect(rb.size).toBeLessThanOrEqual(rb.limit - rb.next);
          }
          expect(Buffer.concat(out).equals(streamBytes(0, length))).toBe(true);
          expect(state(rb)).toEqual({ next: length, limit: length, size: 0, depth: 0 });
        },
      ),
      { numRuns: 400, seed: 0x0dd },
    );
  });

  it('matches a byte-level model: released bytes, next, size, duplicate flag, limit refusals, segment cap', () => {
    const op = fc.oneof(
      { weight: 8, arbitrary: fc.record({ kind: fc.constant('insert' as const), offset: fc.nat(300), len: fc.integer({ min: 1, max: 60 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('extend' as const), to: fc.nat(400) }) },
    );
    const seen = { capHits: 0, limitHits: 0, duplicates: 0, trimmed: 0 };
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200 }), fc.integer({ min: 1, max: 12 }), fc.array(op, { maxLength: 120 }), (window, maxSegments, ops) => {
        const rb = new ReorderBuffer({ window, maxSegments });
        const have = new Uint8Array(1000);
        let next = 0;
        let limit = window;
        for (const o of ops) {
          if (o.kind === 'extend') {
            rb.extendLimit(o.to);
            limit = Math.max(limit, o.to);
            expect(rb.limit).toBe(limit);
            continue;
          }
          const { offset, len } = o;
          const before = state(rb);
          const data = streamBytes(offset, offset + len);
          if (offset + len > limit) {
            expect(() => rb.insert(offset, data)).toThrow(FlowControlError);
            expect(state(rb)).toEqual(before);
            seen.limitHits++;
            continue;
          }
          let result: ReturnType<ReorderBuffer['insert']>;
          try {
            result = rb.insert(offset, data);
          } catch (err) {
            // The only other refusal is the segment cap, and only when it is full.
            expect(err).toBeInstanceOf(FlowControlError);
            expect(String(err)).toMatch(/out-of-order segments/);
            expect(rb.depth).toBe(maxSegments);
            expect(state(rb)).toEqual(before);
            seen.capHits++;
            continue;
          }
          let fresh = 0;
          for (let i = offset; i < offset + len; i++) if (!have[i]) fresh++;
          if (fresh === 0) seen.duplicates++;
          else if (fresh < len) seen.trimmed++;
          for (let i = offset; i < offset + len; i++) have[i] = 1;
          const oldNext = next;
          while (have[next]) next++;
          expect(result.duplicate).toBe(fresh === 0);
          expect(Buffer.concat(result.released).equals(streamBytes(oldNext, next))).toBe(true);
          for (const r of result.released) expect(r.length).toBeGreaterThan(0);
          let held = 0;
          for (let i = next; i < have.length; i++) held += have[i]!;
          expect(state(rb)).toEqual({ next, limit, size: held, depth: rb.depth });
          expect(rb.size).toBeLessThanOrEqual(rb.limit - rb.next);
          expect(rb.depth).toBeLessThanOrEqual(maxSegments);
          expect(rb.depth).toBeLessThanOrEqual(rb.size);
        }
      }),
      { numRuns: 1500, seed: 0x5e9 },
    );
    // Every branch was exercised many times.
    for (const [what, n] of Object.entries(seen)) expect(n, what).toBeGreaterThan(100);
  });

  it('refuses a segment with any byte at or beyond the limit, typed, and without changing state', () => {
    const rb = new ReorderBuffer({ window: 100 });
    rb.insert(50, streamBytes(50, 60));
    const before = state(rb);
    for (const [off, len] of [
      [0, 101],
      [99, 2],
      [100, 1],
      [1000, 1],
      [95, 10],
    ] as const) {
      let err: unknown;
      try {
        rb.insert(off, Buffer.alloc(len));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(FlowControlError);
      expect(err).toMatchObject({ code: ErrorCode.FLOW_CONTROL, reason: Reason.FLOW_CONTROL, name: 'FlowControlError' });
      expect(state(rb)).toEqual(before);
    }
    // The last byte below the limit is fine; a raised limit admits more.
    expect(rb.insert(99, streamBytes(99, 100)).duplicate).toBe(false);
    rb.extendLimit(200);
    expect(rb.insert(100, streamBytes(100, 200)).duplicate).toBe(false);
    expect(rb.size).toBe(10 + 1 + 100);
  });

  it('data already delivered is a duplicate', () => {
    const rb = new ReorderBuffer({ window: 10 });
    expect(rb.insert(0, streamBytes(0, 10)).released.map(String)).toEqual([String(streamBytes(0, 10))]);
    expect(rb.insert(0, streamBytes(0, 10))).toEqual({ released: [], duplicate: true });
    expect(rb.insert(5, streamBytes(5, 10))).toEqual({ released: [], duplicate: true });
  });

  it('caps the number of held segments; one more distinct segment is a flow-control error', () => {
    const rb = new ReorderBuffer({ window: 10_000, maxSegments: 4 });
    for (const off of [10, 20, 30, 40]) rb.insert(off, streamBytes(off, off + 5));
    expect(rb.depth).toBe(4);
    const before = state(rb);
    expect(() => rb.insert(50, streamBytes(50, 55))).toThrow(/more than 4 out-of-order segments/);
    expect(() => rb.insert(2, streamBytes(2, 3))).toThrow(FlowControlError);
    expect(state(rb)).toEqual(before);
    // A duplicate adds no segment; nor does a segment that covers held ones (it replaces them).
    expect(rb.insert(10, streamBytes(10, 15)).duplicate).toBe(true);
    expect(rb.insert(5, streamBytes(5, 17)).duplicate).toBe(false); // replaces [10, 15)
    expect(state(rb)).toMatchObject({ depth: 4, size: 12 + 15 });
    // A partial overlap whose new bytes would need a fifth segment is refused like any other.
    expect(() => rb.insert(22, streamBytes(22, 28))).toThrow(FlowControlError);
    // In-order data drains everything.
    expect(Buffer.concat(rb.insert(0, streamBytes(0, 50)).released).equals(streamBytes(0, 50))).toBe(true);
    expect(state(rb)).toMatchObject({ depth: 0, size: 0, next: 50 });
  });

  it('default cap is 1024 segments', () => {
    const rb = new ReorderBuffer({ window: 1 << 20 });
    expect(rb.maxSegments).toBe(1024);
    for (let i = 0; i < 1024; i++) rb.insert(2 * i + 1, Buffer.from([byteAt(2 * i + 1)])); // odd offsets 1 … 2047
    expect(rb.depth).toBe(1024);
    expect(() => rb.insert(5000, Buffer.from([1]))).toThrow(FlowControlError);
    // Filling the holes releases all of it.
    const out: Buffer[] = [];
    for (let i = 0; i <= 1024; i++) out.push(...rb.insert(2 * i, streamBytes(2 * i, 2 * i + 1)).released);
    expect(Buffer.concat(out).equals(streamBytes(0, 2049))).toBe(true);
    expect(rb.depth).toBe(0);
  });

  it('many overlapping segments at different offsets hold each byte once (size never exceeds limit - next)', () => {
    // A peer re-sending the same bytes with shifted boundaries must not multiply what is held.
    const window = 1000;
    const rb = new ReorderBuffer({ window, maxSegments: 1024 });
    for (let off = 10; off <= 900; off++) {
      rb.insert(off, streamBytes(off, off + 100));
      expect(rb.size).toBeLessThanOrEqual(rb.limit - rb.next);
    }
    expect(rb.size).toBe(990);
    const { released } = rb.insert(0, streamBytes(0, 10));
    expect(Buffer.concat(released).equals(streamBytes(0, 1000))).toBe(true);
    expect(state(rb)).toEqual({ next: 1000, limit: 1000, size: 0, depth: 0 });
  });

  describe('partial overlaps are trimmed', () => {
    it('a new segment overlapping the end of a held one keeps only its new bytes', () => {
      const rb = new ReorderBuffer({ window: 100 });
      rb.insert(10, streamBytes(10, 20));
      expect(rb.insert(15, streamBytes(15, 25)).duplicate).toBe(false);
      expect(state(rb)).toMatchObject({ size: 15 });
      expect(rb.insert(12, streamBytes(12, 25)).duplicate).toBe(true);
      expect(rb.insert(8, streamBytes(8, 12)).duplicate).toBe(false);
      expect(state(rb)).toMatchObject({ size: 17 });
    });

    it('a new segment covering held ones replaces them', () => {
      const rb = new ReorderBuffer({ window: 100 });
      rb.insert(10, streamBytes(10, 20));
      rb.insert(30, streamBytes(30, 40));
      expect(rb.depth).toBe(2);
      expect(rb.insert(5, streamBytes(5, 50)).duplicate).toBe(false);
      expect(state(rb)).toMatchObject({ size: 45, depth: 1 });
      expect(Buffer.concat(rb.insert(0, streamBytes(0, 5)).released).equals(streamBytes(0, 50))).toBe(true);
    });

    it('a segment exactly tiled by held ones is a duplicate', () => {
      const rb = new ReorderBuffer({ window: 100 });
      rb.insert(10, streamBytes(10, 20));
      rb.insert(20, streamBytes(20, 30));
      expect(rb.insert(10, streamBytes(10, 30))).toEqual({ released: [], duplicate: true });
      expect(rb.insert(15, streamBytes(15, 30))).toEqual({ released: [], duplicate: true });
      expect(state(rb)).toMatchObject({ size: 20, depth: 2 });
    });

    it('a segment filling the gap between two held ones', () => {
      const rb = new ReorderBuffer({ window: 100 });
      rb.insert(10, streamBytes(10, 20));
      rb.insert(30, streamBytes(30, 40));
      expect(rb.insert(15, streamBytes(15, 35)).duplicate).toBe(false);
      expect(state(rb)).toMatchObject({ size: 30, depth: 3 });
    });

    it('in-order data that overlaps held segments releases each byte once', () => {
      const rb = new ReorderBuffer({ window: 100 });
      rb.insert(10, streamBytes(10, 20));
      rb.insert(25, streamBytes(25, 30));
      rb.insert(40, streamBytes(40, 50));
      const { released, duplicate } = rb.insert(0, streamBytes(0, 27));
      expect(duplicate).toBe(false);
      expect(Buffer.concat(released).equals(streamBytes(0, 30))).toBe(true);
      expect(state(rb)).toMatchObject({ next: 30, size: 10, depth: 1 });
    });

    it('a segment starting below next releases only its new tail', () => {
      const rb = new ReorderBuffer({ window: 100 });
      rb.insert(0, streamBytes(0, 10));
      const { released, duplicate } = rb.insert(5, streamBytes(5, 15));
      expect(duplicate).toBe(false);
      expect(Buffer.concat(released).equals(streamBytes(10, 15))).toBe(true);
      expect(rb.next).toBe(15);
    });
  });

  it('extendLimit never shrinks the limit', () => {
    const rb = new ReorderBuffer({ window: 100 });
    rb.extendLimit(50);
    expect(rb.limit).toBe(100);
    rb.extendLimit(Number.NaN);
    expect(rb.limit).toBe(100);
    rb.extendLimit(300);
    expect(rb.limit).toBe(300);
    rb.extendLimit(299);
    expect(rb.limit).toBe(300);
    fc.assert(
      fc.property(fc.array(fc.nat()), (limits) => {
        const b = new ReorderBuffer({ window: 1 });
        let max = 1;
        for (const l of limits) {
          b.extendLimit(l);
          max = Math.max(max, l);
          expect(b.limit).toBe(max);
        }
      }),
    );
  });

  it('copies a small view held out of order, so the receive slab is not pinned', () => {
    const slab = Buffer.alloc(64 * 1024);
    streamBytes(100, 200).copy(slab, 1000);
    const rb = new ReorderBuffer({ window: 1 << 20 });
    rb.insert(100, slab.subarray(1000, 1100));
    slab.fill(0); // the slab is reused for the next read
    const { released } = rb.insert(0, streamBytes(0, 100));
    expect(Buffer.concat(released).equals(streamBytes(0, 200))).toBe(true);
    expect(released[1]!.buffer).not.toBe(slab.buffer);
  });

  it('keeps a view that fills most of its buffer (no needless copy), and never copies in-order data', () => {
    const big = streamBytes(100, 100 + 32 * 1024);
    const rb = new ReorderBuffer({ window: 1 << 20 });
    rb.insert(100, big);
    const first = streamBytes(0, 100);
    const { released } = rb.insert(0, first);
    expect(released[0]!.buffer).toBe(first.buffer);
    expect(released[1]!.buffer).toBe(big.buffer);
  });

  it('rejects an empty segment, a bad offset, and bad options', () => {
    const rb = new ReorderBuffer({ window: 10 });
    expect(() => rb.insert(0, Buffer.alloc(0))).toThrow(ProtocolError);
    for (const off of [-1, 0.5, Number.NaN, 2 ** 53]) expect(() => rb.insert(off, Buffer.alloc(1))).toThrow(RangeError);
    for (const window of [0, -1, 1.5, Number.NaN]) expect(() => new ReorderBuffer({ window })).toThrow(RangeError);
    for (const maxSegments of [0, -1, 1.5]) expect(() => new ReorderBuffer({ window: 10, maxSegments })).toThrow(RangeError);
  });

  it('is reasonably fast with a deep buffer (1024 segments, random order)', () => {
    const rng = new Rng(7);
    const n = 1024;
    const seg = 1024;
    const order = rng.shuffle(Array.from({ length: n }, (_, i) => i));
    const rb = new ReorderBuffer({ window: n * seg });
    const payload = Buffer.alloc(seg, 1);
    let released = 0;
    const t0 = performance.now();
    for (let round = 0; round < 20; round++) {
      const base = round * n * seg;
      rb.extendLimit(base + n * seg);
      for (const i of order) for (const r of rb.insert(base + i * seg, payload).released) released += r.length;
    }
    expect(released).toBe(20 * n * seg);
    expect(performance.now() - t0).toBeLessThan(2000);
  });
});
