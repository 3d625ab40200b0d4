import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { OpenFailedError, Reason, type Address } from '@gkd/protocol';
import type { Opener } from '../src/index.js';

/** An HTTP origin on loopback serving `/blob` (random bytes), `/echo` (request line and headers as JSON) and `/upload` (sha256 of the body). */
export interface Origin {
  port: number;
  blob: Buffer;
  blobSha: string;
  /** Every request the origin received: method, url, raw headers. */
  requests: { method: string; url: string; rawHeaders: string[] }[];
  close(): Promise<void>;
}

export async function startOrigin(host = '127.0.0.1', blobBytes = 4 * 1024 * 1024, blob?: Buffer): Promise<Origin> {
  const data = blob ?? randomBytes(blobBytes);
  const requests: Origin['requests'] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', rawHeaders: req.rawHeaders });
    if (req.url === '/blob') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length });
      res.end(data);
    } else if (req.url?.startsWith('/echo')) {
      const body = JSON.stringify({ method: req.method, url: req.url, rawHeaders: req.rawHeaders });
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Hop': 'drop-me', Connection: 'X-Hop' });
      res.end(body);
    } else if (req.url === '/upload') {
      const hash = createHash('sha256');
      req.on('data', (c: Buffer) => hash.update(c));
      req.on('end', () => res.end(hash.digest('hex')));
    } else {
      res.writeHead(404);
      res.end('not found');
    }
  });
  server.listen(0, host);
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    blob: data,
    blobSha: sha256(data),
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A Duplex that is not a net.Socket (as the transport's streams are not), carrying a socket's bytes
 * with backpressure and half-close.
 */
export class PlainDuplex extends Duplex {
  private sawEnd = false;
  constructor(private readonly socket: Socket) {
    super({ allowHalfOpen: true });
    socket.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on('end', () => {
      this.sawEnd = true;
      this.push(null);
    });
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => {
      if (!this.sawEnd && !this.destroyed) this.destroy(new Error('remote socket closed'));
    });
  }
  override _read(): void {
    this.socket.resume();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }
  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }
}

/** A fake opener that dials directly with node:net; records every destination and signal it was given. */
export interface FakeOpener {
  opener: Opener;
  calls: { destination: Address; signal: AbortSignal | undefined }[];
}

/**
 * Dial the destination itself, or `redirect[host]` when given (no DNS here: names map to literals).
 * Connection errors become OpenFailedError with the matching reason, as the gkd server would send.
 */
export function directOpener(redirect: Record<string, string> = {}): FakeOpener {
  const calls: FakeOpener['calls'] = [];
  const opener: Opener = (destination, signal) => {
    calls.push({ destination, signal });
    const host = redirect[destination.host] ?? destination.host;
    if (net.isIP(host) === 0) return Promise.reject(new OpenFailedError(Reason.HOST_UNREACHABLE, `no test mapping for ${host}`));
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port: destination.port, allowHalfOpen: true });
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        resolve(new PlainDuplex(socket));
      });
      socket.once('error', (err: NodeJS.ErrnoException) =>
        reject(new OpenFailedError(err.code === 'ECONNREFUSED' ? Reason.CONNECTION_REFUSED : Reason.GENERAL_FAILURE, err.message)),
      );
    });
  };
  return { opener, calls };
}

/** An opener that always fails with OpenFailedError(reason). */
export function failingOpener(reason: number): FakeOpener {
  const calls: FakeOpener['calls'] = [];
  return {
    calls,
    opener: (destination, signal) => {
      calls.push({ destination, signal });
      return Promise.reject(new OpenFailedError(reason, 'test'));
    },
  };
}

/** An opener that never answers; `called` resolves on its first call, `aborted` with the abort reason when its signal aborts. */
export function silentOpener(): FakeOpener & { called: Promise<void>; aborted: Promise<unknown> } {
  const calls: FakeOpener['calls'] = [];
  let onAbort!: (reason: unknown) => void;
  let onCall!: () => void;
  const aborted = new Promise<unknown>((resolve) => (onAbort = resolve));
  const called = new Promise<void>((resolve) => (onCall = resolve));
  return {
    calls,
    called,
    aborted,
    opener: (destination, signal) => {
      calls.push({ destination, signal });
      signal?.addEventListener('abort', () => onAbort(signal.reason));
      onCall();
      return new Promise(() => {});
    },
  };
}

