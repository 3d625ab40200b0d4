// Writes build-info.json (package root) during `pnpm build`: the commit the build was made from, so
// an installed `gkd --version` can name it (a tarball carries no .git). Never fails the build: outside
// a git checkout the commit is "unknown".
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';

function git(args) {
  return execFileSync('git', args, { cwd: new URL('..', import.meta.url), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
}

let commit = 'unknown';
let dirty = false;
try {
  commit = git(['rev-parse', '--short=12', 'HEAD']);
  // Tracked files changed since that commit: the build is not exactly that commit.
  dirty = git(['status', '--porcelain', '--untracked-files=no']).length > 0;
} catch {
  // no git, or not a checkout
}
writeFileSync(new URL('../build-info.json', import.meta.url), `${JSON.stringify({ commit, dirty })}\n`);
