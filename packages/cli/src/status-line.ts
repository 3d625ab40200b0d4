import type { Client } from '@gkd/transport';
import { readPaths, type PathReading } from './path-view.js';
import type { TransportSampler, TransportSnapshot } from './sampler.js';

const CLEAR = '\r\x1b[2K';

/**
 * One live line at the bottom of the terminal, redrawn in place (`\r` + clear line) at most every
 * `intervalMs`. Only for a terminal: the caller checks `StatusLine.wanted`. Anything else written to
 * the same terminal (log lines, the ready line) goes through `interrupt`, which clears the line first
 * and redraws it after, so the two never mix.
 */
export class StatusLine {
  private timer: NodeJS.Timeout | undefined;
  private shown = false;
  private text = '';

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly render: () => string,
    private readonly intervalMs = 500,
  ) {}

  /** True when a status line should be shown: stdout is a terminal and `--quiet` was not given. */
  static wanted(out: NodeJS.WriteStream, quiet: boolean): boolean {
    return out.isTTY === true && !quiet;
  }

  /** Start redrawing. */
  start(): void {
    if (this.timer) return;
    this.draw();
    this.timer = setInterval(() => this.draw(), Math.max(500, this.intervalMs));
    this.timer.unref();
  }

  /** Stop and erase the line. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.erase();
  }

  /** Run `write` (which writes to the same terminal) with the line out of the way; the line comes back unchanged. */
  interrupt(write: () => void): void {
    this.erase();
    write();
    if (this.timer && this.text) this.show(this.text);
  }

  private erase(): void {
    if (!this.shown) return;
    this.out.write(CLEAR);
    this.shown = false;
  }

  /** Render anew (only here, on the timer: at most once per interval). */
  private draw(): void {
    let text = this.render();
    const width = this.out.columns;
    if (width && text.length > width - 1) text = `${text.slice(0, Math.max(0, width - 2))}…`;
    this.text = text;
    this.show(text);
  }

  private show(text: string): void {
    this.out.write(CLEAR + text);
    this.shown = true;
  }
}

/** Bytes per second as `12.3 MB/s`. */
export function formatRate(bytesPerSecond: number): string {
  const units = ['B/s', 'kB/s', 'MB/s', 'GB/s'];
  let v = bytesPerSecond;
  let u = 0;
  while (v >= 1000 && u < units.length - 1) {
    v /= 1000;
    u++;
  }
  return `${v >= 100 || u === 0 ? Math.round(v) : v.toFixed(1)} ${units[u]}`;
}

/** What the client's line shows; computed from two readings. */
export interface ClientStatus {
  tunnelsUp: number;
  /** The count the client keeps up now (with --tunnels auto: the current target). */
  tunnels: number;
  /** With --tunnels auto: the most it may use now (--max-tunnels, or the server's cap). */
  auto?: { ceiling: number };
  /** RTT in ms by tunnel index; null when that tunnel is down or not measured yet. */
  rtt: (number | null)[];
  /** Bytes per second from the server (down) and to it (up). */
  down: number;
  up: number;
  streams: number;
  /** UDP datagrams sent, received and dropped so far; shown once there was any. */
  datagrams?: { sent: number; received: number; dropped: number };
  /** Per network path (several --via): shown instead of the per-tunnel RTTs. */
  paths?: PathStatus[];
}

/** One path on the status line. Rates in bytes per second (wire bytes, frame headers included). */
export interface PathStatus {
  name: string;
  tunnelsUp: number;
  tunnels: number;
  /** Median RTT of its open tunnels, in ms, or null. */
  rtt: number | null;
  down: number;
  up: number;
}

function formatMs(ms: number | null): string {
  return ms === null ? '-' : ms < 10 ? ms.toFixed(1) : String(Math.round(ms));
}

