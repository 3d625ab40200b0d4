import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AuthMode,
  Decoder,
  FrameType,
  GkdError,
  HEADER_LENGTH,
  MAX_OFFSET,
  ReorderBuffer,
  decodeAll,
  encode,
  formatIPv4,
  formatIPv6,
  type Address,
  type Frame,
} from '../src/index.js';
import { Rng } from '@gkd/test-support';

/**
 * Fuzzing the decoder: valid frames, then the same bytes corrupted (bit flips, overwritten header
 * fields, huge declared lengths, inserted and deleted bytes, truncation), and pure noise, each fed in
 * at random split points. Whatever the input, the decoder may only return frames or throw a GkdError
 * (never a TypeError, RangeError…), never holds more than one header plus maxBody, stays poisoned
 * after an error, and only returns frames the encoder can write back.
 *
 * FUZZ_SEED and FUZZ_CASES (environment) replay a failure or run longer.
 */
const SEED = Number(process.env.FUZZ_SEED ?? 0x6b64);
const CASES = Number(process.env.FUZZ_CASES ?? 120_000);

type Rand = () => number;
/** A `Rand` drawing from the shared seeded PRNG. */
const prng = (seed: number): Rand => {
  const rng = new Rng(seed);
  return () => rng.float();
};
/** An integer in [min, max]. */
const between = (rand: Rand, min: number, max: number): number => min + Math.floor(rand() * (max - min + 1));

