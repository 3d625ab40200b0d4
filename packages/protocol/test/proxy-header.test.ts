import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  PROXY_V1_MAX_LENGTH,
  PROXY_V2_DEFAULT_MAX_LENGTH,
  ProxyHeaderDecoder,
  ProxyHeaderError,
  encodePreface,
  encodeProxyV2,
  type ProxyHeaderResult,
} from '../src/index.js';
import { Rng } from '@gkd/test-support';

/**
 * The PROXY protocol codec against the specification (haproxy.org/download/2.6/doc/proxy-protocol.txt):
 * its v1 examples verbatim, v2 headers assembled byte by byte from its §2.2 layout, every split point,
 * malformed and truncated inputs, and the size bound.
 */

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const SIG = '0d0a0d0a 000d0a51 5549540a';
const AFTER = encodePreface(Buffer.alloc(16, 0xab)); // what follows the header on a gkd port: the routing preface

/** v2, PROXY, TCP over IPv4, 192.168.0.1:56324 → 192.168.0.11:443 (the spec's v1 example, in binary). */
const V2_TCP4 = `${SIG} 21 11 000c c0a80001 c0a8000b dc04 01bb`;
/** v2, PROXY, TCP over IPv6, [2001:db8::1]:1234 → [2001:db8::2]:9990. */
const V2_TCP6 = `${SIG} 21 21 0024 20010db8000000000000000000000001 20010db8000000000000000000000002 04d2 2706`;
/** v2, LOCAL (a health check by the balancer itself), no addresses. */
const V2_LOCAL = `${SIG} 20 00 0000`;
/** V2_TCP4 with a NOOP TLV (type 0x04, 3 bytes) after the addresses: TLVs are skipped. */
const V2_TCP4_TLV = `${SIG} 21 11 0012 c0a80001 c0a8000b dc04 01bb 04 0003 000000`;

function decodeAll(wire: Buffer): ProxyHeaderResult {
  const r = new ProxyHeaderDecoder().push(wire);
  if (!r) throw new Error('incomplete');
  return r;
}

function refusal(wire: Buffer, decoder = new ProxyHeaderDecoder()): ProxyHeaderError {
  try {
    decoder.push(wire);
  } catch (err) {
    expect(err).toBeInstanceOf(ProxyHeaderError);
    expect((err as ProxyHeaderError).code).toBe(ErrorCode.PROXY_HEADER);
    return err as ProxyHeaderError;
  }
  throw new Error(`accepted ${wire.toString('hex')}`);
}

