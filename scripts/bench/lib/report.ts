/** Tables (markdown, printed and written) and the target checks of a run. */
import { isGkd, type LatencyRow, type Results, type Row, type ToolId } from './types.js';

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

export function label(tool: ToolId, n: number): string {
  switch (tool) {
    case 'gkd':
      return `gkd-${n || 'auto'}`;
    case 'gkd-tls':
      return `gkd-${n || 'auto'} tls`;
    case 'gkd-bbr':
      return `gkd-${n || 'auto'} bbr`;
    case 'iperf3':
      return `iperf3 -P ${n}`;
    case 'ss':
      return 'shadowsocks-libev';
    case 'kcptun':
      return 'kcptun (fast)';
    case 'relay':
      return 'Node two-hop relay';
    default:
      return tool;
  }
}

/** Display order of the rows of a scenario. */
export function order(rows: Row[]): { tool: ToolId; n: number }[] {
  const rank: Record<ToolId, number> = { direct: 0, relay: 1, microsocks: 2, ss: 3, kcptun: 4, iperf3: 5, gkd: 6, 'gkd-tls': 7, 'gkd-bbr': 8 };
  const seen = new Map<string, { tool: ToolId; n: number }>();
  for (const r of rows) seen.set(`${r.tool}-${r.n}`, { tool: r.tool, n: r.n });
  return [...seen.values()].sort((a, b) => {
    const big = (t: ToolId): number => (t === 'iperf3' || isGkd(t) ? 1 : 0);
    if (big(a.tool) !== big(b.tool)) return big(a.tool) - big(b.tool);
    if (big(a.tool)) return a.n - b.n || rank[a.tool] - rank[b.tool];
    return rank[a.tool] - rank[b.tool];
  });
}

/** Median throughput of `tool`/`n` in `scenario`. */
export function mbps(rows: Row[], scenario: string, tool: ToolId, n = 1): number {
  return median(rows.filter((r) => r.scenario === scenario && r.tool === tool && r.n === n).map((r) => r.mbps));
}

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '–');
const pct = (x: number): string => (Number.isFinite(x) ? `${Math.round(x * 100)} %` : '–');
const ms = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '–');

/** The tunnel count an auto row ended at (its last change, or the client's target after the download). */
export function chosen(r: Row): number {
  return r.gkd?.countNow ?? r.gkd?.countFinal ?? NaN;
}

/**
 * Median throughput of iperf3 at the -P nearest to the count the auto rows of `scenario` used: the
 * median over rounds of the largest count each reached (a download may end after a step back, so
 * the count at its end understates what it ran with).
 */
export function iperfAtChosen(rows: Row[], scenario: string, which: 'end' | 'largest' = 'largest'): { n: number; mbps: number } {
  const autos = rows.filter((r) => r.scenario === scenario && r.tool === 'gkd' && r.n === 0);
  const n = median(autos.map((r) => (which === 'end' ? chosen(r) : (r.gkd?.countMax ?? chosen(r)))));
  const ps = [...new Set(rows.filter((r) => r.scenario === scenario && r.tool === 'iperf3').map((r) => r.n))];
  if (!Number.isFinite(n) || ps.length === 0) return { n: NaN, mbps: NaN };
  const best = ps.sort((a, b) => Math.abs(a - n) - Math.abs(b - n) || b - a)[0]!;
  return { n: best, mbps: mbps(rows, scenario, 'iperf3', best) };
}

/** --tunnels auto: the count each download chose over time. */
export function countTable(res: Results): string {
  const rows = res.rows.filter((r) => r.tool === 'gkd' && r.n === 0 && r.gkd);
  if (rows.length === 0) return '';
  const lines = ['| scenario | round | Mbit/s | count at the end (largest) | changes: second → count (reason) |', '|---|---:|---:|---|---|'];
  for (const r of rows) {
    const g = r.gkd!;
    const steps = (g.countTimeline ?? []).map((c) => `${c.s.toFixed(1)} s → ${c.to} (${c.reason.replace(/\|/g, '/')})`).join('; ');
    lines.push(`| ${r.scenario} | ${r.round} | ${f1(r.mbps)} | ${chosen(r)} (${g.countMax ?? '–'}) | ${steps || 'none'} |`);
  }
  return lines.join('\n');
}

