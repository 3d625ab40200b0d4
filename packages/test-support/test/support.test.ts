import { createServer, type AddressInfo, type Server } from 'node:net';
import { AuthMode, Decoder, FrameType, Reason, authProof, encode } from '@gkd/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { Rng, WirePeer, makeAuth, newSessionId, until } from '../src/index.js';

describe('Rng', () => {
  it('replays the same sequence from the same seed, and another from another seed', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const c = new Rng(43);
    const xs = Array.from({ length: 8 }, () => a.u32());
    expect(Array.from({ length: 8 }, () => b.u32())).toEqual(xs);
    expect(Array.from({ length: 8 }, () => c.u32())).not.toEqual(xs);
  });

  it('keeps range, int and shuffle within bounds; shuffle is a permutation', () => {
    const r = new Rng(7);
    for (let i = 0; i < 1000; i++) {
      const v = r.range(-3, 3);
      expect(v).toBeGreaterThanOrEqual(-3);
      expect(v).toBeLessThanOrEqual(3);
    }
    const items = Array.from({ length: 50 }, (_, i) => i);
    const shuffled = r.shuffle([...items]);
    expect(shuffled).not.toEqual(items);
    expect([...shuffled].sort((x, y) => x - y)).toEqual(items);
  });
});

describe('until', () => {
  it('resolves once the condition holds and rejects naming what it waited for', async () => {
    let n = 0;
    await until(() => ++n >= 3, 1000, 'three polls', 1);
    expect(n).toBe(3);
    await expect(until(() => false, 30, 'never', 5)).rejects.toThrow(/timed out after 30 ms waiting for never/);
  });
});

describe('makeAuth', () => {
  it('builds the AUTH the protocol defines: the proof verifies with the key over the bound inputs', () => {
    const key = Buffer.alloc(32, 9);
    const nonce = Buffer.alloc(32, 1);
    const { frame, input } = makeAuth({ mode: AuthMode.NEW, sessionId: newSessionId(), user: 'u', key }, nonce);
    expect(input.serverNonce).toEqual(nonce);
    expect(frame.proof).toEqual(authProof(key, input));
  });
});

describe('WirePeer', () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  it('answers PINGs, reports the handshake answer, and reads on after it in order', async () => {
    const pongs: number[] = [];
    const prefaces: Buffer[] = [];
    server = createServer((s) => {
      const d = new Decoder();
      let preface = Buffer.alloc(0);
      s.write(Buffer.concat([encode({ type: FrameType.CHALLENGE, nonce: Buffer.alloc(32, 3), flags: 0 }), encode({ type: FrameType.PING, id: 5 })]));
      s.on('data', (data: Buffer) => {
        let chunk = data;
        // The routing preface (PROTOCOL.md §4.1) comes first: 20 bytes, then frames.
        if (preface.length < 20) {
          const k = Math.min(20 - preface.length, chunk.length);
          preface = Buffer.concat([preface, chunk.subarray(0, k)]);
          chunk = chunk.subarray(k);
          if (preface.length === 20) prefaces.push(preface);
        }
        for (const f of d.push(chunk)) {
          if (f.type === FrameType.PONG) pongs.push(f.id);
          if (f.type === FrameType.AUTH) {
            s.end(
              Buffer.concat([
                encode({ type: FrameType.REJECT, reason: Reason.BAD_PROOF, message: 'no' }),
                encode({ type: FrameType.GOAWAY, reason: Reason.NORMAL, message: 'bye' }),
              ]),
            );
          }
        }
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const peer = await WirePeer.connect((server.address() as AddressInfo).port, { challenge: true });
    expect(peer.challenge).toEqual(Buffer.alloc(32, 3));
    await until(() => prefaces.length === 1, 5000, 'the preface');
    expect(prefaces[0]!.subarray(0, 4).toString('latin1')).toBe('GKD\x02');
    const { answer } = await peer.handshake({ mode: AuthMode.NEW, sessionId: newSessionId(), key: Buffer.alloc(32) });
    expect(answer).toMatchObject({ type: FrameType.REJECT, reason: Reason.BAD_PROOF });
    expect(await peer.next()).toMatchObject({ type: FrameType.GOAWAY, message: 'bye' });
    expect(peer.goaway).toBe(Reason.NORMAL);
    await peer.waitClosed();
    expect(pongs).toEqual([5]);
    // Once closed, a handshake reports the close (null) instead of hanging.
    expect((await peer.handshake({ mode: AuthMode.NEW, sessionId: newSessionId(), key: Buffer.alloc(32) })).answer).toBeNull();
  });
});
