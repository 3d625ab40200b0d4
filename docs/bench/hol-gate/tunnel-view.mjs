// usage: node docs/bench/hol-gate/tunnel-view.mjs DIR SCEN N
import { readdirSync, readFileSync } from 'node:fs';
const [dir, scen, n] = process.argv.slice(2);
const res = JSON.parse(readFileSync(`${dir}/results.json`, 'utf8'));
const row = res.rows.find((r) => r.scenario === scen && r.tool === 'gkd' && r.n === Number(n));
if (!row) { console.log('no row'); process.exit(0); }
const t0 = Date.parse(row.at) + (row.ttfbMs ?? 0), t1 = t0 + row.seconds * 1000;
function load(re) { const out = []; for (const f of readdirSync(`${dir}/logs`).filter((x) => re.test(x))) for (const l of readFileSync(`${dir}/logs/${f}`, 'utf8').split('\n')) { try { const s = JSON.parse(l); if (s.t >= t0 && s.t <= t1) out.push(s); } catch {} } return out.sort((a, b) => a.t - b.t); }
const sv = load(/-server\.stats\.jsonl$/), cl = load(/-client(-\d+)?\.stats\.jsonl$/);
const sent = (x) => x.tunnels.reduce((a, t) => a + t.out, 0);
const per = {}; let wl = 0, ns = 0;
for (const s of sv) { const ss = [...s.sessions].sort((a, b) => sent(b) - sent(a))[0]; if (!ss) continue; ns++;
  for (const t of ss.tunnels) { if (t.st !== 'open' || !t.k) continue; const p = (per[t.i] ??= { n: 0, dry: 0, cw: 0, rtx0: t.k.rtx, rtx: 0, out0: t.out, out: 0, ca: 0 }); p.n++; if (t.k.ns === 0 && t.q === 0) p.dry++; p.cw += t.k.cwnd; p.rtx = t.k.rtx; p.out = t.out; if (t.k.ca >= 3) p.ca++; }
}
const wins = []; for (const c of cl) { const st = c.sessions[0]?.streams?.sort((a, b) => b.in - a.in)[0]; if (st) wins.push(st); }
// window-limited: server unacked near client window
let held = 0, cnt = 0; for (const s of sv) { const ss = [...s.sessions].sort((a, b) => sent(b) - sent(a))[0]; const st = ss?.streams?.sort((a, b) => b.out - a.out)[0]; const c = cl.filter((x) => x.t <= s.t).pop(); const cs = c?.sessions[0]?.streams?.sort((a, b) => b.in - a.in)[0]; if (st && cs) { cnt++; if (st.unacked >= 0.85 * cs.win) held++; } }
console.log(`${scen} gkd-${n} ${row.mbps.toFixed(1)} Mbit/s  samples ${ns}  window-held ${cnt ? (100 * held / cnt).toFixed(0) : '-'} %  win ${wins.length ? Math.max(...wins.map((w) => w.win)) / 1024 : '-'} KiB`);
for (const [i, p] of Object.entries(per)) console.log(`  t${i}: MiB ${((p.out - p.out0) / 2 ** 20).toFixed(1)} cwnd ${(p.cw / p.n).toFixed(1)} dry ${(100 * p.dry / p.n).toFixed(0)}% recov ${(100 * p.ca / p.n).toFixed(0)}% rtx ${p.rtx - p.rtx0}`);
