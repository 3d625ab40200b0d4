/**
 * Faults under load, end to end over real sockets (gkd server and clients in their own processes):
 * tunnel kills during the 1 000-stream load, a destination resetting mid-stream, a peer that stops
 * reading, and a peer that vanishes without FIN. `pnpm load` prints the same figures.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { echoScenario, peersStack, stallScenario, vanishScenario, type ProcessStack } from '@gkd/test-support';

const MiB = 1024 * 1024;
const STREAMS = Number(process.env.GKD_LOAD_STREAMS ?? 1000);
const BYTES = Number(process.env.GKD_LOAD_BYTES ?? MiB);

describe('faults under load', () => {
  it(`tunnel kills (2 tunnels reset every 250 ms) during ${STREAMS} concurrent SOCKS streams × ${BYTES / MiB} MiB, and destinations resetting mid-stream: every stream byte-exact, every reset seen as ECONNRESET`, async () => {
    const r = await echoScenario({ streams: STREAMS, bytes: BYTES, tunnels: 8, killEveryMs: 250, resetProbes: 50 });
    const l = r.load;
    console.log(
      `${l.ok}/${l.streams} byte-exact through ${r.kills} tunnel resets (frames re-sent: client ${r.resentFrames.client}, server ${r.resentFrames.server}); ` +
        `p50 ${(l.p50 / 1000).toFixed(2)} s, p99 ${(l.p99 / 1000).toFixed(2)} s; destination resets seen by the SOCKS client as ${JSON.stringify(countBy(r.resets))}; ` +
        `resets right behind the data (platform: libuv may report them as EOF, see docs/RELIABILITY.md) as ${JSON.stringify(countBy(r.resetsRightBehindData))}`,
    );
    expect(l.failures.slice(0, 5)).toEqual([]);
    expect(l.ok).toBe(STREAMS);
    expect(r.kills).toBeGreaterThanOrEqual(4);
    expect(r.resentFrames.client + r.resentFrames.server).toBeGreaterThan(0);
    // A reset the server's socket sees reaches the SOCKS client as a reset, never as a clean end that
    // would pass for a complete download.
    expect(countBy(r.resets)).toEqual({ ECONNRESET: 50 });
    expect(r.stderr).toBe('');
  }, 240_000);

  describe('peers that stop reading or vanish', () => {
    let stack: ProcessStack;
    beforeAll(async () => {
      stack = await peersStack();
    }, 60_000);
    afterAll(async () => {
      const crashed = await stack?.close();
      expect(crashed).toEqual([]);
    });

    it('a peer that stops reading 32 downloads: its windows fill and stay bounded, another peer keeps its throughput, the stalled streams resume in order', async () => {
      const r = await stallScenario(stack, stack.clients.get('client:carol')!, stack.clients.get('client:bob')!, 32);
      console.log(
        `bob's downloads: ${r.before.toFixed(0)} MB/s before, ${r.during.toFixed(0)} MB/s (×${(r.during / r.before).toFixed(2)}) while carol's ${r.stalledStreams} streams are stalled ` +
          `(stalled after ${(r.stallMs / 1000).toFixed(1)} s; carol's client holds ${(r.stalledBuffered / MiB).toFixed(1)} MiB received and unread, receive budget ${(r.stalledRecvBudget / MiB).toFixed(1)} MiB; ` +
          `the server ${(r.stalledUnacked / MiB).toFixed(1)} MiB unacknowledged, send budget ${(r.stalledSendBudget / MiB).toFixed(1)} MiB); ` +
          `${r.resumedOk}/${r.stalledStreams} resumed byte-exact`,
      );
      // The windows filled: the bytes wait in carol's client, within its receive windows (LIMITS.md: the
      // receive half of the 64 MiB session budget, plus one frame per stream) ...
      expect(r.stalledBuffered).toBeGreaterThan(0);
      expect(r.stalledBuffered).toBeLessThanOrEqual(32 * MiB + 32 * 16 * 1024);
      expect(r.stalledRecvBudget).toBeLessThanOrEqual(32 * MiB + 32 * 16 * 1024);
      // ... and the server holds nothing unacknowledged beyond its per-peer send budget (half of 32 MiB).
      expect(r.stalledSendBudget).toBeLessThanOrEqual(16 * MiB);
      expect(r.stalledUnacked).toBeLessThanOrEqual(16 * MiB);
      // The failure this guards against is head-of-line blocking: bob stuck behind carol's full windows,
      // near 0 MB/s (his downloads would time out). The ratio to his rate before (0.68–1.3 so far) is
      // printed above, not asserted: another test file may take this 2-core machine mid-measurement. The
      // bound is one no load breaks but a stall would: 1 MB/s, about a hundredth of the usual.
      expect(r.during).toBeGreaterThan(1);
      expect(r.resumedOk).toBe(r.stalledStreams);
    }, 180_000);

    it('a peer that vanishes without FIN (black-holed): detected within the keepalive deadline, its session and destination connections freed', async () => {
      const r = await vanishScenario(stack, stack.clients.get('client:victor')!, 20);
      console.log(
        `victor (20 open streams) black-holed: server dropped its tunnels after ${(r.detectedMs / 1000).toFixed(1)} s (keepalive deadline 5 s, checked every 1 s), ` +
          `freed its session after ${(r.freedMs / 1000).toFixed(1)} s (+ grace period 5 s); destination connections left ${r.destinationLeft}; active streams ${r.activeStreamsBefore + r.streams} → ${r.activeStreamsAfter}`,
      );
      // Deadline 5 s, checked every keepalive interval (1 s), plus the poll and a loaded machine's slack.
      expect(r.detectedMs).toBeLessThanOrEqual(5000 + 1000 + 2000);
      expect(r.freedMs).toBeLessThanOrEqual(5000 + 1000 + 5000 + 3000);
      expect(r.destinationLeft).toBe(0);
      expect(r.activeStreamsAfter).toBe(r.activeStreamsBefore);
    }, 120_000);
  });
});

function countBy(xs: string[]): Record<string, number> {
  const m: Record<string, number> = {};
  for (const x of xs) m[x] = (m[x] ?? 0) + 1;
  return m;
}
