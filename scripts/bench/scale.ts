/**
 * `pnpm bench:scale`: what `gkd server --workers N` buys on this machine. P peers (users) × T tunnels
 * on loopback, each peer downloading one endless stream through a plaintext `gkd server`, measured for
 * S seconds after a warm-up, once per worker count. Prints aggregate throughput, each process group's
 * CPU share (100 % = one core) and the workers' peak RSS, then the ratio to the first worker count.
 * The clients run in `--client-procs` child processes on the same machine, so they compete with the
 * server for the cores: the CPU columns show who used what.
 *
 * Where the memory goes: the bench reads each worker's /metrics twice a second and, at the sample
 * with the highest RSS, prints its V8 heap, external and ArrayBuffer bytes (`process.memoryUsage()`)
 * and the transport's own byte counters (`gkd_buffered_bytes`: budgets reserved each way, bytes
 * received and not read, bytes waiting to be framed, bytes queued in the tunnel sockets).
 *
 *   pnpm bench:scale [-- --peers 64 --tunnels 8 --seconds 20 --workers 1,2 --client-procs 2]
 *   pnpm bench:scale -- --peers 100 --workers 1     (the 512 MiB-per-worker check of issue #19)
 *   pnpm bench:scale -- --peers 100 --workers 1 --server-arg=--max-buffered=64   (extra server flags; MiB)
 *
 * No root, no network namespace. A figure measured while other work runs is a smoke check only.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuSecondsOf, load1 } from './lib/proc.js';

const { values } = parseArgs({
  // `pnpm bench:scale -- --peers 8` passes the `--` through.
  args: process.argv.slice(2).filter((a) => a !== '--'),
  options: {
    peers: { type: 'string', default: '64' },
    tunnels: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    workers: { type: 'string', default: '1,2' },
    'client-procs': { type: 'string', default: '2' },
    /** Extra arguments for `gkd server`, once per flag. */
    'server-arg': { type: 'string', multiple: true, default: [] },
  },
});
const peers = Number(values.peers);
const tunnels = Number(values.tunnels);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const workerCounts = values.workers!.split(',').map(Number);
const clientProcs = Number(values['client-procs']);
const serverArgs = values['server-arg'] as string[];
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const GKD = join(ROOT, 'packages/cli/bin/gkd.js');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Peak resident set of a process (VmHWM), in MiB. */
function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** One labelled sample of a /metrics text: name{a="x",b="y"} value. */
interface Series {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseMetrics(text: string): Series[] {
  const out: Series[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\w+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) labels[k!] = v!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** A worker's memory at one /metrics sample, in bytes. */
type MemorySample = Record<string, number>;

/** Per worker label, the sample with the highest RSS seen so far. */
async function sampleMemory(url: string, peaks: Map<string, MemorySample>): Promise<void> {
  let text: string;
  try {
    text = await (await fetch(url)).text();
  } catch {
    return; // a worker restarting or the server stopping: skip this sample
  }
  const byWorker = new Map<string, MemorySample>();
  for (const s of parseMetrics(text)) {
    const w = s.labels.worker;
    if (w === undefined) continue;
    const row = byWorker.get(w) ?? {};
    if (s.name === 'gkd_process_memory_bytes') row[s.labels.kind!] = s.value;
    else if (s.name === 'gkd_buffered_bytes' && s.labels.side === 'server') row[s.labels.kind!] = s.value;
    else if (s.name === 'gkd_buffer_pool_limit_bytes') row[`pool_${s.labels.direction}`] = s.value;
    byWorker.set(w, row);
  }
  for (const [w, row] of byWorker) {
    if ((row.rss ?? 0) > (peaks.get(w)?.rss ?? -1)) peaks.set(w, row);
  }
}

const mib = (b: number | undefined) => (b === undefined ? '?' : (b / 1048576).toFixed(0));

// An endless download: 1 MiB of random bytes written again and again, as fast as the reader takes it.
const blob = randomBytes(1 << 20);
const dest = net.createServer((s) => {
  s.on('error', () => undefined);
  const pump = () => {
    while (s.write(blob));
  };
  s.on('drain', pump);
  pump();
});
await new Promise<void>((r) => dest.listen(0, '127.0.0.1', r));
const destPort = (dest.address() as net.AddressInfo).port;

const dir = mkdtempSync(join(tmpdir(), 'gkd-bench-scale-'));
const users: [string, string][] = Array.from({ length: peers }, (_, i) => [`peer${i}`, randomBytes(32).toString('base64url')]);
writeFileSync(join(dir, 'users.json'), JSON.stringify(Object.fromEntries(users)));

console.log(
  `gkd bench:scale: ${peers} peers x ${tunnels} tunnels, ${seconds} s measured after ${warmup} s, workers ${workerCounts.join(' vs ')}, ${clientProcs} client processes; ${cpus().length} cores, load ${load1().toFixed(1)}; node ${process.version}`,
);
const rows: { workers: number; mbps: number; server: number; clients: number; rss: number[] }[] = [];
for (const w of workerCounts) {
  const server = spawn(
    process.execPath,
    [
      GKD,
      'server',
      '--workers',
      String(w),
      '--plaintext',
      '--listen',
      '127.0.0.1:0',
      '--users',
      join(dir, 'users.json'),
      '--allow',
      '127.0.0.1',
      '--max-peers',
      String(peers),
      '--state-dir',
      join(dir, `state-${w}`),
      '--metrics',
      '127.0.0.1:0',
      '--log-level',
      'info',
      ...serverArgs,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  server.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  // Logs go to stderr: keep them for the metrics address and pass on only warnings and errors (the
  // server runs at info level for that one line).
  let log = '';
  server.stderr!.on('data', (d: Buffer) => {
    const text = d.toString();
    if (log.length < 1 << 20) log += text;
    for (const line of text.split('\n')) if (/\b(warn|error)\b/.test(line)) process.stderr.write(`${line}\n`);
  });
  while (!/listening on 127\.0\.0\.1:(\d+)/.test(out)) {
    if (server.exitCode !== null) throw new Error(`server exited: ${out}`);
    await sleep(50);
  }
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(out)![1]);
  while (!/metrics on (http:\/\/\S+\/metrics)/.test(log)) {
    if (server.exitCode !== null) throw new Error(`server exited: ${out}${log}`);
    await sleep(50);
  }
  const metricsUrl = /metrics on (http:\/\/\S+\/metrics)/.exec(log)![1]!;
  const peaks = new Map<string, MemorySample>();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await sampleMemory(metricsUrl, peaks);
      await sleep(500);
    }
  })();
  // The server's processes: the master and, with workers, its children.
  const pids = (): number[] => {
    if (w === 1) return [server.pid!];
    const children = readFileSync(`/proc/${server.pid}/task/${server.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    return [server.pid!, ...children];
  };
  const kids: ChildProcess[] = [];
  for (let i = 0; i < clientProcs; i++) {
    const share = users.filter((_, j) => j % clientProcs === i);
    const kid = fork(fileURLToPath(new URL('./scale-client.ts', import.meta.url)), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    kid.send({ port, destPort, tunnels, users: share });
    kids.push(kid);
  }
  const next = (kid: ChildProcess) =>
    new Promise<Record<string, number | boolean>>((r) => kid.once('message', (m) => r(m as Record<string, number | boolean>)));
  await Promise.all(kids.map(next)); // ready
  await sleep(warmup * 1000);
  const mark = async () =>
    (
      await Promise.all(
        kids.map(async (k) => {
          k.send('mark');
          return (await next(k)).bytes as number;
        }),
      )
    ).reduce((a, b) => a + b, 0);
  const serverPids = pids();
  const cpu0 = serverPids.map(cpuSecondsOf);
  const kidCpu0 = kids.map((k) => cpuSecondsOf(k.pid!));
  const b0 = await mark();
  const t0 = Date.now();
  await sleep(seconds * 1000);
  const b1 = await mark();
  const wall = (Date.now() - t0) / 1000;
  const serverCpu = serverPids.reduce((sum, pid, i) => sum + cpuSecondsOf(pid) - cpu0[i]!, 0) / wall;
  const clientCpu = kids.reduce((sum, k, i) => sum + cpuSecondsOf(k.pid!) - kidCpu0[i]!, 0) / wall;
  const rss = (w === 1 ? serverPids : serverPids.slice(1)).map(peakRssMiB);
  const mbps = ((b1 - b0) * 8) / wall / 1e6;
  sampling = false;
  await sampler;
  rows.push({ workers: w, mbps, server: serverCpu * 100, clients: clientCpu * 100, rss });
  console.error(
    `bench:scale: ${w} worker(s): ${mbps.toFixed(0)} Mbit/s, server CPU ${(serverCpu * 100).toFixed(0)} %, clients ${(clientCpu * 100).toFixed(0)} %, worker peak RSS ${rss.map((r) => r.toFixed(0)).join(', ')} MiB`,
  );
  for (const [worker, p] of [...peaks].sort()) {
    console.error(
      `bench:scale:   worker ${worker} at its sampled RSS peak (MiB): rss ${mib(p.rss)}, heap used ${mib(p.heap_used)}, external ${mib(p.external)} (array buffers ${mib(p.array_buffers)}); transport: send reserved ${mib(p.send_reserved)}, recv reserved ${mib(p.recv_reserved)}, received unread ${mib(p.received)}, pending framing ${mib(p.pending)}, tunnel socket queues ${mib(p.tunnel_queued)} (part of send reserved); pool ${mib(p.pool_send)} + ${mib(p.pool_recv)}`,
    );
  }
  for (const k of kids) k.send('stop');
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
}
dest.close();

console.log(`\n| workers | aggregate Mbit/s | vs ${rows[0]!.workers} worker | server CPU (all processes) | client CPU | peak RSS per worker |`);
console.log('| --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  console.log(
    `| ${r.workers} | ${r.mbps.toFixed(0)} | ${(r.mbps / rows[0]!.mbps).toFixed(2)}× | ${r.server.toFixed(0)} % | ${r.clients.toFixed(0)} % | ${r.rss.map((x) => `${x.toFixed(0)} MiB`).join(', ')} |`,
  );
}
console.log(`\n(100 % CPU = one core; ${cpus().length} cores here; load average at the end ${load1().toFixed(1)})`);
process.exit(0);
