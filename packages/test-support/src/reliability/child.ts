/**
 * One process of the reliability suite, chosen by argv[2]; its JSON config is argv[3]. Started by
 * `lib/proc.ts` with `fork` (TypeScript through tsx), so the gkd server and client run in processes of
 * their own: their RSS can be measured (/proc/<pid>/status), and a crash shows as an exit code and
 * stderr instead of taking the test runner down.
 *
 * Every role sends `{ ready: {...} }` once it listens, and answers `{ id, cmd, args }` with
 * `{ id, result }` or `{ id, error }`. It exits when the parent disconnects. It installs no
 * 'uncaughtException' handler on purpose: an uncaught exception must kill it, visibly.
 *
 * Roles:
 *   server       GkdServer on 127.0.0.1:0 (users, policy, limits, session from the config).
 *   client       gkd Client (N tunnels, each killable, optionally black-holeable) with a SOCKS5 and an
 *                HTTP proxy front-end on 127.0.0.1:0.
 *   destination  loopback destinations, each on its own port: echo, source, hold, reset, reset-now,
 *                canary, forbidden; it counts the connections each one accepted.
 */
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { hostname } from 'node:os';
import type { Duplex } from 'node:stream';
import { GkdServer, systemResolver, type Resolver, type ServerLimits } from '@gkd/server';
import { HttpProxyServer, SocksServer, type Opener } from '@gkd/socks-client';
import { Client, duplexPair, type PeerInfo, type SessionConfig } from '@gkd/transport';
import { patternBytes } from '../data.js';

// biome-ignore lint/suspicious/noExplicitAny: IPC arguments are structured-clone data each handler reads as it expects.
type Handler = (args: any) => unknown;
const handlers = new Map<string, Handler>();

