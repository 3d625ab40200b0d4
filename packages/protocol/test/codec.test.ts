import { describe, expect, it } from 'vitest';
import {
  AuthMode,
  DEFAULT_MAX_BODY,
  FrameType,
  HEADER_LENGTH,
  MAX_MESSAGE_LENGTH,
  MAX_OFFSET,
  MAX_STREAM_ID,
  MAX_WINDOW,
  Reason,
  decodeAll,
  encode,
  encodeDataHeader,
  frameTypeName,
  isKnownType,
  isAssociationFrame,
  isAssociationType,
  isStreamFrame,
  isStreamType,
  MAX_DATAGRAM_PAYLOAD,
  type Address,
  type Frame,
} from '../src/index.js';

const STREAMS = [1, MAX_STREAM_ID];
const OFFSETS = [0, 2 ** 32 - 1, 2 ** 32, MAX_OFFSET];
const WINDOWS = [0, MAX_WINDOW];
const U32 = [0, 1, MAX_WINDOW];
const REASONS = [0x00, Reason.CONNECTION_REFUSED, Reason.CANCELLED, 0xff];

const bytes = (n: number, fill = 0xab) => Buffer.alloc(n, fill);
const ascii = (n: number) => 'm'.repeat(n);

/** Deep equality, with large payloads compared as bytes (vitest's deep equality walks them byte by byte). */
function expectSameFrame(actual: Frame, expected: Frame): void {
  if ((actual.type === FrameType.DATA && expected.type === FrameType.DATA) || (actual.type === FrameType.DATAGRAM && expected.type === FrameType.DATAGRAM)) {
    expect(Buffer.isBuffer(actual.payload)).toBe(true);
    expect(actual.payload.equals(expected.payload)).toBe(true);
    expect({ ...actual, payload: null }).toEqual({ ...expected, payload: null });
  } else {
    expect(actual).toEqual(expected);
  }
}

/** Encode, check the header, decode, and check the frame came back identical. */
function roundTrip(frame: Frame, maxBody = DEFAULT_MAX_BODY): Buffer {
  const wire = encode(frame);
  expect(wire[0]).toBe(1);
  expect(wire[1]).toBe(frame.type);
  expect(wire.readUInt16BE(2)).toBe(0); // flags
  expect(wire.readUInt32BE(4)).toBe(isStreamFrame(frame) ? frame.stream : isAssociationFrame(frame) ? frame.association : 0);
  expect(wire.readUInt32BE(8)).toBe(wire.length - HEADER_LENGTH);
  const frames = decodeAll(wire, { maxBody });
  expect(frames).toHaveLength(1);
  expectSameFrame(frames[0]!, frame);
  expect(encode(frames[0]!).equals(wire)).toBe(true);
  return wire;
}

const addresses: Array<[string, Address | null, number]> = [
  ['library mode', null, 1],
  ['IPv4 0.0.0.0:0', { type: 'ipv4', host: '0.0.0.0', port: 0 }, 7],
  ['IPv4 255.255.255.255:65535', { type: 'ipv4', host: '255.255.255.255', port: 65535 }, 7],
  ['IPv6 ::', { type: 'ipv6', host: '::', port: 1 }, 19],
  ['IPv6 ::1', { type: 'ipv6', host: '::1', port: 443 }, 19],
  ['IPv6 1::', { type: 'ipv6', host: '1::', port: 443 }, 19],
  ['IPv6 2001:db8:102:304::1', { type: 'ipv6', host: '2001:db8:102:304::1', port: 8080 }, 19],
  ['IPv6 all ones', { type: 'ipv6', host: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 }, 19],
  ['IPv6 no zero run', { type: 'ipv6', host: '1:2:3:4:5:6:7:8', port: 80 }, 19],
  ['IPv6 single zero group', { type: 'ipv6', host: '1:0:2:3:4:5:6:7', port: 80 }, 19],
  ['IPv6 IPv4-mapped', { type: 'ipv6', host: '::ffff:1.2.3.4', port: 80 }, 19],
  ['domain, 1 byte', { type: 'domain', host: 'a', port: 80 }, 5],
  ['domain, 255 bytes', { type: 'domain', host: 'd'.repeat(255), port: 65535 }, 259],
  ['domain, UTF-8 255 bytes', { type: 'domain', host: 'é'.repeat(127) + 'x', port: 443 }, 259],
  ['domain that looks like an IP', { type: 'domain', host: '1.2.3.4', port: 80 }, 11],
];

