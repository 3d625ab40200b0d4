import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AuthMode, PROOF_LENGTH, authProof, proofEquals, sessionSecret, welcomeProof, type ProofInput } from '../src/index.js';

const key = Buffer.alloc(32, 0x4b);
const base: ProofInput = {
  mode: AuthMode.NEW,
  serverNonce: Buffer.alloc(32, 0x01),
  clientNonce: Buffer.alloc(32, 0x02),
  sessionId: Buffer.alloc(16, 0x03),
  tunnelIndex: 0,
  user: '',
};

/** PROTOCOL.md §4, written out independently: HMAC(k, "gkd/1 <label>\0" ‖ (u16 len ‖ bytes) for each input). */
function specProof(k: Buffer, label: string, i: ProofInput): Buffer {
  const idx = Buffer.alloc(2);
  idx.writeUInt16BE(i.tunnelIndex);
  const inputs = [Buffer.from([i.mode]), i.serverNonce, i.clientNonce, i.sessionId, idx, Buffer.from(i.user, 'utf8')];
  const bound = inputs.map((b) => {
    const len = Buffer.alloc(2);
    len.writeUInt16BE(b.length);
    return Buffer.concat([len, b]);
  });
  return createHmac('sha256', k)
    .update(Buffer.concat([Buffer.from(`gkd/1 ${label}\0`), ...bound]))
    .digest();
}

