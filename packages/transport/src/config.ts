import { ConfigError, DEFAULT_MAX_BODY, DEFAULT_MAX_PAYLOAD, MAX_WINDOW } from '@gkd/protocol';
import type { TunnelPicker } from './scheduler.js';

/** Settings shared by both ends of a session. All times in milliseconds, all sizes in bytes. */
export interface SessionConfig {
  /** Largest DATA payload this end sends, in bytes. Default 16 384. */
  maxPayload: number;
  /** Largest frame body this end accepts, in bytes. Default 65 544. */
  maxBody: number;
  /** Smallest receive window a new stream starts with when the receive budget is tight, in bytes. Default 256 KiB. */
  initialWindow: number;
  /**
   * Receive window a new stream starts with while the receive budget has room, in bytes: large, so a
   * download's first round trips are limited by the tunnels' congestion windows, not by ours (a
   * window that opens in steps makes every tunnel's TCP burst and lose at each step). Raised to the
   * largest window this session's streams have grown to (what the session knows of the path), and
   * never more than a quarter of the free receive budget (nor less than `initialWindow`). Default 4 MiB.
   */
  startWindow: number;
  /**
   * Largest receive window a stream may grow to, in bytes; also caps how much unacknowledged data this end holds per stream.
   * Default 16 MiB. A sender also stops at `maxUnackedFrames` × `maxPayload` (16 MiB by default), so more needs larger payloads.
   */
  maxWindow: number;
  /**
   * Bytes one session (or one peer, when the server shares the budget among a user's sessions) may
   * make this end buffer, in bytes: half for the receive windows it grants, half for unacknowledged
   * sent bytes. A stream always gets at least `maxPayload` of window, so the true bound is this plus
   * streams × maxPayload. Default 64 MiB.
   */
  sessionWindowBudget: number;
  /** Most DATA frames one stream may have unacknowledged. Default 1024 (the protocol's limit). */
  maxUnackedFrames: number;
  /** How often each tunnel sends a PING, in ms. Default 1000. */
  keepaliveInterval: number;
  /** A tunnel that received nothing for this long is dead, in ms. Default 5000 (the deadline is also at least 1 s + 4 × the tunnel's RTT). */
  keepaliveTimeout: number;
  /** Send a confirmation PING after this many unconfirmed frames on a tunnel. Default 64. */
  confirmFrames: number;
  /** Send a confirmation PING after this many unconfirmed bytes on a tunnel. Default 1 MiB. */
  confirmBytes: number;
  /**
   * Most frames a tunnel keeps for re-sending before the peer confirms them (answers a PING). A peer
   * that reads but never confirms would otherwise make this end keep every frame it sends; past this
   * bound the tunnel is closed (GKD_ERR_LIMIT). Legitimate traffic keeps about one RTT of frames. Default 65 536.
   */
  maxUnconfirmedFrames: number;
  /** How long a session and its streams survive with no tunnel, in ms. Default 30 000. */
  gracePeriod: number;
  /** A tunnel whose socket holds more than this many unsent bytes takes no new frames until it drains, in bytes. Default 256 KiB. */
  tunnelHighWater: number;
  /**
   * Tunnel picker: 'earliest-arrival' (default: the tunnel that would deliver the frame first, from
   * the kernel's view where available), 'least-queued' (PING timing only) or 'round-robin'.
   */
  scheduler: SchedulerName | (() => TunnelPicker);
  /**
   * 'auto' (default): where the kernel's socket controls can be reached (Linux, see kernel.ts), set
   * TCP_NOTSENT_LOWAT, pacing and `congestion` on every tunnel that crosses a network and read TCP_INFO
   * for its path estimate; a tunnel to a loopback address stays in user mode (there the CPU, not the
   * network, is the limit, and kernel mode cost about 25 % of the throughput, measured: docs/bench/diag/hol.md);
   * 'on': kernel mode on loopback too; 'off': PING timing only, as on other systems.
   */
  socketTuning: 'auto' | 'on' | 'off';
  /**
   * TCP_NOTSENT_LOWAT for tunnel sockets, in bytes; 0 leaves the system's default. Default 128 KiB:
   * with 32 KiB (measured, scenario (d), gkd-8) the tunnels ran dry whenever the event loop paused for a
   * few tens of ms and lost 15–20 % of their throughput; 128 KiB still keeps a new connection's first
   * bytes from queueing behind megabytes.
   */
  notSentLowat: number;
  /**
   * How far ahead each tunnel queues, in ms at its send rate (kernel mode): TCP_NOTSENT_LOWAT follows
   * rate × this between 16 KiB and `notSentLowat`, and the user-space mark half that (up to
   * `tunedHighWater`). A slow tunnel (1.6 Mbit/s in scenario (b)) then holds ~100 ms of frames instead
   * of ~1 s, so what it carries reaches the receiver about when the other tunnels' frames do. 0: fixed
   * at `notSentLowat`. Default 100.
   */
  tunnelDepth: number;
  /** With TCP_NOTSENT_LOWAT in force, a tunnel whose socket holds this many unsent bytes in user space takes no new frame, in bytes. Default 64 KiB. */
  tunedHighWater: number;
  /**
   * The express lane, in bytes (0: none): tunnel 0 keeps at most this much unsent in the kernel and
   * this much queued in user space (kernel mode only), so control frames and a new stream's first
   * bytes, which the scheduler sends where they arrive first, leave at once while bulk data fills the
   * other tunnels' deeper queues. Default 16 KiB.
   */
  expressLane: number;
  /**
   * Have the kernel pace each tunnel's TCP (SO_MAX_PACING_RATE; Linux 4.13+), so a congestion window
   * is spread over the RTT instead of leaving in one burst when a stream's window reopens. Default true.
   */
  pacing: boolean;
  /** Congestion control for tunnel sockets (e.g. 'bbr', 'cubic'; what the kernel allows), or null for the system default. Default null. */
  congestion: string | null;
  /**
   * Re-send the frame a stream's receiver waits for on a faster tunnel when its ACK is overdue
   * (head-of-line re-send), and penalise the tunnel that held it. Default true.
   */
  holResend: boolean;
}

