/**
 * The attackers of the hostile-input suite. Each runs until its deadline or its budget, bounded in
 * count and time, and counts what it did and what the target answered.
 */
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { AuthMode, FrameType, encode, encodePreface } from '@gkd/protocol';
import { Rng } from '../prng.js';
import { FrameFuzzer, rawFrame, type FuzzPorts } from './frames.js';
import { socksRequest } from './socks.js';
import { OwnSession, WirePeer, makeAuth } from '../wire-peer.js';

/** Unauthenticated attackers and slowloris stand for other hosts than the legitimate peer (127.0.0.1). */
export const PRE_AUTH_HOST = '127.0.0.2';
export const SLOWLORIS_HOST = '127.0.0.3';

/** Reject with `what` after `ms`. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no progress within ${ms} ms`)), ms))),
  ]);
}

function bump(m: Record<string, number>, k: string, n = 1): void {
  m[k] = (m[k] ?? 0) + n;
}

// ---------------------------------------------------------------------------------------- authenticated

/** What the authenticated attackers did. */
export interface AuthedStats {
  /** Frames written to the server. */
  framesSent: number;
  /** Frames the server provably processed: confirmed by a PONG, or a fatal frame it closed the tunnel for. */
  framesProcessed: number;
  /** Batches of tolerated frames (each confirmed by a PONG). */
  batches: number;
  /** Fatal frames after which the server closed the tunnel, as it must. */
  fatalClosed: number;
  /** Fatal frames after which the tunnel stayed up (a divergence from the model: reported, by kind). */
  fatalTolerated: Record<string, number>;
  /** Wild (mutated/random) frames sent; the attacker then ends the tunnel. */
  wild: number;
  /** Tunnels the server closed in the middle of a batch of tolerated frames (a divergence: reported). */
  unexpectedCloses: Record<string, number>;
  /** Tunnels re-joined after a close. */
  rejoins: number;
  /** Server answers seen, by frame type name. */
  answers: Record<string, number>;
  /** Frames generated, by kind. */
  kinds: Record<string, number>;
  /** Bytes the server sent that did not decode (must stay 0). */
  decodeErrors: number;
}

export function emptyAuthedStats(): AuthedStats {
  return {
    framesSent: 0,
    framesProcessed: 0,
    batches: 0,
    fatalClosed: 0,
    fatalTolerated: {},
    wild: 0,
    unexpectedCloses: {},
    rejoins: 0,
    answers: {},
    kinds: {},
    decodeErrors: 0,
  };
}

export interface AuthedOptions {
  port: number;
  user: string;
  key: Buffer;
  ports: FuzzPorts;
  maxBody: number;
  seed: number;
  /** Stop after this time (ms since the epoch) or when `budget.left` reaches 0. */
  deadline: number;
  budget: { left: number };
  /** Tolerated frames per batch. */
  batch: number;
  /** Chance that a batch ends with a fatal frame, and with a wild one. */
  pFatal: number;
  pWild: number;
  stats: AuthedStats;
  /** Called with the session once founded (its AUTH bytes are replayed by the pre-auth attackers). */
  onSession?: (s: OwnSession) => void;
}

const TYPE_NAMES = new Map<number, string>(Object.entries(FrameType).map(([k, v]) => [v, k]));

function collect(peer: WirePeer, stats: AuthedStats): void {
  for (const [t, n] of peer.counts) bump(stats.answers, TYPE_NAMES.get(t) ?? `0x${t.toString(16)}`, n);
  if (peer.decodeError) stats.decodeErrors++;
}

/**
 * One authenticated hostile session (its own valid key): batches of tolerated frames, each closed by
 * a PING whose PONG proves the server processed the batch, and sometimes a fatal or wild frame at the
 * end; after the server closes the tunnel it JOINs again.
 */
