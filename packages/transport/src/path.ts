import type { TcpInfo } from './kernel.js';

/** Where a tunnel's path estimate comes from: the kernel's TCP_INFO, or PING timing alone. */
export type PathMode = 'kernel' | 'user';

/** What the scheduler needs to know of one tunnel. Times in ms, sizes in bytes, rates in bytes/s. */
export interface PathView {
  /** True if the tunnel may take another frame now (its user-space queue is below its high-water mark). */
  readonly hasRoom: boolean;
  /**
   * Bytes a new frame would wait behind before it leaves this end: with kernel access, the tunnel's
   * user-space queue plus the kernel's not-yet-sent bytes; without, every byte no PONG has confirmed.
   */
  readonly backlog: number;
  /** Rate at which this tunnel sends, in bytes/s, or null before anything is known. */
  readonly sendRate: number | null;
  /**
   * Bytes the tunnel's congestion window would let it put on the wire at once (the window less what is
   * in flight), in bytes; 0 where unknown (user mode). A frame that fits waits for no one.
   */
  readonly sendRoom: number;
  /** Smoothed round-trip time, in ms, or null before the first measurement. */
  readonly pathRtt: number | null;
  /** Until when (performance.now(), ms) this tunnel is penalised: it held a frame the receiver waited for. */
  readonly penalisedUntil: number;
}

/**
 * When a frame of `bytes` bytes handed to `t` now would reach the peer, in ms from now: what of its
 * backlog and the frame does not fit in the congestion window's free room, at the tunnel's send rate,
 * plus half its RTT. (A tunnel that is not window-limited sends at once: on a fast LAN or loopback,
 * where the CPU and not the window is the limit, equal tunnels then tie and the frames rotate.) `fallbackRate` stands in for a tunnel
 * with no rate yet (the fastest known), so a new tunnel is tried rather than starved. A penalised
 * tunnel counts one more RTT.
 */
export function arrivalMs(t: PathView, bytes: number, fallbackRate: number, now: number): number {
  const rate = t.sendRate !== null && t.sendRate > 0 ? t.sendRate : fallbackRate > 0 ? fallbackRate : 1;
  const rtt = t.pathRtt ?? 0;
  const penalty = t.penalisedUntil > now ? rtt : 0;
  const waiting = Math.max(0, t.backlog + bytes - t.sendRoom);
  return (waiting / rate) * 1000 + rtt / 2 + penalty;
}

/**
 * One tunnel's path estimate from the kernel (TCP_INFO, refreshed at most every `refreshMs`), with
 * PING timing as the fallback. The kernel sees what PINGs cannot: the congestion window right after a
 * loss (a tunnel in recovery sends less, now), the bytes still unsent in its buffer, and an RTT free
 * of our own queueing.
 */
export class PathEstimator {
  private info: TcpInfo | null = null;
  private infoAt = -Infinity;

  /**
   * @param read returns a fresh TCP_INFO, or null (no kernel access, or the socket closed)
   * @param refreshMs how old a TCP_INFO snapshot may be before it is read again, in ms
   * @param clock performance.now() by default (injectable for tests)
   */
  constructor(
    private readonly read: (() => TcpInfo | null) | null,
    private readonly refreshMs = 5,
    private readonly clock: () => number = () => performance.now(),
  ) {}

  get mode(): PathMode {
    return this.read ? 'kernel' : 'user';
  }

  /** The latest TCP_INFO, refreshed if older than `refreshMs`; null in user mode. */
  sample(): TcpInfo | null {
    if (!this.read) return null;
    const now = this.clock();
    if (now - this.infoAt >= this.refreshMs) {
      this.info = this.read() ?? this.info;
      this.infoAt = now;
    }
    return this.info;
  }

  /** The kernel's smoothed RTT in ms, or `pingRtt` without one. */
  rtt(pingRtt: number | null): number | null {
    const i = this.sample();
    return i && i.rtt > 0 ? i.rtt / 1000 : pingRtt;
  }

  /**
   * The tunnel's send rate in bytes/s: the congestion window over the smoothed RTT (what TCP lets it
   * send per round trip, whether or not we kept it busy), but no more than the kernel's pacing rate,
   * or the kernel's delivery rate if higher; the PING-measured `pingRate` without kernel access. The
   * pacing cap matters for BBR, whose window is twice its bandwidth estimate while it paces at about
   * that estimate: by the window alone, its backlog would drain twice as fast as it does, frames
   * would be due too early, and head-of-line copies would go out as the originals arrive. For cubic
   * the kernel paces at 1.2–2 × window / RTT, so the window decides.
   */
  rate(pingRate: number | null): number | null {
    const i = this.sample();
    if (!i || i.rtt <= 0 || i.cwnd <= 0) return pingRate;
    const windowRate = (i.cwnd * (i.mss || 1448)) / (i.rtt / 1e6);
    const paced = i.pacingRate > 0 ? Math.min(windowRate, i.pacingRate) : windowRate;
    return Math.max(paced, i.deliveryRate);
  }

  /** Bytes the congestion window has room for now ((cwnd − unacked) × MSS), or 0 without kernel access. */
  sendRoom(): number {
    const i = this.sample();
    if (!i || i.cwnd <= i.unacked) return 0;
    return (i.cwnd - i.unacked) * (i.mss || 1448);
  }

  /** Bytes written to the kernel and not sent yet (0 without kernel access). */
  notSent(): number {
    return this.sample()?.notSent ?? 0;
  }
}