describe('PROXY protocol header codec', () => {
  const cases: [string, Buffer, ProxyHeaderResult['header']][] = [
    [
      'v1 TCP4 (the specification example)',
      Buffer.from('PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n'),
      { version: 1, command: 'PROXY', source: { address: '192.168.0.1', port: 56324 }, destination: { address: '192.168.0.11', port: 443 } },
    ],
    [
      'v1 TCP6, the longest TCP6 line',
      Buffer.from('PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n'),
      {
        version: 1,
        command: 'PROXY',
        source: { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 },
        destination: { address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', port: 65535 },
      },
    ],
    [
      'v1 TCP6 written long-hand is shortened as Node prints addresses',
      Buffer.from('PROXY TCP6 2001:0db8:0:0:0:0:0:1 ::ffff:192.0.2.7 1 0\r\n'),
      { version: 1, command: 'PROXY', source: { address: '2001:db8::1', port: 1 }, destination: { address: '::ffff:192.0.2.7', port: 0 } },
    ],
    ['v1 UNKNOWN', Buffer.from('PROXY UNKNOWN\r\n'), { version: 1, command: 'PROXY', source: undefined, destination: undefined }],
    [
      'v1 UNKNOWN, the worst case of 107 bytes (the rest of the line is ignored)',
      Buffer.from('PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n'),
      { version: 1, command: 'PROXY', source: undefined, destination: undefined },
    ],
    [
      'v2 TCP4',
      hex(V2_TCP4),
      { version: 2, command: 'PROXY', source: { address: '192.168.0.1', port: 56324 }, destination: { address: '192.168.0.11', port: 443 } },
    ],
    [
      'v2 TCP6',
      hex(V2_TCP6),
      { version: 2, command: 'PROXY', source: { address: '2001:db8::1', port: 1234 }, destination: { address: '2001:db8::2', port: 9990 } },
    ],
    ['v2 LOCAL', hex(V2_LOCAL), { version: 2, command: 'LOCAL', source: undefined, destination: undefined }],
    [
      'v2 TCP4 with a TLV',
      hex(V2_TCP4_TLV),
      { version: 2, command: 'PROXY', source: { address: '192.168.0.1', port: 56324 }, destination: { address: '192.168.0.11', port: 443 } },
    ],
    [
      'v2 PROXY over UDP: no usable address',
      hex(`${SIG} 21 12 000c c0a80001 c0a8000b dc04 01bb`),
      { version: 2, command: 'PROXY', source: undefined, destination: undefined },
    ],
    ['v2 PROXY, UNSPEC family', hex(`${SIG} 21 00 0000`), { version: 2, command: 'PROXY', source: undefined, destination: undefined }],
  ];

  it.each(cases)('%s', (_name, wire, header) => {
    const r = decodeAll(Buffer.concat([wire, AFTER]));
    expect(r.header).toEqual(header);
    expect(r.rest).toEqual(AFTER);
  });

  it('the v1 worst case is exactly the 107 bytes the specification allows', () => {
    expect(cases[4]![1].length).toBe(PROXY_V1_MAX_LENGTH);
  });

  it('decodes at every split point, and byte by byte, leaving exactly the bytes after the header', () => {
    for (const [name, header] of cases) {
      const wire = Buffer.concat([header, AFTER]);
      for (let cut = 0; cut <= wire.length; cut++) {
        const d = new ProxyHeaderDecoder();
        const first = d.push(wire.subarray(0, cut));
        const r = first ?? d.push(wire.subarray(cut));
        expect(r, `${name}, cut ${cut}`).not.toBeNull();
        expect(Buffer.concat([r!.rest, first ? wire.subarray(cut) : Buffer.alloc(0)]), `${name}, cut ${cut}`).toEqual(AFTER);
        expect(d.bufferedBytes, `${name}, cut ${cut}: holds no more than the header`).toBe(header.length);
      }
      const d = new ProxyHeaderDecoder();
      let r: ProxyHeaderResult | null = null;
      for (const byte of header) {
        expect(r).toBeNull();
        r = d.push(Buffer.from([byte]));
      }
      expect(r!.rest.length).toBe(0);
    }
  });

  it('encodeProxyV2 writes the fixtures byte for byte; PROTOCOL.md §4.2 shows the TCP4 one', () => {
    const doc = readFileSync(new URL('../../../PROTOCOL.md', import.meta.url), 'utf8');
    const spaced = hex(V2_TCP4)
      .toString('hex')
      .replace(/(..)(?!$)/g, '$1 ');
    expect(doc).toContain(`\`${spaced}\``);
    expect(encodeProxyV2({ address: '192.168.0.1', port: 56324 }, { address: '192.168.0.11', port: 443 })).toEqual(hex(V2_TCP4));
    expect(encodeProxyV2({ address: '2001:db8::1', port: 1234 }, { address: '2001:db8::2', port: 9990 })).toEqual(hex(V2_TCP6));
    expect(encodeProxyV2()).toEqual(hex(V2_LOCAL));
  });

  it('truncated headers are incomplete, never an answer and never an error', () => {
    for (const [name, header] of cases) {
      for (let n = 0; n < header.length; n++) expect(new ProxyHeaderDecoder().push(header.subarray(0, n)), `${name}, ${n} bytes`).toBeNull();
    }
  });

  it.each([
    ['a gkd preface (a client that bypassed the balancer)', AFTER, /got byte 0x47 at offset 0 \(a gkd routing preface/],
    ['a TLS ClientHello', hex('16030100'), /expected a PROXY protocol header.*0x16/],
    ['a v2 signature with a wrong byte', hex('0d0a0d0a000d0a515549540b'), /signature: byte 0x0b at offset 11/],
    ['v2 version 1', hex(`${SIG} 11 11 000c`), /unsupported PROXY protocol v2 version 1/],
    ['v2 command 2', hex(`${SIG} 22 11 000c`), /unknown PROXY protocol v2 command 2/],
    ['v2 family 4', hex(`${SIG} 21 41 000c`), /address family\/transport 0x41/],
    ['v2 transport 3', hex(`${SIG} 21 13 000c`), /address family\/transport 0x13/],
    ['v2 TCP4 with 8 address bytes', hex(`${SIG} 21 11 0008 c0a80001 c0a8000b`), /IPv4 addresses need 12 bytes, got 8/],
    ['v2 TCP6 with 12 address bytes', hex(`${SIG} 21 21 000c c0a80001 c0a8000b dc04 01bb`), /IPv6 addresses need 36 bytes, got 12/],
    ['v2 UNIX with 12 address bytes', hex(`${SIG} 21 31 000c c0a80001 c0a8000b dc04 01bb`), /UNIX addresses need 216 bytes/],
    ['v1 with a bad prefix', Buffer.from('PROXI TCP4'), /v1 prefix: byte 0x49 at offset 4/],
    ['v1 with a bare LF', Buffer.from('PROXY UNKNOWN\n'), /bare LF/],
    ['v1 with a control byte', Buffer.from('PROXY TCP4 1.2.3.4\x00'), /non-printable byte 0x00/],
    ['v1 UDP4', Buffer.from('PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'), /unknown PROXY protocol v1 protocol "UDP4"/],
    ['v1 TCP4 with an IPv6 address', Buffer.from('PROXY TCP4 ::1 5.6.7.8 1 2\r\n'), /bad TCP4 address/],
    ['v1 TCP4 with a bad address', Buffer.from('PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n'), /bad TCP4 address/],
    ['v1 port above 65535', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n'), /bad port "65536"/],
    ['v1 port with a leading zero', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n'), /bad port "01"/],
    ['v1 with two spaces', Buffer.from('PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n'), /malformed PROXY protocol v1 line/],
    ['v1 with a missing field', Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'), /malformed PROXY protocol v1 line/],
  ])('refuses %s with GKD_ERR_PROXY_HEADER', (_name, wire, message) => {
    expect(refusal(wire).message).toMatch(message);
  });

  it('refuses a v1 line with no CRLF within 107 bytes, holding no more than that', () => {
    const d = new ProxyHeaderDecoder();
    expect(d.push(Buffer.from(`PROXY TCP4 ${'1'.repeat(90)}`))).toBeNull();
    expect(refusal(Buffer.from('1'.repeat(1000)), d).message).toMatch(/longer than 107 bytes/);
    expect(d.bufferedBytes).toBe(PROXY_V1_MAX_LENGTH);
  });

  it('refuses a v2 length over the bound from the length field alone, before buffering any of it', () => {
    const d = new ProxyHeaderDecoder();
    const over = Buffer.alloc(2);
    over.writeUInt16BE(PROXY_V2_DEFAULT_MAX_LENGTH + 1);
    expect(refusal(Buffer.concat([hex(`${SIG} 21 11`), over]), d).message).toMatch(/declares 1025 bytes .* more than the 1024 accepted/);
    expect(d.bufferedBytes).toBe(16);
    // At the bound it is accepted (a header of TLVs only after the IPv4 addresses).
    const at = Buffer.alloc(PROXY_V2_DEFAULT_MAX_LENGTH);
    at[12] = 0x04; // NOOP TLV covering the rest
    at.writeUInt16BE(PROXY_V2_DEFAULT_MAX_LENGTH - 15, 13);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(PROXY_V2_DEFAULT_MAX_LENGTH);
    expect(decodeAll(Buffer.concat([hex(`${SIG} 21 11`), len, at])).header.source).toEqual({ address: '0.0.0.0', port: 0 });
    expect(() => new ProxyHeaderDecoder(100)).toThrow(RangeError);
  });

  it('is poisoned after an error, and finished after a header', () => {
    const d = new ProxyHeaderDecoder();
    const err = refusal(Buffer.from('GKD'), d);
    expect(() => d.push(hex(V2_LOCAL))).toThrow(err);
    const ok = new ProxyHeaderDecoder();
    ok.push(hex(V2_LOCAL));
    expect(() => ok.push(Buffer.alloc(1))).toThrow(RangeError);
  });

  it('random bytes: a header, an incomplete answer or GKD_ERR_PROXY_HEADER, never another exception; never more than the bound held', () => {
    const rng = new Rng(0x9e3779b9);
    for (let i = 0; i < 20_000; i++) {
      const start = [hex(SIG), Buffer.from('PROXY '), Buffer.alloc(0)][i % 3]!;
      const wire = Buffer.concat([start.subarray(0, rng.int(start.length + 1)), rng.bytes(rng.int(64))]);
      const d = new ProxyHeaderDecoder();
      try {
        for (let at = 0; at < wire.length; ) {
          const n = 1 + rng.int(wire.length - at);
          if (d.push(wire.subarray(at, at + n))) break;
          at += n;
        }
      } catch (err) {
        expect(err).toBeInstanceOf(ProxyHeaderError);
      }
      expect(d.bufferedBytes).toBeLessThanOrEqual(16 + PROXY_V2_DEFAULT_MAX_LENGTH);
    }
  });
});
