/**
 * Adaptive tunnel count (`tunnels: 'auto'`): a hill climb on the session's goodput. Pure: the client
 * feeds it a sample every ~100 ms and applies the target it returns; a test drives it with a fake clock.
 *
 * Why goodput steps and not a model: a TCP flow on a loss-bound path carries about
 * MSS / (RTT · √p) (Mathis et al., 1997), so N flows carry about N times that until the bottleneck is
 * full, and a flow under a per-flow shaper carries the shaper's rate; on a clean path one flow already
 * fills the link. The client cannot see which case it is in (the sender of a download is the server),
 * but it can see what a step buys: double the tunnels on a loss- or shaper-bound path and goodput
 * nearly doubles; on a full link it does not move. GridFTP's parallel-stream tuning (Hacker et al.,
 * IPDPS 2002; Yildirim et al.) uses the same throughput probing.
 *
 * The rule, per step (the README of this package states it for users):
 * - Only a busy session probes (goodput over the last epoch ≥ `busyRate`): an idle or app-limited one
 *   has nothing to measure.
 * - Up: N → min(cap, 2N), or 4N when the last step paid at least `boostEfficiency` of the proportional
 *   gain (a loss-bound path: climb fast, the first transfer counts). Kept when goodput rose by at least
 *   `minEfficiency` of the proportional gain (doubling: +20 %), else back to N; a ×4 step that fails
 *   is tried again as ×2 at once. A step short of the bar that did no harm (≥ `keepFraction`) is
 *   judged over two epochs before it is undone (one epoch is noisy).
 * - Down (after two up-steps in a row that bought nothing, or at the cap after a hold):
 *   N → max(min, N/2), kept when goodput stays ≥ `keepFraction` of what N carried: no more tunnels
 *   than the path needs. Tunnels a lazy undo left up count: a probe starts from the tunnels up.
 * - A probe that fails holds the next one for `holdMs`, doubling per failure in a row up to `holdMaxMs`.
 * - The same tunnels carrying less than `dropFraction` of what they did (another sender took a share):
 *   holds end, and the next probe goes up.
 * - Idle for `idleShrinkMs`: back to `min`. The next busy period jumps straight back to the last count
 *   that paid (as its first up-probe, judged by the same rule).
 * Each epoch lasts 12 RTTs (0.6–3 s) and starts once the new tunnels are up plus 3 RTTs of slow start.
 */

/** Settings of the controller. Times in ms, rates in bytes per second. */
export interface AdaptiveConfig {
  /** Fewest tunnels. */
  min: number;
  /** Most tunnels (the user's cap; the server's WELCOME cap may lower it). */
  max: number;
  /**
   * Tunnels at the start. Default 16: measured side by side against 8 (docs/bench/auto-start), it cost a
   * clean link nothing and gave the first download under a per-flow shaper (d) 76 → 87 Mbit/s: one step
   * fewer to climb, and the first download counts.
   */
  start: number;
  /** Goodput at or above which the session is busy, in bytes/s. Default 256 KiB/s (~2 Mbit/s). */
  busyRate: number;
  /** Not busy for this long: shrink to `min`, in ms. Default 30 000. */
  idleShrinkMs: number;
  /** Hold after a failed probe, in ms; doubles per failure in a row. Default 8 000. */
  holdMs: number;
  /** Longest hold, in ms. Default 120 000. */
  holdMaxMs: number;
  /** An up-step is kept if it bought at least this share of the proportional gain. Default 0.2. */
  minEfficiency: number;
  /** An up-step that bought at least this share of the proportional gain makes the next step ×4. Default 0.7. */
  boostEfficiency: number;
  /** A down-step is kept if goodput stays at least this fraction. Default 0.9. */
  keepFraction: number;
  /**
   * Goodput below this fraction of what the same count first carried means the path changed (another
   * sender took a share): holds end and the next probe goes up. Default 0.75.
   */
  dropFraction: number;
}

export const defaultAdaptiveConfig: Readonly<AdaptiveConfig> = Object.freeze({
  min: 2,
  max: 32,
  start: 16,
  busyRate: 256 * 1024,
  idleShrinkMs: 30_000,
  holdMs: 8_000,
  holdMaxMs: 120_000,
  minEfficiency: 0.2,
  boostEfficiency: 0.7,
  keepFraction: 0.9,
  dropFraction: 0.75,
});

/** One observation of the session. */
export interface CountSample {
  /** Monotonic time, in ms. */
  now: number;
  /** Bytes the tunnels carried so far, both directions (monotonic), in bytes. */
  bytes: number;
  /** Tunnels up and taking frames. */
  live: number;
  /** The session's RTT estimate, in ms (null if unknown). */
  rttMs: number | null;
}