describe('handshake proofs', () => {
  it('follow PROTOCOL.md §4 exactly (labels, order, length binding)', () => {
    const secret = sessionSecret(key, base);
    expect(authProof(key, base)).toEqual(specProof(key, 'auth-new', base));
    expect(sessionSecret(key, base)).toEqual(specProof(key, 'session-secret', base));
    expect(welcomeProof(key, base)).toEqual(specProof(key, 'welcome', base));
    const join = { ...base, mode: AuthMode.JOIN, tunnelIndex: 3, user: 'ålice' };
    expect(authProof(secret, join)).toEqual(specProof(secret, 'auth-join', join));
    expect(welcomeProof(secret, join)).toEqual(specProof(secret, 'welcome', join));
  });

  it('known answers, computed outside Node (Python hmac) from the PROTOCOL.md text', () => {
    expect(authProof(key, base).toString('hex')).toBe('31b446148aa9b9945c48919d0769e1d9f17f14ed81008d9699715104d0436169');
    expect(welcomeProof(key, base).toString('hex')).toBe('ee916be84c7c3feb9fe4fa9962502e82bb19dd610f513ae30f3390a94a30e941');
    expect(sessionSecret(key, base).toString('hex')).toBe('7cacb2bd890602bf5ab2b92e86f13d8f414d7cc99ef3069324d6ac43a51d1926');
  });

  it('are 32 bytes and deterministic', () => {
    for (const f of [authProof, welcomeProof, sessionSecret]) {
      expect(f(key, base)).toHaveLength(PROOF_LENGTH);
      expect(f(key, base)).toEqual(f(key, { ...base, serverNonce: Buffer.from(base.serverNonce) }));
    }
  });

  const variants: Array<[string, Buffer, ProofInput]> = [
    ['base', key, base],
    ['mode', key, { ...base, mode: AuthMode.JOIN }],
    ['server nonce', key, { ...base, serverNonce: Buffer.alloc(32, 0x09) }],
    ['server nonce, last bit', key, { ...base, serverNonce: Buffer.concat([Buffer.alloc(31, 0x01), Buffer.from([0x00])]) }],
    ['client nonce', key, { ...base, clientNonce: Buffer.alloc(32, 0x09) }],
    ['session id', key, { ...base, sessionId: Buffer.alloc(16, 0x09) }],
    ['tunnel index 1', key, { ...base, tunnelIndex: 1 }],
    ['tunnel index 256', key, { ...base, tunnelIndex: 256 }],
    ['tunnel index 65535', key, { ...base, tunnelIndex: 65535 }],
    ['user a', key, { ...base, user: 'a' }],
    ['user b', key, { ...base, user: 'b' }],
    ['user of 255 bytes', key, { ...base, user: 'u'.repeat(255) }],
    ['key', Buffer.alloc(32, 0x4c), base],
    ['short key', Buffer.from('k'), base],
    // Length binding: moving bytes between adjacent inputs changes the proof.
    [
      'bytes moved from client nonce to session id',
      key,
      { ...base, clientNonce: Buffer.alloc(31, 0x02), sessionId: Buffer.concat([Buffer.from([0x02]), Buffer.alloc(16, 0x03)]) },
    ],
    [
      'bytes moved from server to client nonce',
      key,
      { ...base, serverNonce: Buffer.alloc(31, 0x01), clientNonce: Buffer.concat([Buffer.from([0x01]), Buffer.alloc(32, 0x02)]) },
    ],
  ];

  it.each([
    ['authProof', authProof],
    ['welcomeProof', welcomeProof],
    ['sessionSecret', sessionSecret],
  ] as const)('%s differs whenever any input or the key differs', (_name, f) => {
    const seen = new Map<string, string>();
    for (const [name, k, input] of variants) {
      const hex = f(k, input).toString('hex');
      expect(seen.get(hex), `${name} collides with ${seen.get(hex)}`).toBeUndefined();
      seen.set(hex, name);
    }
    expect(seen.size).toBe(variants.length);
  });

  it('NEW, JOIN, WELCOME and the session secret use separate labels: no output can stand in for another', () => {
    // Same key, same inputs apart from the mode byte: every function gives a different value.
    const outs = [
      authProof(key, base),
      authProof(key, { ...base, mode: AuthMode.JOIN }),
      welcomeProof(key, base),
      welcomeProof(key, { ...base, mode: AuthMode.JOIN }),
      sessionSecret(key, base),
    ].map((b) => b.toString('hex'));
    expect(new Set(outs).size).toBe(outs.length);
    // The labels differ even with the mode byte held equal: a NEW-labelled HMAC over JOIN inputs
    // is not the JOIN proof, so a NEW proof can never be replayed as a JOIN proof.
    const join = { ...base, mode: AuthMode.JOIN };
    expect(authProof(key, join)).toEqual(specProof(key, 'auth-join', join));
    expect(authProof(key, join)).not.toEqual(specProof(key, 'auth-new', join));
    expect(authProof(key, base)).not.toEqual(specProof(key, 'auth-join', base));
  });

  it('a JOIN proof needs the session secret, not the key', () => {
    const secret = sessionSecret(key, base);
    const join = { ...base, mode: AuthMode.JOIN, serverNonce: Buffer.alloc(32, 0x77), tunnelIndex: 1 };
    expect(proofEquals(authProof(secret, join), authProof(key, join))).toBe(false);
    // The secret depends on every input of the NEW handshake.
    expect(sessionSecret(key, { ...base, serverNonce: Buffer.alloc(32, 0x55) })).not.toEqual(secret);
  });

  it('proofEquals compares in constant time and handles length mismatch', () => {
    const p = authProof(key, base);
    expect(proofEquals(p, Buffer.from(p))).toBe(true);
    const flipped = Buffer.from(p);
    flipped[31]! ^= 1;
    expect(proofEquals(p, flipped)).toBe(false);
    const first = Buffer.from(p);
    first[0]! ^= 0x80;
    expect(proofEquals(p, first)).toBe(false);
    expect(proofEquals(p, p.subarray(0, 31))).toBe(false);
    expect(proofEquals(p, Buffer.concat([p, Buffer.alloc(1)]))).toBe(false);
    expect(proofEquals(Buffer.alloc(0), Buffer.alloc(0))).toBe(true);
  });

  it('refuses a tunnel index outside u16', () => {
    expect(() => authProof(key, { ...base, tunnelIndex: 65536 })).toThrow(RangeError);
    expect(() => authProof(key, { ...base, tunnelIndex: -1 })).toThrow(RangeError);
  });
});
