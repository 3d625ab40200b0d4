import type { SessionStats } from '@gkd/transport';

/** Wire totals of one tunnel slot (tunnel index), over every tunnel that ever had that index. */
export interface TunnelTotals {
  bytesIn: number;
  bytesOut: number;
  framesIn: number;
  framesOut: number;
}

/** One reading: the sessions as they are now, plus totals that only ever grow. */
export interface TransportSnapshot {
  /** When it was taken (performance.now(), in ms). */
  at: number;
  sessions: SessionStats[];
  /** By tunnel index. */
  tunnels: Map<number, TunnelTotals>;
  /** Stream payload bytes received and sent, over every session so far. */
  bytesIn: number;
  bytesOut: number;
  /** Frames re-sent (after a tunnel loss, or as head-of-line copies), over every session so far. */
  resentFrames: number;
  /** Payload bytes re-sent, over every session so far. */
  resentBytes: number;
  /** Frames copied onto another tunnel because the peer waited for them, over every session so far. */
  holResentFrames: number;
  /** Of those, copies acknowledged too soon to have been needed (SessionStats.holLateFrames), over every session so far. */
  holLateFrames: number;
  /** Payload bytes received that carried nothing new (the peer's copies), over every session so far. */
  duplicateBytes: number;
  /** UDP datagrams sent on and received from the tunnels, over every session so far. */
  datagramsSent: number;
  datagramsReceived: number;
  /** Datagrams the transport dropped (every tunnel backed up or none up, too large, for an association not open), over every session so far. */
  datagramsDropped: number;
}

/** The session counters a sampler keeps monotonic totals of. */
const SESSION_TOTALS = [
  'bytesIn',
  'bytesOut',
  'resentFrames',
  'resentBytes',
  'holResentFrames',
  'holLateFrames',
  'duplicateBytes',
  'datagramsSent',
  'datagramsReceived',
  'datagramsDropped',
] as const;
type SessionTotals = Record<(typeof SESSION_TOTALS)[number], number>;
const zeroTotals = (): SessionTotals => ({
  bytesIn: 0,
  bytesOut: 0,
  resentFrames: 0,
  resentBytes: 0,
  holResentFrames: 0,
  holLateFrames: 0,
  duplicateBytes: 0,
  datagramsSent: 0,
  datagramsReceived: 0,
  datagramsDropped: 0,
});

/** One session total as the session reports it now (the datagram ones are nested in `datagrams`). */
function sessionValue(s: SessionStats, k: keyof SessionTotals): number {
  const d = s.datagrams;
  switch (k) {
    case 'datagramsSent':
      return d?.sent ?? 0;
    case 'datagramsReceived':
      return d?.received ?? 0;
    case 'datagramsDropped':
      return d ? d.dropped + d.droppedTooLarge + d.droppedUnknown : 0;
    default:
      return s[k] ?? 0;
  }
}

/**
 * Turns `stats()` snapshots into monotonic totals for metrics and the status line. The transport's
 * counters restart with each tunnel and session (a reconnected tunnel 3 starts at 0); this keeps the
 * last reading of each tunnel (by its unique id) and session and adds only the growth, so a Prometheus
 * counter never goes down. What a tunnel carried between its last reading and its death is not seen:
 * read often (metrics does every second) to keep that small.
 */
export class TransportSampler {
  private readonly tunnelSeen = new Map<number, TunnelTotals>();
  private readonly sessionSeen = new Map<string, SessionTotals>();
  private readonly totals = { tunnels: new Map<number, TunnelTotals>(), ...zeroTotals() };
  private last: TransportSnapshot | undefined;

  /** `read` returns every live session's stats (one for a client, all peers' for a server). */
  constructor(private readonly read: () => SessionStats[]) {}

  /** Read the transport now. */
  sample(): TransportSnapshot {
    const sessions = this.read();
    const liveTunnels = new Set<number>();
    const liveSessions = new Set<string>();
    const t = this.totals;
    for (const s of sessions) {
      liveSessions.add(s.id);
      const seen = this.sessionSeen.get(s.id) ?? zeroTotals();
      const now = zeroTotals();
      for (const k of SESSION_TOTALS) {
        now[k] = sessionValue(s, k);
        t[k] += growth(now[k], seen[k]);
      }
      this.sessionSeen.set(s.id, now);
      for (const tun of s.tunnels) {
        if (tun.index < 0) continue; // still handshaking
        liveTunnels.add(tun.id);
        const before = this.tunnelSeen.get(tun.id) ?? { bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0 };
        const sum = t.tunnels.get(tun.index) ?? { bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0 };
        sum.bytesIn += growth(tun.bytesIn, before.bytesIn);
        sum.bytesOut += growth(tun.bytesOut, before.bytesOut);
        sum.framesIn += growth(tun.framesIn, before.framesIn);
        sum.framesOut += growth(tun.framesOut, before.framesOut);
        t.tunnels.set(tun.index, sum);
        this.tunnelSeen.set(tun.id, { bytesIn: tun.bytesIn, bytesOut: tun.bytesOut, framesIn: tun.framesIn, framesOut: tun.framesOut });
      }
    }
    for (const id of this.tunnelSeen.keys()) if (!liveTunnels.has(id)) this.tunnelSeen.delete(id);
    for (const id of this.sessionSeen.keys()) if (!liveSessions.has(id)) this.sessionSeen.delete(id);
    this.last = {
      at: performance.now(),
      sessions,
      tunnels: new Map([...t.tunnels].map(([i, v]) => [i, { ...v }])),
      bytesIn: t.bytesIn,
      bytesOut: t.bytesOut,
      resentFrames: t.resentFrames,
      resentBytes: t.resentBytes,
      holResentFrames: t.holResentFrames,
      holLateFrames: t.holLateFrames,
      duplicateBytes: t.duplicateBytes,
      datagramsSent: t.datagramsSent,
      datagramsReceived: t.datagramsReceived,
      datagramsDropped: t.datagramsDropped,
    };
    return this.last;
  }

  /** The last reading (taking one if there is none yet). */
  latest(): TransportSnapshot {
    return this.last ?? this.sample();
  }
}

function growth(now: number, before: number): number {
  return now > before ? now - before : 0;
}
