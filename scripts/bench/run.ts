/**
 * `pnpm bench`: gkd end to end on an emulated WAN (scripts/netem), against direct TCP, `iperf3 -P N`
 * and the peer tools (microsocks, shadowsocks-libev, kcptun) where installed; plus a loopback overhead
 * bench and a connection-latency bench. Prints the tables and writes results.json, report.md and
 * chart.svg to --out (default .bench-out/, gitignored). Needs root; without it, says so and exits 0.
 *
 *   pnpm bench [--only a,b,c,d,e,latency,loopback] [--tools direct,iperf3,gkd,microsocks,ss,kcptun[,gkd-tls,gkd-bbr]]
 *              [--tunnels 1,2,4,8,16|auto] [--iperf-n 8,16,32] [--size-mib 64] [--cap 15] [--repeat 1] [--gkd cli|lib]
 *              [--session '{"initialWindow":4194304}'] [--sysctl net.ipv4.tcp_notsent_lowat=131072]
 *              [--latency-count 15] [--out DIR] [--no-wait]
 *   pnpm bench --render DIR/results.json     rewrite DIR/report.md and DIR/chart.svg from a saved run
 *   node --import tsx scripts/bench/timeline.ts DIR SCENARIO N   one gkd download of a --gkd lib run, second by second
 *
 * gkd rows measure plaintext tunnels (`--plaintext` on both ends); add `gkd-tls` to --tools for rows
 * `gkd-N tls` beside them: the CLI's default, TLS with the self-signed certificate pinned from the link
 * (a second server, its own ports; --gkd cli only); add `gkd-bbr` for rows `gkd-N bbr`: plaintext tunnels
 * with `--congestion bbr` on both ends in the cubic scenarios (another server, its own ports; both --gkd
 * modes). The latency bench measures gkd (plaintext) only.
 *
 * Peer tools: `apt-get install -y iperf3 microsocks shadowsocks-libev kcptun` (the runner installs
 * nothing; a missing tool is skipped with a message). gkd runs from the built packages: `pnpm build`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Gkd, type GkdOptions } from './lib/gkd.js';
import { curlDownload, iperf } from './lib/measure.js';
import * as netem from './lib/netem.js';
import {
  have,
  PEER_BINARIES,
  startFileServer,
  startKcptun,
  startMicrosocks,
  startRelay,
  startShadowsocks,
  waitListen,
  type PeerTool,
  type Route,
  type Sides,
} from './lib/peers.js';
import { busyOver, dpkgVersion, gitCommit, staleBuild, version } from './lib/machine.js';
import {
  CAP,
  flag,
  GKD_MODE,
  IPERF_N,
  LAT_COUNT,
  LOOP_CAP,
  LOOP_ROUNDS,
  LOOP_SIZE,
  ONLY,
  OUT,
  RENDER,
  REPEAT,
  SCENARIOS,
  SEED,
  SESSION,
  SIZE,
  SYSCTLS,
  TOOLS,
  TUNNELS,
} from './lib/options.js';
import { cpuSecondsOf, cpuTotals, killAll, load1, Proc, sleep, stopAll } from './lib/proc.js';
import { label, markdown, median } from './lib/report.js';
import { chart } from './lib/svg.js';
import type { LatencyRow, Results, Row, Scenario, ToolId } from './lib/types.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

if (flag('help') || flag('h')) {
  const src = readFileSync(fileURLToPath(import.meta.url), 'utf8');
  console.log(
    src
      .slice(src.indexOf('/**') + 3, src.indexOf('*/'))
      .replace(/^ \* ?/gm, '')
      .trim(),
  );
  process.exit(0);
}

const say = (msg: string): void => console.error(`bench: ${msg}`);

// ------------------------------------------------------------------ re-render a saved run (no root needed)

if (RENDER) {
  const res = JSON.parse(readFileSync(RENDER, 'utf8'), (_k, v: unknown) => (v === null ? NaN : v)) as Results;
  const dir = RENDER.replace(/\/[^/]*$/, '');
  const md = markdown(res);
  writeFileSync(`${dir}/report.md`, md);
  if (res.rows.length) writeFileSync(`${dir}/chart.svg`, chart(res));
  console.log(md);
  process.exit(0);
}

