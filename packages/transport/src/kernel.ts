import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';

/**
 * The kernel's view and controls of a tunnel's TCP socket, which Node does not expose: setsockopt
 * TCP_NOTSENT_LOWAT and TCP_CONGESTION, getsockopt TCP_INFO. Reached through libc with `koffi` (a
 * prebuilt FFI library from the npm registry). Where it cannot work (not Linux, the library does not
 * load, a socket without a file descriptor such as an in-memory pair) everything here says so and the
 * transport runs as before: `kernelAccess()` gives the reason, `kernelSocket()` returns null.
 */

const IPPROTO_TCP = 6;
const TCP_INFO = 11;
const TCP_CONGESTION = 13;
const TCP_NOTSENT_LOWAT = 25;
const SOL_SOCKET = 1;
const SO_MAX_PACING_RATE = 47;
/** sizeof(struct tcp_info) up to tcpi_snd_wnd (Linux 5.4+); older kernels fill less and report the length. */
const TCP_INFO_LEN = 232;

/** The fields of `struct tcp_info` the transport uses. Times in microseconds, rates in bytes per second. */
export interface TcpInfo {
  /** TCP state (1 = established). */
  state: number;
  /** Congestion-avoidance state: 0 open, 1 disorder, 2 CWR, 3 recovery, 4 loss. */
  caState: number;
  /** Retransmission timeout, in µs. */
  rto: number;
  /** Sender MSS, in bytes. */
  mss: number;
  /** Segments sent and not yet acknowledged. */
  unacked: number;
  /** Segments the kernel thinks are lost. */
  lost: number;
  /** Segments retransmitted and not yet acknowledged. */
  retrans: number;
  /** Smoothed RTT, in µs. */
  rtt: number;
  /** RTT variation, in µs. */
  rttVar: number;
  /** Congestion window, in segments. */
  cwnd: number;
  /** Slow-start threshold, in segments (a huge number before the first loss). */
  ssthresh: number;
  /** Retransmissions over the connection's life. */
  totalRetrans: number;
  /** Pacing rate, in bytes/s. */
  pacingRate: number;
  /** Bytes the peer acknowledged, over the connection's life. */
  bytesAcked: number;
  /** Bytes written by the application that the kernel has not sent yet. */
  notSent: number;
  /** Minimum RTT seen, in µs. */
  minRtt: number;
  /** Most recent delivery-rate sample, in bytes/s. */
  deliveryRate: number;
  /** Time the sender was limited by the receive window, in µs. */
  rwndLimited: number;
  /** Time the sender was limited by its send buffer, in µs. */
  sndbufLimited: number;
  /** Bytes retransmitted, over the connection's life. */
  bytesRetrans: number;
}

/** Parse a `struct tcp_info` (Linux, x86-64 and arm64 share the layout). Fields past `length` read as 0. */
export function parseTcpInfo(b: Buffer, length = b.length): TcpInfo {
  const u32 = (o: number): number => (o + 4 <= length ? b.readUInt32LE(o) : 0);
  const u64 = (o: number): number => (o + 8 <= length ? Number(b.readBigUInt64LE(o)) : 0);
  return {
    state: length > 0 ? b[0]! : 0,
    caState: length > 1 ? b[1]! : 0,
    rto: u32(8),
    mss: u32(16),
    unacked: u32(24),
    lost: u32(32),
    retrans: u32(36),
    rtt: u32(68),
    rttVar: u32(72),
    ssthresh: u32(76),
    cwnd: u32(80),
    totalRetrans: u32(100),
    pacingRate: u64(104),
    bytesAcked: u64(120),
    notSent: u32(144),
    minRtt: u32(148),
    deliveryRate: u64(160),
    rwndLimited: u64(176),
    sndbufLimited: u64(184),
    bytesRetrans: u64(208),
  };
}

interface Libc {
  setsockopt(fd: number, level: number, name: number, value: Buffer, length: number): number;
  getsockopt(fd: number, level: number, name: number, value: Buffer, length: number[]): number;
}

let libc: Libc | null | undefined;
let unavailable = '';

