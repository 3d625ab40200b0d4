/**
 * gkd for the benchmark: the server in one namespace, a client with N tunnels and its SOCKS5 port in
 * the other. Two implementations of the same deployment:
 *   - 'cli' (default): the `gkd` command users run (packages/cli/bin/gkd.js, the built dist); per-tunnel
 *     bytes and RTT come from its Prometheus endpoint (--metrics), read from inside the namespace;
 *   - 'lib': scripts/bench/gkd-probe.ts, the same components (also from dist) in library mode, which
 *     records the transport's full stats() (inflight, rate, queued, stream windows, reorder depth).
 * The tunnels are plaintext (`--plaintext` on both ends, as the gkd rows always measured) unless
 * `tls` is set ('cli' mode only): then the server makes its self-signed certificate in a state
 * directory under the log directory and the client is given the link `gkd link` prints. `congestion`
 * sets the tunnels' congestion control on both ends (`--congestion`; in 'lib' mode the session's).
 */
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Proc, run, sleep } from './proc.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = `${ROOT}packages/cli/bin/gkd.js`;
const PROBE = `${ROOT}scripts/bench/gkd-probe.ts`;
/** Metrics ports of the plaintext deployment; a TLS one beside it uses the next two. */
const METRICS_PORT = 9464;

export type GkdMode = 'cli' | 'lib';

/** Per-tunnel view of one measured window (the server is the sender of a download). */
export interface TunnelDiag {
  index: number;
  /** Share of the bytes the server sent in the window (1/N when balanced). */
  share: number;
  /** Smoothed RTT as the server saw it (average of samples in 'lib' mode, last value in 'cli' mode), in ms. */
  rttMs: number | null;
  /** lib mode: average bytes written but not yet confirmed by a PONG, in KiB. */
  inflightKiB?: number;
  /** lib mode: average bytes in the socket's send buffer, in KiB. */
  queuedKiB?: number;
  /** lib mode: the tunnel's measured delivery rate at the end, in Mbit/s. */
  rateMbps?: number | null;
}

/** What gkd's own stats say about one measured download. */
export interface GkdDiag {
  tunnels: TunnelDiag[];
  /** Smallest and largest tunnel share × N (1 = fair). */
  shareMin: number;
  shareMax: number;
  resentFrames: number;
  /** Payload bytes the server sent again (head-of-line copies and failover), in bytes. */
  resentBytes?: number;
  /** lib mode: the download stream on the client (receiver): largest receive window, in KiB. */
  windowKiB?: number;
  /** lib mode: average out-of-order segments held by the client's reorder buffer. */
  reorderAvg?: number;
  reorderMax?: number;
  /** --tunnels auto: the count's changes during the download (seconds from its start), the count at its end, the largest. */
  countTimeline?: { s: number; from: number; to: number; reason: string }[];
  countFinal?: number | undefined;
  countMax?: number;
  /** --tunnels auto: the client's target right after the download (gkd_tunnels_configured). */
  countNow?: number | undefined;
  /** lib mode: average bytes received but not yet read by the client application (reorder + readable), in KiB. */
  bufferedKiB?: number;
  /** lib mode: the server's download stream: average and largest unacknowledged bytes, in KiB. */
  unackedAvgKiB?: number;
  unackedMaxKiB?: number;
  /** lib mode: samples in the window. */
  samples?: number;
}

export interface GkdOptions {
  mode: GkdMode;
  nsServer: string;
  nsClient: string;
  /** host:port the server listens on (in nsServer). */
  listen: string;
  /** Destinations to allow (the file server is on a loopback address, denied by default). */
  allow: string;
  /** host:port of the client's SOCKS5 port (in nsClient). */
  socks: string;
  logDir: string;
  /** Transport settings for 'lib' mode (JSON Partial<SessionConfig>), to try a change without editing the packages. */
  session?: string;
  /** TLS tunnels (the CLI's default) instead of --plaintext; 'cli' mode only. */
  tls?: boolean;
  /** Congestion control of the tunnel sockets on both ends (e.g. 'bbr'), instead of the namespace's. */
  congestion?: string;
  /** The metrics ports (server, client) on 127.0.0.1; default 9464 and 9465, 9466 and 9467 with `tls`, 9470 and 9471 with `congestion`. */
  metricsPorts?: [number, number];
  /** Appended to the client's log file name (a second client of the same deployment). */
  logSuffix?: string;
}

