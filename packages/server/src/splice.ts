import type * as net from 'node:net';
import { Reason, StreamResetError } from '@gkd/protocol';
import type { Connection } from '@gkd/transport';

/** Byte counters and a close hook for `splice`. */
export interface SpliceHooks {
  /** Bytes moved from the peer's stream to the destination. */
  onUp?(bytes: number): void;
  /** Bytes moved from the destination to the peer's stream. */
  onDown?(bytes: number): void;
  /** Both sides are finished (once). */
  onClose?(): void;
}

/**
 * Join a gkd stream and a destination socket both ways with backpressure (pipe) and half-close
 * (each side's FIN ends the other's write side only). A destination reset becomes RST
 * CONNECTION_REFUSED on the stream; a stream reset becomes a TCP RST to the destination.
 */
export function splice(conn: Connection, socket: net.Socket, hooks: SpliceHooks = {}): void {
  let closed = false;
  const done = () => {
    if (closed) return;
    closed = true;
    hooks.onClose?.();
  };
  conn.on('data', (d: Buffer) => hooks.onUp?.(d.length));
  socket.on('data', (d: Buffer) => hooks.onDown?.(d.length));
  conn.pipe(socket); // the stream's FIN → socket.end()
  socket.pipe(conn); // the destination's FIN → FIN on the stream
  socket.on('error', (err: NodeJS.ErrnoException) => {
    // ECONNRESET: the destination reset. EPIPE: a write after its reset (once the kernel has reported
    // ECONNRESET to an earlier call, later writes get EPIPE); we never write after our own FIN.
    const reason = err.code === 'ECONNRESET' || err.code === 'EPIPE' ? Reason.CONNECTION_REFUSED : Reason.GENERAL_FAILURE;
    conn.destroy(new StreamResetError(reason, `destination: ${err.code ?? err.message}`));
  });
  conn.on('error', () => {
    if (!socket.destroyed) socket.resetAndDestroy();
  });
  // The stream closes (autoDestroy) once both directions ended, or on error: the splice is over.
  conn.once('close', done);
}