// ------------------------------------------------------------------ preconditions

if (process.getuid?.() !== 0) {
  console.log('bench: skipped: the WAN benchmark needs root (network namespaces, TUN devices, sysctls). Run it as root: `sudo pnpm bench`.');
  process.exit(0);
}
const missing = ['curl', 'gcc', 'ip', 'ss'].filter((b) => !have(b));
if (!existsSync('/dev/net/tun')) missing.push('/dev/net/tun');
if (missing.length) {
  console.log(`bench: cannot run: missing ${missing.join(', ')} (apt-get install -y curl gcc iproute2)`);
  process.exit(1);
}
if (!existsSync(`${ROOT}packages/cli/dist/main.js`)) {
  console.log('bench: cannot run: gkd is not built (run `pnpm build` first; both --gkd modes run the built packages)');
  process.exit(1);
}

const skipped: string[] = [];
const available = new Set<ToolId>(['direct', 'gkd', 'gkd-tls', 'gkd-bbr']);
if (have('iperf3')) available.add('iperf3');
else skipped.push('iperf3 (not installed: apt-get install -y iperf3)');
for (const [id, bins] of Object.entries(PEER_BINARIES) as [PeerTool['id'], string[]][]) {
  const absent = bins.filter((b) => !have(b));
  if (absent.length === 0) available.add(id);
  else skipped.push(`${id} (${absent.join(', ')} not found: apt-get install -y ${id === 'ss' ? 'shadowsocks-libev' : id})`);
}
const use = (t: ToolId): boolean => TOOLS.includes(t) && available.has(t);
for (const s of skipped) say(`skipping ${s}`);

const stale = staleBuild();
if (stale.length)
  say(`warning: packages/{${stale.join(',')}}/src changed after their dist was built: the bench runs the build (pnpm build to measure the change)`);

// ------------------------------------------------------------------ teardown, always

let tornDown = false;
function teardown(): void {
  if (tornDown) return;
  tornDown = true;
  killAll();
  netem.down();
}
process.on('exit', teardown);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    say(`${sig}: tearing down`);
    teardown();
    process.exit(130);
  });
}

// ------------------------------------------------------------------ measurement plumbing

const LOGS = `${OUT}/logs`;
mkdirSync(LOGS, { recursive: true });
const rows: Row[] = [];

interface Ctx {
  scenario: Scenario | null;
  /** pids of the processes whose CPU a row reports, per tool. */
  pids: { client: number; server: number };
}

