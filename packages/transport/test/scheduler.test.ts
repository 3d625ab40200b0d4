import { describe, expect, it } from 'vitest';
import { copyHelps, MAX_COPIES, overdueFrames } from '../src/hol.js';
import { arrivalMs } from '../src/path.js';
import { earliestArrival, leastQueued, roundRobin, type Pickable } from '../src/scheduler.js';
import type { KeptData } from '../src/retention.js';

/** The pickers (scheduler.ts) and the head-of-line rule (hol.ts), on fake tunnels and a fake clock. */

const KiB = 1024;
const MB = 1e6;

function fake(name: string, o: Partial<Pickable> = {}): Pickable & { name: string } {
  return { name, hasRoom: true, backlog: 0, sendRate: MB, sendRoom: 0, pathRtt: 100, penalisedUntil: 0, rate: MB, inflight: 0, srtt: 100, ...o };
}

describe('arrivalMs', () => {
  it('is backlog and frame at the send rate, plus half the RTT', () => {
    expect(arrivalMs(fake('a', { backlog: 84_000 }), 16_000, 0, 0)).toBe(100 + 50);
  });
  it('uses the fallback rate for a tunnel with none, and adds one RTT while penalised', () => {
    expect(arrivalMs(fake('a', { sendRate: null }), 10_000, 2 * MB, 0)).toBe(5 + 50);
    expect(arrivalMs(fake('a', { penalisedUntil: 10 }), 10_000, 0, 5)).toBe(10 + 50 + 100);
    expect(arrivalMs(fake('a', { penalisedUntil: 10 }), 10_000, 0, 10)).toBe(10 + 50);
  });
});

describe('earliestArrival', () => {
  const pick = earliestArrival(() => 0);

  it('sends where the frame arrives first: less backlog, more rate, shorter RTT', () => {
    expect(pick([fake('a', { backlog: 64 * KiB }), fake('b')], 16 * KiB)?.name).toBe('b');
    expect(pick([fake('a'), fake('b', { sendRate: 4 * MB })], 16 * KiB)?.name).toBe('b');
    expect(pick([fake('a', { pathRtt: 300 }), fake('b')], 16 * KiB)?.name).toBe('b');
  });

  it('a tunnel in loss recovery (its congestion window, so its rate, just halved) gets the frame only if it still arrives first', () => {
    const tunnels = [fake('recovering', { sendRate: MB / 2, backlog: 16 * KiB }), fake('ok', { backlog: 16 * KiB })];
    expect(pick(tunnels, 16 * KiB)?.name).toBe('ok');
  });

  it('skips tunnels without room; returns undefined when none has room', () => {
    expect(pick([fake('a', { hasRoom: false, backlog: 512 * KiB }), fake('b', { backlog: 64 * KiB })], 16 * KiB)?.name).toBe('b');
    expect(pick([fake('a', { hasRoom: false }), fake('b', { hasRoom: false })], 16 * KiB)).toBeUndefined();
  });

  it('waits for a full fast tunnel rather than send on a slow one that would deliver later (ECF)', () => {
    const fast = fake('fast', { hasRoom: false, backlog: 64 * KiB, sendRate: 10 * MB, pathRtt: 20 });
    const slow = fake('slow', { sendRate: MB / 2, pathRtt: 300 });
    // fast: (64 KiB + 16 KiB) / 10 MB/s + 10 ms ≈ 18 ms; slow: 16 KiB / 0.5 MB/s + 150 ms ≈ 183 ms.
    expect(pick([fast, slow], 16 * KiB)).toBeUndefined();
    // With 4 MB waiting, the fast tunnel alone would take ≈ 418 ms: the slow one helps.
    expect(pick([fast, slow], 16 * KiB, 4 * MB)?.name).toBe('slow');
  });

  it('does not leave an idle tunnel on the same path idle: one whose window collapsed (an RTO) still takes a frame', () => {
    // Same 100 ms path; "collapsed" has cwnd 2 after a timeout (29 KB/s), nothing queued. Declining it
    // would keep it idle, so its estimate would never recover (it needs data to grow its window).
    const full = fake('full', { hasRoom: false, backlog: 32 * KiB });
    const collapsed = fake('collapsed', { sendRate: 29_000 });
    expect(pick([full, collapsed], 16 * KiB)?.name).toBe('collapsed');
    // With frames already queued it is not idle: the frame waits for the full tunnel.
    expect(pick([full, fake('collapsed', { sendRate: 29_000, backlog: 2 * KiB })], 16 * KiB)).toBeUndefined();
    // An idle tunnel on a much longer path is still declined (the ECF case above).
    expect(pick([full, fake('long', { sendRate: 29_000, pathRtt: 300 })], 16 * KiB)).toBeUndefined();
  });

  it('control frames ignore room and go where they arrive first', () => {
    const a = fake('a', { hasRoom: false, backlog: 16 * KiB });
    const b = fake('b', { hasRoom: false, backlog: 256 * KiB });
    expect(pick([a, b], 64, 0, true)?.name).toBe('a');
  });

  it('equal tunnels share the load (ties rotate)', () => {
    const tunnels = ['a', 'b', 'c'].map((n) => fake(n));
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) seen.add(pick(tunnels, 16 * KiB)!.name);
    expect(seen.size).toBe(3);
  });

  it('a penalised tunnel counts one more RTT', () => {
    const p = earliestArrival(() => 50);
    expect(p([fake('held', { penalisedUntil: 100 }), fake('b', { backlog: 32 * KiB })], 16 * KiB)?.name).toBe('b');
    expect(earliestArrival(() => 150)([fake('held', { penalisedUntil: 100 }), fake('b', { backlog: 32 * KiB })], 16 * KiB)?.name).toBe('held');
  });
});

