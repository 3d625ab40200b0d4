import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  BadPrefaceError,
  ErrorCode,
  PREFACE_LENGTH,
  PrefaceDecoder,
  ROUTING_TOKEN_LENGTH,
  Reason,
  decodePreface,
  encodePreface,
  newRoutingToken,
} from '../src/index.js';
import { Rng } from '@gkd/test-support';

const hex = (s: string) => Buffer.from(s.replace(/ /g, ''), 'hex');
const TOKEN = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
/** PROTOCOL.md §4.1's fixture, copied on purpose: the spec and the codec must change together. */
const FIXTURE = '47 4b 44 02 00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff';

describe('routing preface codec', () => {
  it('encodes the PROTOCOL.md fixture byte for byte, and the document still shows it', () => {
    expect(encodePreface(TOKEN)).toEqual(hex(FIXTURE));
    const doc = readFileSync(new URL('../../../PROTOCOL.md', import.meta.url), 'utf8');
    expect(doc).toContain(`\`${FIXTURE}\``);
  });

  it('round-trips edge tokens (all zero, all 0xff, random)', () => {
    for (const token of [Buffer.alloc(16), Buffer.alloc(16, 0xff), newRoutingToken()]) {
      const r = decodePreface(encodePreface(token));
      expect(r.token).toEqual(token);
      expect(r.rest.length).toBe(0);
    }
  });

  it('returns the bytes after the preface untouched (the start of TLS or AUTH)', () => {
    const after = Buffer.from([0x16, 0x03, 0x01, 0x00]);
    const r = decodePreface(Buffer.concat([encodePreface(TOKEN), after]));
    expect(r.token).toEqual(TOKEN);
    expect(r.rest).toEqual(after);
  });

  it('decodes at every split point of one chunk, and byte by byte', () => {
    const wire = Buffer.concat([encodePreface(TOKEN), Buffer.from('AUTH')]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const d = new PrefaceDecoder();
      const first = d.push(wire.subarray(0, cut));
      const r = first ?? d.push(wire.subarray(cut));
      expect(r, `cut ${cut}`).not.toBeNull();
      expect(r!.token).toEqual(TOKEN);
      // The rest is what followed the 20 bytes in the chunk that completed them.
      expect(Buffer.concat([r!.rest, first ? wire.subarray(cut) : Buffer.alloc(0)])).toEqual(Buffer.from('AUTH'));
    }
    const d = new PrefaceDecoder();
    let r = null;
    for (const byte of encodePreface(TOKEN)) {
      expect(r).toBeNull();
      r = d.push(Buffer.from([byte]));
    }
    expect(r!.token).toEqual(TOKEN);
  });

  it('refuses a version-1 AUTH and a bare TLS ClientHello at their first byte, with a hint', () => {
    for (const [first, hint] of [
      [0x01, 'version-1 client'],
      [0x16, 'TLS ClientHello'],
    ] as const) {
      const d = new PrefaceDecoder();
      let err: unknown;
      try {
        d.push(Buffer.from([first]));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BadPrefaceError);
      expect((err as BadPrefaceError).code).toBe(ErrorCode.BAD_PREFACE);
      expect((err as BadPrefaceError).reason).toBe(Reason.BAD_VERSION);
      expect((err as Error).message).toContain(hint);
      expect(d.bufferedBytes).toBe(0);
      // Poisoned: the same error again.
      expect(() => d.push(encodePreface(TOKEN))).toThrow(err as Error);
    }
  });

  it('refuses another version octet after the magic', () => {
    for (const v of [0x00, 0x01, 0x03, 0xff]) {
      const wire = encodePreface(TOKEN);
      wire[3] = v;
      expect(() => decodePreface(wire)).toThrow(/unsupported protocol version/);
    }
  });

  it('refuses a wrong byte anywhere in the magic', () => {
    for (let at = 0; at < 3; at++) {
      const wire = encodePreface(TOKEN);
      wire[at] = wire[at]! ^ 0x20;
      expect(() => decodePreface(wire)).toThrow(BadPrefaceError);
    }
  });

  it('random bytes never throw anything but BadPrefaceError, and never buffer more than 20 bytes', () => {
    const r = new Rng(19);
    const rng = () => r.float();
    for (let n = 0; n < 5_000; n++) {
      const len = Math.floor(rng() * 40);
      const bytes = Buffer.alloc(len);
      for (let i = 0; i < len; i++) bytes[i] = Math.floor(rng() * 256);
      // Half the time start with a valid magic and version, so the token path is exercised too.
      if (len >= 4 && rng() < 0.5) encodePreface(Buffer.alloc(16)).copy(bytes, 0, 0, 4);
      const d = new PrefaceDecoder();
      try {
        const r = d.push(bytes);
        if (r) {
          expect(r.token).toEqual(bytes.subarray(4, 20));
          expect(r.rest).toEqual(bytes.subarray(20));
        } else expect(len).toBeLessThan(PREFACE_LENGTH);
      } catch (err) {
        expect(err).toBeInstanceOf(BadPrefaceError);
      }
      expect(d.bufferedBytes).toBeLessThanOrEqual(PREFACE_LENGTH);
    }
  });

  it('makes a fresh random token per call, and refuses a token of the wrong length', () => {
    const a = newRoutingToken();
    expect(a.length).toBe(ROUTING_TOKEN_LENGTH);
    expect(newRoutingToken()).not.toEqual(a);
    expect(() => encodePreface(Buffer.alloc(15))).toThrow(RangeError);
    expect(() => decodePreface(Buffer.alloc(3, 0x47))).toThrow();
  });
});