/** A change of the target tunnel count, with the reason for the logs. */
export interface CountDecision {
  target: number;
  /** Previous target. */
  from: number;
  reason: string;
  /**
   * A step down that may wait: the tunnels above the target did no harm (a probe that bought too
   * little), so the client retires them once the session is quiet instead of now. Retiring tunnels
   * in the middle of a transfer costs a burst (the peer re-sends what it had in flight on them).
   */
  lazy?: boolean;
}

type Phase = 'settling' | 'measuring';

interface Probe {
  dir: 'up' | 'down';
  /** The count before the step, and its goodput (bytes/s). */
  fromN: number;
  fromRate: number;
  /** An up-step's first epoch, when it fell short but did no harm: the step gets a second epoch. */
  firstRate?: number;
}

const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));
const mbit = (bytesPerS: number) => `${((bytesPerS * 8) / 1e6).toFixed(1)} Mbit/s`;

/** The adaptive tunnel-count controller. */
export class TunnelCountController {
  readonly config: AdaptiveConfig;
  private n: number;
  private cap: number;
  private phase: Phase = 'settling';
  private changedAt: number | null = null;
  private settledAt: number | null = null;
  /** The samples of the epoch being measured. */
  private epochSamples: { at: number; bytes: number }[] = [];
  private probe: Probe | null = null;
  private nextDir: 'up' | 'down' = 'up';
  private factor = 2;
  private failures = 0;
  private holdUntil = 0;
  private lastBusy: number | null = null;
  /** The largest count a kept up-step reached since the last idle shrink, to jump back to. */
  private remembered: number;
  /** Goodput of the last finished epoch, in bytes/s (null before the first). */
  lastRate: number | null = null;

  constructor(config: Partial<AdaptiveConfig> = {}) {
    const c = { ...defaultAdaptiveConfig, ...config };
    if (!(Number.isInteger(c.min) && c.min >= 1)) throw new RangeError(`min must be an integer ≥ 1, got ${c.min}`);
    if (!(Number.isInteger(c.max) && c.max >= c.min)) throw new RangeError(`max must be an integer ≥ min (${c.min}), got ${c.max}`);
    c.start = clamp(Math.round(c.start), c.min, c.max);
    this.config = c;
    this.n = c.start;
    this.cap = c.max;
    this.remembered = c.start;
  }

  /** The current target. */
  get target(): number {
    return this.n;
  }

  /** The ceiling in force: the user's `max`, lowered by the server (WELCOME, or a refused JOIN). */
  get ceiling(): number {
    return this.cap;
  }

  /** Lower (or restore) the ceiling; returns a decision if the target had to come down. */
  setCeiling(cap: number, now: number, reason: string): CountDecision | null {
    this.cap = clamp(Math.floor(cap), this.config.min > cap ? 1 : this.config.min, this.config.max);
    if (this.n <= this.cap) return null;
    this.probe = null;
    return this.change(this.cap, now, reason);
  }

  /**
   * The ceiling rose while the count sat at the old one (with several paths: another path freed its
   * share of the server's cap): the next busy epoch probes up, instead of waiting out the hold that
   * reaching the old ceiling set and then probing down.
   */
  ceilingRaised(now: number): void {
    if (this.probe) return;
    this.nextDir = 'up';
    this.holdUntil = Math.min(this.holdUntil, now);
  }

  /** Feed one sample; returns a decision when the target changes. */
  sample(s: CountSample): CountDecision | null {
    const c = this.config;
    const rtt = s.rttMs ?? 100;
    const epoch = clamp(12 * rtt, 600, 3000);
    if (this.changedAt === null) this.changedAt = s.now;
    this.trackBusy(s, epoch);
    if (this.lastBusy !== null && s.now - this.lastBusy >= c.idleShrinkMs && this.n > c.min) {
      this.probe = null;
      this.failures = 0;
      this.nextDir = 'up';
      this.lastBusy = null;
      return this.change(c.min, s.now, `idle for ${Math.round(c.idleShrinkMs / 1000)} s`);
    }
    if (this.phase === 'settling') {
      const timeout = 2000 + 4 * rtt;
      if (this.settledAt === null && (s.live >= this.n || s.now - this.changedAt >= timeout)) this.settledAt = s.now;
      if (this.settledAt !== null && s.now - this.settledAt >= clamp(3 * rtt, 200, 1500)) {
        this.phase = 'measuring';
        this.epochSamples = [{ at: s.now, bytes: s.bytes }];
      }
      return null;
    }
    const e = this.epochSamples;
    e.push({ at: s.now, bytes: s.bytes });
    const from = e[0]!;
    if (s.now - from.at < epoch) return null;
    const rate = ((s.bytes - from.bytes) * 1000) / (s.now - from.at);
    const q = quarters(e);
    this.epochSamples = [{ at: s.now, bytes: s.bytes }];
    this.lastRate = rate;
    // Busy in both halves: a transfer that ended (or began) inside the epoch says nothing about the
    // count. (Not every quarter: on a lossy path a full window can wait a quarter for one repair.)
    const busy = rate >= c.busyRate && q[0]! + q[1]! >= c.busyRate && q[2]! + q[3]! >= c.busyRate;
    if (this.probe) return this.judge(this.probe, rate, busy, s.now);
    if (!busy) return null;
    if (this.levelRate === null) {
      if (s.live === this.n) this.level(rate, s.live);
    } else if (s.live === this.levelLive && rate < c.dropFraction * this.levelRate && Math.max(this.n, s.live) < this.cap) {
      // The same tunnels carry a quarter less than before: the path changed, most often another
      // sender at the same bottleneck took a share (each flow gets about one share, so its added
      // flows took ours). What the last probes found no longer holds: probe up again now instead of
      // waiting out their hold, or the peer that climbed first keeps most of the link. Tunnels a lazy
      // undo left up count: the probe starts from them.
      this.levelRate = null;
      this.failures = 0;
      this.nextDir = 'up';
      this.holdUntil = s.now;
      if (s.live > this.n) this.n = s.live;
    }
    if (s.now < this.holdUntil) return null;
    // Still ramping (slow start, a window growing): a step now would be credited with that growth.
    if (q[2]! + q[3]! > STABLE * (q[0]! + q[1]!)) return null;
    return this.startProbe(rate, s.now, s.live);
  }

