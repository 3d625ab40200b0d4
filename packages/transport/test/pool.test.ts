import { FrameType } from '@gkd/protocol';
import { describe, expect, it } from 'vitest';
import { ByteBudget } from '../src/budget.js';
import { resolveSessionConfig } from '../src/config.js';
import { BytePool } from '../src/pool.js';
import { Connection, type StreamHost } from '../src/stream.js';

/**
 * The server-wide byte pool (pool.ts): per-peer budgets that also draw on one shared pool, which
 * never goes past its limit and gives every active member at least its fair share.
 */

const KiB = 1024;

describe('BytePool', () => {
  it('caps the sum of its members, each below its own limit too', () => {
    const pool = new BytePool(100 * KiB);
    const a = new ByteBudget(80 * KiB, pool);
    const b = new ByteBudget(80 * KiB, pool);
    expect(a.reserve(90 * KiB)).toBe(80 * KiB); // its own limit
    // a, alone, misses 20 KiB of its share (the whole pool): kept for it while b holds nothing.
    expect(b.free).toBe(0);
    expect(b.reserve(90 * KiB, 1 * KiB)).toBe(1 * KiB); // the forced minimum makes b active
    // Now each share is 50 KiB: a is above its own, so the rest of the pool is b's.
    expect(b.free).toBe(19 * KiB);
    expect(b.reserve(90 * KiB)).toBe(19 * KiB);
    expect(pool.used).toBe(100 * KiB);
    expect(a.tryReserve(1)).toBe(false);
    expect(b.tryReserve(1)).toBe(false);
  });

  it('gives a newcomer room at once when the one active member holds less than its next share', () => {
    // A new peer's first stream asks for a large window: it must not be cut to one frame because the
    // lone active member's share was, until now, the whole pool.
    const pool = new BytePool(128 * KiB);
    const a = new ByteBudget(1024 * KiB, pool);
    const b = new ByteBudget(1024 * KiB, pool);
    a.reserve(4 * KiB);
    expect(b.free).toBe(60 * KiB); // 128 − 4 held − 64 kept for a (its next share, an upper bound of what it misses)
    expect(b.reserve(32 * KiB)).toBe(32 * KiB);
    expect(a.free).toBe(60 * KiB); // a's share is 64 KiB now, and it has room to reach it
  });

  it('lets only the forced minimum pass the limit', () => {
    const pool = new BytePool(32 * KiB);
    const a = new ByteBudget(1024 * KiB, pool);
    const b = new ByteBudget(1024 * KiB, pool);
    a.reserve(64 * KiB);
    expect(b.reserve(64 * KiB, 16 * KiB)).toBe(16 * KiB);
    expect(pool.used).toBe(48 * KiB);
  });

  it('keeps a newcomer its fair share: what the first member frees goes to the second', () => {
    const pool = new BytePool(100 * KiB);
    const greedy = new ByteBudget(1024 * KiB, pool);
    const late = new ByteBudget(1024 * KiB, pool);
    greedy.reserve(100 * KiB); // alone: the whole pool is its share
    expect(late.free).toBe(0);
    late.reserve(0, 1 * KiB); // the late member's forced first frame makes it active
    expect(pool.activeMembers).toBe(2);
    expect(pool.fairShare).toBe(50 * KiB);
    // The greedy member gives back 30 KiB: it is still above its share, so it may not take them again.
    greedy.release(30 * KiB);
    expect(greedy.free).toBe(0);
    expect(late.free).toBe(29 * KiB); // the pool's free bytes are kept for the member below its share
    expect(late.reserve(64 * KiB)).toBe(29 * KiB);
    // Both give back until the greedy one is under its share again: now it may grow back to it.
    greedy.release(40 * KiB); // greedy holds 30, late 30: each has 20 missing
    expect(greedy.free).toBe(20 * KiB);
    expect(late.free).toBe(20 * KiB);
    // Work-conserving: a member alone with the pool may use all of it.
    late.release(30 * KiB);
    expect(pool.activeMembers).toBe(1);
    expect(greedy.free).toBe(70 * KiB);
  });

  it('gives an active member at least limit / active members when the others hold only their shares', () => {
    const pool = new BytePool(120 * KiB);
    const m = [0, 1, 2].map(() => new ByteBudget(1024 * KiB, pool));
    for (const b of m) b.reserve(0, 1); // all three active, each holding one byte
    // Whatever order they ask in, each gets its 40 KiB share.
    expect(m[0]!.reserve(1024 * KiB)).toBe(40 * KiB - 1); // the two others' missing shares are kept
    expect(m[1]!.free).toBe(40 * KiB - 1);
    expect(m[2]!.free).toBe(40 * KiB - 1);
  });

  it('wakes the waiters of every member when one releases, once per microtask', async () => {
    const pool = new BytePool(10 * KiB);
    const a = new ByteBudget(10 * KiB, pool);
    const b = new ByteBudget(10 * KiB, pool);
    a.reserve(10 * KiB);
    let woken = 0;
    b.onRelease(() => woken++);
    a.release(4 * KiB);
    a.release(6 * KiB);
    await Promise.resolve();
    expect(woken).toBe(1);
    expect(b.free).toBe(10 * KiB);
  });

  it('takes back what a leaving member holds, once', () => {
    const pool = new BytePool(10 * KiB);
    const a = new ByteBudget(10 * KiB, pool);
    const b = new ByteBudget(10 * KiB, pool);
    a.reserve(8 * KiB);
    a.leave();
    expect(pool.used).toBe(0);
    expect(pool.activeMembers).toBe(0);
    a.release(8 * KiB); // its streams end after the peer left: the pool must not count it twice
    expect(pool.used).toBe(0);
    expect(b.free).toBe(10 * KiB);
  });
});

describe('send budget: one frame per stream past a spent budget', () => {
  function host(sendBudget: ByteBudget): StreamHost {
    return {
      config: resolveSessionConfig({}),
      requestSend: () => undefined,
      sendControl: () => undefined,
      scheduleAck: () => undefined,
      streamEnded: () => undefined,
      rtt: () => 10,
      startWindow: () => 256 * KiB,
      recvBudget: new ByteBudget(1024 * KiB),
      sendBudget,
      waitSendBudget: () => undefined,
    };
  }
  const open = (h: StreamHost, id: number): Connection => {
    const s = new Connection(h, id, null, 'opening', 1024 * KiB);
    s.accepted();
    s.on('error', () => undefined);
    return s;
  };

  it('sends one frame from a stream with nothing unacknowledged, then waits for its ACK', () => {
    const budget = new ByteBudget(64 * KiB);
    budget.reserve(64 * KiB); // another stream (or peer) holds it all and is not acknowledged
    const s = open(host(budget), 1);
    s.write(Buffer.alloc(100 * KiB));
    expect(s.blockedOnBudget).toBe(false);
    const f = s.takeFrame();
    expect(f?.payload.length).toBe(16 * KiB);
    expect(budget.used).toBe(80 * KiB); // reserved past the limit: one frame
    expect(s.takeFrame()).toBeNull();
    expect(s.blockedOnBudget).toBe(true);
    s.onFrame({ type: FrameType.ACK, stream: 1, ack: 16 * KiB, window: 1024 * KiB });
    expect(budget.used).toBe(64 * KiB);
    expect(s.takeFrame()?.payload.length).toBe(16 * KiB);
  });
});