process.on('message', (m: { id: number; cmd: string; args?: unknown }) => {
  const h = handlers.get(m.cmd);
  if (!h) {
    process.send?.({ id: m.id, error: `unknown command ${m.cmd}` });
    return;
  }
  Promise.resolve()
    .then(() => h(m.args))
    .then(
      (result) => process.send?.({ id: m.id, result }),
      (err: unknown) => process.send?.({ id: m.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    );
});
process.on('disconnect', () => process.exit(0));
handlers.set('memory', () => process.memoryUsage());
/** Memory after a full collection (needs --expose-gc): what is really live. */
handlers.set('gcMemory', () => {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage();
});
handlers.set('exit', () => setImmediate(() => process.exit(0)));

function count(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

// ---------------------------------------------------------------------------------------- server

/** Config of the `server` role. Keys are hex. */
export interface ServerRoleConfig {
  users: Record<string, string>;
  allow: string[];
  deny: string[];
  limits?: Partial<ServerLimits>;
  session?: Partial<SessionConfig>;
  /** Resolve only names that cannot leave the machine (hosts file, numeric forms); others ENOTFOUND. */
  safeResolver?: boolean;
  connectTimeout?: number;
}

/** Names in /etc/hosts, the machine's own name, and numeric forms getaddrinfo parses itself. */
function loopbackOnlyResolver(): Resolver & { refused: () => number } {
  const known = new Set<string>(['localhost', hostname().toLowerCase()]);
  try {
    for (const line of readFileSync('/etc/hosts', 'utf8').split('\n')) {
      const words = line.replace(/#.*/, '').trim().split(/\s+/);
      for (const w of words.slice(1)) if (w) known.add(w.toLowerCase());
    }
  } catch {
    /* no hosts file: only localhost */
  }
  let refused = 0;
  // inet_aton forms: 1–4 parts, each decimal, octal (leading 0) or hex (0x…): 127.1, 2130706433, 0x7f000001.
  const numeric = /^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$/i;
  const r = (async (name: string, signal: AbortSignal) => {
    const n = name.toLowerCase().replace(/\.$/, '');
    if (n.endsWith('.slow.test')) {
      // A resolver that takes 3 s, then fails: keeps a dial pending (for tests of what happens meanwhile).
      await new Promise((resolve) => setTimeout(resolve, 3000));
      refused++;
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    }
    if (known.has(n) || numeric.test(n)) return systemResolver(name, signal);
    refused++;
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name} (the reliability suite resolves loopback names only)`), { code: 'ENOTFOUND' });
  }) as Resolver & { refused: () => number };
  r.refused = () => refused;
  return r;
}

async function runServer(c: ServerRoleConfig): Promise<void> {
  const resolver = c.safeResolver === false ? undefined : loopbackOnlyResolver();
  const server = await GkdServer.start({
    listen: '127.0.0.1:0',
    users: Object.fromEntries(Object.entries(c.users).map(([u, k]) => [u, Buffer.from(k, 'hex')])),
    allow: c.allow,
    deny: c.deny,
    ...(c.limits ? { limits: c.limits } : {}),
    ...(c.session ? { session: c.session } : {}),
    ...(c.connectTimeout ? { connectTimeout: c.connectTimeout } : {}),
    ...(resolver ? { resolver } : {}),
  });
  const refused: Record<string, number> = {};
  const sessionsStarted: Record<string, number> = {};
  const sessionsEnded: Record<string, number> = {};
  const tunnelsDown: Record<string, number> = {};
  server.on('refused', (_addr: string, err: { reason?: number; code?: string }) => count(refused, `${err.code ?? 'ERR'}:${err.reason ?? '-'}`));
  server.on('session', (p: PeerInfo) => count(sessionsStarted, p.user));
  server.on('session-end', (p: PeerInfo) => count(sessionsEnded, p.user));
  /** Tunnels closed, by error code and wire reason (e.g. `GKD_ERR_LIMIT:21`). */
  const tunnelsDownWhy: Record<string, number> = {};
  server.on('tunnel-down', (p: PeerInfo, _index: number, err?: { reason?: number; code?: string }) => {
    count(tunnelsDown, p.user);
    count(tunnelsDownWhy, `${err?.code ?? 'none'}:${err?.reason ?? '-'}`);
  });
  server.on('error', (err: Error) => process.stderr.write(`server error event: ${err.stack ?? err.message}\n`));
  // GKD_CHILD_EVENTS=1: failed opens on stderr, for diagnosis.
  if (process.env.GKD_CHILD_EVENTS)
    server.on('open-failed', (e: unknown) => process.stderr.write(`${JSON.stringify({ server: 'open-failed', ...(e as object) })}\n`));

  handlers.set('stats', () => {
    const st = server.stats();
    const peers = server.transport.peers();
    return {
      sessions: st.sessions,
      handshaking: st.handshaking,
      peers: st.peers.map((s, i) => ({
        user: peers[i]?.user ?? '?',
        id: s.id,
        tunnelsUp: s.tunnelsUp,
        tunnels: s.tunnels.length,
        streamsOpen: s.streamsOpen,
        recvBudgetUsed: s.recvBudgetUsed,
        sendBudgetUsed: s.sendBudgetUsed,
        buffered: s.streams.reduce((a, x) => a + x.buffered, 0),
        unacked: s.streams.reduce((a, x) => a + x.unacked, 0),
        maxStreamBuffered: s.streams.reduce((a, x) => Math.max(a, x.buffered), 0),
        maxStreamWindow: s.streams.reduce((a, x) => Math.max(a, x.window), 0),
        queued: s.tunnels.reduce((a, t) => a + t.queued, 0),
        unconfirmed: s.tunnels.reduce((a, t) => a + t.unconfirmed, 0),
        held: s.heldFrames,
        resentFrames: s.resentFrames,
        bytesIn: s.bytesIn,
        bytesOut: s.bytesOut,
      })),
      counters: server.counters,
      refused,
      sessionsStarted,
      sessionsEnded,
      tunnelsDown,
      tunnelsDownWhy,
      resolverRefused: resolver?.refused() ?? 0,
      memory: process.memoryUsage(),
    };
  });
  /** Close the server (GkdServer.close) and exit: shows whether closing with dials pending is clean. */
  handlers.set('close', async () => {
    await server.close();
    setTimeout(() => process.exit(0), 200);
    return true;
  });
  /** Live streams (at most `limit`), for diagnosing a stall. */
  handlers.set('streams', (limit = 20) =>
    server.stats().peers.map((s) => ({ id: s.id, budgets: [s.recvBudgetUsed, s.sendBudgetUsed], tunnels: s.tunnels, streams: s.streams.slice(0, limit) })),
  );
  process.send?.({ ready: { port: server.address().port } });
}

// ---------------------------------------------------------------------------------------- client

/** Config of the `client` role. */
export interface ClientRoleConfig {
  serverPort: number;
  key: string;
  user: string;
  tunnels: number;
  session?: Partial<SessionConfig>;
  openTimeout?: number;
  /** Route every tunnel through an in-process gate so it can be black-holed (costs a copy per chunk). */
  gated?: boolean;
  socks?: { maxConnections?: number; handshakeTimeout?: number; openTimeout?: number };
  http?: { maxConnections?: number; headersTimeout?: number; maxHeaderSize?: number; openTimeout?: number };
}

/** A tunnel's socket, and (when gated) the switch that silently drops its bytes both ways. */
interface Link {
  socket: net.Socket;
  blackholed: boolean;
}

/** Join a duplex (the Client's end) to a real socket through a gate that can drop everything. */
function gate(inner: Duplex, socket: net.Socket, link: Link): void {
  const forward = (from: Duplex, to: Duplex) => {
    from.on('data', (d: Buffer) => {
      if (link.blackholed) return;
      if (!to.write(d)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    from.on('end', () => {
      if (!link.blackholed) to.end();
    });
  };
  forward(inner, socket);
  forward(socket, inner);
  inner.on('error', () => undefined);
  inner.once('close', () => {
    if (!link.blackholed) socket.destroy();
  });
  socket.once('close', () => {
    if (!link.blackholed) inner.destroy();
  });
}

async function runClient(c: ClientRoleConfig): Promise<void> {
  const links = new Set<Link>();
  let refusing = false;
  const connect = (): Promise<Duplex> =>
    new Promise((resolve, reject) => {
      if (refusing) {
        reject(Object.assign(new Error('link is down (black-holed by the test)'), { code: 'ECONNREFUSED' }));
        return;
      }
      const socket = net.connect({ host: '127.0.0.1', port: c.serverPort });
      const timer = setTimeout(() => socket.destroy(new Error('connect timeout')), 10_000);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        socket.on('error', () => undefined);
        const link: Link = { socket, blackholed: false };
        links.add(link);
        socket.once('close', () => links.delete(link));
        if (!c.gated) {
          resolve(socket);
          return;
        }
        const [clientEnd, inner] = duplexPair();
        gate(inner, socket, link);
        resolve(clientEnd);
      });
    });
  const client = Client.create(`127.0.0.1:${c.serverPort}`, {
    key: Buffer.from(c.key, 'hex'),
    user: c.user,
    tunnels: c.tunnels,
    connect,
    ...(c.session ? { session: c.session } : {}),
    ...(c.openTimeout ? { openTimeout: c.openTimeout } : {}),
  });
  let tunnelDowns = 0;
  let sessionsLost = 0;
  client.on('tunnel-down', () => tunnelDowns++);
  client.on('session-lost', () => sessionsLost++);
  await client.waitForTunnel(20_000);
  const opener: Opener = (destination, signal) => client.open(destination, { signal });
  // GKD_CHILD_EVENTS=1: the front-ends' events (failed opens, client errors) on stderr, for diagnosis.
  const onEvent = process.env.GKD_CHILD_EVENTS ? (e: { type: string }) => e.type !== 'opened' && process.stderr.write(`${JSON.stringify(e)}\n`) : undefined;
  const socks = await SocksServer.listen({ host: '127.0.0.1', port: 0, opener, ...c.socks, ...(onEvent ? { onEvent } : {}) });
  const http = await HttpProxyServer.listen({ host: '127.0.0.1', port: 0, opener, ...c.http });

  handlers.set('stats', () => {
    const s = client.stats();
    return {
      tunnelsUp: client.tunnelsUp,
      tunnelDowns,
      sessionsLost,
      streamsOpen: s.streamsOpen,
      recvBudgetUsed: s.recvBudgetUsed,
      sendBudgetUsed: s.sendBudgetUsed,
      resentFrames: s.resentFrames,
      buffered: s.streams.reduce((a, x) => a + x.buffered, 0),
      bytesIn: s.bytesIn,
      bytesOut: s.bytesOut,
      tunnelBytesIn: s.tunnels.map((t) => t.bytesIn),
      socks: socks.stats(),
      http: http.stats(),
      memory: process.memoryUsage(),
    };
  });
  handlers.set('waitTunnels', async (n: number) => {
    const end = Date.now() + 20_000;
    while (client.tunnelsUp < n) {
      if (Date.now() > end) throw new Error(`only ${client.tunnelsUp} of ${n} tunnels up after 20 s`);
      await new Promise((r) => client.once('tunnel-up', r));
    }
    return client.tunnelsUp;
  });
  /** Reset (TCP RST) up to `n` live tunnel sockets; the client reconnects them. */
  handlers.set('kill', (n: number) => {
    let killed = 0;
    for (const l of links) {
      if (killed >= n) break;
      if (l.socket.destroyed || l.blackholed) continue;
      l.socket.resetAndDestroy();
      killed++;
    }
    return killed;
  });
  /** Drop every byte of every tunnel both ways from now on, and refuse new tunnels (needs `gated`). */
  handlers.set('blackhole', () => {
    if (!c.gated) throw new Error('blackhole needs a gated client');
    refusing = true;
    for (const l of links) l.blackholed = true;
    return links.size;
  });
  handlers.set('streams', (limit = 20) => {
    const s = client.stats();
    return { budgets: [s.recvBudgetUsed, s.sendBudgetUsed], tunnels: s.tunnels, streams: s.streams.slice(0, limit) };
  });
  process.send?.({ ready: { socksPort: socks.address().port, httpPort: http.address().port } });
}

// ---------------------------------------------------------------------------------------- destination

/** Config of the `destination` role. */
export interface DestinationRoleConfig {
  /** `reset`: bytes to send before resetting (after the first byte received). Default 256 KiB. */
  resetAfterBytes?: number;
}

/** The destination kinds, one port each. */
export const DESTINATIONS = ['echo', 'source', 'hold', 'reset', 'reset-now', 'canary', 'forbidden'] as const;
export type DestinationKind = (typeof DESTINATIONS)[number];

async function runDestination(c: DestinationRoleConfig): Promise<void> {
  const accepted: Record<string, number> = {};
  const open: Record<string, number> = {};
  const peakOpen: Record<string, number> = {};
  const ports: Record<string, number> = {};
  const sockets = new Set<net.Socket>();
  const behave: Record<DestinationKind, (s: net.Socket) => void> = {
    // Echo everything, FIN after the client's FIN.
    echo: (s) => s.pipe(s),
    // Read an 8-byte size, send that many pattern bytes, FIN; discard anything else.
    source: (s) => {
      let head = Buffer.alloc(0);
      const onData = (d: Buffer) => {
        head = Buffer.concat([head, d]);
        if (head.length < 8) return;
        s.off('data', onData);
        s.on('data', () => undefined);
        const size = head.readUInt32BE(0) * 0x1_0000_0000 + head.readUInt32BE(4);
        writePattern(s, size);
      };
      s.on('data', onData);
    },
    // Accept and hold: read and discard, never answer.
    hold: (s) => s.resume(),
    // Mid-stream reset: on the client's first bytes, send some; on its next bytes (it has read ours),
    // reset the connection (TCP RST). The RST then arrives alone, so the gkd server's socket sees it.
    reset: (s) => {
      let chunks = 0;
      s.on('data', () => {
        if (chunks++ === 0) s.write(patternBytes(c.resetAfterBytes ?? 256 * 1024));
        else s.resetAndDestroy();
      });
    },
    // A reset right behind the data: on this platform the reader may see a clean end instead (libuv
    // reports EOF on POLLHUP after a partial read, libuv#2319); measured and reported, not asserted.
    'reset-now': (s) => {
      s.once('data', () => {
        s.resume();
        s.write(patternBytes(c.resetAfterBytes ?? 256 * 1024), () => s.resetAndDestroy());
      });
    },
    // Allowed by the policy but only ever named by unauthenticated frames: must never be dialed.
    canary: (s) => s.resume(),
    // Listening, but denied by the server's policy: must never be dialed.
    forbidden: (s) => s.resume(),
  };
  for (const kind of DESTINATIONS) {
    accepted[kind] = 0;
    open[kind] = 0;
    peakOpen[kind] = 0;
    const srv = net.createServer({ allowHalfOpen: true }, (s) => {
      accepted[kind]!++;
      open[kind]!++;
      if (open[kind]! > peakOpen[kind]!) peakOpen[kind] = open[kind]!;
      sockets.add(s);
      s.on('error', () => undefined);
      s.once('close', () => {
        open[kind]!--;
        sockets.delete(s);
      });
      behave[kind](s);
    });
    srv.maxConnections = 1_000_000;
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', 4096, r));
    ports[kind] = (srv.address() as net.AddressInfo).port;
  }
  handlers.set('stats', () => ({ accepted, open, peakOpen, memory: process.memoryUsage() }));
  process.send?.({ ready: { ports } });
}

/** Write `size` pattern bytes with backpressure, then FIN. */
function writePattern(s: net.Socket, size: number): void {
  const CHUNK = 64 * 1024;
  let sent = 0;
  const pump = () => {
    while (sent < size && !s.destroyed) {
      const n = Math.min(CHUNK, size - sent);
      const ok = s.write(patternBytes(n, sent));
      sent += n;
      if (!ok) {
        s.once('drain', pump);
        return;
      }
    }
    if (!s.destroyed) s.end();
  };
  pump();
}

// ---------------------------------------------------------------------------------------- main

const role = process.argv[2];
const config: unknown = JSON.parse(process.argv[3] ?? '{}');
if (role === 'server') await runServer(config as ServerRoleConfig);
else if (role === 'client') await runClient(config as ClientRoleConfig);
else if (role === 'destination') await runDestination(config as DestinationRoleConfig);
else {
  process.stderr.write(`unknown role ${String(role)}\n`);
  process.exit(2);
}
