import { once } from 'node:events';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ErrorCode, OpenFailedError, Reason, reasonName, type ReasonCode } from '@gkd/protocol';
import type { Connection, PeerInfo } from '@gkd/transport';
import { GkdServer, type OpenEvent, type Resolver } from '../src/index.js';
import { recordingDestination, type RecordingDestination } from './support/destination.js';
import { connectClient, defer, newKey, readAll, rejection, roundTripOk, runCleanups, startServer, tableResolver } from './support/harness.js';
import { saturatedListener, saturationUnsupported } from './support/net.js';

afterEach(runCleanups);

const key = newKey();

/**
 * The destinations every rule is tried against, all on loopback (which the server denies by default,
 * so each success below is an explicit rule at work): A and B on 127.0.0.1, Alt on 127.0.0.2 with A's
 * port, V6 on ::1.
 */
let A: RecordingDestination;
let B: RecordingDestination;
let Alt: RecordingDestination;
let V6: RecordingDestination;

beforeAll(async () => {
  A = await recordingDestination();
  B = await recordingDestination();
  for (let attempt = 0; ; attempt++) {
    try {
      Alt = await recordingDestination(undefined, '127.0.0.2', A.port);
      break;
    } catch (err) {
      if (attempt > 5) throw err; // A's port is taken on 127.0.0.2: move A
      await A.close();
      A = await recordingDestination();
    }
  }
  V6 = await recordingDestination(undefined, '::1');
});
afterAll(async () => {
  for (const d of [A, B, Alt, V6]) await d?.close();
});

/** Names the injected resolver knows. Every address is on loopback: a broken policy dials nothing off this machine. */
const names = {
  'dest.test': ['127.0.0.1'],
  'a.b.dest.test': ['127.0.0.1'],
  'evil.test': ['127.0.0.1'],
  'mixed.test': ['127.0.0.2', '127.0.0.1'],
  'v6.test': ['::1'],
};

type Target = 'A' | 'B' | 'V6';
interface Row {
  rule: string;
  allow?: string[];
  deny?: string[];
  host: string;
  to: Target;
  expect: 'dialed' | ReasonCode;
  /** The OPEN_FAIL message should say this. */
  message?: RegExp;
  /** The resolver must (true) or must not (false) have been asked. */
  queried?: boolean;
}

const dests = (): Record<Target, RecordingDestination> => ({ A, B, V6 });

