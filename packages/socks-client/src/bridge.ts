import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Pipe a client socket and the opener's duplex both ways until both are done.
 *
 * - Backpressure: `pipe` pauses the source while the destination's buffer is full.
 * - Half-close: the client's FIN ends the remote's writable side while we keep reading from the remote;
 *   the remote's end ends the client socket. (The client socket must allow half-open.)
 * - Failure: an error, or a close before both directions ended, on either side destroys the other. The
 *   client is reset (TCP RST) when the remote side fails, so a truncated download is never mistaken
 *   for a complete one.
 *
 * `onDone` runs once both sides have closed, with the first error seen, if any.
 */
export function bridge(client: Socket, remote: Duplex, onDone?: (err?: Error) => void): void {
  let firstError: Error | undefined;
  let open = 2;
  const closed = (): void => {
    if (--open === 0) onDone?.(firstError);
  };
  const resetClient = (): void => {
    if (!client.destroyed) client.resetAndDestroy();
  };
  client.on('error', (err) => {
    firstError ??= err;
    remote.destroy();
  });
  remote.on('error', (err) => {
    firstError ??= err;
    resetClient();
  });
  client.once('close', () => {
    if (!endedBothWays(client)) remote.destroy();
    closed();
  });
  remote.once('close', () => {
    if (!endedBothWays(remote)) resetClient();
    closed();
  });
  client.pipe(remote);
  remote.pipe(client);
}

function endedBothWays(stream: Duplex): boolean {
  return stream.readableEnded && stream.writableFinished;
}
