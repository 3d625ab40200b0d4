// Per-path tunnel counts (path-counts.ts) on a fake clock and fake paths: one controller per adaptive
// path, judged by its own path's bytes, with the server's cap shared between the paths.
import { describe, expect, it } from 'vitest';
import { PathCounts, defaultPathStart, type PathCountDecision, type PathCountSpec } from '../src/path-counts.js';

const Mbit = 1e6 / 8;
/** A loss-bound path: 1.5 Mbit/s per tunnel (Mathis at 100 ms, 1 % loss) up to 100 Mbit/s. */
const lossy = (n: number) => Math.min(100, 1.5 * n) * Mbit;
/** A clean path: one flow fills its 90 Mbit/s, more tunnels buy nothing. */
const clean = () => 90 * Mbit;

/**
 * Drive `counts` for `seconds` on paths whose goodput is `rates[i](tunnels of path i)`, one sample per
 * 100 ms, RTT 100 ms, new tunnels up at once. Records every decision and the sum of targets after each
 * sample.
 */
function drive(counts: PathCounts, rates: ((n: number) => number)[], seconds: number, from = 0) {
  const bytes = rates.map(() => 0);
  const decisions: (PathCountDecision & { at: number })[] = [];
  const sums: number[] = [];
  const targets: number[][] = rates.map(() => []);
  let t = from;
  for (; t <= from + seconds * 1000; t += 100) {
    rates.forEach((rate, i) => {
      bytes[i] = bytes[i]! + (rate(counts.target(i)) * 100) / 1000;
    });
    const samples = rates.map((_, i) => ({ bytes: bytes[i]!, live: counts.target(i), rttMs: 100 }));
    for (const d of counts.sample(t, samples)) decisions.push({ ...d, at: t });
    sums.push(counts.total);
    rates.forEach((_, i) => {
      targets[i]!.push(counts.target(i));
    });
  }
  return { decisions, sums, targets, end: t };
}