describe('leastQueued and roundRobin', () => {
  it('leastQueued weighs unconfirmed bytes by the PONG rate', () => {
    expect(leastQueued()([fake('a', { inflight: 1 * MB }), fake('b', { inflight: 0 })], 16 * KiB)?.name).toBe('b');
  });
  it('roundRobin skips full tunnels unless the frame is a control frame', () => {
    const rr = roundRobin();
    const t = [fake('a', { hasRoom: false }), fake('b')];
    expect(rr(t, 1)?.name).toBe('b');
    expect(rr(t, 1)?.name).toBe('b');
    expect(rr(t, 1, 0, true)?.name).toBe('a');
  });
});

describe('overdueFrames (head-of-line re-send)', () => {
  const f = (offset: number, tunnel: number, due: number, copies = 1, end = 1000): KeptData => ({
    kind: 'data',
    stream: 1,
    offset,
    payload: Buffer.alloc(16),
    tunnel,
    sentAt: due - 100,
    due,
    end,
    copies,
  });
  const grace = () => 100;
  const live = () => true;

  it('nothing while the head is within its due time plus grace', () => {
    expect(overdueFrames([f(0, 1, 1000), f(16, 2, 1000)], 1100, grace, live, 16)).toEqual([]);
  });

  it("the overdue head, and the same tunnel's later frames that are past due; not other tunnels' frames", () => {
    const frames = [f(0, 1, 1000), f(16, 2, 1000), f(32, 1, 1050), f(48, 1, 1200), f(64, 3, 900)];
    expect(overdueFrames(frames, 1101, grace, live, 16).map((x) => x.offset)).toEqual([0, 32]);
  });

  it('at most `max` frames', () => {
    const frames = [f(0, 1, 1000), f(16, 1, 1000), f(32, 1, 1000)];
    expect(overdueFrames(frames, 2000, grace, live, 2).map((x) => x.offset)).toEqual([0, 16]);
  });

  it('not a frame already copied MAX_COPIES times, nor one whose tunnel is down (failover re-sends those)', () => {
    expect(overdueFrames([f(0, 1, 1000, MAX_COPIES)], 5000, grace, live, 16)).toEqual([]);
    expect(overdueFrames([f(0, 1, 1000)], 5000, grace, (id) => id !== 1, 16)).toEqual([]);
  });
});

describe('earliestArrival on loopback-like paths', () => {
  it('RTTs that differ by µs do not decide: the backlog does, so frames spread over equal tunnels', () => {
    const pick = earliestArrival(() => 0);
    const a = fake('a', { pathRtt: 0.03, sendRate: 5e9, backlog: 256 * KiB });
    const b = fake('b', { pathRtt: 0.06, sendRate: 5e9, backlog: 0 });
    expect(pick([a, b], 16 * KiB)?.name).toBe('b');
  });
});

