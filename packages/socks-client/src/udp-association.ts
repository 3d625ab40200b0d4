import type { Address } from '@gkd/protocol';

/**
 * One UDP association on the far side (the gkd transport's `Association` in production). Datagrams are
 * unreliable: `send` returns false when one was dropped. Events: 'datagram' (source: Address,
 * payload: Buffer) for each reply; 'close' (error or undefined) once it ended, from either side.
 */
export interface DatagramAssociation {
  readonly open: boolean;
  send(destination: Address, payload: Buffer): boolean;
  close(): void;
  on(event: 'datagram', listener: (source: Address, payload: Buffer) => void): this;
  on(event: 'close', listener: (err?: Error) => void): this;
  once(event: 'close', listener: (err?: Error) => void): this;
}

/**
 * Opens a UDP association for one SOCKS5 UDP ASSOCIATE. Rejects like an Opener (NoTunnelError,
 * SessionLostError, …) when it cannot. `signal` aborts when the client went away first.
 */
export type Associator = (signal?: AbortSignal) => Promise<DatagramAssociation>;
