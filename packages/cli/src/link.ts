import { UsageError } from './args.js';

/**
 * The connection link: everything a client needs in one line,
 *
 *     gkd://[USER@]HOST[:PORT]?v=1&key=KEY&fp=SHA256
 *
 * `v` is the format's version (1; a client refuses others, so the format can change without a
 * client misreading a newer link). `key` is the pre-shared key (base64url, as `gkd keygen` prints
 * it). `fp` is the SHA-256 fingerprint of the server's certificate, 64 hex digits, which the client
 * pins; a server run with `--plaintext` gets `plaintext=1` instead, and a client only follows such a
 * link when it was given `--plaintext` too. USER is percent-encoded; PORT defaults to 9990.
 */
export interface ConnectionLink {
  host: string;
  port: number;
  user: string | undefined;
  /** The key as text (the caller validates it like --key). */
  key: string;
  /** Uppercase hex fingerprint without colons, or 'plaintext'. */
  tls: { fingerprint: string } | 'plaintext';
}

/** The link format this code writes and reads. */
export const LINK_VERSION = 1;
const SCHEME = 'gkd:';
const DEFAULT_PORT = 9990;
const PARAMS = new Set(['v', 'key', 'fp', 'plaintext']);

/** Write a link. `host` may be a name, an IPv4 or an IPv6 address (bracketed here). */
export function formatLink(link: ConnectionLink): string {
  const host = link.host.includes(':') && !link.host.startsWith('[') ? `[${link.host}]` : link.host;
  const user = link.user === undefined ? '' : `${encodeURIComponent(link.user)}@`;
  const tls = link.tls === 'plaintext' ? 'plaintext=1' : `fp=${link.tls.fingerprint.replace(/:/g, '').toUpperCase()}`;
  return `gkd://${user}${host}:${link.port}?v=${LINK_VERSION}&key=${encodeURIComponent(link.key)}&${tls}`;
}

/** Read a link strictly: any part missing, unknown, repeated or malformed is a UsageError naming `label`. */
export function parseLink(label: string, text: string): ConnectionLink {
  const fail = (why: string): never => {
    throw new UsageError(`${label}: ${why} (a link looks like gkd://HOST:PORT?v=1&key=…&fp=…; \`gkd link\` on the server prints it)`);
  };
  const s = text.trim();
  if (!s.toLowerCase().startsWith('gkd://')) fail('not a gkd:// link');
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return fail('not a valid URL');
  }
  if (url.protocol !== SCHEME) fail('not a gkd:// link');
  if (url.password !== '') fail('a link carries no password (the key goes in key=)');
  if (url.pathname !== '' && url.pathname !== '/') fail(`unexpected path "${url.pathname}"`);
  if (url.hash !== '') fail('unexpected #fragment');
  if (url.hostname === '') fail('no host');
  const port = url.port === '' ? DEFAULT_PORT : Number(url.port);
  if (port < 1 || port > 65535) fail(`invalid port ${url.port}`);

  const params = new Map<string, string>();
  for (const [name, value] of url.searchParams) {
    if (!PARAMS.has(name)) fail(`unknown parameter "${name}" (this gkd reads link version ${LINK_VERSION}: v, key, fp, plaintext)`);
    if (params.has(name)) fail(`"${name}" given twice`);
    params.set(name, value);
  }
  const v = params.get('v');
  if (v === undefined) fail('no version (v=1)');
  if (v !== String(LINK_VERSION)) fail(`link version ${v} is not supported: this gkd reads version ${LINK_VERSION}; update it`);
  const key = params.get('key');
  if (key === undefined || key === '') fail('no key=');
  const fp = params.get('fp');
  const plaintext = params.get('plaintext');
  if (fp !== undefined && plaintext !== undefined) fail('fp= and plaintext= together');
  let tls: ConnectionLink['tls'];
  if (plaintext !== undefined) {
    if (plaintext !== '1') fail(`plaintext= must be 1, got "${plaintext}"`);
    tls = 'plaintext';
  } else {
    if (fp === undefined) fail("no fp= (the server certificate's fingerprint)");
    const hex = fp!.replace(/:/g, '');
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) fail(`fp= must be a SHA-256 fingerprint (64 hex digits), got "${fp}"`);
    tls = { fingerprint: hex.toUpperCase() };
  }
  let user: string | undefined;
  if (url.username !== '') {
    try {
      user = decodeURIComponent(url.username);
    } catch {
      fail('the user name is not valid percent-encoding');
    }
    if (Buffer.byteLength(user!) > 255) fail('the user name is longer than 255 bytes');
  }
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  return { host, port, user, key: key!, tls };
}