/** The tunnel pickers a session can be configured with. */
export type SchedulerName = 'earliest-arrival' | 'least-queued' | 'round-robin';

export const defaultSessionConfig: SessionConfig = {
  maxPayload: DEFAULT_MAX_PAYLOAD,
  maxBody: DEFAULT_MAX_BODY,
  initialWindow: 256 * 1024,
  startWindow: 4 * 1024 * 1024,
  maxWindow: 16 * 1024 * 1024,
  sessionWindowBudget: 64 * 1024 * 1024,
  maxUnackedFrames: 1024,
  keepaliveInterval: 1000,
  keepaliveTimeout: 5000,
  confirmFrames: 64,
  confirmBytes: 1024 * 1024,
  maxUnconfirmedFrames: 65_536,
  gracePeriod: 30_000,
  tunnelHighWater: 256 * 1024,
  scheduler: 'earliest-arrival',
  socketTuning: 'auto',
  notSentLowat: 128 * 1024,
  tunedHighWater: 64 * 1024,
  tunnelDepth: 100,
  expressLane: 16 * 1024,
  congestion: null,
  pacing: true,
  holResend: true,
};

/** Throw ConfigError unless `value` is an integer in [min, max]. */
export function checkInt(name: string, value: unknown, min: number, max: number): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
}

