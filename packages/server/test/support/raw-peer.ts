import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import {
  AuthMode,
  Decoder,
  FrameType,
  NONCE_LENGTH,
  SESSION_ID_LENGTH,
  authProof,
  encode,
  encodePreface,
  newRoutingToken,
  sessionSecret,
  type AuthFrame,
  type AuthModeValue,
  type ChallengeFrame,
  type Frame,
  type ProofInput,
  type RejectFrame,
  type WelcomeFrame,
} from '@gkd/protocol';

/**
 * A gkd peer written against the wire protocol only (PROTOCOL.md §1–§5), over a bare `node:net`
 * socket: it sends exactly the frames a test tells it to, valid or not. Tests use it to play an
 * attacker (guessing session and stream ids, replaying an AUTH) and to hit server limits precisely.
 * PINGs are answered so keepalive never closes the tunnel under a slow test.
 */
export class RawPeer {
  readonly socket: net.Socket;
  /** Every frame received except CHALLENGE, PING and PONG, in order. */
  readonly received: Frame[] = [];
  /** Resolves when the socket has closed (either side). */
  readonly closed: Promise<void>;
  private readonly decoder = new Decoder();
  private readonly waiters: (() => void)[] = [];
  private challengeFrame: ChallengeFrame | null = null;
  private cursor = 0;
  private isClosed = false;
  private readonly pongs = new Set<number>();
  private nextPingId = 1;
  /** Set when the server sent bytes that do not decode. */
  decodeError: Error | null = null;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('error', () => undefined); // a server that resets us is an outcome tests check, not a crash
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
  }

  /** Connect to a gkd server, send the routing preface and wait for its CHALLENGE. */
  static async connect(port: number, host = '127.0.0.1'): Promise<RawPeer> {
    const socket = net.connect({ host, port });
    const peer = new RawPeer(socket);
    await once(socket, 'connect');
    socket.write(encodePreface(newRoutingToken())); // PROTOCOL.md §4.1: the first bytes of every tunnel
    await peer.waitFor(() => peer.challengeFrame !== null, 'CHALLENGE');
    return peer;
  }

  /** The server's CHALLENGE (its nonce is what a fresh AUTH must bind). */
  get challenge(): ChallengeFrame {
    if (!this.challengeFrame) throw new Error('no CHALLENGE yet');
    return this.challengeFrame;
  }

  /** Send a frame (encoded here) or raw bytes. Ignored once the socket is gone. */
  send(frameOrBytes: Frame | Buffer): void {
    if (this.socket.destroyed) return;
    this.socket.write(Buffer.isBuffer(frameOrBytes) ? frameOrBytes : encode(frameOrBytes));
  }

  /**
   * The next received frame (in order, from where the last `next` stopped) that `match` accepts,
   * skipping others; rejects if the socket closes first.
   */
  async next(match: (f: Frame) => boolean = () => true, what = 'a frame'): Promise<Frame> {
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

  /** Received frames of the given type. */
  all<T extends Frame['type']>(type: T): Extract<Frame, { type: T }>[] {
    return this.received.filter((f) => f.type === type) as Extract<Frame, { type: T }>[];
  }

  /** Send an AUTH answering this tunnel's CHALLENGE; returns what it proves, for deriving the secret. */
  auth(p: AuthParams): { frame: AuthFrame; input: ProofInput } {
    const a = makeAuth({ ...p, serverNonce: this.challenge.nonce });
    this.send(a.frame);
    return a;
  }

  /** Send AUTH and wait for the answer: WELCOME or REJECT. */
  async handshake(p: AuthParams): Promise<{ answer: WelcomeFrame | RejectFrame; input: ProofInput }> {
    const { input } = this.auth(p);
    const answer = (await this.next((f) => f.type === FrameType.WELCOME || f.type === FrameType.REJECT, 'WELCOME or REJECT')) as
      | WelcomeFrame
      | RejectFrame;
    return { answer, input };
  }

  /**
   * PING and wait for the PONG. True: the server processed every frame sent before the PING and kept
   * the tunnel (PROTOCOL.md §6: a tunnel is ordered, and PONG confirms processing). False: it closed
   * the tunnel instead.
   */
  async ping(): Promise<boolean> {
    const id = this.nextPingId++;
    this.send({ type: FrameType.PING, id });
    try {
      await this.waitFor(() => this.pongs.has(id), `PONG ${id}`);
      return true;
    } catch {
      return false;
    }
  }

  /** Resolves once the socket is closed. */
  async waitClosed(): Promise<void> {
    await this.closed;
  }

  get isOpen(): boolean {
    return !this.isClosed;
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
      if (f.type === FrameType.CHALLENGE && !this.challengeFrame) this.challengeFrame = f;
      else if (f.type === FrameType.PING) this.send({ type: FrameType.PONG, id: f.id });
      else if (f.type === FrameType.PONG) this.pongs.add(f.id);
      else this.received.push(f);
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

/** What an AUTH proves: the mode, the session, the tunnel, the user, and the key (NEW) or secret (JOIN). */
export interface AuthParams {
  mode: AuthModeValue;
  sessionId: Buffer;
  user?: string;
  tunnelIndex?: number;
  /** The user's key for NEW, the session secret for JOIN (or whatever an attacker has instead). */
  key: Buffer;
}

/** Build an AUTH frame for a CHALLENGE nonce (PROTOCOL.md §4). */
export function makeAuth(p: AuthParams & { serverNonce: Buffer }): { frame: AuthFrame; input: ProofInput } {
  const input: ProofInput = {
    mode: p.mode,
    serverNonce: p.serverNonce,
    clientNonce: randomBytes(NONCE_LENGTH),
    sessionId: p.sessionId,
    tunnelIndex: p.tunnelIndex ?? 0,
    user: p.user ?? '',
  };
  return { frame: { type: FrameType.AUTH, ...input, proof: authProof(p.key, input) }, input };
}

/** A fresh random session id. */
export function newSessionId(): Buffer {
  return randomBytes(SESSION_ID_LENGTH);
}

/** A session founded by a raw peer: it knows its own secret, so it can JOIN more tunnels. */
export interface RawSession {
  sessionId: Buffer;
  user: string;
  secret: Buffer;
  /** The founding tunnel. */
  tunnel: RawPeer;
  /** Open one more tunnel with a valid JOIN; resolves with the peer and the server's answer. */
  join(tunnelIndex: number): Promise<{ peer: RawPeer; answer: Frame }>;
}

/**
 * Found a session with NEW (user + key), exactly as a legitimate client would. Throws if the server
 * answers anything but WELCOME.
 */
export async function rawSession(port: number, p: { user?: string; key: Buffer; sessionId?: Buffer }): Promise<RawSession> {
  const sessionId = p.sessionId ?? newSessionId();
  const user = p.user ?? '';
  const tunnel = await RawPeer.connect(port);
  const { answer, input } = await tunnel.handshake({ mode: AuthMode.NEW, sessionId, user, key: p.key });
  if (answer.type !== FrameType.WELCOME) throw new Error(`NEW refused: REJECT 0x${answer.reason.toString(16)} ${answer.message}`);
  const secret = sessionSecret(p.key, input);
  return {
    sessionId,
    user,
    secret,
    tunnel,
    async join(tunnelIndex) {
      const peer = await RawPeer.connect(port);
      const { answer: a } = await peer.handshake({ mode: AuthMode.JOIN, sessionId, user, tunnelIndex, key: secret });
      return { peer, answer: a };
    },
  };
}
