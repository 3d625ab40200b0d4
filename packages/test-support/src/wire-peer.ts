/**
 * A gkd peer written against the wire protocol only (PROTOCOL.md §1–§6), over a bare `node:net`
 * socket: it sends exactly the frames a test tells it to, valid or not. Server tests use it to play an
 * attacker (guessing session and stream ids, replaying an AUTH) and to hit limits precisely; the
 * hostile-input suite uses it to push millions of frames, so keeping every received frame is an
 * option (`record`), while counts, stream answers and the first GOAWAY are always kept. PINGs are
 * answered (unless `answerPings` is cleared) so keepalive never closes the tunnel under a slow test.
 */
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import {
  AuthMode,
  Decoder,
  FrameType,
  SESSION_ID_LENGTH,
  authFrame,
  encode,
  encodePreface,
  newRoutingToken,
  sessionSecret,
  type AuthFrame,
  type AuthModeValue,
  type Frame,
  type ProofInput,
  type RejectFrame,
  type WelcomeFrame,
} from '@gkd/protocol';

/** What an AUTH proves (PROTOCOL.md §4): the mode, the session, the tunnel, the user, and the key (NEW) or secret (JOIN). */
export interface AuthParams {
  mode: AuthModeValue;
  sessionId: Buffer;
  /** Default '' (a server with a single key). */
  user?: string;
  /** Default 0. */
  tunnelIndex?: number;
  /** The user's key for NEW, the session secret for JOIN (or whatever an attacker has instead). */
  key: Buffer;
}

/** Build an AUTH frame for a CHALLENGE nonce with the protocol's own builder; returns the frame and the inputs it binds. */
export function makeAuth(p: AuthParams, serverNonce: Buffer): { frame: AuthFrame; input: ProofInput } {
  return authFrame(p.key, { mode: p.mode, serverNonce, sessionId: p.sessionId, tunnelIndex: p.tunnelIndex ?? 0, user: p.user ?? '' });
}

/** A fresh random session id. */
export function newSessionId(): Buffer {
  return randomBytes(SESSION_ID_LENGTH);
}

/** The server's answer to an AUTH: its WELCOME or REJECT, or null when it closed the tunnel instead. */
export type HandshakeAnswer = WelcomeFrame | RejectFrame | null;

/** How `WirePeer.connect` connects. */
export interface WirePeerOptions {
  /** Server host; default 127.0.0.1. */
  host?: string;
  /**
   * Local address. Attackers that stand for other hosts use their own (Linux routes all of 127/8 to
   * loopback), as the server bounds handshakes per remote address.
   */
  from?: string;
  /** Keep every received frame but CHALLENGE/PING/PONG in `received` (for `next`/`all`); default true. */
  record?: boolean;
  /** Resolve only once the server's CHALLENGE came (so it has registered the connection); default false. */
  challenge?: boolean;
  /** What to send first: a valid routing preface with a fresh token by default (PROTOCOL.md §4.1); null sends none. */
  preface?: Buffer | null;
}

/** One connection to a gkd server's tunnel port. */
export class WirePeer {
  readonly socket: net.Socket;
  /** Resolves when the socket has closed (either side). */
  readonly closed: Promise<void>;
  isClosed = false;
  /** The CHALLENGE nonce, once it came. */
  challenge: Buffer | null = null;
  /** Frames received, by type (PING/PONG included). */
  readonly counts = new Map<number, number>();
  /** Every frame received except CHALLENGE, PING and PONG, in order (only with `record`). */
  readonly received: Frame[] = [];
  /** The first GOAWAY's reason and message, if any. */
  goaway: number | null = null;
  goawayMessage = '';
  /** Streams the server answered: OPEN_OK (live until reset), OPEN_FAIL / RST (ended). */
  readonly opened = new Set<number>();
  readonly ended = new Set<number>();
  /** Set when the server sent bytes that do not decode (a server bug: it must only send valid frames). */
  decodeError: Error | null = null;
  /** Answer the server's PINGs (a peer that does not is a separate attack). */
  answerPings = true;
  private readonly record: boolean;
  private readonly decoder = new Decoder({ maxBody: 1 << 20 });
  private readonly pongs = new Set<number>();
  private readonly waiters: (() => void)[] = [];
  private cursor = 0;
  private nextPingId = 1;
  private handshakeAnswer: HandshakeAnswer = null;

  private constructor(socket: net.Socket, record: boolean) {
    this.socket = socket;
    this.record = record;
    socket.setNoDelay(true);
    socket.on('error', () => undefined); // being reset by the server is an outcome tests check, not a crash
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
  }

