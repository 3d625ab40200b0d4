import { domainToASCII } from 'node:url';
import { ConfigError, formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '@gkd/protocol';

/**
 * Destination policy: may the server dial this address and port for a peer?
 *
 * Pure: no I/O. Rules are parsed once by `compilePolicy`; `check` and `checkName` are cheap lookups.
 *
 * Precedence, for each address a destination resolved to (README.md, "Destination policy"):
 *   1. a matching `deny` rule denies;
 *   2. otherwise a matching `allow` rule allows;
 *   3. otherwise an address in a default-denied range (`DEFAULT_DENIED_RANGES`) is denied;
 *   4. otherwise the address is allowed.
 * So deny always beats allow, and any explicit rule beats the defaults. The order of the rules in the
 * lists does not matter.
 *
 * An IPv6 address that designates an IPv4 host (IPv4-mapped, IPv4-translated, NAT64 64:ff9b::/96,
 * 6to4, Teredo) is checked twice, as itself and as the embedded IPv4 address, and is allowed only if
 * both checks allow it: `::ffff:127.0.0.1` is loopback, whatever `allow ::/0` says.
 */

/** An IP network: the network's bytes (4 for IPv4, 16 for IPv6) and its prefix length in bits. */
interface Network {
  readonly bytes: Buffer;
  readonly prefix: number;
}

/** What the host part of a rule matches. */
export type RuleHost =
  /** Port-only rule (`:22`): any host. */
  | { readonly kind: 'any' }
  /** An address or CIDR: matched against the resolved address. */
  | { readonly kind: 'network'; readonly family: 4 | 6; readonly cidr: string }
  /** A host name (`example.com`) or wildcard (`*.example.com`): matched against the requested name. */
  | { readonly kind: 'name'; readonly name: string; readonly wildcard: boolean };

/** One compiled `allow` or `deny` rule. */
export interface PolicyRule {
  readonly action: 'allow' | 'deny';
  /** The rule as written in the configuration. */
  readonly text: string;
  readonly host: RuleHost;
  /** Inclusive port range the rule applies to; `null` for every port. */
  readonly ports: { readonly from: number; readonly to: number } | null;
}

/** A policy decision. */
export interface PolicyVerdict {
  readonly allowed: boolean;
  /**
   * What decided, in words fit for a log line or an OPEN_FAIL message, e.g.
   * `deny rule "10.0.0.0/8"` or `127.0.0.1 is loopback (127.0.0.0/8), denied by default`.
   */
  readonly reason: string;
  /** The explicit rule that decided, if one did (none when a default decided). */
  readonly rule?: PolicyRule;
}

/** Rule lists, as given in the configuration (`allow` / `deny`, each repeatable). */
export interface PolicyOptions {
  readonly allow?: readonly string[];
  readonly deny?: readonly string[];
}

/** A compiled destination policy. */
export interface Policy {
  /** The compiled explicit rules: every deny rule, then every allow rule, each in configuration order. */
  readonly rules: readonly PolicyRule[];
  /**
   * Decide for one resolved address. `address` is an IPv4 or IPv6 literal (as `dns.lookup` returns);
   * `port` the destination port; `name` the host name the peer asked for, if it asked by name, already
   * normalised (`normalizeHostName`): name rules match it, address rules and defaults match `address`.
   * Text that is not an IP address is denied.
   */
  check(address: string, port: number, name?: string): PolicyVerdict;
  /**
   * The part of the decision that needs no resolution: a `deny` rule that names this host (or only a
   * port) denies every address the name could resolve to. Returns that denying verdict, or `null` when
   * the answer depends on the resolved addresses. Lets the server refuse before sending a DNS query.
   * `name` must already be normalised (`normalizeHostName`).
   */
  checkName(name: string, port: number): PolicyVerdict | null;
}

/** One range denied unless an explicit rule allows it. */
export interface DefaultRange {
  readonly cidr: string;
  /** What the range is, e.g. `loopback`. */
  readonly kind: string;
}

/**
 * Ranges denied by default: everything that reaches the server itself, its LAN, its provider's network
 * or its cloud's metadata service, and addresses that are not unicast. Ordered so that a narrower range
 * comes before the range containing it (the first match names the kind).
 */
export const DEFAULT_DENIED_RANGES: readonly DefaultRange[] = [
  { cidr: '0.0.0.0/8', kind: 'unspecified ("this network")' },
  { cidr: '10.0.0.0/8', kind: 'private' },
  { cidr: '100.64.0.0/10', kind: 'shared address space (CGNAT)' },
  { cidr: '127.0.0.0/8', kind: 'loopback' },
  { cidr: '169.254.169.254/32', kind: 'cloud metadata (link-local)' },
  { cidr: '169.254.0.0/16', kind: 'link-local' },
  { cidr: '172.16.0.0/12', kind: 'private' },
  { cidr: '192.168.0.0/16', kind: 'private' },
  { cidr: '224.0.0.0/4', kind: 'multicast' },
  { cidr: '255.255.255.255/32', kind: 'broadcast' },
  { cidr: '240.0.0.0/4', kind: 'reserved' },
  { cidr: '::/128', kind: 'unspecified' },
  { cidr: '::1/128', kind: 'loopback' },
  { cidr: '::/96', kind: 'IPv4-compatible (deprecated)' },
  { cidr: '64:ff9b:1::/48', kind: 'local-use NAT64' },
  { cidr: 'fc00::/7', kind: 'unique-local' },
  { cidr: 'fe80::/10', kind: 'link-local' },
  { cidr: 'fec0::/10', kind: 'site-local (deprecated)' },
  { cidr: 'ff00::/8', kind: 'multicast' },
];

/** Where an IPv6 address carries an IPv4 address, and how to take it out. */
const EMBEDDINGS: readonly { readonly network: Network; readonly via: string; readonly extract: (b: Buffer) => Buffer }[] = [
  // ::ffff:a.b.c.d — a dual-stack socket connects to a.b.c.d itself.
  { network: cidr('::ffff:0:0/96'), via: 'IPv4-mapped', extract: (b) => b.subarray(12, 16) },
  // ::ffff:0:a.b.c.d — SIIT (RFC 6145).
  { network: cidr('::ffff:0:0:0/96'), via: 'IPv4-translated', extract: (b) => b.subarray(12, 16) },
  // 64:ff9b::a.b.c.d — a NAT64 gateway (RFC 6052) connects to a.b.c.d in its own network.
  { network: cidr('64:ff9b::/96'), via: 'NAT64', extract: (b) => b.subarray(12, 16) },
  // 2002:AABB:CCDD::/48 — a 6to4 relay (RFC 3056) tunnels to AA.BB.CC.DD.
  { network: cidr('2002::/16'), via: '6to4', extract: (b) => b.subarray(2, 6) },
  // 2001:0:S:S:flags:port:C:C — Teredo (RFC 4380): traffic goes to the client C, stored inverted.
  { network: cidr('2001::/32'), via: 'Teredo', extract: (b) => Buffer.from(b.subarray(12, 16).map((x) => x ^ 0xff)) },
];

const DEFAULTS: readonly { readonly range: DefaultRange; readonly network: Network }[] = DEFAULT_DENIED_RANGES.map((range) => ({
  range,
  network: cidr(range.cidr),
}));

/** Parse a CIDR we wrote ourselves (tables above); throws on a typo. */
function cidr(text: string): Network {
  const n = parseNetwork(text);
  if (typeof n === 'string') throw new Error(`bad built-in CIDR ${text}: ${n}`);
  return n;
}

/** True if `addr` lies in `net` (and is of the same family). */
function inNetwork(addr: Buffer, net: Network): boolean {
  if (addr.length !== net.bytes.length) return false;
  let bits = net.prefix;
  let i = 0;
  for (; bits >= 8; i++, bits -= 8) if (addr[i] !== net.bytes[i]) return false;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (addr[i]! & mask) === (net.bytes[i]! & mask);
}

function parseIP(text: string): Buffer | null {
  return parseIPv4(text) ?? parseIPv6(text);
}

function formatIP(bytes: Buffer): string {
  return bytes.length === 4 ? formatIPv4(bytes) : formatIPv6(bytes);
}

/** Parse `address` or `address/prefix`; returns the network or a message saying what is wrong. */
function parseNetwork(text: string): Network | string {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const bytes = parseIP(addrText);
  if (!bytes) return `"${addrText}" is not an IPv4 or IPv6 address`;
  const max = bytes.length * 8;
  if (slash < 0) return { bytes, prefix: max };
  const prefixText = text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > max) {
    return `prefix length must be 0–${max}, got "${prefixText}"`;
  }
  const prefix = Number(prefixText);
  const network = { bytes: Buffer.alloc(bytes.length), prefix };
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    network.bytes[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  if (!network.bytes.equals(bytes)) {
    return `host bits are set; did you mean ${formatIP(network.bytes)}/${prefix}?`;
  }
  return network;
}

const LABEL = /^[a-z0-9_-]{1,63}$/;

/**
 * Normalise a host name for matching and resolving: lower case, one trailing dot removed, non-ASCII
 * labels converted to IDNA A-labels (`bücher.example` → `xn--bcher-kva.example`). Returns `null` for a
 * name that is not made of 1–63 character labels of letters, digits, `-` and `_`, or is over 253 bytes:
 * no DNS server would answer it, and refusing it here keeps odd spellings from slipping past name rules.
 */
export function normalizeHostName(input: string): string | null {
  let name = input.endsWith('.') ? input.slice(0, -1) : input;
  if (/[^A-Za-z0-9._-]/.test(name)) {
    // Only non-ASCII names go through IDNA (domainToASCII also percent-decodes and cuts at "/": any
    // ASCII outside letters, digits, "-", "_" and "." is refused before it gets there).
    if (/[^A-Za-z0-9._\-\u0080-\u{10FFFF}]/u.test(name)) return null;
    name = domainToASCII(name);
  }
  name = name.toLowerCase();
  if (name.length === 0 || name.length > 253) return null;
  return name.split('.').every((l) => LABEL.test(l)) ? name : null;
}

/** Parse `N` or `N-M` (1–65535). */
function parsePorts(text: string): { from: number; to: number } | string {
  const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(text);
  if (!m) return `"${text}" is not a port or port range (e.g. 22 or 8000-9000)`;
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (from < 1 || from > 65535 || to < 1 || to > 65535) return `ports must be 1–65535, got "${text}"`;
  if (from > to) return `port range "${text}" is backwards`;
  return { from, to };
}

function parseHost(text: string): { host: RuleHost; network?: Network } | string {
  if (text.includes('/') || parseIP(text)) {
    const n = parseNetwork(text);
    if (typeof n === 'string') return n;
    const family = n.bytes.length === 4 ? 4 : 6;
    return { host: { kind: 'network', family, cidr: `${formatIP(n.bytes)}/${n.prefix}` }, network: n };
  }
  const wildcard = text.startsWith('*.');
  const raw = wildcard ? text.slice(2) : text;
  if (raw.includes('*')) return `"${text}": a wildcard is only allowed as a leading "*." (e.g. *.example.com)`;
  const name = normalizeHostName(raw);
  if (!name) return `"${text}" is not an IP address, CIDR or host name`;
  if (/^[0-9]+$/.test(name.slice(name.lastIndexOf('.') + 1))) {
    return `"${text}" is not a valid IP address, and a host name cannot end in a numeric label`;
  }
  return { host: { kind: 'name', name, wildcard } };
}

interface CompiledRule {
  readonly rule: PolicyRule;
  readonly network: Network | undefined;
}

/**
 * Parse one rule. Syntax (whitespace around the rule is ignored):
 *
 * | form | example |
 * | --- | --- |
 * | address | `10.1.2.3`, `::1` |
 * | CIDR | `10.0.0.0/8`, `fd00::/8` |
 * | host name, wildcard | `example.com`, `*.example.com` (any depth of subdomain, not the name itself) |
 * | port, port range | `:22`, `:8000-9000` |
 * | host and port | `127.0.0.1:8080`, `10.0.0.0/8:443`, `example.com:443`, `[::1]:8080`, `[fd00::/8]:443` |
 *
 * An IPv6 address or CIDR with a port needs brackets; bare text with several colons is all address.
 * `label` names the rule in error messages, e.g. `deny[2]`. Throws ConfigError.
 */
export function parseRule(action: 'allow' | 'deny', text: string, label: string = action): PolicyRule {
  return compileRule(action, text, label).rule;
}

function compileRule(action: 'allow' | 'deny', input: unknown, label: string): CompiledRule {
  const fail = (why: string): never => {
    throw new ConfigError(`invalid ${label} rule ${JSON.stringify(input)}: ${why}`);
  };
  if (typeof input !== 'string') return fail('a rule must be a string');
  const text = input.trim();
  if (text === '') return fail('the rule is empty');

  let hostText: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return fail('missing "]"');
    hostText = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return fail(`unexpected "${rest}" after "]"`);
      portText = rest.slice(1);
    }
    if (!hostText.includes(':')) return fail('brackets are for IPv6 addresses');
  } else if (text.startsWith(':') && !text.startsWith('::')) {
    hostText = '';
    portText = text.slice(1);
  } else if (text.split(':').length > 2) {
    hostText = text; // bare IPv6: no port
  } else {
    const colon = text.indexOf(':');
    hostText = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
  }

  let ports: PolicyRule['ports'] = null;
  if (portText !== undefined) {
    const p = parsePorts(portText);
    if (typeof p === 'string') return fail(p);
    ports = p;
  }

  let host: RuleHost = { kind: 'any' };
  let network: Network | undefined;
  if (hostText !== '') {
    const h = parseHost(hostText);
    if (typeof h === 'string') return fail(h);
    host = h.host;
    network = h.network;
  } else if (action === 'allow') {
    // A port-only allow would lift every default range (loopback, metadata, the LAN) on that port.
    // Nothing is lost by refusing it: `0.0.0.0/0:443` and `::/0:443` say the same thing on purpose.
    return fail(
      `an allow rule must name a host; a port-only allow would open loopback, private and metadata ` +
        `addresses on that port. Write e.g. "127.0.0.1:${portText}", or "0.0.0.0/0:${portText}" and "[::/0]:${portText}" if you mean it`,
    );
  }
  return { rule: { action, text, host, ports }, network };
}