/** Merge `partial` over the defaults and validate every field. */
export function resolveSessionConfig(partial: Partial<SessionConfig> = {}): SessionConfig {
  const c: SessionConfig = { ...defaultSessionConfig, ...stripUndefined(partial) };
  checkInt('maxBody', c.maxBody, 1024, 16 * 1024 * 1024);
  checkInt('maxPayload', c.maxPayload, 1, c.maxBody - 8);
  checkInt('initialWindow', c.initialWindow, c.maxPayload, MAX_WINDOW);
  checkInt('maxWindow', c.maxWindow, c.initialWindow, MAX_WINDOW);
  // A startWindow above maxWindow is capped there (so lowering maxWindow alone stays valid).
  checkInt('startWindow', c.startWindow, c.initialWindow, MAX_WINDOW);
  checkInt('sessionWindowBudget', c.sessionWindowBudget, 2 * c.maxPayload, Number.MAX_SAFE_INTEGER);
  checkInt('maxUnackedFrames', c.maxUnackedFrames, 1, 1024);
  checkInt('keepaliveInterval', c.keepaliveInterval, 10, 3_600_000);
  checkInt('keepaliveTimeout', c.keepaliveTimeout, c.keepaliveInterval, 3_600_000);
  checkInt('confirmFrames', c.confirmFrames, 1, 1_000_000);
  checkInt('confirmBytes', c.confirmBytes, 1, 1 << 30);
  checkInt('maxUnconfirmedFrames', c.maxUnconfirmedFrames, Math.max(1024, c.confirmFrames), 1 << 24);
  checkInt('gracePeriod', c.gracePeriod, 0, 24 * 3_600_000);
  checkInt('tunnelHighWater', c.tunnelHighWater, 1024, 1 << 30);
  if (typeof c.scheduler !== 'function' && c.scheduler !== 'earliest-arrival' && c.scheduler !== 'least-queued' && c.scheduler !== 'round-robin') {
    throw new ConfigError(
      `scheduler must be 'earliest-arrival', 'least-queued', 'round-robin' or a function returning a TunnelPicker, got ${String(c.scheduler)}`,
    );
  }
  if (c.socketTuning !== 'auto' && c.socketTuning !== 'on' && c.socketTuning !== 'off')
    throw new ConfigError(`socketTuning must be 'auto', 'on' or 'off', got ${String(c.socketTuning)}`);
  checkInt('notSentLowat', c.notSentLowat, 0, 1 << 30);
  checkInt('tunedHighWater', c.tunedHighWater, 1024, 1 << 30);
  checkInt('tunnelDepth', c.tunnelDepth, 0, 60_000);
  checkInt('expressLane', c.expressLane, 0, 1 << 30);
  if (c.congestion !== null && (typeof c.congestion !== 'string' || !/^[a-z0-9_-]{1,15}$/i.test(c.congestion))) {
    throw new ConfigError(`congestion must be a congestion control name such as 'bbr' or 'cubic', got ${String(c.congestion)}`);
  }
  if (typeof c.pacing !== 'boolean') throw new ConfigError(`pacing must be a boolean, got ${String(c.pacing)}`);
  if (typeof c.holResend !== 'boolean') throw new ConfigError(`holResend must be a boolean, got ${String(c.holResend)}`);
  return c;
}

/** A copy of `o` without the keys whose value is undefined (so they do not override defaults). */
export function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

/** A key given as bytes or as text (base64/base64url of ≥ 16 bytes, or hex). */
export type KeyInput = Buffer | Uint8Array | string;

/** Parse a key: Buffer as is; a string as hex (even length, [0-9a-f]) or base64/base64url. At least 16 bytes (128 bits). */
export function parseKey(name: string, key: KeyInput): Buffer {
  let buf: Buffer;
  if (typeof key === 'string') {
    const s = key.trim();
    if (/^[0-9a-fA-F]+$/.test(s) && s.length % 2 === 0 && s.length >= 32) buf = Buffer.from(s, 'hex');
    else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(s)) buf = Buffer.from(s, 'base64');
    else throw new ConfigError(`${name} is not hex or base64`);
  } else {
    buf = Buffer.from(key);
  }
  if (buf.length < 16) throw new ConfigError(`${name} must be at least 128 bits (16 bytes); make one with \`gkd keygen\``);
  return buf;
}
