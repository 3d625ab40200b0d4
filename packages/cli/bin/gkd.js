#!/usr/bin/env node
// The gkd command. Runs the compiled CLI (built by `pnpm install` through the root `prepare` script,
// or by `pnpm build`).
import { main } from '../dist/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err) => {
    console.error(`gkd: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
