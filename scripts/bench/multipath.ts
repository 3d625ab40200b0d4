/**
 * Multipath bench (issue 18): one download over two unequal emulated links, against each link alone, and
 * one link dropping out mid-download. Needs root; runs the built gkd CLI (`pnpm build` first).
 *
 *   sudo node --import tsx scripts/bench/multipath.ts [--only f,g] [--repeat 3] [--tunnels 4|auto]
 *        [--size-mib 48] [--cap 40] [--cc cubic] [--out .bench-out/multipath]
 *
 * `--tunnels auto`: the paths take no `:N`, so each adapts its own count (one controller per path,
 * starting at 8 split over the paths: 4 each on both links, 8 on a link alone).
 *
 * Links (scripts/netem, `--links 2`): link 0 20 ms RTT / 50 Mbit/s, link 1 60 ms RTT / 20 Mbit/s, both
 * with 50 ms drop-tail queues. The gkd client binds one path per link by interface name (--via gkdtunA:N,
 * --via gkdtunA1:N); the emulator routes each source address over its own link.
 *   (f) medians over --repeat rounds of gkd on link 0 alone, on link 1 alone, and on both; the target is
 *       both ≥ 90 % of the sum of the two alone.
 *   (g) both links; 5 s into a 192 MiB download link 1's client-side device goes down (`netem.sh cut 1`):
 *       the body must hash like the same bytes fetched on the server side, the longest stall after the cut
 *       must stay within the keepalive deadline (5 s by default), and the rate from 2 s after the stall to
 *       the end is compared with link 0 alone (from (f), or measured). Then the link is restored and the
 *       path must rejoin.
 * GKD_NETEM_PREFIX (default gkd) names the namespaces: use your own beside someone else's emulator.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Gkd } from './lib/gkd.js';
import { curlDownload } from './lib/measure.js';
import * as netem from './lib/netem.js';
import { startFileServer } from './lib/peers.js';
import { killAll, run, sleep, stopAll } from './lib/proc.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const argv = process.argv.slice(2);
const option = (name: string, fallback: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : fallback;
};
const ONLY = option('only', 'f,g').split(',');
const REPEAT = Number(option('repeat', '3'));
const TUNNELS_TEXT = option('tunnels', '4');
/** 0: `--tunnels auto` (the Gkd helper's convention). */
const TUNNELS = TUNNELS_TEXT === 'auto' ? 0 : Number(TUNNELS_TEXT);
/** Tunnels a setup of `paths` paths starts with: the fixed count per path, or auto's start (8 split over the paths). */
const startTunnels = (paths: number): number => (TUNNELS === 0 ? Math.ceil(8 / paths) * paths : TUNNELS * paths);
const SIZE = Number(option('size-mib', '48')) * 2 ** 20;
const CAP = Number(option('cap', '40'));
const CC = option('cc', 'cubic');
const OUT = option('out', `${ROOT}.bench-out/multipath`);
const G_SIZE = 192 * 2 ** 20;
const CUT_AFTER_MS = 5000;
const KEEPALIVE_DEADLINE_MS = 5000;
const LINKS = [
  ['delay=10', 'rate=50', 'queue=50ms'],
  ['delay=30', 'rate=20', 'queue=50ms'],
];
const FILE_PORT = 8080;
const say = (msg: string): void => console.error(`multipath: ${msg}`);

if (process.getuid?.() !== 0) {
  console.log('multipath: skipped: needs root (network namespaces, TUN devices). Run: sudo node --import tsx scripts/bench/multipath.ts');
  process.exit(0);
}

const A = netem.NS_A;
const B = netem.NS_B;
const dev = (l: number): string => netem.link(l).devA;
const median = (xs: number[]): number => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

let tornDown = false;
function teardown(): void {
  if (tornDown) return;
  tornDown = true;
  killAll();
  netem.down();
}
process.on('exit', teardown);
for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.on(sig, () => {
    teardown();
    process.exit(130);
  });

type Setup = { name: string; vias: number[] };
const SETUPS: Setup[] = [
  { name: 'link 0 alone (20 ms, 50 Mbit/s)', vias: [0] },
  { name: 'link 1 alone (60 ms, 20 Mbit/s)', vias: [1] },
  { name: 'both links', vias: [0, 1] },
];
const viaFlags = (vias: number[]): string[] => vias.flatMap((l) => ['--via', TUNNELS === 0 ? dev(l) : `${dev(l)}:${TUNNELS}`]);

