import { FrameType, Reason, type AckFrame, type Frame } from '@gkd/protocol';
import { describe, expect, it } from 'vitest';
import { resolveSessionConfig } from '../src/config.js';
import { duplexPair } from '../src/memory.js';
import {
  FailoverQueue,
  STALE_RESEND_MEMORY,
  StreamRetention,
  TunnelRetention,
  keptControl,
  keptData,
  type FailoverStreams,
  type KeptData,
  type KeptFrame,
} from '../src/retention.js';
import { Tunnel, tunnelOptions } from '../src/tunnel.js';

/** Retention (retention.ts): kept frames per stream and per tunnel, and the failover queue, on fakes. */

/** `n` consecutive 100-byte DATA frames of stream 1 from offset 0. */
function frames(n: number, stream = 1): KeptData[] {
  return Array.from({ length: n }, (_, i) => keptData(stream, i * 100, Buffer.alloc(100, i)));
}

describe('StreamRetention', () => {
  it('keeps DATA frames oldest first until the cumulative ACK covers them whole', () => {
    const r = new StreamRetention();
    const fs = frames(5);
    for (const f of fs) r.keep(f);
    expect(r.count).toBe(5);
    r.ackTo(250); // covers frames 0 and 1, half of frame 2
    expect(r.count).toBe(3);
    expect([...r.oldest()]).toEqual([fs[2], fs[3], fs[4]]);
    expect([...r.oldest(2)].map((f) => f.offset)).toEqual([200, 300]);
    r.ackTo(100); // an older ACK lets go of nothing more
    expect(r.count).toBe(3);
    r.ackTo(500);
    expect(r.count).toBe(0);
    expect([...r.oldest()]).toEqual([]);
  });

  it('stays in order across compactions of its acknowledged slots', () => {
    const r = new StreamRetention();
    const fs = frames(2000);
    for (const f of fs.slice(0, 1000)) r.keep(f);
    r.ackTo(600 * 100); // 600 acknowledged: past the compaction point
    for (const f of fs.slice(1000)) r.keep(f);
    expect(r.count).toBe(1400);
    expect([...r.oldest(3)]).toEqual([fs[600], fs[601], fs[602]]);
    r.ackTo(1999 * 100);
    expect([...r.oldest()]).toEqual([fs[1999]]);
  });

  it('clear() forgets every frame', () => {
    const r = new StreamRetention();
    for (const f of frames(3)) r.keep(f);
    r.clear();
    expect(r.count).toBe(0);
    expect([...r.oldest()]).toEqual([]);
  });

  it('overdue() applies the head-of-line rule (hol.ts) to the oldest `scan` frames', () => {
    const r = new StreamRetention();
    const fs = frames(4);
    // Head and frame 2 on tunnel 7, due at 1000; frame 1 on tunnel 8; frame 3 on tunnel 7, due later.
    fs.forEach((f, i) => {
      Object.assign(f, { tunnel: i === 1 ? 8 : 7, sentAt: 900, due: i === 3 ? 5000 : 1000, end: 10_000 });
    });
    for (const f of fs) r.keep(f);
    const args = [() => 100, () => true, 16, () => 0, () => true] as const;
    expect(r.overdue(256, 1050, ...args)).toEqual([]); // within grace
    expect(r.overdue(256, 1200, ...args)).toEqual([fs[0], fs[2]]);
    expect(r.overdue(2, 1200, ...args)).toEqual([fs[0]]); // frame 2 is past the scan
    r.ackTo(100); // the head is now frame 1, on tunnel 8: copied alone (no later frame went on tunnel 8)
    expect(r.overdue(256, 1200, ...args)).toEqual([fs[1]]);
  });
});

describe('StreamRetention late copies', () => {
  it('counts the copied frames an ACK covers too soon after their latest copy (the first transmission won), not older copies nor uncopied frames', () => {
    const r = new StreamRetention();
    const fs = frames(4);
    for (const f of fs) r.keep(f);
    fs[0]!.copies = 2;
    fs[0]!.sentAt = 1000; // copied at 1000; ACK at 1020: too soon for the copy's own round trip
    fs[1]!.copies = 2;
    fs[1]!.sentAt = 900; // copied at 900; ACK at 1020: may have been the copy
    fs[2]!.sentAt = 1010; // never copied
    const tooRecent = (sentAt: number) => 1020 - sentAt < 90;
    expect(r.ackTo(300, tooRecent)).toBe(1);
    fs[3]!.copies = 3;
    fs[3]!.sentAt = 1015;
    expect(r.ackTo(400, tooRecent)).toBe(1);
    expect(r.ackTo(400, tooRecent)).toBe(0); // nothing new acknowledged
  });
});

