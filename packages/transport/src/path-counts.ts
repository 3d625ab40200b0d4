import { TunnelCountController, type AdaptiveConfig, type CountDecision } from './adaptive.js';

/**
 * Tunnel counts per network path (`tunnels: 'auto'` with several paths): one TunnelCountController per
 * path that names no count of its own, each judging its own path by that path's wire bytes and RTT, and
 * the server's per-session cap shared between them. Pure: the client feeds it per-path samples and
 * applies the decisions; a test drives it with a fake clock and fake rates.
 *
 * Why one controller per path and not one over the session: what a step buys differs per path. A
 * loss-bound path (a phone's LTE) gains from every tunnel it adds, a clean one (a wired link) gains
 * nothing past two; one controller over the sum would credit the lossy path's gain to both, and its
 * steps down would retire the last path's tunnels (slots are numbered path by path), whichever needed
 * them.
 *
 * Sharing the server's cap C (WELCOME `maxTunnels`, or what a JOIN refused with LIMIT_EXCEEDED left):
 * the paths with a fixed count take theirs first; of the rest, A = C − fixed, each adaptive path's
 * ceiling is the larger of its fair share ⌊A / paths⌋ and what the other adaptive paths leave unused
 * (A − Σ their targets). So a path may grow into tunnels another path does not need, and a path
 * below its fair share can always grow to it: when it does, a path above its share is pushed back to
 * what is left (a step down now). Whenever every target is within its ceiling, the sum is within A: a
 * path above its share is bounded by A minus the others, and paths at or below their share sum to ≤ A.
 * (A cap below the paths' minimums is the exception: each path keeps at least one tunnel.)
 */

/** One path as the counts see it. */
export interface PathCountSpec {
  /** The path's name, for the reasons in the logs. */
  name: string;
  /** The user's count for this path (`--via ADDR:N`): kept as given. Undefined: the count adapts. */
  fixed?: number;
}

/** One path's observation. */
export interface PathSample {
  /** Bytes its tunnels carried so far, both directions (monotonic), in bytes. */
  bytes: number;
  /** Its tunnels up and taking frames. */
  live: number;
  /** Its RTT estimate, in ms (null if unknown). */
  rttMs: number | null;
}

/** A change of one path's target, with the path's index in the plan. */
export interface PathCountDecision extends CountDecision {
  path: number;
}

/**
 * Each adaptive path's start when `start` is not given: 8 tunnels in all split over the adaptive paths
 * (two paths start at 4 each, the count the fixed-count multipath benchmark measured at 98 % of the
 * links' sum). Not the single-path start (16): each path climbs on its own from there.
 */
export function defaultPathStart(adaptivePaths: number): number {
  return Math.ceil(PATHS_START / Math.max(1, adaptivePaths));
}

/** Tunnels in all that several adaptive paths start with, split over them. */
const PATHS_START = 8;

/** The tunnel counts of a client's paths: fixed ones as given, the others adapted per path within a shared cap. */
export class PathCounts {
  private readonly controllers: (TunnelCountController | null)[];
  private readonly fixed: number[];
  private readonly names: string[];
  /** The cap on the sum over every path (Infinity: none known). */
  private cap = Infinity;

  /**
   * @param paths the paths, in slot order
   * @param config the controller settings (min and max are per path); `start` per path defaults to
   *   `defaultPathStart(number of adaptive paths)`
   */
  constructor(paths: readonly PathCountSpec[], config: Partial<AdaptiveConfig>) {
    const adaptive = paths.filter((p) => p.fixed === undefined).length;
    const start = config.start ?? (adaptive > 1 ? defaultPathStart(adaptive) : undefined);
    const perPath = start === undefined ? config : { ...config, start };
    this.controllers = paths.map((p) => (p.fixed === undefined ? new TunnelCountController(perPath) : null));
    this.fixed = paths.map((p) => p.fixed ?? 0);
    this.names = paths.map((p) => p.name);
  }

  /** Number of paths. */
  get size(): number {
    return this.names.length;
  }

  /** True if path `i` adapts its count. */
  adaptive(i: number): boolean {
    return this.controllers[i] !== null;
  }

  /** Path `i`'s target count now. */
  target(i: number): number {
    return this.controllers[i]?.target ?? this.fixed[i]!;
  }

  /** The targets summed over every path. */
  get total(): number {
    let n = 0;
    for (let i = 0; i < this.size; i++) n += this.target(i);
    return n;
  }

  /** Most tunnels path `i` may have now (its max, lowered by its share of the cap); a fixed path's count. */
  ceiling(i: number): number {
    return this.controllers[i]?.ceiling ?? this.fixed[i]!;
  }

  /** The cap on the sum in force (Infinity when none is known). */
  get sumCap(): number {
    return this.cap;
  }

  /** Path `i`'s goodput over its controller's last epoch, in bytes/s (null if fixed or unknown). */
  lastRate(i: number): number | null {
    return this.controllers[i]?.lastRate ?? null;
  }

  /** How long path `i` has not been busy, in ms (0 for a fixed path). */
  quietFor(i: number, now: number): number {
    return this.controllers[i]?.quietFor(now) ?? 0;
  }

  /**
   * Set the cap on the sum over paths (the server's WELCOME cap, a refused JOIN, or its restoration);
   * returns the steps down it forces.
   */
  setCap(cap: number, now: number, reason: string): PathCountDecision[] {
    this.cap = cap;
    return this.share(now, reason);
  }

  /** Feed one sample per path (same order as the paths); returns the changes of target. */
  sample(now: number, samples: readonly PathSample[]): PathCountDecision[] {
    const out: PathCountDecision[] = [];
    for (let i = 0; i < this.size; i++) {
      const c = this.controllers[i];
      if (!c) continue;
      const d = c.sample({ now, ...samples[i]! });
      if (!d) continue;
      out.push({ ...d, path: i });
      // A path that grew may have taken some of another's share: push that one back now. One that
      // shrank leaves room the others may grow into.
      out.push(...this.share(now, `path ${this.names[i]} takes its share of the server's ${this.cap} tunnels`));
    }
    return out;
  }

  /** Give each adaptive path its ceiling (see the module comment); returns the steps down that forces. */
  private share(now: number, reason: string): PathCountDecision[] {
    const out: PathCountDecision[] = [];
    let fixedSum = 0;
    let adaptive = 0;
    for (let i = 0; i < this.size; i++) {
      if (this.controllers[i]) adaptive++;
      else fixedSum += this.fixed[i]!;
    }
    if (adaptive === 0) return out;
    const avail = Math.max(1, this.cap - fixedSum);
    const fair = Math.max(1, Math.floor(avail / adaptive));
    for (let i = 0; i < this.size; i++) {
      const c = this.controllers[i];
      if (!c) continue;
      let others = 0;
      for (let j = 0; j < this.size; j++) if (j !== i && this.controllers[j]) others += this.target(j);
      const before = c.ceiling;
      const d = c.setCeiling(Math.max(fair, avail - others), now, reason);
      if (d) out.push({ ...d, path: i });
      // Sitting at a ceiling that just rose (another path freed its share): try the room now.
      else if (adaptive > 1 && c.ceiling > before && c.target === before) c.ceilingRaised(now);
    }
    return out;
  }
}
