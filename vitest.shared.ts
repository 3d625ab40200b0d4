import { fileURLToPath } from 'node:url';

/** Resolve every @gkd/* package to its TypeScript source, so tests need no build step. */
export const gkdAliases: Record<string, string> = Object.fromEntries(
  ['protocol', 'transport', 'socks-client', 'server', 'cli', 'test-support'].map((name) => [
    `@gkd/${name}`,
    fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url)),
  ]),
);
