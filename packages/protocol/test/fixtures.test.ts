import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Decoder, FrameType, Reason, decodeAll, encode, type Frame } from '../src/index.js';

/**
 * The hex fixtures of PROTOCOL.md §10, copied here on purpose: the spec and the codec must both
 * change if the wire format changes. The last test checks the copy still matches the document.
 */
const fixtures: Array<[name: string, hex: string, frame: Frame]> = [
  [
    'DATA stream 1, offset 0, "hi"',
    '01 10 00 00 00 00 00 01 00 00 00 0a 00 00 00 00 00 00 00 00 68 69',
    { type: FrameType.DATA, stream: 1, offset: 0, payload: Buffer.from('hi') },
  ],
  [
    'DATA stream 3, offset 2^32, "x"',
    '01 10 00 00 00 00 00 03 00 00 00 09 00 00 00 01 00 00 00 00 78',
    { type: FrameType.DATA, stream: 3, offset: 2 ** 32, payload: Buffer.from('x') },
  ],
  [
    'ACK stream 1, ack 5, window 262144',
    '01 11 00 00 00 00 00 01 00 00 00 0c 00 00 00 00 00 00 00 05 00 04 00 00',
    { type: FrameType.ACK, stream: 1, ack: 5, window: 262144 },
  ],
  [
    'OPEN stream 1, window 262144, 10.0.0.1:80',
    '01 20 00 00 00 00 00 01 00 00 00 0b 00 04 00 00 01 0a 00 00 01 00 50',
    { type: FrameType.OPEN, stream: 1, window: 262144, destination: { type: 'ipv4', host: '10.0.0.1', port: 80 } },
  ],
  [
    'OPEN stream 3, window 65536, example.com:443',
    '01 20 00 00 00 00 00 03 00 00 00 13 00 01 00 00 03 0b 65 78 61 6d 70 6c 65 2e 63 6f 6d 01 bb',
    { type: FrameType.OPEN, stream: 3, window: 65536, destination: { type: 'domain', host: 'example.com', port: 443 } },
  ],
  [
    'OPEN stream 5, window 65536, [2001:db8::1]:8080',
    '01 20 00 00 00 00 00 05 00 00 00 17 00 01 00 00 04 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01 1f 90',
    { type: FrameType.OPEN, stream: 5, window: 65536, destination: { type: 'ipv6', host: '2001:db8::1', port: 8080 } },
  ],
  [
    'OPEN stream 7, window 65536, library mode',
    '01 20 00 00 00 00 00 07 00 00 00 05 00 01 00 00 00',
    { type: FrameType.OPEN, stream: 7, window: 65536, destination: null },
  ],
  ['OPEN_OK stream 1, window 262144', '01 21 00 00 00 00 00 01 00 00 00 04 00 04 00 00', { type: FrameType.OPEN_OK, stream: 1, window: 262144 }],
  [
    'OPEN_FAIL stream 1, CONNECTION_REFUSED',
    '01 22 00 00 00 00 00 01 00 00 00 01 05',
    { type: FrameType.OPEN_FAIL, stream: 1, reason: Reason.CONNECTION_REFUSED, message: '' },
  ],
  ['FIN stream 1, offset 1000', '01 23 00 00 00 00 00 01 00 00 00 08 00 00 00 00 00 00 03 e8', { type: FrameType.FIN, stream: 1, offset: 1000 }],
  [
    'RST stream 1, CANCELLED, "bye"',
    '01 24 00 00 00 00 00 01 00 00 00 04 20 62 79 65',
    { type: FrameType.RST, stream: 1, reason: Reason.CANCELLED, message: 'bye' },
  ],
  ['PING 7', '01 30 00 00 00 00 00 00 00 00 00 04 00 00 00 07', { type: FrameType.PING, id: 7 }],
  ['PONG 7', '01 31 00 00 00 00 00 00 00 00 00 04 00 00 00 07', { type: FrameType.PONG, id: 7 }],
  ['GOAWAY SHUTDOWN', '01 32 00 00 00 00 00 00 00 00 00 01 22', { type: FrameType.GOAWAY, reason: Reason.SHUTDOWN, message: '' }],
  [
    'WELCOME proof 0…0, max body 65536, 1024 streams, 32 tunnels',
    '01 03 00 00 00 00 00 00 00 00 00 2a 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 04 00 00 20',
    { type: FrameType.WELCOME, proof: Buffer.alloc(32), maxBody: 65_536, maxStreams: 1024, maxTunnels: 32 },
  ],
  ['REJECT BAD_PROOF', '01 04 00 00 00 00 00 00 00 00 00 01 12', { type: FrameType.REJECT, reason: Reason.BAD_PROOF, message: '' }],
  [
    'DATAGRAM association 1, 127.0.0.1:53, "hi"',
    '01 40 00 00 00 00 00 01 00 00 00 09 01 7f 00 00 01 00 35 68 69',
    { type: FrameType.DATAGRAM, association: 1, address: { type: 'ipv4', host: '127.0.0.1', port: 53 }, payload: Buffer.from('hi') },
  ],
  [
    'DATAGRAM association 2, example.com:53, empty',
    '01 40 00 00 00 00 00 02 00 00 00 0f 03 0b 65 78 61 6d 70 6c 65 2e 63 6f 6d 00 35',
    { type: FrameType.DATAGRAM, association: 2, address: { type: 'domain', host: 'example.com', port: 53 }, payload: Buffer.alloc(0) },
  ],
  [
    'DATAGRAM_CLOSE association 1, LIMIT_EXCEEDED',
    '01 41 00 00 00 00 00 01 00 00 00 01 15',
    { type: FrameType.DATAGRAM_CLOSE, association: 1, reason: Reason.LIMIT_EXCEEDED, message: '' },
  ],
];

const unhex = (hex: string) => Buffer.from(hex.replace(/ /g, ''), 'hex');
const spaced = (buf: Buffer) => buf.toString('hex').replace(/(..)(?!$)/g, '$1 ');

describe('PROTOCOL.md §10 fixtures', () => {
  it.each(fixtures)('%s: encodes to the fixture bytes', (_name, hex, frame) => {
    expect(spaced(encode(frame))).toBe(hex);
  });

  it.each(fixtures)('%s: decodes from the fixture bytes', (_name, hex, frame) => {
    expect(decodeAll(unhex(hex))).toEqual([frame]);
  });

  it('all fixtures back to back decode in order, also one byte at a time', () => {
    const wire = Buffer.concat(fixtures.map(([, hex]) => unhex(hex)));
    expect(decodeAll(wire)).toEqual(fixtures.map(([, , frame]) => frame));
    const d = new Decoder();
    const out: Frame[] = [];
    for (const byte of wire) out.push(...d.push(Buffer.from([byte])));
    expect(out).toEqual(fixtures.map(([, , frame]) => frame));
    expect(d.bufferedBytes).toBe(0);
  });

  it('the fixture table here is the one in PROTOCOL.md', () => {
    const spec = readFileSync(new URL('../../../PROTOCOL.md', import.meta.url), 'utf8');
    const section = spec.slice(spec.indexOf('## 10. Fixtures'));
    const rows = [...section.matchAll(/^\| (.+?) \| `([0-9a-f ]+)` \|$/gm)].map((m) => [m[1], m[2]]);
    expect(rows).toEqual(fixtures.map(([name, hex]) => [name, hex]));
  });
});