// Ports are known only once the destinations listen, so the table is built lazily; `$A` / `$B` stand for the ports.
const rows: Row[] = [
  { rule: 'address', allow: ['127.0.0.1'], host: '127.0.0.1', to: 'A', expect: 'dialed' },
  {
    rule: 'address (deny beats a broader allow)',
    allow: ['127.0.0.0/8'],
    deny: ['127.0.0.1'],
    host: '127.0.0.1',
    to: 'A',
    expect: Reason.NOT_ALLOWED,
    message: /deny rule "127\.0\.0\.1"/,
  },
  { rule: 'CIDR', allow: ['127.0.0.0/8'], host: '127.0.0.1', to: 'B', expect: 'dialed' },
  {
    rule: 'CIDR deny',
    allow: ['127.0.0.1'],
    deny: ['127.0.0.0/24'],
    host: '127.0.0.1',
    to: 'A',
    expect: Reason.NOT_ALLOWED,
    message: /deny rule "127\.0\.0\.0\/24"/,
  },
  { rule: 'IPv6 address', allow: ['::1'], host: '::1', to: 'V6', expect: 'dialed' },
  { rule: 'IPv6 CIDR and port', allow: ['[::1/128]:$V6'], host: '::1', to: 'V6', expect: 'dialed' },
  { rule: 'IPv6 address and port', allow: ['[::1]:$V6'], host: '::1', to: 'V6', expect: 'dialed' },
  { rule: 'no rule: loopback is denied by default', host: '127.0.0.1', to: 'A', expect: Reason.NOT_ALLOWED, message: /loopback.*denied by default/ },
  { rule: 'no rule: IPv6 loopback is denied by default', host: '::1', to: 'V6', expect: Reason.NOT_ALLOWED, message: /denied by default/ },
  { rule: 'host name', allow: ['dest.test'], host: 'dest.test', to: 'A', expect: 'dialed', queried: true },
  { rule: 'host name, case and trailing dot ignored', allow: ['dest.test'], host: 'DEST.test.', to: 'A', expect: 'dialed', queried: true },
  { rule: 'host name rule does not open its address', allow: ['dest.test'], host: '127.0.0.1', to: 'A', expect: Reason.NOT_ALLOWED },
  {
    rule: 'a name that resolves to a denied address',
    host: 'evil.test',
    to: 'A',
    expect: Reason.NOT_ALLOWED,
    message: /evil\.test: 127\.0\.0\.1 is loopback/,
    queried: true,
  },
  {
    rule: 'a name that resolves to an explicitly denied address',
    allow: ['dest.test'],
    deny: ['127.0.0.1'],
    host: 'dest.test',
    to: 'A',
    expect: Reason.NOT_ALLOWED,
    queried: true,
  },
  { rule: 'deny 0.0.0.0/0 is not reopened by a name', allow: ['dest.test'], deny: ['0.0.0.0/0'], host: 'dest.test', to: 'A', expect: Reason.NOT_ALLOWED },
  { rule: 'a name resolving to an IPv6 address', allow: ['v6.test'], host: 'v6.test', to: 'V6', expect: 'dialed', queried: true },
  {
    rule: 'host name deny: refused before any DNS query',
    allow: ['127.0.0.1'],
    deny: ['evil.test'],
    host: 'evil.test',
    to: 'A',
    expect: Reason.NOT_ALLOWED,
    message: /deny rule "evil\.test"/,
    queried: false,
  },
  { rule: 'wildcard', allow: ['*.dest.test'], host: 'a.b.dest.test', to: 'A', expect: 'dialed', queried: true },
  { rule: 'wildcard does not match the bare name', allow: ['*.dest.test'], host: 'dest.test', to: 'A', expect: Reason.NOT_ALLOWED },
  { rule: 'wildcard deny', allow: ['127.0.0.1'], deny: ['*.dest.test'], host: 'a.b.dest.test', to: 'A', expect: Reason.NOT_ALLOWED, queried: false },
  { rule: 'port deny', allow: ['127.0.0.1'], deny: [':$A'], host: '127.0.0.1', to: 'A', expect: Reason.NOT_ALLOWED, message: /deny rule ":\d+"/ },
  { rule: 'port range deny', allow: ['127.0.0.1'], deny: [':$LO-$HI'], host: '127.0.0.1', to: 'B', expect: Reason.NOT_ALLOWED },
  { rule: 'port deny leaves other ports', allow: ['127.0.0.1'], deny: [':$A'], host: '127.0.0.1', to: 'B', expect: 'dialed' },
  { rule: 'address and port', allow: ['127.0.0.1:$A'], host: '127.0.0.1', to: 'A', expect: 'dialed' },
  { rule: 'address and port: another port stays denied', allow: ['127.0.0.1:$A'], host: '127.0.0.1', to: 'B', expect: Reason.NOT_ALLOWED },
  { rule: 'CIDR and port', allow: ['127.0.0.0/8:$B'], host: '127.0.0.1', to: 'B', expect: 'dialed' },
  { rule: 'name and port', allow: ['dest.test:$A'], host: 'dest.test', to: 'A', expect: 'dialed' },
  { rule: 'name and port: another port stays denied', allow: ['dest.test:$A'], host: 'dest.test', to: 'B', expect: Reason.NOT_ALLOWED },
  { rule: 'wildcard and port range', allow: ['*.dest.test:$LO-$HI'], host: 'a.b.dest.test', to: 'B', expect: 'dialed' },
  {
    rule: '--deny of an otherwise allowed destination',
    allow: ['127.0.0.0/8'],
    deny: ['127.0.0.1:$A'],
    host: '127.0.0.1',
    to: 'A',
    expect: Reason.NOT_ALLOWED,
    message: /deny rule "127\.0\.0\.1:\d+"/,
  },
  { rule: '--deny of one destination leaves the others', allow: ['127.0.0.0/8'], deny: ['127.0.0.1:$A'], host: '127.0.0.1', to: 'B', expect: 'dialed' },
];

function expand(rule: string): string {
  const lo = Math.min(A.port, B.port);
  const hi = Math.max(A.port, B.port);
  return rule.replace('$A', String(A.port)).replace('$B', String(B.port)).replace('$V6', String(V6.port)).replace('$LO', String(lo)).replace('$HI', String(hi));
}

