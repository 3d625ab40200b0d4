import { Reason, reasonName } from './reason.js';

/** Stable error codes. Every error gkd raises has one; packages/protocol/README.md documents each. */
export const ErrorCode = {
  PROTOCOL: 'GKD_ERR_PROTOCOL',
  BAD_VERSION: 'GKD_ERR_BAD_VERSION',
  BAD_PREFACE: 'GKD_ERR_BAD_PREFACE',
  UNKNOWN_TYPE: 'GKD_ERR_UNKNOWN_TYPE',
  FRAME_TOO_LARGE: 'GKD_ERR_FRAME_TOO_LARGE',
  FLOW_CONTROL: 'GKD_ERR_FLOW_CONTROL',
  AUTH: 'GKD_ERR_AUTH',
  HANDSHAKE_TIMEOUT: 'GKD_ERR_HANDSHAKE_TIMEOUT',
  OPEN_FAILED: 'GKD_ERR_OPEN_FAILED',
  STREAM_RESET: 'GKD_ERR_STREAM_RESET',
  SESSION_LOST: 'GKD_ERR_SESSION_LOST',
  NO_TUNNEL: 'GKD_ERR_NO_TUNNEL',
  LIMIT: 'GKD_ERR_LIMIT',
  CONFIG: 'GKD_ERR_CONFIG',
  CLOSED: 'GKD_ERR_CLOSED',
  ASSOCIATION_CLOSED: 'GKD_ERR_ASSOCIATION_CLOSED',
  ABORTED: 'GKD_ERR_ABORTED',
  PATH_DOWN: 'GKD_ERR_PATH_DOWN',
  PROXY_HEADER: 'GKD_ERR_PROXY_HEADER',
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of every gkd error: a stable `code` and, where one applies, the wire `reason`. */
export class GkdError extends Error {
  readonly code: ErrorCodeValue;
  /** The wire reason code (see `Reason`) this error carries or would send, if any. */
  readonly reason: number | undefined;

  constructor(code: ErrorCodeValue, message: string, reason?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.reason = reason;
  }
}

/** The peer broke the protocol (malformed frame, bad field, frame in the wrong state). */
export class ProtocolError extends GkdError {
  constructor(message: string, reason: number = Reason.PROTOCOL_ERROR) {
    super(ErrorCode.PROTOCOL, message, reason);
  }
}

/** A frame carried a version octet this implementation does not speak. */
export class BadVersionError extends GkdError {
  constructor(readonly version: number) {
    super(ErrorCode.BAD_VERSION, `unsupported protocol version 0x${version.toString(16)}`, Reason.BAD_VERSION);
  }
}

/** A frame carried a type octet this implementation does not know. */
export class UnknownTypeError extends GkdError {
  constructor(readonly type: number) {
    super(ErrorCode.UNKNOWN_TYPE, `unknown frame type 0x${type.toString(16)}`, Reason.UNKNOWN_TYPE);
  }
}

/** A frame declared a body longer than the receiver's limit; nothing of it was buffered. */
export class FrameTooLargeError extends GkdError {
  constructor(
    readonly length: number,
    readonly limit: number,
  ) {
    super(ErrorCode.FRAME_TOO_LARGE, `frame body of ${length} bytes exceeds the limit of ${limit} bytes`, Reason.FRAME_TOO_LARGE);
  }
}

/** The peer sent data beyond the window it was granted. */
export class FlowControlError extends GkdError {
  constructor(message: string) {
    super(ErrorCode.FLOW_CONTROL, message, Reason.FLOW_CONTROL);
  }
}

/** The handshake failed: wrong key, unknown user, bad session proof, replay, or rejected by the server. */
export class AuthError extends GkdError {
  constructor(message: string, reason: number = Reason.BAD_PROOF) {
    super(ErrorCode.AUTH, message, reason);
  }
}

/** The handshake did not complete within its deadline. */
export class HandshakeTimeoutError extends GkdError {
  constructor(ms: number) {
    super(ErrorCode.HANDSHAKE_TIMEOUT, `handshake did not complete within ${ms} ms`, Reason.HANDSHAKE_TIMEOUT);
  }
}

/** The server could not open the requested destination; `reason` is the OPEN_FAIL reason code. */
export class OpenFailedError extends GkdError {
  /** The human-readable detail (what OPEN_FAIL's message field carries). */
  readonly detail: string | undefined;
  /** @param options.cause the underlying error (a dial or DNS error), for logs; never sent on the wire. */
  constructor(reason: number, detail?: string, options?: { cause?: unknown }) {
    super(ErrorCode.OPEN_FAILED, `open failed: ${reasonName(reason)}${detail ? ` (${detail})` : ''}`, reason, options);
    this.detail = detail;
  }
}

/** The peer reset the stream (RST); `reason` is the RST reason code. */
export class StreamResetError extends GkdError {
  constructor(reason: number, detail?: string) {
    super(ErrorCode.STREAM_RESET, `stream reset by peer: ${reasonName(reason)}${detail ? ` (${detail})` : ''}`, reason);
  }
}

/** The session is gone: every tunnel was down longer than the grace period, or the server forgot it. */
export class SessionLostError extends GkdError {
  constructor(message: string, reason: number = Reason.SESSION_LOST) {
    super(ErrorCode.SESSION_LOST, message, reason);
  }
}

/** No tunnel came up within the bounded wait. */
export class NoTunnelError extends GkdError {
  constructor(message: string) {
    super(ErrorCode.NO_TUNNEL, message, Reason.GENERAL_FAILURE);
  }
}

/** A configured limit (streams, peers, sessions, tunnels, buffered bytes) was reached. */
export class LimitError extends GkdError {
  constructor(message: string) {
    super(ErrorCode.LIMIT, message, Reason.LIMIT_EXCEEDED);
  }
}

/**
 * A tunnel could not start on its network path: the path's interface is gone or has no address the
 * server can be reached from. Like a refused connect, the tunnel slot backs off and tries again, so the
 * path rejoins when the interface is back.
 */
export class PathDownError extends GkdError {
  constructor(
    /** The path's name (its interface or local address). */
    readonly path: string,
    message: string,
  ) {
    super(ErrorCode.PATH_DOWN, message, Reason.NETWORK_UNREACHABLE);
  }
}

/** A configuration value is invalid; the message names the option. */
export class ConfigError extends GkdError {
  constructor(message: string) {
    super(ErrorCode.CONFIG, message);
  }
}

/** The object was closed (or is closing) and cannot do what was asked. */
export class ClosedError extends GkdError {
  constructor(message: string, reason?: number) {
    super(ErrorCode.CLOSED, message, reason);
  }
}

/** A UDP association ended from the other side (DATAGRAM_CLOSE) or with its session; `reason` says why. */
export class AssociationClosedError extends GkdError {
  constructor(
    reason: number,
    readonly detail?: string,
  ) {
    super(ErrorCode.ASSOCIATION_CLOSED, `UDP association closed: ${reasonName(reason)}${detail ? ` (${detail})` : ''}`, reason);
  }
}

/**
 * The caller aborted the operation (its `AbortSignal` fired) before it completed. Named `AbortError`,
 * as fetch's and undici's are; `cause` is the signal's reason. An aborted open was cancelled on the
 * wire (RST `CANCELLED`), so `reason` is CANCELLED.
 */
export class AbortError extends GkdError {
  constructor(cause?: unknown, message = 'the operation was aborted') {
    super(ErrorCode.ABORTED, message, Reason.CANCELLED, cause === undefined ? undefined : { cause });
  }
}
