// One temporary directory per vitest run: test files make theirs inside it (testTmpDir in
// @gkd/test-support), and it goes when the run ends. A test process that is killed (vitest ends its
// forks) cannot leave directories behind in /tmp.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const root = mkdtempSync(join(tmpdir(), 'gkd-test-'));
  process.env.GKD_TEST_TMP = root;
  return () => rmSync(root, { recursive: true, force: true });
}