/** Run one download with the emulator reset (reseeded, queues and flows empty) and its counters zeroed; record CPU and drops. */
async function measured(
  ctx: Ctx,
  tool: ToolId,
  n: number,
  round: number,
  fn: () => Promise<Partial<Row> & { mbps: number; bytes: number; seconds: number; capped: boolean }>,
  extra?: () => Promise<Partial<Row>>,
): Promise<Row> {
  await sleep(1000); // let queues drain
  if (ctx.scenario) {
    netem.set([...ctx.scenario.config, `seed=${SEED}`]);
    netem.resetStats();
  }
  const fwd = netem.forwarderPid();
  const at = new Date().toISOString();
  const l1 = load1();
  const m0 = cpuTotals();
  const f0 = cpuSecondsOf(fwd);
  const c0 = cpuSecondsOf(ctx.pids.client);
  const s0 = cpuSecondsOf(ctx.pids.server);
  const t0 = performance.now();
  const r = await fn();
  const wall = (performance.now() - t0) / 1000;
  const m1 = cpuTotals();
  const share = (a: number, b: number): number | undefined => (Number.isFinite(a) && Number.isFinite(b) ? ((b - a) / wall) * 100 : undefined);
  const row: Row = {
    scenario: ctx.scenario?.id ?? 'loopback',
    tool,
    n,
    round,
    load1: l1,
    at,
    cpu: { machine: ((m1.busy - m0.busy) / Math.max(1, m1.total - m0.total)) * 100 },
    ...r,
  };
  const fc = share(f0, cpuSecondsOf(fwd));
  if (fc !== undefined && ctx.scenario) row.cpu.fwd = fc;
  const cc = share(c0, cpuSecondsOf(ctx.pids.client));
  if (cc !== undefined) row.cpu.client = cc;
  const sc = share(s0, cpuSecondsOf(ctx.pids.server));
  if (sc !== undefined) row.cpu.server = sc;
  if (ctx.scenario) {
    const st = netem.stats();
    row.netem = {
      pktsData: st.ba_rx_pkts ?? 0,
      lossData: st.ba_drop_loss ?? 0,
      lossAck: st.ab_drop_loss ?? 0,
      queueDrops: st.ba_drop_queue ?? 0,
      flowDrops: st.ba_drop_flow ?? 0,
      poolDrops: (st.ba_drop_pool ?? 0) + (st.ab_drop_pool ?? 0),
      lateMaxMs: Math.max(st.ba_late_max_ns ?? 0, st.ab_late_max_ns ?? 0) / 1e6,
    };
  }
  if (extra) Object.assign(row, await extra());
  rows.push(row);
  const g = row.gkd;
  say(
    `[${row.scenario}] ${label(tool, n).padEnd(18)} ${Number.isFinite(row.mbps) ? row.mbps.toFixed(1).padStart(7) : '  error'} Mbit/s` +
      `${row.capped ? ` (capped, ${(row.bytes / 2 ** 20).toFixed(0)} MiB)` : ''}` +
      `${row.cpu.client !== undefined || row.cpu.server !== undefined ? `  cpu c/s ${(row.cpu.client ?? NaN).toFixed(0)}/${(row.cpu.server ?? NaN).toFixed(0)} %` : ''}` +
      `${row.cpu.fwd !== undefined ? `  emulator ${row.cpu.fwd.toFixed(0)} %` : ''}` +
      `${g ? `  share ${g.shareMin.toFixed(2)}–${g.shareMax.toFixed(2)} resent ${g.resentFrames}${g.resentBytes !== undefined ? ` (${(g.resentBytes / 2 ** 20).toFixed(1)} MiB)` : ''}` : ''}` +
      `${row.error ? `  ${row.error}` : ''}`,
  );
  return row;
}

function download(ns: string, route: Route, size: number, cap: number): () => Promise<Row & { mbps: number }> {
  return async () => {
    const d = await curlDownload(ns, `${route.base}/bytes/${size}`, { ...(route.socks ? { socks: route.socks } : {}), capSeconds: cap, size });
    const r: Partial<Row> & { mbps: number; bytes: number; seconds: number; capped: boolean } = {
      mbps: d.mbps,
      bytes: d.bytes,
      seconds: d.seconds,
      capped: d.capped,
      ttfbMs: d.ttfbMs,
    };
    if (d.error) r.error = d.error;
    return r as Row;
  };
}

// ------------------------------------------------------------------ WAN scenarios

const A = netem.NS_A;
const B = netem.NS_B;
const FILE_PORT = 8080;
const IPERF_PORT = 5201;

interface Deployment {
  gkd: Gkd | null;
  /** The TLS deployment beside it (--tools …,gkd-tls), on its own port. */
  gkdTls: Gkd | null;
  /** BBR tunnels beside it (--tools …,gkd-bbr), on its own port; none in a BBR scenario (the gkd rows are that). */
  gkdBbr: Gkd | null;
  peers: PeerTool[];
  sides: Sides;
}

/** Emulator up with the scenario's config, and every server of the scenario started. */
function applySysctls(): void {
  for (const ns of [A, B]) {
    for (const kv of SYSCTLS) {
      const r = spawnSync('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', kv], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`sysctl ${kv} in ${ns} failed: ${r.stderr}`);
    }
  }
}

