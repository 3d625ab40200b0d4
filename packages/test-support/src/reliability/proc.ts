/**
 * Parent side of `child.ts`: start a role in its own process (TypeScript through tsx, the packages'
 * sources through the `@gkd/source` condition), call it over IPC, watch its memory from
 * /proc/<pid>/status, and notice when it dies.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ClientRoleConfig, DestinationKind, DestinationRoleConfig, ServerRoleConfig } from './child.js';

const CHILD = fileURLToPath(new URL(import.meta.url.endsWith('.ts') ? './child.ts' : './child.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const EXEC_ARGV = ['--conditions=@gkd/source', '--import', 'tsx'];

/** Resident memory of a process, in bytes: now, and the peak since it started (VmHWM). */
export interface Rss {
  rss: number;
  peak: number;
}

/** Read VmRSS and VmHWM of `pid` (Linux). Null where /proc is not available or the process is gone. */
export function readRss(pid: number): Rss | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    const rss = kb('VmRSS');
    const peak = kb('VmHWM');
    return Number.isFinite(rss) && Number.isFinite(peak) ? { rss, peak } : null;
  } catch {
    return null;
  }
}

/** A running role. */
export class Child<Ready = unknown> {
  readonly name: string;
  readonly proc: ChildProcess;
  ready!: Ready;
  /** Resolves with the exit code and signal whenever the process exits. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stderrText = '';
  private stdoutText = '';
  private nextId = 1;
  private readonly calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private expectedExit = false;
  private sampler: NodeJS.Timeout | undefined;
  /** Highest RSS seen by `sample()` (bytes); VmHWM is the kernel's own peak and is preferred. */
  maxSampledRss = 0;