/**
 * `tunnels 8/8 · rtt 0.4 0.5 - 0.3 ms · ↓ 12.3 MB/s ↑ 140 kB/s · 3 streams`; with --tunnels auto
 * `tunnels 16/16 auto ≤32 · rtt 101–148 ms · …` (more than 8 tunnels: the RTT range); with paths:
 * `wlan0 4/4 21 ms ↓ 5.1 MB/s ↑ 40 kB/s · wwan0 0/4 - ms ↓ 0 B/s ↑ 0 B/s · ↓ 5.1 MB/s ↑ 40 kB/s · 3 streams`
 */
export function formatClientStatus(s: ClientStatus): string {
  const known = s.rtt.filter((v): v is number => v !== null);
  const rtt = s.rtt.length > 8 ? (known.length ? `${formatMs(Math.min(...known))}–${formatMs(Math.max(...known))}` : '-') : s.rtt.map(formatMs).join(' ');
  const auto = s.auto ? ` auto ≤${s.auto.ceiling}` : '';
  const d = s.datagrams;
  const udp = d && d.sent + d.received + d.dropped > 0 ? ` · udp ↑ ${d.sent} ↓ ${d.received} · ${d.dropped} dropped` : '';
  const head = s.paths
    ? s.paths.map((p) => `${p.name} ${p.tunnelsUp}/${p.tunnels} ${formatMs(p.rtt)} ms ↓ ${formatRate(p.down)} ↑ ${formatRate(p.up)}`).join(' · ')
    : `tunnels ${s.tunnelsUp}/${s.tunnels}${auto} · rtt ${rtt} ms`;
  return `${head} · ↓ ${formatRate(s.down)} ↑ ${formatRate(s.up)} · ${s.streams} stream${s.streams === 1 ? '' : 's'}${udp}`;
}

/**
 * The render function of a client's status line: throughput over the last ~2 s of readings, RTT per
 * tunnel index (with several paths or a bound one: tunnels, median RTT and rates per path), streams
 * open, and UDP datagrams (totals) once there were any.
 */
export function clientStatusRenderer(client: Client, sampler: TransportSampler): () => string {
  const window: TransportSnapshot[] = [];
  const byPath = client.paths.length > 1 || client.paths[0]!.binding.kind !== 'route';
  const readings: PathReading[][] = [];
  return () => {
    const now = sampler.sample();
    window.push(now);
    if (byPath) readings.push(readPaths(client, now));
    while (window.length > 2 && now.at - window[0]!.at > 2000) {
      window.shift();
      if (byPath) readings.shift();
    }
    const first = window[0]!;
    const seconds = (now.at - first.at) / 1000;
    const rtt: (number | null)[] = Array.from({ length: client.tunnelCount }, () => null);
    let streams = 0;
    for (const s of now.sessions) {
      streams += s.streamsOpen;
      for (const t of s.tunnels) if (t.state === 'open' && t.index >= 0 && t.index < rtt.length) rtt[t.index] = t.rtt;
    }
    return formatClientStatus({
      tunnelsUp: client.tunnelsUp,
      tunnels: client.tunnelCount,
      ...(client.adaptive ? { auto: { ceiling: client.tunnelCeiling } } : {}),
      rtt,
      down: seconds > 0 ? (now.bytesIn - first.bytesIn) / seconds : 0,
      up: seconds > 0 ? (now.bytesOut - first.bytesOut) / seconds : 0,
      streams,
      datagrams: { sent: now.datagramsSent, received: now.datagramsReceived, dropped: now.datagramsDropped },
      paths: byPath
        ? readings[readings.length - 1]!.map((p, i) => {
            const before = readings[0]![i]!;
            return {
              name: p.name,
              tunnelsUp: p.tunnelsUp,
              tunnels: p.tunnels,
              rtt: p.rtt,
              down: seconds > 0 ? (p.bytesIn - before.bytesIn) / seconds : 0,
              up: seconds > 0 ? (p.bytesOut - before.bytesOut) / seconds : 0,
            };
          })
        : undefined,
    });
  };
}
