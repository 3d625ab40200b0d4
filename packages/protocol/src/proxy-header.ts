import { isIPv4, isIPv6 } from 'node:net';
import { formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from './address.js';
import { ErrorCode, GkdError } from './errors.js';
import { Reason } from './reason.js';

/**
 * The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2): what a load balancer
 * in front of a server (`send-proxy-v2`) writes before the client's first byte, so the server knows
 * the client's own address. gkd reads it, when told to (`proxyProtocol`), before the routing preface
 * (PROTOCOL.md §4.2). Pure: no sockets.
 *
 * ```
 * v2: bytes 0-11  signature 0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a
 *     byte  12    version (high nibble, 2) and command (low nibble: 0 LOCAL, 1 PROXY)
 *     byte  13    address family (high nibble: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX) and
 *                 transport (low nibble: 0 UNSPEC, 1 STREAM, 2 DGRAM)
 *     bytes 14-15 length of what follows, big-endian
 *     INET:  source address (4), destination address (4), source port (2), destination port (2)
 *     INET6: source address (16), destination address (16), source port (2), destination port (2)
 *     then TLVs (skipped)
 * v1: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" (or TCP6, or UNKNOWN ...), at most 107 bytes
 * ```
 */

/** The 12 bytes that open a version-2 header. */
export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** A version-1 header's first six bytes. */
export const PROXY_V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** Longest version-1 line, CRLF included, in bytes (the specification's bound). */
export const PROXY_V1_MAX_LENGTH = 107;
/** Fixed part of a version-2 header (signature, version/command, family, length), in bytes. */
export const PROXY_V2_FIXED_LENGTH = 16;
/**
 * Default bound on a version-2 header's variable part (addresses and TLVs), in bytes. A TCP/IPv6
 * header needs 36; balancers add a few small TLVs. A declared length above it is refused before any of
 * it is buffered.
 */
export const PROXY_V2_DEFAULT_MAX_LENGTH = 1024;

/** One end of the proxied connection. */
export interface ProxyEndpoint {
  /** An IPv4 or IPv6 address, as Node prints them (`192.0.2.1`, `2001:db8::1`). */
  address: string;
  /** TCP port, 0–65535. */
  port: number;
}

/** A decoded header. */
export interface ProxyHeader {
  version: 1 | 2;
  /**
   * `PROXY`: a relayed connection (source and destination are set when the family is TCP over IPv4 or
   * IPv6). `LOCAL`: the balancer's own connection (a health check): use the socket's addresses.
   */
  command: 'PROXY' | 'LOCAL';
  /** The client's address, or undefined (LOCAL, UNKNOWN, UNSPEC, UNIX, UDP): use the socket's own. */
  source: ProxyEndpoint | undefined;
  /** The address the client connected to (the balancer's), when given. */
  destination: ProxyEndpoint | undefined;
}

/** The connection did not start with a valid PROXY protocol header (when the server requires one). */
export class ProxyHeaderError extends GkdError {
  constructor(message: string) {
    super(ErrorCode.PROXY_HEADER, message, Reason.PROTOCOL_ERROR);
  }
}

/** What a complete header gave: the header, and the bytes after it in the same chunk. */
export interface ProxyHeaderResult {
  header: ProxyHeader;
  rest: Buffer;
}

/** Encode a version-2 header (for tests and for a gkd hop that relays to another): TCP over IPv4 or IPv6, or LOCAL when `source` is undefined. */
export function encodeProxyV2(source?: ProxyEndpoint, destination?: ProxyEndpoint): Buffer {
  if (!source || !destination) return Buffer.concat([PROXY_V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])]);
  const v6 = isIPv6(source.address);
  if (v6 !== isIPv6(destination.address)) throw new RangeError('source and destination must be of one address family');
  const addr = (a: string) => {
    const b = v6 ? parseIPv6(a) : parseIPv4(a);
    if (!b) throw new RangeError(`not an IP address: ${a}`);
    return b;
  };
  const body = Buffer.concat([addr(source.address), addr(destination.address), Buffer.alloc(4)]);
  body.writeUInt16BE(source.port, body.length - 4);
  body.writeUInt16BE(destination.port, body.length - 2);
  const fixed = Buffer.from([0x21, v6 ? 0x21 : 0x11, 0, 0]);
  fixed.writeUInt16BE(body.length, 2);
  return Buffer.concat([PROXY_V2_SIGNATURE, fixed, body]);
}

const hex2 = (n: number) => `0x${n.toString(16).padStart(2, '0')}`;

/**
 * Reads a PROXY header (version 1 or 2, told apart by the first byte) from chunks of any size. The
 * fixed bytes are checked as they arrive, so a connection that sends something else (a gkd preface: a
 * client that bypassed the balancer) is refused at its first byte; it never holds more than the
 * header's bound. After a throw it is poisoned: every later `push` rethrows.
 */