  /**
   * Diagnosis: GKD_CHILD_NODE_OPTIONS adds node flags to every child (e.g. `--expose-gc`, for the
   * `gcMemory` command), and GKD_CHILD_EVENTS=1 makes children print failed opens and proxy client
   * errors on stderr (a run then fails its "stderr is empty" checks, on purpose: read them).
   */
  constructor(name: string, role: string, config: unknown, env: NodeJS.ProcessEnv = {}) {
    const extra = (process.env.GKD_CHILD_NODE_OPTIONS ?? '').split(' ').filter(Boolean);
    this.name = name;
    this.proc = fork(CHILD, [role, JSON.stringify(config)], {
      cwd: ROOT,
      execArgv: [...EXEC_ARGV, ...extra],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, ...env },
      serialization: 'advanced',
    });
    this.proc.stderr!.on('data', (d: Buffer) => {
      if (this.stderrText.length < 256 * 1024) this.stderrText += d.toString();
    });
    this.proc.stdout!.on('data', (d: Buffer) => {
      if (this.stdoutText.length < 256 * 1024) this.stdoutText += d.toString();
    });
    this.exited = new Promise((resolve) =>
      this.proc.once('exit', (code, signal) => {
        clearInterval(this.sampler);
        const err = new Error(`${this.name} exited (code ${code}, signal ${signal})${this.stderrText ? `; stderr:\n${this.stderrText}` : ''}`);
        for (const c of this.calls.values()) c.reject(err);
        this.calls.clear();
        resolve({ code, signal });
      }),
    );
    this.proc.on('message', (m: { id?: number; result?: unknown; error?: string }) => {
      if (m.id === undefined) return;
      const c = this.calls.get(m.id);
      if (!c) return;
      this.calls.delete(m.id);
      if (m.error !== undefined) c.reject(new Error(`${this.name}: ${m.error}`));
      else c.resolve(m.result);
    });
  }

  /** Wait for the role's `ready` message (or its death). */
  async start(timeoutMs = 60_000): Promise<this> {
    const ready = new Promise<Ready>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name} not ready within ${timeoutMs} ms; stderr:\n${this.stderrText}`)), timeoutMs);
      const onMessage = (m: { ready?: Ready }) => {
        if (m.ready === undefined) return;
        clearTimeout(timer);
        this.proc.off('message', onMessage);
        resolve(m.ready);
      };
      this.proc.on('message', onMessage);
      void this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (code ${code}, signal ${signal}) before it was ready; stderr:\n${this.stderrText}`));
      });
    });
    this.ready = await ready;
    return this;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  /** True while the process runs. */
  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get stderr(): string {
    return this.stderrText;
  }

  get stdout(): string {
    return this.stdoutText;
  }

  /** Call a command of the role; rejects after `timeoutMs` or if the process dies. */
  // biome-ignore lint/suspicious/noExplicitAny: IPC answers are untyped data; callers read the fields they asked for.
  call<T = any>(cmd: string, args?: unknown, timeoutMs = 30_000): Promise<T> {
    if (!this.alive || !this.proc.connected) return Promise.reject(new Error(`${this.name} is not running; stderr:\n${this.stderrText}`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(id);
        reject(new Error(`${this.name}: no answer to ${cmd} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.calls.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.proc.send({ id, cmd, args });
    });
  }

  /** RSS now and the peak (VmHWM), falling back to the child's own report off Linux. */
  async rss(): Promise<Rss> {
    const r = readRss(this.pid);
    if (r) return r;
    const m = await this.call<NodeJS.MemoryUsage>('memory');
    this.maxSampledRss = Math.max(this.maxSampledRss, m.rss);
    return { rss: m.rss, peak: this.maxSampledRss };
  }

  /** Sample RSS every `everyMs` (keeps `maxSampledRss`), so a peak is seen even where VmHWM is missing. */
  sample(everyMs = 250): void {
    clearInterval(this.sampler);
    this.sampler = setInterval(() => {
      const r = readRss(this.pid);
      if (r) this.maxSampledRss = Math.max(this.maxSampledRss, r.rss);
    }, everyMs);
    this.sampler.unref();
  }

  /** Stop the process (it was expected to live until now); resolves with how it exited. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.expectedExit = true;
    clearInterval(this.sampler);
    if (this.alive) {
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
      if (this.proc.connected) this.proc.send({ id: 0, cmd: 'exit' });
      else this.proc.kill();
      const r = await this.exited;
      clearTimeout(timer);
      return r;
    }
    return this.exited;
  }

  /** True if the process died before `stop()` was called. */
  get crashed(): boolean {
    return !this.alive && !this.expectedExit;
  }
}

export type ServerChild = Child<{ port: number }>;
export type ClientChild = Child<{ socksPort: number; httpPort: number }>;
export type DestinationChild = Child<{ ports: Record<DestinationKind, number> }>;

export function startServer(config: ServerRoleConfig, name = 'server'): Promise<ServerChild> {
  return new Child<{ port: number }>(name, 'server', config).start();
}

export function startClient(config: ClientRoleConfig, name = 'client'): Promise<ClientChild> {
  return new Child<{ socksPort: number; httpPort: number }>(name, 'client', config).start();
}

export function startDestination(config: DestinationRoleConfig = {}, name = 'destination'): Promise<DestinationChild> {
  return new Child<{ ports: Record<DestinationKind, number> }>(name, 'destination', config).start();
}

/**
 * Every IPv4 address outside 127.0.0.0/8, and every IPv6 address, as deny rules: with these a server
 * can dial nothing but the loopback ports its allow rules name, whatever a fuzzer puts in an OPEN.
 * (Deny rules beat allow rules, so 127/8 itself is left to the default deny and the allow rules.)
 */
export const DENY_ALL_BUT_LOOPBACK: readonly string[] = [
  '0.0.0.0/2',
  '64.0.0.0/3',
  '96.0.0.0/4',
  '112.0.0.0/5',
  '120.0.0.0/6',
  '124.0.0.0/7',
  '126.0.0.0/8',
  '128.0.0.0/1',
  '::/0',
];

/** The open-files limits of this process: soft and hard. Null off Linux. */
export function fileLimits(): { soft: number; hard: number } | null {
  try {
    const line = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!line) return null;
    const n = (s: string) => (s === 'unlimited' ? Infinity : Number(s));
    return { soft: n(line[1]!), hard: n(line[2]!) };
  } catch {
    return null;
  }
}

/**
 * Make sure this process (and the children it starts afterwards, which inherit it) may open `want`
 * files. Node raises its own soft limit to the hard limit at start-up; when the hard limit is lower
 * than `want` and we are root, raise both with prlimit. Returns the limit in force and, when it is
 * still below `want`, why.
 */
export function ensureFileLimit(want: number): { limit: number; note?: string } {
  const l = fileLimits();
  if (!l) return { limit: want, note: 'cannot read /proc/self/limits; assuming the limit suffices' };
  if (l.soft >= want) return { limit: l.soft };
  if (process.getuid?.() === 0) {
    try {
      execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${want}:${Math.max(want, l.hard)}`]);
      const after = fileLimits();
      if (after && after.soft >= want) return { limit: after.soft };
    } catch (err) {
      return { limit: l.soft, note: `prlimit failed: ${(err as Error).message}` };
    }
  }
  return {
    limit: l.soft,
    note: `open-files limit is ${l.soft} (hard ${l.hard}); raise it with \`ulimit -n ${want}\` (or run as root, which raises it with prlimit)`,
  };
}
