import type { AddressInfo } from 'node:net';
import getPort, { portNumbers } from 'get-port';
import type { HostPort } from '@gkd/transport';
import type { Logger } from './logger.js';

/** Something could not start (a port in use, an address that does not exist). Exit code 1. */
export class StartError extends Error {
  override readonly name = 'StartError';
}

/** `host:port`, IPv6 in brackets; takes a HostPort or a bound socket's AddressInfo. */
export function formatHostPort(hp: { host: string; port: number } | AddressInfo): string {
  const host = 'host' in hp ? hp.host : hp.address;
  return host.includes(':') ? `[${host}]:${hp.port}` : `${host}:${hp.port}`;
}

/** Turn a listen error into a message naming the flag and the address: `--socks 127.0.0.1:1080: address already in use`. */
export function listenFailure(flag: string, at: HostPort, err: unknown): StartError {
  const code = (err as { code?: string }).code;
  const why =
    code === 'EADDRINUSE'
      ? 'address already in use'
      : code === 'EACCES'
        ? 'permission denied (ports below 1024 need privileges)'
        : code === 'EADDRNOTAVAIL'
          ? 'this machine has no such address'
          : code === 'ENOTFOUND' || code === 'EAI_AGAIN'
            ? 'cannot resolve the host name'
            : (err as Error).message;
  return new StartError(`${flag} ${formatHostPort(at)}: ${why}`);
}

/**
 * Listen on `preferred`; when it is taken and `fallback` is set, on a free port nearby instead
 * (get-port: the next 20 ports, else any), saying so in a log line. Other failures throw
 * `listenFailure(flag, …)`.
 */
export async function listenWithFallback<T>(
  flag: string,
  preferred: HostPort,
  fallback: boolean,
  listen: (at: HostPort) => Promise<T>,
  logger: Logger,
): Promise<T> {
  try {
    return await listen(preferred);
  } catch (err) {
    if (!fallback || (err as { code?: string }).code !== 'EADDRINUSE' || preferred.port === 0) throw listenFailure(flag, preferred, err);
    const first = Math.min(preferred.port + 1, 65535);
    const port = await getPort({ host: preferred.host, port: portNumbers(first, Math.min(first + 19, 65535)) });
    const at = { host: preferred.host, port };
    logger.warn(`${formatHostPort(preferred)} is already in use; using ${formatHostPort(at)} instead (pass ${flag} HOST:PORT to choose)`);
    try {
      return await listen(at);
    } catch (err2) {
      throw listenFailure(flag, at, err2);
    }
  }
}