describe('TunnelRetention', () => {
  it('keeps frames until a PONG confirms the PING they were sent before', () => {
    const r = new TunnelRetention();
    const [a, b, c] = frames(3);
    r.keep(a!, 1);
    r.keep(keptControl({ type: FrameType.FIN, stream: 1, offset: 300 }), 1);
    r.keep(b!, 2);
    r.keep(c!, 3);
    expect(r.length).toBe(4);
    r.confirm(0); // an id below every tag confirms nothing
    expect(r.length).toBe(4);
    r.confirm(1);
    expect(r.length).toBe(2);
    expect(r.takeUnconfirmed()).toEqual([b, c]);
    expect(r.length).toBe(0);
    expect(r.takeUnconfirmed()).toEqual([]);
  });

  it("hands over the very objects it was given: a DATA frame is the stream's own record", () => {
    const r = new TunnelRetention();
    const [a] = frames(1);
    r.keep(a!, 1);
    expect(r.takeUnconfirmed()[0]).toBe(a);
  });

  it('counts DATA and control frames but not ACKs against the unconfirmed-frame limit', () => {
    const r = new TunnelRetention();
    r.keep(frames(1)[0]!, 1);
    r.keep(keptControl({ type: FrameType.ACK, stream: 1, ack: 0, window: 1 }), 1);
    r.keep(keptControl({ type: FrameType.RST, stream: 3, reason: Reason.CANCELLED, message: '' }), 2);
    expect(r.length).toBe(3);
    expect(r.frameCount).toBe(2);
    r.confirm(1);
    expect(r.frameCount).toBe(1);
    r.takeUnconfirmed();
    expect(r.frameCount).toBe(0);
  });

  it('stays in order, tags included, across compactions of its confirmed slots', () => {
    const r = new TunnelRetention();
    const fs = frames(3000);
    // Tag i / 10: ten frames per PING.
    fs.forEach((f, i) => {
      r.keep(f, Math.floor(i / 10));
    });
    r.confirm(159); // frames 0–1599 confirmed: more than half, past the compaction point
    expect(r.length).toBe(1400);
    r.confirm(199); // frames 1600–1999: the tags must still line up with their frames
    expect(r.length).toBe(1000);
    const left = r.takeUnconfirmed();
    expect(left[0]).toBe(fs[2000]);
    expect(left.at(-1)).toBe(fs[2999]);
  });

  it('keptControl keeps only the stream of an ACK, and any other frame whole', () => {
    const ack: AckFrame = { type: FrameType.ACK, stream: 5, ack: 10, window: 20 };
    expect(keptControl(ack)).toEqual({ kind: 'ack', stream: 5 });
    const rst: Frame = { type: FrameType.RST, stream: 5, reason: Reason.CANCELLED, message: 'x' };
    expect(keptControl(rst)).toEqual({ kind: 'control', frame: rst });
  });
});

/** Fake streams: `live` are live (with their acknowledged offset), `ended` ended normally (with bytes received). */
function fakeStreams(live: Map<number, number>, ended = new Map<number, number>()): FailoverStreams & { acked: number[] } {
  const acked: number[] = [];
  return {
    acked,
    live: (id) => live.has(id),
    needsResend: (id, offset, length) => live.has(id) && offset + length > live.get(id)!,
    scheduleAck: (id) => acked.push(id),
    finalAck: (id) => (ended.has(id) ? { type: FrameType.ACK, stream: id, ack: ended.get(id)!, window: 0 } : null),
  };
}

/** Take every frame out of `q`, oldest first. */
function drain(q: FailoverQueue): KeptFrame[] {
  const out: KeptFrame[] = [];
  for (let e = q.peek(); e !== undefined; e = q.peek()) {
    out.push(e);
    q.shift();
  }
  return out;
}

const rst = (stream: number): KeptFrame => keptControl({ type: FrameType.RST, stream, reason: Reason.CANCELLED, message: '' });
const ackOf = (stream: number): KeptFrame => keptControl({ type: FrameType.ACK, stream, ack: 0, window: 0 });

