/**
 * The reliability suite's deployment on loopback, every part in its own process: a gkd server, the
 * destinations, and one gkd client (with SOCKS5 and HTTP proxy ports) per legitimate user.
 */
import { randomBytes } from 'node:crypto';
import type { ServerLimits } from '@gkd/server';
import type { SessionConfig } from '@gkd/transport';
import type { ClientRoleConfig } from './child.js';
import { DENY_ALL_BUT_LOOPBACK, startClient, startDestination, startServer, type ClientChild, type DestinationChild, type ServerChild } from './proc.js';

export interface ProcessStackOptions {
  /** Users of the server; each gets a fresh key. The first `clients` users get a client process. */
  users: string[];
  /** Client processes to start, for the first users, with these settings. */
  clients: {
    user: string;
    tunnels: number;
    gated?: boolean;
    session?: Partial<SessionConfig>;
    socks?: ClientRoleConfig['socks'];
    http?: ClientRoleConfig['http'];
  }[];
  limits?: Partial<ServerLimits>;
  /** Server session settings. */
  session?: Partial<SessionConfig>;
  /** Destination: bytes the `reset` destination sends before it resets. */
  resetAfterBytes?: number;
}

export interface ProcessStack {
  server: ServerChild;
  destination: DestinationChild;
  clients: Map<string, ClientChild>;
  keys: Record<string, Buffer>;
  ports: DestinationChild['ready']['ports'];
  serverPort: number;
  /** Start one more client process for `user` (e.g. mid-test). */
  addClient(c: ProcessStackOptions['clients'][number], name?: string): Promise<ClientChild>;
  /** Stop every process; returns the ones that had died before (crashes), with their stderr. */
  close(): Promise<string[]>;
}

/** Start the stack in processes; call it as `startStack({ users, clients, … })` (../stack.ts). */
export async function startProcessStack(o: ProcessStackOptions): Promise<ProcessStack> {
  const keys = Object.fromEntries(o.users.map((u) => [u, randomBytes(32)]));
  const destination = await startDestination(o.resetAfterBytes ? { resetAfterBytes: o.resetAfterBytes } : {});
  const ports = destination.ready.ports;
  // The canary is allowed but only ever named by frames that follow a failed handshake; `forbidden`
  // listens but is denied; everything else off loopback is denied, so a fuzzed OPEN dials nothing real.
  const allow = (['echo', 'source', 'hold', 'reset', 'reset-now', 'canary'] as const).map((k) => `127.0.0.1:${ports[k]}`);
  const server = await startServer({
    users: Object.fromEntries(Object.entries(keys).map(([u, k]) => [u, k.toString('hex')])),
    allow,
    deny: [...DENY_ALL_BUT_LOOPBACK],
    safeResolver: true,
    ...(o.limits ? { limits: o.limits } : {}),
    ...(o.session ? { session: o.session } : {}),
  });
  server.sample();
  const clients = new Map<string, ClientChild>();
  const addClient = async (c: ProcessStackOptions['clients'][number], name = `client:${c.user}`) => {
    const child = await startClient(
      {
        serverPort: server.ready.port,
        key: keys[c.user]!.toString('hex'),
        user: c.user,
        tunnels: c.tunnels,
        ...(c.gated ? { gated: true } : {}),
        ...(c.session ? { session: c.session } : {}),
        ...(c.socks ? { socks: c.socks } : {}),
        ...(c.http ? { http: c.http } : {}),
      },
      name,
    );
    child.sample();
    await child.call('waitTunnels', c.tunnels);
    clients.set(name, child);
    return child;
  };
  for (const c of o.clients) await addClient(c);
  return {
    server,
    destination,
    clients,
    keys,
    ports,
    serverPort: server.ready.port,
    addClient,
    async close() {
      const all = [...clients.values(), server, destination];
      const crashed = all.filter((c) => c.crashed).map((c) => `${c.name}: ${c.stderr}`);
      await Promise.all(all.map((c) => c.stop()));
      return crashed;
    },
  };
}

/** The first client process of the stack (for single-client scenarios). */
export function firstClient(stack: ProcessStack): ClientChild {
  const c = stack.clients.values().next().value;
  if (!c) throw new Error('the stack has no client');
  return c;
}
