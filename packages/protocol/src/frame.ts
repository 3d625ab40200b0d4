import type { Address } from './address.js';

/** The version octet that starts every frame. */
export const PROTOCOL_VERSION = 0x01;

/** Length of the fixed frame header, in bytes: version, type, flags (2), stream id (4), body length (4). */
export const HEADER_LENGTH = 12;

/** Default largest DATA payload a sender produces, in bytes. */
export const DEFAULT_MAX_PAYLOAD = 16 * 1024;

/** Default largest frame body a receiver accepts, in bytes (a 64 KiB payload plus the 8-byte offset). */
export const DEFAULT_MAX_BODY = 64 * 1024 + 8;

/** Length of the handshake nonces and of HMAC-SHA256 proofs, in bytes. */
export const NONCE_LENGTH = 32;
export const PROOF_LENGTH = 32;
/** Length of a session id, in bytes. */
export const SESSION_ID_LENGTH = 16;
/** Longest user name, in UTF-8 bytes. */
export const MAX_USER_LENGTH = 255;
/** Longest human-readable message in OPEN_FAIL, RST, GOAWAY and REJECT, in UTF-8 bytes. */
export const MAX_MESSAGE_LENGTH = 255;

/** Frame type octets. */
export const FrameType = {
  CHALLENGE: 0x01,
  AUTH: 0x02,
  WELCOME: 0x03,
  REJECT: 0x04,
  DATA: 0x10,
  ACK: 0x11,
  OPEN: 0x20,
  OPEN_OK: 0x21,
  OPEN_FAIL: 0x22,
  FIN: 0x23,
  RST: 0x24,
  PING: 0x30,
  PONG: 0x31,
  GOAWAY: 0x32,
  DATAGRAM: 0x40,
  DATAGRAM_CLOSE: 0x41,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

/** CHALLENGE flag bit: the server has several users, so AUTH must name one. */
export const CHALLENGE_FLAG_USERS = 0x01;

/** AUTH mode: start a new session, or join an existing one with the session proof. */
export const AuthMode = { NEW: 0x00, JOIN: 0x01 } as const;
export type AuthModeValue = (typeof AuthMode)[keyof typeof AuthMode];

/** Server → client, first frame on a tunnel: a fresh random challenge. */
export interface ChallengeFrame {
  type: typeof FrameType.CHALLENGE;
  nonce: Buffer;
  flags: number;
}
/** Client → server: who it is, which session and tunnel, and the proof. */
export interface AuthFrame {
  type: typeof FrameType.AUTH;
  mode: AuthModeValue;
  sessionId: Buffer;
  tunnelIndex: number;
  clientNonce: Buffer;
  user: string;
  proof: Buffer;
}
/** Server → client: accepted; the server's own proof and its limits. */
export interface WelcomeFrame {
  type: typeof FrameType.WELCOME;
  proof: Buffer;
  /** Largest frame body the server accepts, in bytes. */
  maxBody: number;
  /** Most streams the server lets this session have open at once. */
  maxStreams: number;
  /**
   * Most tunnels the server lets this session have at once (u16; 1–65 535). Absent in a WELCOME from a
   * server that predates the field (40-byte body): no cap was announced.
   */
  maxTunnels?: number;
}
/** Server → client: refused, with a reason; the server then closes the tunnel. */
export interface RejectFrame {
  type: typeof FrameType.REJECT;
  reason: number;
  message: string;
}
/** Stream bytes starting at byte `offset` of the stream. */
export interface DataFrame {
  type: typeof FrameType.DATA;
  stream: number;
  offset: number;
  payload: Buffer;
}
/** Every byte below `ack` has been received; the sender may send up to `ack + window`. */
export interface AckFrame {
  type: typeof FrameType.ACK;
  stream: number;
  ack: number;
  window: number;
}
/** Open a stream, to `destination` (proxy mode) or to the embedding application (null: library mode). */
export interface OpenFrame {
  type: typeof FrameType.OPEN;
  stream: number;
  window: number;
  destination: Address | null;
}
export interface OpenOkFrame {
  type: typeof FrameType.OPEN_OK;
  stream: number;
  window: number;
}
export interface OpenFailFrame {
  type: typeof FrameType.OPEN_FAIL;
  stream: number;
  reason: number;
  message: string;
}
/** The sender will send no byte at or past `offset` (half-close). */
export interface FinFrame {
  type: typeof FrameType.FIN;
  stream: number;
  offset: number;
}
export interface RstFrame {
  type: typeof FrameType.RST;
  stream: number;
  reason: number;
  message: string;
}
export interface PingFrame {
  type: typeof FrameType.PING;
  id: number;
}
export interface PongFrame {
  type: typeof FrameType.PONG;
  id: number;
}
export interface GoAwayFrame {
  type: typeof FrameType.GOAWAY;
  reason: number;
  message: string;
}

/**
 * One UDP datagram of a SOCKS5 UDP association (PROTOCOL.md §5a). Unreliable: never re-sent, never
 * reordered, no window. Client → server `address` is the destination; server → client, the source of
 * the reply. A domain name is only valid client → server (the server resolves it).
 */
export interface DatagramFrame {
  type: typeof FrameType.DATAGRAM;
  /** Association id, 1 … 2^32 − 1, chosen by the client. */
  association: number;
  address: Address;
  /** 0 … MAX_DATAGRAM_PAYLOAD bytes. */
  payload: Buffer;
}
/** The association is over (either direction); reliable like a control frame. */
export interface DatagramCloseFrame {
  type: typeof FrameType.DATAGRAM_CLOSE;
  association: number;
  reason: number;
  message: string;
}

export type Frame =
  | ChallengeFrame
  | AuthFrame
  | WelcomeFrame
  | RejectFrame
  | DataFrame
  | AckFrame
  | OpenFrame
  | OpenOkFrame
  | OpenFailFrame
  | FinFrame
  | RstFrame
  | PingFrame
  | PongFrame
  | GoAwayFrame
  | DatagramFrame
  | DatagramCloseFrame;

/** Frames that belong to a UDP association (association id ≠ 0, in the stream id field). */
export type AssociationFrame = DatagramFrame | DatagramCloseFrame;

/** Frames that belong to a stream (stream id ≠ 0). */
export type StreamFrame = DataFrame | AckFrame | OpenFrame | OpenOkFrame | OpenFailFrame | FinFrame | RstFrame;

const streamTypes = new Set<number>([FrameType.DATA, FrameType.ACK, FrameType.OPEN, FrameType.OPEN_OK, FrameType.OPEN_FAIL, FrameType.FIN, FrameType.RST]);
const associationTypes = new Set<number>([FrameType.DATAGRAM, FrameType.DATAGRAM_CLOSE]);
const knownTypes = new Set<number>(Object.values(FrameType));

/** True if `type` is a frame type octet this version defines. */
export function isKnownType(type: number): type is FrameTypeValue {
  return knownTypes.has(type);
}

/** True if frames of `type` carry a non-zero stream id. */
export function isStreamType(type: number): boolean {
  return streamTypes.has(type);
}

/** True if frames of `type` carry a non-zero association id (in the stream id field). */
export function isAssociationType(type: number): boolean {
  return associationTypes.has(type);
}

/** True if `frame` belongs to a UDP association. */
export function isAssociationFrame(frame: Frame): frame is AssociationFrame {
  return associationTypes.has(frame.type);
}

/** True if `frame` belongs to a stream. */
export function isStreamFrame(frame: Frame): frame is StreamFrame {
  return streamTypes.has(frame.type);
}

/** The symbolic name of a frame type, e.g. `DATA`. */
export function frameTypeName(type: number): string {
  for (const [k, v] of Object.entries(FrameType)) if (v === type) return k;
  return `UNKNOWN(0x${type.toString(16)})`;
}

/** Largest stream offset (and stream length) this implementation represents exactly: 2^53 − 1 bytes. */
export const MAX_OFFSET = Number.MAX_SAFE_INTEGER;
/** Largest stream id: 2^32 − 1. */
export const MAX_STREAM_ID = 0xffffffff;
/** Largest window: 2^32 − 1 bytes. */
export const MAX_WINDOW = 0xffffffff;

/** Longest encoded address (domain of 255 bytes): ATYP, length, name, port. */
export const MAX_ADDRESS_LENGTH = 1 + 1 + 255 + 2;

/**
 * Largest DATAGRAM payload, in bytes: what fits in the default max body after the longest address
 * (65 544 − 259 = 65 285). Senders drop (and count) larger datagrams; UDP over IPv4 carries at most
 * 65 507 anyway, and real traffic (DNS, QUIC, games) stays under 1 500.
 */
export const MAX_DATAGRAM_PAYLOAD = DEFAULT_MAX_BODY - MAX_ADDRESS_LENGTH;
