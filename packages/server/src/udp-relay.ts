import dgram from 'node:dgram';
import { Reason, formatAddress, parseIPv4, parseIPv6, type Address } from '@gkd/protocol';
import type { Association } from '@gkd/transport';
import { systemResolver, type Resolver } from './dial.js';
import { normalizeHostName, type Policy, type PolicyVerdict } from './policy.js';

/** Most datagrams one association holds while a name it sends to is being resolved; more are dropped. */
export const MAX_PENDING_DATAGRAMS = 64;

/** Most resolved names an association caches (each for NAME_CACHE_MS). */
const NAME_CACHE_SIZE = 64;
const NAME_CACHE_MS = 30_000;

/**
 * Most destinations (address and port) an association remembers having sent to. Replies are accepted
 * only from those (address- and port-restricted, as a NAT does), so the relay port does not let
 * strangers reach the client. The oldest is forgotten beyond this.
 */
const MAX_CONTACTS = 1024;

/** Datagram counters of a server (all associations). */
export interface UdpCounters {
  /** Associations open now. */
  associations: number;
  /** Datagrams sent to destinations. */
  datagramsUp: number;
  /** Datagrams from destinations forwarded to peers. */
  datagramsDown: number;
  /** Datagrams dropped: tunnels backed up, too many waiting for a name, a send error, a reply from a stranger. */
  datagramsDropped: number;
  /** Datagrams refused by the destination policy, or to a name that does not resolve. */
  datagramsDenied: number;
}

/** What relayAssociation needs from the server. */
export interface UdpRelayOptions {
  policy: Policy;
  resolver?: Resolver;
  /** Close the association after this long with no datagram either way, in ms. */
  idleTimeout: number;
  counters: UdpCounters;
  /** Called once per association and destination the policy (or DNS) refused, for the log. */
  onDenied?: (destination: string, why: string) => void;
}

type Target = { address: string; family: 4 | 6 };

/**
 * Serve one UDP association: each DATAGRAM from the peer goes out of this association's own UDP socket
 * (one per address family, opened on first use) after the destination policy allowed it (names are
 * resolved here, as for CONNECT); replies from destinations it sent to come back as DATAGRAMs. Ends
 * with the association, or closes it after `idleTimeout` with no traffic.
 */
