// `pnpm release:pack`: build every package and pack it into a tarball that npm installs on its own
// (workspace:* ranges become the packages' versions). Nothing is published.
//   node scripts/release/pack.mjs [--out DIR] [--no-build]
// DIR defaults to release/ at the repository root; its old *.tgz are removed first.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const args = process.argv.slice(2);
const outAt = args.indexOf('--out');
const out = resolve(outAt >= 0 && args[outAt + 1] ? args[outAt + 1] : join(root, 'release'));
const build = !args.includes('--no-build');

const pnpm = (argv) => execFileSync('pnpm', argv, { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });

// The build also records the commit for `gkd --version` (packages/cli/scripts/build-info.mjs).
if (build) pnpm(['-r', 'build']);
mkdirSync(out, { recursive: true });
for (const f of readdirSync(out)) if (f.endsWith('.tgz')) rmSync(join(out, f));
// @gkd/test-support is private (tests and scripts only): not a release artifact.
pnpm(['-r', '--filter', '!@gkd/test-support', 'pack', '--pack-destination', out]);

const { repository } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
if (/\.invalid\b/.test(repository?.url ?? '.invalid')) {
  process.stderr.write(`warning: the repository URL is a placeholder (${repository?.url}); set the real one in every package.json before publishing\n`);
}
const tarballs = readdirSync(out)
  .filter((f) => f.endsWith('.tgz'))
  .sort()
  .map((f) => join(out, f));
process.stdout.write(`${tarballs.join('\n')}\n\nInstall the gkd command from them with:\n  npm i -g ${tarballs.join(' ')}\n`);
