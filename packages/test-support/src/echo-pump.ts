import type { Duplex } from 'node:stream';

/** How an `EchoPump` paces its writes. */
export interface EchoPumpOptions {
  /** Bytes per write, in bytes; a multiple of 251 keeps the pattern aligned. Default 251 × 64. */
  chunk?: number;
  /** Writes per tick. Default 1. */
  perTick?: number;
  /** Time between ticks, in ms. Default 100. */
  everyMs?: number;
  /** Most bytes sent and not yet echoed back, in bytes; a tick that finds more writes nothing. Default 1 MiB. */
  maxInFlight?: number;
}

/**
 * A stream to an echo destination that sends a counter pattern (byte i is i mod 251) at a bounded pace
 * and checks every echoed byte: `received`, `mismatch` and `error` say how the stream fared while
 * servers, workers or tunnels came and went. Paced so a test process can run many at once.
 */
export class EchoPump {
  sent = 0;
  received = 0;
  error: Error | null = null;
  mismatch = false;
  private readonly timer: NodeJS.Timeout;

  constructor(
    readonly conn: Duplex,
    o: EchoPumpOptions = {},
  ) {
    const chunk = o.chunk ?? 251 * 64;
    const perTick = o.perTick ?? 1;
    const maxInFlight = o.maxInFlight ?? 1 << 20;
    const pattern = Buffer.from(Array.from({ length: 2 * chunk }, (_, i) => i % 251));
    conn.on('data', (d: Buffer) => {
      for (let at = 0; at < d.length; at += chunk) {
        const part = d.subarray(at, at + chunk);
        const off = (this.received + at) % 251;
        if (!part.equals(pattern.subarray(off, off + part.length))) this.mismatch = true;
      }
      this.received += d.length;
    });
    conn.on('error', (err: Error) => {
      this.error = err;
    });
    this.timer = setInterval(() => {
      if (this.error || this.sent - this.received > maxInFlight) return;
      for (let i = 0; i < perTick; i++) {
        const off = this.sent % 251;
        conn.write(pattern.subarray(off, off + chunk));
        this.sent += chunk;
      }
    }, o.everyMs ?? 100);
  }

  /** Stop writing (the stream stays open). */
  stop(): void {
    clearInterval(this.timer);
  }
}
