import type { Duplex } from 'node:stream';
import { PrefaceDecoder, encodePreface, type BadPrefaceError } from '@gkd/protocol';

/** Write the routing preface (PROTOCOL.md §4.1) as the first bytes of a tunnel, before TLS. */
export function writePreface(socket: Duplex, token: Buffer): void {
  socket.write(encodePreface(token));
}

/**
 * Read the routing preface from the start of `socket`. On success the socket is left paused with the
 * bytes that followed the preface put back (unshift), so TLS or the frame decoder sees the stream from
 * the first byte after it; whoever reads next calls `resume()` (or wraps it in TLS). Returns a function
 * that stops reading (after a timeout or an eviction); the caller owns timers and closing.
 */
export function readPreface(socket: Duplex, onToken: (token: Buffer) => void, onError: (err: BadPrefaceError) => void): () => void {
  const decoder = new PrefaceDecoder();
  const stop = () => {
    socket.pause();
    socket.off('data', onData);
  };
  const onData = (chunk: Buffer) => {
    let r: ReturnType<typeof decoder.push>;
    try {
      r = decoder.push(chunk);
    } catch (err) {
      stop();
      onError(err as BadPrefaceError);
      return;
    }
    if (!r) return;
    stop();
    if (r.rest.length > 0) socket.unshift(r.rest);
    onToken(r.token);
  };
  socket.on('data', onData);
  return stop;
}
