import type { IncomingMessage } from 'node:http';
import type { SocksAuth } from './config.js';
import { sameSecret } from './secret.js';

/** The challenge a 407 carries (RFC 9110 §11.7.1, RFC 7617). */
export const PROXY_AUTHENTICATE = 'Basic realm="gkd", charset="UTF-8"';

/**
 * Whether `req` carries `Proxy-Authorization: Basic …` with the expected username and password.
 * Always true when `auth` is undefined. The comparison takes the same time wherever they differ.
 */
export function proxyAuthorized(req: IncomingMessage, auth: SocksAuth | undefined): boolean {
  if (!auth) return true;
  const header = req.headers['proxy-authorization'];
  const m = typeof header === 'string' ? /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(header) : null;
  if (!m) return false;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  // Both compared, always: no early exit on a wrong username.
  const userOk = sameSecret(decoded.slice(0, colon), auth.username);
  const passOk = sameSecret(decoded.slice(colon + 1), auth.password);
  return userOk && passOk;
}
