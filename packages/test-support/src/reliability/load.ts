/**
 * Load through the SOCKS front-end, from raw sockets: many concurrent echo streams checked byte for
 * byte (sha256 of what was sent against sha256 of what came back), idle streams held open, downloads
 * from the `source` destination, and probes of a destination that resets.
 */
import { createHash } from 'node:crypto';
import type * as net from 'node:net';
import { BLOCK, patternSha256, percentile, streamBlock } from '../data.js';
import { socksConnect } from './socks.js';

/** One echo stream's outcome. */
export interface StreamOutcome {
  index: number;
  ok: boolean;
  /** From the TCP connect to the proxy until the echo's end was read and checked, in ms. */
  ms: number;
  error?: string;
}

/** Summary of an echo load. */
export interface EchoLoadResult {
  streams: number;
  bytesPerStream: number;
  ok: number;
  failures: StreamOutcome[];
  p50: number;
  p99: number;
  max: number;
  /** Wall time of the whole load, in ms. */
  wallMs: number;
}

/**
 * Send `bytes` to the echo destination through SOCKS on one raw socket, read the echo, and compare
 * the sha256 of both directions. Resolves with the outcome (never rejects).
 */
export async function echoStream(socksPort: number, echoPort: number, index: number, bytes: number, timeoutMs: number): Promise<StreamOutcome> {
  const t0 = performance.now();
  let socket: net.Socket | undefined;
  try {
    const r = await socksConnect(socksPort, { ipv4: '127.0.0.1', port: echoPort }, timeoutMs);
    socket = r.socket;
    if (r.rep !== 0) throw new Error(`SOCKS REP ${r.rep}`);
    const s = socket;
    const sent = createHash('sha256');
    const reading = readToEnd(s, timeoutMs, 'echo', bytes);
    const { got, received } = reading;
    const done = reading.done;
    let block = 0;
    let off = 0;
    const pump = () => {
      while (off < bytes) {
        const n = Math.min(BLOCK, bytes - off);
        const b = streamBlock(index, block++, n);
        sent.update(b);
        off += n;
        if (!s.write(b)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    pump();
    await done;
    if (received() !== bytes) throw new Error(`echo returned ${received()} bytes, sent ${bytes}`);
    if (got.digest('hex') !== sent.digest('hex')) throw new Error('sha256 of the echo differs from what was sent');
    s.destroy();
    return { index, ok: true, ms: performance.now() - t0 };
  } catch (err) {
    socket?.destroy();
    return { index, ok: false, ms: performance.now() - t0, error: (err as Error).message };
  }
}

/** `streams` echo streams of `bytesPerStream` each, all started at once. */
export async function echoLoad(socksPort: number, echoPort: number, streams: number, bytesPerStream: number, timeoutMs = 120_000): Promise<EchoLoadResult> {
  const t0 = performance.now();
  const outcomes = await Promise.all(Array.from({ length: streams }, (_, i) => echoStream(socksPort, echoPort, i, bytesPerStream, timeoutMs)));
  const times = outcomes.filter((o) => o.ok).map((o) => o.ms);
  return {
    streams,
    bytesPerStream,
    ok: times.length,
    failures: outcomes.filter((o) => !o.ok),
    p50: percentile(times, 50),
    p99: percentile(times, 99),
    max: times.length ? Math.max(...times) : NaN,
    wallMs: performance.now() - t0,
  };
}

/** Idle streams held open through SOCKS. */
export interface IdleStreams {
  sockets: net.Socket[];
  failures: string[];
  /** Time to open them all, in ms. */
  openMs: number;
  /** Sockets that closed while they should have been held. */
  closedEarly(): number;
  close(): void;
}

/** Open `n` streams to the `hold` destination, at most `parallel` handshakes at once, and keep them. */
export async function openIdle(socksPort: number, holdPort: number, n: number, parallel = 256, timeoutMs = 60_000): Promise<IdleStreams> {
  const t0 = performance.now();
  const sockets: net.Socket[] = [];
  const failures: string[] = [];
  let closed = 0;
  let next = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      try {
        const r = await socksConnect(socksPort, { ipv4: '127.0.0.1', port: holdPort }, timeoutMs);
        if (r.rep !== 0) {
          failures.push(`REP ${r.rep}`);
          r.socket.destroy();
          continue;
        }
        r.socket.on('error', () => undefined);
        r.socket.once('close', () => closed++);
        sockets.push(r.socket);
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, n) }, worker));
  return {
    sockets,
    failures,
    openMs: performance.now() - t0,
    closedEarly: () => closed,
    close: () => {
      for (const s of sockets) s.destroy();
    },
  };
}

