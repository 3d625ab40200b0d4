/** The WAN emulator (scripts/netem/netem.sh), driven synchronously: it is quick and must finish before anything else. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const NETEM = fileURLToPath(new URL('../../netem/netem.sh', import.meta.url));
const STATE = process.env.NETEM_STATE_DIR ?? '/run/gkd-netem';

export const NS_A = process.env.NETEM_NS_A ?? 'gkd-a';
export const NS_B = process.env.NETEM_NS_B ?? 'gkd-b';
export const ADDR_A = process.env.NETEM_ADDR_A ?? '10.77.0.1';
export const ADDR_B = process.env.NETEM_ADDR_B ?? '10.77.0.2';

function netem(args: string[]): string {
  const r = spawnSync(NETEM, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`netem.sh ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return r.stdout;
}

/** Namespaces + forwarder with this congestion control and config (tears down any previous instance, and every process in the namespaces). */
export function up(cc: string, config: string[]): void {
  netem(['up', '--cc', cc, ...config]);
}

/** Replace the config live; also reseeds the loss PRNG and empties the queues and the flow table. */
export function set(config: string[]): void {
  netem(['set', ...config]);
}

/** Zero the forwarder's counters. */
export function resetStats(): void {
  netem(['stats', '--reset']);
}

/** The forwarder's counters (key=value, numbers). */
export function stats(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of netem(['stats']).split('\n')) {
    const m = /^([a-z0-9_]+)=(-?[0-9.]+)$/.exec(line.trim());
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** Idempotent teardown (kills every process left in the namespaces). Never throws. */
export function down(): void {
  spawnSync(NETEM, ['down'], { encoding: 'utf8', timeout: 60_000 });
}

/** The forwarder's pid, or -1. */
export function forwarderPid(): number {
  try {
    return Number(readFileSync(`${STATE}/fwd.pid`, 'utf8').trim());
  } catch {
    return -1;
  }
}