async function deploy(s: Scenario, withGkd: boolean, peerIds: PeerTool['id'][]): Promise<Deployment> {
  netem.up(s.cc, [...s.config, `seed=${SEED}`]);
  applySysctls();
  const sides: Sides = { nsClient: A, nsServer: B, serverAddr: netem.ADDR_B, fileHost: '127.0.0.1', filePort: FILE_PORT, logDir: LOGS };
  await startFileServer(B, '0.0.0.0', FILE_PORT, LOGS);
  if (use('iperf3')) {
    new Proc('iperf3 -s', B, 'iperf3', ['-s', '-B', netem.ADDR_B, '-p', String(IPERF_PORT)], { logFile: `${LOGS}/iperf3.log` });
    await waitListen(B, 'tcp', IPERF_PORT);
  }
  const peers: PeerTool[] = [];
  for (const id of peerIds) {
    if (!use(id)) continue;
    peers.push(await (id === 'microsocks' ? startMicrosocks(sides) : id === 'ss' ? startShadowsocks(sides) : startKcptun(sides)));
  }
  // A gkd server on `port` of the server namespace, its client's SOCKS5 port on `socks`.
  const gkdServer = async (port: number, socks: string, extra: Partial<GkdOptions>): Promise<Gkd> => {
    const g = new Gkd({
      mode: GKD_MODE,
      nsServer: B,
      nsClient: A,
      listen: `${netem.ADDR_B}:${port}`,
      allow: `127.0.0.1:${FILE_PORT}`,
      socks,
      logDir: LOGS,
      ...extra,
    });
    await g.startServer();
    return g;
  };
  const session = SESSION ? { session: SESSION } : {};
  const gkd = withGkd && use('gkd') ? await gkdServer(9990, '127.0.0.1:1080', session) : null;
  const gkdTls = withGkd && use('gkd-tls') ? await gkdServer(9992, '127.0.0.1:1082', { tls: true }) : null;
  const gkdBbr = withGkd && use('gkd-bbr') && s.cc !== 'bbr' ? await gkdServer(9994, '127.0.0.1:1084', { congestion: 'bbr', ...session }) : null;
  return { gkd, gkdTls, gkdBbr, peers, sides };
}

async function undeploy(): Promise<void> {
  await stopAll();
  netem.down();
}

const GKD_ROUTE: Route = { socks: '127.0.0.1:1080', base: `http://127.0.0.1:${FILE_PORT}` };
const GKD_TLS_ROUTE: Route = { socks: '127.0.0.1:1082', base: `http://127.0.0.1:${FILE_PORT}` };
const GKD_BBR_ROUTE: Route = { socks: '127.0.0.1:1084', base: `http://127.0.0.1:${FILE_PORT}` };
const DIRECT_ROUTE: Route = { base: `http://${netem.ADDR_B}:${FILE_PORT}` };

async function runScenario(s: Scenario): Promise<void> {
  say(`scenario (${s.id}) ${s.title}, ${s.cc}: netem ${s.config.join(' ')}`);
  const dep = await deploy(s, true, ['microsocks', 'ss', 'kcptun']);
  const none = { client: -1, server: -1 };
  for (let round = 1; round <= REPEAT; round++) {
    const ns = round % 2 === 1 ? TUNNELS : [...TUNNELS].reverse();
    const ips = round % 2 === 1 ? IPERF_N : [...IPERF_N].reverse();
    if (use('direct')) await measured({ scenario: s, pids: none }, 'direct', 1, round, download(A, DIRECT_ROUTE, SIZE, CAP));
    // iperf3 -P N beside gkd-N, interleaved; -P counts no gkd row has (with --iperf-n, e.g. for auto rows) at the end.
    const iperfRun = (n: number) =>
      measured({ scenario: s, pids: none }, 'iperf3', n, round, async () => {
        const r = await iperf(A, netem.ADDR_B, IPERF_PORT, n, { capSeconds: CAP, size: SIZE });
        return { mbps: r.mbps, bytes: r.bytes, seconds: r.seconds, capped: r.capped, retransmits: r.retransmits, ...(r.error ? { error: r.error } : {}) };
      });
    for (const n of ns) {
      if (use('iperf3') && ips.includes(n)) await iperfRun(n);
      for (const [tool, gkd, route] of [
        ['gkd', dep.gkd, GKD_ROUTE],
        ['gkd-tls', dep.gkdTls, GKD_TLS_ROUTE],
        ['gkd-bbr', dep.gkdBbr, GKD_BBR_ROUTE],
      ] as const) {
        if (!gkd) continue;
        const up = await gkd.startClient(n);
        if (up < n) say(`warning: only ${up} of ${n} tunnels up`);
        let mark: Awaited<ReturnType<Gkd['mark']>>;
        await measured(
          { scenario: s, pids: { client: gkd.clientPid, server: gkd.serverPid } },
          tool,
          n,
          round,
          async () => {
            mark = await gkd.mark();
            return download(A, route, SIZE, CAP)();
          },
          async () => ({ gkd: await gkd.diagnose(mark), tunnelsUp: up }),
        );
        await gkd.stopClient();
      }
    }
    if (use('iperf3')) for (const n of ips) if (!ns.includes(n)) await iperfRun(n);
    for (const p of dep.peers) await measured({ scenario: s, pids: p.pids() }, p.id, 1, round, download(A, p.route, SIZE, CAP));
  }
  await undeploy();
}

