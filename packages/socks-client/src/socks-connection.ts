import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { formatAddress, type Address } from '@gkd/protocol';
import type { socksv5 } from './socksv5.js';
import type { Admission, EvictionCause } from './admission.js';
import { bridge } from './bridge.js';
import type { SocksServerConfig } from './config.js';
import { toDestination } from './destination.js';
import { emitSafely, msSince, peerOf, type Counters, type ProxyEvent } from './events.js';
import { classifyOpenError, Rep } from './failure.js';
import { HOLD_LIMIT, holdInput, type HeldInput } from './held-input.js';
import { endAfterReply } from './linger.js';
import { openWithin } from './opener.js';
import { canMove, type SocksState } from './socks-state.js';

/** What a connection shares with its server. */
export interface SocksConnectionContext {
  readonly config: SocksServerConfig;
  readonly counters: Counters;
  /** Holds this connection's slot; told when the handshake is over (it can then no longer be evicted). */
  readonly admission: Admission<Socket>;
}

/** One client of the SOCKS server, driven by socksv5's events through an explicit state machine. */
export class SocksConnection {
  #state: SocksState = 'greeting';
  /** The client's `address:port`, for events. */
  readonly client: string;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private pendingOpen: AbortController | undefined;
  private held: HeldInput | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly ctx: SocksConnectionContext,
  ) {
    this.client = peerOf(socket);
    ctx.counters.accepted++;
    ctx.counters.active++;
    // Errors end in 'close', handled below; while piping, bridge() also sees them.
    socket.on('error', () => {});
    // The application's own write pattern cannot be seen through a proxy; don't add Nagle delays to it.
    socket.setNoDelay(true);
    socket.once('close', () => this.onClose());
    socket.once('end', () => this.onEnd());
    this.handshakeTimer = setTimeout(() => this.onHandshakeTimeout(), ctx.config.handshakeTimeout);
  }

  /** The current state. */
  get state(): SocksState {
    return this.#state;
  }

  /** socksv5 picked an authentication method: the greeting is over. */
  methodChosen(): void {
    this.move('auth');
  }

  /** The authentication sub-negotiation ended. socksv5 has already answered the client. */
  authDone(ok: boolean, detail: string | undefined): void {
    if (ok) {
      this.move('request');
      return;
    }
    if (this.#state === 'closed') return;
    this.ctx.counters.authFailures++;
    this.report(detail ?? 'authentication failed');
    this.refuse();
  }

  /** socksv5 rejected what the client sent (bad version, no acceptable method, bad command or address type). */
  clientError(err: Error): void {
    if (this.#state === 'closed') return;
    this.ctx.counters.clientErrors++;
    this.report(err.message);
    this.refuse();
  }

  /** A complete CONNECT request: open the destination and answer with the opener's outcome. */
  request(info: socksv5.RequestInfo, accept: socksv5.Accept, deny: socksv5.Deny): void {
    if (this.#state !== 'request') {
      deny(Rep.GENERAL_FAILURE);
      return;
    }
    let destination: Address;
    try {
      destination = toDestination(info.dstAddr, info.dstPort);
    } catch (err) {
      this.ctx.counters.clientErrors++;
      this.report(`bad destination: ${(err as Error).message}`);
      deny(Rep.GENERAL_FAILURE);
      this.refuse();
      return;
    }
    this.move('opening');
    const started = performance.now();
    const controller = new AbortController();
    this.pendingOpen = controller;
    // Read ahead while we wait, so a client that gives up (closes) is noticed and the open aborted.
    this.held = holdInput(this.socket, HOLD_LIMIT, () => this.socket.destroy());
    openWithin(this.ctx.config.opener, destination, this.ctx.config.openTimeout, controller.signal).then(
      (remote) => this.onOpened(remote, accept, destination, started),
      (err: unknown) => this.onOpenFailed(err, deny, destination, started),
    );
  }

  /**
   * The Admission evicted us (its slot is already free) to make room for a newer connection. Only
   * connections not yet opening are evicted: in their handshake, or refused and lingering.
   */
  evict(cause: EvictionCause): void {
    this.ctx.counters.evicted++;
    if (this.#state === 'greeting' || this.#state === 'auth' || this.#state === 'request') {
      const { maxHandshakes, maxHandshakesPerAddress, maxConnections } = this.ctx.config;
      const limit =
        cause === 'address'
          ? `more than ${maxHandshakesPerAddress} handshakes in progress from ${this.socket.remoteAddress ?? 'this address'}`
          : cause === 'total'
            ? `more than ${maxHandshakes} handshakes in progress`
            : `all ${maxConnections} connections taken`;
      this.report(`evicted in the handshake: ${limit}`);
    }
    this.move('closed');
    this.socket.destroy();
  }

  /** Drop the client now (server shutting down). */
  destroy(): void {
    this.socket.destroy();
  }

  private onOpened(remote: Duplex, accept: socksv5.Accept, destination: Address, started: number): void {
    this.pendingOpen = undefined;
    if (this.#state !== 'opening') {
      remote.on('error', () => {});
      remote.destroy();
      return;
    }
    const early = this.releaseHeld();
    const socket = accept(true); // full success reply: 05 00 00 01 0.0.0.0:0
    if (!socket) {
      remote.on('error', () => {});
      remote.destroy();
      this.socket.destroy();
      return;
    }
    this.move('piping');
    this.ctx.counters.opened++;
    this.emit({ type: 'opened', proxy: 'socks', client: this.client, destination: formatAddress(destination), ms: msSince(started) });
    bridge(this.socket, remote);
    for (const chunk of early) remote.write(chunk);
  }

  private onOpenFailed(err: unknown, deny: socksv5.Deny, destination: Address, started: number): void {
    this.pendingOpen = undefined;
    if (this.#state !== 'opening') return; // the client left first: counted as cancelled
    const failure = classifyOpenError(err);
    this.ctx.counters.failed[failure.kind]++;
    this.emit({
      type: 'open-failed',
      proxy: 'socks',
      client: this.client,
      destination: formatAddress(destination),
      kind: failure.kind,
      reply: failure.rep,
      message: failure.message,
      ms: msSince(started),
    });
    this.releaseHeld();
    deny(failure.rep);
    this.refuse();
  }

  private onHandshakeTimeout(): void {
    this.handshakeTimer = undefined;
    if (this.#state !== 'greeting' && this.#state !== 'auth' && this.#state !== 'request') return;
    this.ctx.counters.clientErrors++;
    this.report(`handshake not complete within ${this.ctx.config.handshakeTimeout} ms`);
    this.move('closed');
    this.socket.destroy();
  }

  /** The client sent FIN. Opening, piping and refusing handle it themselves; here it ends a handshake. */
  private onEnd(): void {
    if (this.#state !== 'greeting' && this.#state !== 'auth' && this.#state !== 'request') return;
    if (this.socket.bytesRead > 0) {
      // a port probe that sends nothing is not worth a log line; a truncated handshake is
      this.ctx.counters.clientErrors++;
      this.report('client closed in the middle of the handshake');
    }
    this.move('closed');
    this.socket.destroy();
  }

  private onClose(): void {
    this.ctx.counters.active--;
    if (this.#state === 'opening') this.ctx.counters.cancelled++;
    this.move('closed');
  }

  /** We are done with a client we refused; its reply is queued (see endAfterReply). */
  private refuse(): void {
    this.move('closed');
    endAfterReply(this.socket);
  }

  /** The one place the state changes. Entering `closed` releases everything the connection holds. */
  private move(to: SocksState): boolean {
    if (!canMove(this.#state, to)) return false;
    this.#state = to;
    // A refused client lingering in `closed` keeps its place in the handshake registry: evictable until it is gone.
    if (to === 'opening') this.ctx.admission.established(this.socket);
    if (to === 'opening' || to === 'closed') {
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = undefined;
    }
    if (to === 'closed') {
      this.releaseHeld();
      this.pendingOpen?.abort(new Error('client connection closed'));
      this.pendingOpen = undefined;
    }
    return true;
  }

  private releaseHeld(): Buffer[] {
    const held = this.held;
    this.held = undefined;
    return held ? held.release() : [];
  }

  private report(message: string): void {
    this.emit({ type: 'client-error', proxy: 'socks', client: this.client, state: this.#state, message });
  }

  private emit(event: ProxyEvent): void {
    emitSafely(this.ctx.config.onEvent, event);
  }
}
