import type { Socket } from 'node:net';
import { socksv5 } from './socksv5.js';
import type { SocksAuth } from './config.js';
import { sameSecret } from './secret.js';

/** What the auth handlers tell the connection that owns a socket. */
export interface AuthObserver {
  /** The server picked an authentication method for this client (the greeting is over). */
  methodChosen(socket: Socket): void;
  /** The sub-negotiation ended: `ok`, or why not. */
  authDone(socket: Socket, ok: boolean, detail: string | undefined): void;
}

/**
 * The one authentication method the server offers: username/password (0x02) when `auth` is set, else
 * none (0x00). Each wraps socksv5's handler to report progress to the connection's state machine.
 */
export function authHandler(auth: SocksAuth | undefined, observer: AuthObserver): socksv5.AuthHandler {
  const method = auth ? 0x02 : 0x00;
  return {
    METHOD: method,
    server(socket, cb) {
      observer.methodChosen(socket);
      // A fresh socksv5 handler per connection: its sub-negotiation state is then per connection by
      // construction (0.0.6 shared it between connections; see the patch).
      let user = '';
      const inner = auth
        ? socksv5.auth.UserPassword((username, password, done) => {
            user = username;
            done(sameSecret(username, auth.username) && sameSecret(password, auth.password));
          })
        : socksv5.auth.None();
      inner.server(socket, (result) => {
        const ok = result === true;
        const detail = ok ? undefined : result instanceof Error ? result.message : `authentication failed for user ${JSON.stringify(user)}`;
        observer.authDone(socket, ok, detail);
        cb(result);
      });
    },
  };
}
