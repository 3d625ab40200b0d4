import { describe, expect, it } from 'vitest';
import { ConfigError, ErrorCode } from '@gkd/protocol';
import { DEFAULT_LIMITS, DEFAULT_SERVER_CONFIG, resolveServerConfig, type ServerConfigInput } from '../src/index.js';

describe('resolveServerConfig', () => {
  it('fills in the documented defaults', () => {
    const c = resolveServerConfig();
    expect(c).toMatchObject({
      connectTimeout: 10_000,
      allow: [],
      deny: [],
      allowLibraryMode: false,
      limits: {
        maxPeers: 32,
        maxSessions: 256,
        maxSessionsPerPeer: 8,
        maxTunnelsPerSession: 32,
        maxStreamsPerSession: 1024,
        maxBufferedBytesPerPeer: 32 * 1024 * 1024,
        maxBufferedBytes: 256 * 1024 * 1024,
        handshakeTimeout: 10_000,
        idleSessionTimeout: 1_800_000,
        maxAssociationsPerPeer: 64,
        associationIdleTimeout: 120_000,
      },
    });
    expect(c.limits).toEqual(DEFAULT_LIMITS);
    expect(DEFAULT_SERVER_CONFIG.limits).toBe(DEFAULT_LIMITS);
    expect(Object.isFrozen(c) && Object.isFrozen(c.limits) && Object.isFrozen(c.allow)).toBe(true);
  });

  it('compiles the policy from allow and deny, defaults included', () => {
    const c = resolveServerConfig({ allow: ['127.0.0.1:8080'], deny: ['8.8.8.8'] });
    expect(c.policy.check('127.0.0.1', 8080).allowed).toBe(true);
    expect(c.policy.check('127.0.0.1', 8081).allowed).toBe(false);
    expect(c.policy.check('8.8.8.8', 53).allowed).toBe(false);
    expect(c.policy.check('1.1.1.1', 53).allowed).toBe(true);
  });

  it('keeps given values and merges partial limits with the defaults', () => {
    const c = resolveServerConfig({ connectTimeout: 2_500, allowLibraryMode: true, limits: { maxPeers: 4, idleSessionTimeout: 0 } });
    expect(c.connectTimeout).toBe(2_500);
    expect(c.allowLibraryMode).toBe(true);
    expect(c.limits.maxPeers).toBe(4);
    expect(c.limits.idleSessionTimeout).toBe(0);
    expect(c.limits.maxSessions).toBe(DEFAULT_LIMITS.maxSessions);
  });

  it('accepts the bounds', () => {
    expect(() => resolveServerConfig({ connectTimeout: 1 })).not.toThrow();
    expect(() => resolveServerConfig({ connectTimeout: 2 ** 31 - 1 })).not.toThrow();
    expect(() => resolveServerConfig({ limits: { maxTunnelsPerSession: 65_535, maxStreamsPerSession: 2 ** 31 } })).not.toThrow();
  });

  it.each<[string, unknown, RegExp]>([
    ['connectTimeout', 0, /connectTimeout: must be an integer 1–2147483647 ms, got 0/],
    ['connectTimeout', -5, /connectTimeout/],
    ['connectTimeout', 1.5, /connectTimeout/],
    ['connectTimeout', 2 ** 31, /connectTimeout/],
    ['connectTimeout', Number.NaN, /connectTimeout/],
    ['connectTimeout', Infinity, /connectTimeout/],
    ['connectTimeout', '10000', /connectTimeout: .* got "10000"/],
    ['allowLibraryMode', 'yes', /allowLibraryMode: must be true or false, got "yes"/],
    ['proxyProtocol', 1, /proxyProtocol: must be true or false, got 1/],
    ['allow', '10.0.0.0/8', /allow: must be an array of rule strings/],
    ['deny', { a: 1 }, /deny: must be an array/],
    ['limits', 5, /limits: must be an object/],
    ['limits', [], /limits: must be an object, got an array/],
  ])('rejects %s = %j', (option, value, why) => {
    const run = () => resolveServerConfig({ [option]: value } as ServerConfigInput);
    expect(run).toThrow(ConfigError);
    expect(run).toThrow(why);
  });

  it.each<[string, unknown]>([
    ['maxPeers', 0],
    ['maxSessions', -1],
    ['maxSessionsPerPeer', 2.5],
    ['maxTunnelsPerSession', 65_537],
    ['maxStreamsPerSession', 2 ** 31 + 1],
    ['maxBufferedBytesPerPeer', 0],
    ['maxBufferedBytes', 1024],
    ['maxBufferedBytes', -1],
    ['handshakeTimeout', 0],
    ['handshakeTimeout', 2 ** 31],
    ['idleSessionTimeout', -1],
    ['idleSessionTimeout', '30m'],
    ['maxHandshakes', 0],
    ['maxHandshakesPerAddress', 0],
  ])('rejects limits.%s = %j, naming the option', (key, value) => {
    const run = () => resolveServerConfig({ limits: { [key]: value } });
    expect(run).toThrow(ConfigError);
    expect(run).toThrow(new RegExp(`^invalid server option limits\\.${key}: must be`));
  });

  it('proxyProtocol is off by default; the handshake caps default to 256 and 32, the per-address one at most the other', () => {
    const c = resolveServerConfig();
    expect(c.proxyProtocol).toBe(false);
    expect(c.limits).toMatchObject({ maxHandshakes: 256, maxHandshakesPerAddress: 32 });
    expect(resolveServerConfig({ proxyProtocol: true, limits: { maxHandshakes: 8, maxHandshakesPerAddress: 8 } }).proxyProtocol).toBe(true);
    expect(() => resolveServerConfig({ limits: { maxHandshakes: 8 } })).toThrow(
      'invalid server option limits.maxHandshakesPerAddress: must be at most limits.maxHandshakes (8), got 32',
    );
  });

  it('says 0 disables the idle timeout in its error', () => {
    expect(() => resolveServerConfig({ limits: { idleSessionTimeout: -1 } })).toThrow(/0 \(disabled\) or an integer/);
  });

  it('rejects unknown options, so a typo is not ignored', () => {
    expect(() => resolveServerConfig({ conectTimeout: 5 } as ServerConfigInput)).toThrow(/unknown server option conectTimeout/);
    expect(() => resolveServerConfig({ limits: { maxPeer: 5 } } as ServerConfigInput)).toThrow(/unknown server option limits\.maxPeer/);
  });

  it('reports a bad rule by list and index', () => {
    try {
      resolveServerConfig({ deny: ['10.0.0.0/8', '10.0.0.0/33'] });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).code).toBe(ErrorCode.CONFIG);
      expect((err as Error).message).toBe('invalid deny[1] rule "10.0.0.0/33": prefix length must be 0–32, got "33"');
    }
  });

  it('rejects a non-object', () => {
    expect(() => resolveServerConfig(null as unknown as ServerConfigInput)).toThrow(/server options must be an object/);
  });
});
