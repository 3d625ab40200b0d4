import { readFileSync } from 'node:fs';

/** The sysctl the README recommends on a Linux server, and the value it recommends. */
export const NOTSENT_LOWAT = { path: '/proc/sys/net/ipv4/tcp_notsent_lowat', recommended: 131_072 };

/**
 * A one-line tip when this Linux host lets the kernel queue unlimited unsent bytes per socket
 * (`tcp_notsent_lowat` at its default, 4 294 967 295): new connections then wait behind megabytes of
 * bulk data in the tunnels (measured: +364 ms to first byte; +0 with 131 072). Undefined when the
 * setting is already lower, or cannot be read (not Linux, no /proc).
 */
export function notsentLowatTip(read: (path: string) => string = (p) => readFileSync(p, 'utf8')): string | undefined {
  let value: number;
  try {
    value = Number(read(NOTSENT_LOWAT.path).trim());
  } catch {
    return undefined;
  }
  if (!Number.isFinite(value) || value <= 4 * NOTSENT_LOWAT.recommended) return undefined;
  return (
    `tip: sysctl -w net.ipv4.tcp_notsent_lowat=${NOTSENT_LOWAT.recommended} (now ${value}) lets a new connection's first bytes ` +
    'overtake bulk transfers in the tunnels (README, "A real deployment")'
  );
}