export async function authedAttacker(o: AuthedOptions): Promise<void> {
  const rng = new Rng(o.seed);
  const fz = new FrameFuzzer(rng, o.ports, o.maxBody);
  let session = new OwnSession(o.port, o.user, o.key, { record: false });
  let peer = await session.tunnel();
  o.onSession?.(session);
  let pingId = 0x4000_0000;
  const parts: Buffer[] = [];
  /** PING and wait: true once the server processed everything sent before it, false if it closed the tunnel. */
  const confirm = async (what: string, extra?: Buffer): Promise<boolean> => {
    const id = pingId++;
    const pong = peer.waitPong(id);
    const ping = encode({ type: FrameType.PING, id });
    await within(peer.write(extra ? Buffer.concat([extra, ping]) : ping), 60_000, `writing ${what}`);
    return within(pong, 60_000, `PONG after ${what}`);
  };
  try {
    while (Date.now() < o.deadline && o.budget.left > 0) {
      const n = Math.min(o.batch, o.budget.left);
      o.budget.left -= n;
      parts.length = 0;
      for (let i = 0; i < n; i++) parts.push(fz.tolerated().bytes);
      o.stats.framesSent += n + 1;
      let newSession = false;
      if (await confirm(`a batch of ${n} frames`, Buffer.concat(parts))) {
        o.stats.framesProcessed += n + 1;
        o.stats.batches++;
        for (const id of peer.opened) fz.live.add(id);
        for (const id of peer.ended) fz.live.delete(id);
      } else {
        // Closed before the PONG: a frame we expected the server to take was refused. The GOAWAY says which.
        bump(o.stats.unexpectedCloses, `GOAWAY ${peer.goaway ?? 'none'}: ${peer.goawayMessage.replace(/\d+/g, 'N')}`);
        if (process.env.GKD_FUZZ_DEBUG) process.stderr.write(`unexpected close: GOAWAY ${peer.goaway} "${peer.goawayMessage}"\n`);
        newSession = true; // we no longer know which ids the server has seen
      }
      // The tail goes in its own write, after the batch is confirmed: a decoder that fails on a frame
      // drops the frames decoded before it in the same read.
      const roll = rng.float();
      const tail = peer.isClosed
        ? null
        : roll < o.pFatal
          ? { ...fz.fatal(), cls: 'fatal' as const }
          : roll < o.pFatal + o.pWild
            ? { ...fz.wild(), cls: 'wild' as const }
            : null;
      if (tail?.cls === 'fatal') {
        o.stats.framesSent += 2;
        if (await confirm(tail.kind, tail.bytes)) bump(o.stats.fatalTolerated, tail.kind);
        else {
          o.stats.fatalClosed++;
          o.stats.framesProcessed++;
        }
        if (tail.endsSession) newSession = true;
      } else if (tail?.cls === 'wild') {
        o.stats.framesSent++;
        o.stats.wild++;
        await peer.write(tail.bytes);
      }
      if (tail || peer.isClosed) {
        await within(peer.finish(), 30_000, 'closing a tunnel');
        collect(peer, o.stats);
        if (tail?.cls === 'wild' && !newSession) {
          // A mutated OPEN may have registered any id (a flipped bit in the stream id): the ids the
          // server knows are no longer certain. Retire the session (GOAWAY NORMAL frees it at once).
          const last = await session.tunnel();
          await last.write(encode({ type: FrameType.GOAWAY, reason: 0, message: 'retired' }));
          await within(last.closed, 30_000, 'the server freeing a retired session');
          collect(last, o.stats);
          newSession = true;
        }
        if (newSession) {
          session = new OwnSession(o.port, o.user, o.key, { record: false });
          fz.reset();
        }
        peer = await session.tunnel();
        o.stats.rejoins++;
      }
    }
  } finally {
    collect(peer, o.stats);
    peer.destroy();
    for (const [k, v] of fz.kinds) bump(o.stats.kinds, k, v);
  }
}

