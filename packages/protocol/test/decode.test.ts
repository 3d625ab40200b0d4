import { describe, expect, it } from 'vitest';
import {
  AuthMode,
  BadVersionError,
  DEFAULT_MAX_BODY,
  Decoder,
  ErrorCode,
  FrameTooLargeError,
  FrameType,
  GkdError,
  HEADER_LENGTH,
  ProtocolError,
  Reason,
  UnknownTypeError,
  checkHeader,
  decodeAll,
  decodeBody,
  encode,
  type Frame,
} from '../src/index.js';

/** A raw frame: header fields and body as given, no validation (to build malformed input). */
function raw(type: number, stream: number, body: Buffer | string, opts: { version?: number; length?: number; flags?: number } = {}): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body.replace(/ /g, ''), 'hex') : body;
  const h = Buffer.alloc(HEADER_LENGTH);
  h[0] = opts.version ?? 1;
  h[1] = type;
  h.writeUInt16BE(opts.flags ?? 0, 2);
  h.writeUInt32BE(stream, 4);
  h.writeUInt32BE(opts.length ?? b.length, 8);
  return Buffer.concat([h, b]);
}

/** Catch what `fn` throws. */
function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

const sixFrames: Frame[] = [
  {
    type: FrameType.AUTH,
    mode: AuthMode.JOIN,
    sessionId: Buffer.alloc(16, 1),
    tunnelIndex: 3,
    clientNonce: Buffer.alloc(32, 2),
    user: 'ålice',
    proof: Buffer.alloc(32, 3),
  },
  { type: FrameType.OPEN, stream: 1, window: 262144, destination: { type: 'domain', host: 'example.com', port: 443 } },
  { type: FrameType.DATA, stream: 1, offset: 2 ** 32, payload: Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff)) },
  { type: FrameType.ACK, stream: 3, ack: 12345, window: 65536 },
  { type: FrameType.RST, stream: 5, reason: Reason.CANCELLED, message: 'bye ✓' },
  { type: FrameType.PING, id: 0xdeadbeef },
  { type: FrameType.OPEN, stream: 7, window: 1, destination: { type: 'ipv6', host: '2001:db8:102:304::1', port: 80 } },
];
const chunk = Buffer.concat(sixFrames.map(encode));

