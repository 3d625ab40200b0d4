/**
 * A loopback relay in front of the server that records the first bytes each client connection sent:
 * a wiretap on a legitimate peer, so attackers can replay its handshakes and learn its session id.
 */
import * as net from 'node:net';
import { Decoder, FrameType } from '@gkd/protocol';

export interface Wiretap {
  port: number;
  /** Per relayed connection: the first `keep` bytes the client sent. */
  captured(): Buffer[];
  /** The session id in the first captured AUTH, if any. */
  sessionId(): Buffer | null;
  close(): Promise<void>;
}

export async function wiretap(targetPort: number, keep = 64 * 1024): Promise<Wiretap> {
  const captures: Buffer[][] = [];
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  };
  const server = net.createServer((inbound) => {
    const chunks: Buffer[] = [];
    let kept = 0;
    captures.push(chunks);
    const outbound = net.connect({ host: '127.0.0.1', port: targetPort });
    track(inbound);
    track(outbound);
    inbound.on('data', (d: Buffer) => {
      if (kept < keep) {
        chunks.push(Buffer.from(d.subarray(0, keep - kept)));
        kept += Math.min(d.length, keep - kept);
      }
    });
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    inbound.once('close', () => outbound.destroy());
    outbound.once('close', () => inbound.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const captured = () => captures.map((c) => Buffer.concat(c)).filter((b) => b.length > 0);
  return {
    port: (server.address() as net.AddressInfo).port,
    captured,
    sessionId() {
      for (const bytes of captured()) {
        try {
          const f = new Decoder().push(bytes)[0];
          if (f?.type === FrameType.AUTH) return f.sessionId;
        } catch {
          /* not a frame */
        }
      }
      return null;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
