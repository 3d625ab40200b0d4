import { isIPv4, isIPv6 } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AddressType,
  ProtocolError,
  addressLength,
  formatAddress,
  formatIPv4,
  formatIPv6,
  parseIPv4,
  parseIPv6,
  readAddress,
  toAddress,
  writeAddress,
  type Address,
} from '../src/index.js';

/** Canonical text of an IPv6 literal, through this package. */
const canon = (text: string) => {
  const b = parseIPv6(text);
  return b ? formatIPv6(b) : null;
};

/** The 8 groups written out in full, no compression: an input no formatter had a hand in. */
const uncompressed = (b: Uint8Array) => Array.from({ length: 8 }, (_, i) => ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16).padStart(4, '0')).join(':');

const isMapped = (b: Uint8Array) => b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;

describe('IPv6 parse and RFC 5952 format', () => {
  it.each([
    ['2001:db8:102:304::1', '2001:db8:102:304::1'],
    ['2001:0db8:0102:0304:0000:0000:0000:0001', '2001:db8:102:304::1'],
    ['2001:db8:102:304:0:0:0:1', '2001:db8:102:304::1'],
    ['::', '::'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['::0', '::'],
    ['::1', '::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1::', '1::'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['fe80::', 'fe80::'],
    ['2001:DB8::ABCD', '2001:db8::abcd'], // lower case
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // equal runs: the first is compressed
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run is compressed
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not compressed
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    ['0:0:1:0:0:0:1:0', '0:0:1::1:0'],
    ['[::1]', '::1'], // brackets accepted
    ['[2001:db8::1]', '2001:db8::1'],
    // IPv4-mapped (::ffff:0:0/96): mixed notation, RFC 5952 §5 (and what Node reports for such peers).
    ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
    ['::FFFF:0102:0304', '::ffff:1.2.3.4'],
    ['0:0:0:0:0:ffff:1.2.3.4', '::ffff:1.2.3.4'],
    ['0000:0000:0000:0000:0000:ffff:255.255.255.255', '::ffff:255.255.255.255'],
    ['::ffff:0:0', '::ffff:0.0.0.0'],
    // Embedded IPv4 elsewhere is parsed, but printed in hex (no well-known prefix to recognise).
    ['::1.2.3.4', '::102:304'],
    ['1::ffff:1.2.3.4', '1::ffff:102:304'],
    ['::fffe:1.2.3.4', '::fffe:102:304'],
    ['64:ff9b::1.2.3.4', '64:ff9b::102:304'],
    ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304'],
    ['1::2:3.4.5.6', '1::2:304:506'],
  ])('%s → %s', (input, expected) => {
    expect(canon(input)).toBe(expected);
    expect(canon(expected)).toBe(expected); // canonical text is a fixed point
  });

  it('2001:db8:102:304::1 survives a trip over the wire', () => {
    const dest = toAddress('2001:db8:102:304::1', 443);
    const buf = Buffer.alloc(addressLength(dest));
    writeAddress(buf, 0, dest);
    expect(buf.subarray(1, 17).toString('hex')).toBe('20010db8010203040000000000000001');
    expect(readAddress(buf, 0).address).toEqual({ type: 'ipv6', host: '2001:db8:102:304::1', port: 443 });
  });

  it.each([
    '',
    ':',
    ':::',
    '::::',
    '1:::2',
    '1::2::3',
    '::1::',
    ':1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:',
    ':1::',
    '::1:',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '::1:2:3:4:5:6:7:8',
    '1::2:3:4:5:6:7:8',
    '12345::',
    '00000::1',
    'g::',
    '::-1',
    '::+1',
    '0x1::',
    'abcd',
    '1.2.3.4',
    '1.2.3.4::',
    '1.2.3.4::1',
    '1.2.3.4:1::',
    '::1.2.3.4:1',
    '::1.2.3',
    '::1.2.3.256',
    '::01.2.3.4',
    '::ffff:1.2.3.4.5',
    '1:2:3:4:5:6:7:1.2.3.4',
    '1:2:3:4:5:6:7:8:1.2.3.4',
    'fe80::1%eth0',
    'fe80::1%1',
    '[::1',
    '::1]',
    '[]',
    '[[::1]]',
    ' ::1',
    '::1 ',
    ':: 1',
    '::1\n',
    '1:2:3:4:5:6:7:８',
  ])('rejects %j', (input) => {
    expect(parseIPv6(input)).toBeNull();
  });

  it('random 16-byte addresses: format is WHATWG-canonical (or mixed for IPv4-mapped) and parses back', () => {
    const groupBytes = fc.oneof(fc.constant([0, 0]), fc.constant([0xff, 0xff]), fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 })));
    const address = fc.oneof(
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.array(groupBytes, { minLength: 8, maxLength: 8 }).map((g) => Uint8Array.from(g.flat())), // many zero runs
      fc.uint8Array({ minLength: 4, maxLength: 4 }).map((v4) => Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4])),
    );
    fc.assert(
      fc.property(address, (bytes) => {
        const text = formatIPv6(bytes);
        expect(parseIPv6(text)?.equals(bytes)).toBe(true);
        expect(isIPv6(text)).toBe(true);
        const whatwg = new URL(`http://[${uncompressed(bytes)}]/`).hostname.slice(1, -1);
        if (isMapped(bytes)) expect(text).toBe(`::ffff:${formatIPv4(bytes.subarray(12))}`);
        else expect(text).toBe(whatwg);
        expect(parseIPv6(uncompressed(bytes).toUpperCase())?.equals(bytes)).toBe(true);
      }),
      { numRuns: 3000, seed: 0x5952 },
    );
  });

  it('random IPv6-like strings: accepted exactly when node:net accepts them', () => {
    const piece = fc.constantFrom(
      '0',
      '1',
      'f',
      'F',
      'ab',
      '1234',
      'ffff',
      '00000',
      'g',
      ':',
      ':',
      '::',
      '.',
      '1.2.3.4',
      '255.255.255.255',
      '01.2.3.4',
      '256.0.0.1',
      '1.2.3',
    );
    const noise = fc.array(piece, { minLength: 1, maxLength: 14 }).map((parts) => parts.join(''));
    // Near-valid: 0–9 groups, maybe a `::` somewhere, maybe an IPv4 tail.
    const group = fc.constantFrom('0', '1', 'db8', 'FFFF', '0000', '12345', '');
    const structured = fc
      .record({
        groups: fc.array(group, { maxLength: 9 }),
        gap: fc.option(fc.nat(9)),
        tail: fc.option(fc.constantFrom('1.2.3.4', '0.0.0.0', '01.2.3.4', '1.2.3')),
      })
      .map(({ groups, gap, tail }) => {
        const g = tail === null ? [...groups] : [...groups, tail];
        if (gap !== null) g.splice(Math.min(gap, g.length), 0, '');
        const text = g.join(':');
        return gap === null ? text : text.replace(/^:(?!:)/, '::').replace(/(?<!:):$/, '::');
      });
    const candidate = fc.oneof(noise, structured);
    let accepted = 0;
    fc.assert(
      fc.property(candidate, (text) => {
        const ours = parseIPv6(text) !== null;
        if (ours) accepted++;
        expect(ours, text).toBe(isIPv6(text));
      }),
      { numRuns: 20000, seed: 0x1c6 },
    );
    expect(accepted).toBeGreaterThan(500); // the generators do reach valid addresses
  });

  it('formatIPv6 insists on 16 bytes', () => {
    expect(() => formatIPv6(new Uint8Array(15))).toThrow(RangeError);
  });
});

