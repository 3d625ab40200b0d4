import { isIP } from 'node:net';
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { ConfigError, PathDownError } from '@gkd/protocol';
import type { HostPort } from './address.js';
import { checkInt } from './config.js';

/**
 * Multipath: a client's tunnels grouped into network paths. A path is where its tunnels start (a local
 * address, an interface, or the system's route) and how many it has; every path's tunnels join the
 * same session, so one stream is striped over all of them and the scheduler (earliest arrival) gives
 * each path what it can carry. Not to be confused with path.ts, one tunnel's path *estimate*.
 *
 * Binding to an interface is done by name → address at every dial (os.networkInterfaces()), then
 * `localAddress`: Node has no SO_BINDTODEVICE before connect, and looking the address up per dial
 * makes an interface that went down fail its dials (PathDownError, backoff) and rejoin by itself when
 * it comes back, possibly with a new address (DHCP, a phone's new LTE lease).
 */

/** One network path of a client, as given. */
export interface PathOptions {
  /**
   * Where the path's tunnels start: an IPv4 or IPv6 address of this machine, or an interface name
   * (e.g. `wlan0`); undefined: wherever the system's routing table sends them.
   */
  via?: string;
  /** Tunnels on this path (1–256). Default: the client's `tunnels`. */
  tunnels?: number;
}

/** How a path binds its tunnels. */
export type PathBinding = { kind: 'route' } | { kind: 'address'; address: string; family: 4 | 6 } | { kind: 'interface'; name: string };

/** One path, resolved. Slots `first` … `first + tunnels - 1` are its tunnels. */
export interface PathInfo {
  /** Its name in stats, logs and metrics: the `via` text, or `default` for the system's route. */
  readonly name: string;
  readonly binding: PathBinding;
  /**
   * Its tunnel slots: its count, or for a path whose count adapts (`tunnels: 'auto'`) the most it may
   * have (the client's `tunnelCount`/`pathTunnelCount` say how many it keeps now).
   */
  readonly tunnels: number;
  /** True when the path named its own count (`ADDR:N`): adaptive counts leave it as given. */
  readonly fixed: boolean;
  /** Tunnel index (slot) of its first tunnel. */
  readonly first: number;
  /** The server addresses this path may dial (those of an address family it can reach), in order. */
  readonly servers: readonly HostPort[];
}

/** Where one tunnel dials: the server address and, for a bound path, the local address and family. */
export interface DialTarget {
  host: string;
  port: number;
  /** Local address to bind the socket to (undefined: the system picks). */
  localAddress?: string;
  /** Address family for the lookup of a server name, so it matches `localAddress`. */
  family?: 4 | 6;
  path: PathInfo;
}

/** Interfaces as os.networkInterfaces() returns them (injectable for tests). */
export type InterfaceTable = () => NodeJS.Dict<NetworkInterfaceInfo[]>;

/**
 * Tunnels on a path that names no count when the count is fixed but not given (4, what a single
 * fixed-count client defaults to); used by the CLI to check `--via` before the client exists.
 */
export const DEFAULT_PATH_TUNNELS = 4;

/** Most tunnels over all paths: the tunnel index is sent as a u16, but a client keeps it to 256 like `tunnels`. */
export const MAX_TOTAL_TUNNELS = 256;

/**
 * Parse a `--via` text: `ADDR`, `ADDR:N`, `[V6]`, `[V6]:N`, `IFACE` or `IFACE:N` (N tunnels on that
 * path). A bare IPv6 address takes no count (its colons are its own): write `[2001:db8::1]:4`.
 * Throws ConfigError naming `label`.
 */
export function parseVia(text: string, label = 'via'): PathOptions {
  const s = text.trim();
  let via: string;
  let count: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracketed) {
    via = bracketed[1]!;
    count = bracketed[2];
    if (isIP(via) !== 6) throw new ConfigError(`${label}: "${via}" in brackets is not an IPv6 address`);
  } else if (isIP(s) === 6) {
    via = s;
  } else {
    const i = s.lastIndexOf(':');
    via = i < 0 ? s : s.slice(0, i);
    count = i < 0 ? undefined : s.slice(i + 1);
  }
  if (count !== undefined && !/^\d+$/.test(count)) throw new ConfigError(`${label}: the tunnel count in "${text}" must be a number, as in wlan0:4`);
  if (isIP(via) === 0 && !/^[A-Za-z0-9_.@-]{1,15}$/.test(via)) {
    throw new ConfigError(`${label}: "${via}" is neither an IP address nor an interface name (e.g. 192.168.1.20, [2001:db8::2], wlan0, wlan0:4)`);
  }
  const out: PathOptions = { via };
  if (count !== undefined) {
    const n = Number(count);
    checkInt(`${label} (tunnels on ${via})`, n, 1, MAX_TOTAL_TUNNELS);
    out.tunnels = n;
  }
  return out;
}

/** The address family a server host can be reached over: 4, 6, or either (a name). */
function hostFamily(host: string): 4 | 6 | 'any' {
  const f = isIP(host);
  return f === 4 ? 4 : f === 6 ? 6 : 'any';
}

function bindingOf(via: string | undefined): PathBinding {
  if (via === undefined) return { kind: 'route' };
  const f = isIP(via);
  if (f === 4 || f === 6) return { kind: 'address', address: via, family: f };
  return { kind: 'interface', name: via };
}

