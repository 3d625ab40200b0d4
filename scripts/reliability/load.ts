/**
 * `pnpm load`: the load and fault scenarios of test/load.test.ts and test/faults.test.ts, printed as
 * a table (the figures of docs/RELIABILITY.md). Every process (gkd server, gkd client, destinations)
 * runs on its own; the SOCKS clients are raw sockets in this process.
 *
 *   pnpm load [-- --streams 1000 --bytes 1048576 --idle 10000 --tunnels 8]
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { echoScenario, idleScenario, peersStack, stallScenario, vanishScenario } from '@gkd/test-support';

const { values } = parseArgs({
  options: {
    streams: { type: 'string', default: '1000' },
    bytes: { type: 'string', default: String(1024 * 1024) },
    idle: { type: 'string', default: '10000' },
    tunnels: { type: 'string', default: '8' },
  },
});
const streams = Number(values.streams);
const bytes = Number(values.bytes);
const idle = Number(values.idle);
const tunnels = Number(values.tunnels);
const MiB = 1024 * 1024;
const mib = (b: number) => `${(b / MiB).toFixed(0)} MiB`;
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const rows: string[][] = [];
const row = (...cells: string[]) => {
  rows.push(cells);
  console.log(cells.join(' | '));
};

console.log(`gkd load: node ${process.version}, ${availableParallelism()} CPUs, ${tunnels} tunnels; every process separate\n`);

{
  const r = await echoScenario({ streams, bytes, tunnels });
  const l = r.load;
  row(
    `${streams} SOCKS streams × ${bytes / MiB} MiB echo`,
    `${l.ok}/${streams} byte-exact`,
    `p50 ${s(l.p50)}, p99 ${s(l.p99)}, max ${s(l.max)}`,
    `${s(l.wallMs)} wall, ${((2 * streams * bytes) / 1e6 / (l.wallMs / 1000)).toFixed(0)} MB/s both ways`,
    `server ${mib(r.rss.serverPeak)}, client ${mib(r.rss.clientPeak)}`,
  );
}
{
  const r = await echoScenario({ streams, bytes, tunnels, killEveryMs: 250, resetProbes: 50 });
  const l = r.load;
  const resets = r.resets.filter((x) => x === 'ECONNRESET').length;
  const now = r.resetsRightBehindData.filter((x) => x === 'ECONNRESET').length;
  row(
    `same, 2 tunnels reset every 250 ms; 50 destinations reset mid-stream`,
    `${l.ok}/${streams} byte-exact through ${r.kills} tunnel resets (${r.resentFrames.client + r.resentFrames.server} frames re-sent); ${resets}/50 resets seen as ECONNRESET ` +
      `(resets right behind the data: ${now}/50, the rest a clean end: libuv#2319)`,
    `p50 ${s(l.p50)}, p99 ${s(l.p99)}, max ${s(l.max)}`,
    `${s(l.wallMs)} wall`,
    `server ${mib(r.rss.serverPeak)}, client ${mib(r.rss.clientPeak)}`,
  );
}
{
  const r = await idleScenario(idle, tunnels);
  row(
    `${r.tried} idle streams through SOCKS, held${r.note ? ` (${r.note})` : ''}`,
    `${r.opened} open (server ${r.serverStreams}, client ${r.clientStreams}, destination ${r.destinationOpen}); ${r.failures.length} failed`,
    `opened in ${s(r.openMs)}`,
    '',
    `server ${mib(r.rss.server)}, client ${mib(r.rss.client)} (target ≤ 512 MiB)`,
  );
}
{
  const stack = await peersStack();
  try {
    const st = await stallScenario(stack, stack.clients.get('client:carol')!, stack.clients.get('client:bob')!, 32);
    row(
      'a peer stops reading 32 downloads',
      `another peer: ${st.before.toFixed(0)} MB/s before, ${st.during.toFixed(0)} MB/s during; ${st.resumedOk}/32 resume byte-exact`,
      `stalled after ${s(st.stallMs)}`,
      `stalled client holds ${(st.stalledBuffered / MiB).toFixed(1)} MiB unread (its receive budget); server ${(st.stalledUnacked / MiB).toFixed(1)} MiB unacked`,
      '',
    );
    const v = await vanishScenario(stack, stack.clients.get('client:victor')!, 20);
    row(
      'a peer with 20 streams vanishes without FIN (black-holed)',
      `tunnels dropped after ${s(v.detectedMs)} (deadline 5 s); session freed after ${s(v.freedMs)} (+ grace 5 s)`,
      `destination connections left ${v.destinationLeft}`,
      `active streams ${v.activeStreamsBefore + v.streams} → ${v.activeStreamsAfter}`,
      '',
    );
  } finally {
    const crashed = await stack.close();
    // biome-ignore lint/correctness/noUnsafeFinally: a crashed process is the finding that matters most, even over the run's own error.
    if (crashed.length > 0) throw new Error(`processes died:\n${crashed.join('\n')}`);
  }
}

console.log('\n| scenario | result | latency | throughput / memory | peak RSS |\n| --- | --- | --- | --- | --- |');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