describe('FailoverQueue', () => {
  it('re-sends the DATA a live stream has not had acknowledged, as the same objects, in order', () => {
    const q = new FailoverQueue(fakeStreams(new Map([[1, 200]])));
    const fs = frames(4);
    const other = keptData(9, 0, Buffer.alloc(10)); // stream 9 is gone
    q.add([fs[0]!, fs[1]!, other, fs[2]!, fs[3]!]);
    expect(q.length).toBe(2);
    expect(q.peek()).toBe(fs[2]);
    q.shift();
    expect(q.peek()).toBe(fs[3]);
    q.shift();
    expect(q.peek()).toBeUndefined();
  });

  it('queues a control frame once per (type, stream), also against frames already queued', () => {
    const q = new FailoverQueue(
      fakeStreams(
        new Map([
          [1, 0],
          [3, 0],
        ]),
      ),
    );
    const fin = (stream: number): KeptFrame => keptControl({ type: FrameType.FIN, stream, offset: 0 });
    q.add([rst(1), rst(1), fin(1), rst(3)]);
    expect(q.length).toBe(3);
    q.add([rst(1), fin(3)]); // a second tunnel loss: RST 1 is already waiting
    expect(q.length).toBe(4);
    expect(drain(q)).toEqual([rst(1), fin(1), rst(3), fin(3)]);
    expect(q.length).toBe(0);
  });

  it('does not repeat ACKs: a live stream sends a fresh one, a stream ended normally its final one, a reset one none', () => {
    const streams = fakeStreams(new Map([[1, 0]]), new Map([[3, 4242]]));
    const q = new FailoverQueue(streams);
    const [d] = frames(1);
    q.add([ackOf(1), ackOf(3), ackOf(1), ackOf(5), d!]);
    expect(streams.acked).toEqual([1]);
    // The final ACKs go after the dead tunnel's frames.
    expect(drain(q)).toEqual([d, { kind: 'control', frame: { type: FrameType.ACK, stream: 3, ack: 4242, window: 0 } }]);
  });

  it(`keeps at most ${STALE_RESEND_MEMORY} control frames about streams no longer live; an OPEN is never stale`, () => {
    const q = new FailoverQueue(fakeStreams(new Map()));
    const strays = Array.from({ length: STALE_RESEND_MEMORY + 100 }, (_, i) => rst(2 * i + 1));
    q.add(strays);
    expect(q.length).toBe(STALE_RESEND_MEMORY);
    q.add([rst(999_999)]); // the cap counts what is already queued
    expect(q.length).toBe(STALE_RESEND_MEMORY);
    q.add([keptControl({ type: FrameType.OPEN, stream: 1_000_001, window: 1, destination: null })]);
    expect(q.length).toBe(STALE_RESEND_MEMORY + 1);
    q.clear();
    expect(q.length).toBe(0);
  });

  it('keys association frames by association, session frames by type', () => {
    const q = new FailoverQueue(fakeStreams(new Map()));
    const dclose = (association: number): KeptFrame => keptControl({ type: FrameType.DATAGRAM_CLOSE, association, reason: Reason.NORMAL, message: '' });
    q.add([
      dclose(1),
      dclose(1),
      dclose(2),
      keptControl({ type: FrameType.GOAWAY, reason: Reason.SHUTDOWN, message: '' }),
      keptControl({ type: FrameType.GOAWAY, reason: Reason.SHUTDOWN, message: '' }),
    ]);
    expect(drain(q).map((e) => (e.kind === 'control' ? e.frame.type : -1))).toEqual([FrameType.DATAGRAM_CLOSE, FrameType.DATAGRAM_CLOSE, FrameType.GOAWAY]);
  });
});

describe('Tunnel retention over an in-memory pair', () => {
  it("a closed tunnel hands its unconfirmed frames to the close handler: DATA as the stream's records, ACKs by stream", async () => {
    const [a, b] = duplexPair();
    const t = new Tunnel(a, tunnelOptions(resolveSessionConfig(), 0));
    t.transition('handshaking');
    t.transition('open');
    const fs = frames(3);
    for (const f of fs) t.sendData(f);
    t.send({ type: FrameType.ACK, stream: 1, ack: 0, window: 1 << 16 });
    t.send({ type: FrameType.FIN, stream: 1, offset: 300 });
    expect(t.stats().unconfirmed).toBe(5);
    const handed = new Promise<KeptFrame[]>((resolve) => {
      t.handlers.close = (_t, unconfirmed) => resolve(unconfirmed);
    });
    t.close();
    const unconfirmed = await handed;
    expect(unconfirmed.slice(0, 3)).toEqual(fs);
    expect(unconfirmed[0]).toBe(fs[0]);
    expect(unconfirmed[3]).toEqual({ kind: 'ack', stream: 1 });
    expect(unconfirmed[4]).toEqual({ kind: 'control', frame: { type: FrameType.FIN, stream: 1, offset: 300 } });
    expect(t.stats().unconfirmed).toBe(0);
    b.destroy();
  });
});
