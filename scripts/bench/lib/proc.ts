/**
 * Child processes of the benchmark: started in a network namespace (`ip netns exec`, which execs the
 * command, so the pid is the command's own), their output kept for readiness checks and written to a
 * log file, stopped by pid. Every process started here is tracked so that `stopAll` (called on exit,
 * ctrl-C and errors) leaves nothing behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';

const live = new Set<Proc>();

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One long-running child (a server, a proxy, a gkd process). */
export class Proc {
  readonly name: string;
  readonly child: ChildProcess;
  private output = '';
  private readonly log: WriteStream | undefined;
  private exited = false;
  private readonly exitWaiters: (() => void)[] = [];

  constructor(name: string, ns: string | null, cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; logFile?: string } = {}) {
    this.name = name;
    const argv = ns ? ['netns', 'exec', ns, cmd, ...args] : [cmd, ...args];
    this.child = spawn(ns ? 'ip' : cmd, ns ? argv : args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.log = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
    this.log?.write(`# ${new Date().toISOString()} ${ns ? `[${ns}] ` : ''}${cmd} ${args.join(' ')}\n`);
    const take = (chunk: Buffer): void => {
      const text = chunk.toString();
      if (this.output.length < 1 << 20) this.output += text;
      if (this.log && !this.log.writableEnded) this.log.write(text);
    };
    this.child.stdout!.on('data', take);
    this.child.stderr!.on('data', take);
    this.child.on('error', (err) => take(Buffer.from(`spawn error: ${err.message}\n`)));
    this.child.on('exit', () => {
      this.exited = true;
      live.delete(this);
      for (const w of this.exitWaiters.splice(0)) w();
    });
    // 'close' comes after the last output: 'exit' can come while stdout/stderr still hold some, and a
    // write to an ended log throws (it stopped a bench run once, as kcptun shut down).
    this.child.on('close', () => this.log?.end());
    live.add(this);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return !this.exited;
  }

  /** Wait until the output matches `re`; rejects if the process exits first or after `timeoutMs`. */
  async waitFor(re: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.output);
      if (m) return m;
      if (this.exited) throw new Error(`${this.name} exited before it was ready:\n${this.output.slice(-2000)}`);
      if (Date.now() > end) throw new Error(`${this.name} not ready after ${timeoutMs} ms:\n${this.output.slice(-2000)}`);
      await sleep(25);
    }
  }

  /** CPU time (user + system) so far, in seconds; NaN once the process is gone. */
  cpuSeconds(): number {
    return cpuSecondsOf(this.pid);
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((r) => this.exitWaiters.push(r));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(timer);
  }
}

/** Kill every process this module started (synchronously: usable from an 'exit' handler). */
export function killAll(): void {
  for (const p of live) {
    try {
      p.child.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
}

/** Stop every live process politely. */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop()));
}

const CLK_TCK = 100; // Linux USER_HZ

/** CPU time (user + system) of a pid, in seconds; NaN if it is gone. */
export function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14 and 15 of stat(5)
  } catch {
    return NaN;
  }
}

/** Machine-wide CPU counters from /proc/stat: busy and total jiffies (all cores). */
export function cpuTotals(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** The 1-minute load average. */
export function load1(): number {
  return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
}

/** Run a command to completion (in `ns` if given); resolves with its exit code and output. Killed after `timeoutMs`. */
export function run(ns: string | null, cmd: string, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(ns ? 'ip' : cmd, ns ? ['netns', 'exec', ns, cmd, ...args] : args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: stderr + err.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
