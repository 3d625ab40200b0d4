import type { Duplex } from 'node:stream';
import { ProxyHeaderDecoder, type ProxyHeader, type ProxyHeaderError } from '@gkd/protocol';
import { readHead } from './read-head.js';

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
  const stop = readHead(
    socket,
    decoder,
    (r, more) => onHeader(r.header, more),
    (err) => onError(err as ProxyHeaderError),
  );
  return { stop, decoder };
}