/**
 * A peer that sends PINGs and never reads (a PING flood): the server must stop reading it rather than
 * queue PONGs without bound, and then close it at the keepalive deadline (it hears nothing more).
 * Pushes until the server stops taking bytes or `frames` are written, then waits for the close until
 * `deadline`. Returns the PINGs written and whether the server closed the tunnel.
 */
export async function deafFlooder(
  port: number,
  user: string,
  key: Buffer,
  frames: number,
  deadline: number,
): Promise<{ sent: number; closedByServer: boolean }> {
  const session = new OwnSession(port, user, key, { record: false });
  const peer = await session.tunnel();
  peer.socket.pause();
  const batch = Buffer.concat(Array.from({ length: 1024 }, (_, i) => encode({ type: FrameType.PING, id: i })));
  let sent = 0;
  const until = (p: Promise<unknown>) =>
    Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), Math.max(0, deadline - Date.now())).unref())]);
  while (sent < frames && Date.now() < deadline && !peer.isClosed) {
    // A write that does not complete means the server stopped reading us (or closed): stop pushing.
    if (!(await until(peer.write(batch)))) break;
    sent += 1024;
  }
  await until(peer.closed);
  const closedByServer = peer.isClosed;
  peer.destroy();
  return { sent, closedByServer };
}

// ---------------------------------------------------------------------------------------- unauthenticated

/** What the unauthenticated attackers did. */
export interface PreAuthStats {
  connections: number;
  /** Frames (or byte strings) sent before any successful handshake. */
  frames: number;
  byCase: Record<string, number>;
  /** Server answers: REJECT reason, or 'closed'. */
  outcomes: Record<string, number>;
  /** WELCOMEs to a forged/replayed/wrong handshake: must stay 0. */
  welcomes: number;
  welcomeCases: string[];
}

export function emptyPreAuthStats(): PreAuthStats {
  return { connections: 0, frames: 0, byCase: {}, outcomes: {}, welcomes: 0, welcomeCases: [] };
}

export interface PreAuthOptions {
  port: number;
  seed: number;
  deadline: number;
  budget: { left: number };
  /** The canary destination: every OPEN these attackers send names it (it must never be dialed). */
  canaryPort: number;
  /** A real user and the attacker's own key (valid for `attackerUser`, wrong for `victimUser`). */
  victimUser: string;
  attackerUser: string;
  attackerKey: Buffer;
  /** The victim's session id, as a wiretap saw it in its AUTH, and its tunnels' captured bytes. */
  victimSessionId: () => Buffer | null;
  captured: () => Buffer[];
  /** AUTH bytes of the attacker's own earlier tunnels (replays must fail too). */
  ownAuths: () => Buffer[];
  stats: PreAuthStats;
}

const PRE_AUTH_CASES = [
  'random-bytes',
  'wrong-key-auth-then-open',
  'unknown-user-auth-then-open',
  'join-victim-session-with-own-key',
  'new-victim-session-id-victim-user-own-key',
  'replay-victim-tunnel-bytes',
  'replay-own-auth',
  'open-before-auth',
  'ping-before-auth',
  'huge-length-before-auth',
  'bad-version-before-auth',
  'truncated-auth-then-fin',
  'auth-bad-mode',
  'mutated-wrong-key-auth',
  'wrong-auth-then-valid-auth',
  'auth-with-garbage-proof-and-trailer',
  'no-preface-then-auth',
  'mutated-preface-then-open',
] as const;

/** Cases that send their own first bytes instead of a valid routing preface (PROTOCOL.md §4.1). */
const NO_PREFACE_CASES: readonly string[] = ['no-preface-then-auth', 'mutated-preface-then-open'];

/**
 * One unauthenticated attacker: fresh connections, each carrying one hostile opening (below), and
 * every one must end in REJECT or a close, never WELCOME, and nothing it names may be dialed.
 */
