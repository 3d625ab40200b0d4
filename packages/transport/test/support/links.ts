import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { Client, Server, duplexPair, type ClientOptions, type ServerOptions } from '../../src/index.js';
import { Gate } from './gate.js';

/**
 * The tunnel kinds every compliance scenario runs on: in-memory pairs (user mode: no socket), and
 * loopback TCP in kernel mode (TCP_NOTSENT_LOWAT, pacing, TCP_INFO, where the platform allows) and in
 * user mode (`socketTuning: 'off'`, as on a platform without kernel access).
 */
export type LinkKind = 'memory' | 'tcp' | 'tcp-user';

/** A client and a server joined by breakable tunnels. */
export interface Rig {
  kind: LinkKind;
  /** The current server (a new object after `restartServer`). */
  readonly server: Server;
  client: Client;
  /** The live gates, one per tunnel connection made so far (dead ones included until pruned). */
  gates(): Gate[];
  /** Stop the server, keep it down for `downMs`, start a new one (same port for TCP). Resolves when it listens again. */
  restartServer(downMs: number): Promise<void>;
  /** Refuse new tunnel connections (all tunnels down) until `restore()`. */
  cutAll(mode: 'kill' | 'blackhole'): void;
  restore(): void;
  close(): Promise<void>;
}

/** Build a rig of `kind`: the client's tunnels pass through gates to the server. */
export async function makeRig(kind: LinkKind, serverOpts: ServerOptions, clientOpts: Omit<ClientOptions, 'connect'>): Promise<Rig> {
  // Loopback tunnels stay in user mode under 'auto': the kernel-mode run forces it with 'on'.
  const tuning = kind === 'tcp-user' ? 'off' : kind === 'tcp' ? 'on' : undefined;
  if (tuning) {
    serverOpts = { ...serverOpts, session: { ...serverOpts.session, socketTuning: tuning } };
    clientOpts = { ...clientOpts, session: { ...clientOpts.session, socketTuning: tuning } };
  }
  let server = new Server(serverOpts);
  const all: Gate[] = [];
  let refusing = false;
  let relay: net.Server | null = null;
  let connect: (index: number) => Promise<Duplex>;
  if (kind === 'memory') {
    connect = async () => {
      if (refusing) throw new Error('link is down');
      const [clientEnd, gateA] = duplexPair();
      const [gateB, serverEnd] = duplexPair();
      all.push(new Gate(gateA, gateB));
      server.handleConnection(serverEnd);
      return clientEnd;
    };
  } else {
    await server.listen({ host: '127.0.0.1', port: 0 });
    const target = server.address().port; // a restarted server listens on the same port
    relay = net.createServer((inbound) => {
      if (refusing) {
        inbound.resetAndDestroy();
        return;
      }
      const outbound = net.connect(target, '127.0.0.1');
      outbound.setNoDelay(true);
      inbound.setNoDelay(true);
      all.push(new Gate(inbound, outbound));
    });
    await new Promise<void>((r) => relay!.listen(0, '127.0.0.1', r));
    const relayPort = (relay.address() as net.AddressInfo).port;
    connect = () =>
      new Promise((resolve, reject) => {
        const s = net.connect(relayPort, '127.0.0.1');
        s.once('connect', () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      });
  }
  const client = Client.create('gate:1', { ...clientOpts, connect });
  await client.waitForTunnel(10_000);
  return {
    kind,
    get server() {
      return server;
    },
    client,
    async restartServer(downMs) {
      const port = kind !== 'memory' ? server.address().port : 0;
      await server.close();
      await new Promise((r) => setTimeout(r, downMs));
      server = new Server(serverOpts);
      if (kind !== 'memory') await server.listen({ host: '127.0.0.1', port });
    },
    gates: () => all.filter((g) => !g.closed),
    cutAll(mode) {
      refusing = true;
      for (const g of all) {
        if (mode === 'kill') g.kill();
        else g.blackhole();
      }
    },
    restore() {
      refusing = false;
    },
    async close() {
      client.close();
      await server.close();
      for (const g of all) g.kill();
      if (relay) await new Promise<void>((r) => relay!.close(() => r()));
    },
  };
}
