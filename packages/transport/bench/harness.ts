/**
 * Shared plumbing of the transport benchmarks: start the processes of a chain (`worker.ts`), let the
 * stream warm up, measure a window at the sink, and collect each process's CPU time over that window.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import { fileURLToPath } from 'node:url';

const WORKER = fileURLToPath(new URL('./worker.ts', import.meta.url));

/**
 * How the benchmark scripts are run: TypeScript sources through tsx, like `pnpm bench`, plus any
 * `--node-args="..."` (e.g. `--max-semi-space-size=32`, `--trace-gc`) for every process of a chain.
 */
const EXEC_ARGV = ['--conditions=@gkd/source', '--import', 'tsx', ...option('node-args', '').split(' ').filter(Boolean)];

interface Mark {
  cpu: NodeJS.CpuUsage;
  /** Run-queue wait of the main thread so far, in ns (0 where unknown). */
  wait: number;
  at: number;
  bytes: number;
  stats: unknown;
}

/** One forked process of a chain. */
export class Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly ready: Promise<number | undefined>;
  private marks: ((m: Mark) => void)[] = [];

  constructor(name: string, args: string[], profileDir?: string) {
    this.name = name;
    // One directory per role: tsx's loader runs in a worker thread that writes a profile of its own.
    const execArgv = profileDir ? [...EXEC_ARGV, '--cpu-prof', `--cpu-prof-dir=${profileDir}/${name}`] : EXEC_ARGV;
    this.child = fork(WORKER, args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.ready = new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`${name} exited with ${code} before it was ready`));
      this.child.once('exit', onExit);
      this.child.on('message', (m: { ready?: boolean; port?: number; mark?: boolean } & Mark) => {
        if (m.ready) {
          this.child.off('exit', onExit);
          resolve(m.port);
        } else if (m.mark) this.marks.shift()?.(m);
      });
    });
  }

  /** This process's CPU time, clock and byte count right now. */
  mark(): Promise<Mark> {
    return new Promise((resolve) => {
      this.marks.push(resolve);
      this.child.send({ cmd: 'mark' });
    });
  }

  /** Ask the process to exit (so a CPU profile gets written); kill it if it does not within 3 s. */
  stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
      this.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      if (this.child.connected) this.child.send({ cmd: 'exit' });
      else this.child.kill();
    });
  }
}

/** Start a worker role and wait until it is ready; resolves to its listening port (if any). */
export async function start(procs: Proc[], name: string, args: string[], profileDir?: string): Promise<number> {
  const p = new Proc(name, args, profileDir);
  procs.push(p);
  return (await p.ready) ?? 0;
}

/** Result of one measured window. */
export interface Measurement {
  /** Throughput at the sink, in MB/s (10^6 bytes per second). */
  mbps: number;
  /** CPU time per process over the window, as a share of one core (1 = 100 %). */
  cpu: Record<string, number>;
  /** Time each process was runnable but waiting for a CPU, as a share of the window: high means the machine was the limit. */
  waiting: Record<string, number>;
  /** The `stats` each process reported at the start and at the end of the window. */
  statsBefore: Record<string, unknown>;
  stats: Record<string, unknown>;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Let the chain run `warmupMs`, then measure `windowMs` of it at the sink named 'sink'. */
export async function measure(procs: Proc[], warmupMs: number, windowMs: number): Promise<Measurement> {
  await sleep(warmupMs);
  const first = await Promise.all(procs.map((p) => p.mark()));
  await sleep(windowMs);
  const last = await Promise.all(procs.map((p) => p.mark()));
  const i = procs.findIndex((p) => p.name === 'sink');
  const seconds = (last[i]!.at - first[i]!.at) / 1000;
  const cpu: Record<string, number> = {};
  const waiting: Record<string, number> = {};
  const stats: Record<string, unknown> = {};
  const statsBefore: Record<string, unknown> = {};
  procs.forEach((p, k) => {
    const dt = (last[k]!.at - first[k]!.at) * 1000; // µs
    cpu[p.name] = (last[k]!.cpu.user - first[k]!.cpu.user + last[k]!.cpu.system - first[k]!.cpu.system) / dt;
    waiting[p.name] = (last[k]!.wait - first[k]!.wait) / 1000 / dt;
    stats[p.name] = last[k]!.stats;
    statsBefore[p.name] = first[k]!.stats;
  });
  return { mbps: (last[i]!.bytes - first[i]!.bytes) / seconds / 1e6, cpu, waiting, statsBefore, stats };
}

/** Stop every process of a chain. */
export async function stopAll(procs: Proc[]): Promise<void> {
  await Promise.all(procs.map((p) => p.stop()));
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** `--name=value` options of a bench script, with defaults. */
export function option(name: string, fallback: string): string {
  const prefix = `--${name}=`;
  const arg = process.argv.slice(2).find((a) => a.startsWith(prefix));
  return arg ? arg.slice(prefix.length) : (process.env[`GKD_BENCH_${name.toUpperCase().replace(/-/g, '_')}`] ?? fallback);
}

/** One line describing the machine, for the README table. */
export function machine(): string {
  const c = cpus();
  return `${availableParallelism()} cores (${c[0]?.model.trim() ?? 'unknown CPU'}), Node ${process.version}, ${process.platform} ${process.arch}`;
}

export const pct = (x: number): string => `${Math.round(x * 100)} %`;