/** Dials each IPv4 destination has logged, after a sentinel proved the count is settled. */
async function dialCounts(): Promise<number[]> {
  return Promise.all([A, B, Alt].map((d) => d.settle()));
}

describe('GkdServer: every allow/deny rule kind, end to end', () => {
  it.each(rows)('$rule: $host → $expect', async (row) => {
    const resolver = tableResolver(names);
    const server = await startServer({ key, allow: (row.allow ?? []).map(expand), deny: (row.deny ?? []).map(expand), resolver });
    const client = await connectClient(server, { key, tunnels: 1 });
    const dest = dests()[row.to];
    const before = await dialCounts();
    const v6Before = V6.logs.length;
    const target = { host: row.host, port: dest.port };

    if (row.expect === 'dialed') {
      expect(await roundTripOk(client, target)).toBe(true);
      const after = await dialCounts();
      const delta = after.map((n, i) => n - before[i]!);
      expect(delta).toEqual([A, B, Alt].map((d) => (d === dest ? 1 : 0)));
      if (row.to === 'V6') expect(V6.logs.length).toBe(v6Before + 1);
    } else {
      const err = await rejection(client.open(target));
      expect(err).toBeInstanceOf(OpenFailedError);
      expect(err.code).toBe(ErrorCode.OPEN_FAILED);
      expect(reasonName(err.reason!)).toBe(reasonName(row.expect));
      if (row.message) expect(err.message).toMatch(row.message);
      expect(await dialCounts()).toEqual(before);
      // V6 has no sentinel; the failed OPEN came back after the decision, and a dial would have come first.
      expect(V6.logs.length).toBe(v6Before);
    }
    if (row.queried !== undefined) expect(resolver.queries.length > 0).toBe(row.queried);
  });

  it('a name resolving to allowed and denied addresses: only the allowed one is dialed', async () => {
    const resolver = tableResolver(names);
    const server = await startServer({ key, allow: [`127.0.0.1:${A.port}`], resolver });
    const client = await connectClient(server, { key, tunnels: 1 });
    const before = await dialCounts();
    // mixed.test → 127.0.0.2 (loopback: denied by default) and 127.0.0.1 (allowed); Alt listens on 127.0.0.2 with A's port.
    expect(await roundTripOk(client, { host: 'mixed.test', port: A.port })).toBe(true);
    const after = await dialCounts();
    expect(after.map((n, i) => n - before[i]!)).toEqual([1, 0, 0]);
  });

  it('rules are checked at start: a bad rule or a port-only allow is a ConfigError naming it', async () => {
    const bad = await rejection(GkdServer.start({ listen: '127.0.0.1:0', key, deny: ['127.0.0.1/8'] }));
    expect(bad).toBeInstanceOf(ConfigError);
    expect(bad.message).toMatch(/deny\[0\].*127\.0\.0\.1\/8/);
    const portOnly = await rejection(GkdServer.start({ listen: '127.0.0.1:0', key, allow: [':443'] }));
    expect(portOnly).toBeInstanceOf(ConfigError);
    expect(portOnly.message).toMatch(/allow\[0\]/);
  });
});