export function relayAssociation(a: Association, options: UdpRelayOptions): void {
  const { policy, counters, idleTimeout } = options;
  const resolver = options.resolver ?? systemResolver;
  const sockets: { 4?: dgram.Socket; 6?: dgram.Socket } = {};
  const contacts = new Set<string>();
  const names = new Map<string, { addresses: string[] | null; why: string; expires: number }>();
  const pending = new Map<string, Array<{ port: number; payload: Buffer }>>();
  let pendingCount = 0;
  const denied = new Set<string>();
  let idleTimer: NodeJS.Timeout | undefined;
  counters.associations++;

  const touch = (): void => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => a.close(Reason.IDLE_TIMEOUT, `no datagram for ${idleTimeout} ms`), idleTimeout);
    idleTimer.unref();
  };
  touch();

  const deny = (where: string, why: string): void => {
    counters.datagramsDenied++;
    if (denied.size < 256 && !denied.has(where)) {
      denied.add(where);
      options.onDenied?.(where, why);
    }
  };

  const socketFor = (family: 4 | 6): dgram.Socket => {
    const existing = sockets[family];
    if (existing) return existing;
    const s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    s.on('error', () => undefined); // send errors surface in the send callback; a failed socket just drops
    s.on('message', (msg, rinfo) => {
      if (!a.open) return;
      const from = rinfo.address.replace(/%.*$/, '');
      if (!contacts.has(`${from}|${rinfo.port}`)) {
        counters.datagramsDropped++; // not a destination this association sent to
        return;
      }
      touch();
      const source: Address = { type: family === 4 ? 'ipv4' : 'ipv6', host: from, port: rinfo.port };
      if (a.send(source, msg)) counters.datagramsDown++;
      else counters.datagramsDropped++;
    });
    sockets[family] = s;
    return s;
  };

  const sendTo = (target: Target, port: number, payload: Buffer): void => {
    const key = `${target.address}|${port}`;
    if (!contacts.has(key)) {
      if (contacts.size >= MAX_CONTACTS) contacts.delete(contacts.values().next().value as string);
      contacts.add(key);
    }
    socketFor(target.family).send(payload, port, target.address, (err) => {
      if (err) counters.datagramsDropped++;
      else counters.datagramsUp++;
    });
  };

  const literal = (host: string): Target | null => {
    if (parseIPv4(host)) return { address: host, family: 4 };
    return parseIPv6(host) ? { address: host, family: 6 } : null;
  };

  /** Send to the first resolved address the policy allows for this port (IPv4 first), or refuse. */
  const sendResolved = (name: string, addresses: readonly string[], port: number, payload: Buffer): void => {
    let firstDenial: PolicyVerdict | undefined;
    let best: Target | null = null;
    for (const address of addresses) {
      const target = literal(address);
      if (!target) continue;
      const verdict = policy.check(address, port, name);
      if (!verdict.allowed) firstDenial ??= verdict;
      else if (!best || (best.family === 6 && target.family === 4)) best = target;
    }
    if (best) sendTo(best, port, payload);
    else deny(`${name}:${port}`, firstDenial?.reason ?? `${name} has no addresses`);
  };

  const resolveName = (name: string): void => {
    void (async () => {
      let addresses: string[] | null = null;
      let why = '';
      try {
        addresses = (await resolver(name, new AbortController().signal)).map((r) => r.address);
      } catch (err) {
        const code = (err as { code?: unknown } | null)?.code;
        why = `resolving ${name}: ${typeof code === 'string' ? code : String(err)}`;
      }
      if (names.size >= NAME_CACHE_SIZE) names.delete(names.keys().next().value as string);
      names.set(name, { addresses, why, expires: Date.now() + NAME_CACHE_MS });
      const waiting = pending.get(name) ?? [];
      pending.delete(name);
      pendingCount -= waiting.length;
      if (!a.open) return;
      for (const w of waiting) {
        if (addresses) sendResolved(name, addresses, w.port, w.payload);
        else deny(`${name}:${w.port}`, why);
      }
    })();
  };

  a.on('datagram', (dest: Address, payload: Buffer) => {
    touch();
    if (dest.type !== 'domain') {
      const target = literal(dest.host);
      const verdict = target ? policy.check(target.address, dest.port) : null;
      if (!target || !verdict?.allowed) return deny(formatAddress(dest), verdict?.reason ?? 'invalid address');
      return sendTo(target, dest.port, payload);
    }
    const name = normalizeHostName(dest.host);
    if (!name) return deny(formatAddress(dest), 'invalid host name');
    const early = policy.checkName(name, dest.port);
    if (early) return deny(formatAddress(dest), early.reason);
    const cached = names.get(name);
    if (cached && cached.expires > Date.now()) {
      if (cached.addresses) return sendResolved(name, cached.addresses, dest.port, payload);
      return deny(formatAddress(dest), cached.why);
    }
    if (pendingCount >= MAX_PENDING_DATAGRAMS) {
      counters.datagramsDropped++;
      return;
    }
    // Copy: the payload is a view into the tunnel's read buffer, and this one waits for DNS.
    const queued = { port: dest.port, payload: Buffer.from(payload) };
    const list = pending.get(name);
    pendingCount++;
    if (list) list.push(queued);
    else {
      pending.set(name, [queued]);
      resolveName(name);
    }
  });

  a.once('close', () => {
    clearTimeout(idleTimer);
    counters.associations--;
    for (const s of [sockets[4], sockets[6]]) s?.close();
    pending.clear();
  });
}
