export { Client, type ClientOptions, type ClientState, type ClientTlsOptions, type TunnelsEvent } from './client.js';
export { TunnelCountController, defaultAdaptiveConfig, type AdaptiveConfig, type CountDecision, type CountSample } from './adaptive.js';
export { PathCounts, defaultPathStart, type PathCountDecision, type PathCountSpec, type PathSample } from './path-counts.js';
export { Server, type ServerOptions, type PeerInfo, type PoolStats } from './server.js';
export { Connection, type StreamState, type StreamStats } from './stream.js';
export { Session, type OpenRequest, type SessionState, type SessionStats } from './session.js';
export { Tunnel, type TunnelKernelStats, type TunnelState, type TunnelStats } from './tunnel.js';
export { defaultSessionConfig, resolveSessionConfig, parseKey, type SchedulerName, type SessionConfig, type KeyInput } from './config.js';
export { earliestArrival, leastQueued, roundRobin, type Pickable, type TunnelPicker } from './scheduler.js';
export { kernelAccess, type TcpInfo } from './kernel.js';
export { arrivalMs, type PathMode, type PathView } from './path.js';
export { parseHostPort, type HostPort } from './address.js';
export { duplexPair } from './memory.js';
export { Association, DatagramChannel, type DatagramStats } from './datagram.js';
export {
  PathPlan,
  parseVia,
  MAX_TOTAL_TUNNELS,
  DEFAULT_PATH_TUNNELS,
  type DialTarget,
  type PathBinding,
  type PathInfo,
  type PathOptions,
} from './multipath.js';
export { ClosedBeforeChallengeError } from './handshake.js';