describe('round trip of every frame type at edge values', () => {
  it('CHALLENGE', () => {
    for (const flags of [0, 1, 0xff]) {
      const wire = roundTrip({ type: FrameType.CHALLENGE, nonce: bytes(32, flags), flags });
      expect(wire.length).toBe(12 + 33);
    }
  });

  it('AUTH: both modes, tunnel index 0 and 65535, user names of 0 and 255 bytes (ASCII and multibyte)', () => {
    const users = ['', 'u', ascii(255), 'é'.repeat(127) + 'x', '€'.repeat(85), '😀'.repeat(63) + 'abc'];
    for (const mode of [AuthMode.NEW, AuthMode.JOIN])
      for (const tunnelIndex of [0, 65535])
        for (const user of users) {
          const wire = roundTrip({
            type: FrameType.AUTH,
            mode,
            sessionId: bytes(16, 1),
            tunnelIndex,
            clientNonce: bytes(32, 2),
            user,
            proof: bytes(32, 3),
          });
          expect(wire.length).toBe(12 + 1 + 16 + 2 + 32 + 1 + Buffer.byteLength(user) + 32);
        }
  });

  it('WELCOME: max body and max streams 0 and 2^32-1, max tunnels 1 and 65535', () => {
    for (const maxBody of U32)
      for (const maxStreams of U32)
        for (const maxTunnels of [1, 65_535]) roundTrip({ type: FrameType.WELCOME, proof: bytes(32, 9), maxBody, maxStreams, maxTunnels });
  });

  it('WELCOME without a tunnel cap is sent as 65535 (no cap)', () => {
    const wire = encode({ type: FrameType.WELCOME, proof: bytes(32, 9), maxBody: 1, maxStreams: 2 });
    expect(wire.length).toBe(12 + 42);
    expect(wire.readUInt16BE(12 + 40)).toBe(65_535);
  });

  it('WELCOME from a server that predates the tunnel cap (40-byte body) decodes with no cap', () => {
    const wire = encode({ type: FrameType.WELCOME, proof: bytes(32, 9), maxBody: 1, maxStreams: 2, maxTunnels: 7 });
    const old = Buffer.concat([wire.subarray(0, 12 + 40)]);
    old.writeUInt32BE(40, 8);
    expect(decodeAll(old)).toEqual([{ type: FrameType.WELCOME, proof: bytes(32, 9), maxBody: 1, maxStreams: 2 }]);
  });

  it('REJECT, GOAWAY, OPEN_FAIL, RST: any reason octet, empty and 255-byte messages', () => {
    for (const reason of REASONS)
      for (const message of ['', 'x', ascii(255), '€'.repeat(85), 'é'.repeat(127) + 'e']) {
        expect(Buffer.byteLength(message)).toBeLessThanOrEqual(255);
        roundTrip({ type: FrameType.REJECT, reason, message });
        roundTrip({ type: FrameType.GOAWAY, reason, message });
        for (const stream of STREAMS) {
          roundTrip({ type: FrameType.OPEN_FAIL, stream, reason, message });
          roundTrip({ type: FrameType.RST, stream, reason, message });
        }
      }
  });

  it('DATA: streams 1 and 2^32-1, offsets 0 … 2^53-1, payload 1 byte and max', () => {
    const maxPayload = DEFAULT_MAX_BODY - 8;
    for (const stream of STREAMS)
      for (const offset of OFFSETS)
        for (const payload of [Buffer.from([0x00]), Buffer.from([0xff]), bytes(maxPayload, 0x5a)]) {
          const wire = roundTrip({ type: FrameType.DATA, stream, offset, payload });
          expect(wire.length).toBe(12 + 8 + payload.length);
        }
  });

  it('DATA of 1 MiB, against a decoder whose limit allows it (and one whose default limit does not)', () => {
    const payload = bytes(1024 * 1024);
    roundTrip({ type: FrameType.DATA, stream: 1, offset: 0, payload }, 1024 * 1024 + 8);
    expect(() => decodeAll(encode({ type: FrameType.DATA, stream: 1, offset: 0, payload }))).toThrow(/exceeds the limit/);
  });

  it('ACK: ack 0 … 2^53-1, windows 0 and 2^32-1', () => {
    for (const stream of STREAMS)
      for (const ack of OFFSETS) for (const window of WINDOWS) expect(roundTrip({ type: FrameType.ACK, stream, ack, window }).length).toBe(24);
  });

  it('OPEN: every address type, windows 0 and 2^32-1', () => {
    for (const [, destination, len] of addresses)
      for (const stream of STREAMS)
        for (const window of WINDOWS) {
          const wire = roundTrip({ type: FrameType.OPEN, stream, window, destination });
          expect(wire.length).toBe(12 + 4 + len);
        }
  });

  it('OPEN_OK: windows 0 and 2^32-1', () => {
    for (const stream of STREAMS) for (const window of WINDOWS) expect(roundTrip({ type: FrameType.OPEN_OK, stream, window }).length).toBe(16);
  });

  it('DATAGRAM: associations 1 and 2^32-1, every address type, payload 0, 1 and MAX_DATAGRAM_PAYLOAD bytes', () => {
    for (const [, address, len] of addresses) {
      if (!address) continue;
      for (const association of STREAMS)
        for (const n of [0, 1, MAX_DATAGRAM_PAYLOAD]) {
          const wire = roundTrip({ type: FrameType.DATAGRAM, association, address, payload: bytes(n) });
          expect(wire.length).toBe(12 + len + n);
        }
    }
  });

  it('DATAGRAM_CLOSE: any reason octet, empty and 255-byte messages', () => {
    for (const association of STREAMS)
      for (const reason of [0, 0x15, 255]) for (const message of ['', ascii(255)]) roundTrip({ type: FrameType.DATAGRAM_CLOSE, association, reason, message });
  });

  it('DATAGRAM refusals: no address, library-mode address, payload over the limit, association 0', () => {
    const hdr = (type: number, id: number, body: Buffer) => {
      const h = Buffer.alloc(12);
      h[0] = 1;
      h[1] = type;
      h.writeUInt32BE(id, 4);
      h.writeUInt32BE(body.length, 8);
      return Buffer.concat([h, body]);
    };
    expect(() => decodeAll(hdr(FrameType.DATAGRAM, 1, Buffer.alloc(0)))).toThrow(/missing type/);
    expect(() => decodeAll(hdr(FrameType.DATAGRAM, 1, Buffer.from([0x00, 0x68])))).toThrow(/no address/);
    expect(() => decodeAll(hdr(FrameType.DATAGRAM, 1, Buffer.from([0x02, 1, 2, 3, 4, 0, 53])))).toThrow(/unknown address type/);
    expect(() => decodeAll(hdr(FrameType.DATAGRAM, 0, Buffer.from([0x01, 1, 2, 3, 4, 0, 53])))).toThrow(/stream id 0/);
    expect(() => decodeAll(hdr(FrameType.DATAGRAM_CLOSE, 0, Buffer.from([0x15])))).toThrow(/stream id 0/);
    const big = Buffer.concat([Buffer.from([0x01, 1, 2, 3, 4, 0, 53]), bytes(MAX_DATAGRAM_PAYLOAD + 1)]);
    expect(() => decodeAll(hdr(FrameType.DATAGRAM, 1, big), { maxBody: 1 << 20 })).toThrow(/payload over/);
    const ip = { type: 'ipv4', host: '1.2.3.4', port: 53 } as const;
    expect(() => encode({ type: FrameType.DATAGRAM, association: 1, address: ip, payload: bytes(MAX_DATAGRAM_PAYLOAD + 1) })).toThrow(RangeError);
    expect(() => encode({ type: FrameType.DATAGRAM, association: 0, address: ip, payload: bytes(1) })).toThrow(/association id/);
    expect(() => encode({ type: FrameType.DATAGRAM, association: 1, address: null, payload: bytes(1) } as unknown as Frame)).toThrow(RangeError);
  });

  it('FIN: final offsets 0 … 2^53-1', () => {
    for (const stream of STREAMS) for (const offset of OFFSETS) expect(roundTrip({ type: FrameType.FIN, stream, offset }).length).toBe(20);
  });

  it('PING and PONG: ids 0, 1 and 2^32-1', () => {
    for (const id of U32) {
      roundTrip({ type: FrameType.PING, id });
      roundTrip({ type: FrameType.PONG, id });
    }
  });

  it('u64 fields are written as two big-endian halves', () => {
    const wire = encode({ type: FrameType.FIN, stream: 1, offset: MAX_OFFSET });
    expect(wire.subarray(12).toString('hex')).toBe('001fffffffffffff');
    expect(
      encode({ type: FrameType.ACK, stream: 1, ack: 2 ** 32 - 1, window: 0 })
        .subarray(12, 20)
        .toString('hex'),
    ).toBe('00000000ffffffff');
  });
});

