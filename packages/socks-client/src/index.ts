export { SocksServer } from './socks-server.js';
export type { SocksState } from './socks-state.js';
export { HttpProxyServer } from './http-proxy.js';
export { openWithin, OpenTimeoutError, type Opener } from './opener.js';
export { classifyOpenError, FAILURE_KINDS, Rep, type FailureKind, type OpenFailure } from './failure.js';
export type { ProxyCounters, ProxyEvent, ProxyKind } from './events.js';
export {
  defaultHttpProxyConfig,
  defaultSocksServerConfig,
  resolveHttpProxyConfig,
  resolveSocksServerConfig,
  type HttpProxyConfig,
  type HttpProxyOptions,
  type SocksAuth,
  type SocksServerConfig,
  type SocksServerOptions,
} from './config.js';
export type { Associator, DatagramAssociation } from './udp-association.js';
export { clientDatagram, parseClientDatagram } from './udp-relay.js';