/**
 * The paths of one client and which server address each tunnel slot dials. Slots are numbered path by
 * path (path 0's tunnels first). A slot keeps the server address that last worked and moves to the
 * path's next one after a failed dial, so with several `servers` (one server's IPv4 and IPv6 addresses,
 * say) a path's tunnels start spread over them and leave an address that stops answering.
 */
export class PathPlan {
  /** Every path, in slot order. */
  readonly paths: readonly PathInfo[];
  /** Tunnels over all paths. */
  readonly total: number;
  private readonly slotPath: PathInfo[] = [];
  /** Per slot: how far along its path's server list it is. */
  private readonly turn: number[] = [];

  /**
   * @param servers the server's addresses (at least one)
   * @param paths the paths; undefined or empty: one path over the system's route
   * @param defaultTunnels tunnels on a path that names no count
   * @param interfaces where interface addresses come from (os.networkInterfaces by default)
   */
  constructor(
    servers: readonly HostPort[],
    paths: readonly PathOptions[] | undefined,
    defaultTunnels: number,
    private readonly interfaces: InterfaceTable = networkInterfaces,
  ) {
    if (servers.length === 0) throw new ConfigError('servers: at least one server address is needed');
    const given = paths && paths.length > 0 ? paths : [{}];
    const names = new Set<string>();
    const out: PathInfo[] = [];
    let first = 0;
    given.forEach((p, i) => {
      const binding = bindingOf(p.via);
      const name = p.via ?? 'default';
      if (names.has(name)) throw new ConfigError(`paths[${i}]: path ${name} is given twice (give it more tunnels instead, e.g. ${name}:8)`);
      names.add(name);
      const tunnels = p.tunnels ?? defaultTunnels;
      checkInt(`paths[${i}].tunnels`, tunnels, 1, MAX_TOTAL_TUNNELS);
      const reachable =
        binding.kind === 'address' ? servers.filter((s) => hostFamily(s.host) === 'any' || hostFamily(s.host) === binding.family) : [...servers];
      if (reachable.length === 0) {
        throw new ConfigError(
          `paths[${i}]: ${name} is an IPv${binding.kind === 'address' ? binding.family : ''} address, and no server address is of that family (${servers.map((s) => s.host).join(', ')})`,
        );
      }
      const info: PathInfo = { name, binding, tunnels, fixed: p.tunnels !== undefined, first, servers: reachable };
      out.push(info);
      for (let k = 0; k < tunnels; k++) {
        this.slotPath.push(info);
        this.turn.push(k); // spread a path's tunnels over its server addresses from the start
      }
      first += tunnels;
    });
    if (first > MAX_TOTAL_TUNNELS) throw new ConfigError(`paths: ${first} tunnels in all, more than ${MAX_TOTAL_TUNNELS}`);
    this.paths = out;
    this.total = first;
  }

  /** The path of tunnel slot `slot`. */
  pathOf(slot: number): PathInfo {
    const p = this.slotPath[slot];
    if (!p) throw new RangeError(`no tunnel slot ${slot} (there are ${this.total})`);
    return p;
  }

  /** Where slot `slot` dials now. Throws PathDownError when its interface is gone or has no usable address. */
  target(slot: number): DialTarget {
    const path = this.pathOf(slot);
    const b = path.binding;
    if (b.kind === 'route') return { ...this.server(slot, path.servers), path };
    if (b.kind === 'address') return { ...this.server(slot, path.servers), localAddress: b.address, family: b.family, path };
    const addresses = usableAddresses(this.interfaces()[b.name]);
    if (addresses.length === 0) {
      const exists = this.interfaces()[b.name] !== undefined;
      throw new PathDownError(
        path.name,
        exists ? `interface ${b.name} has no usable address (is it connected?)` : `interface ${b.name} is not there (down, or unplugged)`,
      );
    }
    const families = new Set(addresses.map((a) => a.family));
    const reachable = path.servers.filter((s) => {
      const f = hostFamily(s.host);
      return f === 'any' || families.has(f);
    });
    if (reachable.length === 0) {
      throw new PathDownError(path.name, `interface ${b.name} has only IPv${[...families].join('/IPv')} addresses, and no server address is of that family`);
    }
    const server = this.server(slot, reachable);
    const hf = hostFamily(server.host);
    // A server name resolves to whichever family the local address has (IPv4 first: more often routed).
    const local = addresses.find((a) => (hf === 'any' ? a.family === 4 : a.family === hf)) ?? addresses[0]!;
    return { ...server, localAddress: local.address, family: local.family, path };
  }

  /** A dial from slot `slot` failed: its next attempt tries the path's next server address. */
  failed(slot: number): void {
    if (this.turn[slot] !== undefined) this.turn[slot]++;
  }

  private server(slot: number, servers: readonly HostPort[]): HostPort {
    const s = servers[this.turn[slot]! % servers.length]!;
    return { host: s.host, port: s.port };
  }
}

/** An interface's addresses a tunnel can start from: IPv6 link-local ones need a scope a server address never has. */
function usableAddresses(infos: NetworkInterfaceInfo[] | undefined): { address: string; family: 4 | 6 }[] {
  const out: { address: string; family: 4 | 6 }[] = [];
  for (const i of infos ?? []) {
    const family = i.family === 'IPv4' || (i.family as unknown) === 4 ? 4 : 6;
    if (family === 6 && /^fe80:/i.test(i.address)) continue;
    out.push({ address: i.address, family });
  }
  return out;
}
