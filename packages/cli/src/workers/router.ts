/**
 * Which worker holds which session, for the `gkd server --workers` master: every tunnel carries its
 * session's routing token (PROTOCOL.md §4.1), the first tunnel of a session goes to the least-loaded
 * live worker, and every later tunnel with that token to the same one. Pure: no sockets, no timers.
 */
export class TokenRouter {
  /** token (hex) → worker id, oldest first (a Map keeps insertion order; `route` re-inserts on use). */
  private readonly owner = new Map<string, number>();
  /** Sessions each worker last reported holding. */
  private readonly load = new Map<number, number>();
  /**
   * New tokens routed to each worker that its reports do not count yet. Kept apart from `load`: a
   * report that overwrote one count would drop sessions still on their way, and a burst of new
   * sessions would then pile onto one worker (seen: 4 and 2 of 6 instead of 3 and 3).
   */
  private readonly pending = new Map<number, number>();

  /** @param maxTokens tokens remembered at most; past it the least recently used is forgotten (its session, if still alive, then lands by load and the JOIN fails as UNKNOWN_SESSION). */
  constructor(private readonly maxTokens = 65_536) {}

  /** A worker that can take tunnels (started, or restarted). */
  addWorker(id: number): void {
    this.load.set(id, 0);
    this.pending.set(id, 0);
  }

  /** A worker that died: its sessions are gone, so its tokens route by load again. */
  removeWorker(id: number): void {
    this.load.delete(id);
    this.pending.delete(id);
    for (const [token, w] of this.owner) if (w === id) this.owner.delete(token);
  }

  /** The worker's own count of its live sessions (it reports on every change): new ones were routed tokens. */
  setLoad(id: number, sessions: number): void {
    const before = this.load.get(id);
    if (before === undefined) return;
    const grew = Math.max(0, sessions - before);
    this.pending.set(id, Math.max(0, this.pending.get(id)! - grew));
    this.load.set(id, sessions);
  }

  /** Sessions a worker holds or is about to. */
  private weight(id: number): number {
    return this.load.get(id)! + this.pending.get(id)!;
  }

  /** A session ended: forget its token. */
  forget(token: string): void {
    this.owner.delete(token);
  }

  /** The worker for a tunnel with `token`, or undefined when no worker is up. */
  route(token: string): number | undefined {
    const known = this.owner.get(token);
    if (known !== undefined && this.load.has(known)) {
      this.owner.delete(token);
      this.owner.set(token, known);
      return known;
    }
    let best: number | undefined;
    for (const id of this.load.keys()) if (best === undefined || this.weight(id) < this.weight(best)) best = id;
    if (best === undefined) return undefined;
    this.owner.set(token, best);
    // Count it now: a burst of new sessions must spread before the workers report back.
    this.pending.set(best, this.pending.get(best)! + 1);
    while (this.owner.size > this.maxTokens) this.owner.delete(this.owner.keys().next().value!);
    return best;
  }

  /** Tokens remembered now. */
  get size(): number {
    return this.owner.size;
  }
}
