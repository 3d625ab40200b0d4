/**
 * gkd in library mode, for diagnosis: the same components and defaults as `gkd server` / `gkd client`
 * (GkdServer; Client + SocksServer with the client opener), plus a stats recorder that appends the
 * transport's `stats()` to a JSON-lines file every 250 ms: per tunnel (rtt, queued, inflight, rate,
 * bytes), per stream (window, unacked, reorder depth, buffered) and resent frames. The CLI does not
 * expose inflight, rate or windows; the benchmark runs this instead of the CLI with `--gkd lib`.
 * It imports the packages by name, i.e. their built dist (like the CLI), so both modes measure the same
 * build, and an edit in progress in the packages' sources changes neither.
 *
 *   GKD_KEY=… node --import tsx scripts/bench/gkd-probe.ts server LISTEN ALLOW STATS_FILE
 *   GKD_KEY=… node --import tsx scripts/bench/gkd-probe.ts client SERVER TUNNELS SOCKS STATS_FILE
 *
 * GKD_BENCH_SESSION may hold a JSON `Partial<SessionConfig>` applied on both sides (plus `serverLimits`, the
 * server's `limits`, e.g. `{"maxBufferedBytesPerPeer":268435456}`), to try transport
 * settings without editing the packages (e.g. '{"tunnelHighWater":1048576}').
 * Prints the CLI's ready line (`gkd: SOCKS5 proxy on …`) or `gkd: server on …` once ready.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { GkdServer } from '@gkd/server';
import { SocksServer, type Opener } from '@gkd/socks-client';
import { Client, parseHostPort, type SessionConfig, type SessionStats } from '@gkd/transport';

const key = process.env.GKD_KEY;
if (!key) throw new Error('GKD_KEY is not set');
const { serverLimits, ...session } = JSON.parse(process.env.GKD_BENCH_SESSION ?? '{}') as Partial<SessionConfig> & { serverLimits?: Record<string, number> };
const [role, ...args] = process.argv.slice(2);

/** One sample: what the analysis needs, small enough to write four times a second. */
function slim(s: SessionStats): unknown {
  return {
    resent: s.resentFrames,
    resentBytes: s.resentBytes,
    hol: s.holResentFrames,
    late: s.holLateFrames,
    dup: s.duplicateBytes,
    recvBudget: s.recvBudgetUsed,
    sendBudget: s.sendBudgetUsed,
    tunnels: s.tunnels.map((t) => ({
      i: t.index,
      st: t.state,
      rtt: t.rtt,
      in: t.bytesIn,
      out: t.bytesOut,
      q: t.queued,
      fl: t.inflight,
      rate: t.rate,
      unc: t.unconfirmed,
      // The kernel's view (mode 'kernel'): cwnd (segments), RTT (ms), unsent bytes, retransmits, CA state.
      ...(t.kernel
        ? { k: { cwnd: t.kernel.cwnd, rtt: t.kernel.rtt, ns: t.kernel.notSent, rtx: t.kernel.retransmits, ca: t.kernel.caState, dr: t.kernel.deliveryRate } }
        : {}),
    })),
    streams: s.streams.map((st) => ({
      id: st.id,
      win: st.window,
      unacked: st.unacked,
      reorder: st.reorderDepth,
      buf: st.buffered,
      in: st.bytesIn,
      out: st.bytesOut,
    })),
  };
}

function record(file: string, read: () => SessionStats[]): void {
  writeFileSync(file, '');
  setInterval(() => {
    const sessions = read();
    if (sessions.length > 0) appendFileSync(file, `${JSON.stringify({ t: Date.now(), sessions: sessions.map(slim) })}\n`);
  }, 250).unref();
}

if (role === 'server') {
  const [listen = '0.0.0.0:9990', allow = '', file = '/dev/null'] = args;
  const server = await GkdServer.start({
    listen,
    key,
    allow: allow.split(',').filter(Boolean),
    deny: [],
    session,
    ...(serverLimits ? { limits: serverLimits } : {}),
  });
  record(file, () => server.stats().peers);
  process.once('SIGTERM', () => void server.close().finally(() => process.exit(0)));
  console.log(`gkd: server on ${listen}`);
} else if (role === 'client') {
  const [server = '', tunnels = '8', socks = '127.0.0.1:1080', file = '/dev/null'] = args;
  const auto = tunnels === 'auto';
  const client = Client.create(server, { key, tunnels: auto ? 'auto' : Number(tunnels), session });
  const n = client.tunnelCount;
  client.on('tunnels', (d: { from: number; target: number; reason: string }) =>
    console.error(JSON.stringify({ time: new Date().toISOString(), event: 'tunnels', ...d })),
  );
  const opener: Opener = (destination, signal) => client.open(destination, { signal });
  const at = parseHostPort(socks, '127.0.0.1', 'socks');
  const proxy = await SocksServer.listen({ host: at.host, port: at.port, opener });
  record(file, () => [client.stats()]);
  process.once('SIGTERM', () => {
    client.close();
    void proxy.close().finally(() => process.exit(0));
  });
  const deadline = Date.now() + 10_000;
  while (client.tunnelsUp < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const a = proxy.address();
  console.log(`gkd: SOCKS5 proxy on ${a.address}:${a.port} (server ${server}, ${client.tunnelsUp} tunnel${client.tunnelsUp === 1 ? '' : 's'} up)`);
} else {
  console.error('usage: gkd-probe.ts server LISTEN ALLOW STATS_FILE | client SERVER TUNNELS SOCKS STATS_FILE');
  process.exit(2);
}
