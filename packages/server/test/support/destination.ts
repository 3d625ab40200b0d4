import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';

/** What a test destination saw on one accepted connection. */
export interface DestinationLog {
  socket: net.Socket;
  /** Every byte received, in order. */
  chunks: Buffer[];
  /** Resolves when the peer's FIN arrived or the socket closed. */
  ended: Promise<void>;
  received(): Buffer;
}

/** A loopback destination that records every connection it accepts and every byte it receives. */
export interface RecordingDestination {
  server: net.Server;
  host: string;
  port: number;
  /** One entry per accepted connection, in accept order (the sentinels of `settle` excluded). */
  logs: DestinationLog[];
  /** The `index`-th connection's log, once it has been accepted. */
  connection(index: number): Promise<DestinationLog>;
  /**
   * Prove, without sleeping, that every connection made so far has been accepted and logged: connect a
   * sentinel and wait until the destination accepts it. The kernel's accept queue is FIFO, so a dial
   * made before the sentinel is in `logs` by then. Returns `logs.length`.
   */
  settle(): Promise<number>;
  close(): Promise<void>;
}

/** How the destination answers a connection (it is recorded whatever it does). */
export type Behaviour = (socket: net.Socket, log: DestinationLog) => void;

/** Reply with the sha256 (hex) of everything received, after the peer's FIN; then FIN. */
export const replySha256: Behaviour = (socket, log) => {
  void log.ended.then(() => {
    if (!socket.destroyed && socket.writable) socket.end(sha256(log.received()));
  });
};

/** Echo every byte back; FIN after the peer's FIN. */
export const echo: Behaviour = (socket) => {
  socket.pipe(socket);
};

/** Sentinels of `settle` connect from this address, so the destination tells them from real dials. */
const SENTINEL_V4 = '127.0.0.9';

/** Listen on `host`, port 0 (or `port`), with `behaviour`; half-open sockets are allowed so a FIN can be answered. */
export async function recordingDestination(behaviour: Behaviour = replySha256, host = '127.0.0.1', port = 0): Promise<RecordingDestination> {
  const logs: DestinationLog[] = [];
  const sockets = new Set<net.Socket>();
  const waiters: (() => void)[] = [];
  let sentinelsSeen = 0;
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    if (socket.remoteAddress === SENTINEL_V4 && host !== SENTINEL_V4) {
      sentinelsSeen++;
      socket.destroy();
    } else {
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      const ended = new Promise<void>((resolve) => {
        socket.once('end', resolve);
        socket.once('close', resolve);
      });
      const log: DestinationLog = { socket, chunks, ended, received: () => Buffer.concat(chunks) };
      logs.push(log);
      behaviour(socket, log);
    }
    for (const w of waiters.splice(0)) w();
  });
  server.listen({ host, port });
  await once(server, 'listening');
  const next = () => new Promise<void>((r) => waiters.push(r));
  return {
    server,
    host,
    port: (server.address() as net.AddressInfo).port,
    logs,
    async connection(index) {
      while (logs.length <= index) await next();
      return logs[index]!;
    },
    async settle() {
      if (net.isIPv6(host)) throw new Error('settle() needs an IPv4 destination');
      const target = sentinelsSeen + 1;
      const sentinel = net.connect({ host, port: (server.address() as net.AddressInfo).port, localAddress: SENTINEL_V4 });
      sentinel.on('error', () => undefined);
      while (sentinelsSeen < target) await next();
      sentinel.destroy();
      return logs.length;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Resolves once `log` has received at least `n` bytes; rejects if the connection ends first. */
export function receivedAtLeast(log: DestinationLog, n: number): Promise<void> {
  const total = () => log.chunks.reduce((a, c) => a + c.length, 0);
  return new Promise((resolve, reject) => {
    const check = () => {
      if (total() >= n) done();
      else if (log.socket.readableEnded || log.socket.destroyed) done(new Error(`destination got ${total()} bytes, expected at least ${n}`));
    };
    const done = (err?: Error) => {
      log.socket.off('data', check).off('end', check).off('close', check);
      if (err) reject(err);
      else resolve();
    };
    // Listeners run in order: the recording one (added at accept) has counted a chunk before `check` runs.
    log.socket.on('data', check).on('end', check).on('close', check);
    check();
  });
}

/** sha256 (hex) of `data`. */
export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}
