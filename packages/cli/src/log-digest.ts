import type { Logger } from './logger.js';

/** Settings of a LogDigest. */
export interface LogDigestOptions {
  /** Length of one counting window, in ms. Default 10 000. */
  windowMs?: number;
  /** Lines of one kind logged in full per window; the rest are only counted. Default 5. */
  burst?: number;
  /** Kinds tracked at once; events of further kinds are counted under `other`. Default 64. */
  maxKinds?: number;
  /** Distinct sources counted per kind and window (beyond it the summary says "at least"). Default 10 000. */
  maxSources?: number;
}

interface Window {
  started: number;
  logged: number;
  suppressed: number;
  sources: Set<string>;
  sourcesCapped: boolean;
  level: string;
  what: string;
}

/**
 * Log lines that a remote party can cause (refused handshakes, failed OPENs) without letting it fill
 * the operator's disk: per kind of event, the first `burst` lines of each window are logged in full,
 * the rest only counted, and when the window ends one line sums them up ("66 more refused tunnels
 * (handshake evicted) in the last 10 s from 16 addresses"). However fast the events come, a kind costs
 * at most `burst` + 1 lines per window, and memory is bounded by `maxKinds` × `maxSources`.
 */
export class LogDigest {
  private readonly windowMs: number;
  private readonly burst: number;
  private readonly maxKinds: number;
  private readonly maxSources: number;
  private readonly windows = new Map<string, Window>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    options: LogDigestOptions = {},
  ) {
    this.windowMs = options.windowMs ?? 10_000;
    this.burst = options.burst ?? 5;
    this.maxKinds = options.maxKinds ?? 64;
    this.maxSources = options.maxSources ?? 10_000;
  }

  /**
   * One event. `kind` groups events for counting (keep it free of addresses and ids); `what` names it in
   * the summary ("refused tunnels (handshake evicted)"); `source` is the remote address, if known.
   */
  note(level: string, kind: string, what: string, source: string | undefined, message: string, meta: Record<string, unknown> = {}): void {
    const now = Date.now();
    let key = kind;
    if (!this.windows.has(key) && this.windows.size >= this.maxKinds) {
      key = 'other';
      what = 'other events';
    }
    let w = this.windows.get(key);
    if (w && now - w.started >= this.windowMs) {
      this.summarize(w);
      w = undefined;
    }
    if (!w) {
      w = { started: now, logged: 0, suppressed: 0, sources: new Set(), sourcesCapped: false, level, what };
      this.windows.set(key, w);
    }
    if (w.logged < this.burst) {
      w.logged++;
      this.logger.log(level, message, meta);
      return;
    }
    w.suppressed++;
    if (source !== undefined) {
      if (w.sources.size < this.maxSources) w.sources.add(source);
      else w.sourcesCapped = true;
    }
    this.timer ??= setTimeout(() => this.tick(), this.windowMs).unref();
  }

  /** Log every pending summary now and forget all windows (on shutdown). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const w of this.windows.values()) this.summarize(w);
    this.windows.clear();
  }

  /** Close windows that ended; keep a timer while any has suppressed events. */
  private tick(): void {
    this.timer = undefined;
    const now = Date.now();
    let pending = false;
    for (const [key, w] of this.windows) {
      if (now - w.started >= this.windowMs) {
        this.summarize(w);
        this.windows.delete(key);
      } else if (w.suppressed > 0) pending = true;
    }
    if (pending) this.timer = setTimeout(() => this.tick(), this.windowMs).unref();
  }

  private summarize(w: Window): void {
    if (w.suppressed === 0) return;
    const n = w.sources.size;
    const from = n === 0 ? '' : ` from ${w.sourcesCapped ? 'at least ' : ''}${n} address${n === 1 ? '' : 'es'}`;
    const seconds = Math.max(1, Math.round((Date.now() - w.started) / 1000));
    this.logger.log(w.level, `${w.suppressed} more ${w.what} in the last ${seconds} s${from} (not logged one by one)`, {
      event: 'digest',
      what: w.what,
      count: w.suppressed,
      sources: n,
    });
    w.suppressed = 0;
    w.sources.clear();
  }
}
