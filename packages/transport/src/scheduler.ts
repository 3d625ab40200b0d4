import type { SchedulerName } from './config.js';
import { arrivalMs, type PathView } from './path.js';

/** What a picker may look at: the path view, plus the PING-based figures `leastQueued` uses. */
export interface Pickable extends PathView {
  /** Delivery rate from PONG confirmations, in bytes/s, or null. */
  readonly rate: number | null;
  /** Bytes written that no PONG has confirmed yet. */
  readonly inflight: number;
  /** PING round-trip time, in ms, or null. */
  readonly srtt: number | null;
}

/**
 * The one scheduling hook: choose the tunnel for the next frame of `bytes` bytes among `tunnels`
 * (all usable), or undefined to send nothing now (none has room, or waiting for a faster one is
 * better). `waiting` is how many more bytes are ready to be scheduled after this frame. Pickers
 * differ only here; control frames go through the same hook with `control` set (room is then
 * ignored: they are small and must not wait).
 */
export type TunnelPicker = <T extends Pickable>(tunnels: readonly T[], bytes: number, waiting?: number, control?: boolean) => T | undefined;

/** Round-robin over the tunnels that have room in their send buffer. */
export function roundRobin(): TunnelPicker {
  let next = 0;
  return (tunnels, _bytes, _waiting, control) => {
    const n = tunnels.length;
    for (let i = 0; i < n; i++) {
      const t = tunnels[(next + i) % n]!;
      if (t.hasRoom || control) {
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
  return (tunnels, bytes, _waiting, control) => {
    const n = tunnels.length;
    if (n === 0) return undefined;
    let fastest = 0;
    for (const t of tunnels) if (t.rate !== null && t.rate > fastest) fastest = t.rate;
    let best: (typeof tunnels)[number] | undefined;
    let bestScore = Infinity;
    rotate = (rotate + 1) % n;
    for (let i = 0; i < n; i++) {
      const t = tunnels[(rotate + i) % n]!;
      if (!t.hasRoom && !control) continue;
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

/**
 * Earliest arrival (ECF, Lim et al., CoNEXT 2017; BLEST, Ferlin et al., 2016): the frame goes to the
 * tunnel with room where it would reach the peer first (`arrivalMs`: backlog and frame at the
 * tunnel's rate, plus half its RTT; with kernel access the backlog is the few bytes not yet sent and
 * the rate follows the congestion window, so a tunnel in loss recovery gets less at once).
 *
 * And it may decline: if a tunnel without room right now (its queue is full) would still deliver
 * this frame and everything else waiting (`waiting`) before the best tunnel with room delivers this
 * one, the frame waits for it. A slow or long path then carries only what the fast ones cannot,
 * instead of holding up the receiver's in-order delivery. The fast tunnel's 'drain' wakes the pump.
 * It does not decline while a tunnel with room sits idle (nothing queued) on a path about as short as
 * the best (RTT within 25 % + 10 ms): every tunnel on one path is kept busy, as N TCP flows would be.
 * Arrivals within 1 ms + 5 % of the best count as ties, and ties rotate, so equal tunnels share the load.
 */
export function earliestArrival(clock: () => number = () => performance.now()): TunnelPicker {
  let rotate = 0;
  return (tunnels, bytes, waiting = 0, control = false) => {
    const n = tunnels.length;
    if (n === 0) return undefined;
    const now = clock();
    let fastest = 0;
    let minRtt = Infinity;
    for (const t of tunnels) {
      const r = t.sendRate;
      if (r !== null && r > fastest) fastest = r;
      if (t.pathRtt !== null && t.pathRtt < minRtt) minRtt = t.pathRtt;
    }
    let bestAt = Infinity;
    let fullAt = Infinity;
    let idleNear = false;
    const at = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const t = tunnels[i]!;
      if (t.hasRoom && t.backlog === 0 && (t.pathRtt === null || t.pathRtt <= minRtt * 1.25 + 10)) idleNear = true;
      if (!t.hasRoom && !control) {
        // When this full tunnel would deliver this frame plus everything waiting behind it.
        const a = arrivalMs(t, bytes + waiting, fastest, now);
        if (a < fullAt) fullAt = a;
        at[i] = Infinity;
        continue;
      }
      at[i] = arrivalMs(t, bytes, fastest, now);
      if (at[i]! < bestAt) bestAt = at[i]!;
    }
    // Declining leaves a tunnel idle; that is right for a long path beside short ones, not for one on
    // the same path whose window shrank after a loss: it needs data to grow it again, or it never
    // gets picked again (its rate estimate stays low). So a tunnel with nothing queued whose RTT is
    // near the best still takes a frame.
    if (bestAt === Infinity || (!control && fullAt < bestAt && !idleNear)) return undefined;
    // Arrivals within a millisecond (and 5 %) of the best are a tie: estimates are not finer than that.
    // Ties rotate, so equal tunnels share the load instead of the one with the luckiest sample taking all.
    const tie = bestAt + 1 + 0.05 * bestAt;
    rotate = (rotate + 1) % n;
    for (let i = 0; i < n; i++) {
      const k = (rotate + i) % n;
      if (at[k]! <= tie) return tunnels[k];
    }
    return undefined;
  };
}

/** The picker a session config names, or the one its factory makes (one picker per session: pickers keep state). */
export function pickerFor(scheduler: SchedulerName | (() => TunnelPicker)): TunnelPicker {
  if (typeof scheduler === 'function') return scheduler();
  return scheduler === 'round-robin' ? roundRobin() : scheduler === 'least-queued' ? leastQueued() : earliestArrival();
}