describe('Decoder: frames spanning pushes', () => {
  it('every split point into two pushes yields the same frames', () => {
    for (let at = 0; at <= chunk.length; at++) {
      const d = new Decoder();
      const out = [...d.push(chunk.subarray(0, at)), ...d.push(chunk.subarray(at))];
      expect(out, `split at ${at}`).toEqual(sixFrames);
      expect(d.bufferedBytes).toBe(0);
    }
  });

  it('every pair of split points into three pushes yields the same frames', () => {
    for (let a = 0; a <= chunk.length; a += 7)
      for (let b = a; b <= chunk.length; b += 5) {
        const d = new Decoder();
        const out = [...d.push(chunk.subarray(0, a)), ...d.push(chunk.subarray(a, b)), ...d.push(chunk.subarray(b))];
        // Re-encoding is a fast exact comparison (the codec round-trips, see codec.test.ts).
        if (out.length !== sixFrames.length || !Buffer.concat(out.map(encode)).equals(chunk)) expect.fail(`split at ${a}, ${b}`);
      }
  });

  it('one byte at a time yields each frame exactly when its last byte arrives', () => {
    const ends: number[] = [];
    let total = 0;
    for (const f of sixFrames) {
      total += encode(f).length;
      ends.push(total);
    }
    const d = new Decoder();
    const out: Frame[] = [];
    for (let i = 0; i < chunk.length; i++) {
      const got = d.push(chunk.subarray(i, i + 1));
      expect(got.length).toBe(ends.includes(i + 1) ? 1 : 0);
      out.push(...got);
      expect(d.bufferedBytes).toBeLessThan(HEADER_LENGTH + 300 + 8);
    }
    expect(out).toEqual(sixFrames);
    expect(d.bufferedBytes).toBe(0);
  });

  it('bufferedBytes counts the bytes of the incomplete frame not yet returned', () => {
    const d = new Decoder();
    const ping = encode({ type: FrameType.PING, id: 1 });
    expect(d.push(ping.subarray(0, 5))).toEqual([]);
    expect(d.bufferedBytes).toBe(5);
    expect(d.push(ping.subarray(5, 14))).toEqual([]);
    expect(d.bufferedBytes).toBe(2); // header consumed and checked, 2 body bytes held
    expect(d.push(Buffer.concat([ping.subarray(14), ping.subarray(0, 3)]))).toEqual([{ type: FrameType.PING, id: 1 }]);
    expect(d.bufferedBytes).toBe(3);
  });

  it('accepts plain Uint8Array views at a byte offset, and empty pushes', () => {
    const backing = new Uint8Array(chunk.length + 10);
    backing.set(chunk, 5);
    const view = backing.subarray(5, 5 + chunk.length);
    const d = new Decoder();
    expect(d.push(new Uint8Array(0))).toEqual([]);
    expect(d.push(view)).toEqual(sixFrames);
  });

  it('a DATA payload that lies in one chunk is a view of it (no copy)', () => {
    const wire = encode(sixFrames[2]!);
    const [frame] = new Decoder().push(wire);
    expect(frame!.type).toBe(FrameType.DATA);
    if (frame!.type === FrameType.DATA) expect(frame!.payload.buffer).toBe(wire.buffer);
  });

  it('ignores the reserved flags', () => {
    expect(decodeAll(raw(FrameType.PING, 0, '00000009', { flags: 0xffff }))).toEqual([{ type: FrameType.PING, id: 9 }]);
  });

  it('decodeAll refuses a trailing partial frame', () => {
    expect(() => decodeAll(chunk.subarray(0, chunk.length - 1))).toThrow(ProtocolError);
    expect(() => decodeAll(chunk.subarray(0, 5))).toThrow(/trailing 5 bytes/);
  });

  it('validates maxBody', () => {
    expect(new Decoder().maxBody).toBe(DEFAULT_MAX_BODY);
    expect(new Decoder({ maxBody: 64 }).maxBody).toBe(64);
    for (const maxBody of [63, 0, -1, 1.5, 2 ** 32, Number.NaN]) expect(() => new Decoder({ maxBody })).toThrow(RangeError);
  });
});

