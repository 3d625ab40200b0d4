/**
 * One process of a benchmark chain, chosen by argv[2]. Started by `harness.ts` with `fork`, so each
 * hop runs on its own event loop and the comparison with a plain relay is fair. Every role reports
 * `{ ready, port? }` once it can be used, and answers `{ cmd: 'mark' }` with its CPU time (and, for
 * the sink, the bytes received) so the parent can measure a window. `{ cmd: 'exit' }` exits cleanly
 * (which is when `--cpu-prof` writes its profile).
 *
 * Roles:
 *   sink                               count and drop every byte received
 *   source <port>                      connect and write as fast as the socket takes it
 *   relay <port>                       plain Node relay: each accepted socket piped both ways to 127.0.0.1:<port>
 *   throttle <port> <bytesPerSecond>   like relay, but each direction limited by a token bucket
 *   gkd-server <session>               gkd Server; every OPEN dials its destination with node:net and pipes
 *   gkd-client <serverPort> <tunnels> <sinkPort> <session> [slowIndex:throttlePort]
 *                                      gkd Client with N tunnels and a TCP listener: each accepted socket
 *                                      becomes client.open(sink) piped both ways; tunnel slowIndex (if
 *                                      given) is dialled through the throttle at throttlePort
 * <session> is a JSON Partial<SessionConfig>, e.g. {"scheduler":"round-robin"}.
 */
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { Client, Server, type OpenRequest, type SessionConfig } from '@gkd/transport';

/** A fixed key: the benchmark measures the data path, not the handshake. */
const KEY = Buffer.alloc(32, 7);
const HOST = '127.0.0.1';
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);

const send = (msg: object): void => {
  process.send?.(msg);
};

let received = 0;
let stats: () => unknown = () => undefined;

/** Nanoseconds the main thread spent runnable but waiting for a CPU (Linux), or 0 where unknown. */
function runQueueWait(): number {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1] ?? 0);
  } catch {
    return 0;
  }
}

process.on('message', (m: { cmd: string }) => {
  if (m.cmd === 'mark') send({ mark: true, cpu: process.cpuUsage(), wait: runQueueWait(), at: performance.now(), bytes: received, stats: stats() });
  else if (m.cmd === 'exit') process.exit(0);
});
process.on('disconnect', () => process.exit(0));

/** Join two duplexes both ways; an error or close on one side ends the other. */
function join(a: Duplex, b: Duplex): void {
  a.pipe(b);
  b.pipe(a);
  const kill = () => {
    a.destroy();
    b.destroy();
  };
  a.on('error', kill);
  b.on('error', kill);
}

function listen(onSocket: (s: net.Socket) => void): Promise<number> {
  const server = net.createServer(onSocket);
  return new Promise((resolve) => server.listen(0, HOST, () => resolve((server.address() as net.AddressInfo).port)));
}

function dial(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, HOST);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Forward `from` to `to` at most `rate` bytes per second (token bucket, 64 KiB burst), honouring backpressure. */
function throttled(from: Duplex, to: Duplex, rate: number): void {
  const burst = 64 * 1024;
  let tokens = burst;
  let last = performance.now();
  let timer: NodeJS.Timeout | undefined;
  let waitingDrain = false;
  from.on('data', (chunk: Buffer) => {
    const now = performance.now();
    tokens = Math.min(burst, tokens + ((now - last) / 1000) * rate);
    last = now;
    tokens -= chunk.length;
    if (!to.write(chunk)) {
      waitingDrain = true;
      from.pause();
      to.once('drain', () => {
        waitingDrain = false;
        if (!timer) from.resume();
      });
    }
    if (tokens < 0 && !timer) {
      from.pause();
      timer = setTimeout(
        () => {
          timer = undefined;
          if (!waitingDrain) from.resume();
        },
        (-tokens / rate) * 1000,
      );
    }
  });
  from.on('end', () => to.end());
  const kill = () => {
    clearTimeout(timer);
    from.destroy();
    to.destroy();
  };
  from.on('error', kill);
  to.on('error', kill);
}

async function main(): Promise<void> {
  const [role, ...args] = process.argv.slice(2);
  switch (role) {
    case 'sink': {
      const port = await listen((s) => {
        s.on('data', (c: Buffer) => {
          received += c.length;
        });
        s.on('error', () => undefined);
      });
      send({ ready: true, port });
      return;
    }
    case 'source': {
      const s = await dial(Number(args[0]));
      s.on('error', () => undefined);
      const pump = () => {
        while (s.write(CHUNK));
      };
      s.on('drain', pump);
      pump();
      send({ ready: true });
      return;
    }
    case 'relay': {
      const target = Number(args[0]);
      const port = await listen((inbound) => {
        const outbound = net.connect(target, HOST);
        join(inbound, outbound);
      });
      send({ ready: true, port });
      return;
    }
    case 'throttle': {
      const target = Number(args[0]);
      const rate = Number(args[1]);
      const port = await listen((inbound) => {
        const outbound = net.connect(target, HOST);
        inbound.setNoDelay(true);
        outbound.setNoDelay(true);
        throttled(inbound, outbound, rate);
        throttled(outbound, inbound, rate);
      });
      send({ ready: true, port });
      return;
    }
    case 'gkd-server': {
      const onOpen = (req: OpenRequest): void => {
        const d = req.destination;
        if (!d) {
          req.reject(0x02, 'library mode not served');
          return;
        }
        const out = net.connect(d.port, d.host);
        out.once('connect', () => join(req.accept(), out));
        out.once('error', (err) => req.reject(0x05, err.message));
      };
      const session = JSON.parse(args[0] ?? '{}') as Partial<SessionConfig>;
      const server = await Server.bind(`${HOST}:0`, { key: KEY, onOpen, session });
      stats = () => server.stats().peers[0]?.tunnels.map((t) => ({ index: t.index, bytesOut: t.bytesOut, rate: t.rate }));
      send({ ready: true, port: server.address().port });
      return;
    }
    case 'gkd-client': {
      const [serverPort, tunnelsText, sinkPort, sessionText, slow] = args;
      const tunnels = Number(tunnelsText);
      const [slowIndex, throttlePort] = slow ? slow.split(':').map(Number) : [-1, 0];
      const client = await Client.connect(`${HOST}:${serverPort}`, {
        key: KEY,
        tunnels,
        session: JSON.parse(sessionText ?? '{}') as Partial<SessionConfig>,
        connect: (index) => dial(index === slowIndex ? throttlePort! : Number(serverPort)),
      });
      const deadline = Date.now() + 10_000;
      while (client.tunnelsUp < tunnels) {
        if (Date.now() > deadline) throw new Error(`only ${client.tunnelsUp} of ${tunnels} tunnels up`);
        await new Promise((r) => setTimeout(r, 20));
      }
      stats = () =>
        client
          .stats()
          .tunnels.map((t) => ({ index: t.index, bytesOut: t.bytesOut, rate: t.rate, rtt: t.rtt, queued: t.queued }))
          .sort((a, b) => a.index - b.index);
      const port = await listen((inbound) => {
        inbound.on('error', () => undefined);
        client.open({ host: HOST, port: Number(sinkPort) }).then(
          (conn) => join(inbound, conn),
          () => inbound.destroy(),
        );
      });
      send({ ready: true, port });
      return;
    }
    default:
      throw new Error(`unknown role ${String(role)}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
