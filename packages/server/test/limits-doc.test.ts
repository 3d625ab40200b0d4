import { readFileSync } from 'node:fs';
import { defaultSessionConfig } from '@gkd/transport';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../src/config.js';

/**
 * LIMITS.md states the server's worst-case memory as numbers; this recomputes them from the defaults in
 * code, so a changed default or a changed sum fails here instead of leaving the page wrong.
 */

const limitsMd = readFileSync(new URL('../../../LIMITS.md', import.meta.url), 'utf8');
const MiB = 1024 * 1024;
/** Node's default writableHighWaterMark, in bytes: what a stalled destination socket buffers per stream. */
const DESTINATION_WRITE_BUFFER = 64 * 1024;

function worstCasePerPeer(): number {
  const l = DEFAULT_LIMITS;
  const c = defaultSessionConfig;
  const streams = l.maxSessionsPerPeer * l.maxStreamsPerSession;
  const tunnels = Math.min(l.maxSessionsPerPeer * l.maxTunnelsPerSession, l.maxTunnelsPerPeer);
  const decoder = 64 * 1024; // ≈ 12 + maxBody
  expect(c.maxBody + 12).toBeLessThanOrEqual(decoder + 32);
  // One frame per stream past the budget each way: the minimum receive window and the minimum send.
  return l.maxBufferedBytesPerPeer + 2 * streams * c.maxPayload + streams * DESTINATION_WRITE_BUFFER + tunnels * (c.tunnelHighWater + decoder);
}

/** The server: every peer's overhead, but their budgets only up to the server-wide pool. */
function worstCasePerServer(): number {
  const l = DEFAULT_LIMITS;
  const budgets = Math.min(l.maxPeers * l.maxBufferedBytesPerPeer, l.maxBufferedBytes);
  return budgets + l.maxPeers * (worstCasePerPeer() - l.maxBufferedBytesPerPeer);
}

describe('LIMITS.md worst-case memory matches the defaults', () => {
  it('per peer', () => {
    const m = /≈ ([\d ]+) MiB\. \(Checked against the defaults/.exec(limitsMd);
    expect(m, 'LIMITS.md states the per-peer worst case as "≈ N MiB. (Checked against the defaults"').not.toBeNull();
    expect(Number(m![1]!.replace(/ /g, ''))).toBe(worstCasePerPeer() / MiB);
  });

  it('per server', () => {
    const m = /bounds the server at\s+about ([\d.]+) GiB/.exec(limitsMd);
    expect(m).not.toBeNull();
    expect(DEFAULT_LIMITS.maxPeers * DEFAULT_LIMITS.maxSessionsPerPeer).toBeLessThanOrEqual(DEFAULT_LIMITS.maxSessions);
    const gib = worstCasePerServer() / (1024 * MiB);
    expect(Math.abs(Number(m![1]) - gib)).toBeLessThan(0.05);
  });

  it('the server-wide pool: its row states the default and its halves', () => {
    const row = limitsMd.split('\n').find((l) => l.startsWith('| buffered bytes of all peers together |'));
    expect(row, 'LIMITS.md has a row for limits.maxBufferedBytes').toBeDefined();
    const m = /\| (\d+) MiB: (\d+) MiB of receive windows, (\d+) MiB of unacknowledged sends \|/.exec(row!);
    expect(m).not.toBeNull();
    expect(Number(m![1]) * MiB).toBe(DEFAULT_LIMITS.maxBufferedBytes);
    expect(Number(m![2]) * MiB).toBe(DEFAULT_LIMITS.maxBufferedBytes / 2);
    expect(Number(m![3]) * MiB).toBe(DEFAULT_LIMITS.maxBufferedBytes / 2);
    // The pool must be what bounds a full server: smaller than every peer's budget together.
    expect(DEFAULT_LIMITS.maxBufferedBytes).toBeLessThan(DEFAULT_LIMITS.maxPeers * DEFAULT_LIMITS.maxBufferedBytesPerPeer);
  });
});

describe('README: the server-to-transport limit names', () => {
  it('lists every transport-enforced limit with its server default', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('**Names: "peer" here'), readme.indexOf('### UDP associations'));
    const rows = [...section.matchAll(/^\| `(\w+)` \| `(\w+)` \| ([^|]+) \|/gm)];
    const own = new Set(['maxAssociationsPerPeer', 'associationIdleTimeout']);
    const keys = Object.keys(DEFAULT_LIMITS).filter((k) => !own.has(k));
    expect(rows.map((r) => r[1]).sort()).toEqual(keys.sort());
    for (const [, name, , shown] of rows) {
      const value = DEFAULT_LIMITS[name as keyof typeof DEFAULT_LIMITS];
      const text = shown!.trim();
      const n = text.endsWith('MiB') ? Number.parseFloat(text) * MiB : Number(text.replace(/ ms$/, '').replace(/ /g, ''));
      expect(n, name).toBe(value);
    }
  });
});