describe('Decoder: header rejects carry the right code and reason', () => {
  const ping = raw(FrameType.PING, 0, '00000001');

  it.each([0x00, 0x02, 0x10, 0xff])('version 0x%s', (version) => {
    const err = caught(() => new Decoder().push(raw(FrameType.PING, 0, '00000001', { version })));
    expect(err).toBeInstanceOf(BadVersionError);
    expect(err).toBeInstanceOf(GkdError);
    expect(err).toMatchObject({ name: 'BadVersionError', code: ErrorCode.BAD_VERSION, reason: Reason.BAD_VERSION, version });
  });

  it.each([0x00, 0x05, 0x12, 0x25, 0x33, 0xff])('unknown type 0x%s', (type) => {
    const err = caught(() => new Decoder().push(raw(type, 0, '')));
    expect(err).toBeInstanceOf(UnknownTypeError);
    expect(err).toMatchObject({ name: 'UnknownTypeError', code: ErrorCode.UNKNOWN_TYPE, reason: Reason.UNKNOWN_TYPE, type });
  });

  it('the version is checked before the type', () => {
    expect(caught(() => new Decoder().push(raw(0xff, 0, '', { version: 2 })))).toBeInstanceOf(BadVersionError);
  });

  // Otherwise valid frames, so only the stream-id rule can reject them.
  const validStreamFrames: Frame[] = [
    { type: FrameType.DATA, stream: 1, offset: 0, payload: Buffer.from('x') },
    { type: FrameType.ACK, stream: 1, ack: 0, window: 0 },
    { type: FrameType.OPEN, stream: 1, window: 0, destination: null },
    { type: FrameType.OPEN_OK, stream: 1, window: 0 },
    { type: FrameType.OPEN_FAIL, stream: 1, reason: 1, message: '' },
    { type: FrameType.FIN, stream: 1, offset: 0 },
    { type: FrameType.RST, stream: 1, reason: 1, message: '' },
  ];
  const validConnFrames: Frame[] = [
    { type: FrameType.CHALLENGE, nonce: Buffer.alloc(32), flags: 0 },
    { type: FrameType.AUTH, mode: AuthMode.NEW, sessionId: Buffer.alloc(16), tunnelIndex: 0, clientNonce: Buffer.alloc(32), user: '', proof: Buffer.alloc(32) },
    { type: FrameType.WELCOME, proof: Buffer.alloc(32), maxBody: 0, maxStreams: 0, maxTunnels: 1 },
    { type: FrameType.REJECT, reason: 0, message: '' },
    { type: FrameType.PING, id: 0 },
    { type: FrameType.PONG, id: 0 },
    { type: FrameType.GOAWAY, reason: 0, message: '' },
  ];
  const withStream = (f: Frame, stream: number) => {
    const wire = encode(f);
    wire.writeUInt32BE(stream, 4);
    return wire;
  };
  it.each(validStreamFrames.map((f) => [f.type, f] as const))('stream frame type 0x%s with stream id 0', (_type, frame) => {
    expect(decodeAll(withStream(frame, 1))).toHaveLength(1);
    const err = caught(() => new Decoder().push(withStream(frame, 0)));
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err).toMatchObject({
      name: 'ProtocolError',
      code: ErrorCode.PROTOCOL,
      reason: Reason.PROTOCOL_ERROR,
      message: expect.stringMatching(/stream id 0/),
    });
  });
  it.each(validConnFrames.map((f) => [f.type, f] as const))('connection frame type 0x%s with a stream id', (_type, frame) => {
    expect(decodeAll(withStream(frame, 0))).toHaveLength(1);
    for (const stream of [1, 2, 0xffffffff]) {
      const err = caught(() => new Decoder().push(withStream(frame, stream)));
      expect(err).toBeInstanceOf(ProtocolError);
      expect(err).toMatchObject({ code: ErrorCode.PROTOCOL, reason: Reason.PROTOCOL_ERROR, message: expect.stringMatching(`stream id ${stream}`) });
    }
  });

  it.each([
    [DEFAULT_MAX_BODY, DEFAULT_MAX_BODY + 1],
    [DEFAULT_MAX_BODY, 0xffffffff],
    [64, 65],
    [1000, 0x80000000],
  ])('maxBody %i, declared length %i: refused as soon as the header is complete, nothing of the body buffered', (maxBody, length) => {
    const frame = raw(FrameType.DATA, 1, Buffer.alloc(100), { length });
    const d = new Decoder({ maxBody });
    for (let i = 0; i < HEADER_LENGTH - 1; i++) {
      expect(d.push(frame.subarray(i, i + 1))).toEqual([]);
      expect(d.bufferedBytes).toBeLessThanOrEqual(HEADER_LENGTH);
    }
    const err = caught(() => d.push(frame.subarray(HEADER_LENGTH - 1, HEADER_LENGTH))); // the last header byte
    expect(err).toBeInstanceOf(FrameTooLargeError);
    expect(err).toMatchObject({ name: 'FrameTooLargeError', code: ErrorCode.FRAME_TOO_LARGE, reason: Reason.FRAME_TOO_LARGE, length, limit: maxBody });
    expect(d.bufferedBytes).toBeLessThanOrEqual(HEADER_LENGTH);
    expect(d.bufferedBytes).toBe(0); // and what was held is released
  });

  it('a declared length over the limit is refused even when the body arrives in the same chunk', () => {
    const d = new Decoder({ maxBody: 64 });
    const err = caught(() => d.push(Buffer.concat([ping, raw(FrameType.DATA, 1, Buffer.alloc(100))])));
    expect(err).toBeInstanceOf(FrameTooLargeError);
    expect(d.bufferedBytes).toBe(0);
  });

  it('a declared length of exactly maxBody is accepted', () => {
    const d = new Decoder({ maxBody: 64 });
    const frame = encode({ type: FrameType.DATA, stream: 1, offset: 0, payload: Buffer.alloc(56, 1) });
    expect(d.push(frame.subarray(0, HEADER_LENGTH + 10))).toEqual([]);
    expect(d.bufferedBytes).toBe(10);
    expect(d.push(frame.subarray(HEADER_LENGTH + 10))).toHaveLength(1);
  });

  it('checkHeader is exported and applies the same rules', () => {
    const h = { version: 1, type: FrameType.PING, flags: 0, stream: 0, length: 4 };
    expect(() => checkHeader(h, 64)).not.toThrow();
    expect(() => checkHeader({ ...h, version: 2 }, 64)).toThrow(BadVersionError);
    expect(() => checkHeader({ ...h, type: 0x99 }, 64)).toThrow(UnknownTypeError);
    expect(() => checkHeader({ ...h, length: 65 }, 64)).toThrow(FrameTooLargeError);
    expect(() => checkHeader({ ...h, stream: 1 }, 64)).toThrow(ProtocolError);
  });
});

