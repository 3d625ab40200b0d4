// The tests' and scripts' shared support (see README.md). Nothing under packages/*/src imports it.
export * from './wire-peer.js';
export * from './stack.js';
export { firstClient, type ProcessStack, type ProcessStackOptions } from './reliability/stack.js';
export * from './until.js';
export * from './prng.js';
export * from './data.js';
export * from './relay.js';
export * from './web.js';
export * from './cli.js';
export { runHostile, type HostileOptions, type HostileReport } from './reliability/hostile.js';
export { DEFAULT_CAPS, summary, violations, type RssCaps } from './reliability/hostile-check.js';
export { echoScenario, idleScenario, peersStack, stallScenario, vanishScenario } from './reliability/scenarios.js';
export * from './path-relay.js';
export * from './echo-pump.js';
export * from './tmp.js';
