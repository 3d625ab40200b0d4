#!/usr/bin/env node
// The gkd command. Runs the compiled CLI (built by `pnpm install` through the root `prepare` script,
// or by `pnpm build`).
import { main } from '../dist/main.js';

/** Exit once main() is done, even if a stray handle would keep Node alive (logs are written synchronously). */
function exitSoon(code) {
  process.exitCode = code;
  setTimeout(() => process.exit(code), 1000).unref();
}

main(process.argv.slice(2)).then(
  (code) => exitSoon(typeof code === 'number' ? code : 0),
  (err) => {
    console.error(`gkd: ${err instanceof Error ? err.message : String(err)}`);
    exitSoon(1);
  },
);