export async function preAuthAttacker(o: PreAuthOptions): Promise<void> {
  const rng = new Rng(o.seed);
  const canaryOpen = (stream = 1) =>
    encode({ type: FrameType.OPEN, stream, window: 65536, destination: { type: 'ipv4', host: '127.0.0.1', port: o.canaryPort } });
  while (Date.now() < o.deadline && o.budget.left > 0) {
    o.budget.left--;
    const kase = rng.pick(PRE_AUTH_CASES);
    const peer = await WirePeer.connect(o.port, { from: PRE_AUTH_HOST, record: false, ...(NO_PREFACE_CASES.includes(kase) ? { preface: null } : {}) });
    o.stats.connections++;
    bump(o.stats.byCase, kase);
    const sid = randomBytes(16);
    const authFor = (nonce: Buffer, user: string, key: Buffer, mode: 0 | 1 = AuthMode.NEW, sessionId: Buffer = sid) =>
      encode(makeAuth({ mode, sessionId, user, tunnelIndex: rng.int(8), key }, nonce).frame);
    let bytes: Buffer[] = [];
    const needNonce = ![
      'random-bytes',
      'open-before-auth',
      'ping-before-auth',
      'huge-length-before-auth',
      'bad-version-before-auth',
      'replay-victim-tunnel-bytes',
      'replay-own-auth',
      ...NO_PREFACE_CASES,
    ].includes(kase);
    const nonce = needNonce ? await within(peer.waitChallenge(), 30_000, 'CHALLENGE') : null;
    if (needNonce && !nonce) {
      bump(o.stats.outcomes, 'closed-before-challenge');
      continue;
    }
    switch (kase) {
      case 'random-bytes':
        bytes = [rng.bytes(rng.range(1, 512))];
        break;
      case 'wrong-key-auth-then-open':
        bytes = [authFor(nonce!, o.victimUser, randomBytes(32)), canaryOpen()];
        break;
      case 'unknown-user-auth-then-open':
        bytes = [authFor(nonce!, `eve-${rng.int(1000)}`, o.attackerKey), canaryOpen()];
        break;
      case 'join-victim-session-with-own-key': {
        const v = o.victimSessionId() ?? sid;
        bytes = [authFor(nonce!, o.victimUser, o.attackerKey, AuthMode.JOIN, v), canaryOpen()];
        break;
      }
      case 'new-victim-session-id-victim-user-own-key': {
        const v = o.victimSessionId() ?? sid;
        bytes = [authFor(nonce!, o.victimUser, o.attackerKey, AuthMode.NEW, v), canaryOpen()];
        break;
      }
      case 'replay-victim-tunnel-bytes': {
        const cap = o.captured();
        bytes = cap.length > 0 ? [rng.pick(cap)] : [authFor(randomBytes(32), o.victimUser, randomBytes(32))];
        break;
      }
      case 'replay-own-auth': {
        const own = o.ownAuths();
        bytes = own.length > 0 ? [rng.pick(own), canaryOpen()] : [canaryOpen()];
        break;
      }
      case 'open-before-auth':
        bytes = [canaryOpen()];
        break;
      case 'no-preface-then-auth':
        // A version-1 client: an AUTH (for a nonce it never got) where the preface belongs.
        bytes = [authFor(randomBytes(32), o.attackerUser, o.attackerKey), canaryOpen()];
        break;
      case 'mutated-preface-then-open': {
        const p = encodePreface(rng.bytes(16));
        for (let i = rng.range(1, 3); i > 0; i--) {
          const at = rng.int(4); // the magic and version: a flipped token byte is just another token
          p[at] = p[at]! ^ (1 << rng.int(8));
        }
        bytes = [p, rng.bytes(rng.int(64)), canaryOpen()];
        break;
      }
      case 'ping-before-auth':
        bytes = [encode({ type: FrameType.PING, id: rng.u32() }), canaryOpen()];
        break;
      case 'huge-length-before-auth':
        bytes = [rawFrame(1, FrameType.AUTH, 0, 0, rng.bytes(rng.int(100)), 65545 + rng.int(0xffff_0000)), canaryOpen()];
        break;
      case 'bad-version-before-auth':
        bytes = [rawFrame(rng.pick([0, 2, 0x7f, 0xff]), FrameType.AUTH, 0, 0, rng.bytes(116)), canaryOpen()];
        break;
      case 'truncated-auth-then-fin': {
        const a = authFor(nonce!, o.attackerUser, o.attackerKey);
        bytes = [a.subarray(0, rng.range(1, a.length - 1))];
        break;
      }
      case 'auth-bad-mode': {
        const a = Buffer.from(authFor(nonce!, o.attackerUser, o.attackerKey));
        a[12] = 2 + rng.int(254);
        bytes = [a, canaryOpen()];
        break;
      }
      case 'mutated-wrong-key-auth': {
        const a = Buffer.from(authFor(nonce!, o.victimUser, randomBytes(32)));
        for (let i = rng.range(1, 4); i > 0; i--) {
          // Anywhere but the reserved flags (receivers ignore them).
          let at = rng.int(a.length);
          if (at === 2 || at === 3) at = 12;
          a[at] = a[at]! ^ (1 << rng.int(8));
        }
        bytes = [a, canaryOpen()];
        break;
      }
      case 'wrong-auth-then-valid-auth':
        // The server must refuse at the first AUTH and never read the second (a valid one of its own).
        bytes = [authFor(nonce!, o.attackerUser, randomBytes(32)), authFor(nonce!, o.attackerUser, o.attackerKey), canaryOpen()];
        break;
      case 'auth-with-garbage-proof-and-trailer': {
        const a = Buffer.from(authFor(nonce!, o.victimUser, o.attackerKey));
        rng.bytes(32).copy(a, a.length - 32);
        bytes = [a, rng.bytes(rng.range(1, 256))];
        break;
      }
    }
    o.stats.frames += bytes.length;
    const answer = new Promise<string>((resolve) => {
      const check = () => {
        if ((peer.counts.get(FrameType.WELCOME) ?? 0) > 0) resolve('WELCOME');
      };
      peer.socket.on('data', () => setImmediate(check));
      void peer.closed.then(() => {
        check();
        resolve('closed');
      });
    });
    peer.socket.write(Buffer.concat(bytes));
    if (kase === 'truncated-auth-then-fin' || kase === 'random-bytes') peer.socket.end();
    const outcome = await within(answer, 30_000, `the server's answer to ${kase}`);
    if (outcome === 'WELCOME') {
      o.stats.welcomes++;
      if (o.stats.welcomeCases.length < 20) o.stats.welcomeCases.push(kase);
    }
    const rejects = peer.counts.get(FrameType.REJECT) ?? 0;
    bump(o.stats.outcomes, rejects > 0 ? 'REJECT' : 'closed');
    peer.destroy();
    await peer.closed;
  }
}

