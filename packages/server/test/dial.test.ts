import net from 'node:net';
import { once } from 'node:events';
import getPort from 'get-port';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { OpenFailedError, Reason, reasonName, toAddress, type Address } from '@gkd/protocol';
import { compilePolicy, dialDestination, reasonForDialError, systemResolver, type DialOptions, type Resolver } from '../src/index.js';
import { connectionsBeforeSentinel, listen, saturatedListener, saturationUnsupported, type SaturatedListener, type TestServer } from './support/net.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(host: string, port = 0): Promise<TestServer> {
  const t = await listen(host, port);
  cleanups.push(() => t.close());
  return t;
}

/** A saturated listener on `host` (on `port` if given), released after the test. */
async function saturated(host: string, port = 0): Promise<SaturatedListener> {
  const s = await saturatedListener(host, port);
  cleanups.push(() => s.release());
  return s;
}

/** Every socket dialDestination starts (net.connect → Socket#connect), with its target and what it became. */
function spyConnects(onCall?: () => void): { host: string; port: number; socket: net.Socket; earlierDestroyed: boolean[] }[] {
  const calls: { host: string; port: number; socket: net.Socket; earlierDestroyed: boolean[] }[] = [];
  const original = net.Socket.prototype.connect;
  vi.spyOn(net.Socket.prototype, 'connect').mockImplementation(function (this: net.Socket, ...args: unknown[]) {
    const opts = (Array.isArray(args[0]) ? args[0][0] : args[0]) as net.TcpSocketConnectOpts;
    calls.push({ host: String(opts.host), port: opts.port, socket: this, earlierDestroyed: calls.map((c) => c.socket.destroyed) });
    const result = (original as (...a: unknown[]) => net.Socket).apply(this, args);
    onCall?.();
    return result;
  });
  return calls;
}