export class ProxyHeaderDecoder {
  private readonly maxV2Length: number;
  private buf: Buffer = Buffer.alloc(0);
  private error: ProxyHeaderError | null = null;
  private done = false;

  /** @param maxV2Length bound on a version-2 header's variable part, in bytes (default 1 024). */
  constructor(maxV2Length = PROXY_V2_DEFAULT_MAX_LENGTH) {
    if (!Number.isInteger(maxV2Length) || maxV2Length < 216 || maxV2Length > 65_535)
      throw new RangeError(`maxV2Length must be an integer 216–65535 (a UNIX address block is 216 bytes), got ${maxV2Length}`);
    this.maxV2Length = maxV2Length;
  }

  /** Bytes of the header received so far. */
  get bufferedBytes(): number {
    return this.buf.length;
  }

  /** Feed a chunk; returns the result once the whole header is in (then the decoder is finished), else null. */
  push(chunk: Buffer): ProxyHeaderResult | null {
    if (this.error) throw this.error;
    if (this.done) throw new RangeError('PROXY header already decoded');
    try {
      return this.consume(chunk);
    } catch (err) {
      if (err instanceof ProxyHeaderError) this.error = err;
      throw err;
    }
  }

  private consume(chunk: Buffer): ProxyHeaderResult | null {
    // Take no more than the header can be (its bound grows as the version and v2 length become
    // known), so `rest` is exact and a long chunk is never copied whole.
    for (let offset = 0; ; ) {
      const before = this.buf.length;
      const take = chunk.subarray(offset, offset + (this.limit() - before));
      this.buf = Buffer.concat([this.buf, take]);
      offset += take.length;
      this.checkFixed(before);
      const total = this.headerLength();
      if (total !== null) {
        this.done = true;
        const overshoot = this.buf.length - total;
        this.buf = this.buf.subarray(0, total);
        const header = this.buf[0] === 0x0d ? this.decodeV2(this.buf) : decodeV1(this.buf);
        return { header, rest: chunk.subarray(offset - overshoot) };
      }
      if (this.buf.length >= this.limit()) throw this.tooLong();
      if (offset >= chunk.length) return null;
    }
  }

  /** The most bytes the header being read may have, once its version (and v2 length) are known. */
  private limit(): number {
    if (this.buf.length === 0) return PROXY_V2_FIXED_LENGTH;
    if (this.buf[0] !== 0x0d) return PROXY_V1_MAX_LENGTH;
    if (this.buf.length < PROXY_V2_FIXED_LENGTH) return PROXY_V2_FIXED_LENGTH;
    return PROXY_V2_FIXED_LENGTH + this.buf.readUInt16BE(14);
  }

  private tooLong(): ProxyHeaderError {
    return new ProxyHeaderError(`PROXY protocol v1 line longer than ${PROXY_V1_MAX_LENGTH} bytes without its CRLF`);
  }

  /** Check the bytes from `from` on that have a fixed value (signature, prefix, version, command, family, length bound). */
  private checkFixed(from: number): void {
    const b = this.buf;
    for (let at = from; at < b.length; at++) {
      const byte = b[at]!;
      const v2 = b[0] === 0x0d;
      if (at === 0 && byte !== 0x0d && byte !== 0x50)
        throw new ProxyHeaderError(
          `expected a PROXY protocol header (the server is behind a balancer that sends one), got byte ${hex2(byte)} at offset 0${byte === 0x47 ? ' (a gkd routing preface: a client that bypassed the balancer?)' : ''}`,
        );
      if (v2 && at < 12 && byte !== PROXY_V2_SIGNATURE[at]) throw new ProxyHeaderError(`bad PROXY protocol v2 signature: byte ${hex2(byte)} at offset ${at}`);
      if (!v2 && at < 6 && byte !== PROXY_V1_PREFIX[at]) throw new ProxyHeaderError(`bad PROXY protocol v1 prefix: byte ${hex2(byte)} at offset ${at}`);
      if (!v2 && at >= 6 && (byte < 0x20 || byte > 0x7e) && byte !== 0x0d && byte !== 0x0a)
        throw new ProxyHeaderError(`PROXY protocol v1 line has a non-printable byte ${hex2(byte)} at offset ${at}`);
      if (!v2 && byte === 0x0a) return; // the line's end: what follows is the client's, not ours to check
      if (v2 && at === 12) {
        if (byte >> 4 !== 2) throw new ProxyHeaderError(`unsupported PROXY protocol v2 version ${byte >> 4} (byte 12 is ${hex2(byte)})`);
        if ((byte & 0x0f) > 1) throw new ProxyHeaderError(`unknown PROXY protocol v2 command ${byte & 0x0f} (0 LOCAL, 1 PROXY)`);
      }
      if (v2 && at === 13 && (byte >> 4 > 3 || (byte & 0x0f) > 2))
        throw new ProxyHeaderError(`unknown PROXY protocol v2 address family/transport ${hex2(byte)}`);
      if (v2 && at === 15) {
        const length = b.readUInt16BE(14);
        if (length > this.maxV2Length)
          throw new ProxyHeaderError(`PROXY protocol v2 header declares ${length} bytes of addresses and TLVs, more than the ${this.maxV2Length} accepted`);
      }
    }
  }

