import { describe, expect, it } from 'vitest';
import { Admission, type EvictionCause } from '../src/admission.js';
import { defaultHttpProxyConfig, defaultSocksServerConfig, resolveSocksServerConfig, type Opener } from '../src/index.js';

const opener: Opener = () => new Promise(() => {});

/** An Admission with fake connections: numbers as keys, evictions recorded. */
function harness(limits = resolveSocksServerConfig({ opener })) {
  const admission = new Admission<number>(limits);
  const evicted: { key: number; cause: EvictionCause }[] = [];
  let next = 0;
  const admit = (address: string): number | undefined => {
    const key = next++;
    return admission.admit(key, address, (cause) => evicted.push({ key, cause })) ? key : undefined;
  };
  return { admission, evicted, admit };
}

describe('Admission with the default limits (4096 connections, 4096 handshakes, 4096 per address)', () => {
  it('the defaults are those', () => {
    for (const c of [defaultSocksServerConfig, defaultHttpProxyConfig]) {
      expect(c).toMatchObject({ maxConnections: 4096, maxHandshakes: 4096, maxHandshakesPerAddress: 4096 });
    }
  });

  it('a burst of 4096 handshakes from one address evicts none of its own', () => {
    const { admission, evicted, admit } = harness();
    for (let i = 0; i < 4096; i++) expect(admit('127.0.0.1')).toBeDefined();
    expect(evicted).toEqual([]);
    expect(admission.counts()).toEqual({ connections: 4096, handshakes: 4096 });
  });

  it('10 000 idle handshakes from 4 addresses hold at most 4096 slots; a newcomer from 127.0.0.1 always gets in and evicts the oldest', () => {
    const { admission, evicted, admit } = harness();
    for (let i = 0; i < 10_000; i++) expect(admit(`127.0.0.${2 + (i % 4)}`)).toBeDefined();
    expect(admission.counts()).toEqual({ connections: 4096, handshakes: 4096 });
    // the oldest went first: exactly the first 10 000 - 4096
    expect(evicted.map((e) => e.key)).toEqual(Array.from({ length: 10_000 - 4096 }, (_, i) => i));
    expect(new Set(evicted.map((e) => e.cause))).toEqual(new Set(['total']));
    const legit = admit('127.0.0.1')!;
    expect(evicted.at(-1)).toEqual({ key: 10_000 - 4096, cause: 'total' });
    admission.established(legit);
    expect(admission.counts()).toEqual({ connections: 4096, handshakes: 4095 });
  });

  it("with a per-address share (256 of 1024), one address's newcomers evict its own oldest, not other addresses'", () => {
    const { admission, evicted, admit } = harness({ ...resolveSocksServerConfig({ opener }), maxHandshakes: 1024, maxHandshakesPerAddress: 256 });
    const other = admit('10.0.0.1')!;
    for (let i = 0; i < 1000; i++) admit('10.0.0.2');
    expect(admission.counts()).toEqual({ connections: 257, handshakes: 257 });
    expect(evicted).toHaveLength(1000 - 256);
    expect(evicted.every((e) => e.cause === 'address' && e.key !== other)).toBe(true);
  });

  it('established connections are never evicted; when all 4096 slots are established the newcomer is refused', () => {
    const { admission, evicted, admit } = harness();
    for (let i = 0; i < 4096; i++) admission.established(admit(`127.0.0.${1 + (i % 200)}`)!);
    expect(admit('127.0.0.1')).toBeUndefined();
    expect(evicted).toEqual([]);
    // one handshake left among 4095 established: a newcomer evicts it (slot full), no established one
    admission.release(0);
    const idle = admit('127.0.0.9')!;
    expect(admit('127.0.0.10')).toBeDefined();
    expect(evicted).toEqual([{ key: idle, cause: 'connections' }]);
    expect(admission.counts()).toEqual({ connections: 4096, handshakes: 1 });
  });

  it('release frees the slot and is idempotent; an idle keep-alive connection re-registers as the newest handshake', () => {
    const { admission, evicted, admit } = harness({ ...resolveSocksServerConfig({ opener }), maxConnections: 3, maxHandshakes: 3, maxHandshakesPerAddress: 3 });
    const a = admit('h')!;
    const b = admit('h')!;
    admission.established(a);
    admission.handshaking(a, 'h', (cause) => evicted.push({ key: a, cause })); // idle again: newer than b
    admit('h');
    admit('h'); // full: evicts the oldest handshake, b
    expect(evicted).toEqual([{ key: b, cause: 'address' }]);
    admission.release(b);
    admission.release(b);
    expect(admission.counts()).toEqual({ connections: 3, handshakes: 3 });
  });
});
