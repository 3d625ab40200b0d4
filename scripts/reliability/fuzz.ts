/**
 * `pnpm fuzz`: the hostile-input scenario of test/hostile.test.ts, long: every attacker runs for the
 * whole time (default 10 minutes), and the run fails unless at least `--frames` authenticated frames
 * (default 10^7) were sent. `--no-soak` stops the authenticated attackers at `--frames` instead.
 * Prints progress every 5 s, then the summary; exits 1 if any property failed.
 *
 *   pnpm fuzz [-- --frames 10000000 --minutes 10 --seed 42]
 *
 * GKD_FUZZ_SEED also sets the seed; a failed run prints the seed that replays it.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_CAPS, runHostile, summary, violations } from '@gkd/test-support';

const { values } = parseArgs({
  options: {
    frames: { type: 'string', default: '10000000' },
    minutes: { type: 'string', default: '10' },
    seed: { type: 'string', default: process.env.GKD_FUZZ_SEED ?? String(Date.now() % 1_000_000) },
    workers: { type: 'string', default: '4' },
    'no-soak': { type: 'boolean', default: false },
  },
});
const frames = Number(values.frames);
const minutes = Number(values.minutes);
const seed = Number(values.seed);
const t0 = Date.now();
console.log(
  `gkd fuzz: ${minutes} min, at least ${frames.toLocaleString('en')} authenticated frames${values['no-soak'] ? ' (then stop)' : ''}, seed ${seed}; node ${process.version}`,
);
const report = await runHostile({
  frames: values['no-soak'] ? frames : Number.MAX_SAFE_INTEGER,
  durationMs: minutes * 60_000,
  seed,
  authedWorkers: Number(values.workers),
  batch: 2000,
  preAuthWorkers: 16,
  preAuthConnections: Number.MAX_SAFE_INTEGER,
  frontEndWorkers: 8,
  frontEndConnections: Number.MAX_SAFE_INTEGER,
  deafFrames: 4_000_000,
  slowloris: 32,
  legitParallel: 2,
  legitBytes: 4 * 1024 * 1024,
  log: (line) => console.log(line),
});
console.log(summary(report, DEFAULT_CAPS));
const failed = violations(report, frames, DEFAULT_CAPS);
console.log(`total ${((Date.now() - t0) / 1000).toFixed(0)} s`);
if (failed.length > 0) {
  console.log(`FAILED (replay with --seed ${seed}):\n- ${failed.join('\n- ')}`);
  process.exit(1);
}
console.log('all properties held');
