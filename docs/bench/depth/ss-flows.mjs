// Usage: node ss-flows.mjs SAMPLES: one line per TCP flow of an ss-sample.sh file (Mbit/s while active, mean cwnd / RTT / app-limited % / unsent KiB, mean segment size, retransmitted %, busy / rwnd-limited / sndbuf-limited ms, pacing and delivery rate).
import { readFileSync } from 'node:fs';
const lines = readFileSync(process.argv[2], 'utf8').split('\n');
const conns = new Map();
let t = 0, key = null;
for (const l of lines) {
  if (l.startsWith('T ')) { t = Number(l.slice(2)); continue; }
  if (!l.startsWith('\t')) { const p = l.trim().split(/\s+/); key = p.length >= 4 ? `${p[2]} ${p[3]}` : null; if (key) { const s = p[1]; conns.has(key) || conns.set(key, []); conns.get(key).push({ t, sendq: Number(s) }); } continue; }
  if (!key) continue;
  const o = conns.get(key).at(-1);
  for (const m of l.matchAll(/([a-z_]+)[: ]([0-9.]+)(?:\/([0-9.]+))?(bps|ms)?/g)) o[m[1]] = Number(m[2]);
  o.app_limited = / app_limited/.test(l) ? 1 : 0;
  const ca = /cubic|bbr/.test(l);
}
const rows = [];
for (const [k, s] of conns) {
  const last = s.at(-1);
  if (!(last.bytes_sent > 2e6)) continue;
  const act = s.filter((x) => x.bytes_sent > 1e5);
  const avg = (f) => act.reduce((a, x) => a + (x[f] ?? 0), 0) / act.length;
  const dur = (act.at(-1).t - act[0].t);
  rows.push({ k, start: act[0].t, n: act.length, dur: dur.toFixed(1), mbps: ((last.bytes_acked - act[0].bytes_acked) * 8 / dur / 1e6).toFixed(2),
    cwnd: avg('cwnd').toFixed(1), rtt: avg('rtt').toFixed(0), app: (avg('app_limited') * 100).toFixed(0), notsent: (avg('notsent') / 1024).toFixed(0), sendq: (avg('sendq')/1024).toFixed(0), unacked: avg('unacked').toFixed(1),
    seg: (last.bytes_sent / last.data_segs_out).toFixed(0), retr: ((last.bytes_retrans ?? 0) / last.bytes_sent * 100).toFixed(2), busy: last.busy, rwndl: last.rwnd_limited ?? 0, sndbufl: last.sndbuf_limited ?? 0, ssth: last.ssthresh, reord: last.reordering, dsack: last.dsack_dups ?? 0, pacing: (avg('pacing_rate')/1e6).toFixed(2), deliv: (avg('delivery_rate')/1e6).toFixed(2) });
}
rows.sort((a, b) => a.start - b.start);
console.log('conn                                    n  dur  Mbit  cwnd rtt app% notsentK sendqK unacked seg retr% busy rwndl sndbufl ssth reord dsack pace deliv');
for (const r of rows) console.log([r.k.padEnd(40), r.n, r.dur, r.mbps, r.cwnd, r.rtt, r.app, r.notsent, r.sendq, r.unacked, r.seg, r.retr, r.busy, r.rwndl, r.sndbufl, r.ssth, r.reord, r.dsack, r.pacing, r.deliv].join(' '));
