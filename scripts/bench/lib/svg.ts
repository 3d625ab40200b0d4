/**
 * The chart: grouped bars per scenario (median Mbit/s), hand-written SVG (no dependencies). Within a
 * group: direct and the peer tools, then gkd-N next to `iperf3 -P N` (its limit) for each N.
 */
import { label, mbps, order } from './report.js';
import type { Results, ToolId } from './types.js';

const COLORS: Record<ToolId, string> = {
  direct: '#555555',
  relay: '#888888',
  microsocks: '#c98a2b',
  ss: '#8e5ea2',
  kcptun: '#3c9d5d',
  iperf3: '#c9d6e8',
  gkd: '#1f5fae',
  'gkd-tls': '#0b8a8a',
  'gkd-bbr': '#6a3fb0',
};

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function chart(res: Results): string {
  const scen = res.scenarios.filter((s) => res.rows.some((r) => r.scenario === s.id));
  const keys = order(res.rows.filter((r) => scen.some((s) => s.id === r.scenario)));
  const bw = 13;
  const gap = 2;
  const groupGap = 28;
  const groupW = keys.length * (bw + gap) - gap;
  const left = 56;
  const top = 58;
  const plotH = 300;
  const legendH = 24 * Math.ceil(keys.length / 6); // upper bound (iperf3 rows share one entry)
  const width = Math.max(960, left + scen.length * (groupW + groupGap) + 10);
  const height = top + plotH + 64 + legendH;
  let max = 0;
  for (const s of scen) for (const k of keys) max = Math.max(max, mbps(res.rows, s.id, k.tool, k.n) || 0);
  const step = max > 200 ? 50 : max > 50 ? 20 : 10;
  const yMax = Math.max(step, Math.ceil(max / step) * step);
  const y = (v: number): number => top + plotH - (v / yMax) * plotH;
  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`,
  );
  o.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  o.push(
    `<text x="${left}" y="20" font-size="14" font-weight="bold">${esc(`gkd vs direct TCP, iperf3 -P N and peer tools — throughput of one download, Mbit/s (${res.info.params.repeat > 1 ? `median of ${res.info.params.repeat} runs` : 'one run'})`)}</text>`,
  );
  o.push(
    `<text x="${left}" y="38" fill="#444">${esc(`${res.info.date}, ${res.info.host.cores} cores, Linux ${res.info.host.kernel}, Node ${res.info.host.node}; emulated WAN 100 ms RTT, 100 Mbit/s; ${res.info.params.sizeMiB} MiB or ${res.info.params.capS} s per download`)}</text>`,
  );
  for (let v = 0; v <= yMax; v += step) {
    o.push(`<line x1="${left - 4}" x2="${width - 10}" y1="${y(v)}" y2="${y(v)}" stroke="${v === 0 ? '#000' : '#e3e3e3'}"/>`);
    o.push(`<text x="${left - 8}" y="${y(v) + 4}" text-anchor="end">${v}</text>`);
  }
  o.push(`<text transform="translate(14 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">Mbit/s</text>`);
  scen.forEach((s, gi) => {
    const x0 = left + 8 + gi * (groupW + groupGap);
    keys.forEach((k, ki) => {
      const v = mbps(res.rows, s.id, k.tool, k.n);
      if (!Number.isFinite(v)) return;
      const x = x0 + ki * (bw + gap);
      const fill = k.tool === 'gkd' ? gkdShade(k.n) : COLORS[k.tool];
      const stroke = k.tool === 'iperf3' ? ' stroke="#7d93b3" stroke-width="0.8"' : '';
      o.push(
        `<rect x="${x}" y="${y(v)}" width="${bw}" height="${Math.max(0.5, (v / yMax) * plotH)}" fill="${fill}"${stroke}><title>${esc(`(${s.id}) ${label(k.tool, k.n)}: ${v.toFixed(1)} Mbit/s`)}</title></rect>`,
      );
      const ty = y(v) - 3;
      o.push(`<text transform="translate(${x + bw / 2 + 3} ${ty}) rotate(-90)" font-size="9" fill="#333">${v < 10 ? v.toFixed(1) : v.toFixed(0)}</text>`);
    });
    o.push(`<text x="${x0 + groupW / 2}" y="${top + plotH + 18}" text-anchor="middle" font-weight="bold">${esc(`(${s.id})`)}</text>`);
    o.push(`<text x="${x0 + groupW / 2}" y="${top + plotH + 33}" text-anchor="middle" fill="#444">${esc(`${s.title}, ${s.cc}`)}</text>`);
  });
  const ly = top + plotH + 56;
  // One legend entry for all the iperf3 bars: each stands just left of the gkd bar with the same N.
  const legend = keys.filter((k, i) => k.tool !== 'iperf3' || keys.findIndex((x) => x.tool === 'iperf3') === i);
  legend.forEach((k, ki) => {
    const lx = left + (ki % 6) * 150;
    const yy = ly + Math.floor(ki / 6) * 22;
    const fill = k.tool === 'gkd' ? gkdShade(k.n) : COLORS[k.tool];
    o.push(`<rect x="${lx}" y="${yy - 10}" width="12" height="12" fill="${fill}"${k.tool === 'iperf3' ? ' stroke="#7d93b3"' : ''}/>`);
    o.push(`<text x="${lx + 17}" y="${yy}">${esc(k.tool === 'iperf3' ? 'iperf3 -P N (left of gkd-N)' : label(k.tool, k.n))}</text>`);
  });
  o.push('</svg>');
  return o.join('\n') + '\n';
}

/** Darker blue for more tunnels. */
function gkdShade(n: number): string {
  const shades: Record<number, string> = { 1: '#8fb8e8', 2: '#5f98d8', 4: '#2f78c8', 8: '#1f5fae', 16: '#123f78' };
  return shades[n] ?? '#1f5fae';
}
