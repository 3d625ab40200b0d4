import { readFileSync } from 'node:fs';
import net from 'node:net';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';

/** A loopback listener that records every connection it accepts. */
export interface TestServer {
  server: net.Server;
  host: string;
  port: number;
  connections: net.Socket[];
  close(): Promise<void>;
}

/** Listen on `host:port` (port 0: any free port). Accepted sockets echo what they receive. */
export async function listen(host: string, port = 0): Promise<TestServer> {
  const connections: net.Socket[] = [];
  const server = net.createServer((socket) => {
    connections.push(socket);
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  server.listen({ host, port });
  await once(server, 'listening');
  return {
    server,
    host,
    port: (server.address() as net.AddressInfo).port,
    connections,
    async close() {
      for (const s of connections) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Prove that `t` accepted no connection so far, without sleeping: connect a sentinel and wait until the
 * server accepts it. The kernel's accept queue is FIFO, so a connection made before the sentinel would
 * have been accepted first. Returns the connections accepted before the sentinel (expected: none).
 */
export async function connectionsBeforeSentinel(t: TestServer): Promise<net.Socket[]> {
  const sentinel = net.connect({ host: t.host, port: t.port });
  sentinel.on('error', () => {});
  await once(sentinel, 'connect');
  const localPort = sentinel.localPort;
  while (!t.connections.some((c) => c.remotePort === localPort)) await once(t.server, 'connection');
  sentinel.destroy();
  return t.connections.filter((c) => c.remotePort !== localPort);
}

/** A listener whose accept queue is full: the kernel drops new SYNs, so a connect to it hangs. */
export interface SaturatedListener {
  host: string;
  port: number;
  release(): Promise<void>;
}

/**
 * Why a saturated listener cannot be made here, or null if it can. It relies on Linux's behaviour (a
 * full accept queue drops SYNs) and reads the queue length from /proc/net/tcp{,6}.
 */
export function saturationUnsupported(): string | null {
  if (process.platform !== 'linux') return `needs Linux (accept-queue overflow drops SYNs), running on ${process.platform}`;
  try {
    readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return 'needs /proc/net/tcp to see the accept queue';
  }
  return null;
}

/** Length of the accept queue of the listener on `host:port`, from /proc (LISTEN rows: rx_queue is it). */
function acceptQueueLength(host: string, port: number): number | null {
  const v6 = host.includes(':');
  const table = readFileSync(v6 ? '/proc/net/tcp6' : '/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1);
  const portHex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of table) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || f[3] !== '0A') continue; // 0A = LISTEN
    const [addr, p] = f[1]!.split(':') as [string, string];
    if (p !== portHex) continue;
    if (!v6 && !sameIPv4(addr, host)) continue;
    const [, rx] = f[4]!.split(':') as [string, string];
    return parseInt(rx, 16);
  }
  return null;
}

/** /proc prints an IPv4 address as the host-order hex of the network-order word. */
function sameIPv4(hex: string, host: string): boolean {
  const octets = host.split('.').map((o) => Number(o).toString(16).toUpperCase().padStart(2, '0'));
  return hex === octets.join('') || hex === [...octets].reverse().join('');
}

const BACKLOG = 1;

/**
 * Listen on `host:port` in a worker thread that then blocks (Atomics.wait), so it never accepts; then
 * fill its accept queue from here until /proc says it is over the backlog. A later connect to it gets no
 * SYN-ACK and hangs, on loopback, with nothing leaving the machine. Throws if the address is taken.
 */
export async function saturatedListener(host: string, port = 0): Promise<SaturatedListener> {
  const gate = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads');
    const net = require('node:net');
    const server = net.createServer();
    server.on('error', (err) => parentPort.postMessage({ error: err.code || String(err) }));
    server.listen({ host: workerData.host, port: workerData.port, backlog: ${BACKLOG} }, () => {
      parentPort.postMessage({ port: server.address().port });
      Atomics.wait(workerData.gate, 0, 0); // never accept while the test runs
      server.close();
    });
    `,
    { eval: true, workerData: { host, port, gate } },
  );
  const [msg] = (await once(worker, 'message')) as [{ port?: number; error?: string }];
  const release = async () => {
    for (const f of fillers) f.destroy();
    Atomics.store(gate, 0, 1);
    Atomics.notify(gate, 0);
    await worker.terminate();
  };
  const fillers: net.Socket[] = [];
  if (msg.error !== undefined || msg.port === undefined) {
    await release();
    throw Object.assign(new Error(`cannot listen on ${host}:${port}: ${msg.error}`), { code: msg.error });
  }
  const boundPort = msg.port;
  for (let i = 0; ; i++) {
    const queued = acceptQueueLength(host, boundPort);
    if (queued === null) throw new Error(`listener ${host}:${boundPort} not found in /proc`);
    if (queued > BACKLOG) break; // full: Linux drops SYNs while ack_backlog > backlog
    if (i > 16) throw new Error(`accept queue of ${host}:${boundPort} does not fill (at ${queued})`);
    const filler = net.connect({ host, port: boundPort });
    filler.on('error', () => {});
    fillers.push(filler);
    await once(filler, 'connect'); // the queue had room, so the kernel completes this handshake
  }
  return { host, port: boundPort, release };
}