  /** Connect; resolves once connected, or with `challenge` once the CHALLENGE came (else see `waitChallenge`). */
  static async connect(port: number, o: WirePeerOptions = {}): Promise<WirePeer> {
    const peer = await new Promise<WirePeer>((resolve, reject) => {
      const socket = net.connect({ host: o.host ?? '127.0.0.1', port, ...(o.from ? { localAddress: o.from } : {}) });
      const p = new WirePeer(socket, o.record ?? true);
      socket.once('connect', () => {
        const preface = o.preface === undefined ? encodePreface(newRoutingToken()) : o.preface;
        if (preface) socket.write(preface);
        resolve(p);
      });
      socket.once('error', reject);
    });
    if (o.challenge && !(await peer.waitChallenge())) throw new Error('the server closed the connection before its CHALLENGE');
    return peer;
  }

  get isOpen(): boolean {
    return !this.isClosed;
  }

  /** Wait for the CHALLENGE nonce (null if the server closed first). */
  async waitChallenge(): Promise<Buffer | null> {
    await this.waitFor(() => this.challenge !== null, 'CHALLENGE').catch(() => undefined);
    return this.challenge;
  }

  /** Send AUTH for this tunnel's CHALLENGE and wait for WELCOME, REJECT or the close (answer null). */
  async handshake(p: AuthParams): Promise<{ answer: HandshakeAnswer; input: ProofInput | null; bytes: Buffer | null }> {
    const nonce = await this.waitChallenge();
    if (!nonce) return { answer: null, input: null, bytes: null };
    const { frame, input } = makeAuth(p, nonce);
    const bytes = encode(frame);
    this.handshakeAnswer = null;
    this.socket.write(bytes);
    await this.waitFor(() => this.handshakeAnswer !== null, 'WELCOME or REJECT').catch(() => undefined);
    const answer = this.handshakeAnswer as HandshakeAnswer;
    // `next` starts after the answer, as if it had read it.
    const at = answer ? this.received.indexOf(answer) : -1;
    if (at >= this.cursor) this.cursor = at + 1;
    return { answer, input, bytes };
  }

  /** Send a frame (encoded here) or raw bytes, ignoring backpressure. Ignored once the socket is gone. */
  send(frameOrBytes: Frame | Buffer): void {
    if (this.socket.destroyed) return;
    this.socket.write(Buffer.isBuffer(frameOrBytes) ? frameOrBytes : encode(frameOrBytes));
  }

