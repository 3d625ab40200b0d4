import { randomBytes } from 'node:crypto';

/** Bytes in a key `gkd keygen` makes (256 bits; the protocol needs at least 128). */
export const KEY_BYTES = 32;

/**
 * A new random key: 32 random bytes, base64url (43 characters, no padding). Never starts with `-`,
 * so `--key $(gkd keygen)` is not read as a flag (this costs 0.02 bits of the 256).
 */
export function newKey(): string {
  for (;;) {
    const key = randomBytes(KEY_BYTES).toString('base64url');
    if (!key.startsWith('-')) return key;
  }
}

/** `gkd keygen`: print a new key on its own line on stdout. */
export function keygenCommand(out: NodeJS.WritableStream = process.stdout): number {
  out.write(`${newKey()}\n`);
  return 0;
}
