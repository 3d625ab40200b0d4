/**
 * The load and fault scenarios, shared by test/load.test.ts, test/faults.test.ts and `pnpm load`.
 * Each starts its own processes (lib/stack.ts), runs, and returns figures; the callers assert and print.
 */
import type * as net from 'node:net';
import { patternBytes } from '../data.js';
import { until } from '../until.js';
import { download, echoLoad, openIdle, resetProbe, sourceRequest, type EchoLoadResult } from './load.js';
import { ensureFileLimit, type ClientChild } from './proc.js';
import { socksConnect } from './socks.js';
import { startStack } from '../stack.js';
import { firstClient, type ProcessStack } from './stack.js';

const MiB = 1024 * 1024;

/** Stop every process of a stack; throw if one had died. */
async function closeStack(stack: ProcessStack): Promise<void> {
  const crashed = await stack.close();
  if (crashed.length > 0) throw new Error(`processes died:\n${crashed.join('\n')}`);
}

export interface EchoScenario {
  load: EchoLoadResult;
  /** Tunnels reset (TCP RST) during the load, and frames the client re-sent because of it. */
  kills: number;
  resentFrames: { client: number; server: number };
  /** Reset probes: how each SOCKS client saw the destination's reset ('ECONNRESET' expected). */
  resets: string[];
  /** The same when the destination resets right behind its data: see the `reset-now` destination (reported, not asserted). */
  resetsRightBehindData: string[];
  rss: { serverPeak: number; clientPeak: number };
  stderr: string;
}

/**
 * `streams` concurrent SOCKS streams × `bytes` echoed through one client with `tunnels` tunnels. With
 * `killEveryMs`, two tunnels are reset every that many ms while the load runs; with `resetProbes`, that
 * many streams to a destination that resets mid-stream run alongside.
 */
export async function echoScenario(o: {
  streams: number;
  bytes: number;
  tunnels: number;
  killEveryMs?: number;
  resetProbes?: number;
  timeoutMs?: number;
}): Promise<EchoScenario> {
  const stack = await startStack({
    users: ['alice'],
    clients: [{ user: 'alice', tunnels: o.tunnels, socks: { maxConnections: o.streams + 1000 } }],
    limits: { maxStreamsPerSession: o.streams + 1000 },
  });
  try {
    const client = firstClient(stack);
    let done = false;
    let kills = 0;
    const killer = (async () => {
      // The fault schedule: two tunnels reset every `killEveryMs` (a timer is the fault, not a synchronisation).
      for (let i = 0; o.killEveryMs && !done && i < 10_000; i++) {
        await new Promise((r) => setTimeout(r, o.killEveryMs));
        if (!done) kills += await client.call<number>('kill', 2);
      }
    })();
    const probes = Promise.all(
      Array.from({ length: o.resetProbes ?? 0 }, () => resetProbe(client.ready.socksPort, stack.ports.reset, 256 * 1024).then((r) => r.how)),
    );
    const nowProbes = Promise.all(
      Array.from({ length: o.resetProbes ?? 0 }, () => resetProbe(client.ready.socksPort, stack.ports['reset-now']).then((r) => r.how)),
    );
    const load = await echoLoad(client.ready.socksPort, stack.ports.echo, o.streams, o.bytes, o.timeoutMs ?? 180_000).finally(() => (done = true));
    await killer;
    const resets = await probes;
    const resetsRightBehindData = await nowProbes;
    const [cs, ss] = await Promise.all([client.call('stats'), stack.server.call('stats')]);
    const serverResent = (ss.peers as { resentFrames: number }[]).reduce((a, p) => a + p.resentFrames, 0);
    return {
      load,
      kills,
      resentFrames: { client: cs.resentFrames, server: serverResent },
      resets,
      resetsRightBehindData,
      rss: { serverPeak: (await stack.server.rss()).peak, clientPeak: (await client.rss()).peak },
      stderr: stack.server.stderr + client.stderr,
    };
  } finally {
    await closeStack(stack);
  }
}

export interface IdleScenario {
  wanted: number;
  /** Streams tried: `wanted`, or fewer when the open-files limit is lower (see `note`). */
  tried: number;
  opened: number;
  failures: string[];
  openMs: number;
  /** Streams each side holds once they are all open. */
  serverStreams: number;
  clientStreams: number;
  destinationOpen: number;
  rss: { server: number; client: number; serverPeak: number; clientPeak: number };
  /** Why the count was lowered, if it was (the open-files limit). */
  note?: string;
  stderr: string;
}

