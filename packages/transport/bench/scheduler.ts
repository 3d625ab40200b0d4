/**
 * Scheduler benchmark: one stream over 4 tunnels, one of which passes through a throttling relay
 * (token bucket, 5 MB/s each way by default) while the other three are plain loopback. Compares the
 * least-queued and round-robin pickers, interleaved and repeated, and reports how many bytes each
 * tunnel carried. A good picker keeps the slow tunnel's share small, so the stream runs close to the
 * three fast tunnels alone (printed as the reference).
 *
 *   source → TCP → gkd client ══ tunnels 0-2 ══════════════▶ gkd server → TCP → sink
 *                             ══ tunnel 3 ══ throttle ═════▶
 *
 *   pnpm --filter @gkd/transport bench:scheduler [--reps=3 --warmup=2000 --window=5000 --slow-rate=5000000 --slow-index=3
 *                                                 --schedulers=least-queued,round-robin]
 */
import { machine, measure, median, option, pct, start, stopAll, type Measurement, type Proc } from './harness.js';

const reps = Number(option('reps', '3'));
const warmup = Number(option('warmup', '2000'));
const window = Number(option('window', '5000'));
const slowRate = Number(option('slow-rate', '5000000'));
const schedulers = option('schedulers', 'least-queued,round-robin').split(',');
const slowIndex = Number(option('slow-index', '3'));

interface TunnelSnapshot {
  index: number;
  bytesOut: number;
  rate: number | null;
  rtt: number | null;
  queued: number;
}

async function run(scheduler: string, tunnels: number, slow: boolean): Promise<Measurement> {
  const procs: Proc[] = [];
  try {
    const sink = await start(procs, 'sink', ['sink']);
    const session = JSON.stringify({ scheduler });
    const server = await start(procs, 'hop2', ['gkd-server', session]);
    const extra: string[] = [];
    if (slow) {
      const throttle = await start(procs, 'throttle', ['throttle', String(server), String(slowRate)]);
      extra.push(`${slowIndex}:${throttle}`);
    }
    const client = await start(procs, 'hop1', ['gkd-client', String(server), String(tunnels), String(sink), session, ...extra]);
    await start(procs, 'source', ['source', String(client)]);
    return await measure(procs, warmup, window);
  } finally {
    await stopAll(procs);
  }
}

interface Setup {
  name: string;
  run(): Promise<Measurement>;
}

const setups: Setup[] = [
  ...schedulers.map((s) => ({ name: `${s}, 3 fast + 1 slow`, run: () => run(s, 4, true) })),
  { name: 'reference: 3 fast only', run: () => run('least-queued', 3, false) },
];

/** Bytes each tunnel carried client → server during the window. */
function carried(m: Measurement): number[] {
  const before = (m.statsBefore.hop1 ?? []) as TunnelSnapshot[];
  const after = (m.stats.hop1 ?? []) as TunnelSnapshot[];
  return after.map((t) => t.bytesOut - (before.find((b) => b.index === t.index)?.bytesOut ?? 0));
}

console.log(
  `gkd scheduler benchmark: one stream, 4 tunnels, tunnel ${slowIndex} throttled to ${(slowRate / 1e6).toFixed(1)} MB/s; ${reps} × (${warmup} ms warm-up + ${window} ms window)`,
);
console.log(`machine: ${machine()}`);
const results = new Map<string, Measurement[]>(setups.map((s) => [s.name, []]));
for (let r = 1; r <= reps; r++) {
  for (const s of setups) {
    const m = await s.run();
    results.get(s.name)!.push(m);
    const c = carried(m);
    const total = c.reduce((a, b) => a + b, 0) || 1;
    const after = (m.stats.hop1 ?? []) as TunnelSnapshot[];
    const per = c.map((b, i) => `t${i} ${(b / 1e6).toFixed(0)} MB (${pct(b / total)})`).join(', ');
    const last = after.find((t) => t.index === slowIndex);
    const slowInfo =
      s.name.includes('slow') && last
        ? `; slow tunnel: rate estimate ${last.rate === null ? 'none' : `${(last.rate / 1e6).toFixed(1)} MB/s`}, rtt ${last.rtt?.toFixed(0) ?? '?'} ms, queued ${(last.queued / 1024).toFixed(0)} KiB`
        : '';
    console.log(`  round ${r}  ${s.name.padEnd(30)} ${m.mbps.toFixed(1).padStart(7)} MB/s   ${per}${slowInfo}`);
  }
}

console.log('');
console.log(`| setup | MB/s (median) | runs (MB/s) | bytes carried per tunnel, t0 / t1 / t2 / t3 (median share) | slow tunnel t${slowIndex} (MB/s) |`);
console.log('| --- | ---: | --- | --- | ---: |');
for (const s of setups) {
  const ms = results.get(s.name)!;
  const mb = median(ms.map((m) => m.mbps));
  const shares = ms.map((m) => {
    const c = carried(m);
    const total = c.reduce((a, b) => a + b, 0) || 1;
    return c.map((b) => b / total);
  });
  const n = shares[0]?.length ?? 0;
  const share = Array.from({ length: n }, (_, i) => pct(median(shares.map((x) => x[i] ?? 0)))).join(' / ');
  const slowMbps = s.name.includes('slow') ? (median(ms.map((m) => carried(m)[slowIndex] ?? 0)) / (window / 1000) / 1e6).toFixed(1) : '—';
  console.log(`| ${s.name} | ${mb.toFixed(1)} | ${ms.map((m) => m.mbps.toFixed(1)).join(', ')} | ${share} | ${slowMbps} |`);
}
