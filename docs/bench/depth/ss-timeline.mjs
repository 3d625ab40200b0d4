// Usage: node ss-timeline.mjs SAMPLES: cumulative Mbit/s (bytes acked since the start / seconds) per second, summed over iperf3 flows and over gkd tunnels, one line per run.
import { readFileSync } from 'node:fs';
// aggregate bytes_acked per 1 s for iperf3 (port 5201) and gkd (9990) data flows, per run (runs split by gaps)
const lines = readFileSync(process.argv[2], 'utf8').split('\n');
let t = 0, key = null; const samples = []; // {t, key, acked}
for (const l of lines) {
  if (l.startsWith('T ')) { t = Number(l.slice(2)); continue; }
  if (!l.startsWith('\t')) { const p = l.trim().split(/\s+/); key = p.length >= 4 ? `${p[2]} ${p[3]}` : null; continue; }
  const m = / bytes_acked:(\d+)/.exec(l); if (key && m && /:(5201|9990) /.test(key)) samples.push({ t, key, acked: Number(m[1]), port: key.includes(':5201') ? 'iperf' : 'gkd' });
}
// group by timestamp: sum acked per port
const byT = new Map();
for (const s of samples) { const k = `${s.t}`; byT.has(k) || byT.set(k, { t: s.t, iperf: 0, gkd: 0, ni: 0, ng: 0 }); const o = byT.get(k); o[s.port] += s.acked; s.port === 'iperf' ? o.ni++ : o.ng++; }
const ts = [...byT.values()].sort((a, b) => a.t - b.t);
for (const port of ['iperf', 'gkd']) {
  let start = null, prev = null, out = [];
  for (const o of ts) {
    const v = o[port];
    if (prev && v - prev.v > 5e4 && start === null) start = prev;
    if (start && (o.t - start.t > 16 || (prev && v < prev.v))) { console.log(port, out.join(' ')); start = null; out = []; }
    if (start && o.t - start.t >= out.length + 1) out.push(((v - start.v) * 8 / (o.t - start.t) / 1e6).toFixed(1));
    prev = { t: o.t, v };
  }
  if (out.length) console.log(port, out.join(' '));
}
