import { FrameType } from '@gkd/protocol';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ByteBudget } from '../src/budget.js';
import { resolveSessionConfig } from '../src/config.js';
import { Connection, type StreamHost } from '../src/stream.js';

/**
 * The receive window's growth rule (stream.ts, maybeUpdateWindow), driven frame by frame with a fake
 * host and a fake clock: a window grows when it, not the reader, limited the stream.
 */

const KiB = 1024;
const W = 256 * KiB;
const SEG = 16 * KiB;
const RTT = 100; // ms, the host's smoothed RTT

function stream(): Connection {
  const host: StreamHost = {
    config: resolveSessionConfig({ initialWindow: W, maxWindow: 16 * W }),
    requestSend: () => undefined,
    sendControl: () => undefined,
    scheduleAck: (st) => void st.makeAck(), // the real host sends it soon; the limit moves here
    streamEnded: () => undefined,
    rtt: () => RTT,
    startWindow: () => W,
    recvBudget: new ByteBudget(64 * 1024 * KiB),
    sendBudget: new ByteBudget(64 * 1024 * KiB),
    waitSendBudget: () => undefined,
  };
  const s = new Connection(host, 2, null, 'opening', W);
  s.accepted();
  return s;
}

const data = (s: Connection, offset: number): void => s.onFrame({ type: FrameType.DATA, stream: 2, offset, payload: Buffer.alloc(SEG, offset / SEG) });

/** Deliver [from, from + size) in `order`; `stallMs` passes between the first arrival and the last. */
function deliverWindow(s: Connection, from: number, order: 'in-order' | 'head-last', stallMs: number, size = W): void {
  const offsets = Array.from({ length: size / SEG }, (_, i) => from + i * SEG);
  if (order === 'head-last') offsets.push(offsets.shift()!);
  offsets.forEach((o, i) => {
    if (i === offsets.length - 1) vi.advanceTimersByTime(stallMs);
    data(s, o);
  });
}

const drain = (s: Connection): void => {
  while (s.read() !== null);
};

describe('receive window growth', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('doubles when a whole window is consumed in under two RTTs', () => {
    const s = stream();
    deliverWindow(s, 0, 'in-order', RTT / 2);
    drain(s);
    expect(s.stats().window).toBe(2 * W);
  });

  it('does not grow for a slow reader (in-order data, consumed slower than two RTTs)', () => {
    const s = stream();
    deliverWindow(s, 0, 'in-order', 0);
    vi.advanceTimersByTime(5 * RTT);
    drain(s);
    expect(s.stats().window).toBe(W);
  });

  it('doubles when the window was held behind a gap (loss on one tunnel), even if the epoch took longer than two RTTs', () => {
    const s = stream();
    deliverWindow(s, 0, 'head-last', 5 * RTT);
    drain(s);
    expect(s.stats().window).toBe(2 * W);
    // ... and keeps growing while every window stalls behind a gap, up to maxWindow.
    let at = W;
    for (let i = 0; i < 8; i++) {
      const win = s.stats().window;
      deliverWindow(s, at, 'head-last', 5 * RTT, win);
      drain(s);
      at += win;
    }
    expect(s.stats().window).toBe(16 * W);
  });

  it('slow start: a sender held at the limit while the reader keeps up doubles the window once per RTT', () => {
    const s = stream();
    let at = 0;
    const sizes: number[] = [];
    for (let rtt = 0; rtt < 5; rtt++) {
      // The sender fills the whole credit it has (up to the limit), the reader reads as it arrives.
      const limit = s.makeAck().ack + s.makeAck().window;
      while (at + SEG <= limit) {
        data(s, at);
        drain(s);
        at += SEG;
      }
      sizes.push(s.stats().window);
      vi.advanceTimersByTime(RTT);
    }
    // At most one doubling per RTT (growth needs an RTT since the last), and it does double each RTT.
    expect(sizes).toEqual([2 * W, 4 * W, 8 * W, 16 * W, 16 * W]);
  });

  it('slow start does not grow the window for a reader that leaves a quarter window unread', () => {
    const s = stream();
    for (let at = 0; at < W; at += SEG) data(s, at); // the sender reached the limit; nothing read yet
    vi.advanceTimersByTime(RTT);
    s.read(W / 2); // the reader takes half and leaves half unread
    expect(s.stats().window).toBe(W);
  });

  it('does not grow when less than half a window waited behind a gap', () => {
    const s = stream();
    // Only the last quarter of the window arrives before the segment that fills the gap.
    const offsets = Array.from({ length: W / SEG }, (_, i) => i * SEG);
    const late = offsets.splice((3 * offsets.length) / 4 - 1, 1)[0]!;
    for (const o of offsets.slice(0, (3 * offsets.length) / 4 - 1)) data(s, o);
    drain(s);
    for (const o of offsets.slice((3 * offsets.length) / 4 - 1)) data(s, o);
    vi.advanceTimersByTime(5 * RTT);
    data(s, late);
    drain(s);
    expect(s.stats().window).toBe(W);
  });
});
