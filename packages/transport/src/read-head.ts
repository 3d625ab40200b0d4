import type { Duplex } from 'node:stream';

/** A pure decoder of a header at the start of a stream: null until complete, then the result and the bytes after it; throws on bad input. */
export interface HeadDecoder<R extends { rest: Buffer }> {
  push(chunk: Buffer): R | null;
}

/**
 * Read a header from the start of `socket` with `decoder` (the routing preface, a PROXY protocol
 * header). On success the socket is left paused with the bytes after the header put back (unshift), so
 * whoever reads next (TLS, the frame decoder, the next header) sees the stream from the first byte
 * after it, and calls `resume()`. Returns a function that stops reading; the caller owns timers and
 * closing.
 */
export function readHead<R extends { rest: Buffer }>(
  socket: Duplex,
  decoder: HeadDecoder<R>,
  onHead: (result: R, more: boolean) => void,
  onError: (err: Error) => void,
): () => void {
  const stop = () => {
    socket.pause();
    socket.off('data', onData);
  };
  const onData = (chunk: Buffer) => {
    let r: R | null;
    try {
      r = decoder.push(chunk);
    } catch (err) {
      stop();
      onError(err as Error);
      return;
    }
    if (!r) return;
    stop();
    if (r.rest.length > 0) socket.unshift(r.rest);
    onHead(r, r.rest.length > 0);
  };
  socket.on('data', onData);
  return stop;
}
