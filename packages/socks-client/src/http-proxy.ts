import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Admission, type EvictionCause } from './admission.js';
import { resolveHttpProxyConfig, type HttpProxyConfig, type HttpProxyOptions } from './config.js';
import { Counters, peerOf, type ProxyCounters } from './events.js';
import { openTunnel } from './http-connect.js';
import { emitHttp, type HttpContext } from './http-context.js';
import { forwardRequest } from './http-forward.js';
import { rawResponse } from './http-headers.js';
import { endAfterReply } from './linger.js';

/**
 * The optional HTTP proxy front-end: `CONNECT host:port` tunnels and absolute-URI plain-HTTP requests,
 * both through the opener.
 *
 * Built on node:http rather than a hand-rolled parser: llhttp is strict and fuzzed, and node:http
 * already gives us what a proxy must get right: a bound on the header size (431), a headers deadline
 * (408, against slowloris), chunked and length-delimited bodies, 100-continue, and client keep-alive.
 * What a proxy needs beyond that (CONNECT, header rewriting) is small and lives in http-connect.ts and
 * http-forward.ts.
 */
export class HttpProxyServer {
  /** The validated settings in force. */
  readonly config: HttpProxyConfig;
  private readonly server: http.Server;
  private readonly counters = new Counters();
  private readonly admission: Admission<Duplex>;
  private readonly tunnels = new Set<Socket>();
  /** Responses being written per client socket: a parse error then must not write into one. */
  private readonly inFlight = new WeakMap<Duplex, number>();
  /** Per client socket, what to run once its last in-flight response is done (a pipelined CONNECT). */
  private readonly whenIdle = new WeakMap<Duplex, () => void>();
  private closing: Promise<void> | undefined;

