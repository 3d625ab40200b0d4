import { toAddress, type Address } from '@gkd/protocol';

/**
 * Turn a requested host and port into the Address handed to the opener. IP literals are recognised and
 * IPv6 is canonicalised (RFC 5952); anything else is a domain name, passed on unresolved: the gkd server
 * resolves it, never this machine. Throws RangeError for an empty or over-long name, a name with
 * control characters or spaces, or a port outside 1–65535.
 */
export function toDestination(host: string, port: number): Address {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`invalid port ${port}`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point of this check.
  if (/[\u0000-\u0020\u007f]/.test(host)) throw new RangeError('destination name contains control characters or spaces');
  return toAddress(host, port);
}
