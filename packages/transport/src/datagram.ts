import { EventEmitter } from 'node:events';
import {
  AssociationClosedError,
  FrameType,
  MAX_DATAGRAM_PAYLOAD,
  MAX_STREAM_ID,
  Reason,
  encode,
  type Address,
  type AssociationFrame,
  type Frame,
} from '@gkd/protocol';
import type { Pickable } from './scheduler.js';

/**
 * Bytes a datagram may find in a tunnel's send buffer above the high-water mark at which the
 * scheduler stops giving it DATA. Streams keep every tunnel just under that mark while they have data,
 * so with no headroom a datagram beside a bulk transfer finds no room several times in a hundred
 * (measured on loopback: 2–9 % dropped). With it, datagrams pass while the buffer holds at most this
 * much more, and delay the streams' next frame by at most this many bytes.
 */
export const DATAGRAM_HEADROOM = 64 * 1024;

/** How many closed association ids a server-side channel remembers, so a late DATAGRAM does not reopen one. */
const CLOSED_MEMORY = 4096;

/** What a datagram channel needs from its session: the tunnels, the scheduling hook, the reliable send path. */
export interface DatagramHost<T extends DatagramTunnel = DatagramTunnel> {
  /** Tunnels that take new frames now. */
  tunnels(): readonly T[];
  /** The session's scheduler; called only with tunnels that have room. */
  pick(tunnels: readonly T[], bytes: number): T | undefined;
  /** Send a control frame the reliable way (kept until confirmed, re-sent after a tunnel loss). */
  sendControl(frame: Frame): void;
  /** The send-buffer mark (bytes) above which `t` takes no DATA (`hasRoom` turns false). */
  highWater(t: T): number;
}

/** The part of a tunnel a datagram touches: room in its send buffer, and a raw write (nothing kept for re-send). */
export interface DatagramTunnel extends Pickable {
  /** Bytes waiting in the socket's send buffer. */
  readonly queued: number;
  write(buf: Buffer): void;
  framesOut: number;
}

/** Datagram counters of one session (since it started). */
export interface DatagramStats {
  /** Associations open now. */
  associations: number;
  /** Datagrams written on a tunnel. */
  sent: number;
  /** Datagrams received and handed to their association. */
  received: number;
  /** Datagrams not sent because no tunnel was up or every tunnel's send buffer was full. */
  dropped: number;
  /** Datagrams not sent because the payload is over MAX_DATAGRAM_PAYLOAD. */
  droppedTooLarge: number;
  /** Datagrams received for an association not open at this end (closed, refused, or never opened). */
  droppedUnknown: number;
}

/** What an association calls on its channel (DatagramChannel). */
interface AssociationOwner {
  send(a: Association, address: Address, payload: Buffer): boolean;
  sendClose(id: number, reason: number, message: string): void;
  forget(a: Association): void;
}

/**
 * One SOCKS5 UDP association carried by a session (PROTOCOL.md §5a). Datagrams are unreliable: `send`
 * writes one on a tunnel that has room now, or drops it. Events: 'datagram' (address, payload),
 * 'close' (AssociationClosedError | undefined: undefined when this end closed it).
 */
export class Association extends EventEmitter {
  #open = true;

  /** @internal created by DatagramChannel */
  constructor(
    readonly id: number,
    private readonly channel: AssociationOwner,
  ) {
    super();
  }

  /** False once closed by either end or with the session. */
  get open(): boolean {
    return this.#open;
  }