/** `n` idle streams opened through SOCKS (to the `hold` destination) and held; RSS of both sides then. */
export async function idleScenario(n: number, tunnels = 8): Promise<IdleScenario> {
  // Every process holds one socket per stream (the test process: the SOCKS clients), plus a margin.
  const { limit, note } = ensureFileLimit(n + 2000);
  const wanted = n;
  const count = Math.min(n, limit - 2000);
  const stack = await startStack({
    users: ['alice'],
    clients: [{ user: 'alice', tunnels, socks: { maxConnections: count + 1000 } }],
    limits: { maxStreamsPerSession: count + 1000 },
  });
  const client = firstClient(stack);
  let idle: Awaited<ReturnType<typeof openIdle>> | undefined;
  try {
    idle = await openIdle(client.ready.socksPort, stack.ports.hold, count, 256);
    // The server's dial completes with the kernel's handshake; the destination process accepts the
    // connection when its event loop gets to it, which on a busy machine can be a little later.
    const opened = idle.sockets.length;
    await until(async () => (await stack.destination.call('stats')).open.hold >= opened, 30_000, 'the destination to accept every connection').catch(
      () => undefined,
    );
    const [ss, cs, ds] = await Promise.all([stack.server.call('stats'), client.call('stats'), stack.destination.call('stats')]);
    const [srss, crss] = await Promise.all([stack.server.rss(), client.rss()]);
    return {
      wanted,
      tried: count,
      opened: idle.sockets.length,
      failures: idle.failures,
      openMs: idle.openMs,
      serverStreams: (ss.peers as { streamsOpen: number }[]).reduce((a, p) => a + p.streamsOpen, 0),
      clientStreams: cs.streamsOpen,
      destinationOpen: ds.open.hold,
      rss: { server: srss.rss, client: crss.rss, serverPeak: srss.peak, clientPeak: crss.peak },
      ...(count < wanted ? { note: `${count} instead of ${wanted}: ${note ?? 'open-files limit'}` } : {}),
      stderr: stack.server.stderr + client.stderr,
    };
  } finally {
    idle?.close();
    await closeStack(stack);
  }
}

// ---------------------------------------------------------------------------------------- faults

/** Throughput of `parallel` downloads of `bytes` each through `client`, checked by sha256, in MB/s. */
export async function downloadRate(client: ClientChild, sourcePort: number, parallel: number, bytes: number): Promise<number> {
  const t0 = performance.now();
  await Promise.all(Array.from({ length: parallel }, () => download(client.ready.socksPort, sourcePort, bytes)));
  return (parallel * bytes) / 1e6 / ((performance.now() - t0) / 1000);
}

/** Poll `read` every `everyMs` until it returns the same value `stableFor` ms in a row (a plateau), or `timeoutMs`. */
export async function plateau(read: () => Promise<number>, stableFor: number, timeoutMs: number, everyMs = 100): Promise<{ value: number; ms: number }> {
  const t0 = Date.now();
  let last = await read();
  let since = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    await new Promise((r) => setTimeout(r, everyMs));
    const v = await read();
    if (v !== last) {
      last = v;
      since = Date.now();
    } else if (Date.now() - since >= stableFor) break;
  }
  return { value: last, ms: Date.now() - t0 };
}

export interface StallScenario {
  /** The other peer's download rate before the stall and during it, in MB/s. */
  before: number;
  during: number;
  stalledStreams: number;
  /** Once the windows filled: bytes the stalled peer's client holds received but unread (its windows), and its receive-budget use. */
  stalledBuffered: number;
  stalledRecvBudget: number;
  /** The server's side of the stalled peer: bytes sent and not acknowledged, and its send-budget use. */
  stalledUnacked: number;
  stalledSendBudget: number;
  stallMs: number;
  /** After reading again, each stalled stream delivered its next bytes in order (pattern prefix): count ok. */
  resumedOk: number;
}

/**
 * The stack for the stall and vanish scenarios: bob and carol with 4 tunnels each, victor with 2 behind
 * gates (so he can vanish without a FIN), and a 5 s grace period so a vanished session is freed soon
 * (keepalive at its default, 5 s).
 */
export function peersStack(): Promise<ProcessStack> {
  return startStack({
    users: ['bob', 'carol', 'victor'],
    clients: [
      { user: 'bob', tunnels: 4 },
      { user: 'carol', tunnels: 4 },
      { user: 'victor', tunnels: 2, gated: true },
    ],
    session: { gracePeriod: 5000 },
  });
}

/**
 * A peer (carol) opens `streams` downloads and stops reading them: its windows fill. Another peer
 * (bob) measures its own download rate before and during the stall.
 */
