/** The limits an Admission enforces; see the front-end configs for their meaning and defaults. */
export interface AdmissionLimits {
  /** Client connections holding a slot at once (handshaking or established). */
  maxConnections: number;
  /** Connections still in their handshake at once, all addresses together. */
  maxHandshakes: number;
  /** Connections still in their handshake at once from one remote address. */
  maxHandshakesPerAddress: number;
}

/** Why a connection was evicted: to make room for a newer one from its own address, or for any newer one. */
export type EvictionCause = 'address' | 'total' | 'connections';

/** Drop an evicted connection now. Called synchronously from `admit`. */
export type Evict = (cause: EvictionCause) => void;

/** Counts an Admission keeps, for a front-end's stats. */
export interface AdmissionCounts {
  /** Connections holding a slot now. */
  connections: number;
  /** Of those, connections still in their handshake. */
  handshakes: number;
}

/**
 * Who gets a slot on a front-end's port. A connection holds a slot from accept until it closes; while
 * it is still in its handshake (SOCKS greeting, auth, request; HTTP request headers) it is also in a
 * registry, oldest first. When a new connection finds its address's share, the handshake total or
 * every slot taken, the oldest handshake (of that address, then overall) is evicted instead of the new
 * connection being refused: a legitimate handshake on the local port takes well under a millisecond,
 * so only a flood of new connections, not a pile of idle ones, can keep one from completing. Only when
 * every slot holds an established connection (one that is opening or proxying) is the newcomer
 * refused; established connections are never evicted for a handshake.
 *
 * Eviction releases the slot at once, before the socket's 'close' arrives, so the counts never exceed
 * the limits. Keys are the client sockets; all calls are idempotent.
 */
export class Admission<K> {
  /** Every key holding a slot. */
  readonly #slots = new Set<K>();
  /** Keys in their handshake, oldest first (Map keeps insertion order), with how to evict each. */
  readonly #handshakes = new Map<K, { address: string; evict: Evict }>();
  /** The same keys by remote address, oldest first. */
  readonly #byAddress = new Map<string, Set<K>>();

  constructor(private readonly limits: AdmissionLimits) {}

  /**
   * Give `key` (a new connection from `address`) a slot and register it as handshaking, evicting
   * older handshakes as needed. Returns false, evicting nothing, when every slot holds an established
   * connection: the caller then refuses the newcomer.
   */
  admit(key: K, address: string, evict: Evict): boolean {
    if (this.#slots.has(key)) return true;
    if (this.#slots.size >= this.limits.maxConnections && this.#handshakes.size === 0) return false;
    const fromHere = this.#byAddress.get(address);
    if (fromHere && fromHere.size >= this.limits.maxHandshakesPerAddress) this.#evict(fromHere.values().next().value!, 'address');
    if (this.#handshakes.size >= this.limits.maxHandshakes) this.#evict(this.#handshakes.keys().next().value!, 'total');
    if (this.#slots.size >= this.limits.maxConnections) this.#evict(this.#handshakes.keys().next().value!, 'connections');
    this.#slots.add(key);
    this.#register(key, address, evict);
    return true;
  }

  /** `key` finished its handshake (it is opening or proxying): it keeps its slot and can no longer be evicted. */
  established(key: K): void {
    const entry = this.#handshakes.get(key);
    if (!entry) return;
    this.#handshakes.delete(key);
    const mine = this.#byAddress.get(entry.address);
    mine?.delete(key);
    if (mine?.size === 0) this.#byAddress.delete(entry.address);
  }

  /**
   * `key` holds a slot and waits for a new handshake (an idle HTTP keep-alive connection): evictable
   * again, as the newest. Does not evict others: it already holds its slot.
   */
  handshaking(key: K, address: string, evict: Evict): void {
    if (!this.#slots.has(key) || this.#handshakes.has(key)) return;
    this.#register(key, address, evict);
  }

  /** `key` closed: free its slot. */
  release(key: K): void {
    this.established(key);
    this.#slots.delete(key);
  }

  /** Connections holding a slot and handshakes in progress, now. */
  counts(): AdmissionCounts {
    return { connections: this.#slots.size, handshakes: this.#handshakes.size };
  }

  #register(key: K, address: string, evict: Evict): void {
    this.#handshakes.set(key, { address, evict });
    let mine = this.#byAddress.get(address);
    if (!mine) {
      mine = new Set();
      this.#byAddress.set(address, mine);
    }
    mine.add(key);
  }

  #evict(key: K | undefined, cause: EvictionCause): void {
    if (key === undefined) return;
    const entry = this.#handshakes.get(key);
    this.release(key);
    entry?.evict(cause);
  }
}