const CAP_NOTE = 'each 4 × the download size or 2 × the cap';

/** Scenario × tool matrix of median Mbit/s. */
export function matrix(res: Results): string {
  const scen = res.scenarios.filter((s) => res.rows.some((r) => r.scenario === s.id));
  const lines = [
    `| Mbit/s (median of ${res.info.params.repeat}) | ${scen.map((s) => `(${s.id}) ${s.title}`).join(' | ')} |`,
    `|---|${scen.map(() => '---:').join('|')}|`,
  ];
  for (const k of order(res.rows)) {
    const cells = scen.map((s) => {
      const rows = res.rows.filter((r) => r.scenario === s.id && r.tool === k.tool && r.n === k.n);
      if (rows.length === 0) return '';
      const v = median(rows.map((r) => r.mbps));
      return f1(v);
    });
    const name = k.tool === 'gkd' ? `**${label(k.tool, k.n)}**` : label(k.tool, k.n);
    lines.push(`| ${name} | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** Every measurement of one scenario, with CPU, gkd's per-tunnel view and the emulator's drop counters. */
export function details(res: Results, scenario: string): string {
  const rows = res.rows.filter((r) => r.scenario === scenario);
  const direct = mbps(res.rows, scenario, 'direct');
  const lines = [
    '| tool | Mbit/s | vs direct | vs iperf3 -P N | MiB in s | CPU % of a core: client / server / emulator | tunnel share min–max × N | PING RTT ms (server, min–max) | resent frames (bytes, % of the download) | data pkts lost / queue / flow drops |',
    '|---|---:|---:|---:|---|---|---|---|---:|---|',
  ];
  for (const r of rows.sort((a, b) => {
    const o = order(rows);
    return o.findIndex((k) => k.tool === a.tool && k.n === a.n) - o.findIndex((k) => k.tool === b.tool && k.n === b.n) || a.round - b.round;
  })) {
    const ip = isGkd(r.tool) ? (r.n === 0 ? iperfAtChosen(res.rows, scenario, 'end').mbps : mbps(res.rows, scenario, 'iperf3', r.n)) : NaN;
    const g = r.gkd;
    const rtts = g ? g.tunnels.map((t) => t.rttMs).filter((x): x is number => typeof x === 'number' && Number.isFinite(x)) : [];
    const c = r.cpu;
    const cpu = [c.client, c.server, c.fwd].map((x) => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(0))).join(' / ');
    const nm = r.netem;
    lines.push(
      `| ${label(r.tool, r.n)}${res.info.params.repeat > 1 ? ` #${r.round}` : ''} | ${f1(r.mbps)}${r.error ? ` (${r.error.slice(0, 60)})` : ''} | ${r.tool === 'direct' ? '' : f2(r.mbps / direct)} | ${Number.isFinite(ip) ? pct(r.mbps / ip) : ''} | ${(r.bytes / 2 ** 20).toFixed(0)} in ${r.seconds.toFixed(1)}${r.capped ? ' (cap)' : ''} | ${cpu} | ${g ? `${f2(g.shareMin)}–${f2(g.shareMax)}` : ''} | ${rtts.length ? `${ms(Math.min(...rtts))}–${ms(Math.max(...rtts))}` : ''} | ${g ? `${g.resentFrames}${g.resentBytes !== undefined && r.bytes > 0 ? ` (${((100 * g.resentBytes) / r.bytes).toFixed(2)} %)` : ''}` : ''} | ${nm ? `${nm.lossData} / ${nm.queueDrops} / ${nm.flowDrops} of ${nm.pktsData}` : ''} |`,
    );
  }
  return lines.join('\n');
}

/** lib-mode diagnosis of the gkd rows: what the transport's stats() said. */
export function diagnosis(res: Results): string {
  const rows = res.rows.filter((r) => r.tool === 'gkd' && r.gkd && r.gkd.windowKiB !== undefined);
  if (rows.length === 0) return '';
  const lines = [
    '| scenario | gkd-N | Mbit/s | client stream window KiB (max) | server unacked KiB avg / max | reorder segs avg / max | client buffered KiB avg | per tunnel: share × N, RTT ms, inflight KiB, queued KiB, rate Mbit/s |',
    '|---|---|---:|---:|---|---|---:|---|',
  ];
  for (const r of rows) {
    const g = r.gkd!;
    const tun = g.tunnels
      .map((t) => `#${t.index} ${f2(t.share * r.n)}, ${ms(t.rttMs ?? NaN)}, ${ms(t.inflightKiB ?? NaN)}, ${ms(t.queuedKiB ?? NaN)}, ${f1(t.rateMbps ?? NaN)}`)
      .join('; ');
    lines.push(
      `| ${r.scenario} | ${r.n} | ${f1(r.mbps)} | ${ms(g.windowKiB ?? NaN)} | ${ms(g.unackedAvgKiB ?? NaN)} / ${ms(g.unackedMaxKiB ?? NaN)} | ${f1(g.reorderAvg ?? NaN)} / ${g.reorderMax ?? '–'} | ${ms(g.bufferedKiB ?? NaN)} | ${tun} |`,
    );
  }
  return lines.join('\n');
}

export interface Target {
  what: string;
  scenario: string;
  value: number;
  goal: string;
  met: boolean | null;
}

/** The issue's targets, checked against the medians of this run. */
export function targets(res: Results): Target[] {
  const out: Target[] = [];
  const R = res.rows;
  for (const s of res.scenarios) {
    for (const n of res.info.params.tunnels.filter((x) => x > 0)) {
      const g = mbps(R, s.id, 'gkd', n);
      const i = mbps(R, s.id, 'iperf3', n);
      if (Number.isFinite(g) && Number.isFinite(i))
        out.push({ what: `gkd-${n} / iperf3 -P ${n}`, scenario: s.id, value: g / i, goal: '≥ 90 %', met: g / i >= 0.9 });
    }
  }
  const d8 = mbps(R, 'd', 'gkd', 8) / mbps(R, 'd', 'direct');
  if (Number.isFinite(d8)) out.push({ what: 'gkd-8 / direct', scenario: 'd', value: d8, goal: '≥ 7.5×', met: d8 >= 7.5 });
  for (const s of ['a', 'e']) {
    for (const n of res.info.params.tunnels.filter((x) => x > 0)) {
      const v = mbps(R, s, 'gkd', n) / mbps(R, s, 'direct');
      if (Number.isFinite(v)) out.push({ what: `gkd-${n} / direct`, scenario: s, value: v, goal: '≥ 95 %', met: v >= 0.95 });
    }
  }
  const bk = mbps(R, 'b', 'gkd', 16) / mbps(R, 'b', 'kcptun');
  if (Number.isFinite(bk)) out.push({ what: 'gkd-16 / kcptun', scenario: 'b', value: bk, goal: 'report', met: null });
  // --tunnels auto (issue 14)
  const auto = (s: string) => mbps(R, s, 'gkd', 0);
  const ak = auto('b') / mbps(R, 'b', 'kcptun');
  if (Number.isFinite(ak)) out.push({ what: 'gkd-auto / kcptun', scenario: 'b', value: ak, goal: '≥ 1.2×', met: ak >= 1.2 });
  const ad = auto('b') / mbps(R, 'b', 'direct');
  if (Number.isFinite(ad)) out.push({ what: 'gkd-auto / direct', scenario: 'b', value: ad, goal: '≥ 20×', met: ad >= 20 });
  const dl = auto('d') / 100;
  if (Number.isFinite(dl)) out.push({ what: 'gkd-auto / the 100 Mbit/s link', scenario: 'd', value: dl, goal: '≥ 85 %', met: dl >= 0.85 });
  for (const s of ['a', 'e']) {
    const v = auto(s) / mbps(R, s, 'direct');
    if (Number.isFinite(v)) out.push({ what: 'gkd-auto / direct', scenario: s, value: v, goal: '≥ 95 %', met: v >= 0.95 });
  }
  if (res.fair?.rounds.length) {
    const ratio = median(res.fair.rounds.map((r) => Math.min(...r.mbps) / Math.max(...r.mbps)));
    out.push({
      what: 'two peers on auto: smaller / larger share (median)',
      scenario: res.fair.scenario,
      value: ratio,
      goal: '≥ 70 % (within 30 %)',
      met: ratio >= 0.7,
    });
  }
  // "At the N it chose": the count a download settled on (median over rounds); the largest count it
  // tried (a probe it may have undone) is shown beside it.
  const ic = iperfAtChosen(R, 'c', 'end');
  if (Number.isFinite(auto('c') / ic.mbps))
    out.push({
      what: `gkd-auto / iperf3 -P ${ic.n} (nearest the count it settled on, median)`,
      scenario: 'c',
      value: auto('c') / ic.mbps,
      goal: '≥ 90 %',
      met: auto('c') / ic.mbps >= 0.9,
    });
  const il = iperfAtChosen(R, 'c', 'largest');
  if (Number.isFinite(auto('c') / il.mbps) && il.n !== ic.n)
    out.push({
      what: `gkd-auto / iperf3 -P ${il.n} (nearest the largest count it tried, median)`,
      scenario: 'c',
      value: auto('c') / il.mbps,
      goal: 'report',
      met: null,
    });
  if (res.latency) {
    const L = res.latency.rows;
    const idle = L.filter((r) => !r.loaded);
    const extra = median(idle.filter((r) => r.tool === 'gkd').map((r) => r.ttfbMs)) - median(idle.filter((r) => r.tool === 'direct').map((r) => r.ttfbMs));
    if (Number.isFinite(extra))
      out.push({ what: 'TTFB gkd − direct (ms, median)', scenario: res.latency.scenario, value: extra, goal: '≤ 1 tunnel RTT (100 ms)', met: extra <= 100 });
  }
  return out;
}

export function targetTable(res: Results): string {
  const lines = ['| target | scenario | measured | goal | |', '|---|---|---:|---|---|'];
  for (const t of targets(res)) {
    const v = t.goal.includes('%') ? pct(t.value) : t.goal.includes('ms') ? `${ms(t.value)} ms` : `${f2(t.value)}×`;
    lines.push(`| ${t.what} | ${t.scenario} | ${v} | ${t.goal} | ${t.met === null ? '—' : t.met ? 'met' : '**missed**'} |`);
  }
  return lines.join('\n');
}

export function latencyTable(res: Results): string {
  if (!res.latency) return '';
  const L = res.latency.rows;
  const tools = [...new Set(L.map((r) => r.tool))];
  const lines = ['| path | load | TTFB ms median | min | max | extra vs direct (median, same load) | n |', '|---|---|---:|---:|---:|---:|---:|'];
  for (const loaded of [false, true]) {
    const direct = median(L.filter((r) => r.tool === 'direct' && r.loaded === loaded).map((r) => r.ttfbMs));
    for (const t of tools) {
      const v = L.filter((r: LatencyRow) => r.tool === t && r.loaded === loaded && Number.isFinite(r.ttfbMs)).map((r) => r.ttfbMs);
      if (v.length === 0) continue;
      const name = t === 'gkd' ? `gkd (${res.latency.tunnels} tunnels up)` : label(t, 1);
      lines.push(
        `| ${name} | ${loaded ? 'bulk download on the same path' : 'idle'} | ${ms(median(v))} | ${ms(Math.min(...v))} | ${ms(Math.max(...v))} | ${t === 'direct' ? '' : ms(median(v) - direct)} | ${v.length} |`,
      );
    }
  }
  return lines.join('\n');
}

export function loopbackTable(res: Results): string {
  if (!res.loopback) return '';
  const rows = res.loopback.rows;
  const direct = mbps(rows, 'loopback', 'direct');
  const lines = [
    '| path (one stream, loopback) | Mbit/s median | vs direct | runs (Mbit/s) | CPU % of a core, client-side / server-side process (median) |',
    '|---|---:|---:|---|---|',
  ];
  for (const k of order(rows)) {
    const rs = rows.filter((r) => r.tool === k.tool && r.n === k.n);
    const v = median(rs.map((r) => r.mbps));
    const cc = median(rs.map((r) => r.cpu.client ?? NaN));
    const cs = median(rs.map((r) => r.cpu.server ?? NaN));
    lines.push(
      `| ${isGkd(k.tool) ? `gkd${k.tool === 'gkd-tls' ? ' (TLS)' : k.tool === 'gkd-bbr' ? ' (BBR)' : ''}, ${k.n} tunnel${k.n > 1 ? 's' : ''}` : label(k.tool, k.n)} | ${f1(v)} | ${k.tool === 'direct' ? '' : pct(v / direct)} | ${rs.map((r) => f1(r.mbps)).join(', ')} | ${Number.isFinite(cc) || Number.isFinite(cs) ? `${Number.isFinite(cc) ? cc.toFixed(0) : '–'} / ${Number.isFinite(cs) ? cs.toFixed(0) : '–'}` : ''} |`,
    );
  }
  return lines.join('\n');
}

/** The whole report as markdown. */
export function markdown(res: Results): string {
  const i = res.info;
  const parts = [
    `## gkd benchmark — ${i.date}`,
    '',
    `Machine: ${i.host.cores} cores (${i.host.cpu}), ${i.host.memGiB} GiB, Linux ${i.host.kernel}, Node ${i.host.node}; git ${i.git.commit}, gkd from the built packages (dist)${i.git.staleSources?.length ? `; the ${i.git.staleSources.join(', ')} sources were edited after that build (not measured)` : ''}.`,
    `Load average before / after: ${i.loadBefore.join(' ')} / ${i.loadAfter.join(' ')}; machine CPU busy in the 5 s before: ${i.busyBefore.toFixed(0)} %.`,
    `Each download: ${i.params.sizeMiB} MiB or ${i.params.capS} s, whichever comes first; throughput from the first body byte. ` +
      `gkd as ${i.params.gkd === 'cli' ? 'the `gkd` CLI' : 'library-mode probes (scripts/bench/gkd-probe.ts)'}${i.params.session ? ` with session ${i.params.session}` : ''}${i.params.sysctls ? ` and sysctls ${i.params.sysctls.join(' ')} in both namespaces` : ''}; ${i.params.repeat} round(s), interleaved. Run time ${Math.round(i.durationS / 60)} min.`,
    `Command: \`${i.command}\``,
    i.skipped.length ? `Skipped: ${i.skipped.join('; ')}.` : '',
    '',
    res.rows.length ? matrix(res) : '',
    '',
    '### Targets',
    '',
    targetTable(res),
  ];
  if (res.fair) {
    parts.push('', `### Two peers on \`--tunnels auto\` through one bottleneck (scenario ${res.fair.scenario}, both downloading at once, ${CAP_NOTE})`, '');
    parts.push('| round | peer A Mbit/s | peer B Mbit/s | smaller / larger | tunnels A / B at the end |', '|---:|---:|---:|---:|---|');
    for (const r of res.fair.rounds)
      parts.push(`| ${r.round} | ${f1(r.mbps[0])} | ${f1(r.mbps[1])} | ${pct(Math.min(...r.mbps) / Math.max(...r.mbps))} | ${r.counts.join(' / ')} |`);
  }
  const counts = countTable(res);
  if (counts) parts.push('', '### Tunnel counts chosen by `--tunnels auto`', '', counts);
  if (res.latency)
    parts.push(
      '',
      `### Time to first byte of a new connection (scenario ${res.latency.scenario}; gkd tunnel RTT ${ms(res.latency.gkdRttMs ?? NaN)} ms)`,
      '',
      latencyTable(res),
    );
  if (res.loopback) parts.push('', `### Loopback overhead (${res.loopback.sizeMiB} MiB or ${res.loopback.capS} s, no emulator)`, '', loopbackTable(res));
  for (const s of res.scenarios) {
    if (!res.rows.some((r) => r.scenario === s.id)) continue;
    parts.push('', `### (${s.id}) ${s.title} — ${s.cc}, \`${s.config.join(' ')}\``, '', details(res, s.id));
  }
  const diag = diagnosis(res);
  if (diag) parts.push('', '### gkd transport stats (library mode)', '', diag);
  return parts.join('\n') + '\n';
}
