import type { AddressInfo, Socket } from 'node:net';
import { socksv5 } from './socksv5.js';
import { Admission } from './admission.js';
import { resolveSocksServerConfig, type SocksServerConfig, type SocksServerOptions } from './config.js';
import { Counters, type ProxyCounters } from './events.js';
import { Rep } from './failure.js';
import { authHandler } from './socks-auth.js';
import { SocksConnection } from './socks-connection.js';

/**
 * The local SOCKS5 front-end (RFC 1928 CONNECT, and UDP ASSOCIATE when an associator is configured;
 * RFC 1929 username/password optional). Each CONNECT is handed to the configured opener, each UDP
 * ASSOCIATE to the associator (udp-relay.ts); the reply follows their answer. Built on the
 * socksv5 package (patched, see README) for the wire parsing; the per-client logic is SocksConnection.
 */
export class SocksServer {
  /** The validated settings in force. */
  readonly config: SocksServerConfig;
  private readonly server: socksv5.Server;
  private readonly connections = new Map<Socket, SocksConnection>();
  private readonly counters = new Counters();
  private readonly admission: Admission<Socket>;
  private closing: Promise<void> | undefined;

  private constructor(config: SocksServerConfig) {
    this.config = config;
    this.admission = new Admission(config);
    this.server = socksv5.createServer({
      auths: [
        authHandler(config.auth, {
          methodChosen: (socket) => this.connections.get(socket)?.methodChosen(),
          authDone: (socket, ok, detail) => this.connections.get(socket)?.authDone(ok, detail),
        }),
      ],
    });
    this.server.on('connection', (info, accept, deny, socket) => {
      if (info.cmd !== 'connect' && info.cmd !== 'udp') return deny(Rep.COMMAND_NOT_SUPPORTED); // socksv5 answers BIND itself; kept for safety
      const connection = this.connections.get(socket);
      if (!connection) return deny(Rep.GENERAL_FAILURE);
      connection.request(info, accept, deny);
    });
    this.server.on('clientError', (err, socket) => this.connections.get(socket)?.clientError(err));
    this.server.on('error', () => {}); // listen errors are reported by listen(); none are expected after

    const tcp = this.server._srv;
    // Sockets must stay half-open so a client's FIN can be forwarded while the reply direction goes on.
    (tcp as { allowHalfOpen?: boolean }).allowHalfOpen = true;
    // No tcp.maxConnections: at the limit a new connection evicts the oldest handshake (see adopt),
    // where node:net would refuse it and let idle sockets lock every client out.
    // Runs after socksv5's own listener, which has attached its parser; no data has been read yet.
    tcp.on('connection', (socket: Socket) => this.adopt(socket));
  }

  /** Validate `options`, start listening, and resolve once the port is bound. Throws ConfigError or the listen error. */
  static async listen(options: SocksServerOptions): Promise<SocksServer> {
    const server = new SocksServer(resolveSocksServerConfig(options));
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
   * Stop accepting new clients (the port is released at once); connected clients go on until they
   * finish or `close()` drops them. For a graceful shutdown. Idempotent.
   */
  stopListening(): void {
    if (this.server._srv.listening) this.server._srv.close();
  }

  /** Stop listening and drop every client connection (pending opens are aborted). Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const connection of this.connections.values()) connection.destroy();
    });
    return this.closing;
  }

  private bind(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.config.port, this.config.host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
  }

  private adopt(socket: Socket): void {
    if (socket.destroyed) return;
    let connection: SocksConnection | undefined;
    const admitted = this.admission.admit(socket, socket.remoteAddress ?? '', (cause) => connection?.evict(cause));
    if (!admitted) {
      // every slot holds an established connection: refuse, as node:net's maxConnections would
      this.counters.dropped++;
      socket.destroy();
      return;
    }
    connection = new SocksConnection(socket, { config: this.config, counters: this.counters, admission: this.admission });
    this.connections.set(socket, connection);
    socket.once('close', () => {
      this.connections.delete(socket);
      this.admission.release(socket);
    });
  }
}
