import type * as net from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Joins two duplexes (the client's side and the server's side of one tunnel) and can break the
 * link on command: `kill()` closes both ends (with a TCP RST where they are sockets), `blackhole()`
 * silently drops every byte both ways while both ends stay open.
 */
export class Gate {
  blackholed = false;
  closed = false;
  constructor(
    readonly a: Duplex,
    readonly b: Duplex,
  ) {
    this.join(a, b);
    this.join(b, a);
    const onClose = () => this.kill();
    a.once('close', onClose);
    b.once('close', onClose);
    a.on('error', () => undefined);
    b.on('error', () => undefined);
  }

  private join(from: Duplex, to: Duplex): void {
    from.on('data', (d: Buffer) => {
      if (this.blackholed || this.closed) return;
      if (!to.write(d)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
    from.on('end', () => {
      if (!this.blackholed && !this.closed) to.end();
    });
  }

  /** Cut the link abruptly: RST on sockets, destroy otherwise. */
  kill(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [this.a, this.b]) {
      const sock = s as net.Socket;
      if (typeof sock.resetAndDestroy === 'function' && !sock.destroyed) sock.resetAndDestroy();
      else s.destroy();
    }
  }

  /** Drop everything silently from now on; neither end notices except by silence. */
  blackhole(): void {
    this.blackholed = true;
  }
}
