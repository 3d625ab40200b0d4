import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { formatAddress, type Address } from '@gkd/protocol';
import { bridge } from './bridge.js';
import { toDestination } from './destination.js';
import { msSince, peerOf } from './events.js';
import { classifyOpenError } from './failure.js';
import { PROXY_AUTHENTICATE } from './http-auth.js';
import { authorize, emitHttp, reportOpenFailure, type HttpContext } from './http-context.js';
import { HOLD_LIMIT, holdInput } from './held-input.js';
import { parseAuthority, rawResponse } from './http-headers.js';
import { endAfterReply } from './linger.js';
import { openWithin } from './opener.js';

/**
 * Handle `CONNECT host:port`: open the destination, answer `200 Connection established` and splice the
 * socket to the opener's duplex; or answer 400/403/407/502/503/504 with a short body and close.
 * `head` is whatever the client sent after the request headers; it is forwarded first.
 */
export function openTunnel(req: IncomingMessage, socket: Socket, head: Buffer, ctx: HttpContext): void {
  const client = peerOf(socket);
  socket.on('error', () => {}); // errors end in 'close'; while piping bridge() also sees them
  ctx.tunnels.add(socket);
  socket.once('close', () => ctx.tunnels.delete(socket));

  if (!authorize(ctx, req, client)) {
    endAfterReply(socket, rawResponse(407, 'gkd: proxy authentication required', { 'Proxy-Authenticate': PROXY_AUTHENTICATE }));
    return;
  }

  let destination: Address;
  try {
    const { host, port } = parseAuthority(req.url ?? '');
    destination = toDestination(host, port);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    ctx.counters.clientErrors++;
    emitHttp(ctx, { type: 'client-error', proxy: 'http', client, state: 'request', message });
    endAfterReply(socket, rawResponse(400, `gkd: ${message}`));
    return;
  }

  let state: 'opening' | 'piping' | 'closed' = 'opening';
  const controller = new AbortController();
  // Read ahead while we wait, so a client that gives up (closes) is noticed and the open aborted.
  const held = holdInput(socket, HOLD_LIMIT, () => socket.destroy());
  socket.once('close', () => {
    if (state !== 'opening') return;
    state = 'closed';
    ctx.counters.cancelled++;
    held.release();
    controller.abort(new Error('client connection closed'));
  });
  const started = performance.now();
  openWithin(ctx.config.opener, destination, ctx.config.openTimeout, controller.signal).then(
    (remote) => {
      if (state !== 'opening') {
        remote.on('error', () => {});
        remote.destroy();
        return;
      }
      state = 'piping';
      const early = [head, ...held.release()].filter((chunk) => chunk.length > 0);
      ctx.counters.opened++;
      emitHttp(ctx, { type: 'opened', proxy: 'http', client, destination: formatAddress(destination), ms: msSince(started) });
      socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
      bridge(socket, remote);
      for (const chunk of early) remote.write(chunk);
    },
    (err: unknown) => {
      if (state !== 'opening') return;
      state = 'closed';
      held.release();
      const failure = classifyOpenError(err);
      reportOpenFailure(ctx, client, destination, failure, started);
      endAfterReply(socket, rawResponse(failure.status, `gkd: cannot reach ${formatAddress(destination)}: ${failure.kind}`));
    },
  );
}
