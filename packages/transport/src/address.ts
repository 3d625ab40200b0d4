import { ConfigError } from '@gkd/protocol';

/** A host and TCP port to listen on or connect to. */
export interface HostPort {
  host: string;
  port: number;
}

/** Parse `host:port`, `[v6]:port` or `:port` (host defaults to `defaultHost`). Throws ConfigError naming `name`. */
export function parseHostPort(text: string, defaultHost = '127.0.0.1', name = 'address'): HostPort {
  const s = text.trim();
  let host: string;
  let portText: string;
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s);
  if (m) {
    host = m[1]!;
    portText = m[2]!;
  } else {
    const i = s.lastIndexOf(':');
    if (i < 0) throw new ConfigError(`${name} must be HOST:PORT, got "${text}"`);
    host = s.slice(0, i) || defaultHost;
    portText = s.slice(i + 1);
    if (host.includes(':')) throw new ConfigError(`${name}: put IPv6 addresses in brackets, e.g. [::1]:9990, got "${text}"`);
  }
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new ConfigError(`${name}: invalid port in "${text}"`);
  return { host, port };
}
