/**
 * Test data for the reliability suite: a deterministic pseudo-random pattern both ends can produce
 * (so a destination can send bytes the receiver knows the hash of), per-stream stamped payloads (so a
 * block delivered to the wrong stream changes the hash), and a small seeded PRNG for the fuzzers.
 */
import { createHash } from 'node:crypto';

/** One MiB of deterministic pseudo-random bytes: sha256 in counter mode over a fixed label. */
export const PATTERN: Buffer = (() => {
  const out = Buffer.allocUnsafe(1024 * 1024);
  for (let i = 0; i * 32 < out.length; i++) {
    createHash('sha256').update(`gkd-reliability-${i}`).digest().copy(out, i * 32);
  }
  return out;
})();

/** Block size of `streamChunks`, in bytes. */
export const BLOCK = 16 * 1024;

/**
 * The `index`-th block of stream `stream`'s payload: a slice of PATTERN at a stream-dependent
 * offset, stamped with (stream, index) in its first 8 bytes. A fresh Buffer each call.
 */
export function streamBlock(stream: number, index: number, length = BLOCK): Buffer {
  const off = ((stream * 7919 + index * 104_729) * 64) % (PATTERN.length - length);
  const b = Buffer.from(PATTERN.subarray(off, off + length));
  if (length >= 8) {
    b.writeUInt32BE(stream >>> 0, 0);
    b.writeUInt32BE(index >>> 0, 4);
  }
  return b;
}

/** The first `size` bytes of the pattern repeated: what the `source` destination sends. */
export function patternBytes(size: number, from = 0): Buffer {
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  let p = from % PATTERN.length;
  while (o < size) {
    const n = Math.min(size - o, PATTERN.length - p);
    PATTERN.copy(out, o, p, p + n);
    o += n;
    p = 0;
  }
  return out;
}

const patternHashes = new Map<number, string>();

/** sha256 (hex) of `patternBytes(size)`, cached. */
export function patternSha256(size: number): string {
  let h = patternHashes.get(size);
  if (h === undefined) {
    const hash = createHash('sha256');
    let left = size;
    while (left > 0) {
      const n = Math.min(left, PATTERN.length);
      hash.update(PATTERN.subarray(0, n));
      left -= n;
    }
    h = hash.digest('hex');
    patternHashes.set(size, h);
  }
  return h;
}

/** sha256 (hex) of a buffer. */
export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A small, fast, seeded PRNG (sfc32). Reproducible: the fuzzers print their seed, and the same seed
 * replays the same frames (GKD_FUZZ_SEED).
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.u32();
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 0x1_0000_0000 ? Math.floor((this.u32() / 0x1_0000_0000) * n) : Math.floor(this.float() * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** A float in [0, 1). */
  float(): number {
    return (this.u32() * 0x20_0000 + (this.u32() >>> 11)) / 2 ** 53;
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** Fill `buf` (or a new buffer of `n` bytes) with random bytes. */
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE(this.u32(), i);
    for (; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

/** Percentile (0–100) of `values` (sorted copy, nearest rank). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((x, y) => x - y);
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[rank]!;
}

/** Bytes as MiB with one decimal. */
export function mib(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(1);
}
