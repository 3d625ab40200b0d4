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

describe('Admission with the default limits (4096 connections, 1024 handshakes, 256 per address)', () => {
  it('the defaults are those', () => {
    for (const c of [defaultSocksServerConfig, defaultHttpProxyConfig]) {
      expect(c).toMatchObject({ maxConnections: 4096, maxHandshakes: 1024, maxHandshakesPerAddress: 256 });
    }
  });

  it('4096 idle handshakes from 4 addresses hold at most 1024 slots; a newcomer from 127.0.0.1 always gets in and evicts the oldest', () => {
    const { admission, evicted, admit } = harness();
    for (let i = 0; i < 4096; i++) expect(admit(`127.0.0.${2 + (i % 4)}`)).toBeDefined();
    expect(admission.counts()).toEqual({ connections: 1024, handshakes: 1024 });
    expect(evicted).toHaveLength(4096 - 1024);
    // the oldest went first: exactly the first 3072 (each address's share, 4 × 256, is full first)
    expect(evicted.map((e) => e.key)).toEqual(Array.from({ length: 3072 }, (_, i) => i));
    expect(new Set(evicted.map((e) => e.cause))).toEqual(new Set(['address']));
    const legit = admit('127.0.0.1')!;
    expect(evicted.at(-1)).toEqual({ key: 3072, cause: 'total' });
    admission.established(legit);
    expect(admission.counts()).toEqual({ connections: 1024, handshakes: 1023 });
  });

  it('one address holds at most 256 handshakes: its newcomers evict its own oldest, not other addresses\'', () => {
    const { admission, evicted, admit } = harness();
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
