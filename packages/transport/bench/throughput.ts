/**
 * One stream's throughput over gkd with 1, 4 and 8 tunnels on loopback, against a plain Node two-hop
 * TCP relay measured in the same run (the limit for a JS client + server pair):
 *
 *   plain: source → TCP → relay1 → TCP → relay2 → TCP → sink
 *   gkd:   source → TCP → gkd client → N tunnels → gkd server → TCP → sink
 *
 * Every box is its own process. The setups run interleaved (plain, gkd-1, gkd-4, gkd-8, repeated), so
 * a noisy neighbour hurts them alike; each figure is the median of the repetitions.
 *
 *   pnpm --filter @gkd/transport bench [-- --reps=3 --warmup=1000 --window=4000 --tunnels=1,4,8 --scheduler=least-queued --profile=DIR]
 *
 * --profile=DIR writes a V8 CPU profile of the gkd client and server processes into DIR.
 */
import { machine, measure, median, option, pct, start, stopAll, type Measurement, type Proc } from './harness.js';

const reps = Number(option('reps', '3'));
const warmup = Number(option('warmup', '1000'));
const window = Number(option('window', '4000'));
const tunnelCounts = option('tunnels', '1,4,8').split(',').map(Number);
const scheduler = option('scheduler', 'least-queued');
const profileDir = option('profile', '') || undefined;

/** Roles in table order: the two middle hops are relay1/relay2 or gkd-client/gkd-server. */
interface Setup {
  name: string;
  run(): Promise<Measurement>;
}

async function plain(): Promise<Measurement> {
  const procs: Proc[] = [];
  try {
    const sink = await start(procs, 'sink', ['sink']);
    const r2 = await start(procs, 'hop2', ['relay', String(sink)]);
    const r1 = await start(procs, 'hop1', ['relay', String(r2)]);
    await start(procs, 'source', ['source', String(r1)]);
    return await measure(procs, warmup, window);
  } finally {
    await stopAll(procs);
  }
}

async function gkd(tunnels: number): Promise<Measurement> {
  const procs: Proc[] = [];
  try {
    const sink = await start(procs, 'sink', ['sink']);
    const server = await start(procs, 'hop2', ['gkd-server', scheduler], profileDir);
    const client = await start(procs, 'hop1', ['gkd-client', String(server), String(tunnels), String(sink), scheduler], profileDir);
    await start(procs, 'source', ['source', String(client)]);
    return await measure(procs, warmup, window);
  } finally {
    await stopAll(procs);
  }
}

const setups: Setup[] = [{ name: 'plain relay', run: plain }, ...tunnelCounts.map((n) => ({ name: `gkd, ${n} tunnel${n > 1 ? 's' : ''}`, run: () => gkd(n) }))];

console.log(`gkd transport throughput: one stream on loopback, ${reps} × (${warmup} ms warm-up + ${window} ms window), scheduler ${scheduler}`);
console.log(`machine: ${machine()}`);
const results = new Map<string, Measurement[]>(setups.map((s) => [s.name, []]));
for (let r = 1; r <= reps; r++) {
  for (const s of setups) {
    const m = await s.run();
    results.get(s.name)!.push(m);
    const cpu = Object.entries(m.cpu)
      .map(([k, v]) => `${k} ${pct(v)}`)
      .join(', ');
    console.log(`  round ${r}  ${s.name.padEnd(16)} ${m.mbps.toFixed(0).padStart(6)} MB/s   cpu: ${cpu}`);
  }
}

const base = median(results.get('plain relay')!.map((m) => m.mbps));
console.log('');
console.log('| setup | MB/s (median) | runs (MB/s) | vs plain relay | CPU source | CPU hop 1 | CPU hop 2 | CPU sink |');
console.log('| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |');
for (const s of setups) {
  const ms = results.get(s.name)!;
  const mb = median(ms.map((m) => m.mbps));
  const cpu = (k: string) => pct(median(ms.map((m) => m.cpu[k] ?? 0)));
  const runs = ms.map((m) => m.mbps.toFixed(0)).join(', ');
  console.log(`| ${s.name} | ${mb.toFixed(0)} | ${runs} | ${pct(mb / base)} | ${cpu('source')} | ${cpu('hop1')} | ${cpu('hop2')} | ${cpu('sink')} |`);
}
console.log('');
console.log('hop 1 / hop 2: relay1 / relay2 for the plain relay, gkd client / gkd server for gkd. CPU: share of one core over the window (median).');
