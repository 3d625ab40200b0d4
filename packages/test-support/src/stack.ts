import { randomBytes } from 'node:crypto';
import { GkdServer, type GkdServerOptions } from '@gkd/server';
import { HttpProxyServer, SocksServer, type Associator, type Opener, type SocksAuth } from '@gkd/socks-client';
import { Client } from '@gkd/transport';
import { startProcessStack, type ProcessStack, type ProcessStackOptions } from './reliability/stack.js';

/** A whole gkd deployment on loopback in this process: server, client with N tunnels, SOCKS5 and HTTP front-ends. */
export interface Stack {
  server: GkdServer;
  client: Client;
  socks: SocksServer;
  http: HttpProxyServer;
  socksPort: number;
  httpPort: number;
  /** Destinations the server opened, as it saw them (`host:port`; a name stays a name). */
  opened: string[];
  close(): Promise<void>;
}

/** The associator the gkd client uses: a UDP ASSOCIATE becomes a transport association. */
export function transportAssociator(client: Client): Associator {
  return async (signal) => {
    const association = await client.associate();
    if (signal?.aborted) {
      association.close();
      throw signal.reason ?? new Error('aborted');
    }
    return association;
  };
}

/** How `startStack` sets up an in-process stack. */
export interface StackOptions {
  /** Client tunnels; default 8. */
  tunnels?: number;
  /** The server's destination policy (default: allow nothing extra, deny nothing extra). */
  allow?: string[];
  deny?: string[];
  socksAuth?: SocksAuth;
  server?: Partial<GkdServerOptions>;
}

/**
 * Start a whole gkd deployment on loopback (ports chosen by the system). Two kinds, one name:
 * - `startStack({ tunnels, allow, … })`: every part in this process (a `Stack`), for end-to-end tests
 *   through the SOCKS5 and HTTP ports;
 * - `startStack({ users, clients, … })`: every part in its own process (a `ProcessStack`: the server,
 *   the destinations, one client process per user), for the reliability suite, which measures each
 *   process's memory and survives a crash of any of them.
 */
export function startStack(opts?: StackOptions): Promise<Stack>;
export function startStack(opts: ProcessStackOptions): Promise<ProcessStack>;
export function startStack(opts: StackOptions | ProcessStackOptions = {}): Promise<Stack | ProcessStack> {
  return 'users' in opts ? startProcessStack(opts) : startInProcess(opts);
}

async function startInProcess(opts: StackOptions): Promise<Stack> {
  const key = randomBytes(32);
  const server = await GkdServer.start({ listen: '127.0.0.1:0', key, allow: opts.allow ?? [], deny: opts.deny ?? [], ...opts.server });
  const opened: string[] = [];
  server.on('open', (e: { destination: string }) => opened.push(e.destination));
  const client = await Client.connect(`127.0.0.1:${server.address().port}`, { key, tunnels: opts.tunnels ?? 8 });
  const opener: Opener = (destination, signal) => client.open(destination, { signal });
  const associator = transportAssociator(client);
  const socks = await SocksServer.listen({ host: '127.0.0.1', port: 0, opener, associator, ...(opts.socksAuth ? { auth: opts.socksAuth } : {}) });
  const http = await HttpProxyServer.listen({ host: '127.0.0.1', port: 0, opener });
  return {
    server,
    client,
    socks,
    http,
    socksPort: socks.address().port,
    httpPort: http.address().port,
    opened,
    async close() {
      await socks.close();
      await http.close();
      client.close();
      await server.close();
    },
  };
}
