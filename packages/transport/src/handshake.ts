import { randomBytes } from 'node:crypto';
import {
  AuthError,
  AuthMode,
  CHALLENGE_FLAG_USERS,
  ClosedError,
  FrameType,
  HandshakeTimeoutError,
  NONCE_LENGTH,
  ProtocolError,
  Reason,
  authFrame,
  encode,
  proofEquals,
  sessionSecret,
  welcomeProof,
  type AuthModeValue,
  type Frame,
  type ProofInput,
  type WelcomeFrame,
} from '@gkd/protocol';
import type { Tunnel } from './tunnel.js';

/** Handshake states of one tunnel, client side: awaiting CHALLENGE, then WELCOME; server side: awaiting AUTH. */
export type HandshakeState = 'await-challenge' | 'await-welcome' | 'await-auth' | 'done' | 'failed';

/**
 * The server closed a tunnel before it sent its CHALLENGE: it never started the handshake (a TLS server
 * waiting for a ClientHello from a plaintext client closes it after its handshake timeout; a server
 * that refused the routing preface; a process that died). `GKD_ERR_CLOSED`.
 */
export class ClosedBeforeChallengeError extends ClosedError {
  constructor(cause?: Error) {
    super(`the server closed the tunnel before its CHALLENGE${cause ? ` (${cause.message})` : ''}`, Reason.GENERAL_FAILURE);
  }
}

/** What a client proves on one tunnel. */
export interface ClientHandshakeParams {
  mode: AuthModeValue;
  sessionId: Buffer;
  tunnelIndex: number;
  user: string;
  /** The user's key (NEW) or the session secret (JOIN). */
  key: Buffer;
  timeoutMs: number;
}

/** Run the client side of the handshake on a tunnel in state 'handshaking'. Resolves with the session secret (NEW) or the given secret (JOIN). */
export function clientHandshake(t: Tunnel, p: ClientHandshakeParams): Promise<{ secret: Buffer; welcome: WelcomeFrame }> {
  return new Promise((resolve, reject) => {
    let state: HandshakeState = 'await-challenge';
    let input: ProofInput | null = null;
    const timer = setTimeout(() => fail(new HandshakeTimeoutError(p.timeoutMs)), p.timeoutMs);
    const fail = (err: Error) => {
      if (state === 'done' || state === 'failed') return;
      state = 'failed';
      clearTimeout(timer);
      t.close(err);
      reject(err);
    };
    const prevClose = t.handlers.close;
    t.handlers.close = (tt, u, err) => {
      if (state === 'await-challenge') fail(new ClosedBeforeChallengeError(err));
      else fail(err ?? new AuthError('tunnel closed during the handshake', Reason.GENERAL_FAILURE));
      prevClose?.(tt, u, err);
    };
    t.handlers.handshake = (f: Frame) => {
      if (state === 'await-challenge' && f.type === FrameType.CHALLENGE) {
        const usersMode = (f.flags & CHALLENGE_FLAG_USERS) !== 0;
        if (usersMode && !p.user) return fail(new AuthError('the server has several users: set a user name'));
        const auth = authFrame(p.key, {
          mode: p.mode,
          serverNonce: f.nonce,
          sessionId: p.sessionId,
          tunnelIndex: p.tunnelIndex,
          user: usersMode ? p.user : '',
        });
        input = auth.input;
        t.write(encode(auth.frame));
        state = 'await-welcome';
        return;
      }
      if (state === 'await-welcome' && f.type === FrameType.WELCOME && input) {
        if (!proofEquals(f.proof, welcomeProof(p.key, input))) {
          return fail(new AuthError('the server could not prove it holds the key (wrong key, or not a gkd server)'));
        }
        state = 'done';
        clearTimeout(timer);
        t.handlers.close = prevClose;
        t.handlers.handshake = undefined;
        t.transition('open');
        resolve({ secret: p.mode === AuthMode.NEW ? sessionSecret(p.key, input) : p.key, welcome: f });
        return;
      }
      if (f.type === FrameType.REJECT) {
        // BAD_PROOF after a NEW can only mean the key (or user name): say so plainly, it will not heal by retrying.
        const err =
          f.reason === Reason.BAD_PROOF && p.mode === AuthMode.NEW
            ? new AuthError(`the server rejected our key${p.user ? ' or user name' : ''} (${f.message || 'no reason given'})`, f.reason)
            : new AuthError(`server rejected the tunnel: ${f.message || 'no reason given'}`, f.reason);
        return fail(err);
      }
      fail(new ProtocolError(`unexpected frame 0x${f.type.toString(16)} during the handshake`));
    };
  });
}

/** A new random challenge nonce. */
export function newNonce(): Buffer {
  return randomBytes(NONCE_LENGTH);
}