describe('Decoder: malformed bodies of every type are protocol errors', () => {
  const nonce = '00'.repeat(32);
  const sid = '11'.repeat(16);
  const proof = '22'.repeat(32);
  const auth = (mode: string, userLen: number, user: string, tail = proof) => `${mode}${sid}0000${nonce}${userLen.toString(16).padStart(2, '0')}${user}${tail}`;
  const S = 1;

  const cases: Array<[string, number, number, string]> = [
    ['CHALLENGE of 32 bytes', FrameType.CHALLENGE, 0, nonce],
    ['CHALLENGE of 34 bytes', FrameType.CHALLENGE, 0, nonce + '0000'],
    ['CHALLENGE empty', FrameType.CHALLENGE, 0, ''],
    ['AUTH empty', FrameType.AUTH, 0, ''],
    ['AUTH truncated before the proof', FrameType.AUTH, 0, auth('00', 0, '', '')],
    ['AUTH proof one byte short', FrameType.AUTH, 0, auth('00', 0, '', proof.slice(2))],
    ['AUTH user length one more than present', FrameType.AUTH, 0, auth('00', 2, '61')],
    ['AUTH user length one less than present', FrameType.AUTH, 0, auth('00', 0, '61')],
    ['AUTH user length 255, no user', FrameType.AUTH, 0, auth('00', 255, '')],
    ['AUTH mode 2', FrameType.AUTH, 0, auth('02', 0, '')],
    ['AUTH mode 0xff', FrameType.AUTH, 0, auth('ff', 0, '')],
    ['AUTH user not UTF-8 (0xff)', FrameType.AUTH, 0, auth('00', 1, 'ff')],
    ['AUTH user with an overlong NUL (c0 80)', FrameType.AUTH, 0, auth('00', 2, 'c080')],
    ['AUTH user with a UTF-16 surrogate (ed a0 80)', FrameType.AUTH, 0, auth('00', 3, 'eda080')],
    ['AUTH user cut inside a character', FrameType.AUTH, 0, auth('00', 2, '61c3')],
    ['WELCOME of 39 bytes', FrameType.WELCOME, 0, proof + '00'.repeat(7)],
    ['WELCOME of 41 bytes', FrameType.WELCOME, 0, proof + '00'.repeat(9)],
    ['WELCOME of 43 bytes', FrameType.WELCOME, 0, proof + '00'.repeat(11)],
    ['WELCOME max tunnels 0', FrameType.WELCOME, 0, proof + '00'.repeat(10)],
    ['REJECT empty', FrameType.REJECT, 0, ''],
    ['REJECT message of 256 bytes', FrameType.REJECT, 0, '12' + '61'.repeat(256)],
    ['DATA empty', FrameType.DATA, S, ''],
    ['DATA offset only (empty payload)', FrameType.DATA, S, '00'.repeat(8)],
    ['DATA of 7 bytes', FrameType.DATA, S, '00'.repeat(7)],
    ['DATA offset 2^53', FrameType.DATA, S, '0020000000000000ff'],
    ['DATA offset 2^64-1', FrameType.DATA, S, 'ffffffffffffffffff'],
    ['ACK of 11 bytes', FrameType.ACK, S, '00'.repeat(11)],
    ['ACK of 13 bytes', FrameType.ACK, S, '00'.repeat(13)],
    ['ACK ack 2^53', FrameType.ACK, S, '0020000000000000' + '00000000'],
    ['OPEN empty', FrameType.OPEN, S, ''],
    ['OPEN window only (no address type)', FrameType.OPEN, S, '00010000'],
    ['OPEN window truncated', FrameType.OPEN, S, '000100'],
    ['OPEN address type 0x02', FrameType.OPEN, S, '00010000' + '02' + '01020304' + '0050'],
    ['OPEN address type 0x05', FrameType.OPEN, S, '00010000' + '05'],
    ['OPEN address type 0xff', FrameType.OPEN, S, '00010000' + 'ff' + '00'.repeat(18)],
    ['OPEN IPv4 truncated (no port)', FrameType.OPEN, S, '00010000' + '01' + '01020304'],
    ['OPEN IPv4 port one byte short', FrameType.OPEN, S, '00010000' + '01' + '01020304' + '00'],
    ['OPEN IPv6 truncated', FrameType.OPEN, S, '00010000' + '04' + '00'.repeat(17)],
    ['OPEN domain without its length', FrameType.OPEN, S, '00010000' + '03'],
    ['OPEN domain of length 0', FrameType.OPEN, S, '00010000' + '03' + '00' + '0050'],
    ['OPEN domain truncated', FrameType.OPEN, S, '00010000' + '03' + '05' + '6162' + '0050'],
    ['OPEN domain without port', FrameType.OPEN, S, '00010000' + '03' + '01' + '61'],
    ['OPEN domain with NUL', FrameType.OPEN, S, '00010000' + '03' + '03' + '610062' + '0050'],
    ['OPEN domain not UTF-8', FrameType.OPEN, S, '00010000' + '03' + '03' + '61ff62' + '0050'],
    ['OPEN domain of 255 invalid bytes (would decode to 765)', FrameType.OPEN, S, '00010000' + '03' + 'ff' + 'ff'.repeat(255) + '0050'],
    ['OPEN trailing byte after IPv4', FrameType.OPEN, S, '00010000' + '01' + '01020304' + '0050' + '00'],
    ['OPEN trailing byte after IPv6', FrameType.OPEN, S, '00010000' + '04' + '00'.repeat(16) + '0050' + '00'],
    ['OPEN trailing byte after domain', FrameType.OPEN, S, '00010000' + '03' + '01' + '61' + '0050' + '00'],
    ['OPEN trailing bytes after library mode', FrameType.OPEN, S, '00010000' + '00' + '0050'],
    ['OPEN_OK of 3 bytes', FrameType.OPEN_OK, S, '000000'],
    ['OPEN_OK of 5 bytes', FrameType.OPEN_OK, S, '0000000000'],
    ['OPEN_FAIL empty', FrameType.OPEN_FAIL, S, ''],
    ['OPEN_FAIL message of 256 bytes', FrameType.OPEN_FAIL, S, '05' + '61'.repeat(256)],
    ['FIN of 7 bytes', FrameType.FIN, S, '00'.repeat(7)],
    ['FIN of 9 bytes', FrameType.FIN, S, '00'.repeat(9)],
    ['FIN offset 2^53', FrameType.FIN, S, '0020000000000000'],
    ['RST empty', FrameType.RST, S, ''],
    ['RST message of 256 bytes', FrameType.RST, S, '20' + '61'.repeat(256)],
    ['PING of 3 bytes', FrameType.PING, 0, '000000'],
    ['PING of 5 bytes', FrameType.PING, 0, '0000000000'],
    ['PONG empty', FrameType.PONG, 0, ''],
    ['PONG of 8 bytes', FrameType.PONG, 0, '00'.repeat(8)],
    ['GOAWAY empty', FrameType.GOAWAY, 0, ''],
    ['GOAWAY message of 256 bytes', FrameType.GOAWAY, 0, '22' + '61'.repeat(256)],
    ['DATAGRAM empty (no address)', FrameType.DATAGRAM, S, ''],
    ['DATAGRAM library-mode address', FrameType.DATAGRAM, S, '00' + '6869'],
    ['DATAGRAM address type 0x02', FrameType.DATAGRAM, S, '02' + '7f000001' + '0035'],
    ['DATAGRAM IPv4 without port', FrameType.DATAGRAM, S, '01' + '7f000001'],
    ['DATAGRAM IPv6 truncated', FrameType.DATAGRAM, S, '04' + '00'.repeat(10)],
    ['DATAGRAM domain of length 0', FrameType.DATAGRAM, S, '03' + '00' + '0035'],
    ['DATAGRAM domain with NUL', FrameType.DATAGRAM, S, '03' + '03' + '610062' + '0035'],
    ['DATAGRAM domain not UTF-8', FrameType.DATAGRAM, S, '03' + '03' + '61ff62' + '0035'],
    ['DATAGRAM_CLOSE empty', FrameType.DATAGRAM_CLOSE, S, ''],
    ['DATAGRAM_CLOSE message of 256 bytes', FrameType.DATAGRAM_CLOSE, S, '15' + '61'.repeat(256)],
  ];

  it('covers every frame type', () => {
    expect(new Set(cases.map(([, type]) => type)).size).toBe(Object.keys(FrameType).length);
  });

  it.each(cases)('%s', (_name, type, stream, body) => {
    const d = new Decoder();
    const err = caught(() => d.push(raw(type, stream, body)));
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err).toMatchObject({ name: 'ProtocolError', code: ErrorCode.PROTOCOL, reason: Reason.PROTOCOL_ERROR });
    // The same body through the exported decodeBody.
    const b = Buffer.from(body, 'hex');
    expect(() => decodeBody({ version: 1, type, flags: 0, stream, length: b.length }, b)).toThrow(ProtocolError);
  });

  it('the limits themselves are accepted: 255-byte messages, u64 2^53-1, user of 255 bytes', () => {
    const ok: Array<[number, number, string]> = [
      [FrameType.GOAWAY, 0, '22' + '61'.repeat(255)],
      [FrameType.DATA, S, '001fffffffffffff' + '01'],
      [FrameType.FIN, S, '001fffffffffffff'],
      [FrameType.AUTH, 0, auth('01', 255, '61'.repeat(255))],
      [FrameType.OPEN, S, '00010000' + '03' + 'ff' + '61'.repeat(255) + '0050'],
    ];
    for (const [type, stream, body] of ok) expect(decodeAll(raw(type, stream, body))).toHaveLength(1);
  });
});