async function main(): Promise<void> {
  mkdirSync(`${OUT}/logs`, { recursive: true });
  netem.upLinks(CC, LINKS);
  await startFileServer(B, '0.0.0.0', FILE_PORT, `${OUT}/logs`);
  const gkd = new Gkd({
    mode: 'cli',
    nsServer: B,
    nsClient: A,
    listen: `${netem.ADDR_B}:9990`,
    allow: `127.0.0.1:${FILE_PORT}`,
    socks: '127.0.0.1:1080',
    logDir: `${OUT}/logs`,
  });
  await gkd.startServer();
  const results: Record<string, unknown> = { links: LINKS, tunnelsPerPath: TUNNELS_TEXT, cc: CC, repeat: REPEAT, sizeMiB: SIZE / 2 ** 20 };

  const alone0: number[] = [];
  if (ONLY.includes('f')) {
    const mbps = new Map<string, number[]>(SETUPS.map((s) => [s.name, []]));
    for (let round = 1; round <= REPEAT; round++) {
      const order = round % 2 ? SETUPS : [...SETUPS].reverse();
      for (const s of order) {
        const up = await gkd.startClient(TUNNELS, viaFlags(s.vias), startTunnels(s.vias.length));
        await sleep(1000);
        const d = await curlDownload(A, `http://127.0.0.1:${FILE_PORT}/bytes/${SIZE}`, { socks: '127.0.0.1:1080', capSeconds: CAP, size: SIZE });
        mbps.get(s.name)!.push(d.mbps);
        say(
          `(f) round ${round} ${s.name.padEnd(32)} ${d.mbps.toFixed(1).padStart(6)} Mbit/s${d.capped ? ' (capped)' : ''} (${up} tunnels up)${d.error ? ` ${d.error}` : ''}`,
        );
        await gkd.stopClient();
      }
    }
    const med = SETUPS.map((s) => median(mbps.get(s.name)!));
    alone0.push(...mbps.get(SETUPS[0]!.name)!);
    const sum = med[0]! + med[1]!;
    const ratio = med[2]! / sum;
    results.f = { mbps: Object.fromEntries(mbps), medians: med, ratio };
    console.log(`\n(f) two unequal links, medians of ${REPEAT}, ${TUNNELS_TEXT} tunnels per path, ${CC}`);
    console.log('| setup | Mbit/s (median) | rounds |\n| --- | ---: | --- |');
    SETUPS.forEach((s, i) => {
      console.log(
        `| ${s.name} | ${med[i]!.toFixed(1)} | ${mbps
          .get(s.name)!
          .map((x) => x.toFixed(1))
          .join(', ')} |`,
      );
    });
    console.log(`| both / (link 0 + link 1) | ${(ratio * 100).toFixed(0)} % | target ≥ 90 % |`);
  }

  if (ONLY.includes('g')) {
    if (alone0.length === 0) {
      await gkd.startClient(TUNNELS, viaFlags([0]), startTunnels(1));
      await sleep(1000);
      alone0.push((await curlDownload(A, `http://127.0.0.1:${FILE_PORT}/bytes/${SIZE}`, { socks: '127.0.0.1:1080', capSeconds: CAP, size: SIZE })).mbps);
      await gkd.stopClient();
    }
    const want = (await run(B, 'sh', ['-c', `curl -s http://127.0.0.1:${FILE_PORT}/bytes/${G_SIZE} | sha256sum`], 120_000)).stdout.split(' ')[0];
    await gkd.startClient(TUNNELS, [...viaFlags([0, 1]), '--log-level', 'info'], startTunnels(2));
    await sleep(1000);
    const getting = run(
      A,
      'node',
      ['--import', 'tsx', `${ROOT}scripts/bench/socks-get.ts`, '127.0.0.1:1080', `127.0.0.1:${FILE_PORT}`, `/bytes/${G_SIZE}`, '90'],
      120_000,
    );
    await sleep(CUT_AFTER_MS);
    const cutAt = Date.now();
    netem.cut(1);
    say(`(g) link 1 cut at +${CUT_AFTER_MS} ms`);
    const r = JSON.parse((await getting).stdout.trim().split('\n').pop() || '{}') as {
      bytes: number;
      sha256: string;
      firstByteAt: number;
      bucketMs: number;
      buckets: number[];
      error?: string;
    };
    const from = Math.max(0, Math.floor((cutAt - r.firstByteAt) / r.bucketMs));
    let longest = 0;
    let run0 = 0;
    let stallEnd = from;
    for (let i = from; i < r.buckets.length; i++) {
      if (r.buckets[i] === 0) {
        run0++;
        if (run0 > longest) {
          longest = run0;
          stallEnd = i + 1;
        }
      } else run0 = 0;
    }
    const stallMs = longest * r.bucketMs;
    const after = Math.min(r.buckets.length, stallEnd + 2000 / r.bucketMs);
    const tail = r.buckets.slice(after, -1); // the last bucket is partial
    const afterMbps = tail.length > 0 ? (tail.reduce((a, b) => a + b, 0) * 8) / ((tail.length * r.bucketMs) / 1000) / 1e6 : NaN;
    const exact = r.bytes === G_SIZE && r.sha256 === want;
    netem.restore(1);
    let rejoined = false;
    for (let i = 0; i < 60 && !rejoined; i++) {
      await sleep(500);
      // With auto the path may have idled down to its minimum meanwhile: one tunnel back is a rejoin.
      rejoined = ((await gkd.clientSeries()).get(`gkd_path_tunnels_up{path="${dev(1)}"}`) ?? 0) >= Math.max(1, TUNNELS);
    }
    await gkd.stopClient();
    const ref = median(alone0);
    results.g = { bytes: r.bytes, exact, stallMs, afterMbps, alone0Mbps: ref, rejoined, error: r.error };
    console.log(`\n(g) link 1 cut ${CUT_AFTER_MS / 1000} s into a ${G_SIZE / 2 ** 20} MiB download over both links`);
    console.log('| check | result | target |\n| --- | --- | --- |');
    console.log(`| byte-exact (sha256, ${r.bytes} bytes) | ${exact ? 'yes' : 'NO'}${r.error ? ` (${r.error})` : ''} | yes |`);
    console.log(`| longest stall after the cut | ${stallMs} ms | ≤ ${KEEPALIVE_DEADLINE_MS} ms (keepalive deadline) |`);
    console.log(`| rate after the stall (+2 s to the end) | ${afterMbps.toFixed(1)} Mbit/s | link 0 alone: ${ref.toFixed(1)} Mbit/s |`);
    console.log(`| path rejoined after restore | ${rejoined ? 'yes' : 'NO'} | yes |`);
  }
  writeFileSync(`${OUT}/results.json`, `${JSON.stringify(results, null, 2)}\n`);
  say(`wrote ${OUT}/results.json (logs in ${OUT}/logs)`);
  await stopAll();
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
