import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { formatAddress, type Address } from '@gkd/protocol';
import type { HttpProxyConfig } from './config.js';
import { emitSafely, msSince, type Counters, type ProxyEvent } from './events.js';
import type { OpenFailure } from './failure.js';
import { proxyAuthorized } from './http-auth.js';

/** What the HTTP proxy's request and tunnel handlers share with their server. */
export interface HttpContext {
  readonly config: HttpProxyConfig;
  readonly counters: Counters;
  /** CONNECT sockets, which node:http no longer tracks once handed over; closed with the server. */
  readonly tunnels: Set<Socket>;
}

/** Report an event through the configured hook. */
export function emitHttp(ctx: HttpContext, event: ProxyEvent): void {
  emitSafely(ctx.config.onEvent, event);
}

/** Check `req`'s proxy credentials; on failure count it and report it (the caller answers 407). */
export function authorize(ctx: HttpContext, req: IncomingMessage, client: string): boolean {
  if (proxyAuthorized(req, ctx.config.auth)) return true;
  ctx.counters.authFailures++;
  emitHttp(ctx, { type: 'client-error', proxy: 'http', client, state: 'auth', message: 'proxy authentication missing or wrong' });
  return false;
}

/** Count and report a failed open (the caller answers with `failure.status`). */
export function reportOpenFailure(ctx: HttpContext, client: string, destination: Address, failure: OpenFailure, started: number): void {
  ctx.counters.failed[failure.kind]++;
  emitHttp(ctx, {
    type: 'open-failed',
    proxy: 'http',
    client,
    destination: formatAddress(destination),
    kind: failure.kind,
    reply: failure.status,
    message: failure.message,
    ms: msSince(started),
  });
}
