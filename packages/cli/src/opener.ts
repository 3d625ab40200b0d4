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
 * Each proxied connection becomes `client.open(destination, { signal })`: when the proxy stops
 * waiting (its `signal` aborts) the transport cancels the open on the wire, so nothing leaks.
 */
export function clientOpener(client: Client): GatedOpener {
  let closed = false;
  const open = async (destination: Address, signal?: AbortSignal): Promise<Duplex> => {
    if (closed) throw new ClosedError('gkd is shutting down');
    return client.open(destination, { signal });
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
