import { isUtf8 } from 'node:buffer';
import { readAddress } from './address.js';
import { BadVersionError, FrameTooLargeError, ProtocolError, UnknownTypeError } from './errors.js';
import {
  AuthMode,
  DEFAULT_MAX_BODY,
  FrameType,
  HEADER_LENGTH,
  MAX_MESSAGE_LENGTH,
  NONCE_LENGTH,
  PROOF_LENGTH,
  PROTOCOL_VERSION,
  SESSION_ID_LENGTH,
  MAX_DATAGRAM_PAYLOAD,
  isAssociationType,
  isKnownType,
  isStreamType,
  type Frame,
  type WelcomeFrame,
} from './frame.js';

/** Options of a Decoder. */
export interface DecoderOptions {
  /** Largest frame body accepted, in bytes; a larger declared length is refused before any of it is buffered. Default 65 544. */
  maxBody?: number;
}

/** A parsed frame header. */
export interface FrameHeader {
  version: number;
  type: number;
  flags: number;
  stream: number;
  length: number;
}

function readU64(buf: Buffer, offset: number): number {
  const hi = buf.readUInt32BE(offset);
  const lo = buf.readUInt32BE(offset + 4);
  if (hi > 0x1f_ffff) throw new ProtocolError('u64 value above 2^53 - 1');
  return hi * 0x1_0000_0000 + lo;
}

/** A human-readable message: decoded leniently (invalid UTF-8 becomes U+FFFD), it identifies nothing. */
function readMessage(body: Buffer, from: number): string {
  const raw = body.subarray(from);
  if (raw.length > MAX_MESSAGE_LENGTH) throw new ProtocolError(`message longer than ${MAX_MESSAGE_LENGTH} bytes`);
  return raw.toString('utf8');
}

function expectLength(type: string, body: Buffer, len: number): void {
  if (body.length !== len) throw new ProtocolError(`${type}: body must be ${len} bytes, got ${body.length}`);
}

/**
 * Validate a header: version, type, stream-id rule and declared length. Throws the typed error a
 * receiver reports before closing the tunnel.
 */
export function checkHeader(h: FrameHeader, maxBody: number): void {
  if (h.version !== PROTOCOL_VERSION) throw new BadVersionError(h.version);
  if (!isKnownType(h.type)) throw new UnknownTypeError(h.type);
  if (h.length > maxBody) throw new FrameTooLargeError(h.length, maxBody);
  if (isStreamType(h.type) || isAssociationType(h.type) ? h.stream === 0 : h.stream !== 0) {
    throw new ProtocolError(`frame type 0x${h.type.toString(16)} with stream id ${h.stream}`);
  }
}

/** Parse the body of a frame whose header passed `checkHeader`. `body` may be a view into a larger buffer. */
export function decodeBody(h: FrameHeader, body: Buffer): Frame {
  const stream = h.stream;
  switch (h.type) {
    case FrameType.DATA:
      if (body.length < 9) throw new ProtocolError('DATA: needs an offset and at least one payload byte');
      return { type: FrameType.DATA, stream, offset: readU64(body, 0), payload: body.subarray(8) };
    case FrameType.ACK:
      expectLength('ACK', body, 12);
      return { type: FrameType.ACK, stream, ack: readU64(body, 0), window: body.readUInt32BE(8) };
    case FrameType.OPEN: {
      if (body.length < 5) throw new ProtocolError('OPEN: truncated');
      const { address, end } = readAddress(body, 4);
      if (end !== body.length) throw new ProtocolError('OPEN: trailing bytes');
      return { type: FrameType.OPEN, stream, window: body.readUInt32BE(0), destination: address };
    }
    case FrameType.OPEN_OK:
      expectLength('OPEN_OK', body, 4);
      return { type: FrameType.OPEN_OK, stream, window: body.readUInt32BE(0) };
    case FrameType.OPEN_FAIL:
    case FrameType.RST:
    case FrameType.GOAWAY:
    case FrameType.REJECT: {
      if (body.length < 1) throw new ProtocolError('missing reason octet');
      const reason = body[0]!;
      const message = readMessage(body, 1);
      if (h.type === FrameType.GOAWAY) return { type: FrameType.GOAWAY, reason, message };
      if (h.type === FrameType.REJECT) return { type: FrameType.REJECT, reason, message };
      if (h.type === FrameType.RST) return { type: FrameType.RST, stream, reason, message };
      return { type: FrameType.OPEN_FAIL, stream, reason, message };
    }
    case FrameType.DATAGRAM: {
      const { address, end } = readAddress(body, 0);
      if (!address) throw new ProtocolError('DATAGRAM: no address');
      const payload = body.subarray(end);
      if (payload.length > MAX_DATAGRAM_PAYLOAD) throw new ProtocolError(`DATAGRAM: payload over ${MAX_DATAGRAM_PAYLOAD} bytes`);
      return { type: FrameType.DATAGRAM, association: stream, address, payload };
    }
    case FrameType.DATAGRAM_CLOSE: {
      if (body.length < 1) throw new ProtocolError('missing reason octet');
      return { type: FrameType.DATAGRAM_CLOSE, association: stream, reason: body[0]!, message: readMessage(body, 1) };
    }
    case FrameType.FIN:
      expectLength('FIN', body, 8);
      return { type: FrameType.FIN, stream, offset: readU64(body, 0) };
    case FrameType.PING:
    case FrameType.PONG:
      expectLength('PING/PONG', body, 4);
      return h.type === FrameType.PING ? { type: FrameType.PING, id: body.readUInt32BE(0) } : { type: FrameType.PONG, id: body.readUInt32BE(0) };
    case FrameType.CHALLENGE:
      expectLength('CHALLENGE', body, NONCE_LENGTH + 1);
      return { type: FrameType.CHALLENGE, nonce: Buffer.from(body.subarray(0, NONCE_LENGTH)), flags: body[NONCE_LENGTH]! };
    case FrameType.AUTH: {
      const fixed = 1 + SESSION_ID_LENGTH + 2 + NONCE_LENGTH + 1;
      if (body.length < fixed + PROOF_LENGTH) throw new ProtocolError('AUTH: truncated');
      let o = 0;
      const mode = body[o++]!;
      if (mode !== AuthMode.NEW && mode !== AuthMode.JOIN) throw new ProtocolError(`AUTH: unknown mode ${mode}`);
      const sessionId = Buffer.from(body.subarray(o, o + SESSION_ID_LENGTH));
      o += SESSION_ID_LENGTH;
      const tunnelIndex = body.readUInt16BE(o);
      o += 2;
      const clientNonce = Buffer.from(body.subarray(o, o + NONCE_LENGTH));
      o += NONCE_LENGTH;
      const userLen = body[o++]!;
      if (body.length !== fixed + userLen + PROOF_LENGTH) throw new ProtocolError('AUTH: length does not match user name length');
      const userBytes = body.subarray(o, o + userLen);
      // A user name identifies a key: decode it exactly or not at all.
      if (!isUtf8(userBytes)) throw new ProtocolError('AUTH: user name is not valid UTF-8');
      const user = userBytes.toString('utf8');
      o += userLen;
      const proof = Buffer.from(body.subarray(o, o + PROOF_LENGTH));
      return { type: FrameType.AUTH, mode, sessionId, tunnelIndex, clientNonce, user, proof };
    }
    case FrameType.WELCOME: {
      // 42 bytes since the tunnel cap was added; 40 from a server that predates it (no cap announced).
      if (body.length !== PROOF_LENGTH + 8) expectLength('WELCOME', body, PROOF_LENGTH + 10);
      const w: WelcomeFrame = {
        type: FrameType.WELCOME,
        proof: Buffer.from(body.subarray(0, PROOF_LENGTH)),
        maxBody: body.readUInt32BE(PROOF_LENGTH),
        maxStreams: body.readUInt32BE(PROOF_LENGTH + 4),
      };
      if (body.length === PROOF_LENGTH + 10) {
        w.maxTunnels = body.readUInt16BE(PROOF_LENGTH + 8);
        if (w.maxTunnels === 0) throw new ProtocolError('WELCOME: max tunnels is 0');
      }
      return w;
    }
    default:
      throw new UnknownTypeError(h.type);
  }
}

