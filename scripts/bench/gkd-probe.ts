/**
 * gkd in library mode, for diagnosis: the same components and defaults as `gkd server` / `gkd client`
 * (GkdServer; Client + SocksServer with the client opener), plus a stats recorder that appends the
 * transport's `stats()` to a JSON-lines file every 250 ms: per tunnel (rtt, queued, inflight, rate,
 * bytes), per stream (window, unacked, reorder depth, buffered) and resent frames. The CLI does not
 * expose inflight, rate or windows; the benchmark runs this instead of the CLI with `--gkd lib`.
 *
 *   GKD_KEY=… node --conditions=@gkd/source --import tsx scripts/bench/gkd-probe.ts server LISTEN ALLOW STATS_FILE
 *   GKD_KEY=… node --conditions=@gkd/source --import tsx scripts/bench/gkd-probe.ts client SERVER TUNNELS SOCKS STATS_FILE
 *
 * GKD_BENCH_SESSION may hold a JSON `Partial<SessionConfig>` applied on both sides, to try transport
 * settings without editing the packages (e.g. '{"tunnelHighWater":1048576}').
 * GKD_BENCH_PATCH=window replaces the receive-window growth rule at run time (see `patchWindowGrowth`),
 * to measure a proposed transport change without touching packages/**.
 * Prints the CLI's ready line (`gkd: SOCKS5 proxy on …`) or `gkd: server on …` once ready.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { GkdServer } from '../../packages/server/src/index.js';
import { SocksServer, type Opener } from '../../packages/socks-client/src/index.js';
import { Client, Connection, parseHostPort, type SessionConfig, type SessionStats } from '../../packages/transport/src/index.js';

const key = process.env.GKD_KEY;
if (!key) throw new Error('GKD_KEY is not set');
const session = JSON.parse(process.env.GKD_BENCH_SESSION ?? '{}') as Partial<SessionConfig>;
const [role, ...args] = process.argv.slice(2);
if (process.env.GKD_BENCH_PATCH === 'window') patchWindowGrowth();

/**
 * The proposed growth rule for a stream's receive window. Today (stream.ts, maybeUpdateWindow) the window
 * doubles only when the reader consumed a whole window in under 2 RTTs. With loss, every window has a
 * head-of-line stall (a lost segment on one tunnel holds back what the others delivered) and takes longer
 * than 2 RTTs to drain, so the window never grows and caps the stream at window / stall time. The rule
 * below also doubles it when, during the window just consumed, at least half a window sat in the reorder
 * buffer behind a gap: then the window, not the reader, was the limit (a slow reader fills the readable
 * buffer in order and leaves the reorder buffer empty, so it still does not grow the window).
 */
function patchWindowGrowth(): void {
  type Internals = {
    streamState: string;
    remoteEnded: boolean;
    delivered: number;
    readableLength: number;
    epochConsumed: number;
    epochTime: number;
    window: number;
    advertisedLimit: number;
    peakHeld?: number;
    reorder: { size: number };
    host: { config: SessionConfig; rtt(): number; recvBudget: { tryReserve(n: number): boolean }; scheduleAck(s: unknown): void };
    onData(offset: number, payload: Buffer): void;
    maybeUpdateWindow(): void;
  };
  const proto = Connection.prototype as unknown as Internals;
  const onData = proto.onData;
  proto.onData = function (this: Internals, offset: number, payload: Buffer): void {
    onData.call(this, offset, payload);
    if (this.reorder.size > (this.peakHeld ?? 0)) this.peakHeld = this.reorder.size;
  };
  proto.maybeUpdateWindow = function (this: Internals): void {
    if (this.streamState === 'failed' || this.remoteEnded) return;
    const consumed = this.delivered - this.readableLength;
    if (consumed - this.epochConsumed >= this.window) {
      const now = Date.now();
      const cfg = this.host.config;
      const fast = now - this.epochTime < 2 * this.host.rtt();
      const heldBehindGap = (this.peakHeld ?? 0) >= this.window / 2;
      if ((fast || heldBehindGap) && this.window < cfg.maxWindow) {
        const grow = Math.min(this.window, cfg.maxWindow - this.window);
        if (this.host.recvBudget.tryReserve(grow)) this.window += grow;
      }
      this.epochTime = now;
      this.epochConsumed = consumed;
      this.peakHeld = 0;
    }
    if (consumed + this.window - this.advertisedLimit >= this.window / 4) this.host.scheduleAck(this);
  };
}

/** One sample: what the analysis needs, small enough to write four times a second. */
function slim(s: SessionStats): unknown {
  return {
    resent: s.resentFrames,
    recvBudget: s.recvBudgetUsed,
    sendBudget: s.sendBudgetUsed,
    tunnels: s.tunnels.map((t) => ({ i: t.index, st: t.state, rtt: t.rtt, in: t.bytesIn, out: t.bytesOut, q: t.queued, fl: t.inflight, rate: t.rate, unc: t.unconfirmed })),
    streams: s.streams.map((st) => ({ id: st.id, win: st.window, unacked: st.unacked, reorder: st.reorderDepth, buf: st.buffered, in: st.bytesIn, out: st.bytesOut })),
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
  const server = await GkdServer.start({ listen, key, allow: allow.split(',').filter(Boolean), deny: [], session });
  record(file, () => server.stats().peers);
  process.once('SIGTERM', () => void server.close().finally(() => process.exit(0)));
  console.log(`gkd: server on ${listen}`);
} else if (role === 'client') {
  const [server = '', tunnels = '8', socks = '127.0.0.1:1080', file = '/dev/null'] = args;
  const n = Number(tunnels);
  const client = Client.create(server, { key, tunnels: n, session });
  const opener: Opener = async (destination, signal) => {
    const conn = await client.open(destination);
    if (signal?.aborted) {
      conn.destroy();
      throw signal.reason;
    }
    return conn;
  };
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
