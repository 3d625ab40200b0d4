import type { Socket } from 'node:net';
import type { HttpProxyConfig } from './config.js';
import { emitSafely, type Counters, type ProxyEvent } from './events.js';

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
