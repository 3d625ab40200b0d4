import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';

/**
 * The SOCKS5 wire parser: the server half of socksv5 0.0.6, vendored with gkd's fixes in
 * `vendor/socksv5` (see its README). It is loaded by path from this package, never from a registry,
 * so the fixes hold however @gkd/socks-client was installed. `src/` and `dist/` sit at the same depth,
 * so the path is the same for the source and the compiled file. Only what this package uses is typed.
 */
export declare namespace socksv5 {
  /** A parsed SOCKS5 request. `dstAddr` is a dotted quad, a full 8-group IPv6 text, or the domain name. */
  interface RequestInfo {
    cmd: 'connect' | 'bind' | 'udp';
    srcAddr: string | undefined;
    srcPort: number | undefined;
    dstAddr: string;
    dstPort: number;
  }

  /** An authentication method: `server` runs the sub-negotiation and calls `cb(true)` to let the request through. */
  interface AuthHandler {
    METHOD: number;
    server(stream: Socket, cb: (result: boolean | Error) => void): void;
  }

  /**
   * Sends the success reply (05 00 00 01 0.0.0.0:0, or `reply` when given: UDP ASSOCIATE names its relay)
   * and hands back the client socket; undefined if it is no longer writable.
   */
  type Accept = (intercept: true, reply?: Buffer) => Socket | undefined;
  /** Sends a full failure reply with REP = `rep` (0x01–0x08, default 0x02) and ends the socket. */
  type Deny = (rep?: number) => void;

  interface ServerOptions {
    auths?: AuthHandler[];
    debug?: (message: string) => void;
  }

  interface Server extends EventEmitter {
    /** The net.Server underneath (a vendored copy, so this internal is ours to rely on). */
    readonly _srv: NetServer;
    maxConnections: number;
    useAuth(handler: AuthHandler): this;
    listen(port: number, host: string, callback?: () => void): this;
    address(): AddressInfo | string | null;
    close(callback?: (err?: Error) => void): this;
    on(event: 'connection', listener: (info: RequestInfo, accept: Accept, deny: Deny, socket: Socket) => void): this;
    on(event: 'clientError', listener: (err: Error & { rep?: number }, socket: Socket) => void): this;
    on(event: 'error', listener: (err: Error) => void): this;
    on(event: 'listening' | 'close', listener: () => void): this;
  }

  /** What `vendor/socksv5/index.js` exports. */
  interface Module {
    createServer(options?: ServerOptions): Server;
    auth: {
      None(): AuthHandler;
      UserPassword(check: (user: string, password: string, cb: (ok: boolean) => void) => void): AuthHandler;
    };
  }
}

/** The vendored parser (CommonJS, loaded with require so no bundler or test runner rewrites it). */
export const socksv5 = createRequire(import.meta.url)('../vendor/socksv5/index.js') as socksv5.Module;
