import { readFileSync } from 'node:fs';

/** What `pnpm build` recorded about the tree it compiled (scripts/build-info.mjs). */
export interface BuildInfo {
  /** Abbreviated commit hash (12 hex digits), or "unknown" when the build ran outside a git checkout. */
  commit: string;
  /** True when tracked files differed from that commit at build time. */
  dirty: boolean;
}

/** The `gkd --version` line: `gkd 0.1.0 (commit 0123456789ab)`, `… (commit …, with uncommitted changes)`. */
export function versionText(version: string, info: BuildInfo | undefined): string {
  if (!info || info.commit === 'unknown') return `gkd ${version} (commit unknown)`;
  return `gkd ${version} (commit ${info.commit}${info.dirty ? ', with uncommitted changes' : ''})`;
}

function readJson(relative: string): unknown {
  try {
    // Relative to the package root, the same from src/ and dist/; both files ship in the tarball.
    return JSON.parse(readFileSync(new URL(relative, import.meta.url), 'utf8')) as unknown;
  } catch {
    return undefined;
  }
}

/** The version line of this installation, from package.json and build-info.json. */
export function installedVersion(): string {
  const pkg = readJson('../package.json') as { version?: unknown } | undefined;
  const info = readJson('../build-info.json') as Partial<BuildInfo> | undefined;
  const valid = info && typeof info.commit === 'string' && typeof info.dirty === 'boolean' ? (info as BuildInfo) : undefined;
  return versionText(typeof pkg?.version === 'string' ? pkg.version : 'unknown', valid);
}
