import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { formatAddress, type Address } from '@gkd/protocol';
import { toDestination } from './destination.js';
import { msSince, peerOf } from './events.js';
import { classifyOpenError } from './failure.js';
import { PROXY_AUTHENTICATE } from './http-auth.js';
import { authorize, emitHttp, reportOpenFailure, type HttpContext } from './http-context.js';
import { endToEndHeaders } from './http-headers.js';
import { openWithin } from './opener.js';

/**
 * Forward one absolute-URI request (`GET http://host:port/path HTTP/1.1`) through the opener.
 *
 * The request line is rewritten to origin-form, hop-by-hop and Proxy-* headers are dropped and Host is
 * set from the URI. Upstream, each request gets its own proxied connection and `Connection: close`
 * (simple and correct; no upstream pooling). The client side keeps node:http's keep-alive, since the
 * response is re-framed for the client.
 */
export function forwardRequest(req: IncomingMessage, res: ServerResponse, ctx: HttpContext): void {
  const client = peerOf(req.socket);
  if (!authorize(ctx, req, client)) {
    respond(res, 407, 'gkd: proxy authentication required', { 'Proxy-Authenticate': PROXY_AUTHENTICATE });
    return;
  }
  let url: URL;
  let destination: Address;
  try {
    const target = req.url ?? '';
    if (!/^http:\/\//i.test(target)) {
      throw new RangeError('this is a proxy: send an absolute http:// URI, or CONNECT host:port for anything else');
    }
    url = new URL(target);
    destination = toDestination(url.hostname, url.port === '' ? 80 : Number(url.port));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    ctx.counters.clientErrors++;
    emitHttp(ctx, { type: 'client-error', proxy: 'http', client, state: 'request', message });
    respond(res, 400, `gkd: ${message}`);
    return;
  }

  let phase: 'opening' | 'forwarding' | 'done' = 'opening';
  const controller = new AbortController();
  res.once('close', () => {
    if (phase !== 'opening') return;
    phase = 'done';
    ctx.counters.cancelled++;
    controller.abort(new Error('client connection closed'));
  });
  const started = performance.now();
  openWithin(ctx.config.opener, destination, ctx.config.openTimeout, controller.signal).then(
    (remote) => {
      if (phase !== 'opening') {
        remote.on('error', () => {});
        remote.destroy();
        return;
      }
      phase = 'forwarding';
      ctx.counters.opened++;
      emitHttp(ctx, { type: 'opened', proxy: 'http', client, destination: formatAddress(destination), ms: msSince(started) });
      sendUpstream(req, res, url, remote);
    },
    (err: unknown) => {
      if (phase !== 'opening') return;
      phase = 'done';
      const failure = classifyOpenError(err);
      reportOpenFailure(ctx, client, destination, failure, started);
      respond(res, failure.status, `gkd: cannot reach ${formatAddress(destination)}: ${failure.kind}`);
    },
  );
}

/** Send the rewritten request over `remote` and relay the response. */
function sendUpstream(req: IncomingMessage, res: ServerResponse, url: URL, remote: Duplex): void {
  const upstream = http.request({
    createConnection: () => remote as never, // node:http accepts any Duplex here
    method: req.method,
    path: `${url.pathname}${url.search}`,
    headers: [...endToEndHeaders(req.rawHeaders), ...bodyFraming(req), 'Host', url.host, 'Connection', 'close'],
    setHost: false,
  });
  upstream.on('response', (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.statusMessage || undefined, endToEndHeaders(answer.rawHeaders));
    answer.on('error', () => res.destroy()); // cut mid-body: the client must see a broken response, not a short one
    answer.pipe(res);
  });
  upstream.on('error', (err) => {
    if (!res.headersSent) respond(res, 502, `gkd: upstream request failed: ${err.message}`);
    else res.destroy();
  });
  res.once('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}

/**
 * The framing header the upstream request needs for the client's body. Content-Length travels end to
 * end as it is; a chunked body must be said to be chunked, because node:http sends the body of a GET,
 * HEAD, DELETE, OPTIONS or TRACE unframed unless told (it only chunks other methods by default), and an
 * unframed body would reach the origin as the start of a second request (smuggling).
 */
function bodyFraming(req: IncomingMessage): string[] {
  // llhttp accepts a request's Transfer-Encoding only with chunked last, and never beside Content-Length.
  return req.headers['transfer-encoding'] !== undefined ? ['Transfer-Encoding', 'chunked'] : [];
}

/** A short text response; the client connection is closed after it (no unread request body to drain). */
function respond(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = `${message}\n`;
  res.writeHead(status, { ...headers, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), Connection: 'close' });
  res.end(body);
}
