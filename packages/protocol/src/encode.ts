import { addressLength, writeAddress } from './address.js';
import {
  AuthMode,
  FrameType,
  HEADER_LENGTH,
  MAX_MESSAGE_LENGTH,
  MAX_OFFSET,
  MAX_STREAM_ID,
  MAX_USER_LENGTH,
  NONCE_LENGTH,
  PROOF_LENGTH,
  PROTOCOL_VERSION,
  SESSION_ID_LENGTH,
  MAX_DATAGRAM_PAYLOAD,
  isAssociationType,
  isStreamType,
  type Frame,
} from './frame.js';

/**
 * Write the 12-byte header at the start of `buf`. The stream id is checked, never masked: a stream
 * frame needs an id in [1, 2^32 − 1] (an id wrapped to another stream's would corrupt that stream),
 * every other frame writes 0.
 */
function writeHeader(buf: Buffer, type: number, stream: number, bodyLength: number): void {
  if (isStreamType(type) || isAssociationType(type)) {
    if (!Number.isInteger(stream) || stream < 1 || stream > MAX_STREAM_ID) {
      throw new RangeError(`${isStreamType(type) ? 'stream' : 'association'} id must be an integer in [1, 2^32-1], got ${stream}`);
    }
  } else {
    stream = 0;
  }
  buf[0] = PROTOCOL_VERSION;
  buf[1] = type;
  buf.writeUInt16BE(0, 2); // flags: reserved, always 0 in version 1
  buf.writeUInt32BE(stream, 4);
  buf.writeUInt32BE(bodyLength, 8);
}

/** Write a u64 (a safe integer) big-endian at `offset`. */
function writeU64(buf: Buffer, offset: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > MAX_OFFSET) throw new RangeError(`u64 out of range: ${value}`);
  buf.writeUInt32BE(Math.floor(value / 0x1_0000_0000), offset);
  buf.writeUInt32BE(value >>> 0, offset + 4);
}

/** UTF-8 bytes of a message, cut at MAX_MESSAGE_LENGTH bytes on a character boundary. */
function messageBytes(message: string): Buffer {
  let b = Buffer.from(message, 'utf8');
  if (b.length <= MAX_MESSAGE_LENGTH) return b;
  b = b.subarray(0, MAX_MESSAGE_LENGTH);
  // Drop a trailing partial UTF-8 sequence.
  let end = b.length;
  while (end > 0 && (b[end - 1]! & 0xc0) === 0x80) end--;
  if (end > 0 && b[end - 1]! >= 0xc0) end--;
  const lead = b[end] ?? 0;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return b.length - end >= need ? b : b.subarray(0, end);
}

function checkLength(name: string, buf: Buffer, len: number): void {
  if (buf.length !== len) throw new RangeError(`${name} must be ${len} bytes, got ${buf.length}`);
}

/**
 * The 20 bytes that precede a DATA payload: header plus the 8-byte offset. Writing this and then the
 * payload puts a DATA frame on the wire without copying the payload.
 */
export function encodeDataHeader(stream: number, offset: number, payloadLength: number): Buffer {
  // An empty DATA is a protocol error at the receiver, so never produce one.
  if (!Number.isInteger(payloadLength) || payloadLength < 1) throw new RangeError(`DATA payload must be at least 1 byte, got ${payloadLength}`);
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + 8);
  writeHeader(buf, FrameType.DATA, stream, 8 + payloadLength);
  writeU64(buf, HEADER_LENGTH, offset);
  return buf;
}

/**
 * Encode one frame into a new Buffer (header and body). Throws RangeError on out-of-range fields
 * (stream id, offsets, windows, ids, reason and flag octets, lengths), so it never writes a frame the
 * receiver would read differently or refuse. Messages longer than 255 UTF-8 bytes are cut on a
 * character boundary.
 */