describe('Decoder: text fields', () => {
  it('messages are decoded leniently: invalid UTF-8 becomes U+FFFD (they identify nothing)', () => {
    expect(decodeAll(raw(FrameType.GOAWAY, 0, '22' + '61ff62'))).toEqual([{ type: FrameType.GOAWAY, reason: 0x22, message: 'a\ufffdb' }]);
    expect(decodeAll(raw(FrameType.RST, 1, '20' + 'e282'))).toEqual([{ type: FrameType.RST, stream: 1, reason: 0x20, message: '\ufffd' }]);
  });

  it('user and domain names are decoded exactly, a byte-order mark included', () => {
    const user = '\ufeffbob';
    const [f] = decodeAll(
      encode({
        type: FrameType.AUTH,
        mode: AuthMode.NEW,
        sessionId: Buffer.alloc(16),
        tunnelIndex: 0,
        clientNonce: Buffer.alloc(32),
        user,
        proof: Buffer.alloc(32),
      }),
    );
    expect(f).toMatchObject({ user });
    const [o] = decodeAll(encode({ type: FrameType.OPEN, stream: 1, window: 1, destination: { type: 'domain', host: '\ufeffbücher.de', port: 1 } }));
    expect(o).toMatchObject({ destination: { host: '\ufeffbücher.de' } });
  });
});