/**
 * A streaming frame decoder: push chunks of any size, get whole frames back in order.
 * It never buffers more than one header plus `maxBody` bytes, and never allocates from a declared
 * length before that length has been checked. After it throws, it is poisoned: the tunnel must close.
 */
export class Decoder {
  readonly maxBody: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: FrameHeader | null = null;
  private failed: Error | null = null;

  constructor(options: DecoderOptions = {}) {
    this.maxBody = options.maxBody ?? DEFAULT_MAX_BODY;
    if (!Number.isInteger(this.maxBody) || this.maxBody < 64 || this.maxBody > 0xffffffff) {
      throw new RangeError(`maxBody must be an integer in [64, 2^32-1], got ${this.maxBody}`);
    }
  }

  /** Bytes held while waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Feed a chunk; returns the frames it completes (possibly none). Throws a GkdError on bad input. */
  push(chunk: Uint8Array): Frame[] {
    if (this.failed) throw this.failed;
    const frames: Frame[] = [];
    if (chunk.length === 0) return frames;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.chunks.push(buf);
    this.buffered += buf.length;
    try {
      for (;;) {
        if (!this.header) {
          if (this.buffered < HEADER_LENGTH) break;
          const hb = this.take(HEADER_LENGTH);
          const h: FrameHeader = {
            version: hb[0]!,
            type: hb[1]!,
            flags: hb.readUInt16BE(2),
            stream: hb.readUInt32BE(4),
            length: hb.readUInt32BE(8),
          };
          checkHeader(h, this.maxBody);
          this.header = h;
        }
        if (this.buffered < this.header.length) break;
        const body = this.take(this.header.length);
        const h = this.header;
        this.header = null;
        frames.push(decodeBody(h, body));
      }
    } catch (err) {
      this.failed = err as Error;
      this.chunks = [];
      this.buffered = 0;
      throw err;
    }
    return frames;
  }

  /** Remove and return the next `n` buffered bytes (n ≤ buffered); a view when they lie in one chunk. */
  private take(n: number): Buffer {
    this.buffered -= n;
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let o = 0;
    while (o < n) {
      const c = this.chunks[0]!;
      const want = n - o;
      if (c.length <= want) {
        c.copy(out, o);
        o += c.length;
        this.chunks.shift();
      } else {
        c.copy(out, o, 0, want);
        this.chunks[0] = c.subarray(want);
        o += want;
      }
    }
    return out;
  }
}

/** Decode a buffer that holds exactly whole frames (for tests and fixtures). Throws on a trailing partial frame. */
export function decodeAll(buf: Uint8Array, options?: DecoderOptions): Frame[] {
  const d = new Decoder(options);
  const frames = d.push(buf);
  if (d.bufferedBytes !== 0) throw new ProtocolError(`trailing ${d.bufferedBytes} bytes of a partial frame`);
  return frames;
}
