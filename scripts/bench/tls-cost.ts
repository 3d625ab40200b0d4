/**
 * What TLS costs gkd on loopback: one stream downloaded through `gkd client` → `gkd server` → the
 * bench file server, all on 127.0.0.1 in the current namespace (no root, no emulator), with the
 * CLI's default (TLS, the self-signed certificate pinned from the link) against `--plaintext` on
 * both ends. Rounds are interleaved (plaintext, TLS, plaintext, …) so drift in the machine's load
 * hits both alike; it prints the median Mbit/s and each gkd process's CPU share (% of one core, from
 * /proc/<pid>/stat over the download).
 *
 *   node --import tsx scripts/bench/tls-cost.ts [--rounds 5] [--tunnels 1,8] [--size-mib 2048] [--cap 10]
 *
 * gkd runs from the built packages (`pnpm build`).
 */
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gkd } from './lib/gkd.js';
import { curlDownload } from './lib/measure.js';
import { startFileServer } from './lib/peers.js';
import { cpuSecondsOf, load1, stopAll } from './lib/proc.js';
import { median } from './lib/report.js';

const argv = process.argv.slice(2);
const option = (name: string, fallback: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : fallback;
};
if (argv.includes('--help')) {
  console.log('node --import tsx scripts/bench/tls-cost.ts [--rounds 5] [--tunnels 1,8] [--size-mib 2048] [--cap 10]');
  process.exit(0);
}
const ROUNDS = Number(option('rounds', '5'));
const TUNNELS = option('tunnels', '1,8').split(',').map(Number);
const SIZE = Number(option('size-mib', '2048')) * 2 ** 20;
const CAP = Number(option('cap', '10'));

/** A free TCP port on 127.0.0.1 (bound and released: good enough for a bench, never for a test). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface Sample {
  mbps: number;
  /** CPU of each process over the download, in % of one core. */
  client: number;
  server: number;
  /** CPU seconds of both processes per GiB carried: the cost, which a busy machine distorts less than the share. */
  cpuPerGiB: number;
}

async function main(): Promise<void> {
  const logDir = mkdtempSync(join(tmpdir(), 'gkd-tls-cost-'));
  const filePort = await freePort();
  await startFileServer('', '127.0.0.1', filePort, logDir);
  const kinds = [
    { name: 'plaintext', tls: false },
    { name: 'TLS', tls: true },
  ];
  const deployments = [];
  for (const k of kinds) {
    const socks = `127.0.0.1:${await freePort()}`;
    const metricsPorts: [number, number] = [await freePort(), await freePort()];
    const g = new Gkd({
      mode: 'cli',
      nsServer: '',
      nsClient: '',
      listen: `127.0.0.1:${await freePort()}`,
      allow: `127.0.0.1:${filePort}`,
      socks,
      logDir,
      tls: k.tls,
      metricsPorts,
    });
    await g.startServer();
    deployments.push({ ...k, g, socks });
  }
  const samples = new Map<string, Sample[]>();
  console.error(`tls-cost: ${ROUNDS} rounds × tunnels ${TUNNELS.join(',')} × (plaintext, TLS), ${SIZE / 2 ** 20} MiB or ${CAP} s each; load ${load1()}`);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const n of TUNNELS) {
      const order = round % 2 ? deployments : [...deployments].reverse();
      for (const d of order) {
        await d.g.startClient(n);
        const c0 = cpuSecondsOf(d.g.clientPid);
        const s0 = cpuSecondsOf(d.g.serverPid);
        const t0 = performance.now();
        const r = await curlDownload('', `http://127.0.0.1:${filePort}/bytes/${SIZE}`, { socks: d.socks, capSeconds: CAP, size: SIZE });
        const wall = (performance.now() - t0) / 1000;
        const dc = cpuSecondsOf(d.g.clientPid) - c0;
        const ds = cpuSecondsOf(d.g.serverPid) - s0;
        const sample = { mbps: r.mbps, client: (dc / wall) * 100, server: (ds / wall) * 100, cpuPerGiB: (dc + ds) / (r.bytes / 2 ** 30) };
        await d.g.stopClient();
        const key = `${d.name}|${n}`;
        samples.set(key, [...(samples.get(key) ?? []), sample]);
        console.error(
          `tls-cost: round ${round} gkd-${n} ${d.name.padEnd(9)} ${sample.mbps.toFixed(0).padStart(6)} Mbit/s  cpu client ${sample.client.toFixed(0)} %, server ${sample.server.toFixed(0)} %, ${sample.cpuPerGiB.toFixed(2)} cpu-s/GiB${r.error ? `  ${r.error}` : ''}`,
        );
      }
    }
  }
  console.log(`| one stream, loopback (median of ${ROUNDS}) | Mbit/s | CPU % of a core: client / server | CPU s per GiB, both | rounds, Mbit/s |`);
  console.log('| --- | ---: | ---: | ---: | --- |');
  for (const n of TUNNELS) {
    for (const d of deployments) {
      const v = samples.get(`${d.name}|${n}`) ?? [];
      const m = (f: (s: Sample) => number): number => median(v.map(f));
      console.log(
        `| gkd-${n} ${d.name} | ${m((s) => s.mbps).toFixed(0)} | ${m((s) => s.client).toFixed(0)} / ${m((s) => s.server).toFixed(0)} | ${m((s) => s.cpuPerGiB).toFixed(2)} | ${v.map((s) => s.mbps.toFixed(0)).join(', ')} |`,
      );
    }
  }
  console.error(`tls-cost: load at the end ${load1()}`);
  for (const d of deployments) await d.g.stop();
  await stopAll();
}

await main();