describe('Decoder: poisoned after an error', () => {
  it.each<[string, Buffer]>([
    ['bad version', raw(FrameType.PING, 0, '00000001', { version: 2 })],
    ['unknown type', raw(0x99, 0, '')],
    ['too large', raw(FrameType.DATA, 1, '', { length: DEFAULT_MAX_BODY + 1 })],
    ['malformed body', raw(FrameType.ACK, 1, '00')],
  ])('%s: every later push rethrows the same error', (_name, bad) => {
    const good = encode({ type: FrameType.PING, id: 1 });
    const d = new Decoder();
    expect(d.push(good)).toHaveLength(1);
    const first = caught(() => d.push(Buffer.concat([bad, good])));
    expect(first).toBeInstanceOf(GkdError);
    expect(d.bufferedBytes).toBe(0);
    expect(caught(() => d.push(good))).toBe(first);
    expect(caught(() => d.push(Buffer.alloc(0)))).toBe(first);
    expect(caught(() => d.push(good))).toBe(first);
  });

  it('frames before the bad one in the same chunk are not returned (the tunnel is closing)', () => {
    const d = new Decoder();
    expect(() => d.push(Buffer.concat([encode({ type: FrameType.PING, id: 1 }), raw(0x99, 0, '')]))).toThrow(UnknownTypeError);
  });
});
