/**
 * A minimal SOCKS5 client on a raw socket (RFC 1928, no authentication, CONNECT): light enough to run
 * ten thousand at once, and exact about what the proxy answered (the REP octet).
 */
import * as net from 'node:net';

/** Where to CONNECT: an IPv4 literal or a domain name (sent unresolved, ATYP 0x03). */
export type SocksTarget = { ipv4: string; port: number } | { domain: string; port: number };

/** Outcome of a SOCKS5 CONNECT. */
export interface SocksResult {
  /** The REP octet (0 = succeeded), or -1 when the proxy closed before replying. */
  rep: number;
  /** The connected socket (rep 0) ready for data, or the refused one (already ending). */
  socket: net.Socket;
}

/** The CONNECT request bytes for `target`. */
export function socksRequest(target: SocksTarget): Buffer {
  if ('ipv4' in target) {
    const b = Buffer.alloc(10);
    b.set([5, 1, 0, 1], 0);
    for (const [i, p] of target.ipv4.split('.').entries()) b[4 + i] = Number(p);
    b.writeUInt16BE(target.port, 8);
    return b;
  }
  const name = Buffer.from(target.domain, 'utf8');
  const b = Buffer.alloc(7 + name.length);
  b.set([5, 1, 0, 3, name.length], 0);
  name.copy(b, 5);
  b.writeUInt16BE(target.port, 5 + name.length);
  return b;
}

/** Length of a complete reply at the start of `buf`, or 0 if more bytes are needed. */
function replyLength(buf: Buffer): number {
  if (buf.length < 5) return 0;
  const atyp = buf[3];
  const len = atyp === 1 ? 10 : atyp === 4 ? 22 : atyp === 3 ? 7 + buf[4]! : 10;
  return buf.length >= len ? len : 0;
}

/**
 * Connect to the SOCKS5 proxy at `port`, greet (no auth), send CONNECT, and read the reply. Resolves
 * with the REP octet and the socket; bytes after the reply are put back (`unshift`). Rejects on a
 * socket error before the reply, or after `timeoutMs`.
 */
export function socksConnect(port: number, target: SocksTarget, timeoutMs = 30_000): Promise<SocksResult> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setNoDelay(true);
    let stage: 'greeting' | 'reply' | 'done' = 'greeting';
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`SOCKS handshake not done within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err?: Error, rep = -1) => {
      if (stage === 'done') return;
      stage = 'done';
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve({ rep, socket });
    };
    const onError = (err: Error) => finish(err);
    const onClose = () => finish(undefined, -1);
    const onData = (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      if (stage === 'greeting') {
        if (buf.length < 2) return;
        if (buf[0] !== 5 || buf[1] !== 0) return finish(new Error(`unexpected method selection ${buf.subarray(0, 2).toString('hex')}`));
        buf = buf.subarray(2);
        stage = 'reply';
        socket.write(socksRequest(target));
      }
      if (stage === 'reply') {
        const n = replyLength(buf);
        if (n === 0) return;
        const rep = buf[1]!;
        const rest = buf.subarray(n);
        socket.pause();
        finish(undefined, rep);
        if (rest.length > 0) socket.unshift(rest);
      }
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.once('connect', () => socket.write(Buffer.from([5, 1, 0])));
  });
}

/** Outcome of an HTTP CONNECT through the HTTP proxy front-end. */
export interface HttpConnectResult {
  status: number;
  socket: net.Socket;
}

/** `CONNECT host:port` through the HTTP proxy at `port`; resolves with the status and the socket. */
export function httpConnect(port: number, authority: string, timeoutMs = 30_000): Promise<HttpConnectResult> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const timer = setTimeout(() => finish(new Error(`no CONNECT answer within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err?: Error, status = -1) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve({ status, socket });
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(buf.toString('latin1', 0, end))?.[1] ?? -1);
      const rest = buf.subarray(end + 4);
      socket.pause();
      finish(undefined, status);
      if (rest.length > 0) socket.unshift(rest);
    };
    socket.on('data', onData);
    socket.on('error', (err) => finish(err));
    socket.on('close', () => finish(undefined, -1));
    socket.once('connect', () => socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`));
  });
}
