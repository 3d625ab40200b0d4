/**
 * Hostile frames for an authenticated peer, in three classes, by what the server must do with them
 * (PROTOCOL.md §1–§6 and the reference implementation):
 *
 * - tolerated: the tunnel survives. PING/PONG with any id, GOAWAY, every stream frame for an id the
 *   session has opened (live or ended, any offset/ack/window/reason/message the codec accepts; a
 *   stream may be reset, the tunnel not), OPENs to denied, unresolvable and library-mode
 *   destinations, repeated and even-id OPENs, random reserved flags.
 * - fatal: the server must close the tunnel. Bad version, unknown type, a declared length over the
 *   maximum (up to 4 GiB), the stream-id rule broken, malformed bodies, u64 over 2^53, handshake
 *   frames after the handshake, stream frames for ids never opened (another peer's, say), bad addresses.
 * - wild: random bytes, and valid frames with random bytes flipped or cut: anything may happen
 *   except a crash; the attacker ends its side after one.
 *
 * Every OPEN the fuzzer sends names a destination the server's policy denies, a name its resolver
 * refuses, or the `hold` destination; never the canary (kept for unauthenticated frames).
 */
import { hostname } from 'node:os';
import { FrameType, MAX_OFFSET, Reason, encode, type Address, type Frame } from '@gkd/protocol';
import type { Rng } from '../prng.js';

/** Ports of the destination process the fuzzer must know about. */
export interface FuzzPorts {
  /** Allowed; the only destination the fuzzer dials on purpose. */
  hold: number;
  /** Listening, denied by the policy. */
  forbidden: number;
  /** Every port the policy allows on 127.0.0.1 (never named with another destination). */
  allowed: readonly number[];
}

/** One generated frame (or byte string) and what it is. */
export interface Generated {
  bytes: Buffer;
  kind: string;
  /** The frame ends the whole session (GOAWAY NORMAL), not only the tunnel. */
  endsSession?: boolean;
}

const KNOWN_TYPES = new Set<number>(Object.values(FrameType));
const STREAM_TYPES = [FrameType.DATA, FrameType.ACK, FrameType.OPEN_OK, FrameType.OPEN_FAIL, FrameType.FIN, FrameType.RST] as const;
/** Names that resolve (hosts file or numeric forms) into loopback, which the policy denies off the allowed ports. */
const LOOPBACK_NAMES = ['localhost', 'LOCALHOST.', 'localhost.', '0x7f000001', '2130706433', '127.1', '0177.0.0.1', '127.0.0.1.', hostname()];

/** A 12-byte header followed by `body`, with any field values (no checks). */
export function rawFrame(version: number, type: number, flags: number, stream: number, body: Buffer, declaredLength = body.length): Buffer {
  const b = Buffer.allocUnsafe(12 + body.length);
  b[0] = version & 0xff;
  b[1] = type & 0xff;
  b.writeUInt16BE(flags & 0xffff, 2);
  b.writeUInt32BE(stream >>> 0, 4);
  b.writeUInt32BE(declaredLength >>> 0, 8);
  body.copy(b, 12);
  return b;
}

export class FrameFuzzer {
  /** Highest odd stream id this session has sent an OPEN for (every id ≤ it is "known" to the server). */
  maxOpened = 0;
  /** Generated frames by kind. */
  readonly kinds = new Map<string, number>();
  /** Streams the server accepted (OPEN_OK) and has not reset, as far as the attacker has seen. */
  readonly live = new Set<number>();

  constructor(
    private readonly rng: Rng,
    private readonly ports: FuzzPorts,
    private readonly maxBody: number,
  ) {}

  private note(kind: string): string {
    this.kinds.set(kind, (this.kinds.get(kind) ?? 0) + 1);
    return kind;
  }

  /** Encode, and sometimes set the reserved flags (receivers ignore them). */
  private enc(f: Frame): Buffer {
    const b = encode(f);
    if (this.rng.chance(0.15)) b.writeUInt16BE(this.rng.int(0x10000), 2);
    return b;
  }