describe('message truncation on encode', () => {
  /** The message the peer reads back. */
  const sent = (message: string) => {
    const frame = decodeAll(encode({ type: FrameType.GOAWAY, reason: 0, message }))[0]!;
    if (frame.type !== FrameType.GOAWAY) throw new Error('not GOAWAY');
    return frame.message;
  };

  it.each([
    ['256 ASCII bytes', ascii(256), ascii(255)],
    ['1000 ASCII bytes', ascii(1000), ascii(255)],
    ['2-byte chars, cut inside one', 'é'.repeat(200), 'é'.repeat(127)],
    ['3-byte chars, boundary exactly at 255', '€'.repeat(100), '€'.repeat(85)],
    ['3-byte chars, cut after the lead byte', 'a'.repeat(1) + '€'.repeat(100), 'a' + '€'.repeat(84)],
    ['3-byte chars, cut after a continuation byte', 'ab' + '€'.repeat(100), 'ab' + '€'.repeat(84)],
    ['4-byte chars, cut after 3 of 4 bytes', '😀'.repeat(70), '😀'.repeat(63)],
    ['4-byte chars, cut after 1 of 4 bytes', 'abc' + '😀'.repeat(70), 'abc' + '😀'.repeat(63)],
    ['ASCII then a 2-byte char straddling byte 255', ascii(254) + 'é', ascii(254)],
    ['ASCII then a 4-byte char straddling byte 255', ascii(253) + '😀', ascii(253)],
    ['exactly 255 bytes ending in a 4-byte char', ascii(251) + '😀', ascii(251) + '😀'],
  ])('%s', (_name, input, expected) => {
    const out = sent(input);
    expect(out).toBe(expected);
    expect(Buffer.byteLength(out)).toBeLessThanOrEqual(MAX_MESSAGE_LENGTH);
    expect(out).not.toContain('\ufffd');
    expect(input.startsWith(out)).toBe(true);
  });

  it('every prefix length of mixed-width text is cut to the longest whole-character prefix', () => {
    const text = 'aé€😀'.repeat(40); // 1+2+3+4 bytes per group
    for (let n = 250; n <= text.length; n++) {
      const input = text.slice(0, n);
      const out = sent(input);
      expect(input.startsWith(out)).toBe(true);
      const bytesOut = Buffer.byteLength(out);
      expect(bytesOut).toBeLessThanOrEqual(255);
      // The next whole character would not have fit.
      if (out.length < input.length) {
        const nextChar = String.fromCodePoint(input.codePointAt(out.length)!);
        expect(bytesOut + Buffer.byteLength(nextChar)).toBeGreaterThan(255);
      }
    }
  });
});

