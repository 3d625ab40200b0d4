import type { Client } from '@gkd/transport';
import type { TransportSnapshot } from './sampler.js';

/** One network path of a client as the status line and metrics show it. */
export interface PathReading {
  /** The path's name (its --via, or `default`). */
  name: string;
  tunnels: number;
  tunnelsUp: number;
  /** Median smoothed RTT of its open tunnels, in ms; null when none is open or measured. */
  rtt: number | null;
  /** Wire bytes its tunnels received and sent, over every tunnel that had one of its slots (monotonic). */
  bytesIn: number;
  bytesOut: number;
}

/**
 * The client's paths in one reading: tunnels up, RTT and byte totals per path, from a sampler snapshot
 * (whose tunnel totals are kept by slot, and a slot belongs to one path for the client's lifetime).
 */
export function readPaths(client: Client, snap: TransportSnapshot): PathReading[] {
  const rtts = new Map<string, number[]>();
  const last = client.paths[client.paths.length - 1]!;
  const slots = client.paths.length === 1 ? client.tunnelCount : last.first + last.tunnels;
  for (const s of snap.sessions) {
    for (const t of s.tunnels) {
      if (t.state !== 'open' || t.rtt === null || t.index < 0 || t.index >= slots) continue;
      const name = client.pathOf(t.index).name;
      rtts.set(name, [...(rtts.get(name) ?? []), t.rtt]);
    }
  }
  return client.paths.map((p) => {
    let bytesIn = 0;
    let bytesOut = 0;
    for (let i = p.first; i < p.first + p.tunnels; i++) {
      const t = snap.tunnels.get(i);
      bytesIn += t?.bytesIn ?? 0;
      bytesOut += t?.bytesOut ?? 0;
    }
    // A path's slots are the most it may have: its count is its (adaptive) target.
    const tunnels = client.pathTunnelCount(p.name);
    return { name: p.name, tunnels, tunnelsUp: client.pathTunnelsUp(p.name), rtt: median(rtts.get(p.name) ?? []), bytesIn, bytesOut };
  });
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
