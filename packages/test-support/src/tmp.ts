import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A fresh directory for a test's files (`prefix-XXXXXX`). Under a vitest run it sits in the run's own
 * directory (GKD_TEST_TMP, made and removed by test/global-setup.ts), so nothing outlives the run even
 * when a test process is killed; elsewhere in the system's temp directory.
 */
export function testTmpDir(prefix: string): string {
  return mkdtempSync(join(process.env.GKD_TEST_TMP ?? tmpdir(), `${prefix}-`));
}
