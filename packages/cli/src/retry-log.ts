import type { Logger } from './logger.js';
import { errorText } from './logger.js';

/**
 * Log lines for a client's reconnect attempts without flooding: a tunnel's consecutive failures are
 * logged at warn on attempts 1, 2, 4, 8, … (the rest at debug), and an attempt number already logged
 * for another tunnel with the same error in the last 2 s is not logged again: 8 tunnels failing
 * alike read as one line per round, and a long outage as a line every doubling of its length.
 */
export class RetryLog {
  private readonly attempts = new Map<number, number>();
  private readonly recent = new Map<string, number>();

  constructor(
    private readonly logger: Logger,
    /** The server, `host:port`, for the message. */
    private readonly server: string,
  ) {}

  /** A tunnel failed to come up and will retry in `delayMs`. */
  failed(index: number, delayMs: number, err: unknown): void {
    const attempt = (this.attempts.get(index) ?? 0) + 1;
    this.attempts.set(index, attempt);
    const why = errorText(err);
    const line = `cannot reach the server ${this.server} (${why}); tunnel ${index} retrying in ${(delayMs / 1000).toFixed(1)} s (attempt ${attempt})`;
    const key = `${attempt}\0${why}`;
    const now = Date.now();
    const seen = this.recent.get(key);
    const isPowerOfTwo = (attempt & (attempt - 1)) === 0;
    if (isPowerOfTwo && (seen === undefined || now - seen > 2000)) {
      this.recent.set(key, now);
      if (this.recent.size > 256) this.recent.clear();
      this.logger.warn(line, { event: 'reconnecting', tunnel: index, delayMs, attempt });
    } else {
      this.logger.debug(line, { event: 'reconnecting', tunnel: index, delayMs, attempt });
    }
  }

  /** The tunnel is up: its next failure counts from 1 again. */
  up(index: number): void {
    this.attempts.delete(index);
  }
}