/** Connections that open the tunnel port and send nothing (or one byte): the handshake timeout must close them. */
export async function tunnelSlowloris(port: number, n: number, timeoutMs: number): Promise<{ closedByServer: number; held: number }> {
  const peers = await Promise.all(Array.from({ length: n }, () => WirePeer.connect(port, { from: SLOWLORIS_HOST, record: false })));
  for (const [i, p] of peers.entries()) if (i % 2 === 1) p.socket.write(Buffer.from([1]));
  const closed = await Promise.all(
    peers.map((p) => Promise.race([p.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref())])),
  );
  for (const p of peers) p.destroy();
  return { closedByServer: closed.filter(Boolean).length, held: closed.filter((c) => !c).length };
}

// ---------------------------------------------------------------------------------------- front-ends

/** What the SOCKS / HTTP attackers did. */
export interface FrontEndStats {
  connections: number;
  byCase: Record<string, number>;
  /** How each ended: `rep-N`, `http-NNN`, `closed`, `reset`. */
  outcomes: Record<string, number>;
  /** Replies that were not what the case must get (reported by case). */
  wrong: Record<string, number>;
  wrongSamples: string[];
}

export function emptyFrontEndStats(): FrontEndStats {
  return { connections: 0, byCase: {}, outcomes: {}, wrong: {}, wrongSamples: [] };
}

