import type { Socket } from 'node:net';

/** How long a refused client may take to read its reply and close before it is dropped, in ms. */
export const LINGER = 2_000;

/**
 * End `socket` after `reply` (if any) and drop it once the client has closed its side, or after
 * LINGER ms. Meanwhile its input is read and discarded: closing a socket with unread input makes the
 * kernel send a TCP RST, which can destroy the reply before the client reads it.
 */
export function endAfterReply(socket: Socket, reply?: string | Buffer): void {
  if (socket.destroyed) return;
  const timer = setTimeout(() => socket.destroy(), LINGER);
  socket.once('close', () => clearTimeout(timer));
  socket.on('data', () => {});
  socket.once('end', () => socket.destroy());
  socket.resume();
  if (!socket.writableEnded) {
    if (reply === undefined) socket.end();
    else socket.end(reply);
  }
}
