import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sha256 } from './data.js';
import { testTmpDir } from './tmp.js';

/** The repository root and the real binary the tests drive. */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const GKD_BIN = join(ROOT, 'packages/cli/bin/gkd.js');

/** The packages the CLI's dist imports at run time. */
const BUILT = ['protocol', 'transport', 'server', 'socks-client', 'cli'];

function newestMtime(dir: string, ext: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestMtime(p, ext));
    else if (e.name.endsWith(ext)) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

function oldestMtime(dir: string, ext: string): number {
  let oldest = Infinity;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) oldest = Math.min(oldest, oldestMtime(p, ext));
    else if (e.name.endsWith(ext)) oldest = Math.min(oldest, statSync(p).mtimeMs);
  }
  return oldest;
}

/** True when some package's dist is missing or older than its src. */
function stale(): boolean {
  return BUILT.some((name) => {
    const pkg = join(ROOT, 'packages', name);
    try {
      return newestMtime(join(pkg, 'src'), '.ts') > oldestMtime(join(pkg, 'dist'), '.js');
    } catch {
      return true; // no dist yet
    }
  });
}

/**
 * Build the CLI and the packages it imports (`pnpm --filter @gkd/cli... build`, ~20 s) unless their
 * dist is newer than their src. A lock directory keeps parallel test files from building at once.
 */
export async function ensureBuilt(): Promise<void> {
  const lock = join(ROOT, 'packages/cli/node_modules/.gkd-test-build.lock');
  const started = Date.now();
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      try {
        if (Date.now() - statSync(lock).mtimeMs > 300_000) rmSync(lock, { recursive: true, force: true }); // left by a killed run
      } catch {
        /* gone meanwhile */
      }
      if (Date.now() - started > 300_000) throw new Error(`build lock ${lock} held for 5 minutes`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    if (!stale()) return;
    await new Promise<void>((resolve, reject) => {
      execFile('pnpm', ['--filter', '@gkd/cli...', 'build'], { cwd: ROOT, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`build failed:\n${stdout}\n${stderr}`));
        else resolve();
      });
    });
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/**
 * The state directory children use unless a test gives its own: one per test file, so a server
 * never writes into the real ~/.local/state/gkd and test files do not share certificates.
 */
export const TEST_STATE_DIR = testTmpDir('gkd-state');
process.once('exit', () => rmSync(TEST_STATE_DIR, { recursive: true, force: true }));

/** The environment for a child: ours without any GKD_* variable, plus GKD_STATE_DIR and `extra`. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GKD_')) env[k] = v;
  return { ...env, NO_COLOR: '1', GKD_STATE_DIR: TEST_STATE_DIR, ...extra };
}

/** A running `gkd` child process whose output is collected. */
export class GkdProcess {
  stdout = '';
  stderr = '';
  readonly child: ChildProcess;
  /** Resolves with the exit code (or the signal's name) when the process ends. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly listeners = new Set<() => void>();

  /** `opts.bin`: another gkd entry script than the workspace's (an installed one). */
  constructor(args: string[], opts: { env?: Record<string, string>; cwd?: string; bin?: string } = {}) {
    this.child = spawn(process.execPath, [opts.bin ?? GKD_BIN, ...args], { cwd: opts.cwd ?? ROOT, env: childEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
      this.notify();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.stderr += d;
      this.notify();
    });
    this.exited = once(this.child, 'exit').then(([code, signal]) => {
      this.notify();
      return { code: code as number | null, signal: signal as NodeJS.Signals | null };
    });
    running.add(this);
    void this.exited.then(() => running.delete(this));
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  /** Wait until `pattern` matches the collected stdout or stderr (count: until it matched that many times). */
  waitFor(stream: 'stdout' | 'stderr', pattern: RegExp, opts: { timeoutMs?: number; count?: number } = {}): Promise<RegExpMatchArray> {
    const { timeoutMs = 20_000, count = 1 } = opts;
    const global = new RegExp(pattern.source, pattern.flags.includes('g') ? pattern.flags : `${pattern.flags}g`);
    return new Promise((resolve, reject) => {
      let exited = false;
      const check = (): void => {
        const matches = [...this[stream].matchAll(global)];
        if (matches.length >= count) {
          finish();
          resolve(matches[count - 1]!);
        } else if (exited) {
          finish();
          reject(new Error(`gkd exited before ${stream} matched ${pattern}\n--- stdout:\n${this.stdout}\n--- stderr:\n${this.stderr}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(
          new Error(`timed out after ${timeoutMs} ms waiting for ${stream} to match ${pattern}\n--- stdout:\n${this.stdout}\n--- stderr:\n${this.stderr}`),
        );
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      void this.exited.then(() => {
        exited = true;
        check();
      });
      this.listeners.add(check);
      check();
    });
  }

  /** Wait for the ready line; returns the proxies' ports and the tunnel count it reports. */
  async ready(): Promise<{ socksPort: number; httpPort: number | undefined; tunnels: number; server: string }> {
    const m = await this.waitFor(
      'stdout',
      /^gkd: SOCKS5 proxy on 127\.0\.0\.1:(\d+)(?:, HTTP proxy on 127\.0\.0\.1:(\d+))? \(server (\S+), (\d+) tunnels? up\)$/m,
    );
    return { socksPort: Number(m[1]), httpPort: m[2] ? Number(m[2]) : undefined, server: m[3]!, tunnels: Number(m[4]) };
  }

  /** Send a signal (default SIGTERM). */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

const running = new Set<GkdProcess>();

/** Kill every gkd child still running (afterEach / afterAll). */
export async function killAll(): Promise<void> {
  const all = [...running];
  for (const p of all) p.kill('SIGKILL');
  await Promise.all(all.map((p) => p.exited));
}

/** Start `gkd …args`. */
export function gkd(args: string[], opts: { env?: Record<string, string>; cwd?: string; bin?: string } = {}): GkdProcess {
  return new GkdProcess(args, opts);
}

/** Run a short `gkd` command to its end. */
export async function runGkd(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; bin?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = gkd(args, opts);
  const { code } = await p.exited;
  return { code, stdout: p.stdout, stderr: p.stderr };
}

/** A loopback HTTP origin: `/blob` (random bytes), `/slow` (headers now, body ends when `release()` is called). */
export interface Origin {
  port: number;
  blob: Buffer;
  blobSha: string;
  /** End every pending /slow response. */
  release(): void;
  close(): Promise<void>;
}

export async function startOrigin(blobBytes = 4 * 1024 * 1024): Promise<Origin> {
  const blob = randomBytes(blobBytes);
  const pending = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    if (req.url === '/blob') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': blob.length });
      res.end(blob);
    } else if (req.url === '/slow') {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('started\n');
      pending.add(res);
    } else {
      res.writeHead(404).end('not found');
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    blob,
    blobSha: sha256(blob),
    release: () => {
      for (const res of pending) res.end('done\n');
      pending.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Lines of `text` that are not empty. */
export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.length > 0);
}
