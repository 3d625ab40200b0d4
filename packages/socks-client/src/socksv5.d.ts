/**
 * Local type declarations for socksv5 0.0.6 as patched by patches/socksv5@0.0.6.patch (root of the
 * monorepo). Only what @gkd/socks-client uses is declared. The package is CommonJS; import its
 * default export (module.exports).
 */
declare module 'socksv5' {
  import type { EventEmitter } from 'node:events';
  import type { AddressInfo, Server as NetServer, Socket } from 'node:net';

  namespace socksv5 {
    /** A parsed SOCKS5 request. `dstAddr` is a dotted quad, a full 8-group IPv6 text (patched), or the domain name. */
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

    /** Sends the success reply (05 00 00 01 0.0.0.0:0) and hands back the client socket; undefined if it is no longer writable. */
    type Accept = (intercept: true) => Socket | undefined;
    /** Sends a full failure reply with REP = `rep` (0x01–0x08, default 0x02) and ends the socket (patched). */
    type Deny = (rep?: number) => void;

    interface ServerOptions {
      auths?: AuthHandler[];
      debug?: (message: string) => void;
    }

    interface Server extends EventEmitter {
      /** The net.Server underneath (socksv5 0.0.6 internals; the version is pinned and patched). */
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

    function createServer(options?: ServerOptions): Server;

    const auth: {
      None(): AuthHandler;
      UserPassword(check: (user: string, password: string, cb: (ok: boolean) => void) => void): AuthHandler;
    };
  }

  export = socksv5;
}