export function encode(frame: Frame): Buffer {
  switch (frame.type) {
    case FrameType.DATA: {
      const head = encodeDataHeader(frame.stream, frame.offset, frame.payload.length);
      return Buffer.concat([head, frame.payload], head.length + frame.payload.length);
    }
    case FrameType.ACK: {
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + 12);
      writeHeader(buf, frame.type, frame.stream, 12);
      writeU64(buf, HEADER_LENGTH, frame.ack);
      buf.writeUInt32BE(frame.window, HEADER_LENGTH + 8);
      return buf;
    }
    case FrameType.OPEN: {
      const body = 4 + addressLength(frame.destination);
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + body);
      writeHeader(buf, frame.type, frame.stream, body);
      buf.writeUInt32BE(frame.window, HEADER_LENGTH);
      writeAddress(buf, HEADER_LENGTH + 4, frame.destination);
      return buf;
    }
    case FrameType.OPEN_OK: {
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + 4);
      writeHeader(buf, frame.type, frame.stream, 4);
      buf.writeUInt32BE(frame.window, HEADER_LENGTH);
      return buf;
    }
    case FrameType.OPEN_FAIL:
    case FrameType.RST: {
      const msg = messageBytes(frame.message);
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + 1 + msg.length);
      writeHeader(buf, frame.type, frame.stream, 1 + msg.length);
      buf.writeUInt8(frame.reason, HEADER_LENGTH);
      msg.copy(buf, HEADER_LENGTH + 1);
      return buf;
    }
    case FrameType.DATAGRAM: {
      // A datagram always names a host: the "no destination" type has no meaning here.
      if (!frame.address) throw new RangeError('DATAGRAM needs an address');
      if (frame.payload.length > MAX_DATAGRAM_PAYLOAD) throw new RangeError(`DATAGRAM payload over ${MAX_DATAGRAM_PAYLOAD} bytes`);
      const body = addressLength(frame.address) + frame.payload.length;
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + body);
      writeHeader(buf, frame.type, frame.association, body);
      const o = writeAddress(buf, HEADER_LENGTH, frame.address);
      frame.payload.copy(buf, o);
      return buf;
    }
    case FrameType.DATAGRAM_CLOSE: {
      const msg = messageBytes(frame.message);
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + 1 + msg.length);
      writeHeader(buf, frame.type, frame.association, 1 + msg.length);
      buf.writeUInt8(frame.reason, HEADER_LENGTH);
      msg.copy(buf, HEADER_LENGTH + 1);
      return buf;
    }
    case FrameType.GOAWAY:
    case FrameType.REJECT: {
      const msg = messageBytes(frame.message);
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + 1 + msg.length);
      writeHeader(buf, frame.type, 0, 1 + msg.length);
      buf.writeUInt8(frame.reason, HEADER_LENGTH);
      msg.copy(buf, HEADER_LENGTH + 1);
      return buf;
    }
    case FrameType.FIN: {
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + 8);
      writeHeader(buf, frame.type, frame.stream, 8);
      writeU64(buf, HEADER_LENGTH, frame.offset);
      return buf;
    }
    case FrameType.PING:
    case FrameType.PONG: {
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + 4);
      writeHeader(buf, frame.type, 0, 4);
      buf.writeUInt32BE(frame.id, HEADER_LENGTH);
      return buf;
    }
    case FrameType.CHALLENGE: {
      checkLength('nonce', frame.nonce, NONCE_LENGTH);
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + NONCE_LENGTH + 1);
      writeHeader(buf, frame.type, 0, NONCE_LENGTH + 1);
      frame.nonce.copy(buf, HEADER_LENGTH);
      buf.writeUInt8(frame.flags, HEADER_LENGTH + NONCE_LENGTH);
      return buf;
    }
    case FrameType.AUTH: {
      checkLength('sessionId', frame.sessionId, SESSION_ID_LENGTH);
      checkLength('clientNonce', frame.clientNonce, NONCE_LENGTH);
      checkLength('proof', frame.proof, PROOF_LENGTH);
      const user = Buffer.from(frame.user, 'utf8');
      if (user.length > MAX_USER_LENGTH) throw new RangeError(`user name longer than ${MAX_USER_LENGTH} bytes`);
      if (frame.mode !== AuthMode.NEW && frame.mode !== AuthMode.JOIN) throw new RangeError(`unknown AUTH mode ${frame.mode}`);
      const body = 1 + SESSION_ID_LENGTH + 2 + NONCE_LENGTH + 1 + user.length + PROOF_LENGTH;
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + body);
      writeHeader(buf, frame.type, 0, body);
      let o = HEADER_LENGTH;
      buf[o++] = frame.mode;
      o += frame.sessionId.copy(buf, o);
      buf.writeUInt16BE(frame.tunnelIndex, o);
      o += 2;
      o += frame.clientNonce.copy(buf, o);
      buf[o++] = user.length;
      o += user.copy(buf, o);
      frame.proof.copy(buf, o);
      return buf;
    }
    case FrameType.WELCOME: {
      checkLength('proof', frame.proof, PROOF_LENGTH);
      const maxTunnels = frame.maxTunnels ?? 0xffff;
      if (!Number.isInteger(maxTunnels) || maxTunnels < 1 || maxTunnels > 0xffff)
        throw new RangeError(`maxTunnels must be an integer in 1…65535, got ${maxTunnels}`);
      const buf = Buffer.allocUnsafe(HEADER_LENGTH + PROOF_LENGTH + 10);
      writeHeader(buf, frame.type, 0, PROOF_LENGTH + 10);
      frame.proof.copy(buf, HEADER_LENGTH);
      buf.writeUInt32BE(frame.maxBody, HEADER_LENGTH + PROOF_LENGTH);
      buf.writeUInt32BE(frame.maxStreams, HEADER_LENGTH + PROOF_LENGTH + 4);
      buf.writeUInt16BE(maxTunnels, HEADER_LENGTH + PROOF_LENGTH + 8);
      return buf;
    }
    default:
      throw new RangeError(`cannot encode frame type ${String((frame as { type: unknown }).type)}`);
  }
}