describe('encodeDataHeader', () => {
  it('is the first 20 bytes of the DATA frame, so header + payload needs no copy', () => {
    for (const offset of OFFSETS) {
      const payload = bytes(1000, 7);
      const head = encodeDataHeader(MAX_STREAM_ID, offset, payload.length);
      expect(head.length).toBe(20);
      expect(Buffer.concat([head, payload]).equals(encode({ type: FrameType.DATA, stream: MAX_STREAM_ID, offset, payload }))).toBe(true);
    }
  });

  it('refuses an empty payload (the receiver would reject it)', () => {
    expect(() => encodeDataHeader(1, 0, 0)).toThrow(RangeError);
    expect(() => encode({ type: FrameType.DATA, stream: 1, offset: 0, payload: Buffer.alloc(0) })).toThrow(RangeError);
  });
});

describe('the encoder refuses out-of-range fields instead of masking them', () => {
  const data = (stream: number, offset = 0) => ({ type: FrameType.DATA, stream, offset, payload: bytes(1) }) as const;
  const auth = { type: FrameType.AUTH, mode: AuthMode.NEW, sessionId: bytes(16), tunnelIndex: 0, clientNonce: bytes(32), user: '', proof: bytes(32) } as const;

  it.each<[string, () => unknown]>([
    ['stream 0 on a stream frame', () => encode(data(0))],
    ['stream 2^32', () => encode(data(2 ** 32))],
    ['stream 2^32 + 1 (would alias stream 1)', () => encode(data(2 ** 32 + 1))],
    ['negative stream', () => encode(data(-1))],
    ['fractional stream', () => encode(data(1.5))],
    ['stream 0 on ACK', () => encode({ type: FrameType.ACK, stream: 0, ack: 0, window: 0 })],
    ['stream 0 on RST', () => encode({ type: FrameType.RST, stream: 0, reason: 1, message: '' })],
    ['offset 2^53', () => encode(data(1, 2 ** 53))],
    ['negative offset', () => encode(data(1, -1))],
    ['fractional offset', () => encode(data(1, 0.5))],
    ['ACK 2^53', () => encode({ type: FrameType.ACK, stream: 1, ack: 2 ** 53, window: 0 })],
    ['FIN NaN', () => encode({ type: FrameType.FIN, stream: 1, offset: Number.NaN })],
    ['window 2^32', () => encode({ type: FrameType.ACK, stream: 1, ack: 0, window: 2 ** 32 })],
    ['negative window', () => encode({ type: FrameType.OPEN_OK, stream: 1, window: -1 })],
    ['OPEN window 2^32', () => encode({ type: FrameType.OPEN, stream: 1, window: 2 ** 32, destination: null })],
    ['reason 256', () => encode({ type: FrameType.GOAWAY, reason: 256, message: '' })],
    ['negative reason', () => encode({ type: FrameType.RST, stream: 1, reason: -1, message: '' })],
    ['PING id 2^32', () => encode({ type: FrameType.PING, id: 2 ** 32 })],
    ['negative PONG id', () => encode({ type: FrameType.PONG, id: -1 })],
    ['CHALLENGE flags 256', () => encode({ type: FrameType.CHALLENGE, nonce: bytes(32), flags: 256 })],
    ['CHALLENGE nonce of 31 bytes', () => encode({ type: FrameType.CHALLENGE, nonce: bytes(31), flags: 0 })],
    ['AUTH user of 256 bytes', () => encode({ ...auth, user: ascii(256) })],
    ['AUTH user of 128 two-byte chars', () => encode({ ...auth, user: 'é'.repeat(128) })],
    ['AUTH session id of 15 bytes', () => encode({ ...auth, sessionId: bytes(15) })],
    ['AUTH client nonce of 33 bytes', () => encode({ ...auth, clientNonce: bytes(33) })],
    ['AUTH proof of 0 bytes', () => encode({ ...auth, proof: bytes(0) })],
    ['AUTH tunnel index 65536', () => encode({ ...auth, tunnelIndex: 65536 })],
    ['AUTH mode 2', () => encode({ ...auth, mode: 2 as 0 })],
    ['WELCOME proof of 31 bytes', () => encode({ type: FrameType.WELCOME, proof: bytes(31), maxBody: 0, maxStreams: 0 })],
    ['WELCOME max body 2^32', () => encode({ type: FrameType.WELCOME, proof: bytes(32), maxBody: 2 ** 32, maxStreams: 0 })],
    ['WELCOME max tunnels 0', () => encode({ type: FrameType.WELCOME, proof: bytes(32), maxBody: 0, maxStreams: 0, maxTunnels: 0 })],
    ['WELCOME max tunnels 65536', () => encode({ type: FrameType.WELCOME, proof: bytes(32), maxBody: 0, maxStreams: 0, maxTunnels: 65_536 })],
    ['domain of 256 bytes', () => encode({ type: FrameType.OPEN, stream: 1, window: 0, destination: { type: 'domain', host: 'd'.repeat(256), port: 1 } })],
    ['empty domain', () => encode({ type: FrameType.OPEN, stream: 1, window: 0, destination: { type: 'domain', host: '', port: 1 } })],
    ['domain with NUL', () => encode({ type: FrameType.OPEN, stream: 1, window: 0, destination: { type: 'domain', host: 'a\0b', port: 1 } })],
    ['invalid IPv4 host', () => encode({ type: FrameType.OPEN, stream: 1, window: 0, destination: { type: 'ipv4', host: '1.2.3.256', port: 1 } })],
    ['invalid IPv6 host', () => encode({ type: FrameType.OPEN, stream: 1, window: 0, destination: { type: 'ipv6', host: '1::2::3', port: 1 } })],
    ['port 65536', () => encode({ type: FrameType.OPEN, stream: 1, window: 0, destination: { type: 'ipv4', host: '1.2.3.4', port: 65536 } })],
    ['negative port', () => encode({ type: FrameType.OPEN, stream: 1, window: 0, destination: { type: 'domain', host: 'a', port: -1 } })],
    ['unknown address type', () => encode({ type: FrameType.OPEN, stream: 1, window: 0, destination: { type: 'unix' as 'ipv4', host: '/tmp/x', port: 1 } })],
    ['unknown frame type', () => encode({ type: 0x99 } as unknown as Frame)],
  ])('%s', (_name, fn) => {
    expect(fn).toThrow(RangeError);
  });

  it('writes stream 0 for connection frames whatever the object carries', () => {
    const frame = { type: FrameType.PING, id: 1, stream: 5 } as unknown as Frame;
    expect(encode(frame).readUInt32BE(4)).toBe(0);
  });
});

describe('frame type helpers', () => {
  it('know every type and which carry a stream id', () => {
    const stream = ['DATA', 'ACK', 'OPEN', 'OPEN_OK', 'OPEN_FAIL', 'FIN', 'RST'];
    const association = ['DATAGRAM', 'DATAGRAM_CLOSE'];
    for (const [name, type] of Object.entries(FrameType)) {
      expect(isKnownType(type)).toBe(true);
      expect(isStreamType(type)).toBe(stream.includes(name));
      expect(isAssociationType(type)).toBe(association.includes(name));
      expect(frameTypeName(type)).toBe(name);
    }
    expect(Object.keys(FrameType)).toHaveLength(16);
    for (const t of [0x00, 0x05, 0x12, 0x25, 0x33, 0xff]) {
      expect(isKnownType(t)).toBe(false);
      expect(isStreamType(t)).toBe(false);
    }
    expect(frameTypeName(0x7f)).toBe('UNKNOWN(0x7f)');
  });
});