type Metrics = Map<string, number>;

export class Gkd {
  private readonly key = randomBytes(32).toString('base64url');
  private server: Proc | undefined;
  private client: Proc | undefined;
  private readonly tag = Math.random().toString(36).slice(2, 8);
  private n = 0;
  private markedAt = 0;
  private clientLog: string | undefined;
  /** Clients started so far: each writes its own stats file (a file per client keeps them all for later analysis). */
  private clients = 0;

  /** The connection link (TLS only), from `gkd link` once the server made its certificate. */
  private link = '';
  private readonly serverMetrics: string;
  private readonly clientMetrics: string;

  constructor(private readonly o: GkdOptions) {
    if (o.tls && o.mode !== 'cli') throw new Error('gkd with TLS needs --gkd cli (the library-mode probe runs plaintext tunnels)');
    const base = METRICS_PORT + (o.tls ? 2 : 0) + (o.congestion ? 6 : 0);
    const [server, client] = o.metricsPorts ?? [base, base + 1];
    this.serverMetrics = `127.0.0.1:${server}`;
    this.clientMetrics = `127.0.0.1:${client}`;
  }

  /** Where a TLS server keeps its certificate: fresh per deployment, so every run makes its own. */
  private get stateDir(): string {
    return `${this.o.logDir}/gkd-state-${this.tag}`;
  }

  private get env(): NodeJS.ProcessEnv {
    const session = this.o.congestion ? JSON.stringify({ ...JSON.parse(this.o.session ?? '{}'), congestion: this.o.congestion }) : this.o.session;
    return { GKD_KEY: this.key, ...(this.o.tls ? { GKD_STATE_DIR: this.stateDir } : {}), ...(session ? { GKD_BENCH_SESSION: session } : {}) };
  }

  /** A link carries the key, so a TLS client gets the link instead of GKD_KEY (both would be refused). */
  private get clientEnv(): NodeJS.ProcessEnv {
    return this.o.tls ? { GKD_LINK: this.link } : this.env;
  }

  /** `--plaintext` unless this deployment measures TLS, and `--congestion` if it sets one. */
  private get security(): string[] {
    return [...(this.o.tls ? [] : ['--plaintext']), ...(this.o.congestion ? ['--congestion', this.o.congestion] : [])];
  }

  /** The log files' suffix of this kind of deployment ('-tls', '-bbr' or none). */
  private get kind(): string {
    return this.o.tls ? '-tls' : this.o.congestion ? `-${this.o.congestion}` : '';
  }

  private statsFile(side: string): string {
    return `${this.o.logDir}/gkd-${this.tag}-${side}.stats.jsonl`;
  }

  private node(args: string[]): [string, string[]] {
    return this.o.mode === 'cli' ? ['node', [CLI, ...args]] : ['node', ['--import', 'tsx', PROBE, ...args]];
  }

  get serverPid(): number {
    return this.server?.pid ?? -1;
  }
  get clientPid(): number {
    return this.client?.pid ?? -1;
  }