export interface FrontEndOptions {
  socksPort: number;
  httpPort: number;
  seed: number;
  deadline: number;
  budget: { left: number };
  /** Denied by the server's policy, listening: every request naming it must be refused. */
  forbiddenPort: number;
  stats: FrontEndStats;
}

/** Send `bytes` (optionally FIN), collect the reply until the proxy closes or `ms` pass. */
function exchange(port: number, bytes: Buffer, opts: { end?: boolean; ms: number; drip?: number }): Promise<{ reply: Buffer; how: string }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let done = false;
    let drip: NodeJS.Timeout | undefined;
    const finish = (how: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(drip);
      s.destroy();
      resolve({ reply: Buffer.concat(chunks), how });
    };
    const timer = setTimeout(() => finish('timeout'), opts.ms);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.once('end', () => finish('closed'));
    s.once('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNRESET' ? 'reset' : (err.code ?? 'error')));
    s.once('close', () => finish('closed'));
    s.once('connect', () => {
      if (opts.drip) {
        // Slowloris: one byte every `drip` ms (pacing is the behaviour under test, not a synchronisation).
        let i = 0;
        drip = setInterval(() => {
          if (i < bytes.length && !s.destroyed) s.write(bytes.subarray(i, ++i));
        }, opts.drip);
        return;
      }
      s.write(bytes);
      if (opts.end) s.end();
    });
  });
}

const SOCKS_CASES = [
  'random-bytes',
  'socks4-request',
  'greeting-truncated',
  'greeting-255-methods-truncated',
  'no-acceptable-method',
  'request-truncated',
  'oversized-junk',
  'bind-command',
  'udp-command',
  'bad-atyp',
  'empty-domain',
  'connect-denied-ipv4',
  'connect-forbidden-port',
  'connect-name-into-denied-range',
  'connect-unresolvable-name',
  'slowloris-greeting',
  'connect-then-reset',
] as const;

const HTTP_CASES = [
  'garbage-request-line',
  'oversized-headers',
  'connect-no-port',
  'connect-denied',
  'connect-name-into-denied-range',
  'get-denied-absolute-uri',
  'slowloris-headers',
  'bad-header-chars',
  'huge-chunked-body-to-denied',
  'pipelined-requests-to-denied',
] as const;

/**
 * Hostile clients of the SOCKS5 and HTTP proxy ports. Each case has the reply it must get; anything
 * else is counted in `wrong`. Every exchange is bounded (the proxies' timeouts are short in the test).
 */