// ------------------------------------------------------------------ connection latency

async function runLatency(): Promise<Results['latency']> {
  const s = SCENARIOS[0]!;
  say(`latency: time to first byte of new connections on scenario (${s.id}), ${LAT_COUNT} each idle (interleaved), then 5 each under load`);
  const dep = await deploy(s, true, ['microsocks', 'ss', 'kcptun']);
  const tunnels = 8;
  const paths: { tool: ToolId; route: Route }[] = [];
  if (use('direct')) paths.push({ tool: 'direct', route: DIRECT_ROUTE });
  if (dep.gkd) {
    await dep.gkd.startClient(tunnels);
    paths.push({ tool: 'gkd', route: GKD_ROUTE });
  }
  for (const p of dep.peers) paths.push({ tool: p.id, route: p.route });
  // One unmeasured request per path (first-use costs: kcptun's session, JIT warm-up).
  for (const p of paths) await curlDownload(A, `${p.route.base}/bytes/1`, { ...(p.route.socks ? { socks: p.route.socks } : {}), capSeconds: 10, size: 1 });
  await sleep(1500); // keepalive PINGs have measured the tunnels' RTT
  const out: LatencyRow[] = [];
  for (let round = 1; round <= LAT_COUNT; round++) {
    for (const p of paths) {
      const d = await curlDownload(A, `${p.route.base}/bytes/1`, { ...(p.route.socks ? { socks: p.route.socks } : {}), capSeconds: 10, size: 1 });
      const row: LatencyRow = { tool: p.tool, loaded: false, round, ttfbMs: d.ttfbMs };
      if (d.error) row.error = d.error;
      out.push(row);
      await sleep(150);
    }
  }
  // Under load: a bulk download runs through the same path (gkd: the same tunnels) while new connections open.
  const LOADED = 5;
  for (const p of paths) {
    const socks = p.route.socks ? { socks: p.route.socks } : {};
    const bulk = curlDownload(A, `${p.route.base}/bytes/${2 ** 30}`, { ...socks, capSeconds: 7, size: 2 ** 30 });
    await sleep(2000); // the bulk flow has opened its window and filled the queues
    for (let round = 1; round <= LOADED; round++) {
      const d = await curlDownload(A, `${p.route.base}/bytes/1`, { ...socks, capSeconds: 10, size: 1 });
      const row: LatencyRow = { tool: p.tool, loaded: true, round, ttfbMs: d.ttfbMs };
      if (d.error) row.error = d.error;
      out.push(row);
      await sleep(200);
    }
    await bulk;
    await sleep(1000);
  }
  let rtt: number | null = null;
  if (dep.gkd) {
    const diag = await dep.gkd.diagnose(await dep.gkd.mark());
    const r = diag.tunnels.map((t) => t.rttMs).filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
    rtt = r.length ? median(r) : null;
  }
  for (const p of paths) {
    for (const loaded of [false, true]) {
      const v = out.filter((r) => r.tool === p.tool && r.loaded === loaded).map((r) => r.ttfbMs);
      say(
        `[latency] ${(p.tool === 'gkd' ? `gkd (${tunnels} tunnels)` : label(p.tool, 1)).padEnd(18)} ${loaded ? 'under load' : 'idle      '} TTFB median ${median(v).toFixed(0)} ms (min ${Math.min(...v).toFixed(0)}, max ${Math.max(...v).toFixed(0)})`,
      );
    }
  }
  await undeploy();
  return { scenario: s.id, tunnels, gkdRttMs: rtt, rows: out };
}

