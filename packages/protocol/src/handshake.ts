import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AuthMode, FrameType, NONCE_LENGTH, PROTOCOL_VERSION, type AuthFrame, type AuthModeValue } from './frame.js';

const enc = (s: string) => Buffer.from(s, 'utf8');

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

/** Inputs bound into every AUTH proof. */
export interface ProofInput {
  mode: AuthModeValue;
  serverNonce: Buffer;
  clientNonce: Buffer;
  sessionId: Buffer;
  tunnelIndex: number;
  user: string;
}

function hmac(key: Buffer, label: string, parts: Buffer[]): Buffer {
  const h = createHmac('sha256', key);
  h.update(enc(`gkd/${PROTOCOL_VERSION} ${label}\0`));
  for (const p of parts) {
    h.update(u16(p.length));
    h.update(p);
  }
  return h.digest();
}

function bind(i: ProofInput): Buffer[] {
  return [Buffer.from([i.mode]), i.serverNonce, i.clientNonce, i.sessionId, u16(i.tunnelIndex), enc(i.user)];
}

/**
 * The AUTH proof. NEW: HMAC-SHA256 keyed with the user's key. JOIN: keyed with the session secret,
 * which only the two ends of the session's first tunnel can compute. See PROTOCOL.md §Handshake.
 */
export function authProof(secretOrKey: Buffer, input: ProofInput): Buffer {
  return hmac(secretOrKey, input.mode === AuthMode.NEW ? 'auth-new' : 'auth-join', bind(input));
}

/**
 * The AUTH frame answering a CHALLENGE (PROTOCOL.md §4), with the inputs it binds (to derive the
 * session secret after a NEW). A fresh random client nonce unless `input.clientNonce` is given.
 * `secretOrKey` is the user's key for NEW and the session secret for JOIN.
 */
export function authFrame(secretOrKey: Buffer, input: Omit<ProofInput, 'clientNonce'> & { clientNonce?: Buffer }): { frame: AuthFrame; input: ProofInput } {
  const bound: ProofInput = { ...input, clientNonce: input.clientNonce ?? randomBytes(NONCE_LENGTH) };
  return { frame: { type: FrameType.AUTH, ...bound, proof: authProof(secretOrKey, bound) }, input: bound };
}

/** The server's WELCOME proof: shows the client it talks to a holder of the same key (or session secret). */
export function welcomeProof(secretOrKey: Buffer, input: ProofInput): Buffer {
  return hmac(secretOrKey, 'welcome', bind(input));
}

/** The session secret, derived from the key and the first (NEW) tunnel's handshake. Never sent. */
export function sessionSecret(key: Buffer, input: ProofInput): Buffer {
  return hmac(key, 'session-secret', bind(input));
}

/** Constant-time comparison of two proofs. */
export function proofEquals(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
