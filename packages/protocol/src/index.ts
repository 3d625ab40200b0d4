export * from './frame.js';
export * from './address.js';
export * from './encode.js';
export * from './decode.js';
export * from './reorder.js';
export * from './reason.js';
export * from './errors.js';
export * from './handshake.js';
