/**
 * A loopback relay in front of the server that records the first bytes each client connection sent:
 * a wiretap on a legitimate peer, so attackers can replay its handshakes and learn its session id.
 * Built on the server package's recording relay.
 */
import { Decoder, FrameType, PREFACE_LENGTH, decodePreface } from '@gkd/protocol';
import { recordingRelay } from '../relay.js';

export interface Wiretap {
  port: number;
  /** Per relayed connection: the first `keep` bytes the client sent after its routing preface (what a replay sends after its own). */
  captured(): Buffer[];
  /** The session id in the first captured AUTH, if any. */
  sessionId(): Buffer | null;
  close(): Promise<void>;
}

export async function wiretap(targetPort: number, keep = 64 * 1024): Promise<Wiretap> {
  const relay = await recordingRelay(targetPort, keep);
  const captured = () => relay.fromClient.map((c) => afterPreface(Buffer.concat(c))).filter((b) => b.length > 0);
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

/** The bytes after a tunnel's routing preface (PROTOCOL.md §4.1); all of them if it has none. */
function afterPreface(bytes: Buffer): Buffer {
  if (bytes.length < PREFACE_LENGTH) return bytes;
  try {
    return decodePreface(bytes).rest;
  } catch {
    return bytes;
  }
}
