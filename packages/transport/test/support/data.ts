import { createHash, randomBytes } from 'node:crypto';
import { Readable, type Duplex } from 'node:stream';

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
