import type { KeptData } from './retention.js';

/**
 * Head-of-line re-send: which of a stream's unacknowledged frames to send again on another tunnel.
 *
 * A stream's receiver delivers in order, so the frame at the peer's cumulative ACK holds up every
 * byte behind it, whichever tunnel those came on. When that frame's ACK is overdue, the tunnel that
 * carried it is repairing a loss (or queueing): TCP will deliver it, but a copy on a tunnel that
 * is moving delivers it sooner (MPTCP's opportunistic retransmission, Raiciu et al., NSDI 2012;
 * getlantern/multipath re-sends frames older than 2 × RTT). The same tunnel's later frames wait
 * behind the same TCP hole, so those whose ACK would be due by now go too. The receiver drops the
 * duplicates (PROTOCOL.md §6).
 *
 * A frame its tunnel already confirmed (a PONG for a PING written after it came back) reached the
 * peer: its ACK is late for another reason (the receiver is busy, or waits for an earlier gap), and a
 * copy would not help; such a head is left alone. On a tunnel that is repairing a loss, the PONG waits
 * behind the lost segment like everything else, so a stuck frame stays unconfirmed.
 *
 * And a copy only helps if another tunnel is moving: it must have confirmed something sent after the
 * head was. When every tunnel lags alike (the peer's process is overloaded, its ACKs and PONGs all
 * late), nothing is copied.
 *
 * Overdue means: past its `due` time (when its ACK should have come back, computed at send time from
 * the tunnel's backlog, rate and RTT) by more than `grace(tunnel)`, which is about one RTT of that
 * tunnel: the time TCP's fast retransmit needs, so a loss the tunnel repairs by itself costs no copy.
 */

/** Most copies of one frame (the first transmission counts). */
export const MAX_COPIES = 3;

/**
 * The frames to re-send, oldest first (at most `max`): the head frame if its ACK is overdue, and the
 * later frames that were sent on the head's tunnel and are past due. Empty if the head is not overdue.
 *
 * @param frames the stream's unacknowledged frames, oldest (the head) first
 * @param now the current time (performance.now(), ms)
 * @param grace extra wait for a frame on tunnel `id` before its ACK counts as overdue, in ms
 * @param live whether tunnel `id` is still up (frames of a closed tunnel are re-sent by failover)
 * @param confirmed tunnel `id`'s confirmed byte position (see KeptData.end)
 * @param movingSince whether a tunnel other than `id` confirmed something sent after `sentAt`
 */
export function overdueFrames(
  frames: Iterable<KeptData>,
  now: number,
  grace: (tunnel: number) => number,
  live: (tunnel: number) => boolean,
  max: number,
  confirmed: (tunnel: number) => number = () => 0,
  movingSince: (tunnel: number, sentAt: number) => boolean = () => true,
): KeptData[] {
  const out: KeptData[] = [];
  let stuck = -1;
  for (const f of frames) {
    if (stuck === -1) {
      if (f.copies >= MAX_COPIES || !live(f.tunnel) || now <= f.due + grace(f.tunnel) || confirmed(f.tunnel) >= f.end) return out;
      if (!movingSince(f.tunnel, f.sentAt)) return out;
      stuck = f.tunnel;
      out.push(f);
    } else if (f.tunnel === stuck && f.copies < MAX_COPIES && now > f.due && confirmed(stuck) < f.end) {
      out.push(f);
    }
    if (out.length >= max) break;
  }
  return out;
}

/** A bulk stream's head is copied only if its window would run out within this many RTTs plus HORIZON_MS. */
export const HORIZON_RTTS = 2;
/** See HORIZON_RTTS: TCP repairs a loss by itself within about this (fast retransmit, else an RTO of at least 200 ms), in ms. */
export const HORIZON_MS = 200;

/**
 * Whether copying a stream's overdue head frame can speed the stream up. It can if the stream has
 * nothing more to send (a reply, a download's tail: its reader waits for exactly that frame), or if
 * its window would hold it before the stuck tunnel repairs the loss by itself: within
 * `HORIZON_RTTS` RTTs + `HORIZON_MS` at the tunnels' current rate. A bulk stream with window to spare
 * keeps every tunnel busy meanwhile, and a copy would only take a new frame's place (measured: 3 % of a
 * loss-free download's bytes had been such copies).
 *
 * @param pendingBytes bytes the stream has queued and not yet sent
 * @param creditLeft bytes it may still send before its window (or send budget) holds it
 * @param rate the session's tunnels' combined send rate, in bytes/s
 * @param rttMs the session's RTT, in ms
 */
export function copyHelps(pendingBytes: number, creditLeft: number, rate: number, rttMs: number): boolean {
  if (pendingBytes === 0) return true;
  return creditLeft <= (rate * (HORIZON_RTTS * rttMs + HORIZON_MS)) / 1000;
}