// ------------------------------------------------------------------ loopback overhead

async function runLoopback(): Promise<Results['loopback']> {
  say(`loopback: one stream, ${LOOP_SIZE / 2 ** 20} MiB or ${LOOP_CAP} s, ${LOOP_ROUNDS} rounds, all processes in ${A} on 127.0.0.1 (no emulator in the path)`);
  netem.up('cubic', []);
  applySysctls();
  const fport = 8090;
  const file = await startFileServer(A, '127.0.0.1', fport, LOGS);
  const base = `http://127.0.0.1:${fport}`;
  const hop2 = await startRelay(A, 7002, fport, LOGS, 'relay hop 2');
  const hop1 = await startRelay(A, 7001, 7002, LOGS, 'relay hop 1');
  let micro: Proc | null = null;
  if (use('microsocks')) {
    micro = new Proc('microsocks', A, 'microsocks', ['-i', '127.0.0.1', '-p', '1090'], { logFile: `${LOGS}/microsocks.log` });
    await waitListen(A, 'tcp', 1090);
  }
  const gkd = use('gkd')
    ? new Gkd({
        mode: GKD_MODE,
        nsServer: A,
        nsClient: A,
        listen: '127.0.0.1:9991',
        allow: `127.0.0.1:${fport}`,
        socks: '127.0.0.1:1091',
        logDir: LOGS,
        ...(SESSION ? { session: SESSION } : {}),
      })
    : null;
  await gkd?.startServer();
  const gkdTls = use('gkd-tls')
    ? new Gkd({
        mode: GKD_MODE,
        nsServer: A,
        nsClient: A,
        listen: '127.0.0.1:9993',
        allow: `127.0.0.1:${fport}`,
        socks: '127.0.0.1:1093',
        logDir: LOGS,
        tls: true,
      })
    : null;
  await gkdTls?.startServer();
  const before = rows.length;
  const ctx = (client: number, server: number): Ctx => ({ scenario: null, pids: { client, server } });
  for (let round = 1; round <= LOOP_ROUNDS; round++) {
    if (use('direct')) await measured(ctx(-1, file.pid), 'direct', 1, round, download(A, { base }, LOOP_SIZE, LOOP_CAP));
    await measured(ctx(hop1.pid, hop2.pid), 'relay', 1, round, download(A, { base: 'http://127.0.0.1:7001' }, LOOP_SIZE, LOOP_CAP));
    if (micro) await measured(ctx(-1, micro.pid), 'microsocks', 1, round, download(A, { socks: '127.0.0.1:1090', base }, LOOP_SIZE, LOOP_CAP));
    for (const [tool, g, socks] of [
      ['gkd', gkd, '127.0.0.1:1091'],
      ['gkd-tls', gkdTls, '127.0.0.1:1093'],
    ] as const) {
      if (!g) continue;
      for (const n of [1, 8]) {
        await g.startClient(n);
        await measured(ctx(g.clientPid, g.serverPid), tool, n, round, download(A, { socks, base }, LOOP_SIZE, LOOP_CAP));
        await g.stopClient();
      }
    }
  }
  await undeploy();
  return { sizeMiB: LOOP_SIZE / 2 ** 20, capS: LOOP_CAP, rows: rows.splice(before) };
}

// ------------------------------------------------------------------ fairness: two peers on auto

