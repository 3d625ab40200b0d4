/** The WAN emulator (scripts/netem/netem.sh), driven synchronously: it is quick and must finish before anything else. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const NETEM = fileURLToPath(new URL('../../netem/netem.sh', import.meta.url));
/** GKD_NETEM_PREFIX names the namespaces and the state directory, so a second emulator can run beside the first. */
const PREFIX = process.env.GKD_NETEM_PREFIX ?? 'gkd';
const STATE = process.env.NETEM_STATE_DIR ?? `/run/${PREFIX}-netem`;

export const NS_A = process.env.NETEM_NS_A ?? `${PREFIX}-a`;
export const NS_B = process.env.NETEM_NS_B ?? `${PREFIX}-b`;
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

/**
 * Several independent links (link L: 10.77.L.1 dev gkdtunA<L> ↔ 10.77.L.2 dev gkdtunB<L>; link 0 is the
 * usual one), each with its own config: `configs[L]`. The client side routes by source address.
 */
export function upLinks(cc: string, configs: string[][]): void {
  const args = configs.flatMap((c, l) => c.map((kv) => `${l}:${kv}`));
  netem(['up', '--cc', cc, '--links', String(configs.length), ...args]);
}

/** Link L's addresses and client-side device. */
export function link(l: number): { addrA: string; addrB: string; devA: string } {
  return l === 0
    ? { addrA: ADDR_A, addrB: ADDR_B, devA: process.env.NETEM_DEV_A ?? 'gkdtunA' }
    : { addrA: `10.77.${l}.1`, addrB: `10.77.${l}.2`, devA: `${process.env.NETEM_DEV_A ?? 'gkdtunA'}${l}` };
}

/** Cut link L: its client-side device goes down, or (blackhole) every packet is dropped and the device stays up. */
export function cut(l: number, how: 'down' | 'blackhole' = 'down'): void {
  netem(['cut', String(l), ...(how === 'blackhole' ? ['--blackhole'] : [])]);
}

/** Undo a cut of link L. */
export function restore(l: number): void {
  netem(['restore', String(l)]);
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
