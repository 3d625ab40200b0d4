export * from './policy.js';
export * from './dial.js';
export * from './config.js';
export * from './gkd-server.js';
export * from './splice.js';
export * from './udp-relay.js';