const pick = <T>(rand: Rand, items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
const randBytes = (rand: Rand, n: number) => {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (rand() * 256) | 0;
  return b;
};
const u32 = (rand: Rand) => Math.floor(rand() * 2 ** 32);

const CHARS = ['a', 'Z', '0', ' ', '.', '-', 'é', 'ß', '€', '中', '😀', '\u0000', '\ufeff', '\ufffd'];
function randText(rand: Rand, maxChars: number, maxBytes = Infinity, allowNul = true): string {
  let s = '';
  const n = between(rand, 0, maxChars);
  for (let i = 0; i < n; i++) {
    const c = pick(rand, CHARS);
    if (!allowNul && c === '\u0000') continue;
    if (Buffer.byteLength(s + c) > maxBytes) break;
    s += c;
  }
  return s;
}

function randAddress(rand: Rand): Address | null {
  const port = pick(rand, [0, 1, 80, 443, 65535, between(rand, 0, 65535)]);
  switch (between(rand, 0, 3)) {
    case 0:
      return null;
    case 1:
      return { type: 'ipv4', host: formatIPv4(randBytes(rand, 4)), port };
    case 2: {
      const b = randBytes(rand, 16);
      if (rand() < 0.5) b.fill(0, between(rand, 0, 15), between(rand, 0, 16)); // zero runs
      return { type: 'ipv6', host: formatIPv6(b), port };
    }
    default: {
      const host = rand() < 0.05 ? 'd'.repeat(255) : randText(rand, 40, 255, false) || 'x';
      return { type: 'domain', host, port };
    }
  }
}

const STREAMS = [1, 2, 3, 0xffffffff];
const OFFSETS = [0, 1, 2 ** 32 - 1, 2 ** 32, MAX_OFFSET];
const WINDOWS = [0, 1, 65536, 0xffffffff];

/** A random valid frame of any type, fields often at their edges. */
function randFrame(rand: Rand): Frame {
  const stream = rand() < 0.5 ? pick(rand, STREAMS) : Math.max(1, u32(rand));
  const offset = rand() < 0.5 ? pick(rand, OFFSETS) : Math.floor(rand() * MAX_OFFSET);
  const window = rand() < 0.5 ? pick(rand, WINDOWS) : u32(rand);
  const reason = between(rand, 0, 255);
  const message = randText(rand, rand() < 0.1 ? 300 : 10);
  switch (between(rand, 0, 15)) {
    case 0:
      return { type: FrameType.CHALLENGE, nonce: randBytes(rand, 32), flags: between(rand, 0, 255) };
    case 1:
      return {
        type: FrameType.AUTH,
        mode: rand() < 0.5 ? AuthMode.NEW : AuthMode.JOIN,
        sessionId: randBytes(rand, 16),
        tunnelIndex: between(rand, 0, 65535),
        clientNonce: randBytes(rand, 32),
        user: randText(rand, rand() < 0.1 ? 200 : 8, 255),
        proof: randBytes(rand, 32),
      };
    case 2:
      return { type: FrameType.WELCOME, proof: randBytes(rand, 32), maxBody: u32(rand), maxStreams: u32(rand), maxTunnels: 1 + Math.floor(rand() * 65_535) };
    case 3:
      return { type: FrameType.REJECT, reason, message };
    case 4:
    case 5: {
      const r = rand();
      const len = r < 0.9 ? between(rand, 1, 64) : r < 0.999 ? between(rand, 65, 4096) : 65536;
      return { type: FrameType.DATA, stream, offset, payload: randBytes(rand, len) };
    }
    case 6:
      return { type: FrameType.ACK, stream, ack: offset, window };
    case 7:
      return { type: FrameType.OPEN, stream, window, destination: randAddress(rand) };
    case 8:
      return { type: FrameType.OPEN_OK, stream, window };
    case 9:
      return { type: FrameType.OPEN_FAIL, stream, reason, message };
    case 10:
      return { type: FrameType.FIN, stream, offset };
    case 11:
      return { type: FrameType.RST, stream, reason, message };
    case 12:
      return { type: rand() < 0.5 ? FrameType.PING : FrameType.PONG, id: u32(rand) };
    case 13: {
      const len = rand() < 0.95 ? between(rand, 0, 64) : between(rand, 65, 2048);
      const address = randAddress(rand) ?? { type: 'ipv4', host: '127.0.0.1', port: 53 };
      return { type: FrameType.DATAGRAM, association: stream, address, payload: randBytes(rand, len) };
    }
    case 14:
      return { type: FrameType.DATAGRAM_CLOSE, association: stream, reason, message };
    default:
      return { type: FrameType.GOAWAY, reason, message };
  }
}

/** Corrupt `wire` in place or by copy, 1–4 times. */
function mutate(rand: Rand, input: Buffer, frameStarts: number[]): Buffer {
  let wire = Buffer.from(input);
  const n = between(rand, 1, 4);
  for (let m = 0; m < n && wire.length > 0; m++) {
    const at = between(rand, 0, wire.length - 1);
    const frameAt = pick(rand, frameStarts);
    switch (between(rand, 0, 9)) {
      case 0: // flip a bit
        wire[at]! ^= 1 << between(rand, 0, 7);
        break;
      case 1: // a random byte
        wire[at] = between(rand, 0, 255);
        break;
      case 2: // a huge or random declared length
        if (frameAt + HEADER_LENGTH <= wire.length)
          wire.writeUInt32BE(pick(rand, [0xffffffff, 0x80000000, 65545, 65544, 0, u32(rand), between(rand, 0, 300)]), frameAt + 8);
        break;
      case 3: // another type
        if (frameAt + 1 < wire.length) wire[frameAt + 1] = rand() < 0.5 ? pick(rand, Object.values(FrameType)) : between(rand, 0, 255);
        break;
      case 4: // another version
        if (frameAt < wire.length) wire[frameAt] = pick(rand, [0, 2, 0xff]);
        break;
      case 5: // another stream id (often the wrong kind)
        if (frameAt + 8 <= wire.length) wire.writeUInt32BE(pick(rand, [0, 1, 0xffffffff, u32(rand)]), frameAt + 4);
        break;
      case 6: // truncate
        wire = wire.subarray(0, at);
        break;
      case 7: // insert random bytes
        wire = Buffer.concat([wire.subarray(0, at), randBytes(rand, between(rand, 1, 16)), wire.subarray(at)]);
        break;
      case 8: // delete bytes
        wire = Buffer.concat([wire.subarray(0, at), wire.subarray(at + between(rand, 1, 16))]);
        break;
      default: // a body byte near a length or type field set to an edge value
        wire[at] = pick(rand, [0x00, 0x01, 0x03, 0x04, 0x7f, 0x80, 0xc0, 0xff]);
    }
  }
  return wire;
}

/** Pure noise, usually with a plausible first header so it gets past the first checks. */
function noise(rand: Rand): Buffer {
  const b = randBytes(rand, between(rand, 0, 120));
  if (b.length >= 2 && rand() < 0.8) {
    b[0] = 1;
    b[1] = pick(rand, Object.values(FrameType));
    if (b.length >= 12 && rand() < 0.7) b.writeUInt32BE(between(rand, 0, b.length), 8);
  }
  return b;
}

/** Cut `wire` into 1–6 pieces at random points (sometimes into single bytes). */
function splits(rand: Rand, wire: Buffer): Buffer[] {
  if (rand() < 0.02) return Array.from(wire, (_, i) => wire.subarray(i, i + 1));
  const cuts = Array.from({ length: between(rand, 0, 5) }, () => between(rand, 0, wire.length)).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts, wire.length]) {
    out.push(wire.subarray(prev, c));
    prev = c;
  }
  return out;
}