/** A resolver answering from a table; records every name it is asked. */
function fakeResolver(table: Record<string, string[] | Error>): Resolver & { asked: string[] } {
  const asked: string[] = [];
  const resolver = async (name: string) => {
    asked.push(name);
    const entry = table[name];
    if (entry === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    if (entry instanceof Error) throw entry;
    return entry.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(resolver, { asked });
}

/** Expect the dial to fail with OpenFailedError carrying `reason`; returns the error. */
async function expectOpenFail(promise: Promise<net.Socket>, reason: number): Promise<OpenFailedError> {
  const err = await promise.then(
    (s) => {
      s.destroy();
      throw new Error(`expected ${reasonName(reason)}, but the dial connected to ${s.remoteAddress}:${s.remotePort}`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OpenFailedError);
  expect(reasonName((err as OpenFailedError).reason!), (err as Error).message).toBe(reasonName(reason));
  return err as OpenFailedError;
}

async function dialOk(dest: Address, options: DialOptions): Promise<net.Socket> {
  const socket = await dialDestination(dest, options);
  socket.on('error', () => {});
  cleanups.push(() => void socket.destroy());
  return socket;
}

const allowLoopback = compilePolicy({ allow: ['127.0.0.0/8', '::1'] });
const satSkip = saturationUnsupported();

describe('dialDestination: connects', () => {
  it('dials an allowed address and hands back a working socket with TCP_NODELAY and keepalive', async () => {
    const t = await server('127.0.0.1');
    const noDelay = vi.spyOn(net.Socket.prototype, 'setNoDelay');
    const keepAlive = vi.spyOn(net.Socket.prototype, 'setKeepAlive');
    const socket = await dialOk(toAddress('127.0.0.1', t.port), { policy: allowLoopback, keepAliveInitialDelay: 15_000 });
    expect(socket.remoteAddress).toBe('127.0.0.1');
    expect(socket.remotePort).toBe(t.port);
    expect(noDelay.mock.contexts).toContain(socket);
    expect(noDelay.mock.calls[noDelay.mock.contexts.indexOf(socket)]).toEqual([true]);
    expect(keepAlive.mock.contexts).toContain(socket);
    expect(keepAlive.mock.calls[keepAlive.mock.contexts.indexOf(socket)]).toEqual([true, 15_000]);
    socket.write('ping');
    const [echo] = (await once(socket, 'data')) as [Buffer];
    expect(echo.toString()).toBe('ping');
  });

  it('resolves names on the server and dials an allowed result', async () => {
    const t = await server('127.0.0.1');
    const resolver = fakeResolver({ 'svc.test': ['127.0.0.1'] });
    const socket = await dialOk(toAddress('svc.test', t.port), { policy: allowLoopback, resolver });
    expect(resolver.asked).toEqual(['svc.test']);
    expect(socket.remoteAddress).toBe('127.0.0.1');
  });

  it('normalises the name before matching and resolving', async () => {
    const t = await server('127.0.0.1');
    const resolver = fakeResolver({ 'svc.test': ['127.0.0.1'] });
    await dialOk(toAddress('SVC.Test.', t.port), { policy: allowLoopback, resolver });
    expect(resolver.asked).toEqual(['svc.test']);
  });

  it('does not resolve IP literals, even when sent as a domain name', async () => {
    const t = await server('127.0.0.1');
    const resolver = fakeResolver({});
    await dialOk(toAddress('127.0.0.1', t.port), { policy: allowLoopback, resolver });
    await dialOk({ type: 'domain', host: '127.0.0.1', port: t.port }, { policy: allowLoopback, resolver });
    expect(resolver.asked).toEqual([]);
  });
});

describe('dialDestination: policy', () => {
  it('refuses a denied address with NOT_ALLOWED and makes no connection attempt', async () => {
    const t = await server('127.0.0.1');
    const connects = spyConnects();
    const err = await expectOpenFail(dialDestination(toAddress('127.0.0.1', t.port), { policy: compilePolicy() }), Reason.NOT_ALLOWED);
    expect(err.message).toMatch(/loopback/);
    expect(connects).toEqual([]);
    vi.restoreAllMocks();
    expect(await connectionsBeforeSentinel(t)).toEqual([]);
  });

  it('refuses the IPv4-mapped form of a denied address', async () => {
    const t = await server('127.0.0.1');
    const connects = spyConnects();
    await expectOpenFail(dialDestination(toAddress('::ffff:127.0.0.1', t.port), { policy: compilePolicy() }), Reason.NOT_ALLOWED);
    expect(connects).toEqual([]);
    vi.restoreAllMocks();
    expect(await connectionsBeforeSentinel(t)).toEqual([]);
  });

  it('refuses a name that resolves into a denied range (no DNS-rebinding bypass), with no connection', async () => {
    const t = await server('127.0.0.1');
    const resolver = fakeResolver({ 'evil.test': ['127.0.0.1'] });
    const connects = spyConnects();
    const err = await expectOpenFail(dialDestination(toAddress('evil.test', t.port), { policy: compilePolicy(), resolver }), Reason.NOT_ALLOWED);
    expect(resolver.asked).toEqual(['evil.test']);
    expect(err.message).toMatch(/evil\.test: 127\.0\.0\.1 is loopback/);
    expect(connects).toEqual([]);
    vi.restoreAllMocks();
    expect(await connectionsBeforeSentinel(t)).toEqual([]);
  });

  it('refuses localhost through the system resolver (hosts file, no network)', async () => {
    const t = await server('127.0.0.1');
    const connects = spyConnects();
    await expectOpenFail(dialDestination(toAddress('localhost', t.port), { policy: compilePolicy(), resolver: systemResolver }), Reason.NOT_ALLOWED);
    expect(connects).toEqual([]);
    vi.restoreAllMocks();
    expect(await connectionsBeforeSentinel(t)).toEqual([]);
  });

  it('refuses a denied name before resolving it', async () => {
    const resolver = fakeResolver({ 'blocked.test': ['127.0.0.1'] });
    const connects = spyConnects();
    const policy = compilePolicy({ allow: ['127.0.0.1'], deny: ['*.blocked.test', 'blocked.test'] });
    for (const host of ['blocked.test', 'a.blocked.test', 'BLOCKED.test.']) {
      await expectOpenFail(dialDestination(toAddress(host, 80), { policy, resolver }), Reason.NOT_ALLOWED);
    }
    expect(resolver.asked).toEqual([]);
    expect(connects).toEqual([]);
  });

  it('dials only the allowed addresses when a name resolves to allowed and denied ones', async () => {
    const denied = await server('127.0.0.1');
    const allowed = await server('127.0.0.2', denied.port);
    const resolver = fakeResolver({ 'mixed.test': ['127.0.0.1', '127.0.0.2'] });
    const connects = spyConnects();
    const socket = await dialOk(toAddress('mixed.test', denied.port), { policy: compilePolicy({ allow: ['127.0.0.2'] }), resolver });
    expect(socket.remoteAddress).toBe('127.0.0.2');
    expect(connects.map((c) => c.host)).toEqual(['127.0.0.2']);
    vi.restoreAllMocks();
    expect(await connectionsBeforeSentinel(denied)).toEqual([]);
    expect((await connectionsBeforeSentinel(allowed)).length).toBe(1);
  });
});

describe('dialDestination: failures', () => {
  it('maps a closed loopback port to CONNECTION_REFUSED', async () => {
    const port = await getPort({ host: '127.0.0.1' });
    const err = await expectOpenFail(dialDestination(toAddress('127.0.0.1', port), { policy: allowLoopback }), Reason.CONNECTION_REFUSED);
    expect(err.message).toContain('ECONNREFUSED');
    expect((err.cause as NodeJS.ErrnoException).code).toBe('ECONNREFUSED'); // the dial error, kept for logs
  });

  it('reports CONNECTION_REFUSED once every address has refused', async () => {
    const port = await getPort({ host: '127.0.0.1' });
    const resolver = fakeResolver({ 'closed.test': ['::1', '127.0.0.1'] });
    const connects = spyConnects();
    const err = await expectOpenFail(dialDestination(toAddress('closed.test', port), { policy: allowLoopback, resolver }), Reason.CONNECTION_REFUSED);
    expect(connects.map((c) => c.host)).toEqual(['::1', '127.0.0.1']);
    expect(err.message).toContain('2 addresses tried');
  });

  it('reports the failure closest to the destination when the addresses fail differently', async () => {
    // fe80::1 with no scope id fails locally with EINVAL (no packet leaves); 127.0.0.1 refuses.
    const port = await getPort({ host: '127.0.0.1' });
    const policy = compilePolicy({ allow: ['fe80::/10', '127.0.0.1'] });
    for (const order of [
      ['fe80::1', '127.0.0.1'],
      ['127.0.0.1', 'fe80::1'],
    ]) {
      const resolver = fakeResolver({ 'mixed.test': order });
      const connects = spyConnects();
      const err = await expectOpenFail(dialDestination(toAddress('mixed.test', port), { policy, resolver }), Reason.CONNECTION_REFUSED);
      expect(connects.map((c) => c.host)).toEqual(order);
      expect(err.message).toContain('ECONNREFUSED');
      vi.restoreAllMocks();
    }
  });

  it.skipIf(satSkip !== null)('maps a connect that gets no answer to TIMEOUT at the deadline', async () => {
    const s = await saturated('127.0.0.1');
    const connects = spyConnects();
    const started = performance.now();
    const err = await expectOpenFail(dialDestination(toAddress('127.0.0.1', s.port), { policy: allowLoopback, timeout: 300 }), Reason.TIMEOUT);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(5_000);
    expect(err.message).toMatch(/connecting to 127\.0\.0\.1:\d+ took longer than 300 ms/);
    expect(connects).toHaveLength(1);
    expect(connects[0]!.socket.destroyed).toBe(true); // the hanging attempt is not leaked
  });
  if (satSkip) console.log(`skipping the saturated-listener tests: ${satSkip}`);

  it('counts resolution against the deadline', async () => {
    const resolver: Resolver = () => new Promise(() => {}); // never answers
    const err = await expectOpenFail(dialDestination(toAddress('slow.test', 80), { policy: allowLoopback, resolver, timeout: 50 }), Reason.TIMEOUT);
    expect(err.message).toMatch(/resolving slow\.test:80 took longer than 50 ms/);
  });

  it.each([
    ['ENOTFOUND', Reason.HOST_UNREACHABLE],
    ['EAI_AGAIN', Reason.HOST_UNREACHABLE],
    ['EAI_NONAME', Reason.HOST_UNREACHABLE],
    ['EAI_FAIL', Reason.HOST_UNREACHABLE],
    ['EWHATEVER', Reason.GENERAL_FAILURE],
  ])('maps a resolver failure %s to %s', async (code, reason) => {
    const resolver = fakeResolver({ 'x.test': Object.assign(new Error(`getaddrinfo ${code} x.test`), { code }) });
    const connects = spyConnects();
    const err = await expectOpenFail(dialDestination(toAddress('x.test', 80), { policy: allowLoopback, resolver }), reason);
    expect(err.message).toContain(code);
    expect(connects).toEqual([]);
  });

  it('maps an unresolvable name to HOST_UNREACHABLE (ENOTFOUND from the resolver)', async () => {
    const resolver = fakeResolver({});
    await expectOpenFail(dialDestination(toAddress('nowhere.test', 80), { policy: allowLoopback, resolver }), Reason.HOST_UNREACHABLE);
    expect(resolver.asked).toEqual(['nowhere.test']);
  });

  it('maps an empty answer and an invalid name to HOST_UNREACHABLE', async () => {
    const resolver = fakeResolver({ 'empty.test': [] });
    await expectOpenFail(dialDestination(toAddress('empty.test', 80), { policy: allowLoopback, resolver }), Reason.HOST_UNREACHABLE);
    await expectOpenFail(dialDestination(toAddress('bad name.test', 80), { policy: allowLoopback, resolver }), Reason.HOST_UNREACHABLE);
    expect(resolver.asked).toEqual(['empty.test']);
  });

  it('rejects bad options with RangeError', async () => {
    const dest = toAddress('127.0.0.1', 1);
    await expect(dialDestination(dest, { policy: allowLoopback, timeout: 0 })).rejects.toThrow(RangeError);
    await expect(dialDestination(dest, { policy: allowLoopback, timeout: Number.NaN })).rejects.toThrow(RangeError);
    await expect(dialDestination(dest, { policy: allowLoopback, attemptDelay: -1 })).rejects.toThrow(RangeError);
  });
});

describe('dialDestination: Happy Eyeballs', () => {
  it('connects to 127.0.0.1 when a name resolves to [::1 (closed), 127.0.0.1 (open)]', async () => {
    const t = await server('127.0.0.1');
    const resolver = fakeResolver({ 'dual.test': ['::1', '127.0.0.1'] });
    const connects = spyConnects();
    const started = performance.now();
    // A long attempt delay: the refusal of ::1 must start 127.0.0.1 at once, not after the delay.
    const socket = await dialOk(toAddress('dual.test', t.port), { policy: allowLoopback, resolver, timeout: 30_000, attemptDelay: 10_000 });
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(socket.remoteAddress).toBe('127.0.0.1');
    expect(connects.map((c) => c.host)).toEqual(['::1', '127.0.0.1']);
  });

  it('alternates families, starting with the family the resolver put first', async () => {
    const port = await getPort({ host: '127.0.0.1' });
    const resolver = fakeResolver({ 'many.test': ['127.0.0.1', '127.0.0.2', '127.0.0.3', '::1'] });
    const connects = spyConnects();
    await expectOpenFail(dialDestination(toAddress('many.test', port), { policy: allowLoopback, resolver }), Reason.CONNECTION_REFUSED);
    expect(connects.map((c) => c.host)).toEqual(['127.0.0.1', '::1', '127.0.0.2', '127.0.0.3']);
  });

  it.skipIf(satSkip !== null)('starts the next address after the attempt delay while the first keeps trying', async () => {
    const open = await server('127.0.0.1');
    const hanging = await saturated('127.0.0.2', open.port);
    const resolver = fakeResolver({ 'slow-first.test': ['127.0.0.2', '127.0.0.1'] });
    const connects = spyConnects();
    const started = performance.now();
    const socket = await dialOk(toAddress('slow-first.test', open.port), {
      policy: allowLoopback,
      resolver,
      timeout: 10_000,
      attemptDelay: 100,
    });
    const elapsed = performance.now() - started;
    expect(socket.remoteAddress).toBe('127.0.0.1');
    expect(hanging.port).toBe(open.port);
    expect(elapsed).toBeGreaterThanOrEqual(95); // waited for the delay, not for the first attempt to fail
    expect(elapsed).toBeLessThan(5_000); // and not for the deadline
    expect(connects.map((c) => c.host)).toEqual(['127.0.0.2', '127.0.0.1']);
    expect(connects[1]!.earlierDestroyed).toEqual([false]); // a race (RFC 8305), not abort-and-advance
    expect(connects[0]!.socket.destroyed).toBe(true); // the loser is closed once the winner connects
  });
});

describe('dialDestination: abort', () => {
  it('rejects with the signal reason before doing anything if already aborted', async () => {
    const resolver = fakeResolver({ 'a.test': ['127.0.0.1'] });
    const connects = spyConnects();
    const reason = new Error('peer reset');
    await expect(dialDestination(toAddress('a.test', 80), { policy: allowLoopback, resolver, signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(resolver.asked).toEqual([]);
    expect(connects).toEqual([]);
  });

  it('stops waiting for the resolver when aborted', async () => {
    const controller = new AbortController();
    let askedSignal: AbortSignal | undefined;
    const resolver: Resolver = (_name, signal) => {
      askedSignal = signal;
      queueMicrotask(() => controller.abort());
      return new Promise(() => {});
    };
    const err = await dialDestination(toAddress('a.test', 80), { policy: allowLoopback, resolver, signal: controller.signal }).catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    expect(askedSignal?.aborted).toBe(true);
  });

  it.skipIf(satSkip !== null)('destroys a pending connection attempt when aborted', async () => {
    const s = await saturated('127.0.0.1');
    const controller = new AbortController();
    // Abort once the attempt has started (it can only hang: the listener's queue is full).
    const connects = spyConnects(() => queueMicrotask(() => controller.abort(new Error('peer reset'))));
    const err = await dialDestination(toAddress('127.0.0.1', s.port), { policy: allowLoopback, signal: controller.signal }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('peer reset');
    expect(connects).toHaveLength(1);
    expect(connects[0]!.socket.destroyed).toBe(true);
  });
});

describe('reasonForDialError', () => {
  it.each([
    ['ECONNREFUSED', Reason.CONNECTION_REFUSED],
    ['EHOSTUNREACH', Reason.HOST_UNREACHABLE],
    ['EHOSTDOWN', Reason.HOST_UNREACHABLE],
    ['ENOTFOUND', Reason.HOST_UNREACHABLE],
    ['EAI_AGAIN', Reason.HOST_UNREACHABLE],
    ['EAI_NONAME', Reason.HOST_UNREACHABLE],
    ['ENETUNREACH', Reason.NETWORK_UNREACHABLE],
    ['ENETDOWN', Reason.NETWORK_UNREACHABLE],
    ['EADDRNOTAVAIL', Reason.NETWORK_UNREACHABLE],
    ['ETIMEDOUT', Reason.TIMEOUT],
    ['ECONNRESET', Reason.GENERAL_FAILURE],
    ['EACCES', Reason.GENERAL_FAILURE],
    [undefined, Reason.GENERAL_FAILURE],
  ])('%s → %s', (code, reason) => {
    expect(reasonForDialError(Object.assign(new Error('x'), { code }))).toBe(reason);
  });

  it('treats non-errors as GENERAL_FAILURE', () => {
    expect(reasonForDialError(null)).toBe(Reason.GENERAL_FAILURE);
    expect(reasonForDialError('ECONNREFUSED')).toBe(Reason.GENERAL_FAILURE);
  });
});
