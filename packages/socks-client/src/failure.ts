import { ErrorCode, Reason, reasonName } from '@gkd/protocol';
import { OpenTimeoutError } from './opener.js';

/**
 * Why an open failed, as counted and reported: the OPEN_FAIL reason name (0x01–0x06), NO_ANSWER when the
 * opener did not answer within the bounded wait, UNAVAILABLE when the transport had no tunnel or lost
 * its session. Any other error counts as GENERAL_FAILURE.
 */
export type FailureKind =
  | 'GENERAL_FAILURE'
  | 'NOT_ALLOWED'
  | 'NETWORK_UNREACHABLE'
  | 'HOST_UNREACHABLE'
  | 'CONNECTION_REFUSED'
  | 'TIMEOUT'
  | 'NO_ANSWER'
  | 'UNAVAILABLE';

/** Every FailureKind, in a stable order (for counters and metrics). */
export const FAILURE_KINDS: readonly FailureKind[] = [
  'GENERAL_FAILURE',
  'NOT_ALLOWED',
  'NETWORK_UNREACHABLE',
  'HOST_UNREACHABLE',
  'CONNECTION_REFUSED',
  'TIMEOUT',
  'NO_ANSWER',
  'UNAVAILABLE',
];

/** SOCKS5 reply codes (RFC 1928 §6). 0x01–0x06 equal gkd's OPEN_FAIL reasons. */
export const Rep = {
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  TTL_EXPIRED: 0x06,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
} as const;

/** An open failure, classified once for both front-ends. */
export interface OpenFailure {
  kind: FailureKind;
  /** The SOCKS5 REP code to send (0x01–0x06). */
  rep: number;
  /** The HTTP status a proxy answers with (403, 502, 503 or 504). */
  status: number;
  /** The error's message, for logs. */
  message: string;
}

const STATUS: Record<FailureKind, number> = {
  GENERAL_FAILURE: 502,
  NOT_ALLOWED: 403,
  NETWORK_UNREACHABLE: 502,
  HOST_UNREACHABLE: 502,
  CONNECTION_REFUSED: 502,
  TIMEOUT: 504,
  NO_ANSWER: 504,
  UNAVAILABLE: 503,
};

/**
 * Map what an opener rejected with to a reply. OpenFailedError with reason 0x02–0x06 keeps its reason
 * (SOCKS REP = reason); everything else is REP 0x01. Errors are recognised by their stable `code`, not
 * by class identity, so a second copy of @gkd/protocol in the tree cannot break the mapping.
 */
export function classifyOpenError(err: unknown): OpenFailure {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: unknown } | null)?.code;
  const reason = (err as { reason?: unknown } | null)?.reason;
  let kind: FailureKind = 'GENERAL_FAILURE';
  let rep: number = Rep.GENERAL_FAILURE;
  if (err instanceof OpenTimeoutError) {
    kind = 'NO_ANSWER';
  } else if (code === ErrorCode.OPEN_FAILED && typeof reason === 'number' && reason >= Reason.NOT_ALLOWED && reason <= Reason.TIMEOUT) {
    kind = reasonName(reason) as FailureKind;
    rep = reason;
  } else if (code === ErrorCode.NO_TUNNEL || code === ErrorCode.SESSION_LOST || code === ErrorCode.CLOSED) {
    kind = 'UNAVAILABLE';
  }
  return { kind, rep, status: STATUS[kind], message };
}
