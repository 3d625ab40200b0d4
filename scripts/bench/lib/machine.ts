/** What the report says about the machine and the build: versions, load, a stale-build check. */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cpuTotals, sleep } from './proc.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** First capture of `re` in a command's output, or '?'. */
export function version(cmd: string, args: string[], re: RegExp): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  const m = re.exec(`${r.stdout}\n${r.stderr}`);
  return m ? m[1]!.trim() : '?';
}

export function dpkgVersion(pkg: string): string {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: ${Version} is dpkg-query's own format field, not JavaScript.
  const r = spawnSync('dpkg-query', ['-W', '-f=${Version}', pkg], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'not installed';
}

/** Packages whose src has a file newer than their dist (the bench runs dist, so it would not measure that edit). */
export function staleBuild(): string[] {
  const stale: string[] = [];
  for (const pkg of ['protocol', 'transport', 'server', 'socks-client', 'cli']) {
    const dist = `${ROOT}packages/${pkg}/dist/index.js`;
    if (!existsSync(dist)) continue;
    const src = spawnSync('find', [`${ROOT}packages/${pkg}/src`, '-newer', dist, '-name', '*.ts'], { encoding: 'utf8' }).stdout.trim();
    if (src) stale.push(pkg);
  }
  return stale;
}

/** The short commit of HEAD. */
export function gitCommit(): string {
  return spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
}

/** Machine CPU busy % over `ms`. */
export async function busyOver(ms: number): Promise<number> {
  const a = cpuTotals();
  await sleep(ms);
  const b = cpuTotals();
  return ((b.busy - a.busy) / Math.max(1, b.total - a.total)) * 100;
}