/** Load libc's setsockopt/getsockopt once; null (with `unavailable` set) where that cannot work. */
function load(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (process.platform !== 'linux') {
    unavailable = `not Linux (${process.platform})`;
    return null;
  }
  if (process.env.GKD_KERNEL === 'off') {
    unavailable = 'disabled by GKD_KERNEL=off';
    return null;
  }
  try {
    const koffi = createRequire(import.meta.url)('koffi') as {
      load(name: string): { func(sig: string): (...args: unknown[]) => number };
    };
    const lib = koffi.load('libc.so.6');
    const set = lib.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t length)');
    const get = lib.func('int getsockopt(int fd, int level, int name, _Out_ void *value, _Inout_ uint32_t *length)');
    libc = {
      setsockopt: (fd, level, name, value, length) => set(fd, level, name, value, length),
      getsockopt: (fd, level, name, value, length) => get(fd, level, name, value, length),
    };
  } catch (err) {
    unavailable = `koffi could not load libc: ${(err as Error).message.split('\n')[0]}`;
  }
  return libc;
}

/** Whether kernel socket access works in this process, and if not, why. */
export function kernelAccess(): { available: true } | { available: false; reason: string } {
  return load() ? { available: true } : { available: false, reason: unavailable };
}

/** A tunnel socket's kernel controls and statistics. */
export interface KernelSocket {
  readonly fd: number;
  /** Set TCP_NOTSENT_LOWAT, in bytes: the kernel then accepts writes only while less than this is unsent. */
  setNotSentLowat(bytes: number): boolean;
  /**
   * Turn on the kernel's own TCP pacing (Linux 4.13+): setting SO_MAX_PACING_RATE, even to "no limit",
   * makes TCP spread each congestion window over the RTT instead of sending it in one burst, whatever
   * the congestion control (BBR paces anyway). `bytesPerSecond` 0 means no limit.
   */
  setPacing(bytesPerSecond?: number): boolean;
  /** Set the congestion control algorithm; throws with the kernel's refusal (e.g. not in tcp_allowed_congestion_control). */
  setCongestion(name: string): void;
  /** The congestion control algorithm in use, or null if it cannot be read. */
  congestion(): string | null;
  /** A fresh TCP_INFO snapshot, or null if the socket is closed. */
  info(): TcpInfo | null;
}

/** The file descriptor behind a net.Socket or tls.TLSSocket (TLSWrap forwards `fd`), or null. */
export function fdOf(socket: Duplex): number | null {
  const fd = (socket as Duplex & { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : null;
}

/** Kernel access for `socket`, or null where unavailable (see `kernelAccess`) or the socket has no fd. */
export function kernelSocket(socket: Duplex): KernelSocket | null {
  const c = load();
  const fd = fdOf(socket);
  if (!c || fd === null) return null;
  const int = Buffer.alloc(4);
  const infoBuf = Buffer.alloc(TCP_INFO_LEN);
  const len = [0];
  // The fd number may be reused by another socket once this one closes: check it is still ours.
  const live = (): boolean => fdOf(socket) === fd;
  return {
    fd,
    setNotSentLowat(bytes) {
      if (!live()) return false;
      int.writeInt32LE(bytes);
      return c.setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, int, 4) === 0;
    },
    setPacing(bytesPerSecond = 0) {
      if (!live()) return false;
      int.writeUInt32LE(bytesPerSecond > 0 ? Math.min(bytesPerSecond, 0xfffffffe) : 0xffffffff);
      return c.setsockopt(fd, SOL_SOCKET, SO_MAX_PACING_RATE, int, 4) === 0;
    },
    setCongestion(name) {
      if (!/^[a-z0-9_-]{1,15}$/i.test(name)) throw new Error(`invalid congestion control name ${JSON.stringify(name)}`);
      if (!live()) throw new Error('socket closed');
      const v = Buffer.from(`${name}\0`, 'latin1');
      if (c.setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, v, v.length) !== 0) {
        throw new Error(`the kernel refused congestion control '${name}' (see /proc/sys/net/ipv4/tcp_allowed_congestion_control)`);
      }
    },
    congestion() {
      if (!live()) return null;
      const b = Buffer.alloc(16);
      len[0] = 16;
      if (c.getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, b, len) !== 0) return null;
      const s = b.toString('latin1');
      const end = s.indexOf('\0');
      return end >= 0 ? s.slice(0, end) : s;
    },
    info() {
      if (!live()) return null;
      len[0] = TCP_INFO_LEN;
      if (c.getsockopt(fd, IPPROTO_TCP, TCP_INFO, infoBuf, len) !== 0) return null;
      return parseTcpInfo(infoBuf, Math.min(len[0] ?? TCP_INFO_LEN, TCP_INFO_LEN));
    },
  };
}
