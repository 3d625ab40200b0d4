export { Client, type ClientOptions, type ClientTlsOptions } from './client.js';
export { Server, type ServerOptions, type PeerInfo } from './server.js';
export { Connection, type StreamState, type StreamStats } from './stream.js';
export { Session, type OpenRequest, type SessionStats } from './session.js';
export { Tunnel, type TunnelState, type TunnelStats } from './tunnel.js';
export { defaultSessionConfig, resolveSessionConfig, parseKey, type SessionConfig, type KeyInput } from './config.js';
export { leastQueued, roundRobin, type TunnelPicker } from './scheduler.js';
export { parseHostPort, type HostPort } from './address.js';
export { duplexPair } from './memory.js';