describe('IPv4 strictness', () => {
  it.each(['0.0.0.0', '1.2.3.4', '10.0.0.1', '127.0.0.1', '255.255.255.255', '192.168.100.200'])('accepts %s', (text) => {
    expect(formatIPv4(parseIPv4(text)!)).toBe(text);
  });

  it.each([
    '01.2.3.4',
    '1.2.3.04',
    '00.0.0.0',
    '1.2.3.00',
    '256.0.0.0',
    '1.2.3.256',
    '1.2.3.999',
    '1.2.3.1000',
    '1.2.3',
    '1.2.3.4.5',
    '1..2.3',
    '1.2.3.',
    '.1.2.3',
    '',
    ' 1.2.3.4',
    '1.2.3.4 ',
    '1.2.3.4\n',
    '+1.2.3.4',
    '-1.2.3.4',
    '0x1.2.3.4',
    '1e2.1.1.1',
    '١.٢.٣.٤',
    '1.2.3.4/24',
    '::1',
  ])('rejects %j', (text) => {
    expect(parseIPv4(text)).toBeNull();
  });

  it('random dotted strings: accepted exactly when node:net accepts them', () => {
    const part = fc.oneof(fc.integer({ min: 0, max: 300 }).map(String), fc.constantFrom('00', '01', '007', '', 'a', '-1', '1 '));
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 6 }), (parts) => {
        const text = parts.join('.');
        expect(parseIPv4(text) !== null, text).toBe(isIPv4(text));
      }),
      { numRuns: 20000, seed: 4 },
    );
  });
});

