import { describe, expect, it } from 'vitest';
import { resolveSessionConfig } from '../src/config.js';
import { Session } from '../src/session.js';

/** The session's lifecycle state machine (session.ts): open → draining → lost; open → lost. */

describe('session state', () => {
  it('open → draining (goAway): no new streams; → lost (expire): streams fail', async () => {
    const s = new Session('client', 'ab', resolveSessionConfig());
    expect(s.state).toBe('open');
    s.goAway();
    expect(s.state).toBe('draining');
    expect(s.draining).toBe(true);
    await expect(s.open(null, 1000)).rejects.toThrow(/going away/);
    const lost: Error[] = [];
    s.on('lost', (e: Error) => lost.push(e));
    s.expire();
    expect(s.state).toBe('lost');
    expect(s.lost).toBe(true);
    expect(s.draining).toBe(true); // it did drain before it was lost
    expect(lost).toHaveLength(1);
    s.expire(); // idempotent
    s.goAway(); // no way back
    expect(s.state).toBe('lost');
    expect(lost).toHaveLength(1);
  });

  it('open → lost (closed): a stream waiting for its OPEN_OK fails at once', async () => {
    const s = new Session('client', 'cd', resolveSessionConfig());
    const opening = s.open(null, 60_000);
    s.close();
    expect(s.state).toBe('lost');
    expect(s.draining).toBe(false);
    await expect(opening).rejects.toThrow(/session closed/);
  });
});
