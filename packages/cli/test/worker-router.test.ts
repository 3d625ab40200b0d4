import { describe, expect, it } from 'vitest';
import { TokenRouter } from '../src/workers/router.js';

describe('TokenRouter', () => {
  it('keeps every tunnel of a session on one worker and spreads new sessions by load', () => {
    const r = new TokenRouter();
    r.addWorker(1);
    r.addWorker(2);
    const firsts = ['a', 'b', 'c', 'd'].map((t) => r.route(t));
    expect(firsts.sort()).toEqual([1, 1, 2, 2]);
    for (const t of ['a', 'b', 'c', 'd']) {
      const w = r.route(t);
      for (let i = 0; i < 7; i++) expect(r.route(t)).toBe(w);
    }
  });

  it('sends new sessions to the worker that reports the fewest', () => {
    const r = new TokenRouter();
    r.addWorker(1);
    r.addWorker(2);
    r.setLoad(1, 50);
    r.setLoad(2, 10);
    expect(r.route('x')).toBe(2);
    r.setLoad(2, 60);
    expect(r.route('y')).toBe(1);
  });

  it("a worker's report does not undo sessions routed to it that it has not counted yet (a burst spreads evenly)", () => {
    const r = new TokenRouter();
    r.addWorker(1);
    r.addWorker(2);
    const w = ['a', 'b', 'c'].map((t) => r.route(t)); // 1, 2, 1
    expect(w).toEqual([1, 2, 1]);
    r.setLoad(1, 1); // worker 1 has made a's session; c's is on its way
    expect(r.route('d')).toBe(2);
    r.setLoad(2, 1);
    r.setLoad(1, 2);
    r.setLoad(2, 2);
    expect(['e', 'f'].map((t) => r.route(t)).sort()).toEqual([1, 2]);
  });

  it('a dead worker loses its tokens: they route by load to the living; none when no worker is up', () => {
    const r = new TokenRouter();
    r.addWorker(1);
    r.addWorker(2);
    r.setLoad(2, 100);
    expect(r.route('s')).toBe(1);
    r.removeWorker(1);
    expect(r.route('s')).toBe(2);
    r.removeWorker(2);
    expect(r.route('t')).toBeUndefined();
  });

  it('remembers at most maxTokens, forgetting the least recently used; forget() drops one', () => {
    const r = new TokenRouter(3);
    r.addWorker(1);
    for (const t of ['a', 'b', 'c']) r.route(t);
    r.route('a'); // used again: now the newest
    r.route('d');
    expect(r.size).toBe(3);
    r.addWorker(2);
    r.setLoad(1, 100);
    expect(r.route('a')).toBe(1); // kept
    expect(r.route('b')).toBe(2); // forgotten, routed anew by load
    r.forget('a');
    expect(r.route('a')).toBe(2);
  });
});
