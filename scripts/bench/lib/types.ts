/** The records a benchmark run produces (also the shape of the JSON it writes). */
import type { GkdDiag } from './gkd.js';

/**
 * `gkd`: plaintext tunnels (--plaintext on both ends); `gkd-tls`: the CLI's default, TLS with a pinned
 * self-signed certificate; `gkd-bbr`: plaintext tunnels with `--congestion bbr` on both ends, whatever
 * the scenario's congestion control (in a BBR scenario it is the `gkd` row again, so it is skipped there).
 */
export type ToolId = 'direct' | 'iperf3' | 'gkd' | 'gkd-tls' | 'gkd-bbr' | 'microsocks' | 'ss' | 'kcptun' | 'relay';

/** Whether `t` is one of gkd's rows (compared with `iperf3 -P N` at its tunnel count). */
export function isGkd(t: ToolId): boolean {
  return t === 'gkd' || t === 'gkd-tls' || t === 'gkd-bbr';
}

/** One WAN scenario: a netem config and a congestion control. */
export interface Scenario {
  id: string;
  title: string;
  cc: 'cubic' | 'bbr';
  config: string[];
}

/** One measured download. */
export interface Row {
  scenario: string;
  tool: ToolId;
  /** Flows (iperf3 -P) or tunnels (gkd, gkd-tls, gkd-bbr); 1 otherwise. */
  n: number;
  round: number;
  /** Throughput, Mbit/s (NaN on failure). */
  mbps: number;
  bytes: number;
  /** Seconds from the first body byte to the end. */
  seconds: number;
  /** Stopped by the time cap before the whole file arrived. */
  capped: boolean;
  /** Time to first byte of the response, ms (curl downloads only). */
  ttfbMs?: number;
  /** TCP retransmissions (iperf3 only). */
  retransmits?: number;
  error?: string;
  /**
   * CPU over the download, in % of one core, from /proc/<pid>/stat: the emulator (fwd), the gkd or peer
   * client and server processes. machine = % of all cores busy from /proc/stat; in the firecracker VM we
   * measured on it misses the forwarder's SCHED_FIFO time, so the report does not show it.
   */
  cpu: { machine: number; fwd?: number; client?: number; server?: number };
  /** Forwarder counters over the download (data direction = b→a). */
  netem?: { pktsData: number; lossData: number; lossAck: number; queueDrops: number; flowDrops: number; poolDrops: number; lateMaxMs: number };
  gkd?: GkdDiag;
  tunnelsUp?: number;
  /** 1-minute load average when it started. */
  load1: number;
  at: string;
}

/** Time to first byte of one new connection. */
export interface LatencyRow {
  tool: ToolId;
  /** Measured while a bulk download ran through the same path (its tunnels / bottleneck busy). */
  loaded: boolean;
  round: number;
  ttfbMs: number;
  error?: string;
}

export interface RunInfo {
  date: string;
  startedAt: string;
  finishedAt: string;
  durationS: number;
  host: { cores: number; cpu: string; kernel: string; node: string; memGiB: number };
  /** HEAD, and the packages whose sources changed after their dist was built (gkd runs from dist). */
  git: { commit: string; staleSources?: string[] };
  loadBefore: number[];
  loadAfter: number[];
  /** Machine CPU busy % in the 5 s before the run (other users of the machine). */
  busyBefore: number;
  params: {
    sizeMiB: number;
    capS: number;
    repeat: number;
    tunnels: number[];
    gkd: string;
    session?: string;
    sysctls?: string[];
    tools: string[];
    seed: number;
  };
  command: string;
  skipped: string[];
  versions: Record<string, string>;
}

export interface Results {
  info: RunInfo;
  scenarios: Scenario[];
  rows: Row[];
  latency?: { scenario: string; tunnels: number; gkdRttMs: number | null; rows: LatencyRow[] };
  loopback?: { sizeMiB: number; capS: number; rows: Row[] };
  /** Two gkd clients on --tunnels auto downloading at once over one bottleneck (scenario `scenario`). */
  fair?: { scenario: string; rounds: { round: number; mbps: [number, number]; counts: [number, number] }[] };
}
