import dgram from 'node:dgram';
import type { Socket } from 'node:net';
import { MAX_DATAGRAM_PAYLOAD, addressLength, readAddress, writeAddress, type Address } from '@gkd/protocol';
import { toDestination } from './destination.js';
import type { Counters } from './events.js';
import type { DatagramAssociation } from './udp-association.js';

/** Length of the RFC 1928 §7 UDP request header before the address: RSV (2) and FRAG (1). */
const HEADER_PREFIX = 3;

/** Who may send datagrams into an association: the host (and port, once known) its request named. */
export interface RelayClient {
  /** The client's IP address (IPv4 dotted, IPv6 text). */
  host: string;
  /** The client's UDP port, or 0: the first datagram from `host` fixes it. */
  port: number;
}

/** IPv4-mapped IPv6 (`::ffff:127.0.0.1`) as plain IPv4, so one host compares equal however a socket saw it. */
export function plainHost(host: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  return m ? m[1]! : host.replace(/%.*$/, '').toLowerCase();
}

/** True for 0.0.0.0 and :: (RFC 1928: the client does not know its address yet). */
export function isUnspecified(host: string): boolean {
  return /^0+\.0+\.0+\.0+$/.test(host) || /^[0:]+$/.test(host);
}

/**
 * Parse one client datagram (RFC 1928 §7): RSV 0000, FRAG, the destination (ATYP 1, 3 or 4) and the
 * data. Returns null for anything to drop: short or bad header, FRAG ≠ 0 (fragments are not supported),
 * an unknown or empty address type, a name or port CONNECT would refuse.
 */
export function parseClientDatagram(msg: Buffer): { destination: Address; payload: Buffer } | null {
  if (msg.length < HEADER_PREFIX + 1 || msg[0] !== 0 || msg[1] !== 0 || msg[2] !== 0) return null;
  try {
    const { address, end } = readAddress(msg, HEADER_PREFIX);
    if (!address) return null; // ATYP 0 is gkd's own "no destination"; not a SOCKS address type
    return { destination: toDestination(address.host, address.port), payload: msg.subarray(end) };
  } catch {
    return null;
  }
}

/** The RFC 1928 §7 header for a datagram from `source`, followed by `payload`. */
export function clientDatagram(source: Address, payload: Buffer): Buffer {
  const head = HEADER_PREFIX + addressLength(source);
  const buf = Buffer.allocUnsafe(head + payload.length);
  buf.fill(0, 0, HEADER_PREFIX);
  writeAddress(buf, HEADER_PREFIX, source);
  payload.copy(buf, head);
  return buf;
}

/**
 * The local half of one SOCKS5 UDP association: a UDP socket bound on the address the client reached
 * the SOCKS port on, taking datagrams only from the client the request named, and passing them to the
 * association (the tunnels); replies come back with the RFC 1928 header. It ends with the TCP control
 * connection, with the association, or after `idleTimeout` ms without a datagram either way.
 */
export class UdpRelay {
  private readonly socket: dgram.Socket;
  private idleTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    socket: dgram.Socket,
    private readonly control: Socket,
    private readonly association: DatagramAssociation,
    private readonly client: RelayClient,
    private readonly counters: Counters,
    private readonly idleTimeout: number,
  ) {
    this.socket = socket;
    counters.udpAssociations++;
    counters.udpActive++;
    socket.on('message', (msg, rinfo) => this.fromClient(msg, plainHost(rinfo.address), rinfo.port));
    socket.on('error', () => this.close());
    association.on('datagram', (source, payload) => this.toClient(source, payload));
    association.once('close', () => this.close());
    control.once('close', () => this.close());
    this.touch();
  }

  /** Bind the relay socket on `host` (port 0) and start relaying. Rejects with the bind error. */
  static async start(options: {
    host: string;
    control: Socket;
    association: DatagramAssociation;
    client: RelayClient;
    counters: Counters;
    idleTimeout: number;
  }): Promise<UdpRelay> {
    const host = plainHost(options.host);
    const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    return new UdpRelay(socket, options.control, options.association, options.client, options.counters, options.idleTimeout);
  }

  /** Where the client must send its datagrams (BND.ADDR and BND.PORT of the reply). */
  address(): { address: string; port: number } {
    return this.socket.address();
  }

  /** End the association, the relay socket and the control connection. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.idleTimer);
    this.counters.udpActive--;
    this.association.close();
    this.socket.close();
    if (!this.control.destroyed) this.control.end();
  }

  private touch(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.close(), this.idleTimeout);
    this.idleTimer.unref();
  }

  private fromClient(msg: Buffer, host: string, port: number): void {
    if (this.closed) return;
    // RFC 1928 §7: only the client the association names may use it; anyone else is dropped.
    if (host !== this.client.host || (this.client.port !== 0 && port !== this.client.port)) {
      this.counters.datagramsRejected++;
      return;
    }
    const parsed = parseClientDatagram(msg);
    if (!parsed || parsed.payload.length > MAX_DATAGRAM_PAYLOAD) {
      this.counters.datagramsRejected++;
      return;
    }
    this.client.port ||= port; // the first valid datagram fixes the port a 0 in the request left open
    this.touch();
    if (this.association.send(parsed.destination, parsed.payload)) this.counters.datagramsUp++;
    else this.counters.datagramsDropped++;
  }

  private toClient(source: Address, payload: Buffer): void {
    if (this.closed || this.client.port === 0) {
      this.counters.datagramsDropped++; // nowhere to send it yet
      return;
    }
    this.touch();
    this.socket.send(clientDatagram(source, payload), this.client.port, this.client.host, (err) => {
      if (err) this.counters.datagramsDropped++;
      else this.counters.datagramsDown++;
    });
  }
}
