import { randomBytes } from 'node:crypto';
import type { GkdError } from '@gkd/protocol';
import { Client, type ClientOptions, type Connection } from '@gkd/transport';
import { GkdServer, type GkdServerOptions, type ResolvedAddress, type Resolver } from '../../src/index.js';
import { sha256, type RecordingDestination } from './destination.js';

/** Things to undo after each test, last first. Call `runCleanups` from `afterEach`. */
const cleanups: (() => unknown)[] = [];

export function defer(fn: () => unknown): void {
  cleanups.push(fn);
}

export async function runCleanups(): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c();
}

/** A fresh 256-bit key. */
export function newKey(): Buffer {
  return randomBytes(32);
}

/** Start a GkdServer on 127.0.0.1, port 0, closed after the test. */
export async function startServer(options: Omit<GkdServerOptions, 'listen'> & { listen?: GkdServerOptions['listen'] }): Promise<GkdServer> {
  const server = await GkdServer.start({ listen: '127.0.0.1:0', ...options });
  defer(() => server.close());
  return server;
}

/** `Client.connect` to `server`, closed after the test. */
export async function connectClient(server: GkdServer, options: ClientOptions): Promise<Client> {
  const client = await Client.connect(`127.0.0.1:${server.address().port}`, options);
  defer(() => client.close());
  return client;
}

/** Collect a stream's bytes until its end (rejects on 'error'). */
export async function readAll(conn: Connection): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of conn) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Open `dest` through `client`, send `payload` and FIN, and return what came back. With the default
 * destination behaviour (replySha256) that is the sha256 of what the destination received.
 */
export async function transfer(client: Client, dest: { host: string; port: number }, payload: Buffer): Promise<string> {
  const conn = await client.open(dest);
  const reply = readAll(conn);
  conn.end(payload);
  return (await reply).toString();
}

/** Open through `client` to a destination that replies with sha256: asserts nothing, returns true if the bytes matched. */
export async function roundTripOk(client: Client, dest: RecordingDestination | { host: string; port: number }, size = 1024): Promise<boolean> {
  const payload = randomBytes(size);
  return (await transfer(client, dest, payload)) === sha256(payload);
}

/** The error a promise rejects with (fails the test if it resolves). */
export async function rejection(p: Promise<unknown>): Promise<GkdError> {
  try {
    await p;
  } catch (err) {
    return err as GkdError;
  }
  throw new Error('expected a rejection');
}

/** A resolver from a table (name → addresses), recording every query. Unknown names: ENOTFOUND. */
export function tableResolver(table: Record<string, string[]>): Resolver & { queries: string[] } {
  const queries: string[] = [];
  const resolve: Resolver = async (name) => {
    queries.push(name);
    const addrs = table[name];
    if (!addrs) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return addrs.map((address): ResolvedAddress => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  const resolver = Object.assign(resolve, { queries });
  return resolver;
}

/**
 * Resolves with the arguments of the first `event` on `emitter` that `match` accepts. Listens from the
 * call on (one listener for the whole wait), so events emitted back to back are not missed.
 */
export function eventWhere<T extends unknown[]>(emitter: NodeJS.EventEmitter, event: string, match: (...args: T) => boolean = () => true): Promise<T> {
  return new Promise((resolve) => {
    const listener = (...args: unknown[]) => {
      if (!match(...(args as T))) return;
      emitter.off(event, listener);
      resolve(args as T);
    };
    emitter.on(event, listener);
  });
}
