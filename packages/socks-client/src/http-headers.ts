import { STATUS_CODES } from 'node:http';

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus the ones this proxy sets or answers itself. */
const DROPPED = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding', // node:http re-frames bodies on each leg
  'upgrade',
  'host', // replaced by the request-target's authority (RFC 9112 §3.2.2)
  'expect', // node:http already answered 100-continue to the client
]);

/**
 * The headers of `rawHeaders` (node's flat [name, value, …] list) that travel end to end: without
 * hop-by-hop headers, Proxy-* headers, and every header the Connection header names. Order, case and
 * repeated headers are kept.
 */
export function endToEndHeaders(rawHeaders: readonly string[]): string[] {
  const named = new Set<string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'connection') {
      for (const token of rawHeaders[i + 1]!.split(',')) named.add(token.trim().toLowerCase());
    }
  }
  const out: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (DROPPED.has(lower) || lower.startsWith('proxy-') || named.has(lower)) continue;
    out.push(name, rawHeaders[i + 1]!);
  }
  return out;
}

/** A complete, self-delimited HTTP/1.1 response with a short text body, for writing to a raw socket. */
export function rawResponse(status: number, message: string, headers: Record<string, string> = {}): string {
  const body = `${message}\n`;
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
    Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('') +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    'Connection: close\r\n\r\n' +
    body
  );
}

/**
 * Split a CONNECT request-target (`host:port`, `[v6]:port`) into host and port. Throws RangeError
 * when it is not an authority with a port.
 */
export function parseAuthority(target: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]/@]+)):(\d{1,5})$/.exec(target);
  if (!m) throw new RangeError(`CONNECT target must be host:port, got ${JSON.stringify(target.slice(0, 100))}`);
  return { host: (m[1] ?? m[2])!, port: Number(m[3]) };
}