  /** The whole header's length once it can be known, else null. */
  private headerLength(): number | null {
    const b = this.buf;
    if (b.length === 0) return null;
    if (b[0] === 0x0d) {
      if (b.length < PROXY_V2_FIXED_LENGTH) return null;
      const total = PROXY_V2_FIXED_LENGTH + b.readUInt16BE(14);
      return b.length >= total ? total : null;
    }
    const lf = b.indexOf(0x0a);
    if (lf === -1) return null;
    if (lf === 0 || b[lf - 1] !== 0x0d) throw new ProxyHeaderError('PROXY protocol v1 line ends in a bare LF (expected CRLF)');
    return lf + 1;
  }

  private decodeV2(h: Buffer): ProxyHeader {
    const command = (h[12]! & 0x0f) === 1 ? 'PROXY' : 'LOCAL';
    const family = h[13]! >> 4;
    const transport = h[13]! & 0x0f;
    const body = h.subarray(PROXY_V2_FIXED_LENGTH);
    const none: ProxyHeader = { version: 2, command, source: undefined, destination: undefined };
    // LOCAL: the balancer's own connection; UNSPEC, UNIX and UDP: nothing a TCP server can use. The
    // specification lets the receiver use the socket's own addresses then.
    if (command === 'LOCAL' || transport !== 1 || (family !== 1 && family !== 2)) {
      if (command === 'PROXY' && family === 3 && body.length < 216)
        throw new ProxyHeaderError(`PROXY protocol v2 UNIX addresses need 216 bytes, got ${body.length}`);
      return none;
    }
    const size = family === 1 ? 4 : 16;
    if (body.length < 2 * size + 4)
      throw new ProxyHeaderError(`PROXY protocol v2 ${family === 1 ? 'IPv4' : 'IPv6'} addresses need ${2 * size + 4} bytes, got ${body.length}`);
    const ip = (b: Buffer) => (size === 4 ? formatIPv4(b) : formatIPv6(b));
    return {
      version: 2,
      command,
      source: { address: ip(body.subarray(0, size)), port: body.readUInt16BE(2 * size) },
      destination: { address: ip(body.subarray(size, 2 * size)), port: body.readUInt16BE(2 * size + 2) },
    };
  }
}

const PORT = /^(0|[1-9]\d{0,4})$/;

/** A complete version-1 line, CRLF included. */
function decodeV1(line: Buffer): ProxyHeader {
  const text = line.subarray(0, line.length - 2).toString('latin1');
  const fields = text.split(' ');
  if (fields[1] === 'UNKNOWN') return { version: 1, command: 'PROXY', source: undefined, destination: undefined };
  if (fields.length !== 6)
    throw new ProxyHeaderError(`malformed PROXY protocol v1 line (expected "PROXY TCP4|TCP6 SRC DST SPORT DPORT"): ${JSON.stringify(text)}`);
  const [, proto, src, dst, sport, dport] = fields as [string, string, string, string, string, string];
  const valid = proto === 'TCP4' ? isIPv4 : proto === 'TCP6' ? isIPv6 : null;
  if (!valid) throw new ProxyHeaderError(`unknown PROXY protocol v1 protocol ${JSON.stringify(proto)} (TCP4, TCP6 or UNKNOWN)`);
  if (!valid(src) || !valid(dst)) throw new ProxyHeaderError(`bad ${proto} address in the PROXY protocol v1 line: ${JSON.stringify(text)}`);
  const port = (p: string) => {
    if (!PORT.test(p) || Number(p) > 65_535) throw new ProxyHeaderError(`bad port ${JSON.stringify(p)} in the PROXY protocol v1 line`);
    return Number(p);
  };
  const normal = (a: string) => {
    if (proto !== 'TCP6') return a;
    const b = parseIPv6(a);
    if (!b) throw new ProxyHeaderError(`bad TCP6 address in the PROXY protocol v1 line: ${JSON.stringify(a)}`);
    return formatIPv6(b);
  };
  return { version: 1, command: 'PROXY', source: { address: normal(src), port: port(sport) }, destination: { address: normal(dst), port: port(dport) } };
}