  private message(): string {
    // Messages are only for people: invalid UTF-8 is shown as U+FFFD, not refused; ≤ 255 bytes.
    const n = this.rng.chance(0.7) ? this.rng.int(16) : this.rng.int(256);
    return this.rng.bytes(n).toString('latin1');
  }

  private offset(): number {
    const r = this.rng.float();
    if (r < 0.3) return this.rng.int(256 * 1024); // inside a fresh stream's window
    if (r < 0.6) return this.rng.int(1 << 20);
    if (r < 0.85) return this.rng.int(0x1_0000_0000);
    return this.rng.int(MAX_OFFSET);
  }

  private payload(): Buffer {
    return this.rng.bytes(this.rng.chance(0.9) ? this.rng.range(1, 64) : this.rng.range(1, 4096));
  }

  /** An odd id the session has opened: a live (accepted) one a third of the time, else recent ones more often. */
  private knownId(): number {
    if (this.live.size > 0 && this.rng.chance(0.33)) {
      const ids = [...this.live];
      return ids[this.rng.int(ids.length)]!;
    }
    const span = Math.min(this.maxOpened, this.rng.chance(0.8) ? 64 : this.maxOpened);
    return Math.max(1, this.maxOpened - 2 * this.rng.int(Math.max(1, Math.floor(span / 2))));
  }

  /** A destination the server will not dial (or `hold`, which it will). */
  private destination(): { dest: Address | null; kind: string } {
    const r = this.rng.float();
    const notAllowedPort = () => {
      for (;;) {
        const p = this.rng.chance(0.5) ? this.ports.forbidden : this.rng.int(65536);
        if (!this.ports.allowed.includes(p)) return p;
      }
    };
    if (r < 0.3) return { dest: { type: 'ipv4', host: '127.0.0.1', port: this.ports.hold }, kind: 'open-hold' };
    if (r < 0.5) {
      // Any IPv4 address: outside 127/8 the deny rules refuse it, inside only 127.0.0.1:allowed is allowed.
      const host = [this.rng.int(256), this.rng.int(256), this.rng.int(256), this.rng.int(256)].join('.');
      const port = host === '127.0.0.1' ? notAllowedPort() : this.rng.int(65536);
      return { dest: { type: 'ipv4', host, port }, kind: 'open-ipv4-denied' };
    }
    if (r < 0.6) {
      const groups = Array.from({ length: 8 }, () => this.rng.int(0x10000).toString(16));
      const host = this.rng.chance(0.3) ? `::ffff:127.0.0.1` : groups.join(':');
      return { dest: { type: 'ipv6', host, port: this.rng.chance(0.5) ? this.ports.hold : this.rng.int(65536) }, kind: 'open-ipv6-denied' };
    }
    if (r < 0.75) {
      const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789-.';
      const len = this.rng.range(1, 60);
      let host = '';
      for (let i = 0; i < len; i++) host += alphabet[this.rng.int(alphabet.length)];
      if (this.rng.chance(0.2)) host = `${host}\u00e9\u4e2d`;
      return { dest: { type: 'domain', host, port: this.rng.int(65536) }, kind: 'open-name-unresolvable' };
    }
    if (r < 0.9) {
      return { dest: { type: 'domain', host: this.rng.pick(LOOPBACK_NAMES), port: notAllowedPort() }, kind: 'open-name-denied-range' };
    }
    return { dest: null, kind: 'open-library-mode' };
  }

  /** Forget the session's streams (for a new session). */
  reset(): void {
    this.maxOpened = 0;
    this.live.clear();
  }

