/** The runner's command line (see the header of run.ts), validated, and the scenarios it knows. */
import { fileURLToPath } from 'node:url';
import type { GkdMode } from './gkd.js';
import type { Scenario, ToolId } from './types.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const argv = process.argv.slice(2);

function option(name: string, fallback: string): string {
  const i = argv.indexOf(`--${name}`);
  if (i >= 0 && argv[i + 1] !== undefined) return argv[i + 1]!;
  const eq = argv.find((a) => a.startsWith(`--${name}=`));
  return eq ? eq.slice(name.length + 3) : fallback;
}
export const flag = (name: string): boolean => argv.includes(`--${name}`);

/** The WAN scenarios of the issue: 100 ms RTT, 100 Mbit/s, 50 ms drop-tail queue, plus one impairment each. */
export const SCENARIOS: Scenario[] = [
  { id: 'a', title: 'no loss', cc: 'cubic', config: ['delay=50', 'rate=100', 'queue=50ms'] },
  { id: 'b', title: '1 % loss', cc: 'cubic', config: ['delay=50', 'rate=100', 'queue=50ms', 'loss=1'] },
  { id: 'c', title: '0.1 % loss', cc: 'cubic', config: ['delay=50', 'rate=100', 'queue=50ms', 'loss=0.1'] },
  { id: 'd', title: 'per-flow cap 10 Mbit/s', cc: 'cubic', config: ['delay=50', 'rate=100', 'queue=50ms', 'flow_rate=10'] },
  { id: 'e', title: '1 % loss', cc: 'bbr', config: ['delay=50', 'rate=100', 'queue=50ms', 'loss=1'] },
];
const PARTS = [...SCENARIOS.map((s) => s.id), 'latency', 'loopback', 'fair'];
const TOOL_IDS: ToolId[] = ['direct', 'iperf3', 'gkd', 'gkd-tls', 'gkd-bbr', 'microsocks', 'ss', 'kcptun'];
/** gkd-tls and gkd-bbr (rows beside the plaintext gkd rows) only when asked for: each doubles gkd's share of the run time. */
const DEFAULT_TOOLS = TOOL_IDS.filter((t) => t !== 'gkd-tls' && t !== 'gkd-bbr');

const errors: string[] = [];
function list(name: string, fallback: string, allowed: string[]): string[] {
  const v = option(name, fallback).split(',').filter(Boolean);
  const bad = v.filter((x) => !allowed.includes(x));
  if (bad.length) errors.push(`--${name}: unknown ${bad.join(', ')} (one of ${allowed.join(', ')})`);
  return v;
}
function positive(name: string, fallback: string): number {
  const v = Number(option(name, fallback));
  if (!(v > 0)) errors.push(`--${name}: not a positive number`);
  return v;
}

export const ONLY = list('only', PARTS.join(','), PARTS);
export const TOOLS = list('tools', DEFAULT_TOOLS.join(','), TOOL_IDS) as ToolId[];
/** Tunnel counts to measure; 0 stands for `--tunnels auto` (rows `gkd-auto`). */
export const TUNNELS = option('tunnels', '1,2,4,8,16')
  .split(',')
  .map((t) => (t.trim() === 'auto' ? 0 : Number(t)));
if (TUNNELS.some((n) => !Number.isInteger(n) || n < 0 || n > 64)) errors.push('--tunnels: integers from 1 to 64, or auto');
/** iperf3 -P counts measured beside the gkd rows (default: the numeric --tunnels); `auto` rows compare with the one nearest the count gkd chose. */
export const IPERF_N = option('iperf-n', TUNNELS.filter((n) => n > 0).join(',') || '32')
  .split(',')
  .map(Number);
if (IPERF_N.some((n) => !Number.isInteger(n) || n < 1 || n > 128)) errors.push('--iperf-n: integers from 1 to 128');
/** Bytes per download. */
export const SIZE = positive('size-mib', '64') * 2 ** 20;
/** Time cap per download, in seconds. */
export const CAP = positive('cap', '15');
export const REPEAT = positive('repeat', '1');
export const GKD_MODE = list('gkd', 'cli', ['cli', 'lib'])[0] as GkdMode;
/** JSON Partial<SessionConfig> for --gkd lib. */
export const SESSION = option('session', '');
/** Extra sysctls for both namespaces after `netem.sh up` (experiments, e.g. net.ipv4.tcp_notsent_lowat=131072). */
export const SYSCTLS = option('sysctl', '').split(',').filter(Boolean);
/** New connections per path in the latency bench (idle). */
export const LAT_COUNT = positive('latency-count', '15');
export const OUT = option('out', `${ROOT}.bench-out`);
/** `--render FILE`: re-render a saved results.json. */
export const RENDER = option('render', '');
export const SEED = 1;
/** Loopback bench: bytes per download, cap in seconds, rounds. */
export const LOOP_SIZE = 4096 * 2 ** 20;
export const LOOP_CAP = 10;
export const LOOP_ROUNDS = 3;

if (SESSION && GKD_MODE !== 'lib') errors.push('--session needs --gkd lib (the CLI has no flags for transport settings)');
if (TOOLS.includes('gkd-tls') && GKD_MODE !== 'cli') errors.push('--tools gkd-tls needs --gkd cli (the library-mode probe runs plaintext tunnels)');
if (errors.length && !flag('help')) {
  console.error(`bench: ${errors.join('\nbench: ')}`);
  process.exit(2);
}
