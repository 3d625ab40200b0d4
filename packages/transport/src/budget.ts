/**
 * A byte budget shared by the streams of one peer (all its sessions): receive windows granted and
 * unacknowledged bytes sent are both reserved from budgets like this one, so what a peer can make
 * this end buffer is bounded no matter how many streams it opens or what windows it advertises.
 */
export class ByteBudget {
  used = 0;
  private readonly waiters = new Set<() => void>();

  /** @param limit bytes this budget may have reserved at once. */
  constructor(readonly limit: number) {}

  /** Bytes still free. */
  get free(): number {
    return Math.max(0, this.limit - this.used);
  }

  /** Reserve up to `want` bytes (at least `min`, even past the limit); returns what was reserved. */
  reserve(want: number, min = 0): number {
    const got = Math.max(min, Math.min(want, this.free));
    this.used += got;
    return got;
  }

  /** Reserve exactly `bytes` if they are free; false otherwise. */
  tryReserve(bytes: number): boolean {
    if (bytes > this.free) return false;
    this.used += bytes;
    return true;
  }

  /** Give bytes back and wake whoever waits for room. */
  release(bytes: number): void {
    if (bytes <= 0) return;
    this.used = Math.max(0, this.used - bytes);
    if (this.waiters.size === 0) return;
    const ws = [...this.waiters];
    this.waiters.clear();
    for (const w of ws) w();
  }

  /** Call `fn` once, the next time bytes are released. */
  onRelease(fn: () => void): void {
    this.waiters.add(fn);
  }
}
