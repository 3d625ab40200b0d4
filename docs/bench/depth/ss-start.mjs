// Usage: node ss-start.mjs SAMPLES [SECONDS] (from ss-sample.sh): the first SECONDS (4) of each run, sample by sample,
// summed over iperf3's flows (port 5201) and over gkd's tunnels (9990): flows, congestion windows
// (segments), flows the kernel marks app_limited, unsent KiB, RTT (mean, ms) and Mbit/s acknowledged
// since the sample before. A run starts at the first sample whose acknowledged bytes grew by > 50 kB.
import { readFileSync } from 'node:fs';

const lines = readFileSync(process.argv[2], 'utf8').split('\n');
const span = Number(process.argv[3] ?? 4);
let t = 0;
let key = null;
const rows = new Map();
for (const l of lines) {
  if (l.startsWith('T ')) {
    t = Number(l.slice(2));
    continue;
  }
  if (!l.startsWith('\t')) {
    const p = l.trim().split(/\s+/);
    key = p.length >= 4 ? `${p[2]} ${p[3]}` : null;
    continue;
  }
  if (!key || !/:(5201|9990) /.test(key) || !/bytes_acked/.test(l)) continue;
  const port = key.includes(':5201') ? 'iperf' : 'gkd';
  const num = (re) => Number(re.exec(l)?.[1] ?? 0);
  const k = `${t}|${port}`;
  if (!rows.has(k)) rows.set(k, { t, port, n: 0, cwnd: 0, app: 0, ns: 0, acked: 0, rtt: 0 });
  const o = rows.get(k);
  o.n++;
  o.cwnd += num(/ cwnd:(\d+)/);
  o.app += / app_limited/.test(l) ? 1 : 0;
  o.ns += num(/ notsent:(\d+)/);
  o.acked += num(/ bytes_acked:(\d+)/);
  o.rtt += num(/ rtt:([\d.]+)/);
}
for (const port of ['iperf', 'gkd']) {
  const rs = [...rows.values()].filter((r) => r.port === port && r.n >= 8).sort((a, b) => a.t - b.t);
  let start = null;
  let prev = null;
  for (const r of rs) {
    if (!prev || r.t - prev.t > 2 || r.acked < prev.acked) start = null;
    if (start === null && prev && r.acked - prev.acked > 5e4 && r.t - prev.t < 2) {
      start = prev;
      console.log(`--- ${port} run`);
    }
    if (start && r.t - start.t < span) {
      const mbps = prev ? (((r.acked - prev.acked) * 8) / (r.t - prev.t) / 1e6).toFixed(1) : '';
      console.log(`${(r.t - start.t).toFixed(2)} s  flows ${r.n}  cwnd ${r.cwnd}  app_limited ${r.app}  unsent ${(r.ns / 1024).toFixed(0)} KiB  rtt ${(r.rtt / r.n).toFixed(0)} ms  ${mbps} Mbit/s`);
    }
    prev = r;
  }
}