/** Does `rule` match (requested name, one address view, port)? */
function matches(c: CompiledRule, name: string | undefined, addr: Buffer | undefined, port: number): boolean {
  const { rule } = c;
  if (rule.ports && (port < rule.ports.from || port > rule.ports.to)) return false;
  switch (rule.host.kind) {
    case 'any':
      return true;
    case 'network':
      return addr !== undefined && inNetwork(addr, c.network!);
    case 'name':
      if (name === undefined) return false;
      return rule.host.wildcard ? name.endsWith(`.${rule.host.name}`) : name === rule.host.name;
  }
}

function describeRule(rule: PolicyRule): string {
  return `${rule.action} rule ${JSON.stringify(rule.text)}`;
}

/**
 * Compile the allow and deny rule lists into a Policy. Every rule is checked here, once; a bad rule is
 * a ConfigError naming it, e.g. `invalid deny[1] rule "10.0.0.0/33": prefix length must be 0–32, got "33"`.
 */
export function compilePolicy(options: PolicyOptions = {}): Policy {
  const list = (key: 'allow' | 'deny'): CompiledRule[] => {
    const value: unknown = options[key];
    if (value === undefined) return [];
    if (!Array.isArray(value)) throw new ConfigError(`invalid option ${key}: must be an array of rule strings`);
    return value.map((text: unknown, i) => compileRule(key, text, `${key}[${i}]`));
  };
  const deny = list('deny');
  const allow = list('allow');

  const checkView = (addr: Buffer, via: string, name: string | undefined, port: number): PolicyVerdict => {
    const where = via ? ` (${via} ${formatIP(addr)})` : '';
    for (const c of deny) {
      if (matches(c, name, addr, port)) return { allowed: false, reason: `${describeRule(c.rule)}${where}`, rule: c.rule };
    }
    for (const c of allow) {
      if (matches(c, name, addr, port)) return { allowed: true, reason: `${describeRule(c.rule)}${where}`, rule: c.rule };
    }
    for (const d of DEFAULTS) {
      if (inNetwork(addr, d.network)) {
        const what = via ? `${via} ${formatIP(addr)}` : formatIP(addr);
        return { allowed: false, reason: `${what} is ${d.range.kind} (${d.range.cidr}), denied by default` };
      }
    }
    return { allowed: true, reason: 'allowed by default' };
  };

  return {
    rules: [...deny, ...allow].map((c) => c.rule),

    check(address: string, port: number, name?: string): PolicyVerdict {
      const bytes = parseIP(address);
      if (!bytes) return { allowed: false, reason: `${JSON.stringify(address)} is not an IP address` };
      const verdict = checkView(bytes, '', name, port);
      if (!verdict.allowed || bytes.length === 4) return verdict;
      for (const e of EMBEDDINGS) {
        if (!inNetwork(bytes, e.network)) continue;
        const embedded = checkView(e.extract(bytes), e.via, name, port);
        if (!embedded.allowed) return embedded;
        break; // the embeddings do not overlap
      }
      return verdict;
    },

    checkName(name: string, port: number): PolicyVerdict | null {
      for (const c of deny) {
        if (c.rule.host.kind !== 'network' && matches(c, name, undefined, port)) {
          return { allowed: false, reason: describeRule(c.rule), rule: c.rule };
        }
      }
      return null;
    },
  };
}