/** An opener that answers with `duplex` (once). */
export function fixedOpener(duplex: Duplex): FakeOpener {
  const calls: FakeOpener['calls'] = [];
  return {
    calls,
    opener: (destination, signal) => {
      calls.push({ destination, signal });
      return Promise.resolve(duplex);
    },
  };
}

export interface CurlResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Run /usr/bin/curl with `args` (silent, errors shown); never throws on a non-zero exit. */
export function curl(args: string[], timeoutMs = 30_000): Promise<CurlResult> {
  return new Promise((resolve) => {
    execFile(
      '/usr/bin/curl',
      ['--silent', '--show-error', '--noproxy', '', ...args],
      { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
        resolve({ code, stdout, stderr: stderr.toString() });
      },
    );
  });
}

/** Connect a raw TCP socket to 127.0.0.1:`port`. */
export async function connectRaw(port: number, host = '127.0.0.1'): Promise<Socket> {
  const socket = net.connect({ port, host, allowHalfOpen: true });
  await once(socket, 'connect');
  return socket;
}

/** Read exactly `n` bytes from `socket` (rejects if it ends first). */
export function readBytes(socket: Socket, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length >= n) {
        cleanup();
        if (buf.length > n) socket.unshift(buf.subarray(n));
        resolve(buf.subarray(0, n));
      }
    };
    const onEnd = (): void => {
      cleanup();
      reject(new Error(`socket ended after ${buf.length} of ${n} bytes: ${buf.toString('hex')}`));
    };
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.pause();
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
    socket.resume();
  });
}

/**
 * Everything `socket` sends until it closes (errors such as ECONNRESET end it too); `error` is the
 * socket error, if any. Like an ordinary client, we close our side when the server closes its side.
 */
export function readAll(socket: Socket): Promise<{ data: Buffer; error: NodeJS.ErrnoException | undefined }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let error: NodeJS.ErrnoException | undefined;
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('end', () => socket.end());
    socket.on('error', (err) => (error = err));
    socket.once('close', () => resolve({ data: Buffer.concat(chunks), error }));
    socket.resume();
  });
}

/** A SOCKS5 CONNECT request for `host:port` (IPv4, IPv6 or domain by the host's form). */
export function connectRequest(host: string, port: number, cmd = 0x01): Buffer {
  let addr: Buffer;
  if (net.isIPv4(host)) addr = Buffer.from([0x01, ...host.split('.').map(Number)]);
  else if (net.isIPv6(host)) addr = Buffer.concat([Buffer.from([0x04]), ipv6Bytes(host)]);
  else addr = Buffer.concat([Buffer.from([0x03, Buffer.byteLength(host)]), Buffer.from(host)]);
  const portBuf = Buffer.alloc(2);
  portBuf.writeUInt16BE(port);
  return Buffer.concat([Buffer.from([0x05, cmd, 0x00]), addr, portBuf]);
}

function ipv6Bytes(host: string): Buffer {
  const [head, tail] = host.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(parseInt(g, 16), i * 2);
  return out;
}

/** Greet with method 0x00 and send a CONNECT; resolves with the 10-byte reply. */
export async function socksConnect(socket: Socket, host: string, port: number): Promise<Buffer> {
  socket.write(Buffer.from([0x05, 0x01, 0x00]));
  const method = await readBytes(socket, 2);
  if (method[1] !== 0x00) throw new Error(`method reply ${method.toString('hex')}`);
  socket.write(connectRequest(host, port));
  return readBytes(socket, 10);
}

/** Whether this machine can listen on the IPv6 loopback. */
export async function hasIPv6Loopback(): Promise<boolean> {
  const server = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '::1', () => resolve());
    });
    server.close();
    return true;
  } catch {
    return false;
  }
}