/** The median of the last `share` of `xs` (what a path mostly had, not what it had at one instant). */
function settled(xs: number[], share = 0.5): number {
  const s = xs.slice(Math.floor(xs.length * (1 - share))).sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

const two = (a: PathCountSpec = { name: 'A' }, b: PathCountSpec = { name: 'B' }) => new PathCounts([a, b], { min: 2, max: 32 });

describe('PathCounts', () => {
  it('two adaptive paths start at 4 each (8 split over them); one path alone starts at the single-path default, 16', () => {
    const c = two();
    expect([c.target(0), c.target(1)]).toEqual([4, 4]);
    expect(defaultPathStart(2)).toBe(4);
    expect(defaultPathStart(3)).toBe(3);
    expect(new PathCounts([{ name: 'default' }], { min: 2, max: 32 }).target(0)).toBe(16);
    // An explicit start is per path.
    expect(new PathCounts([{ name: 'A' }, { name: 'B' }], { min: 2, max: 32, start: 6 }).total).toBe(12);
  });

  it('a loss-bound path climbs, a clean one does not, and the sum never exceeds the shared cap', () => {
    const c = two();
    expect(c.setCap(20, 0, 'the server allows 20 tunnels per session')).toEqual([]);
    const { decisions, sums, targets } = drive(c, [lossy, clean], 240);
    // Path A climbed past its fair share (10) into what B does not use; B went back to its minimum.
    expect(settled(targets[0]!)).toBeGreaterThanOrEqual(16);
    expect(settled(targets[1]!)).toBe(2);
    expect(Math.max(...sums)).toBeLessThanOrEqual(20);
    // Each path was judged alone: B's probes up bought nothing (its own bytes), A's paid.
    expect(decisions.filter((d) => d.path === 1 && d.target > d.from).every((d) => /probe up/.test(d.reason))).toBe(true);
    expect(decisions.some((d) => d.path === 1 && /bought \+0 %/.test(d.reason))).toBe(true);
    expect(decisions.find((d) => d.path === 0)).toMatchObject({ from: 4, target: 8 });
  });

  it('a path below its fair share takes it back from one above it, at once, without the sum passing the cap', () => {
    const c = two();
    c.setCap(20, 0, 'cap');
    // Phase 1: A is loss-bound, B idle: A takes the room B leaves (B shrinks to its minimum when idle).
    const p1 = drive(c, [lossy, () => 0], 120);
    expect(c.target(1)).toBe(2);
    expect(settled(p1.targets[0]!)).toBe(18);
    // Phase 2: B becomes loss-bound too: B climbs to at least its share (10) and A is pushed back.
    const p2 = drive(c, [lossy, lossy], 240, p1.end);
    expect(settled(p2.targets[1]!)).toBeGreaterThanOrEqual(10);
    expect(settled(p2.targets[0]!)).toBeLessThanOrEqual(10);
    expect(Math.max(...p1.sums, ...p2.sums)).toBeLessThanOrEqual(20);
    const pushed = p2.decisions.find((d) => d.path === 0 && /path B takes its share of the server's 20 tunnels/.test(d.reason));
    expect(pushed).toBeDefined();
    expect(pushed!.lazy).toBeUndefined(); // pushed back now: the server would refuse B's tunnels otherwise
  });

  it("a path with the user's count keeps it; the adaptive ones share what it leaves of the cap", () => {
    const c = two({ name: 'A' }, { name: 'B', fixed: 6 });
    expect(c.adaptive(1)).toBe(false);
    c.setCap(16, 0, 'cap');
    const { sums, targets } = drive(c, [lossy, lossy], 120);
    expect(targets[1]!.every((n) => n === 6)).toBe(true);
    expect(settled(targets[0]!)).toBe(10);
    expect(Math.max(...targets[0]!)).toBe(10);
    expect(c.ceiling(0)).toBe(10);
    expect(Math.max(...sums)).toBeLessThanOrEqual(16);
  });

  it('a lower cap (a refused JOIN) brings the paths down within it at once, and its restoration lets them climb', () => {
    const c = two();
    drive(c, [lossy, lossy], 60);
    expect(c.total).toBeGreaterThan(12);
    const d = c.setCap(12, 60_100, 'the server refused tunnel 30');
    expect(d.length).toBeGreaterThan(0);
    expect(d.every((x) => x.reason === 'the server refused tunnel 30' && x.target < x.from)).toBe(true);
    expect(c.total).toBeLessThanOrEqual(12);
    // And the restored cap lets them climb again.
    c.setCap(Infinity, 60_200, 'retry');
    drive(c, [lossy, lossy], 120, 60_200);
    expect(c.total).toBeGreaterThan(12);
  });

  it('a path held at its ceiling probes up at once when another path frees its share', () => {
    const c = two();
    c.setCap(20, 0, 'cap');
    const busy = drive(c, [lossy, lossy], 60);
    expect(settled(busy.targets[0]!)).toBe(10);
    const idle = drive(c, [lossy, () => 0], 40, busy.end);
    const freed = idle.decisions.find((d) => d.path === 1 && /idle/.test(d.reason))!;
    expect(freed).toMatchObject({ target: 2 });
    // A's next step is up into the freed room, within a couple of epochs (not a probe down after its hold).
    const next = idle.decisions.find((d) => d.path === 0 && d.at >= freed.at)!;
    expect(next.target).toBeGreaterThan(next.from);
    expect(next.at - freed.at).toBeLessThanOrEqual(3000);
    expect(c.target(0)).toBe(18);
  });

  it('each path shrinks to its minimum when it alone goes idle, and jumps back when busy', () => {
    const c = two();
    const busy = drive(c, [lossy, lossy], 30);
    const high = c.target(1);
    expect(high).toBeGreaterThan(8);
    // B goes idle for 40 s while A stays busy: B shrinks to 2 after 30 s, A keeps its count.
    const aBefore = c.target(0);
    const idle = drive(c, [lossy, () => 0], 40, busy.end);
    expect(c.target(1)).toBe(2);
    expect(settled(idle.targets[0]!)).toBe(aBefore);
    const shrink = idle.decisions.find((d) => d.path === 1 && /idle for 30 s/.test(d.reason));
    expect(shrink).toMatchObject({ from: high, target: 2 });
    expect(idle.decisions.some((d) => d.path === 0 && /idle/.test(d.reason))).toBe(false);
    // Busy again: B's first probe jumps straight back to the count that paid.
    const again = drive(c, [lossy, lossy], 10, idle.end);
    expect(again.decisions.find((d) => d.path === 1)).toMatchObject({ from: 2, target: high });
  });
});
