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
 *   pnpm --filter @gkd/transport bench [--reps=3 --warmup=1000 --window=4000 --tunnels=1,4,8
 *                                       --scheduler=least-queued --max-payload=16384 --profile=DIR --node-args="..."]
 *
 * --profile=DIR writes V8 CPU profiles of the gkd client and server processes into DIR/hop1 and DIR/hop2
 * (the `.0.` file is the main thread). Besides MB/s, it prints each process's CPU time, how long the
 * processes waited for a CPU (high: the machine was the limit, or a neighbour took it), and how many
 * bytes each tunnel carried.
 */
import { machine, measure, median, option, pct, start, stopAll, type Measurement, type Proc } from './harness.js';

const reps = Number(option('reps', '3'));
const warmup = Number(option('warmup', '1000'));
const window = Number(option('window', '4000'));
const tunnelCounts = option('tunnels', '1,4,8').split(',').map(Number);
const scheduler = option('scheduler', 'least-queued');
const maxPayload = option('max-payload', '');
const session = JSON.stringify({ scheduler, ...(maxPayload ? { maxPayload: Number(maxPayload) } : {}) });
const profileDir = option('profile', '') || undefined;

/** One row of the table. Process names: source, hop1, hop2, sink (hop1/hop2: relay1/relay2 or gkd client/server). */
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
    const server = await start(procs, 'hop2', ['gkd-server', session], profileDir);
    const client = await start(procs, 'hop1', ['gkd-client', String(server), String(tunnels), String(sink), session], profileDir);
    await start(procs, 'source', ['source', String(client)]);
    return await measure(procs, warmup, window);
  } finally {
    await stopAll(procs);
  }
}

const setups: Setup[] = [{ name: 'plain relay', run: plain }, ...tunnelCounts.map((n) => ({ name: `gkd, ${n} tunnel${n > 1 ? 's' : ''}`, run: () => gkd(n) }))];

/** The share of the bytes each tunnel carried client → server during the window, e.g. "26/24/25/25 %". */
function shares(m: Measurement): string {
  type T = { index: number; bytesOut: number };
  const before = (m.statsBefore.hop1 ?? []) as T[];
  const after = (m.stats.hop1 ?? []) as T[];
  const carried = after.map((t) => t.bytesOut - (before.find((b) => b.index === t.index)?.bytesOut ?? 0));
  const total = carried.reduce((a, b) => a + b, 0);
  return total > 0 && carried.length > 1 ? `${carried.map((c) => Math.round((100 * c) / total)).join('/')} %` : '';
}

/** MB moved per CPU-second of the two middle hops: less sensitive to a noisy machine than MB/s. */
const efficiency = (m: Measurement): number => m.mbps / ((m.cpu.hop1 ?? 0) + (m.cpu.hop2 ?? 0));

console.log(`gkd transport throughput: one stream on loopback, ${reps} × (${warmup} ms warm-up + ${window} ms window), session ${session}`);
console.log(`machine: ${machine()}`);
const results = new Map<string, Measurement[]>(setups.map((s) => [s.name, []]));
for (let r = 1; r <= reps; r++) {
  for (const s of setups) {
    const m = await s.run();
    results.get(s.name)!.push(m);
    const cpu = Object.entries(m.cpu)
      .map(([k, v]) => `${k} ${pct(v)}`)
      .join(', ');
    const waiting = Object.values(m.waiting).reduce((a, b) => a + b, 0);
    const tunnels = shares(m);
    console.log(
      `  round ${r}  ${s.name.padEnd(16)} ${m.mbps.toFixed(0).padStart(6)} MB/s   cpu: ${cpu}; waiting for a CPU (sum) ${pct(waiting)}${tunnels ? `   per tunnel: ${tunnels}` : ''}`,
    );
  }
}

const plainRuns = results.get('plain relay')!;
const base = median(plainRuns.map((m) => m.mbps));
console.log('');
console.log(
  '| setup | MB/s (median) | runs (MB/s) | vs plain relay (median / per round) | CPU hop 1 | CPU hop 2 | CPU source | CPU sink | MB per CPU·s of hops 1+2 |',
);
console.log('| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |');
for (const s of setups) {
  const ms = results.get(s.name)!;
  const mb = median(ms.map((m) => m.mbps));
  const cpu = (k: string) => pct(median(ms.map((m) => m.cpu[k] ?? 0)));
  const runs = ms.map((m) => m.mbps.toFixed(0)).join(', ');
  const eff = median(ms.map(efficiency)).toFixed(0);
  // The same round's plain relay ran seconds before: the per-round ratios show how much is noise.
  const perRound = ms.map((m, i) => pct(m.mbps / plainRuns[i]!.mbps)).join(', ');
  console.log(
    `| ${s.name} | ${mb.toFixed(0)} | ${runs} | ${pct(mb / base)} / ${perRound} | ${cpu('hop1')} | ${cpu('hop2')} | ${cpu('source')} | ${cpu('sink')} | ${eff} |`,
  );
}
console.log('');
console.log(
  'hop 1 / hop 2: relay1 / relay2 for the plain relay, gkd client / gkd server for gkd. CPU: user + system time as a share of one core over the window (median).',
);
