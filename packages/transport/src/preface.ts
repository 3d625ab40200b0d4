import type { Duplex } from 'node:stream';
import { PrefaceDecoder, encodePreface, type BadPrefaceError } from '@gkd/protocol';
import { readHead } from './read-head.js';

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
  return readHead(
    socket,
    new PrefaceDecoder(),
    (r) => onToken(r.token),
    (err) => onError(err as BadPrefaceError),
  );
}