  private trackBusy(s: CountSample, epoch: number): void {
    // Busy if the last epoch's worth of samples moved at least busyRate (checked on a rolling pair).
    const w = this.busyWindow;
    w.push({ at: s.now, bytes: s.bytes });
    while (w.length > 2 && s.now - w[1]!.at >= epoch) w.shift();
    const first = w[0]!;
    const span = s.now - first.at;
    if (span >= epoch / 2 && ((s.bytes - first.bytes) * 1000) / span >= this.config.busyRate) this.lastBusy = s.now;
    else if (this.lastBusy === null) this.lastBusy = s.now; // the idle clock starts at the first sample
  }
  private readonly busyWindow: { at: number; bytes: number }[] = [];
  /** Goodput (bytes/s) that `levelLive` tunnels carried, to notice the path changing under them. */
  private levelRate: number | null = null;
  private levelLive = 0;

  private level(rate: number, live: number): void {
    this.levelRate = rate;
    this.levelLive = live;
  }

  private startProbe(rate: number, now: number, live = this.n): CountDecision | null {
    const c = this.config;
    // Tunnels a lazy undo left up carried this epoch's goodput: the probe starts from them, or a
    // probe down from the target would be judged against more tunnels than it leaves.
    if (live > this.n && live <= this.cap) this.n = live;
    let dir = this.nextDir;
    if (dir === 'up' && this.n >= this.cap) dir = 'down';
    if (dir === 'down' && this.n <= c.min) dir = this.n < this.cap ? 'up' : 'down';
    let to: number;
    if (dir === 'up') {
      const jump = this.remembered > this.n ? this.remembered : this.n * this.factor;
      to = clamp(Math.max(this.n + 1, Math.round(jump)), c.min, this.cap);
    } else to = clamp(Math.floor(this.n / 2), c.min, this.cap);
    if (to === this.n) {
      this.holdUntil = now + this.hold();
      return null;
    }
    this.probe = { dir, fromN: this.n, fromRate: rate };
    return this.change(to, now, `probe ${dir}: ${mbit(rate)} on ${this.n}`);
  }