/** Ask the `source` destination for `size` bytes (8-byte big-endian request). */
export function sourceRequest(size: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(Math.floor(size / 0x1_0000_0000), 0);
  b.writeUInt32BE(size >>> 0, 4);
  return b;
}

/** Download `size` bytes from the source destination through SOCKS; checks the sha256; returns the time in ms. */
export async function download(socksPort: number, sourcePort: number, size: number, timeoutMs = 120_000): Promise<number> {
  const t0 = performance.now();
  const r = await socksConnect(socksPort, { ipv4: '127.0.0.1', port: sourcePort }, timeoutMs);
  if (r.rep !== 0) {
    r.socket.destroy();
    throw new Error(`SOCKS REP ${r.rep}`);
  }
  const s = r.socket;
  const reading = readToEnd(s, timeoutMs, 'download', size);
  s.end(sourceRequest(size));
  await reading.done;
  s.destroy();
  const got = reading.received();
  if (got !== size) throw new Error(`downloaded ${got} bytes, expected ${size}`);
  if (reading.got.digest('hex') !== patternSha256(size)) throw new Error('sha256 of the download differs from the source');
  return performance.now() - t0;
}

/**
 * Open a stream to a destination that resets, and read until the socket ends. With `after` (the
 * `reset` destination): send a byte, read `after` bytes, send another byte (the destination resets
 * on it). Without (`reset-now`): send a byte and read. Resolves with how the SOCKS client saw the end:
 * 'ECONNRESET' (or another error code), or 'end' (a clean FIN: a truncated stream passing for complete).
 */
export async function resetProbe(socksPort: number, resetPort: number, after?: number, timeoutMs = 30_000): Promise<{ how: string; bytes: number }> {
  const r = await socksConnect(socksPort, { ipv4: '127.0.0.1', port: resetPort }, timeoutMs);
  if (r.rep !== 0) {
    r.socket.destroy();
    return { how: `REP ${r.rep}`, bytes: 0 };
  }
  const s = r.socket;
  let bytes = 0;
  let poked = false;
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(`no end within ${timeoutMs} ms`), timeoutMs);
    let done = false;
    const finish = (how: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ how, bytes });
    };
    s.on('data', (d: Buffer) => {
      bytes += d.length;
      if (after !== undefined && bytes >= after && !poked) {
        poked = true;
        s.write('y');
      }
    });
    s.once('end', () => finish('end'));
    s.once('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
    s.once('close', () => finish('close'));
    s.resume();
    s.write('x');
  });
}

/**
 * Hash everything `s` delivers until it ends cleanly: `done` rejects on an error, on a close without
 * an end, or after `timeoutMs`; `received()` counts the bytes so far. Starts reading at once.
 */
function readToEnd(
  s: net.Socket,
  timeoutMs: number,
  what: string,
  expected: number,
): { got: ReturnType<typeof createHash>; received: () => number; done: Promise<void> } {
  const got = createHash('sha256');
  let received = 0;
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} not complete within ${timeoutMs} ms (${received}/${expected} bytes)`)), timeoutMs);
    s.on('data', (d: Buffer) => {
      got.update(d);
      received += d.length;
    });
    s.once('end', () => {
      clearTimeout(timer);
      resolve();
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.once('close', () => {
      clearTimeout(timer);
      reject(new Error(`closed after ${received}/${expected} bytes without an end`));
    });
  });
  s.resume();
  return { got, received: () => received, done };
}