  private constructor(config: HttpProxyConfig) {
    this.config = config;
    const ctx: HttpContext = { config, counters: this.counters, tunnels: this.tunnels };
    this.server = http.createServer({
      maxHeaderSize: config.maxHeaderSize,
      headersTimeout: config.headersTimeout,
      requestTimeout: 0, // a proxied upload takes as long as it takes; headersTimeout guards the start
      connectionsCheckingInterval: Math.min(1_000, Math.max(50, Math.floor(config.headersTimeout / 4))),
    });
    this.admission = new Admission(config);
    // No server.maxConnections: at the limit a new connection evicts the oldest one still waiting for
    // its request headers (see onConnection), where node:net would refuse it.
    this.server.on('connection', (socket: Socket) => this.onConnection(socket));
    this.server.on('request', (req, res) => {
      const socket = req.socket;
      this.admission.established(socket);
      this.inFlight.set(socket, (this.inFlight.get(socket) ?? 0) + 1);
      res.once('close', () => {
        const left = (this.inFlight.get(socket) ?? 1) - 1;
        this.inFlight.set(socket, left);
        const next = left === 0 ? this.whenIdle.get(socket) : undefined;
        if (next) {
          this.whenIdle.delete(socket);
          next();
        } else if (left === 0 && !socket.destroyed) {
          // idle keep-alive: waiting for the next request's headers is a handshake again
          this.admission.handshaking(socket, socket.remoteAddress ?? '', (cause) => this.evict(socket, cause));
        }
      });
      forwardRequest(req, res, ctx);
    });
    this.server.on('connect', (req, socket: Socket, head) => {
      this.admission.established(socket);
      this.onConnect(req, socket, head, ctx);
    });
    this.server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => this.onClientError(err, socket));
  }

  /** Validate `options`, start listening, and resolve once the port is bound. Throws ConfigError or the listen error. */
  static async listen(options: HttpProxyOptions): Promise<HttpProxyServer> {
    const server = new HttpProxyServer(resolveHttpProxyConfig(options));
    await server.bind();
    return server;
  }

  /** The bound address and port. */
  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Counters since listen (a snapshot). */
  stats(): ProxyCounters {
    return this.counters.snapshot(this.admission.counts().handshakes);
  }

  /**
   * Stop accepting new clients (the port is released at once; idle keep-alive clients are closed);
   * requests and CONNECT tunnels in progress go on until they finish or `close()` drops them. For a
   * graceful shutdown. Idempotent.
   */
  stopListening(): void {
    if (this.server.listening) this.server.close();
  }

  /** Stop listening and drop every client connection and tunnel (pending opens are aborted). Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
      for (const socket of this.tunnels) socket.destroy();
    });
    return this.closing;
  }

  private bind(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.config.port, this.config.host, () => {
        this.server.off('error', onError);
        this.server.on('error', () => {}); // none expected once bound
        resolve();
      });
    });
  }

  /** Runs after node:http's own listener has attached its parser; nothing has been read yet. */
  private onConnection(socket: Socket): void {
    if (!this.admission.admit(socket, socket.remoteAddress ?? '', (cause) => this.evict(socket, cause))) {
      // every slot holds a connection with a request in progress or a tunnel: refuse, as node:net's maxConnections would
      this.counters.dropped++;
      socket.destroy();
      return;
    }
    this.counters.accepted++;
    this.counters.active++;
    socket.once('close', () => {
      this.counters.active--;
      this.admission.release(socket);
    });
  }

  /** The Admission evicted `socket` (its slot is already free): no request of its is in progress. */
  private evict(socket: Duplex, cause: EvictionCause): void {
    this.counters.evicted++;
    const { maxHandshakes, maxHandshakesPerAddress, maxConnections } = this.config;
    const address = (socket as Socket).remoteAddress ?? 'this address';
    const limit =
      cause === 'address'
        ? `more than ${maxHandshakesPerAddress} waiting for request headers from ${address}`
        : cause === 'total'
          ? `more than ${maxHandshakes} waiting for request headers`
          : `all ${maxConnections} connections taken`;
    emitHttp(
      { config: this.config, counters: this.counters, tunnels: this.tunnels },
      { type: 'client-error', proxy: 'http', client: peerOf(socket as Socket), state: 'headers', message: `evicted: ${limit}` },
    );
    socket.destroy();
  }

  /**
   * A CONNECT pipelined behind requests whose responses are still being written must wait for them:
   * node:http hands the socket over at once, and the CONNECT's answer (or the tunnel's bytes) written
   * now would come before those responses, so the client would take them for the earlier requests'.
   */
  private onConnect(req: http.IncomingMessage, socket: Socket, head: Buffer, ctx: HttpContext): void {
    if ((this.inFlight.get(socket) ?? 0) === 0) {
      openTunnel(req, socket, head, ctx);
      return;
    }
    socket.on('error', () => {}); // node:http stopped listening; a reset ends in 'close' and the responses' 'close'
    this.tunnels.add(socket); // closed with the server, like a tunnel
    socket.once('close', () => this.tunnels.delete(socket));
    this.whenIdle.set(socket, () => {
      // A response that ended the connection (Connection: close, an error) leaves nothing to tunnel through.
      if (socket.destroyed || !socket.writable) {
        socket.destroy();
        return;
      }
      socket.setTimeout(0); // node:http's keep-alive timer, armed when the last response finished
      openTunnel(req, socket, head, ctx);
    });
  }

  /** A request node:http could not parse, too large a header, or a headers timeout: answer if we can, then close. */
  private onClientError(err: Error & { code?: string }, socket: Duplex): void {
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy(); // the client went away: not a protocol error
      return;
    }
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    this.counters.clientErrors++;
    emitHttp(
      { config: this.config, counters: this.counters, tunnels: this.tunnels },
      {
        type: 'client-error',
        proxy: 'http',
        client: peerOf(socket as Socket),
        state: 'headers',
        message: `${status}: ${err.code ?? ''} ${err.message}`.trim(),
      },
    );
    if ((this.inFlight.get(socket) ?? 0) > 0) {
      socket.destroy(); // a response is being written on this socket; another would corrupt it
      return;
    }
    endAfterReply(socket as Socket, rawResponse(status, `gkd: ${status === 431 ? `request headers exceed ${this.config.maxHeaderSize} bytes` : err.message}`));
  }
}
