import type { Logger } from './logger.js';
import { errorText } from './logger.js';

/** The signals that stop a gkd process gracefully. */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

/** SIGINT/SIGTERM watcher: the first starts a graceful stop, a second one cuts the drain short. */
export interface StopSignals {
  /** Resolves with the first signal. */
  readonly first: Promise<NodeJS.Signals>;
  /** Aborted by a second signal. */
  readonly force: AbortSignal;
  /** Remove the handlers. */
  dispose(): void;
}

/** Take over SIGINT and SIGTERM (Node's default would exit at once, dropping connections). */
export function watchStopSignals(logger: Logger): StopSignals {
  const force = new AbortController();
  let count = 0;
  let resolveFirst!: (s: NodeJS.Signals) => void;
  const first = new Promise<NodeJS.Signals>((r) => (resolveFirst = r));
  const handler = (signal: NodeJS.Signals): void => {
    count++;
    if (count === 1) resolveFirst(signal);
    else {
      logger.warn(`${signal} again: closing now`);
      force.abort();
    }
  };
  for (const s of STOP_SIGNALS) process.on(s, handler);
  return {
    first,
    force: force.signal,
    dispose: () => {
      for (const s of STOP_SIGNALS) process.off(s, handler);
    },
  };
}

/** How one process stops: its parts say how to stop taking work, what is still open, and how to close. */
export interface DrainPlan {
  /** Stop taking new connections and streams (close listeners, GOAWAY). */
  stopAccepting(): void;
  /** Streams still open (or, with `unit`, whatever it counts). */
  active(): number;
  /** What `active()` counts, singular and plural, for the drain log lines. Default open connections. */
  unit?: readonly [string, string];
  /** Close whatever is left, now. */
  close(): Promise<void>;
}

/**
 * Graceful stop: stop accepting, wait until no stream is open (checked every 50 ms) or `timeoutMs`
 * passed or `force` aborted, then close. Logs what it does. Resolves with the streams that were cut.
 */
export async function drainAndClose(plan: DrainPlan, opts: { timeoutMs: number; logger: Logger; force?: AbortSignal }): Promise<number> {
  const { timeoutMs, logger, force } = opts;
  plan.stopAccepting();
  const open = plan.active();
  if (open > 0 && timeoutMs > 0 && !force?.aborted) {
    const [one, many] = plan.unit ?? ['open connection', 'open connections'];
    logger.info(`waiting up to ${timeoutMs / 1000} s for ${open} ${open === 1 ? one : many} to finish`);
    const deadline = Date.now() + timeoutMs;
    while (plan.active() > 0 && Date.now() < deadline && !force?.aborted) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          force?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(50, Math.max(1, deadline - Date.now())));
        force?.addEventListener('abort', done, { once: true });
      });
    }
  }
  const cut = plan.active();
  if (cut > 0)
    logger.info(plan.unit ? `stopping ${cut} ${cut === 1 ? plan.unit[0] : plan.unit[1]} now` : `closing ${cut} connection${cut === 1 ? '' : 's'} still open`);
  await plan.close();
  return cut;
}

/** Things to close, in reverse order of opening; used both on a failed start and on shutdown. */
export class Resources {
  private readonly items: { name: string; close: () => unknown }[] = [];

  constructor(private readonly logger?: Logger) {}

  /** Register `close` for the thing just opened. */
  add(name: string, close: () => unknown): void {
    this.items.push({ name, close });
  }

  /** Close everything, newest first; a failing close is logged at debug and does not stop the others. */
  async closeAll(): Promise<void> {
    for (const item of this.items.splice(0).reverse()) {
      try {
        await item.close();
      } catch (err) {
        this.logger?.debug(`closing ${item.name}: ${errorText(err)}`);
      }
    }
  }
}
