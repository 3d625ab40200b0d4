import type { ByteBudget } from './budget.js';

/**
 * A byte pool shared by many budgets (one per peer, or per session): the server-wide bound on what all
 * peers together may make one process buffer. Each member budget still has its own limit; the pool
 * adds a second one, shared fairly:
 *
 * - a member is *active* while it holds bytes; the fair share is `limit / active members`;
 * - the bytes every other active member lacks to reach its fair share are kept for it, so a member
 *   may take only what is left of the pool after those reservations (its own missing share included).
 *   A member that took more than its share while it was alone can take nothing more until it is back
 *   under: the bytes it frees go to the others first, so no peer starves another;
 * - the pool never goes past `limit`, except by the one-frame minimum a budget may force for a new
 *   stream so nothing deadlocks (`ByteBudget.reserve(want, min)`), which LIMITS.md counts.
 *
 * A reservation costs O(1): the sum of the missing shares is kept up to date as members reserve and
 * release, and recomputed (O(members)) only when the number of active members changes. A release
 * wakes only the members that wait.
 */
export class BytePool {
  /** Bytes reserved by all members together. */
  used = 0;
  private readonly members = new Set<ByteBudget>();
  /** Members with waiters (`ByteBudget.onRelease`): only they are woken. */
  private readonly waiting = new Set<ByteBudget>();
  private active = 0;
  /** Σ over active members of max(0, fairShare − used): bytes kept for members under their share. */
  private missing = 0;

  /** @param limit bytes all members together may reserve at once. */
  constructor(readonly limit: number) {}

  /** Fair share of one active member, in bytes (the whole pool when nobody is active). */
  get fairShare(): number {
    return Math.floor(this.limit / Math.max(1, this.active));
  }

  /** Members holding bytes now. */
  get activeMembers(): number {
    return this.active;
  }

  /** Add a budget; it shares the pool until `leave`. */
  join(member: ByteBudget): void {
    this.members.add(member);
  }

  /** Remove a budget (its session or peer is gone); what it still holds is given back. */
  leave(member: ByteBudget): void {
    this.waiting.delete(member);
    if (!this.members.delete(member)) return;
    if (member.used > 0) this.change(member.used, 0);
  }

  /** Bytes `member` may reserve now: the pool's free bytes less what is kept for the other members. */
  allowance(member: ByteBudget): number {
    const free = this.limit - this.used;
    if (member.used > 0) {
      // Its own missing share is in `missing` too, and is its to take.
      const own = Math.max(0, this.fairShare - member.used);
      return Math.max(0, free - (this.missing - own));
    }
    // Not active yet: with its first byte the shares shrink to limit / (active + 1), and what the
    // active members would then miss of those is kept for them. Both `missing` (their shortfall from
    // today's larger share) and active × that share bound it from above, so their minimum keeps at
    // least that much, in O(1); the exact rule above applies from the member's first byte on.
    const nextShare = Math.floor(this.limit / (this.active + 1));
    return Math.max(0, free - Math.min(this.missing, this.active * nextShare));
  }

  /** Account a member's usage (called by the member) going from `before` to `after` bytes (called by the member). */
  change(before: number, after: number): void {
    this.used += after - before;
    if (this.used < 0) this.used = 0;
    if (before > 0 !== after > 0) {
      this.active += after > 0 ? 1 : -1;
      this.recount();
      return;
    }
    if (after > 0) {
      const share = this.fairShare;
      this.missing += Math.max(0, share - after) - Math.max(0, share - before);
    }
  }

  private wakeQueued = false;

  /** `member` has waiters now: wake it on the next release by any member. */
  noteWaiting(member: ByteBudget): void {
    if (this.members.has(member)) this.waiting.add(member);
  }

  /**
   * Wake the waiters of every member that has some: bytes came back to the pool, or shares grew. Once
   * per microtask at most: one tunnel read carries many ACKs, and each would otherwise wake every
   * blocked session.
   */
  wake(): void {
    if (this.wakeQueued || this.waiting.size === 0) return;
    this.wakeQueued = true;
    queueMicrotask(() => {
      this.wakeQueued = false;
      const ws = [...this.waiting];
      this.waiting.clear();
      for (const m of ws) m.wake();
    });
  }

  private recount(): void {
    const share = this.fairShare;
    let missing = 0;
    for (const m of this.members) if (m.used > 0) missing += Math.max(0, share - m.used);
    this.missing = missing;
  }
}