interface Stats {
  cases: number;
  valid: number;
  mutated: number;
  noise: number;
  frames: number;
  pushes: number;
  errors: Map<string, number>;
}

function fail(message: string, seed: number, caseNo: number): never {
  throw new Error(`${message} (FUZZ_SEED=${seed}, case ${caseNo})`);
}

/** Feed `wire` in pieces; check every invariant. Returns the frames, or the GkdError that ended it. */
function feed(rand: Rand, wire: Buffer, maxBody: number, stats: Stats, seed: number, caseNo: number): { frames: Frame[]; error: GkdError | null } {
  const d = new Decoder({ maxBody });
  const frames: Frame[] = [];
  for (const piece of splits(rand, wire)) {
    stats.pushes++;
    let got: Frame[];
    try {
      got = d.push(piece);
    } catch (err) {
      if (!(err instanceof GkdError)) fail(`non-GkdError thrown: ${String(err)}`, seed, caseNo);
      if (d.bufferedBytes !== 0) fail('error left bytes buffered', seed, caseNo);
      // Poisoned: every later push rethrows the same error.
      try {
        d.push(Buffer.from([1, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]));
        fail('decoder not poisoned after an error', seed, caseNo);
      } catch (again) {
        if (again !== err) fail('poisoned decoder threw a different error', seed, caseNo);
      }
      stats.errors.set(err.name, (stats.errors.get(err.name) ?? 0) + 1);
      return { frames, error: err };
    }
    if (d.bufferedBytes > HEADER_LENGTH + maxBody) fail(`bufferedBytes ${d.bufferedBytes} > 12 + ${maxBody}`, seed, caseNo);
    for (const f of got) {
      // Anything the decoder accepts, the encoder can write, and that is a fixed point.
      let again: Buffer;
      try {
        again = encode(f);
      } catch (err) {
        fail(`decoded frame cannot be re-encoded: ${String(err)}`, seed, caseNo);
      }
      const third = encode(decodeAll(again, { maxBody: Math.max(maxBody, again.length) })[0]!);
      if (!third.equals(again)) fail('decode/encode is not a fixed point', seed, caseNo);
      frames.push(f);
    }
  }
  stats.frames += frames.length;
  return { frames, error: null };
}