export async function stallScenario(stack: ProcessStack, stalled: ClientChild, other: ClientChild, streams: number): Promise<StallScenario> {
  // Best of two after a warm-up (windows grow, JIT): a shared 2-core machine is noisy.
  const rate = async () => Math.max(await downloadRate(other, stack.ports.source, 4, 16 * MiB), await downloadRate(other, stack.ports.source, 4, 16 * MiB));
  await downloadRate(other, stack.ports.source, 4, 16 * MiB);
  const before = await rate();
  const sockets: net.Socket[] = [];
  for (let i = 0; i < streams; i++) {
    const r = await socksConnect(stalled.ready.socksPort, { ipv4: '127.0.0.1', port: stack.ports.source });
    if (r.rep !== 0) throw new Error(`SOCKS REP ${r.rep}`);
    r.socket.on('error', () => undefined);
    r.socket.write(sourceRequest(1024 * MiB)); // and never read: socksConnect left it paused
    sockets.push(r.socket);
  }
  const carolOut = async () => {
    const s = await stack.server.call('stats');
    return (s.peers as { user: string; bytesOut: number }[]).filter((p) => p.user === 'carol').reduce((a, p) => a + p.bytesOut, 0);
  };
  // The stall: what the server sends carol stops growing (every window is full).
  const stall = await plateau(carolOut, 1000, 30_000);
  const during = await rate();
  const cs = await stalled.call('stats');
  const s = await stack.server.call('stats');
  const carol = (s.peers as { user: string; unacked: number; sendBudgetUsed: number }[]).filter((p) => p.user === 'carol');
  // Read again: each stream goes on, in order.
  const want = patternBytes(4 * MiB);
  const resumed = await Promise.all(
    sockets.map(
      (sock) =>
        new Promise<boolean>((resolve) => {
          const chunks: Buffer[] = [];
          let n = 0;
          const timer = setTimeout(() => resolve(false), 60_000);
          sock.on('data', (d: Buffer) => {
            chunks.push(d);
            n += d.length;
            if (n >= want.length) {
              clearTimeout(timer);
              sock.pause();
              resolve(Buffer.concat(chunks).subarray(0, want.length).equals(want));
            }
          });
          sock.resume();
        }),
    ),
  );
  for (const sock of sockets) sock.destroy();
  return {
    before,
    during,
    stalledStreams: streams,
    stalledBuffered: cs.buffered,
    stalledRecvBudget: cs.recvBudgetUsed,
    stalledUnacked: carol.reduce((a, p) => a + p.unacked, 0),
    stalledSendBudget: carol.reduce((a, p) => a + p.sendBudgetUsed, 0),
    stallMs: stall.ms,
    resumedOk: resumed.filter(Boolean).length,
  };
}

export interface VanishScenario {
  streams: number;
  /** From the black-hole until the server had no tunnel of the peer left, in ms. */
  detectedMs: number;
  /** From the black-hole until the server had freed the session, in ms. */
  freedMs: number;
  /** Destination connections of the vanished peer still open after the session was freed. */
  destinationLeft: number;
  activeStreamsBefore: number;
  activeStreamsAfter: number;
}

/** A peer (victor, a gated client) with `streams` open streams vanishes without FIN (black-holed both ways). */
export async function vanishScenario(stack: ProcessStack, victor: ClientChild, streams: number): Promise<VanishScenario> {
  const holdOpen = async () => (await stack.destination.call('stats')).open.hold as number;
  const active = async () => (await stack.server.call('stats')).counters.activeStreams as number;
  // Streams of earlier scenarios may still be closing: start from a settled server.
  const activeBefore = (await plateau(active, 500, 10_000)).value;
  const holdBefore = (await plateau(holdOpen, 500, 10_000)).value;
  const sockets: net.Socket[] = [];
  for (let i = 0; i < streams; i++) {
    const r = await socksConnect(victor.ready.socksPort, { ipv4: '127.0.0.1', port: stack.ports.hold });
    if (r.rep !== 0) throw new Error(`SOCKS REP ${r.rep}`);
    r.socket.on('error', () => undefined);
    r.socket.write('some bytes before vanishing');
    sockets.push(r.socket);
  }
  await until(async () => (await holdOpen()) >= holdBefore + streams, 10_000, 'the streams at the destination');
  const victorSessions = async () => (await stack.server.call('stats')).peers.filter((p: { user: string }) => p.user === 'victor');
  await victor.call('blackhole');
  const detectedMs = await until(
    async () => (await victorSessions()).every((p: { tunnelsUp: number }) => p.tunnelsUp === 0),
    30_000,
    'the server to drop the black-holed tunnels',
  );
  const freedMs = detectedMs + (await until(async () => (await victorSessions()).length === 0, 60_000, 'the server to free the session'));
  const destinationLeft = await (async () => {
    // The destination sockets close just after the session goes (the splice ends on the stream's error).
    await until(async () => (await holdOpen()) <= holdBefore, 10_000, 'the destination connections to close').catch(() => undefined);
    return (await holdOpen()) - holdBefore;
  })();
  const activeAfter = await active();
  for (const s of sockets) s.destroy();
  return { streams, detectedMs, freedMs, destinationLeft, activeStreamsBefore: activeBefore, activeStreamsAfter: activeAfter };
}
