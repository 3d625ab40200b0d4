/**
 * Test data for the reliability suite: a deterministic pseudo-random pattern both ends can produce
 * (so a destination can send bytes the receiver knows the hash of), per-stream stamped payloads (so a
 * block delivered to the wrong stream changes the hash), readable sources of stamped random bytes
 * and their hashes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable, type Duplex } from 'node:stream';

/** One MiB of deterministic pseudo-random bytes: sha256 in counter mode over a fixed label. */
export const PATTERN: Buffer = (() => {
  const out = Buffer.allocUnsafe(1024 * 1024);
  for (let i = 0; i * 32 < out.length; i++) {
    createHash('sha256')
      .update(`gkd-reliability-${i}`)
      .digest()
      .copy(out, i * 32);
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

const BASE = randomBytes(4 * 1024 * 1024);

/** A readable of `total` pseudo-random bytes in `chunk`-sized pieces; each piece is stamped with its index so misplaced pieces change the hash. */
export function source(total: number, chunk = 64 * 1024): Readable {
  let sent = 0;
  let n = 0;
  return new Readable({
    highWaterMark: 4 * chunk,
    read() {
      while (sent < total) {
        const len = Math.min(chunk, total - sent);
        const off = (n * 7919 * 64) % (BASE.length - len);
        const buf = Buffer.from(BASE.subarray(off, off + len));
        if (len >= 4) buf.writeUInt32BE(n >>> 0, 0);
        n++;
        sent += len;
        if (!this.push(buf)) return;
      }
      this.push(null);
    },
  });
}

/** The sha256 (hex) and length of `total` bytes from `source(total, chunk)`, computed without a transport. */
export async function expectedHash(total: number, chunk = 64 * 1024): Promise<{ hash: string; bytes: number }> {
  return hashOf(source(total, chunk));
}

/** Read `r` to the end; its sha256 (hex) and length. */
export function hashOf(r: Readable | Duplex): Promise<{ hash: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    let bytes = 0;
    r.on('data', (d: Buffer) => {
      h.update(d);
      bytes += d.length;
    });
    r.once('end', () => resolve({ hash: h.digest('hex'), bytes }));
    r.once('error', reject);
  });
}

/**
 * Send `size` random bytes through an echoing stream in 1 MiB writes (with backpressure), calling
 * `between(offset)` after each write, then end it; resolves once the echo has ended, with the number
 * of bytes echoed and whether their SHA-256 matches what was sent.
 */
export async function echoRandom(
  conn: Duplex,
  size: number,
  between: (offset: number) => Promise<void> | void = () => {},
): Promise<{ bytes: number; intact: boolean }> {
  const data = randomBytes(size);
  const got = createHash('sha256');
  let bytes = 0;
  conn.on('data', (b: Buffer) => {
    got.update(b);
    bytes += b.length;
  });
  const done = new Promise<void>((resolve, reject) => {
    conn.on('end', resolve);
    conn.on('error', reject);
  });
  for (let off = 0; off < data.length; off += 1 << 20) {
    if (!conn.write(data.subarray(off, off + (1 << 20)))) await new Promise((r) => conn.once('drain', r));
    await between(off);
  }
  conn.end();
  await done;
  return { bytes, intact: got.digest('hex') === createHash('sha256').update(data).digest('hex') };
}
