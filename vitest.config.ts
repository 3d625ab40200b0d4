import { defineConfig } from 'vitest/config';
import { gkdAliases } from './vitest.shared.js';

export default defineConfig({
  resolve: { alias: gkdAliases },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
  },
});
