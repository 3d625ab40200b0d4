export * from './policy.js';
export * from './dial.js';
export * from './config.js';
