import { readFileSync } from 'node:fs';
import { kernelAccess, resolveSessionConfig } from '@gkd/transport';
import { UsageError } from './args.js';

/** The sysctl the README recommends on a Linux host without per-socket tuning, and the value it recommends. */
export const NOTSENT_LOWAT = { path: '/proc/sys/net/ipv4/tcp_notsent_lowat', recommended: 131_072 };

type Read = (path: string) => string;
const readProc: Read = (p) => readFileSync(p, 'utf8');

/**
 * A one-line tip when this Linux host lets the kernel queue unlimited unsent bytes per socket
 * (`tcp_notsent_lowat` at its default, 4 294 967 295) and gkd cannot set TCP_NOTSENT_LOWAT on its
 * tunnels itself: new connections then wait behind megabytes of bulk data in the tunnels (measured:
 * +364 ms to first byte; +0 with 131 072). Undefined when the setting is already lower, or cannot be
 * read (not Linux, no /proc).
 */
export function notsentLowatTip(read: Read = readProc): string | undefined {
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

/**
 * The start-up line that says how the tunnel sockets run: 'kernel' (gkd sets TCP_NOTSENT_LOWAT and
 * pacing on each tunnel and reads TCP_INFO for its path estimates) or 'user' (PING timing only, with
 * the reason), plus the congestion control asked for. In user mode the sysctl tip follows, if it applies.
 */
export function socketTuningLines(
  congestion: string | undefined,
  access = kernelAccess(),
  read: Read = readProc,
  loopbackOnly = false,
): { level: 'info' | 'warn'; message: string }[] {
  const cc = congestion ? `, congestion control ${congestion}` : '';
  if (loopbackOnly) return [{ level: 'info', message: 'tunnel sockets: user mode (loopback tunnels: the CPU, not the network, is the limit)' }];
  if (access.available) {
    const { notSentLowat: lowat, tunnelDepth } = resolveSessionConfig();
    return [
      {
        level: 'info',
        message: `tunnel sockets: kernel mode (TCP_NOTSENT_LOWAT ${tunnelDepth} ms at each tunnel's rate, 16–${lowat / 1024} KiB, pacing, TCP_INFO path estimates${cc}; tunnels to loopback addresses stay in user mode)`,
      },
    ];
  }
  const lines: { level: 'info' | 'warn'; message: string }[] = [
    {
      level: congestion ? 'warn' : 'info',
      message: `tunnel sockets: user mode, path estimates from PING timing only (${access.reason})${congestion ? `; --congestion ${congestion} cannot be applied` : ''}`,
    },
  ];
  const tip = notsentLowatTip(read);
  if (tip) lines.push({ level: 'info', message: tip });
  return lines;
}

/**
 * Check `--congestion NAME` against what this kernel offers (`tcp_available_congestion_control`, and
 * for a process that is not root `tcp_allowed_congestion_control`). Throws UsageError naming the
 * choices; passes when /proc cannot be read (the kernel then has the last word, per tunnel).
 */
export function checkCongestion(name: string, read: Read = readProc, root = process.getuid?.() === 0): void {
  if (!/^[a-z0-9_-]{1,15}$/i.test(name)) throw new UsageError(`--congestion: '${name}' is not a congestion control name (e.g. bbr, cubic)`);
  let available: string[];
  let allowed: string[];
  try {
    available = read('/proc/sys/net/ipv4/tcp_available_congestion_control').trim().split(/\s+/);
    allowed = read('/proc/sys/net/ipv4/tcp_allowed_congestion_control').trim().split(/\s+/);
  } catch {
    return;
  }
  if (!available.includes(name)) {
    throw new UsageError(
      `--congestion: '${name}' is not available in this kernel (available: ${available.join(', ')}; a module may load it: modprobe tcp_${name})`,
    );
  }
  if (!root && !allowed.includes(name)) {
    throw new UsageError(
      `--congestion: '${name}' is not allowed for unprivileged processes (allowed: ${allowed.join(', ')}; see net.ipv4.tcp_allowed_congestion_control)`,
    );
  }
}
