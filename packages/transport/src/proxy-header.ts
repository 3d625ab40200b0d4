import type { Duplex } from 'node:stream';
import { ProxyHeaderDecoder, type ProxyHeader, type ProxyHeaderError } from '@gkd/protocol';

/**
 * Read a PROXY protocol header (v1 or v2) from the start of `socket`, the way `readPreface` reads the
 * routing preface: on success the socket is left paused with the bytes after the header put back
 * (unshift), and `onHeader` gets the header and whether any such bytes came with it. Returns a function
 * that stops reading; the caller owns timers and closing.
 */
export function readProxyHeader(
  socket: Duplex,
  onHeader: (header: ProxyHeader, more: boolean) => void,
  onError: (err: ProxyHeaderError) => void,
): { stop: () => void; decoder: ProxyHeaderDecoder } {
  const decoder = new ProxyHeaderDecoder();
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
      onError(err as ProxyHeaderError);
      return;
    }
    if (!r) return;
    stop();
    if (r.rest.length > 0) socket.unshift(r.rest);
    onHeader(r.header, r.rest.length > 0);
  };
  socket.on('data', onData);
  return { stop, decoder };
}