  /** Write bytes; resolves when the socket takes more (or is closed). */
  write(bytes: Buffer): Promise<void> {
    if (this.isClosed || this.socket.destroyed) return Promise.resolve();
    if (this.socket.write(bytes)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /**
   * The next received frame (in order, from where the last `next` stopped) that `match` accepts,
   * skipping others; rejects if the socket closes first. Needs `record`.
   */
  async next(match: (f: Frame) => boolean = () => true, what = 'a frame'): Promise<Frame> {
    if (!this.record) throw new Error('next() needs a peer connected with record: true');
    let found: Frame | undefined;
    await this.waitFor(() => {
      while (this.cursor < this.received.length) {
        const f = this.received[this.cursor++]!;
        if (match(f)) {
          found = f;
          return true;
        }
      }
      return false;
    }, what);
    return found!;
  }

  /** The next frame of type `type`. */
  nextOfType<T extends Frame['type']>(type: T): Promise<Extract<Frame, { type: T }>> {
    return this.next((f) => f.type === type, `frame type 0x${type.toString(16)}`) as Promise<Extract<Frame, { type: T }>>;
  }

  /** Received frames of the given type (with `record`). */
  all<T extends Frame['type']>(type: T): Extract<Frame, { type: T }>[] {
    return this.received.filter((f) => f.type === type) as Extract<Frame, { type: T }>[];
  }

  /** Resolves true when PONG `id` arrives, false if the socket closes first. */
  async waitPong(id: number): Promise<boolean> {
    try {
      await this.waitFor(() => this.pongs.has(id), `PONG ${id}`);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * PING and wait for the PONG. True: the server processed every frame sent before the PING and kept
   * the tunnel (PROTOCOL.md §6: a tunnel is ordered, and PONG confirms processing). False: it closed
   * the tunnel instead.
   */
  ping(): Promise<boolean> {
    const id = this.nextPingId++;
    this.send({ type: FrameType.PING, id });
    return this.waitPong(id);
  }

  /** Resolves once the socket is closed. */
  async waitClosed(): Promise<void> {
    await this.closed;
  }

  /** Half-close our side and wait for the server to close. */
  async finish(): Promise<void> {
    if (!this.isClosed) this.socket.end();
    await this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.decodeError = err as Error;
      this.socket.destroy();
      return;
    }
    for (const f of frames) {
      this.counts.set(f.type, (this.counts.get(f.type) ?? 0) + 1);
      switch (f.type) {
        case FrameType.CHALLENGE:
          this.challenge ??= f.nonce;
          continue; // not recorded
        case FrameType.PING:
          if (this.answerPings && !this.socket.destroyed) this.socket.write(encode({ type: FrameType.PONG, id: f.id }));
          continue;
        case FrameType.PONG:
          this.pongs.add(f.id);
          continue;
        case FrameType.WELCOME:
        case FrameType.REJECT:
          this.handshakeAnswer = f;
          break;
        case FrameType.GOAWAY:
          if (this.goaway === null) {
            this.goaway = f.reason;
            this.goawayMessage = f.message;
          }
          break;
        case FrameType.OPEN_OK:
          this.opened.add(f.stream);
          break;
        case FrameType.OPEN_FAIL:
        case FrameType.RST:
          this.ended.add(f.stream);
          this.opened.delete(f.stream);
          break;
      }
      if (this.record) this.received.push(f);
    }
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private async waitFor(done: () => boolean, what: string): Promise<void> {
    while (!done()) {
      if (this.isClosed) throw new Error(`connection closed while waiting for ${what}`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
}

/** How an `OwnSession` is set up. */
export interface OwnSessionOptions {
  /** Default: a fresh random id. */
  sessionId?: Buffer;
  /** Passed to every tunnel's `WirePeer.connect` (default true). */
  record?: boolean;
}

/**
 * A session founded with a valid key, exactly as a legitimate client would (or an attacker with its
 * own account): it knows its secret, so it can JOIN more tunnels, and keeps the bytes of every AUTH
 * it sent (for replays).
 */
export class OwnSession {
  secret: Buffer | null = null;
  /** The founding (NEW) tunnel, once `tunnel()` opened it. */
  founder: WirePeer | null = null;
  /** Bytes of every AUTH this session sent. */
  readonly auths: Buffer[] = [];
  readonly sessionId: Buffer;
  private readonly record: boolean;
  private joins = 0;

  constructor(
    readonly port: number,
    readonly user: string,
    readonly key: Buffer,
    o: OwnSessionOptions = {},
  ) {
    this.sessionId = o.sessionId ?? newSessionId();
    this.record = o.record ?? true;
  }

  /** Found a session (its first tunnel, NEW) and return it; throws unless the server answers WELCOME. */
  static async found(port: number, p: { user?: string; key: Buffer } & OwnSessionOptions): Promise<OwnSession & { founder: WirePeer }> {
    const s = new OwnSession(port, p.user ?? '', p.key, p);
    await s.tunnel();
    return s as OwnSession & { founder: WirePeer };
  }

  /** Open a tunnel: NEW the first time, JOIN (with the next tunnel index) afterwards. Throws unless the server answers WELCOME. */
  async tunnel(): Promise<WirePeer> {
    const mode = this.secret ? AuthMode.JOIN : AuthMode.NEW;
    const { peer, answer } = await this.open(mode, this.joins++ & 0xffff);
    if (answer?.type !== FrameType.WELCOME) {
      peer.destroy();
      const why = answer ? `REJECT 0x${answer.reason.toString(16)} ${answer.message}` : 'closed';
      throw new Error(`${mode === AuthMode.NEW ? 'NEW' : 'JOIN'}${this.user ? ` as ${this.user}` : ''} refused: ${why}`);
    }
    return peer;
  }

  /** One more tunnel with a valid JOIN at `tunnelIndex`; resolves with the peer and the server's answer, whatever it is. */
  join(tunnelIndex: number): Promise<{ peer: WirePeer; answer: HandshakeAnswer }> {
    if (!this.secret) throw new Error('JOIN before the session was founded');
    return this.open(AuthMode.JOIN, tunnelIndex);
  }

  private async open(mode: AuthModeValue, tunnelIndex: number): Promise<{ peer: WirePeer; answer: HandshakeAnswer }> {
    const peer = await WirePeer.connect(this.port, { record: this.record });
    const key = mode === AuthMode.JOIN ? this.secret! : this.key;
    const { answer, input, bytes } = await peer.handshake({ mode, sessionId: this.sessionId, user: this.user, tunnelIndex, key });
    if (bytes) this.auths.push(bytes);
    if (mode === AuthMode.NEW && answer?.type === FrameType.WELCOME) {
      this.secret = sessionSecret(this.key, input!);
      this.founder = peer;
    }
    return { peer, answer };
  }
}
