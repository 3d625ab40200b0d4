import { networkInterfaces } from 'node:os';
import type { HostPort } from '@gkd/transport';
import { UsageError, type Args } from '../args.js';
import { formatLink } from '../link.js';
import { linkSettings } from '../options.js';
import { loadServerIdentity, type ServerIdentity } from '../server-identity.js';

/** One user's link (user undefined: the single key). */
export interface UserLink {
  user: string | undefined;
  link: string;
}

/** The links of a server: one for the single key, or one per user of a --users file (only `onlyUser`'s when given). */
export function serverLinks(identity: ServerIdentity, host: string, port: number, onlyUser?: string): UserLink[] {
  const tls = identity.tls ? { fingerprint: identity.tls.fingerprint } : ('plaintext' as const);
  if ('key' in identity.auth) {
    if (onlyUser !== undefined) throw new UsageError(`--user ${onlyUser}: this server has one key, not a --users file`);
    return [{ user: undefined, link: formatLink({ host, port, user: undefined, key: identity.auth.key.toString('base64url'), tls }) }];
  }
  const users = Object.entries(identity.auth.users).filter(([name]) => onlyUser === undefined || name === onlyUser);
  if (users.length === 0)
    throw new UsageError(`--user ${onlyUser}: no such user in ${identity.auth.file} (users: ${Object.keys(identity.auth.users).join(', ')})`);
  return users.map(([user, key]) => ({ user, link: formatLink({ host, port, user, key: key.toString('base64url'), tls }) }));
}

/**
 * The address clients probably reach this server by: the --listen host when it is a specific one,
 * else this machine's first non-loopback IPv4 address (on a VPS, usually its public one), else its
 * first IPv6 one, else 127.0.0.1. Behind NAT it is wrong, hence `gkd link --host`.
 */
export function guessPublicHost(listen: HostPort): { host: string; guessed: boolean } {
  if (listen.host !== '0.0.0.0' && listen.host !== '::' && listen.host !== '') return { host: listen.host, guessed: false };
  const addresses = Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .filter((a) => !a.internal);
  const v4 = addresses.find((a) => a.family === 'IPv4');
  const v6 = addresses.find((a) => a.family === 'IPv6' && !a.address.startsWith('fe80:'));
  return { host: v4?.address ?? v6?.address ?? '127.0.0.1', guessed: true };
}

/**
 * `gkd link`: print the connection link(s) from the server's flags (the same environment and
 * --config as the server) and its state directory, one per line on stdout. Makes nothing: a server
 * that never started has no certificate yet, and that is an error.
 */
export async function linkCommand(args: Args): Promise<number> {
  const settings = linkSettings(args);
  if (settings.listen.port === 0) throw new UsageError(`${args.label('listen')} has port 0: give the port the server listens on`);
  const identity = await loadServerIdentity(settings, { create: false });
  const { host, guessed } = settings.host !== undefined ? { host: settings.host, guessed: false } : guessPublicHost(settings.listen);
  for (const w of identity.warnings) process.stderr.write(`gkd link: ${w}\n`);
  if (guessed)
    process.stderr.write(
      `gkd link: the host ${host} is a guess (this machine's first address); if clients reach the server by another name or address, pass --host NAME\n`,
    );
  for (const { link } of serverLinks(identity, host, settings.listen.port, settings.user)) process.stdout.write(`${link}\n`);
  return 0;
}