/** Two gkd clients, both `--tunnels auto`, download at once through one bottleneck (scenario b). */
async function runFairness(): Promise<Results['fair']> {
  const s = SCENARIOS.find((x) => x.id === 'b')!;
  say(`fairness: two gkd clients on --tunnels auto downloading at once, scenario (${s.id})`);
  const dep = await deploy(s, true, []);
  const a = dep.gkd;
  if (!a) {
    await undeploy();
    return undefined;
  }
  const b = a.sibling('127.0.0.1:1081', [9468, 9469]);
  const rounds: NonNullable<Results['fair']>['rounds'] = [];
  for (let round = 1; round <= REPEAT; round++) {
    await a.startClient(0);
    await b.startClient(0);
    const get = (socks: string) => curlDownload(A, `http://127.0.0.1:${FILE_PORT}/bytes/${SIZE * 4}`, { socks, capSeconds: CAP * 2, size: SIZE * 4 });
    const [da, db] = await Promise.all([get('127.0.0.1:1080'), get('127.0.0.1:1081')]);
    const counts: [number, number] = [await a.tunnelTarget(), await b.tunnelTarget()];
    rounds.push({ round, mbps: [da.mbps, db.mbps], counts });
    say(
      `[fair] round ${round}: ${da.mbps.toFixed(1)} / ${db.mbps.toFixed(1)} Mbit/s (ratio ${(Math.min(da.mbps, db.mbps) / Math.max(da.mbps, db.mbps)).toFixed(2)}), tunnels ${counts.join(' / ')}`,
    );
    await a.stopClient();
    await b.stopClient();
  }
  await undeploy();
  return { scenario: s.id, rounds };
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const started = new Date();
  let busy = await busyOver(5000);
  if (busy > 25 && !flag('no-wait')) {
    say(
      `the machine is busy (${busy.toFixed(0)} % CPU, load ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}): waiting up to 2 min for it to calm down`,
    );
    for (let i = 0; i < 24 && busy > 25; i++) busy = await busyOver(5000);
    say(`going ahead at ${busy.toFixed(0)} % CPU`);
  }
  const loadBefore = loadavg().map((x) => Number(x.toFixed(2)));
  say(`load ${loadBefore.join(' ')}, CPU busy ${busy.toFixed(0)} %; output in ${OUT}`);
  const res: Results = {
    info: {
      date: started.toISOString().slice(0, 10),
      startedAt: started.toISOString(),
      finishedAt: '',
      durationS: 0,
      host: {
        cores: cpus().length,
        cpu: (cpus()[0]?.model ?? '?').replace(/\s+/g, ' '),
        kernel: version('uname', ['-r'], /(.+)/),
        node: process.version,
        memGiB: Math.round(totalmem() / 2 ** 30),
      },
      git: { commit: gitCommit(), staleSources: stale },
      loadBefore,
      loadAfter: [],
      busyBefore: busy,
      params: {
        sizeMiB: SIZE / 2 ** 20,
        capS: CAP,
        repeat: REPEAT,
        tunnels: TUNNELS,
        gkd: GKD_MODE,
        ...(SESSION ? { session: SESSION } : {}),
        ...(SYSCTLS.length ? { sysctls: SYSCTLS } : {}),
        tools: TOOLS.filter(use),
        seed: SEED,
      },
      command: `sudo pnpm bench ${process.argv.slice(2).join(' ')}`.trim(),
      skipped,
      versions: {
        curl: version('curl', ['--version'], /curl (\S+)/),
        iperf3: dpkgVersion('iperf3'),
        microsocks: dpkgVersion('microsocks'),
        'shadowsocks-libev': dpkgVersion('shadowsocks-libev'),
        kcptun: dpkgVersion('kcptun'),
      },
    },
    scenarios: SCENARIOS.filter((s) => ONLY.includes(s.id)),
    rows,
  };
  for (const s of res.scenarios) await runScenario(s);
  if (ONLY.includes('latency')) res.latency = await runLatency();
  if (ONLY.includes('loopback')) res.loopback = await runLoopback();
  if (ONLY.includes('fair') && use('gkd')) res.fair = await runFairness();
  const finished = new Date();
  res.info.finishedAt = finished.toISOString();
  res.info.durationS = Math.round((finished.getTime() - started.getTime()) / 1000);
  res.info.loadAfter = loadavg().map((x) => Number(x.toFixed(2)));
  const md = markdown(res);
  writeFileSync(`${OUT}/results.json`, `${JSON.stringify(res, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
  writeFileSync(`${OUT}/report.md`, md);
  if (res.rows.length) writeFileSync(`${OUT}/chart.svg`, chart(res));
  console.log(md);
  say(
    `done in ${Math.round(res.info.durationS / 60)} min; wrote ${OUT}/results.json, report.md${res.rows.length ? ', chart.svg' : ''} (process logs in ${LOGS})`,
  );
}

main().then(
  () => {
    teardown();
    process.exit(0);
  },
  (err: unknown) => {
    say(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    teardown();
    process.exit(1);
  },
);