  /** A frame the server must process without closing the tunnel. */
  tolerated(): Generated {
    const rng = this.rng;
    const r = rng.float();
    if (r < 0.1) return { bytes: this.enc({ type: FrameType.PING, id: rng.u32() }), kind: this.note('ping') };
    if (r < 0.18) return { bytes: this.enc({ type: FrameType.PONG, id: rng.u32() }), kind: this.note('pong-unsolicited') };
    if (r < 0.22 || this.maxOpened === 0) {
      if (this.maxOpened >= 0xffff_fff0) return { bytes: this.enc({ type: FrameType.PING, id: rng.u32() }), kind: this.note('ping') };
      // Client-opened ids are odd and increasing; gaps are allowed.
      const id = this.maxOpened === 0 ? 1 : Math.min(0xffff_ffff, this.maxOpened + 2 * (rng.chance(0.9) ? 1 : rng.range(1, 1000)));
      this.maxOpened = id;
      const { dest, kind } = this.destination();
      return { bytes: this.enc({ type: FrameType.OPEN, stream: id, window: rng.u32(), destination: dest }), kind: this.note(kind) };
    }
    if (r < 0.24) {
      // A repeated OPEN (answered with the stream's state), or an even id (this end opens no streams).
      const stream = rng.chance(0.6) ? this.knownId() : 2 * rng.range(1, 0x7fff_ffff);
      return {
        bytes: this.enc({ type: FrameType.OPEN, stream, window: rng.u32(), destination: this.destination().dest }),
        kind: this.note('open-repeat-or-even'),
      };
    }
    if (r < 0.242) {
      // Any reason but NORMAL, which ends the whole session (PROTOCOL.md §7): see fatal().
      const reason = rng.chance(0.2) ? Reason.SHUTDOWN : rng.range(1, 255);
      return { bytes: this.enc({ type: FrameType.GOAWAY, reason, message: this.message() }), kind: this.note('goaway') };
    }
    if (r < 0.27) {
      // UDP associations (PROTOCOL.md §5a): any id; the server opens up to its per-peer limit, refuses
      // the rest, relays only to destinations its policy allows (here: loopback ports nothing answers).
      const association = rng.chance(0.8) ? rng.range(1, 100) : rng.range(1, 0xffff_ffff);
      if (rng.chance(0.15)) {
        return {
          bytes: this.enc({ type: FrameType.DATAGRAM_CLOSE, association, reason: rng.int(256), message: this.message() }),
          kind: this.note('datagram-close'),
        };
      }
      const { dest, kind } = this.destination();
      const address = dest ?? { type: 'ipv4' as const, host: '10.0.0.1', port: 53 };
      return { bytes: this.enc({ type: FrameType.DATAGRAM, association, address, payload: rng.bytes(rng.int(1500)) }), kind: this.note(`datagram-${kind}`) };
    }
    const stream = this.knownId();
    switch (rng.pick(STREAM_TYPES)) {
      case FrameType.DATA:
        return { bytes: this.enc({ type: FrameType.DATA, stream, offset: this.offset(), payload: this.payload() }), kind: this.note('data-known-stream') };
      case FrameType.ACK:
        return { bytes: this.enc({ type: FrameType.ACK, stream, ack: this.offset(), window: rng.u32() }), kind: this.note('ack-known-stream') };
      case FrameType.FIN:
        return { bytes: this.enc({ type: FrameType.FIN, stream, offset: this.offset() }), kind: this.note('fin-known-stream') };
      case FrameType.RST:
        return { bytes: this.enc({ type: FrameType.RST, stream, reason: rng.int(256), message: this.message() }), kind: this.note('rst-known-stream') };
      case FrameType.OPEN_OK:
        return { bytes: this.enc({ type: FrameType.OPEN_OK, stream, window: rng.u32() }), kind: this.note('open-ok-known-stream') };
      default:
        return {
          bytes: this.enc({ type: FrameType.OPEN_FAIL, stream, reason: rng.int(256), message: this.message() }),
          kind: this.note('open-fail-known-stream'),
        };
    }
  }