describe('toAddress', () => {
  it.each<[string, number, Address]>([
    ['1.2.3.4', 80, { type: 'ipv4', host: '1.2.3.4', port: 80 }],
    ['0.0.0.0', 0, { type: 'ipv4', host: '0.0.0.0', port: 0 }],
    ['::1', 65535, { type: 'ipv6', host: '::1', port: 65535 }],
    ['[::1]', 443, { type: 'ipv6', host: '::1', port: 443 }],
    ['2001:0DB8:0102:0304:0:0:0:0001', 443, { type: 'ipv6', host: '2001:db8:102:304::1', port: 443 }],
    ['::FFFF:1.2.3.4', 80, { type: 'ipv6', host: '::ffff:1.2.3.4', port: 80 }],
    ['example.com', 443, { type: 'domain', host: 'example.com', port: 443 }],
    ['bücher.example', 443, { type: 'domain', host: 'bücher.example', port: 443 }],
    ['01.2.3.4', 80, { type: 'domain', host: '01.2.3.4', port: 80 }], // not an IPv4 literal: left to the resolver
    ['256.1.1.1', 80, { type: 'domain', host: '256.1.1.1', port: 80 }],
    ['d'.repeat(255), 1, { type: 'domain', host: 'd'.repeat(255), port: 1 }],
  ])('%s:%i', (host, port, expected) => {
    const addr = toAddress(host, port);
    expect(addr).toEqual(expected);
    // Every Address toAddress builds encodes, and decodes to itself.
    const buf = Buffer.alloc(addressLength(addr) + 3);
    const end = writeAddress(buf, 3, addr);
    expect(end).toBe(buf.length);
    expect(readAddress(buf, 3)).toEqual({ address: addr, end });
  });

  it.each<[string, number]>([
    ['', 80],
    ['d'.repeat(256), 80],
    ['é'.repeat(128), 80], // 256 bytes
    ['a\0b', 80],
    ['example.com', -1],
    ['example.com', 65536],
    ['example.com', 1.5],
    ['example.com', Number.NaN],
    ['1.2.3.4', 70000],
  ])('refuses %j port %s', (host, port) => {
    expect(() => toAddress(host, port)).toThrow(RangeError);
  });

  it('formatAddress brackets IPv6', () => {
    expect(formatAddress(toAddress('::1', 80))).toBe('[::1]:80');
    expect(formatAddress(toAddress('1.2.3.4', 80))).toBe('1.2.3.4:80');
    expect(formatAddress(toAddress('example.com', 443))).toBe('example.com:443');
  });
});

describe('address field codec', () => {
  it('library mode is a single 0x00 octet', () => {
    const buf = Buffer.alloc(1, 0xee);
    expect(writeAddress(buf, 0, null)).toBe(1);
    expect(buf[0]).toBe(AddressType.NONE);
    expect(addressLength(null)).toBe(1);
    expect(readAddress(buf, 0)).toEqual({ address: null, end: 1 });
  });

  it('readAddress refuses a missing type octet and unknown types with ProtocolError', () => {
    expect(() => readAddress(Buffer.alloc(2), 2)).toThrow(ProtocolError);
    for (const atyp of [0x02, 0x05, 0x06, 0x7f, 0xff]) expect(() => readAddress(Buffer.from([atyp, 0, 0, 0, 0, 0, 0]), 0)).toThrow(ProtocolError);
  });
});
