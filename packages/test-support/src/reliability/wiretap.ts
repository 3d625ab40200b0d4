/**
 * A loopback relay in front of the server that records the first bytes each client connection sent:
 * a wiretap on a legitimate peer, so attackers can replay its handshakes and learn its session id.
 * Built on the server package's recording relay.
 */
import { Decoder, FrameType } from '@gkd/protocol';
import { recordingRelay } from '../relay.js';

export interface Wiretap {
  port: number;
  /** Per relayed connection: the first `keep` bytes the client sent. */
  captured(): Buffer[];
  /** The session id in the first captured AUTH, if any. */
  sessionId(): Buffer | null;
  close(): Promise<void>;
}

export async function wiretap(targetPort: number, keep = 64 * 1024): Promise<Wiretap> {
  const relay = await recordingRelay(targetPort, keep);
  const captured = () => relay.fromClient.map((c) => Buffer.concat(c)).filter((b) => b.length > 0);
  return {
    port: relay.port,
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
    close: () => relay.close(),
  };
}