  /** A frame after which the server must close the tunnel. */
  fatal(): Generated {
    const rng = this.rng;
    const unknownId = () => (rng.chance(0.7) ? this.maxOpened + 2 * rng.range(1, 1 << 20) : 2 * rng.range(1, 0x7fff_ffff));
    if (rng.chance(0.03)) {
      // The peer closes its own session for good: the server frees it at once (PROTOCOL.md §7).
      return {
        bytes: this.enc({ type: FrameType.GOAWAY, reason: Reason.NORMAL, message: this.message() }),
        kind: this.note('fatal-goaway-normal-ends-session'),
        endsSession: true,
      };
    }
    switch (rng.int(13)) {
      case 0: {
        let v = rng.int(256);
        if (v === 1) v = 0;
        return { bytes: rawFrame(v, FrameType.PING, 0, 0, Buffer.alloc(4)), kind: this.note('fatal-bad-version') };
      }
      case 1: {
        let t = rng.int(256);
        while (KNOWN_TYPES.has(t)) t = rng.int(256);
        return { bytes: rawFrame(1, t, 0, rng.chance(0.5) ? 0 : rng.u32(), rng.bytes(rng.int(32))), kind: this.note('fatal-unknown-type') };
      }
      case 2: {
        // A huge declared length: refused on the header, before a byte of body is buffered.
        const len = this.maxBody + 1 + rng.int(0xffff_ffff - this.maxBody);
        return {
          bytes: rawFrame(1, rng.pick([FrameType.DATA, FrameType.PING, FrameType.OPEN]), 0, 1, rng.bytes(rng.int(64)), len),
          kind: this.note('fatal-huge-length'),
        };
      }
      case 3:
        return rng.chance(0.5)
          ? { bytes: rawFrame(1, FrameType.PING, 0, rng.range(1, 0xffff_ffff), Buffer.alloc(4)), kind: this.note('fatal-ping-with-stream-id') }
          : { bytes: rawFrame(1, rng.pick(STREAM_TYPES), 0, 0, rng.bytes(12)), kind: this.note('fatal-stream-frame-id-0') };
      case 4: {
        const cases: [number, number][] = [
          [FrameType.ACK, rng.chance(0.5) ? 11 : 13],
          [FrameType.FIN, 7],
          [FrameType.PING, 3],
          [FrameType.OPEN_OK, 5],
          [FrameType.DATA, 8],
          [FrameType.RST, 0],
          [FrameType.OPEN, 3],
        ];
        const [type, len] = rng.pick(cases);
        return { bytes: rawFrame(1, type, 0, type === FrameType.PING ? 0 : this.knownIdOr1(), rng.bytes(len)), kind: this.note('fatal-bad-body-length') };
      }
      case 5: {
        const big = Buffer.alloc(8);
        big.writeUInt32BE(0x20_0000 + rng.int(0xffdf_ffff), 0);
        big.writeUInt32BE(rng.u32(), 4);
        const type = rng.pick([FrameType.DATA, FrameType.ACK, FrameType.FIN]);
        const body = type === FrameType.DATA ? Buffer.concat([big, Buffer.from('x')]) : type === FrameType.ACK ? Buffer.concat([big, Buffer.alloc(4)]) : big;
        return { bytes: rawFrame(1, type, 0, this.knownIdOr1(), body), kind: this.note('fatal-u64-over-2^53') };
      }
      case 6: {
        const type = rng.pick([FrameType.CHALLENGE, FrameType.AUTH, FrameType.WELCOME, FrameType.REJECT]);
        const len = type === FrameType.CHALLENGE ? 33 : type === FrameType.WELCOME ? 40 : type === FrameType.REJECT ? 1 : 116;
        return { bytes: rawFrame(1, type, 0, 0, rng.bytes(len)), kind: this.note('fatal-handshake-frame-after-handshake') };
      }
      case 7:
      case 8: {
        // Another peer's stream (or any id this session never opened).
        const type = rng.pick(STREAM_TYPES);
        const body =
          type === FrameType.DATA
            ? Buffer.concat([Buffer.alloc(8), Buffer.from('INJECTED')])
            : type === FrameType.ACK
              ? Buffer.alloc(12)
              : type === FrameType.FIN
                ? Buffer.alloc(8)
                : type === FrameType.OPEN_OK
                  ? Buffer.alloc(4)
                  : Buffer.from([1]);
        return { bytes: rawFrame(1, type, 0, unknownId(), body), kind: this.note('fatal-frame-for-stream-never-opened') };
      }
      case 9: {
        // Not remembered as opened: the server refuses this OPEN before it registers the id.
        const id = this.maxOpened === 0 ? 1 : this.maxOpened + 2;
        const win = Buffer.alloc(4);
        const addrs = [
          Buffer.from([0x02, 1, 2, 3, 4, 0, 80]),
          Buffer.from([0x05, 1, 2, 3, 4, 0, 80]),
          Buffer.from([0x03, 0, 0, 80]),
          Buffer.concat([Buffer.from([0x03, 3]), Buffer.from('a\0b'), Buffer.from([0, 80])]),
          Buffer.concat([Buffer.from([0x03, 2]), Buffer.from([0xc3, 0x28]), Buffer.from([0, 80])]),
          Buffer.from([0x01, 127, 0, 0]),
          Buffer.from([0x04, 0, 0, 0, 0]),
          Buffer.from([0x01, 10, 0, 0, 1, 0, 80, 0xff]),
        ];
        return { bytes: rawFrame(1, FrameType.OPEN, 0, id, Buffer.concat([win, rng.pick(addrs)])), kind: this.note('fatal-bad-address') };
      }
      case 10: {
        const msg = rng.bytes(rng.range(256, 2000));
        const type = rng.pick([FrameType.RST, FrameType.GOAWAY, FrameType.OPEN_FAIL]);
        return {
          bytes: rawFrame(1, type, 0, type === FrameType.GOAWAY ? 0 : this.knownIdOr1(), Buffer.concat([Buffer.from([1]), msg])),
          kind: this.note('fatal-message-over-255'),
        };
      }
      case 11: {
        const bodies = [
          Buffer.alloc(0), // no address
          Buffer.from([0x00, 0x61]), // "no destination" is no datagram address
          Buffer.from([0x02, 1, 2, 3, 4, 0, 53]),
          Buffer.from([0x01, 127, 0]),
          Buffer.concat([Buffer.from([0x03, 3]), Buffer.from('a\0b'), Buffer.from([0, 53])]),
        ];
        const zeroId = rng.chance(0.2);
        const type = zeroId ? rng.pick([FrameType.DATAGRAM, FrameType.DATAGRAM_CLOSE]) : FrameType.DATAGRAM;
        const body = zeroId ? Buffer.from([0x01, 10, 0, 0, 1, 0, 53]) : rng.pick(bodies);
        return { bytes: rawFrame(1, type, 0, zeroId ? 0 : rng.range(1, 100), body), kind: this.note('fatal-bad-datagram') };
      }
      default: {
        const sid = Buffer.alloc(1 + 16 + 2 + 32 + 1 + 32);
        sid[0] = 2 + rng.int(254); // AUTH mode other than NEW/JOIN
        return { bytes: rawFrame(1, FrameType.AUTH, 0, 0, sid), kind: this.note('fatal-auth-bad-mode') };
      }
    }
  }

