import type { Duplex } from 'node:stream';
import { ClosedError, type Address } from '@gkd/protocol';
import type { Associator, Opener } from '@gkd/socks-client';
import type { Client } from '@gkd/transport';

/** The opener the local proxies use, with a switch to refuse new opens while the process drains. */
export interface GatedOpener {
  readonly open: Opener;
  /** UDP ASSOCIATE: `client.associate()`, refused the same way once closed. */
  readonly associate: Associator;
  /** From now on every open fails with ClosedError (the proxies answer "general failure"). */
  close(): void;
}

/**
 * Each proxied connection becomes `client.open(destination)`. If the proxy stopped waiting (its
 * `signal` aborted) by the time the server answered, the connection is destroyed and the abort
 * reason rethrown, so nothing leaks.
 */
export function clientOpener(client: Client): GatedOpener {
  let closed = false;
  const open = async (destination: Address, signal?: AbortSignal): Promise<Duplex> => {
    if (closed) throw new ClosedError('gkd is shutting down');
    const connection = await client.open(destination);
    if (signal?.aborted) {
      connection.destroy();
      throw signal.reason;
    }
    return connection;
  };
  const associate: Associator = async (signal) => {
    if (closed) throw new ClosedError('gkd is shutting down');
    const association = await client.associate();
    if (signal?.aborted) {
      association.close();
      throw signal.reason;
    }
    return association;
  };
  return {
    open,
    associate,
    close: () => {
      closed = true;
    },
  };
}
