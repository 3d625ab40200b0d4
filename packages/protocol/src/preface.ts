import { randomBytes } from 'node:crypto';
import { ErrorCode, GkdError } from './errors.js';
import { Reason } from './reason.js';

/**
 * The routing preface (PROTOCOL.md §4.1): the first bytes a client sends on every tunnel, in
 * cleartext, before TLS and before the server's CHALLENGE. A layer-4 load balancer (or the
 * `gkd server --workers` master) routes on the token at a fixed offset, so every tunnel of a session
 * reaches the process that holds it.
 *
 * ```
 * bytes 0-2  magic "GKD" (0x47 0x4b 0x44)
 * byte  3    protocol version (0x02)
 * bytes 4-19 routing token (16 random bytes, one per session)
 * ```
 */

/** The three magic bytes "GKD" that open a preface. */
export const PREFACE_MAGIC = Buffer.from('GKD', 'latin1');
/** The protocol version the preface announces (2: the first version with a preface). */
export const PREFACE_VERSION = 0x02;
/** Routing token length, in bytes. */
export const ROUTING_TOKEN_LENGTH = 16;
/** Offset of the routing token in the preface, in bytes (what a balancer's `req.payload(4,16)` reads). */
export const ROUTING_TOKEN_OFFSET = 4;
/** Whole preface length, in bytes. */
export const PREFACE_LENGTH = ROUTING_TOKEN_OFFSET + ROUTING_TOKEN_LENGTH;

/** The first bytes of a tunnel were not a routing preface (an old client, TLS without a preface, junk). */
export class BadPrefaceError extends GkdError {
  constructor(message: string) {
    super(ErrorCode.BAD_PREFACE, message, Reason.BAD_VERSION);
  }
}

/** A fresh routing token: random, so tokens of two sessions cannot be linked (never derived from a key or user). */
export function newRoutingToken(): Buffer {
  return randomBytes(ROUTING_TOKEN_LENGTH);
}

/** The 20 preface bytes for `token`. Throws RangeError (a caller bug) for a token of the wrong length. */
export function encodePreface(token: Buffer): Buffer {
  if (token.length !== ROUTING_TOKEN_LENGTH) throw new RangeError(`routing token must be ${ROUTING_TOKEN_LENGTH} bytes, got ${token.length}`);
  const b = Buffer.allocUnsafe(PREFACE_LENGTH);
  PREFACE_MAGIC.copy(b, 0);
  b[3] = PREFACE_VERSION;
  token.copy(b, ROUTING_TOKEN_OFFSET);
  return b;
}

/** What a complete preface gave: the token, and the bytes that followed it in the same chunks (the start of TLS or AUTH). */
export interface PrefaceResult {
  token: Buffer;
  rest: Buffer;
}

/**
 * Reads a preface from chunks of any size. Each byte of the fixed part is checked as it arrives, so
 * junk (a version-1 AUTH, a TLS ClientHello) is refused at its first wrong byte; it never holds more
 * than `PREFACE_LENGTH` bytes of its own. After a throw it is poisoned: every later `push` rethrows.
 */
export class PrefaceDecoder {
  private readonly buf = Buffer.alloc(PREFACE_LENGTH);
  private have = 0;
  private error: BadPrefaceError | null = null;
  private done = false;

  /** Bytes of the preface received so far (0…20). */
  get bufferedBytes(): number {
    return this.have;
  }

  /** Feed a chunk; returns the result once all 20 bytes are in (then the decoder is finished), else null. */
  push(chunk: Buffer): PrefaceResult | null {
    if (this.error) throw this.error;
    if (this.done) throw new RangeError('preface already decoded');
    let i = 0;
    while (i < chunk.length && this.have < PREFACE_LENGTH) {
      const byte = chunk[i]!;
      const at = this.have;
      if (at < 3 && byte !== PREFACE_MAGIC[at]) {
        this.error = new BadPrefaceError(
          `expected the routing preface "GKD" (protocol version 2), got byte 0x${byte.toString(16).padStart(2, '0')} at offset ${at}${describe(at, byte)}`,
        );
        throw this.error;
      }
      if (at === 3 && byte !== PREFACE_VERSION) {
        this.error = new BadPrefaceError(`unsupported protocol version 0x${byte.toString(16).padStart(2, '0')} in the routing preface (this end speaks 0x02)`);
        throw this.error;
      }
      this.buf[at] = byte;
      this.have++;
      i++;
    }
    if (this.have < PREFACE_LENGTH) return null;
    this.done = true;
    return { token: Buffer.from(this.buf.subarray(ROUTING_TOKEN_OFFSET)), rest: chunk.subarray(i) };
  }
}

/** A hint for the two likely mistakes: a version-1 client and a TLS client that sent no preface. */
function describe(at: number, byte: number): string {
  if (at !== 0) return '';
  if (byte === 0x01) return ' (a version-1 client that sends no preface?)';
  if (byte === 0x16) return ' (a TLS ClientHello without a preface: a version-1 client?)';
  return '';
}

/** Decode a whole preface from one buffer (`rest`: the bytes after it). Throws BadPrefaceError; RangeError when shorter than 20 bytes. */
export function decodePreface(buf: Buffer): PrefaceResult {
  const r = new PrefaceDecoder().push(buf);
  if (!r) throw new RangeError(`a preface is ${PREFACE_LENGTH} bytes, got ${buf.length}`);
  return r;
}
