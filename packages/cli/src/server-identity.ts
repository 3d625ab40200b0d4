import { createSecureContext } from 'node:tls';
import { join } from 'node:path';
import { parseKey } from '@gkd/transport';
import { UsageError } from './args.js';
import { newKey } from './commands/keygen.js';
import type { ServerIdentitySettings, TlsFiles } from './options.js';
import { fingerprintOf, makeSelfSignedCertificate } from './self-signed.js';
import { STATE_FILES, ensureStateDir, readStateFile, tooOpen, writeSecretFile } from './state.js';

/** What a server proves itself with: its key(s) and its certificate. */
export interface ServerIdentity {
  auth: { key: Buffer } | { users: Record<string, Buffer>; file: string };
  /** Undefined: --plaintext. */
  tls: TlsFiles | undefined;
  /** Where the key and the certificate came from, for the start-up log (never the secrets themselves). */
  notes: string[];
  /** Things the operator should fix (a state file others can read). */
  warnings: string[];
}

/**
 * Complete the flags' identity from the state directory: the self-signed certificate (the default
 * when neither --tls-cert nor --plaintext was given) and the key (when neither --key nor --users
 * was). With `create`, what is missing is made and kept (`gkd server`); without (`gkd link`), a
 * missing file is an error that says to start the server first.
 */
export async function loadServerIdentity(s: ServerIdentitySettings, opts: { create: boolean }): Promise<ServerIdentity> {
  const notes: string[] = [];
  const warnings: string[] = [];
  const dir = s.stateDir;
  const needsState = s.auth === undefined || s.tls === 'self-signed';
  if (needsState && opts.create) ensureStateDir(s.stateDirLabel, dir);
  const path = (name: string): string => join(dir, name);
  const checkMode = (name: string): void => {
    if (tooOpen(path(name))) warnings.push(`${path(name)} can be read by other users of this machine: chmod 600 it (it holds a secret)`);
  };
  const notStarted = (what: string): never => {
    throw new UsageError(`no ${what} in ${dir}: start \`gkd server\` once first (as the same user, or with the same --state-dir)`);
  };

  let auth: ServerIdentity['auth'];
  if (s.auth !== undefined) auth = s.auth;
  else {
    const file = path(STATE_FILES.key);
    let text = readStateFile(s.stateDirLabel, file)?.toString('utf8').trim();
    if (text === undefined) {
      if (!opts.create) return notStarted('key (and none given with GKD_KEY, --key or --users)');
      text = newKey();
      writeSecretFile(s.stateDirLabel, file, `${text}\n`);
      notes.push(`made a new key in ${file} (\`gkd link\` prints the link clients need)`);
    } else {
      checkMode(STATE_FILES.key);
      notes.push(`using the key in ${file}`);
    }
    try {
      auth = { key: parseKey(file, text!) };
    } catch (err) {
      throw new UsageError(
        `${(err as Error).message.replace(/; make one with `gkd keygen`$/, '')}: fix or delete it (a new key means new links for every client)`,
      );
    }
  }

  let tls: TlsFiles | undefined;
  if (s.tls === 'plaintext') tls = undefined;
  else if (s.tls !== 'self-signed') tls = s.tls;
  else {
    const certFile = path(STATE_FILES.cert);
    const keyFile = path(STATE_FILES.certKey);
    let cert = readStateFile(s.stateDirLabel, certFile);
    let key = readStateFile(s.stateDirLabel, keyFile);
    if (cert === undefined && key === undefined) {
      if (!opts.create) return notStarted('certificate');
      const made = await makeSelfSignedCertificate();
      // The key first: a crash between the two leaves a key without a certificate, which is refused below.
      writeSecretFile(s.stateDirLabel, keyFile, made.key);
      writeSecretFile(s.stateDirLabel, certFile, made.cert);
      cert = Buffer.from(made.cert);
      key = Buffer.from(made.key);
      notes.push(`made a self-signed TLS certificate in ${certFile}`);
    } else if (cert === undefined || key === undefined) {
      throw new UsageError(
        `${cert === undefined ? certFile : keyFile} is missing but ${cert === undefined ? keyFile : certFile} is there: restore it, or delete both to make a new certificate (clients then need the new link)`,
      );
    } else {
      checkMode(STATE_FILES.certKey);
      notes.push(`using the TLS certificate in ${certFile}`);
    }
    let fingerprint: string;
    try {
      fingerprint = fingerprintOf(cert);
      createSecureContext({ cert, key });
    } catch (err) {
      throw new UsageError(
        `${certFile} and ${keyFile} are not a usable certificate and key (${(err as Error).message}): delete both to make new ones (clients then need the new link)`,
      );
    }
    tls = { cert, key, fingerprint };
  }
  return { auth, tls, notes, warnings };
}
