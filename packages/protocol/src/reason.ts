/**
 * Reason codes carried on the wire by OPEN_FAIL, RST, GOAWAY and REJECT (one octet).
 * 0x01–0x06 equal the SOCKS5 reply codes (RFC 1928 §6) so a front-end can forward them unchanged.
 */
export const Reason = {
  NORMAL: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  TIMEOUT: 0x06,
  PROTOCOL_ERROR: 0x10,
  BAD_VERSION: 0x11,
  BAD_PROOF: 0x12,
  UNKNOWN_SESSION: 0x13,
  SESSION_EXISTS: 0x14,
  LIMIT_EXCEEDED: 0x15,
  FLOW_CONTROL: 0x16,
  FRAME_TOO_LARGE: 0x17,
  UNKNOWN_TYPE: 0x18,
  HANDSHAKE_TIMEOUT: 0x19,
  KEEPALIVE_TIMEOUT: 0x1a,
  CANCELLED: 0x20,
  STREAM_CLOSED: 0x21,
  SHUTDOWN: 0x22,
  SESSION_LOST: 0x23,
  IDLE_TIMEOUT: 0x24,
} as const;

/** A reason code (one octet on the wire). Unknown values received are kept as numbers. */
export type ReasonCode = (typeof Reason)[keyof typeof Reason];

const names = new Map<number, string>(Object.entries(Reason).map(([k, v]) => [v, k]));

/** The symbolic name of a reason code, e.g. `CONNECTION_REFUSED`, or `UNKNOWN(0x7f)`. */
export function reasonName(code: number): string {
  return names.get(code) ?? `UNKNOWN(0x${code.toString(16).padStart(2, '0')})`;
}