  private judge(p: Probe, epochRate: number, busy: boolean, now: number): CountDecision | null {
    const c = this.config;
    this.probe = null;
    let rate = epochRate;
    let gain = p.fromRate > 0 ? rate / p.fromRate : 1;
    if (!busy) return this.change(p.fromN, now, `probe inconclusive (went idle: ${mbit(p.fromRate)} → ${mbit(rate)})`, true);
    if (p.dir === 'up') {
      let eff = (gain - 1) / (this.n / p.fromN - 1);
      if (eff < c.minEfficiency && gain >= c.keepFraction && p.firstRate === undefined) {
        // Short of the bar but harmless: one epoch is noisy (a loss burst, a competing peer's step,
        // the new tunnels' slow start), so judge the step on two. Costs nothing: the client would
        // keep these tunnels until the session goes quiet anyway.
        this.probe = { ...p, firstRate: rate };
        return null;
      }
      if (p.firstRate !== undefined) {
        rate = (p.firstRate + rate) / 2;
        gain = p.fromRate > 0 ? rate / p.fromRate : 1;
        eff = (gain - 1) / (this.n / p.fromN - 1);
      }
      const got = `${mbit(p.fromRate)} → ${mbit(rate)}${p.firstRate !== undefined ? ' over 2 epochs' : ''}`;
      if (eff >= c.minEfficiency) {
        this.failures = 0;
        this.factor = eff >= c.boostEfficiency ? 4 : 2;
        this.remembered = Math.max(this.remembered, this.n);
        this.nextDir = 'up';
        if (this.n >= this.cap) {
          // At the ceiling: stay a while before checking that all of these tunnels still pay.
          this.nextDir = 'down';
          this.holdUntil = now + 4 * c.holdMs;
          return null;
        }
        // Climb on from here, with this epoch as the baseline.
        return this.startProbe(rate, now);
      }
      if (this.remembered > p.fromN) this.remembered = p.fromN;
      const tried = this.n;
      if (tried > 2 * p.fromN) {
        // A ×4 (or remembered) jump overshot: the knee may lie between; try ×2 from the old count now.
        this.factor = 2;
        this.probe = null;
        const d = this.change(p.fromN, now, `${tried} tunnels bought ${pct(gain)} (${got}): back to ${p.fromN}`);
        const half = Math.min(this.cap, 2 * p.fromN);
        if (half > p.fromN && half < tried) {
          this.probe = { dir: 'up', fromN: p.fromN, fromRate: p.fromRate };
          this.n = half;
          return { target: half, from: tried, reason: `${d!.reason}, then ${half}` };
        }
        return d;
      }
      this.failures++;
      this.holdUntil = now + this.hold();
      // One failed step may have met another sender's climb (its measure is then worth little):
      // try up once more after the hold, and only then see whether fewer tunnels do as well.
      this.nextDir = this.failures >= 2 ? 'down' : 'up';
      this.factor = 2;
      const harmless = gain >= c.keepFraction;
      const d = this.change(p.fromN, now, `${tried} tunnels bought ${pct(gain)} (${got}): back to ${p.fromN}${harmless ? ' when idle' : ''}`, harmless);
      // What the tunnels that stay up carried: if they later carry much less, the path changed (above).
      if (harmless) this.level(rate, tried);
      else this.level(p.fromRate, p.fromN);
      return d;
    }
    const got = `${mbit(p.fromRate)} → ${mbit(rate)}`;
    if (gain >= c.keepFraction) {
      this.failures = 0;
      this.nextDir = 'down';
      this.remembered = this.n;
      this.holdUntil = now; // try the next halving at the next epoch
      return null;
    }
    this.failures++;
    // Probing down only saves sockets, and costs goodput each time it fails: probe down rarely.
    this.holdUntil = now + Math.min(c.holdMaxMs, 4 * this.hold());
    this.nextDir = 'up';
    return this.change(p.fromN, now, `${this.n} tunnels carried ${pct(gain)} (${got}): back to ${p.fromN}`);
  }

  private hold(): number {
    return Math.min(this.config.holdMaxMs, this.config.holdMs * 2 ** Math.max(0, this.failures - 1));
  }

  private change(to: number, now: number, reason: string, lazy = false): CountDecision | null {
    if (to === this.n) return null;
    const from = this.n;
    this.n = to;
    this.levelRate = null;
    this.phase = 'settling';
    this.changedAt = now;
    this.settledAt = null;
    this.epochSamples = [];
    return lazy ? { target: to, from, reason, lazy } : { target: to, from, reason };
  }

  /** How long the session has not been busy, in ms (0 while busy). */
  quietFor(now: number): number {
    return this.lastBusy === null ? 0 : Math.max(0, now - this.lastBusy);
  }
}

/** A level is stable when the second half of an epoch moved at most this much more than the first. */
const STABLE = 1.15;

/** The rates (bytes/s) of an epoch's four quarters, from its samples (first and last bound the epoch). */
function quarters(e: { at: number; bytes: number }[]): number[] {
  const t0 = e[0]!.at;
  const t1 = e[e.length - 1]!.at;
  const at = (t: number): number => {
    // bytes at time t, interpolated between the samples around it
    let i = 1;
    while (i < e.length - 1 && e[i]!.at < t) i++;
    const a = e[i - 1]!;
    const b = e[i]!;
    return b.at === a.at ? b.bytes : a.bytes + ((b.bytes - a.bytes) * (t - a.at)) / (b.at - a.at);
  };
  const out: number[] = [];
  for (let k = 0; k < 4; k++) {
    const ta = t0 + ((t1 - t0) * k) / 4;
    const tb = t0 + ((t1 - t0) * (k + 1)) / 4;
    out.push(((at(tb) - at(ta)) * 1000) / (tb - ta));
  }
  return out;
}

function pct(gain: number): string {
  const d = Math.round((gain - 1) * 100);
  return `${d >= 0 ? '+' : ''}${d} %`;
}
