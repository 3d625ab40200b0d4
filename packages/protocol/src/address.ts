import { isUtf8 } from 'node:buffer';
import { ProtocolError } from './errors.js';

/** A destination: an IPv4 or IPv6 literal or a domain name, and a TCP port. */
export interface Address {
  type: 'ipv4' | 'ipv6' | 'domain';
  /** Dotted quad, canonical RFC 5952 IPv6 text (no brackets), or the domain name as given. */
  host: string;
  /** TCP port, 0–65535. */
  port: number;
}

/** Address type octets (the SOCKS5 ATYP values, plus 0x00 for "no destination"). */
export const AddressType = { NONE: 0x00, IPV4: 0x01, DOMAIN: 0x03, IPV6: 0x04 } as const;

/** Longest domain name, in bytes. */
export const MAX_DOMAIN_LENGTH = 255;

/** Parse a dotted-quad IPv4 literal into 4 bytes, or return null. */
export function parseIPv4(text: string): Buffer | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const out = Buffer.alloc(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

/** Parse an IPv6 literal (with or without brackets, with an embedded IPv4 tail allowed) into 16 bytes, or return null. */
export function parseIPv6(input: string): Buffer | null {
  let text = input;
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  if (text.includes('%')) return null; // zone ids are not routable destinations
  if (text.length === 0 || text.length > 45) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  // An embedded IPv4 tail is allowed only as the last 32 bits of the address, i.e. at the end of
  // the last half (`::ffff:1.2.3.4`, `1:2:3:4:5:6:1.2.3.4`), never before `::` (`1.2.3.4::`).
  const parseGroups = (s: string, ipv4Tail: boolean): number[] | null => {
    if (s === '') return [];
    const groups = s.split(':');
    const out: number[] = [];
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (ipv4Tail && i === groups.length - 1 && g.includes('.')) {
        const v4 = parseIPv4(g);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parseGroups(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? parseGroups(halves[1]!, true) : [];
  if (!head || !tail) return null;
  let groups: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return null;
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return null;
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(g, i * 2);
  return out;
}

/**
 * Format 16 bytes as canonical IPv6 text (RFC 5952 §4: lower case, no leading zeros, the longest run
 * of two or more zero groups, the first of equal runs, as `::`). IPv4-mapped addresses
 * (`::ffff:0:0/96`) use the mixed notation RFC 5952 §5 recommends, `::ffff:192.0.2.1`, which is also
 * how Node reports such peers (`socket.remoteAddress`).
 */
export function formatIPv6(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new RangeError('an IPv6 address is 16 bytes');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${formatIPv4(bytes.subarray(12, 16))}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Format 4 bytes as a dotted quad. */
export function formatIPv4(bytes: Uint8Array): string {
  return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
}

/**
 * Build an Address from a host string and port: IP literals are recognised (IPv6 with or without
 * brackets, canonicalised); anything else is a domain name of 1–255 bytes.
 */
export function toAddress(host: string, port: number): Address {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`invalid port ${port}`);
  if (parseIPv4(host)) return { type: 'ipv4', host, port };
  const v6 = parseIPv6(host);
  if (v6) return { type: 'ipv6', host: formatIPv6(v6), port };
  checkDomain(host);
  return { type: 'domain', host, port };
}

/** Throw a RangeError unless `host` is a domain name the decoder accepts: 1–255 UTF-8 bytes, no NUL. */
function checkDomain(host: string): number {
  const len = Buffer.byteLength(host);
  if (len < 1 || len > MAX_DOMAIN_LENGTH) throw new RangeError(`domain name must be 1–255 bytes, got ${len}`);
  if (host.includes('\0')) throw new RangeError('domain name contains NUL');
  return len;
}

/** Encoded length of an address field (ATYP octet, address, port), in bytes. */
export function addressLength(addr: Address | null): number {
  if (!addr) return 1;
  switch (addr.type) {
    case 'ipv4':
      return 1 + 4 + 2;
    case 'ipv6':
      return 1 + 16 + 2;
    case 'domain':
      return 1 + 1 + Buffer.byteLength(addr.host) + 2;
    default:
      throw new RangeError(`unknown address type ${(addr as { type: unknown }).type}`);
  }
}

/** Write an address field at `offset` of `buf`; returns the offset after it. */
export function writeAddress(buf: Buffer, offset: number, addr: Address | null): number {
  if (!addr) {
    buf[offset] = AddressType.NONE;
    return offset + 1;
  }
  let o = offset;
  switch (addr.type) {
    case 'ipv4': {
      const b = parseIPv4(addr.host);
      if (!b) throw new RangeError(`invalid IPv4 address ${addr.host}`);
      buf[o++] = AddressType.IPV4;
      b.copy(buf, o);
      o += 4;
      break;
    }
    case 'ipv6': {
      const b = parseIPv6(addr.host);
      if (!b) throw new RangeError(`invalid IPv6 address ${addr.host}`);
      buf[o++] = AddressType.IPV6;
      b.copy(buf, o);
      o += 16;
      break;
    }
    case 'domain': {
      const len = checkDomain(addr.host);
      buf[o++] = AddressType.DOMAIN;
      buf[o++] = len;
      o += buf.write(addr.host, o, 'utf8');
      break;
    }
    default:
      throw new RangeError(`unknown address type ${(addr as { type: unknown }).type}`);
  }
  if (!Number.isInteger(addr.port) || addr.port < 0 || addr.port > 65535) throw new RangeError(`invalid port ${addr.port}`);
  buf.writeUInt16BE(addr.port, o);
  return o + 2;
}

/** Read an address field at `offset`; returns the address (null for NONE) and the offset after it. Throws ProtocolError. */
export function readAddress(buf: Buffer, offset: number): { address: Address | null; end: number } {
  if (offset >= buf.length) throw new ProtocolError('address: missing type octet');
  const atyp = buf[offset]!;
  let o = offset + 1;
  let type: Address['type'];
  let host: string;
  switch (atyp) {
    case AddressType.NONE:
      return { address: null, end: o };
    case AddressType.IPV4:
      if (o + 4 + 2 > buf.length) throw new ProtocolError('address: truncated IPv4');
      type = 'ipv4';
      host = formatIPv4(buf.subarray(o, o + 4));
      o += 4;
      break;
    case AddressType.IPV6:
      if (o + 16 + 2 > buf.length) throw new ProtocolError('address: truncated IPv6');
      type = 'ipv6';
      host = formatIPv6(buf.subarray(o, o + 16));
      o += 16;
      break;
    case AddressType.DOMAIN: {
      if (o >= buf.length) throw new ProtocolError('address: missing domain length');
      const len = buf[o++]!;
      if (len === 0) throw new ProtocolError('address: empty domain name');
      if (o + len + 2 > buf.length) throw new ProtocolError('address: truncated domain name');
      const raw = buf.subarray(o, o + len);
      if (raw.includes(0)) throw new ProtocolError('address: NUL in domain name');
      // Decoding invalid UTF-8 would be lossy (and could grow past 255 bytes): refuse it.
      if (!isUtf8(raw)) throw new ProtocolError('address: domain name is not valid UTF-8');
      type = 'domain';
      host = raw.toString('utf8');
      o += len;
      break;
    }
    default:
      throw new ProtocolError(`address: unknown address type 0x${atyp.toString(16)}`);
  }
  const port = buf.readUInt16BE(o);
  return { address: { type, host, port }, end: o + 2 };
}

/** `host:port`, with IPv6 in brackets. */
export function formatAddress(addr: Address): string {
  return addr.type === 'ipv6' ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}
