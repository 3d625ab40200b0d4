import type { Tunnel } from './tunnel.js';

/**
 * The one scheduling hook: choose the tunnel for the next frame of `bytes` bytes among `tunnels`
 * (all usable), or undefined if none has room. Pickers differ only here.
 */
export type TunnelPicker = (tunnels: readonly Tunnel[], bytes: number) => Tunnel | undefined;

/** Round-robin over the tunnels that have room in their send buffer. */
export function roundRobin(): TunnelPicker {
  let next = 0;
  return (tunnels) => {
    const n = tunnels.length;
    for (let i = 0; i < n; i++) {
      const t = tunnels[(next + i) % n]!;
      if (t.hasRoom) {
        next = (next + i + 1) % n;
        return t;
      }
    }
    return undefined;
  };
}

/**
 * Least-queued: the tunnel that would deliver this frame soonest, i.e. the smallest
 * (bytes in flight + this frame) / measured delivery rate + half the smoothed RTT. "In flight" counts
 * every byte not yet confirmed by a PONG, not just the socket's send buffer: a slow link hides its
 * queue in kernel buffers, where `writableLength` never sees it. The RTT term keeps a high-latency
 * tunnel idle until the others are that far behind: a frame it carries holds up the receiver's
 * in-order delivery (and so the stream's window) for that long. A tunnel with no rate measured yet is
 * assumed as fast as the fastest measured one. Ties rotate, so idle loopback tunnels share the load.
 */
export function leastQueued(): TunnelPicker {
  let rotate = 0;
  return (tunnels, bytes) => {
    const n = tunnels.length;
    if (n === 0) return undefined;
    let fastest = 0;
    for (const t of tunnels) if (t.rate !== null && t.rate > fastest) fastest = t.rate;
    let best: Tunnel | undefined;
    let bestScore = Infinity;
    rotate = (rotate + 1) % n;
    for (let i = 0; i < n; i++) {
      const t = tunnels[(rotate + i) % n]!;
      if (!t.hasRoom) continue;
      const rate = t.rate !== null && t.rate > 0 ? t.rate : fastest > 0 ? fastest : 1;
      const score = (t.inflight + bytes) / rate + (t.srtt ?? 0) / 2000;
      if (score < bestScore) {
        best = t;
        bestScore = score;
      }
    }
    return best;
  };
}

/** The picker named in a session config. */
export function pickerFor(name: 'least-queued' | 'round-robin'): TunnelPicker {
  return name === 'round-robin' ? roundRobin() : leastQueued();
}
