import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { addressLength, formatAddress, toAddress, writeAddress, type Address } from '@gkd/protocol';
import type { socksv5 } from './socksv5.js';
import type { Admission, EvictionCause } from './admission.js';
import { bridge } from './bridge.js';
import type { SocksServerConfig } from './config.js';
import { toDestination } from './destination.js';
import { emitSafely, msSince, peerOf, type Counters, type ProxyEvent } from './events.js';
import { classifyOpenError, Rep } from './failure.js';
import { HOLD_LIMIT, holdInput, type HeldInput } from './held-input.js';
import { endAfterReply } from './linger.js';
import { OpenTimeoutError, openWithin } from './opener.js';
import type { DatagramAssociation } from './udp-association.js';
import { isUnspecified, plainHost, UdpRelay, type RelayClient } from './udp-relay.js';
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

  /** A complete CONNECT (or UDP ASSOCIATE) request: open the destination and answer with the opener's outcome. */
  request(info: socksv5.RequestInfo, accept: socksv5.Accept, deny: socksv5.Deny): void {
    if (this.#state !== 'request') {
      deny(Rep.GENERAL_FAILURE);
      return;
    }
    if (info.cmd === 'udp') {
      void this.associate(info, accept, deny);
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
   * UDP ASSOCIATE (RFC 1928 §7): open an association through the associator, bind a relay socket on the
   * address the client reached us on, and reply with that socket's address. The association lives as
   * long as this TCP connection (or until it idles out, or the far side closes it).
   */
  private async associate(info: socksv5.RequestInfo, accept: socksv5.Accept, deny: socksv5.Deny): Promise<void> {
    const associator = this.ctx.config.associator;
    if (!associator) {
      this.ctx.counters.clientErrors++;
      this.report('UDP ASSOCIATE is not enabled on this proxy');
      deny(Rep.COMMAND_NOT_SUPPORTED);
      this.refuse();
      return;
    }
    // The client named where its datagrams will come from; 0.0.0.0 / :: means "from this connection's host".
    let named: Address | undefined;
    try {
      named = toAddress(info.dstAddr, 0);
    } catch {
      named = undefined;
    }
    const client: RelayClient = {
      host: named && named.type !== 'domain' && !isUnspecified(named.host) ? plainHost(named.host) : plainHost(this.socket.remoteAddress ?? ''),
      port: info.dstPort,
    };
    this.move('opening');
    const started = performance.now();
    const controller = new AbortController();
    this.pendingOpen = controller;
    this.held = holdInput(this.socket, HOLD_LIMIT, () => this.socket.destroy());
    const timeout = this.ctx.config.openTimeout;
    const timer = setTimeout(() => controller.abort(new OpenTimeoutError(timeout)), timeout);
    let association: DatagramAssociation | undefined;
    let relay: UdpRelay | undefined;
    try {
      const asked = associator(controller.signal);
      // One that arrives after we stopped waiting is closed at once.
      asked.then(
        (a) => controller.signal.aborted && a.close(),
        () => undefined,
      );
      association = await Promise.race([
        asked,
        new Promise<never>((_, reject) => controller.signal.addEventListener('abort', () => reject(controller.signal.reason as Error), { once: true })),
      ]);
      if (controller.signal.aborted) throw controller.signal.reason;
      relay = await UdpRelay.start({
        host: this.socket.localAddress ?? '127.0.0.1',
        control: this.socket,
        association,
        client,
        counters: this.ctx.counters,
        idleTimeout: this.ctx.config.udpIdleTimeout,
      });
    } catch (err) {
      clearTimeout(timer);
      this.pendingOpen = undefined;
      association?.close();
      if (this.#state !== 'opening') return; // the client left first
      this.onOpenFailed(err, deny, 'UDP ASSOCIATE', started);
      return;
    }
    clearTimeout(timer);
    this.pendingOpen = undefined;
    if (this.#state !== 'opening') {
      relay.close();
      return;
    }
    this.releaseHeld(); // nothing a client sends on the control connection means anything: discarded below
    const bound = relay.address();
    const bnd = toAddress(plainHost(bound.address), bound.port);
    const reply = Buffer.alloc(3 + addressLength(bnd));
    reply.set([0x05, Rep.SUCCEEDED, 0x00]);
    writeAddress(reply, 3, bnd);
    if (!accept(true, reply)) {
      relay.close();
      this.socket.destroy();
      return;
    }
    this.move('relaying');
    this.socket.on('data', () => {});
    this.socket.once('end', () => relay.close());
    this.socket.resume();
    this.emit({ type: 'udp-associated', proxy: 'socks', client: this.client, relay: formatAddress(bnd) });
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

  private onOpenFailed(err: unknown, deny: socksv5.Deny, destination: Address | 'UDP ASSOCIATE', started: number): void {
    this.pendingOpen = undefined;
    if (this.#state !== 'opening') return; // the client left first: counted as cancelled
    const failure = classifyOpenError(err);
    this.ctx.counters.failed[failure.kind]++;
    this.emit({
      type: 'open-failed',
      proxy: 'socks',
      client: this.client,
      destination: typeof destination === 'string' ? destination : formatAddress(destination),
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