export async function frontEndAttacker(o: FrontEndOptions, slowMs: number): Promise<void> {
  const rng = new Rng(o.seed);
  const denyNames = ['localhost', '0x7f000001', '2130706433', '127.1', 'LOCALHOST.'];
  const greet = Buffer.from([5, 1, 0]);
  const req = (cmd: number, tail: Buffer) => Buffer.concat([Buffer.from([5, cmd, 0]), tail]);
  const ipv4 = (a: number[], port: number) => {
    const b = Buffer.alloc(7);
    b[0] = 1;
    b.set(a, 1);
    b.writeUInt16BE(port, 5);
    return b;
  };
  // The CONNECT reply (after the 2-byte method selection): VER REP RSV ATYP …
  const socksRep = (reply: Buffer) => (reply.length >= 2 && reply[0] === 5 ? reply[1]! : -1);
  while (Date.now() < o.deadline && o.budget.left > 0) {
    o.budget.left--;
    const http = rng.chance(0.4);
    const kase = http ? rng.pick(HTTP_CASES) : rng.pick(SOCKS_CASES);
    o.stats.connections++;
    bump(o.stats.byCase, `${http ? 'http' : 'socks'}:${kase}`);
    let outcome: string;
    let ok: boolean;
    if (!http) {
      let bytes: Buffer;
      let want: (rep: number, how: string) => boolean = (_r, how) => how !== 'timeout';
      let end = false;
      let drip: number | undefined;
      switch (kase as (typeof SOCKS_CASES)[number]) {
        case 'random-bytes':
          bytes = rng.bytes(rng.range(1, 600));
          end = rng.chance(0.5);
          break;
        case 'socks4-request':
          bytes = Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0]);
          break;
        case 'greeting-truncated':
          bytes = Buffer.from([5]);
          end = true;
          break;
        case 'greeting-255-methods-truncated':
          bytes = Buffer.concat([Buffer.from([5, 255]), rng.bytes(rng.int(200))]);
          end = true;
          break;
        case 'no-acceptable-method':
          bytes = Buffer.from([5, 2, 0x80, 0xfe]);
          want = (_r, how) => how !== 'timeout';
          break;
        case 'request-truncated':
          bytes = Buffer.concat([greet, Buffer.from([5, 1, 0, 1, 127])]);
          end = true;
          break;
        case 'oversized-junk':
          bytes = Buffer.concat([greet, rng.bytes(256 * 1024)]);
          break;
        case 'bind-command':
          bytes = Buffer.concat([greet, req(2, ipv4([127, 0, 0, 1], 80))]);
          want = (rep) => rep === 7;
          break;
        case 'udp-command':
          bytes = Buffer.concat([greet, req(3, ipv4([127, 0, 0, 1], 80))]);
          want = (rep) => rep === 7;
          break;
        case 'bad-atyp':
          bytes = Buffer.concat([greet, Buffer.from([5, 1, 0, rng.pick([0, 2, 5, 0xff]), 1, 2, 3, 4, 0, 80])]);
          break;
        case 'empty-domain':
          bytes = Buffer.concat([greet, Buffer.from([5, 1, 0, 3, 0, 0, 80])]);
          break;
        case 'connect-denied-ipv4':
          bytes = Buffer.concat([
            greet,
            socksRequest({ ipv4: rng.pick(['10.0.0.1', '192.168.1.1', '169.254.169.254', '127.0.0.2']), port: rng.range(1, 65535) }),
          ]);
          want = (rep) => rep === 2;
          break;
        case 'connect-forbidden-port':
          bytes = Buffer.concat([greet, socksRequest({ ipv4: '127.0.0.1', port: o.forbiddenPort })]);
          want = (rep) => rep === 2;
          break;
        case 'connect-name-into-denied-range':
          bytes = Buffer.concat([greet, socksRequest({ domain: rng.pick(denyNames), port: o.forbiddenPort })]);
          want = (rep) => rep === 2;
          break;
        case 'connect-unresolvable-name':
          bytes = Buffer.concat([greet, socksRequest({ domain: `no-such-host-${rng.int(1e6)}.invalid`, port: 80 })]);
          want = (rep) => rep === 4;
          break;
        case 'slowloris-greeting':
          bytes = Buffer.concat([greet, socksRequest({ ipv4: '127.0.0.1', port: o.forbiddenPort })]);
          drip = Math.ceil(slowMs / 4);
          want = (_r, how) => how === 'closed' || how === 'reset';
          break;
        default: {
          // 'connect-then-reset'
          // Ask for a destination and vanish before the answer: nothing may leak or crash.
          const s = net.connect({ host: '127.0.0.1', port: o.socksPort });
          s.on('error', () => undefined);
          await new Promise<void>((r) => s.once('connect', () => r()).once('error', () => r()));
          s.write(Buffer.concat([greet, socksRequest({ domain: 'localhost', port: o.forbiddenPort })]));
          s.resetAndDestroy();
          outcome = 'client-reset';
          bump(o.stats.outcomes, outcome);
          continue;
        }
      }
      // Drip cases take (bytes × drip) ms; give every case its proxy timeout plus slack.
      const ms = drip ? slowMs * 3 + 5_000 : slowMs + 10_000;
      const r = await exchange(o.socksPort, bytes, { end, ms, ...(drip ? { drip } : {}) });
      const rep = socksRep(r.reply.subarray(2));
      outcome = rep >= 0 ? `rep-${rep}` : r.how;
      ok = want(rep, r.how);
    } else {
      let text: string | Buffer;
      let want: (status: number, how: string) => boolean = (_s, how) => how !== 'timeout';
      let drip: number | undefined;
      switch (kase as (typeof HTTP_CASES)[number]) {
        case 'garbage-request-line':
          text = Buffer.concat([rng.bytes(rng.range(1, 300)), Buffer.from('\r\n\r\n')]);
          break;
        case 'oversized-headers':
          text = `GET http://127.0.0.1:${o.forbiddenPort}/ HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`;
          want = (s, how) => s === 431 || how === 'reset';
          break;
        case 'connect-no-port':
          text = 'CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
          want = (s) => s === 400;
          break;
        case 'connect-denied':
          text = `CONNECT 10.1.2.3:443 HTTP/1.1\r\nHost: 10.1.2.3:443\r\n\r\n`;
          want = (s) => s === 403;
          break;
        case 'connect-name-into-denied-range': {
          const n = rng.pick(denyNames);
          text = `CONNECT ${n}:${o.forbiddenPort} HTTP/1.1\r\nHost: ${n}:${o.forbiddenPort}\r\n\r\n`;
          want = (s) => s === 403;
          break;
        }
        case 'get-denied-absolute-uri':
          text = `GET http://127.0.0.1:${o.forbiddenPort}/secret HTTP/1.1\r\nHost: 127.0.0.1:${o.forbiddenPort}\r\n\r\n`;
          want = (s) => s === 403;
          break;
        case 'slowloris-headers':
          text = `GET http://127.0.0.1:${o.forbiddenPort}/ HTTP/1.1\r\nHost: x\r\nX-A: ${'b'.repeat(200)}`;
          drip = Math.ceil(slowMs / 8);
          want = (s, how) => s === 408 || how === 'closed' || how === 'reset';
          break;
        case 'bad-header-chars':
          text = `GET http://127.0.0.1:${o.forbiddenPort}/ HTTP/1.1\r\nHo\x00st: x\r\n\x7f: y\r\n\r\n`;
          want = (s) => s === 400;
          break;
        case 'huge-chunked-body-to-denied':
          text = `POST http://10.9.9.9/ HTTP/1.1\r\nHost: 10.9.9.9\r\nTransfer-Encoding: chunked\r\n\r\n${'ffff\r\n'}${'z'.repeat(65535)}\r\n`;
          want = (s, how) => s === 403 || how === 'reset' || how === 'closed';
          break;
        default: // 'pipelined-requests-to-denied'
          text = Array.from({ length: 20 }, () => `GET http://192.168.0.1/ HTTP/1.1\r\nHost: 192.168.0.1\r\n\r\n`).join('');
          want = (s) => s === 403;
          break;
      }
      const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text, 'latin1');
      const ms = drip ? slowMs * 3 + 5_000 : slowMs + 10_000;
      const r = await exchange(o.httpPort, bytes, { ms, ...(drip ? { drip } : {}) });
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(r.reply.toString('latin1', 0, 64))?.[1] ?? -1);
      outcome = status > 0 ? `http-${status}` : r.how;
      ok = want(status, r.how);
    }
    bump(o.stats.outcomes, outcome);
    if (!ok) {
      bump(o.stats.wrong, `${http ? 'http' : 'socks'}:${kase}`);
      if (o.stats.wrongSamples.length < 20) o.stats.wrongSamples.push(`${http ? 'http' : 'socks'}:${kase} → ${outcome}`);
    }
  }
}
