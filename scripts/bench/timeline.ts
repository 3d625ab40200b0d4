/**
 * The second-by-second view of one gkd download from a `--gkd lib` run: what held it back. Reads the
 * run's results.json (which row, when) and the probes' stats files in its logs/ directory.
 *
 *   node --import tsx scripts/bench/timeline.ts DIR SCENARIO TUNNELS [STEP_SECONDS] [ROUND]
 *
 * Columns: server tunnel bytes out per step (Mbit/s; writes into socket buffers, so bursts can exceed
 * the link); the download stream's unacknowledged bytes on the server and its receive window on the
 * client (unacked = window: the window is the limit); the client's reorder buffer (segments, KiB held
 * behind a gap); the server tunnels' user-space send queues (each stops taking frames at 256 KiB) and
 * bytes not yet confirmed by a PONG; PING RTT and delivery-rate ranges over the tunnels.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Results } from './lib/types.js';

interface Tunnel {
  i: number;
  st: string;
  rtt: number | null;
  out: number;
  q: number;
  fl: number;
  rate: number | null;
}
interface Stream {
  id: number;
  win: number;
  unacked: number;
  reorder: number;
  buf: number;
  in: number;
  out: number;
}
interface Session {
  tunnels: Tunnel[];
  streams: Stream[];
}
interface Sample {
  t: number;
  sessions: Session[];
}

const [dir = '', scenario = '', tunnels = '', step = '1', round = '1'] = process.argv.slice(2);
if (!dir || !scenario || !tunnels) {
  console.error('usage: timeline.ts DIR SCENARIO TUNNELS [STEP_SECONDS] [ROUND]');
  process.exit(2);
}
const res = JSON.parse(readFileSync(`${dir}/results.json`, 'utf8')) as Results;
const row = res.rows.filter((r) => r.scenario === scenario && r.tool === 'gkd' && r.n === Number(tunnels))[Number(round) - 1];
if (!row) throw new Error(`no gkd-${tunnels} row ${round} in scenario ${scenario}`);
const t0 = Date.parse(row.at);
const t1 = t0 + (row.ttfbMs ?? 0) + row.seconds * 1000 + 500; // the row's start, first byte, body, and half a second

function load(side: RegExp): Sample[] {
  const out: Sample[] = [];
  for (const f of readdirSync(`${dir}/logs`).filter((x) => side.test(x))) {
    for (const line of readFileSync(`${dir}/logs/${f}`, 'utf8').split('\n')) {
      try {
        const s = JSON.parse(line) as Sample;
        if (s.t >= t0 && s.t <= t1) out.push(s);
      } catch {
        /* empty or partial line */
      }
    }
  }
  return out.sort((a, b) => a.t - b.t);
}
/** The server's session of this client: the one whose tunnels sent the most. */
const sent = (x: Session): number => x.tunnels.reduce((n, t) => n + t.out, 0);
const busiest = (s: Sample): Session | undefined => [...s.sessions].sort((a, b) => sent(b) - sent(a))[0];
const stream = (s: Session | undefined, key: 'out' | 'in'): Stream | undefined => [...(s?.streams ?? [])].sort((a, b) => b[key] - a[key])[0];
const kib = (x: number | undefined): string => (x === undefined ? '–' : (x / 1024).toFixed(0));
const range = (xs: number[]): string => (xs.length ? `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}` : '–');

const server = load(/-server\.stats\.jsonl$/);
const client = load(/-client(-\d+)?\.stats\.jsonl$/);
console.log(`(${scenario}) gkd-${tunnels}: ${row.mbps.toFixed(1)} Mbit/s, ${(row.bytes / 2 ** 20).toFixed(0)} MiB in ${row.seconds.toFixed(1)} s`);
console.log('| t s | out Mbit/s | unacked KiB | window KiB | reorder segs / KiB | queued KiB (sum) | unconfirmed KiB (sum) | PING RTT ms | rate Mbit/s |');
console.log('|---:|---:|---:|---:|---|---:|---:|---|---|');
let next = t0;
let last: { t: number; out: number } | undefined;
let ci = 0;
for (const s of server) {
  if (s.t < next) continue;
  next += Number(step) * 1000;
  const ss = busiest(s);
  if (!ss) continue;
  while (ci + 1 < client.length && client[ci + 1]!.t <= s.t) ci++;
  const cs = client[ci] ? stream(client[ci]!.sessions[0], 'in') : undefined;
  const st = stream(ss, 'out');
  const open = ss.tunnels.filter((t) => t.st === 'open');
  const out = open.reduce((n, t) => n + t.out, 0);
  const mbps = last ? ((out - last.out) * 8) / ((s.t - last.t) / 1000) / 1e6 : NaN;
  last = { t: s.t, out };
  const rtts = open.map((t) => t.rtt).filter((x): x is number => x !== null);
  const rates = open
    .map((t) => t.rate)
    .filter((x): x is number => x !== null)
    .map((x) => (x * 8) / 1e6);
  console.log(
    `| ${((s.t - t0) / 1000).toFixed(1)} | ${Number.isFinite(mbps) ? mbps.toFixed(0) : ''} | ${kib(st?.unacked)} | ${kib(cs?.win)} | ${cs ? `${cs.reorder} / ${kib(cs.buf)}` : '–'} | ${kib(open.reduce((n, t) => n + t.q, 0))} | ${kib(open.reduce((n, t) => n + t.fl, 0))} | ${range(rtts)} | ${range(rates)} |`,
  );
}