describe('decoder fuzz', () => {
  it(`${CASES} random, mutated and noise inputs at random split points: only GkdErrors, bounded buffering`, () => {
    const rand = prng(SEED);
    const stats: Stats = { cases: 0, valid: 0, mutated: 0, noise: 0, frames: 0, pushes: 0, errors: new Map() };
    const t0 = performance.now();
    for (let c = 0; c < CASES; c++) {
      stats.cases++;
      const kind = rand();
      const maxBody = rand() < 0.7 ? 65544 : pick(rand, [64, 65, 100, 300, 4096, between(rand, 64, 70000)]);
      if (kind < 0.1) {
        stats.noise++;
        feed(rand, noise(rand), maxBody, stats, SEED, c);
        continue;
      }
      const frames = Array.from({ length: between(rand, 1, 6) }, () => randFrame(rand));
      const encoded = frames.map(encode);
      const starts: number[] = [];
      let pos = 0;
      for (const e of encoded) {
        starts.push(pos);
        pos += e.length;
      }
      const wire = Buffer.concat(encoded);
      if (kind < 0.35) {
        // Valid input with a limit that fits: exactly the same frames come out.
        stats.valid++;
        const fits = Math.max(64, ...encoded.map((e) => e.length - HEADER_LENGTH));
        const { frames: out, error } = feed(rand, wire, Math.max(maxBody, fits), stats, SEED, c);
        if (error) fail(`valid input rejected: ${error.message}`, SEED, c);
        if (!Buffer.concat(out.map(encode)).equals(wire)) fail('valid input decoded differently', SEED, c);
      } else {
        stats.mutated++;
        feed(rand, mutate(rand, wire, starts), maxBody, stats, SEED, c);
      }
    }
    const ms = performance.now() - t0;
    const errors = [...stats.errors].map(([k, v]) => `${k} ${v}`).join(', ');
    console.log(
      `decoder fuzz: ${stats.cases} cases (${stats.valid} valid, ${stats.mutated} mutated, ${stats.noise} noise), ` +
        `${stats.pushes} pushes, ${stats.frames} frames, errors: ${errors}; seed ${SEED}, ${ms.toFixed(0)} ms`,
    );
    expect(stats.cases).toBeGreaterThanOrEqual(100_000);
    // Every kind of rejection was reached.
    for (const name of ['ProtocolError', 'BadVersionError', 'UnknownTypeError', 'FrameTooLargeError'])
      expect(stats.errors.get(name) ?? 0, name).toBeGreaterThan(500);
  });

  it('fast-check: arbitrary bytes in arbitrary pieces never throw anything but a GkdError', () => {
    let runs = 0;
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }),
        fc.boolean(),
        fc.integer({ min: 64, max: 1000 }),
        (pieces, plausible, maxBody) => {
          runs++;
          if (plausible && pieces[0] && pieces[0].length >= 2) {
            pieces[0][0] = 1;
            pieces[0][1] = Object.values(FrameType)[pieces[0][1]! % 14]!;
          }
          const d = new Decoder({ maxBody });
          try {
            for (const p of pieces) {
              d.push(p);
              if (d.bufferedBytes > HEADER_LENGTH + maxBody) return false;
            }
          } catch (err) {
            return err instanceof GkdError;
          }
          return true;
        },
      ),
      { numRuns: 5000, seed: SEED },
    );
    expect(runs).toBe(5000);
  });

  it('fast-check: the reorder buffer throws only GkdErrors on arbitrary (valid-typed) input', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 500 }), fc.array(fc.tuple(fc.nat(600), fc.integer({ min: 0, max: 80 })), { maxLength: 60 }), (window, segments) => {
        const rb = new ReorderBuffer({ window, maxSegments: 8 });
        for (const [off, len] of segments) {
          try {
            rb.insert(off, Buffer.alloc(len));
          } catch (err) {
            if (!(err instanceof GkdError)) return false;
          }
          if (rb.size > rb.limit - rb.next || rb.depth > 8) return false;
        }
        return true;
      }),
      { numRuns: 3000, seed: SEED },
    );
  });
});