describe('arrivalMs and the congestion window', () => {
  it('a frame that fits in the window room leaves at once: only half the RTT counts', () => {
    expect(arrivalMs(fake('a', { backlog: 32 * KiB, sendRoom: 64 * KiB }), 16 * KiB, 0, 0)).toBe(50);
    // What does not fit waits at the send rate.
    expect(arrivalMs(fake('a', { backlog: 64 * KiB, sendRoom: 48 * KiB, sendRate: 32 * KiB }), 16 * KiB, 0, 0)).toBe(1000 + 50);
  });
  it('equal tunnels that are not window-limited tie, and the picks rotate over all of them', () => {
    const pick = earliestArrival(() => 0);
    const t = ['a', 'b', 'c', 'd'].map((n, i) => fake(n, { pathRtt: 0.05, sendRate: (i + 1) * 1e9, backlog: i * 64 * KiB, sendRoom: 1 << 20 }));
    const seen = new Map<string, number>();
    for (let i = 0; i < 40; i++) {
      const n = pick(t, 16 * KiB)!.name;
      seen.set(n, (seen.get(n) ?? 0) + 1);
    }
    expect([...seen.values()]).toEqual([10, 10, 10, 10]);
  });
});

describe('overdueFrames and tunnel confirmations', () => {
  const f = (offset: number, tunnel: number, end: number): KeptData => ({
    kind: 'data',
    stream: 1,
    offset,
    payload: Buffer.alloc(16),
    tunnel,
    sentAt: 900,
    due: 1000,
    end,
    copies: 1,
  });
  it('leaves a head its tunnel already confirmed (the peer has it; the ACK is late for another reason)', () => {
    expect(
      overdueFrames(
        [f(0, 1, 500)],
        5000,
        () => 100,
        () => true,
        16,
        () => 500,
      ),
    ).toEqual([]);
    expect(
      overdueFrames(
        [f(0, 1, 500)],
        5000,
        () => 100,
        () => true,
        16,
        () => 499,
      ).map((x) => x.offset),
    ).toEqual([0]);
  });
  it('copies only the frames behind it that the stuck tunnel has not confirmed', () => {
    const frames = [f(0, 1, 500), f(16, 1, 400), f(32, 1, 700)];
    // Confirmed up to 450: the frame ending at 400 was processed (a later copy made the head), 500 and 700 not.
    expect(
      overdueFrames(
        frames,
        5000,
        () => 100,
        () => true,
        16,
        () => 450,
      ).map((x) => x.offset),
    ).toEqual([0, 32]);
  });
});

describe('overdueFrames when no other tunnel is moving', () => {
  it('copies nothing while every tunnel lags alike (an overloaded peer), and the head once another tunnel confirmed newer data', () => {
    const head: KeptData = { kind: 'data', stream: 1, offset: 0, payload: Buffer.alloc(16), tunnel: 1, sentAt: 900, due: 1000, end: 500, copies: 1 };
    expect(
      overdueFrames(
        [head],
        5000,
        () => 100,
        () => true,
        16,
        () => 0,
        () => false,
      ),
    ).toEqual([]);
    expect(
      overdueFrames(
        [head],
        5000,
        () => 100,
        () => true,
        16,
        () => 0,
        (id, at) => id === 1 && at === 900,
      ),
    ).toEqual([head]);
  });
});

describe('copyHelps (which overdue heads are worth a copy)', () => {
  // 1 MB/s over 100 ms: the horizon is 2 × 100 + 200 = 400 ms, i.e. 400 000 bytes of window.
  it('a stream with nothing more to send: always (its reader waits for that frame)', () => {
    expect(copyHelps(0, 10_000_000, 1_000_000, 100)).toBe(true);
  });
  it("a bulk stream with window to spare: no (the tunnels stay busy; a copy would take a new frame's place)", () => {
    expect(copyHelps(1 << 20, 400_001, 1_000_000, 100)).toBe(false);
  });
  it('a bulk stream its window would hold before TCP repairs the loss: yes', () => {
    expect(copyHelps(1 << 20, 400_000, 1_000_000, 100)).toBe(true);
    expect(copyHelps(1 << 20, 0, 0, 100)).toBe(true);
  });
});