  async startServer(): Promise<void> {
    const [cmd, args] =
      this.o.mode === 'cli'
        ? this.node([
            'server',
            // One process: the bench samples the server's CPU and RSS by its pid, and compares with the
            // published single-process runs (bench:scale measures --workers).
            '--workers',
            '1',
            '--listen',
            this.o.listen,
            ...this.security,
            '--allow',
            this.o.allow,
            '--metrics',
            this.serverMetrics,
            '--log-level',
            'warn',
            '--drain-timeout',
            '0',
          ])
        : this.node(['server', this.o.listen, this.o.allow, this.statsFile('server')]);
    this.server = new Proc('gkd server', this.o.nsServer, cmd, args, { env: this.env, logFile: `${this.o.logDir}/gkd-server${this.kind}.log` });
    await this.server.waitFor(/gkd: server (listening )?on/, 30_000);
    if (this.o.tls) {
      // `gkd link` only reads the state directory and the flags: no namespace needed.
      const r = spawnSync('node', [CLI, 'link', '--listen', this.o.listen], { env: { ...process.env, ...this.env }, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`gkd link failed: ${r.stderr}`);
      this.link = r.stdout.trim();
    }
  }

  /**
   * A second client of this deployment's server (same key; its own SOCKS port, metrics ports and log
   * file), for the two-peer fairness bench. Plaintext tunnels only.
   */
  sibling(socks: string, metricsPorts: [number, number]): Gkd {
    if (this.o.tls) throw new Error('sibling(): plaintext deployments only');
    const g = new Gkd({ ...this.o, socks, metricsPorts, logSuffix: '-b' });
    (g as unknown as { key: string }).key = this.key;
    return g;
  }

  /** The client's target tunnel count now (gkd_tunnels_configured), NaN if unknown. */
  async tunnelTarget(): Promise<number> {
    return (await this.metrics(this.o.nsClient, this.clientMetrics)).get('gkd_tunnels_configured') ?? NaN;
  }

  /**
   * Start a client with `n` tunnels (0: `--tunnels auto`); resolves once the ready line reports them up
   * (or after 10 s with fewer). `extra`: more client flags ('cli' mode), e.g. `--via` paths, with
   * `expected` tunnels in all.
   */
  async startClient(n: number, extra: string[] = [], expected = n): Promise<number> {
    await this.stopClient();
    if (extra.length > 0 && this.o.mode !== 'cli') throw new Error('client flags need --gkd cli');
    this.n = expected;
    const [cmd, args] =
      this.o.mode === 'cli'
        ? this.node([
            'client',
            ...(this.o.tls ? [] : ['--server', this.o.listen]),
            ...this.security,
            '--tunnels',
            n === 0 ? 'auto' : String(n),
            '--socks',
            this.o.socks,
            '--quiet',
            '--metrics',
            this.clientMetrics,
            '--drain-timeout',
            '0',
            // auto: info, for the count's changes ("tunnels 4 → 8: …"), which diagnose() reads back
            '--log-level',
            n === 0 ? 'info' : 'warn',
            '--log-format',
            'json',
            ...extra,
          ])
        : this.node(['client', this.o.listen, n === 0 ? 'auto' : String(n), this.o.socks, this.statsFile(`client-${++this.clients}`)]);
    this.clientLog = `${this.o.logDir}/gkd-client${this.kind}${this.o.logSuffix ?? ''}.log`;
    this.client = new Proc(
      `gkd client (${n || 'auto'} tunnels${this.o.tls ? ', TLS' : ''}${this.o.congestion ? `, ${this.o.congestion}` : ''})`,
      this.o.nsClient,
      cmd,
      args,
      {
        env: this.clientEnv,
        logFile: this.clientLog,
      },
    );
    const m = await this.client.waitFor(/gkd: SOCKS5 proxy on .*?(\d+) tunnels? up/, 30_000);
    let up = Number(m[1]);
    // The CLI's ready line may come 2 s after the first tunnel with some still connecting: wait for all.
    for (let i = 0; i < 50 && up < expected && this.o.mode === 'cli'; i++) {
      await sleep(200);
      up = (await this.metrics(this.o.nsClient, this.clientMetrics)).get('gkd_tunnels_up{side="client"}') ?? up;
    }
    return up;
  }

  async stopClient(): Promise<void> {
    await this.client?.stop();
    this.client = undefined;
  }

  async stop(): Promise<void> {
    await this.stopClient();
    await this.server?.stop();
    this.server = undefined;
  }

  /** Read a Prometheus endpoint inside a namespace. */
  private async metrics(ns: string, at: string): Promise<Metrics> {
    const r = await run(ns, 'curl', ['-s', '--max-time', '5', `http://${at}/metrics`], 10_000);
    const m: Metrics = new Map();
    for (const line of r.stdout.split('\n')) {
      if (line.startsWith('#') || !line.trim()) continue;
      const i = line.lastIndexOf(' ');
      m.set(line.slice(0, i), Number(line.slice(i + 1)));
    }
    return m;
  }

  /** The client's Prometheus series now ('cli' mode), by series text (`gkd_path_tunnels_up{path="gkdtunA"}`). */
  async clientSeries(): Promise<Metrics> {
    return this.metrics(this.o.nsClient, this.clientMetrics);
  }

  /** A mark taken before a download: the counters in 'cli' mode, the time in 'lib' mode. */
  async mark(): Promise<{ t: number; server?: Metrics }> {
    this.markedAt = Date.now();
    if (this.o.mode === 'lib') return { t: Date.now() };
    return { t: Date.now(), server: await this.metrics(this.o.nsServer, this.serverMetrics) };
  }

  /** gkd's view of the download between `before` and now. */
  async diagnose(before: { t: number; server?: Metrics }): Promise<GkdDiag> {
    return this.o.mode === 'cli' ? this.diagnoseCli(before.server ?? new Map()) : this.diagnoseLib(before.t, Date.now());
  }

  /** With --tunnels auto: the count's changes logged by the client since `t0` (Date.now() ms). */
  private countTimeline(t0: number): Pick<GkdDiag, 'countTimeline' | 'countFinal' | 'countMax'> {
    if (this.n !== 0 || !this.clientLog) return {};
    let text = '';
    try {
      text = readFileSync(this.clientLog, 'utf8');
    } catch {
      return {};
    }
    const changes: NonNullable<GkdDiag['countTimeline']> = [];
    for (const line of text.split('\n')) {
      if (!line.includes('"event":"tunnels"')) continue;
      try {
        const j = JSON.parse(line) as { time: string; from: number; target: number; reason: string };
        const at = Date.parse(j.time);
        if (at >= t0) changes.push({ s: Math.round((at - t0) / 100) / 10, from: j.from, to: j.target, reason: j.reason });
      } catch {
        /* a line cut by the process's end */
      }
    }
    const last = changes.at(-1);
    return { countTimeline: changes, countFinal: last ? last.to : undefined, countMax: Math.max(changes[0]?.from ?? 0, ...changes.map((c) => c.to)) };
  }

  private async diagnoseCli(before: Metrics): Promise<GkdDiag> {
    const after = await this.metrics(this.o.nsServer, this.serverMetrics);
    const out = new Map<number, number>();
    for (const [k, v] of after) {
      const m = /^gkd_tunnel_bytes_total\{side="server",tunnel="(\d+)",direction="out"\}$/.exec(k);
      if (m) out.set(Number(m[1]), v - (before.get(k) ?? 0));
    }
    const tunnels: TunnelDiag[] = [];
    const total = [...out.values()].reduce((a, b) => a + b, 0);
    for (const [index, bytes] of [...out].sort((a, b) => a[0] - b[0])) {
      if (this.n > 0 && index >= this.n) continue;
      const rtt = after.get(`gkd_tunnel_rtt_seconds{side="server",tunnel="${index}"}`);
      tunnels.push({ index, share: total > 0 ? bytes / total : 0, rttMs: rtt === undefined ? null : rtt * 1000 });
    }
    const grew = (name: string): number => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    return {
      tunnels,
      ...shares(tunnels, this.n || tunnels.length),
      ...this.countTimeline(this.markedAt),
      ...(this.n === 0 ? { countNow: (await this.metrics(this.o.nsClient, this.clientMetrics)).get('gkd_tunnels_configured') } : {}),
      resentFrames: grew('gkd_resent_frames_total{side="server"}'),
      resentBytes: grew('gkd_resent_bytes_total{side="server"}'),
    };
  }

  private diagnoseLib(t0: number, t1: number): GkdDiag {
    const srv = samples(this.statsFile('server'), t0, t1);
    const cli = samples(this.statsFile(`client-${this.clients}`), t0, t1);
    // The server's session of this client: the one whose tunnels carried the most bytes in the window.
    const pick = (s: Sample[]): SessionSample[] => {
      if (s.length === 0) return [];
      const ids = s[s.length - 1]!.sessions.length;
      let best = 0;
      let bestOut = -1;
      for (let k = 0; k < ids; k++) {
        const sum = (x: SessionSample | undefined): number => (x ? x.tunnels.reduce((a, t) => a + t.out, 0) : 0);
        const d = sum(s[s.length - 1]!.sessions[k]) - sum(s[0]!.sessions[k]);
        if (d > bestOut) {
          bestOut = d;
          best = k;
        }
      }
      return s.map((x) => x.sessions[best]).filter((x): x is SessionSample => x !== undefined);
    };
    const S = pick(srv);
    const C = pick(cli);
    const diag: GkdDiag = { tunnels: [], shareMin: NaN, shareMax: NaN, resentFrames: 0, samples: S.length };
    if (S.length < 2) return diag;
    const first = S[0]!;
    const last = S[S.length - 1]!;
    const outAt = (x: SessionSample, i: number): number => x.tunnels.find((t) => t.i === i)?.out ?? 0;
    const indices = [...new Set(last.tunnels.filter((t) => t.st === 'open').map((t) => t.i))].sort((a, b) => a - b);
    const deltas = indices.map((i) => outAt(last, i) - outAt(first, i));
    const total = deltas.reduce((a, b) => a + b, 0);
    indices.forEach((i, k) => {
      const seen = S.map((x) => x.tunnels.find((t) => t.i === i)).filter((t): t is TunnelSample => t !== undefined);
      const rtts = seen.map((t) => t.rtt).filter((r): r is number => r !== null);
      const rate = seen[seen.length - 1]?.rate ?? null;
      diag.tunnels.push({
        index: i,
        share: total > 0 ? deltas[k]! / total : 0,
        rttMs: rtts.length ? avg(rtts) : null,
        inflightKiB: avg(seen.map((t) => t.fl)) / 1024,
        queuedKiB: avg(seen.map((t) => t.q)) / 1024,
        rateMbps: rate === null ? null : (rate * 8) / 1e6,
      });
    });
    Object.assign(diag, shares(diag.tunnels, this.n));
    diag.resentFrames = last.resent - first.resent;
    diag.resentBytes = (last.resentBytes ?? 0) - (first.resentBytes ?? 0);
    // The download stream: most bytes out on the server, most bytes in on the client.
    // (It may have ended before the last sample: look at every sample.)
    const down = (xs: SessionSample[], key: 'out' | 'in'): StreamSample[] => {
      let best: StreamSample | undefined;
      for (const x of xs) for (const st of x.streams) if (!best || st[key] > best[key]) best = st;
      if (!best) return [];
      const id = best.id;
      return xs.map((x) => x.streams.find((st) => st.id === id)).filter((st): st is StreamSample => st !== undefined);
    };
    const sd = down(S, 'out');
    if (sd.length) {
      diag.unackedAvgKiB = avg(sd.map((s) => s.unacked)) / 1024;
      diag.unackedMaxKiB = Math.max(...sd.map((s) => s.unacked)) / 1024;
    }
    const cd = down(C, 'in');
    if (cd.length) {
      diag.windowKiB = Math.max(...cd.map((s) => s.win)) / 1024;
      diag.reorderAvg = avg(cd.map((s) => s.reorder));
      diag.reorderMax = Math.max(...cd.map((s) => s.reorder));
      diag.bufferedKiB = avg(cd.map((s) => s.buf)) / 1024;
    }
    return diag;
  }
}

interface TunnelSample {
  i: number;
  st: string;
  rtt: number | null;
  in: number;
  out: number;
  q: number;
  fl: number;
  rate: number | null;
}
interface StreamSample {
  id: number;
  win: number;
  unacked: number;
  reorder: number;
  buf: number;
  in: number;
  out: number;
}
interface SessionSample {
  resent: number;
  resentBytes?: number;
  tunnels: TunnelSample[];
  streams: StreamSample[];
}
interface Sample {
  t: number;
  sessions: SessionSample[];
}

function samples(file: string, t0: number, t1: number): Sample[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    try {
      const s = JSON.parse(line) as Sample;
      if (s.t >= t0 && s.t <= t1) out.push(s);
    } catch {
      /* a line being written */
    }
  }
  return out;
}

function avg(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

function shares(tunnels: TunnelDiag[], n: number): { shareMin: number; shareMax: number } {
  if (tunnels.length === 0) return { shareMin: NaN, shareMax: NaN };
  const s = tunnels.map((t) => t.share * n);
  // Tunnels that carried nothing are missing from the metrics: count them as 0.
  return { shareMin: tunnels.length < n ? 0 : Math.min(...s), shareMax: Math.max(...s) };
}
