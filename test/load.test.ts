/**
 * Load through the SOCKS front-end, from raw sockets (real SOCKS5 handshakes, no curl), through a gkd
 * client and server (each in its own process) to local destinations. `pnpm load` runs the same
 * scenarios and prints a table. CI runs them at full scale (1 000 × 1 MiB: about 15 s; 10 000 idle
 * streams: about 10 s on a 2-core machine); GKD_LOAD_STREAMS, GKD_LOAD_BYTES and GKD_LOAD_IDLE scale them.
 */
import { describe, expect, it } from 'vitest';
import { echoScenario, idleScenario } from '@gkd/test-support';

const MiB = 1024 * 1024;
const STREAMS = Number(process.env.GKD_LOAD_STREAMS ?? 1000);
const BYTES = Number(process.env.GKD_LOAD_BYTES ?? MiB);
const IDLE = Number(process.env.GKD_LOAD_IDLE ?? 10_000);
const mib = (b: number) => `${(b / MiB).toFixed(0)} MiB`;

describe('load through SOCKS5, 8 tunnels', () => {
  it(`${STREAMS} concurrent SOCKS streams × ${BYTES / MiB} MiB echoed through 8 tunnels: all byte-exact (sha256), p50/p99 reported`, async () => {
    const r = await echoScenario({ streams: STREAMS, bytes: BYTES, tunnels: 8 });
    const l = r.load;
    console.log(
      `${l.ok}/${l.streams} streams byte-exact; completion p50 ${(l.p50 / 1000).toFixed(2)} s, p99 ${(l.p99 / 1000).toFixed(2)} s, ` +
        `max ${(l.max / 1000).toFixed(2)} s; ${(l.wallMs / 1000).toFixed(1)} s wall, ${((2 * l.streams * l.bytesPerStream) / 1e6 / (l.wallMs / 1000)).toFixed(0)} MB/s (both ways); ` +
        `peak RSS server ${mib(r.rss.serverPeak)}, client ${mib(r.rss.clientPeak)}`,
    );
    expect(l.failures.slice(0, 5)).toEqual([]);
    expect(l.ok).toBe(STREAMS);
    expect(r.stderr).toBe('');
  }, 240_000);

  it(`${IDLE} idle concurrent streams opened through SOCKS and held: server and client RSS ≤ 512 MiB`, async () => {
    const r = await idleScenario(IDLE);
    if (r.note) console.log(`note: ${r.note}`);
    console.log(
      `${r.opened}/${r.wanted} idle streams open in ${(r.openMs / 1000).toFixed(1)} s (server holds ${r.serverStreams}, client ${r.clientStreams}, destination ${r.destinationOpen}); ` +
        `RSS server ${mib(r.rss.server)} (peak ${mib(r.rss.serverPeak)}), client ${mib(r.rss.client)} (peak ${mib(r.rss.clientPeak)})`,
    );
    expect(r.failures.slice(0, 5)).toEqual([]);
    expect(r.opened).toBe(r.tried);
    expect(r.serverStreams).toBe(r.opened);
    expect(r.clientStreams).toBe(r.opened);
    expect(r.destinationOpen).toBe(r.opened);
    expect(r.rss.serverPeak).toBeLessThanOrEqual(512 * MiB);
    expect(r.rss.clientPeak).toBeLessThanOrEqual(512 * MiB);
    expect(r.stderr).toBe('');
  }, 240_000);
});
