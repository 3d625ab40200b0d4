import type { BytePool } from './pool.js';

/**
 * A byte budget shared by the streams of one peer (all its sessions): receive windows granted and
 * unacknowledged bytes sent are both reserved from budgets like this one, so what a peer can make
 * this end buffer is bounded no matter how many streams it opens or what windows it advertises.
 * With a `pool` (a server's `maxBufferedBytes`), every reservation also comes out of the pool shared
 * by all peers, which gives each active peer at least its fair share (pool.ts).
 */
export class ByteBudget {
  private usedBytes = 0;
  private readonly waiters = new Set<() => void>();

  /**
   * @param limit bytes this budget may have reserved at once.
   * @param pool the server-wide pool this budget also reserves from; the budget joins it here and
   *   must `leave()` it when its peer is gone.
   */
  constructor(
    readonly limit: number,
    private pool?: BytePool,
  ) {
    pool?.join(this);
  }

  /** Bytes reserved now. */
  get used(): number {
    return this.usedBytes;
  }

  /** Bytes still free: the own limit's room, capped by this budget's allowance from the pool. */
  get free(): number {
    const own = Math.max(0, this.limit - this.usedBytes);
    return this.pool ? Math.min(own, this.pool.allowance(this)) : own;
  }

  /** Reserve up to `want` bytes (at least `min`, even past the limit); returns what was reserved. */
  reserve(want: number, min = 0): number {
    const got = Math.max(min, Math.min(want, this.free));
    this.add(got);
    return got;
  }

  /** Reserve exactly `bytes` if they are free; false otherwise. */
  tryReserve(bytes: number): boolean {
    if (bytes > this.free) return false;
    this.add(bytes);
    return true;
  }

  /** Give bytes back and wake whoever waits for room (in every budget of the pool, when pooled). */
  release(bytes: number): void {
    if (bytes <= 0) return;
    const before = this.usedBytes;
    this.usedBytes = Math.max(0, before - bytes);
    if (this.pool) {
      this.pool.change(before, this.usedBytes);
      this.pool.wake();
    } else this.wake();
  }

  /** Leave the pool (the peer is gone), giving back what is still reserved. */
  leave(): void {
    const pool = this.pool;
    if (!pool) return;
    // Forget the pool first: a stream that ends later must not give the same bytes back twice.
    this.pool = undefined;
    pool.leave(this);
    pool.wake();
  }

  /** Call `fn` once, the next time bytes are released. */
  onRelease(fn: () => void): void {
    this.waiters.add(fn);
    this.pool?.noteWaiting(this);
  }

  /** Run and forget the waiters (called by `release`, or by the pool when another member released). */
  wake(): void {
    if (this.waiters.size === 0) return;
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }

  private add(bytes: number): void {
    if (bytes <= 0) return;
    const before = this.usedBytes;
    this.usedBytes += bytes;
    this.pool?.change(before, this.usedBytes);
  }
}
