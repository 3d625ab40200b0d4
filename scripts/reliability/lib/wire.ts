/**
 * A gkd peer on a bare socket that sends whatever bytes it is given (PROTOCOL.md §1–§6), for the
 * hostile-input suite. Unlike packages/server/test/support/raw-peer.ts (whose ideas it borrows) it
 * stores nothing per frame, so it can push millions of frames: it counts what the server answers,
 * keeps only what the attack needs (the CHALLENGE, stream answers, the first GOAWAY), and writes
 * with backpressure.
 */
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import {
  AuthMode,
  Decoder,
  FrameType,
  NONCE_LENGTH,
  authProof,
  encode,
  encodePreface,
  newRoutingToken,
  sessionSecret,
  type AuthFrame,
  type AuthModeValue,
  type Frame,
  type ProofInput,
} from '@gkd/protocol';

/** What an AUTH proves (PROTOCOL.md §4). */
export interface AuthParams {
  mode: AuthModeValue;
  sessionId: Buffer;
  user: string;
  tunnelIndex: number;
  /** The user's key (NEW) or the session secret (JOIN), or whatever an attacker has instead. */
  key: Buffer;
}

/** Build an AUTH for a CHALLENGE nonce; returns the frame and the inputs it binds. */
export function makeAuth(p: AuthParams, serverNonce: Buffer): { frame: AuthFrame; input: ProofInput } {
  const input: ProofInput = {
    mode: p.mode,
    serverNonce,
    clientNonce: randomBytes(NONCE_LENGTH),
    sessionId: p.sessionId,
    tunnelIndex: p.tunnelIndex,
    user: p.user,
  };
  return { frame: { type: FrameType.AUTH, ...input, proof: authProof(p.key, input) }, input };
}

/** The server's answer to an AUTH. */
export type HandshakeAnswer = { type: 'welcome' } | { type: 'reject'; reason: number } | { type: 'closed' };

/** One connection to the server's tunnel port. */
export class WirePeer {
  readonly socket: net.Socket;
  /** Resolves when the socket has closed. */
  readonly closed: Promise<void>;
  isClosed = false;
  challenge: Buffer | null = null;
  /** Frames received, by type (PING/PONG included). */
  readonly counts = new Map<number, number>();
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
  private readonly decoder = new Decoder({ maxBody: 1 << 20 });
  private readonly pongWaiters = new Map<number, () => void>();
  private handshakeWaiter: ((a: HandshakeAnswer) => void) | null = null;
  private challengeWaiter: (() => void) | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('error', () => undefined); // being reset by the server is an outcome, not a failure
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        for (const w of this.pongWaiters.values()) w();
        this.pongWaiters.clear();
        this.handshakeWaiter?.({ type: 'closed' });
        this.handshakeWaiter = null;
        this.challengeWaiter?.();
        resolve();
      }),
    );
  }

  /**
   * Connect; resolves once connected (not waiting for the CHALLENGE). `from` is the local address:
   * attackers that stand for other hosts use their own (Linux routes all of 127/8 to loopback), as the
   * server bounds handshakes per remote address. `preface`: what to send first (a valid preface by default).
   */
  static connect(port: number, from = '127.0.0.1', preface: Buffer | null = encodePreface(newRoutingToken())): Promise<WirePeer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port, localAddress: from });
      const peer = new WirePeer(socket);
      socket.once('connect', () => {
        // The routing preface (PROTOCOL.md §4.1) opens every tunnel; null: the caller sends its own bytes first.
        if (preface) socket.write(preface);
        resolve(peer);
      });
      socket.once('error', reject);
    });
  }

  /** Wait for the CHALLENGE nonce (null if the server closed first). */
  async waitChallenge(): Promise<Buffer | null> {
    if (this.challenge || this.isClosed) return this.challenge;
    await new Promise<void>((r) => (this.challengeWaiter = r));
    return this.challenge;
  }

  /** Send AUTH for this tunnel's CHALLENGE and wait for WELCOME, REJECT or the close. */
  async handshake(p: AuthParams): Promise<{ answer: HandshakeAnswer; input: ProofInput | null; bytes: Buffer | null }> {
    const nonce = await this.waitChallenge();
    if (!nonce) return { answer: { type: 'closed' }, input: null, bytes: null };
    const { frame, input } = makeAuth(p, nonce);
    const bytes = encode(frame);
    const answer = new Promise<HandshakeAnswer>((r) => (this.handshakeWaiter = r));
    this.socket.write(bytes);
    return { answer: await answer, input, bytes };
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

  /** Resolves true when PONG `id` arrives, false if the socket closes first. */
  waitPong(id: number): Promise<boolean> {
    if (this.isClosed) return Promise.resolve(false);
    return new Promise((resolve) => this.pongWaiters.set(id, () => resolve(!this.isClosed)));
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
          if (!this.challenge) {
            this.challenge = f.nonce;
            this.challengeWaiter?.();
            this.challengeWaiter = null;
          }
          break;
        case FrameType.WELCOME:
          this.handshakeWaiter?.({ type: 'welcome' });
          this.handshakeWaiter = null;
          break;
        case FrameType.REJECT:
          this.handshakeWaiter?.({ type: 'reject', reason: f.reason });
          this.handshakeWaiter = null;
          break;
        case FrameType.PING:
          if (this.answerPings && !this.socket.destroyed) this.socket.write(encode({ type: FrameType.PONG, id: f.id }));
          break;
        case FrameType.PONG: {
          const w = this.pongWaiters.get(f.id);
          if (w) {
            this.pongWaiters.delete(f.id);
            w();
          }
          break;
        }
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
    }
  }
}

/** A session an attacker founded with its own valid key: it knows the secret, so it can JOIN more tunnels. */
export class OwnSession {
  secret: Buffer | null = null;
  /** Bytes of every AUTH this session sent (for replays). */
  readonly auths: Buffer[] = [];
  private joins = 0;

  constructor(
    readonly port: number,
    readonly user: string,
    readonly key: Buffer,
    readonly sessionId: Buffer = randomBytes(16),
  ) {}

  /** Open a tunnel: NEW the first time, JOIN afterwards. Throws unless the server answers WELCOME. */
  async tunnel(): Promise<WirePeer> {
    const peer = await WirePeer.connect(this.port);
    const mode = this.secret ? AuthMode.JOIN : AuthMode.NEW;
    const { answer, input, bytes } = await peer.handshake({
      mode,
      sessionId: this.sessionId,
      user: this.user,
      tunnelIndex: this.joins++ & 0xffff,
      key: this.secret ?? this.key,
    });
    if (bytes) this.auths.push(bytes);
    if (answer.type !== 'welcome') {
      peer.destroy();
      throw new Error(`${mode === AuthMode.NEW ? 'NEW' : 'JOIN'} as ${this.user} refused: ${answer.type === 'reject' ? `REJECT 0x${answer.reason.toString(16)}` : 'closed'}`);
    }
    if (!this.secret) this.secret = sessionSecret(this.key, input!);
    return peer;
  }
}