describe('GkdServer: every OPEN_FAIL reason from a real condition', () => {
  /** Open `target` through a fresh server with `options`; returns the client's error and the server's 'open-failed' event. */
  async function failOpen(
    target: { host: string; port: number } | null,
    options: {
      allow?: string[];
      resolver?: Resolver;
      connectTimeout?: number;
      allowLibraryMode?: boolean;
      onLibraryStream?: (c: Connection, p: PeerInfo) => void;
    } = {},
  ) {
    const server = await startServer({ key, ...options });
    const client = await connectClient(server, { key, tunnels: 1 });
    const event = once(server, 'open-failed') as Promise<[OpenEvent]>;
    const started = Date.now();
    const err = await rejection(target ? client.open(target) : client.getConnection());
    const ms = Date.now() - started;
    const [ev] = await event;
    expect(err).toBeInstanceOf(OpenFailedError);
    expect(err.code).toBe(ErrorCode.OPEN_FAILED);
    expect(ev.reason).toBe(reasonName(err.reason!));
    expect(server.counters.openFailures[ev.reason!]).toBe(1);
    return { err, ev, ms, server };
  }

  it('closed port → CONNECTION_REFUSED (0x05)', async () => {
    const port = await getPort({ host: '127.0.0.1' }); // free: nobody listens there
    const { err, ev } = await failOpen({ host: '127.0.0.1', port }, { allow: ['127.0.0.1'] });
    expect(err.reason).toBe(Reason.CONNECTION_REFUSED);
    expect(err.message).toMatch(/ECONNREFUSED/);
    expect(ev.destination).toBe(`127.0.0.1:${port}`);
  });

  it('denied range → NOT_ALLOWED (0x02), nothing dialed', async () => {
    const before = await A.settle();
    const { err } = await failOpen({ host: '127.0.0.1', port: A.port });
    expect(err.reason).toBe(Reason.NOT_ALLOWED);
    expect(await A.settle()).toBe(before);
  });

  const satSkip = saturationUnsupported();
  it.skipIf(satSkip !== null)('a destination that never answers the SYN, with a short connectTimeout → TIMEOUT (0x06)', async () => {
    const hanging = await saturatedListener('127.0.0.1');
    defer(() => hanging.release());
    const { err, ms } = await failOpen({ host: '127.0.0.1', port: hanging.port }, { allow: ['127.0.0.1'], connectTimeout: 300 });
    expect(err.reason).toBe(Reason.TIMEOUT);
    expect(err.message).toMatch(/connecting to 127\.0\.0\.1:\d+ took longer than 300 ms/);
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms).toBeLessThan(5_000);
  });
  if (satSkip) console.log(`skipping the connect-timeout test: ${satSkip}`);

  it('a resolver that never answers → TIMEOUT (0x06)', async () => {
    const never: Resolver = () => new Promise(() => undefined);
    const { err } = await failOpen({ host: 'slow.test', port: 80 }, { resolver: never, connectTimeout: 100 });
    expect(err.reason).toBe(Reason.TIMEOUT);
    expect(err.message).toMatch(/resolving slow\.test:80/);
  });

  it('unresolvable name → HOST_UNREACHABLE (0x04)', async () => {
    const { err } = await failOpen({ host: 'nowhere.test', port: 80 }, { resolver: tableResolver({}) });
    expect(err.reason).toBe(Reason.HOST_UNREACHABLE);
    expect(err.message).toMatch(/ENOTFOUND/);
  });

  it('a name with no addresses, and a name that is not a host name → HOST_UNREACHABLE (0x04)', async () => {
    expect((await failOpen({ host: 'empty.test', port: 80 }, { resolver: tableResolver({ 'empty.test': [] }) })).err.reason).toBe(Reason.HOST_UNREACHABLE);
    const resolver = tableResolver({});
    expect((await failOpen({ host: 'bad host!', port: 80 }, { resolver })).err.reason).toBe(Reason.HOST_UNREACHABLE);
    expect(resolver.queries).toEqual([]);
  });

  it('a resolver failing in an unknown way → GENERAL_FAILURE (0x01)', async () => {
    const broken: Resolver = () => Promise.reject(Object.assign(new Error('resolver exploded'), { code: 'EWEIRD' }));
    expect((await failOpen({ host: 'x.test', port: 80 }, { resolver: broken })).err.reason).toBe(Reason.GENERAL_FAILURE);
  });

  it('library-mode OPEN is refused with NOT_ALLOWED (0x02) by default, and without a handler', async () => {
    expect((await failOpen(null)).err.reason).toBe(Reason.NOT_ALLOWED);
    expect((await failOpen(null, { allowLibraryMode: true })).err.reason).toBe(Reason.NOT_ALLOWED);
    const { err } = await failOpen(null, { onLibraryStream: () => expect.fail('library stream without allowLibraryMode') });
    expect(err.reason).toBe(Reason.NOT_ALLOWED);
    expect(err.message).toMatch(/library-mode/);
  });

  it('library-mode OPEN reaches onLibraryStream with allowLibraryMode: true', async () => {
    const got: PeerInfo[] = [];
    const server = await startServer({
      key,
      allowLibraryMode: true,
      onLibraryStream: (conn, peer) => {
        got.push(peer);
        conn.on('error', () => undefined); // the application owns the stream, errors included (e.g. at server.close())
        conn.pipe(conn);
      },
    });
    const client = await connectClient(server, { key, tunnels: 1 });
    const conn = await client.getConnection();
    const reply = readAll(conn);
    conn.end('hello library');
    expect((await reply).toString()).toBe('hello library');
    expect(got.map((p) => p.user)).toEqual(['']);
    expect(got[0]!.sessionId).toBe(server.stats().peers[0]!.id);
  });
});
