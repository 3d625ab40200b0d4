import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { UsageError } from './args.js';

/**
 * The server's state directory: what `gkd server` makes on first start and reuses after (its
 * self-signed certificate and private key, and the key when none was given). Owner-only: the
 * directory is 0700 and every file 0600, since the key and the TLS key are secrets.
 */
export const STATE_FILES = {
  /** PEM certificate made on first start (self-signed, EC P-256). */
  cert: 'tls-cert.pem',
  /** PEM private key of `cert`. */
  certKey: 'tls-key.pem',
  /** The pre-shared key (base64url), when the server was given none. */
  key: 'key',
} as const;

/**
 * The default state directory: `$XDG_STATE_HOME/gkd`, else `~/.local/state/gkd` (the XDG base
 * directory default), so the certificate survives upgrades and reinstalls of the package.
 */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  const xdg = env.XDG_STATE_HOME;
  // The XDG spec says a relative path is invalid and must be ignored.
  if (xdg?.startsWith('/')) return join(xdg, 'gkd');
  return join(home, '.local', 'state', 'gkd');
}

/** Create `dir` (and its parents) if needed, owner-only. Throws UsageError naming `label`. */
export function ensureStateDir(label: string, dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = statSync(dir);
    if (!st.isDirectory()) throw new Error('not a directory');
    // mkdir's mode is masked by the umask, and a directory made by hand may be wider.
    if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
  } catch (err) {
    throw new UsageError(`${label} ${dir}: cannot use it as the state directory (${(err as Error).message})`);
  }
}

/** The contents of a state file, or undefined when it does not exist. Throws UsageError otherwise. */
export function readStateFile(label: string, path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UsageError(`${label} ${path}: cannot read it (${(err as Error).message})`);
  }
}

/** True when a state file can be read by the group or others (it should be 0600). */
export function tooOpen(path: string): boolean {
  try {
    return (statSync(path).mode & 0o077) !== 0;
  } catch {
    return false;
  }
}

/**
 * Write a secret file, 0600, atomically: a temporary file in the same directory renamed over the
 * target, so a crash never leaves half a key that a restart would then refuse.
 */
export function writeSecretFile(label: string, path: string, data: string | Buffer): void {
  const tmp = join(dirname(path), `.${process.pid}.${Date.now()}.tmp`);
  try {
    writeFileSync(tmp, data, { mode: 0o600, flag: 'wx' });
    chmodSync(tmp, 0o600); // the umask may have narrowed it further; never wider
    renameSync(tmp, path);
  } catch (err) {
    throw new UsageError(`${label} ${path}: cannot write it (${(err as Error).message})`);
  }
}