  private knownIdOr1(): number {
    return this.maxOpened > 0 ? this.knownId() : 1;
  }

  /** Random bytes, or a valid frame with bytes flipped, cut short or followed by garbage: any outcome but a crash. */
  wild(): Generated {
    const rng = this.rng;
    const r = rng.float();
    if (r < 0.25) return { bytes: rng.bytes(rng.range(1, 512)), kind: this.note('wild-random-bytes') };
    // A mutated OPEN may or may not register its id: stay with what the server surely knows.
    const known = this.maxOpened;
    const base = this.tolerated().bytes;
    this.maxOpened = known;
    if (r < 0.7) {
      const b = Buffer.from(base);
      const flips = rng.range(1, 4);
      for (let i = 0; i < flips; i++) {
        const at = rng.int(b.length);
        b[at] = b[at]! ^ (1 << rng.int(8));
      }
      return { bytes: b, kind: this.note('wild-bit-flips') };
    }
    if (r < 0.85)
      return { bytes: Buffer.concat([base.subarray(0, rng.int(base.length)), rng.bytes(rng.range(1, 64))]), kind: this.note('wild-cut-then-garbage') };
    // A valid prefix whose header promises more body than follows, then the end of the connection.
    const b = Buffer.from(base);
    b.writeUInt32BE(Math.min(this.maxBody, b.readUInt32BE(8) + rng.range(1, 4096)), 8);
    return { bytes: b, kind: this.note('wild-truncated-body') };
  }
}
