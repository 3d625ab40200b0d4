import type { Socket } from 'node:net';

/** Default for how many bytes to hold from a client while its open is pending, in bytes. */
export const HOLD_LIMIT = 64 * 1024;

/**
 * Bytes a client sent before its proxied connection was open, held in memory until it is.
 * RFC 1928 clients wait for the reply before sending, so little arrives here; past `limit` bytes the
 * socket is paused and the kernel's buffers push back on the client.
 */
export interface HeldInput {
  /** Stop holding: the socket is left paused and the held chunks are returned, oldest first. */
  release(): Buffer[];
}

/**
 * Read from `socket` into memory (up to `limit` bytes) while an open is pending, so that an end of
 * input (the client closed or was cancelled) is seen at once and reported through `onEnd`.
 */
export function holdInput(socket: Socket, limit: number, onEnd: () => void): HeldInput {
  const chunks: Buffer[] = [];
  let bytes = 0;
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    bytes += chunk.length;
    if (bytes >= limit) socket.pause();
  };
  socket.on('data', onData);
  socket.once('end', onEnd);
  socket.resume();
  return {
    release(): Buffer[] {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.pause();
      return chunks.splice(0);
    },
  };
}
