import { once } from 'node:events';
import net from 'node:net';

/** A loopback TCP relay in front of a server that records what each client connection sent. */
export interface RecordingRelay {
  port: number;
  /** Per relayed connection, in accept order: the bytes the client sent towards the server (the first `keep`). */
  fromClient: Buffer[][];
  /** Per relayed connection, in accept order: the bytes the server sent back (the first `keep`). */
  fromServer: Buffer[][];
  close(): Promise<void>;
}

/** Record into `chunks` the first `keep` bytes that `socket` receives. */
function tap(socket: net.Socket, chunks: Buffer[], keep: number): void {
  let kept = 0;
  socket.on('data', (d: Buffer) => {
    if (kept >= keep) return;
    const part = d.subarray(0, Math.min(d.length, keep - kept));
    chunks.push(Buffer.from(part));
    kept += part.length;
  });
}

/**
 * Relay 127.0.0.1:(port 0) → 127.0.0.1:`targetPort`, recording both directions (a wiretap): the
 * first `keep` bytes of each connection each way (all by default; bound it for long transfers).
 */
export async function recordingRelay(targetPort: number, keep = Infinity): Promise<RecordingRelay> {
  const fromClient: Buffer[][] = [];
  const fromServer: Buffer[][] = [];
  const sockets = new Set<net.Socket>();
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  };
  const server = net.createServer((inbound) => {
    const up: Buffer[] = [];
    const down: Buffer[] = [];
    fromClient.push(up);
    fromServer.push(down);
    const outbound = net.connect({ host: '127.0.0.1', port: targetPort });
    track(inbound);
    track(outbound);
    tap(inbound, up, keep);
    tap(outbound, down, keep);
    inbound.pipe(outbound);
    outbound.pipe(inbound);
    inbound.once('close', () => outbound.destroy());
    outbound.once('close', () => inbound.destroy());
  });
  server.listen({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    fromClient,
    fromServer,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
