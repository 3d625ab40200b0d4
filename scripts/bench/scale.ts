/**
 * `pnpm bench:scale`: what `gkd server --workers N` buys on this machine. P peers (users) × T tunnels
 * on loopback, each peer downloading one endless stream through a plaintext `gkd server`, measured for
 * S seconds after a warm-up, once per worker count. Prints aggregate throughput, each process group's
 * CPU share (100 % = one core) and the workers' peak RSS, then the ratio to the first worker count.
 * The clients run in `--client-procs` child processes on the same machine, so they compete with the
 * server for the cores: the CPU columns show who used what.
 *
 *   pnpm bench:scale [-- --peers 64 --tunnels 8 --seconds 20 --workers 1,2 --client-procs 2]
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
  },
});
const peers = Number(values.peers);
const tunnels = Number(values.tunnels);
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const workerCounts = values.workers!.split(',').map(Number);
const clientProcs = Number(values['client-procs']);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const GKD = join(ROOT, 'packages/cli/bin/gkd.js');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Peak resident set of a process (VmHWM), in MiB. */
function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

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
      '--log-level',
      'warn',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  server.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  server.stderr!.on('data', (d: Buffer) => process.stderr.write(d));
  while (!/listening on 127\.0\.0\.1:(\d+)/.test(out)) {
    if (server.exitCode !== null) throw new Error(`server exited: ${out}`);
    await sleep(50);
  }
  const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(out)![1]);
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
  rows.push({ workers: w, mbps, server: serverCpu * 100, clients: clientCpu * 100, rss });
  console.error(
    `bench:scale: ${w} worker(s): ${mbps.toFixed(0)} Mbit/s, server CPU ${(serverCpu * 100).toFixed(0)} %, clients ${(clientCpu * 100).toFixed(0)} %, worker peak RSS ${rss.map((r) => r.toFixed(0)).join(', ')} MiB`,
  );
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