  /**
   * Send one datagram to `address` (client) or from `address` (server). Returns false when it was
   * dropped: closed, payload over MAX_DATAGRAM_PAYLOAD, or no tunnel with room (counted either way).
   */
  send(address: Address, payload: Buffer): boolean {
    if (!this.#open) return false;
    return this.channel.send(this, address, payload);
  }

  /** End the association and tell the peer (DATAGRAM_CLOSE, delivered reliably). Idempotent. */
  close(reason: number = Reason.NORMAL, message = ''): void {
    if (!this.#open) return;
    this.channel.sendClose(this.id, reason, message);
    this.end(undefined);
  }

  /** @internal the channel's one way to end it: no frame sent. */
  end(err: AssociationClosedError | undefined): void {
    if (!this.#open) return;
    this.#open = false;
    this.channel.forget(this);
    this.emit('close', err);
  }
}

/**
 * The datagrams of one session: association ids, the send path and its drop policy, and dispatch of
 * received DATAGRAM / DATAGRAM_CLOSE frames. Datagrams never queue here: a datagram that finds every
 * tunnel's buffer full (past the DATA mark plus DATAGRAM_HEADROOM) is dropped at once, so it never
 * waits behind a backlog of bulk data and never holds a stream back by more than the headroom. The client opens associations (`associate`); on the server the first DATAGRAM of a
 * new id creates one and `onAssociation` decides to keep or close it.
 */
export class DatagramChannel<T extends DatagramTunnel = DatagramTunnel> implements AssociationOwner {
  /** Server: called for a new association before its first datagram is delivered. Without it, new associations are refused. */
  onAssociation: ((a: Association) => void) | undefined;
  private readonly associations = new Map<number, Association>();
  private readonly closed = new Set<number>();
  private nextId = 1;
  private lastChange = Date.now();
  private readonly counters = { sent: 0, received: 0, dropped: 0, droppedTooLarge: 0, droppedUnknown: 0 };

  constructor(
    readonly role: 'client' | 'server',
    private readonly host: DatagramHost<T>,
  ) {}

  /** Associations open now. */
  get size(): number {
    return this.associations.size;
  }

  /** When the channel last had no association (ms since the epoch), or null while it has some. */
  get idleSince(): number | null {
    return this.associations.size === 0 ? this.lastChange : null;
  }

  /** Client: open a new association (nothing is sent until its first datagram). */
  associate(): Association {
    if (this.role !== 'client') throw new Error('only the client opens associations');
    if (this.nextId > MAX_STREAM_ID) throw new Error('association ids exhausted for this session');
    const a = new Association(this.nextId++, this);
    this.associations.set(a.id, a);
    this.lastChange = Date.now();
    return a;
  }

  /** @internal */
  send(a: Association, address: Address, payload: Buffer): boolean {
    if (payload.length > MAX_DATAGRAM_PAYLOAD) {
      this.counters.droppedTooLarge++;
      return false;
    }
    const roomy = this.host.tunnels().filter((t) => t.hasRoom || t.queued < this.host.highWater(t) + DATAGRAM_HEADROOM);
    if (roomy.length === 0) {
      this.counters.dropped++;
      return false;
    }
    let buf: Buffer;
    try {
      buf = encode({ type: FrameType.DATAGRAM, association: a.id, address, payload });
    } catch {
      this.counters.droppedTooLarge++; // an address that cannot be encoded (a domain over 255 bytes)
      return false;
    }
    const t = this.host.pick(roomy, buf.length) ?? roomy[0]!;
    // A raw write: a datagram is never kept for re-send (PROTOCOL.md §5a).
    t.write(buf);
    t.framesOut++;
    this.counters.sent++;
    return true;
  }

  /** @internal */
  sendClose(id: number, reason: number, message: string): void {
    this.host.sendControl({ type: FrameType.DATAGRAM_CLOSE, association: id, reason, message });
  }

  /** @internal */
  forget(a: Association): void {
    if (this.associations.get(a.id) !== a) return;
    this.associations.delete(a.id);
    this.lastChange = Date.now();
    this.remember(a.id);
  }

  private remember(id: number): void {
    if (this.role !== 'server') return; // the client never reuses an id
    this.closed.add(id);
    if (this.closed.size > CLOSED_MEMORY) this.closed.delete(this.closed.values().next().value as number);
  }

  /** Handle a DATAGRAM or DATAGRAM_CLOSE from the peer. Never throws for a well-formed frame. */
  onFrame(frame: AssociationFrame): void {
    const id = frame.association;
    let a = this.associations.get(id);
    if (frame.type === FrameType.DATAGRAM_CLOSE) {
      a?.end(new AssociationClosedError(frame.reason, frame.message || undefined));
      if (!a) this.remember(id); // a close that overtook the association's first datagram
      return;
    }
    if (!a) {
      if (this.role === 'client' || this.closed.has(id)) {
        this.counters.droppedUnknown++;
        return;
      }
      a = new Association(id, this);
      this.associations.set(id, a);
      this.lastChange = Date.now();
      if (this.onAssociation) this.onAssociation(a);
      else a.close(Reason.NOT_ALLOWED, 'this end accepts no UDP associations');
      if (!a.open) {
        this.counters.droppedUnknown++;
        return;
      }
    }
    this.counters.received++;
    a.emit('datagram', frame.address, frame.payload);
  }

  /** The session is gone: end every association with `reason` (nothing is sent). */
  closeAll(reason: number, message: string): void {
    for (const a of [...this.associations.values()]) a.end(new AssociationClosedError(reason, message));
  }

  stats(): DatagramStats {
    return { associations: this.associations.size, ...this.counters };
  }
}
