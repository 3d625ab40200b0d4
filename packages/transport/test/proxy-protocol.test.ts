import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { AuthMode, ErrorCode, FrameType, encodePreface, encodeProxyV2, newRoutingToken } from '@gkd/protocol';
import { Server } from '../src/index.js';
import { WirePeer, newSessionId, until } from '@gkd/test-support';

/**
 * `proxyProtocol`: behind a balancer every connection comes from the balancer's address; the PROXY
 * header it sends first names the client's own. The server then uses that address for the per-address
 * handshake cap, `PeerInfo.remoteAddress` and `refused` events; a connection without a valid header is
 * refused; and a server without the option never accepts one.
 */

const key = randomBytes(32);
let server: Server | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const refusals = (s: Server) => {
  const out: { address: string | undefined; code: string | undefined; message: string }[] = [];
  s.on('refused', (address: string | undefined, err: Error & { code?: string }) => out.push({ address, code: err.code, message: err.message }));
  return out;
};

/** A header claiming `from` as the client's address, then the routing preface. */
const fromClient = (from: string, port: number, token = newRoutingToken()) =>
  Buffer.concat([encodeProxyV2({ address: from, port: 40_000 }, { address: '127.0.0.1', port }), encodePreface(token)]);

describe('PROXY protocol on the tunnel port', () => {
  it('v2 and v1: the session is founded, and the peer is the address the header names', async () => {
    server = await Server.bind('127.0.0.1:0', { key, proxyProtocol: true });
    const port = server.address().port;
    const refused = refusals(server);
    const a = await WirePeer.connect(port, { preface: fromClient('203.0.113.7', port) });
    expect((await a.handshake({ mode: AuthMode.NEW, sessionId: newSessionId(), key })).answer?.type).toBe(FrameType.WELCOME);
    const b = await WirePeer.connect(port, {
      preface: Buffer.concat([Buffer.from('PROXY TCP6 2001:db8::7 ::1 40000 9990\r\n'), encodePreface(newRoutingToken())]),
    });
    expect((await b.handshake({ mode: AuthMode.NEW, sessionId: newSessionId(), key })).answer?.type).toBe(FrameType.WELCOME);
    expect(
      server
        .peers()
        .map((p) => p.remoteAddress)
        .sort(),
    ).toEqual(['2001:db8::7', '203.0.113.7']);
    expect(refused).toEqual([]);
  });

  it('a connection without a header is refused (GKD_ERR_PROXY_HEADER, a REJECT on plain TCP, closed), named by the socket address', async () => {
    server = await Server.bind('127.0.0.1:0', { key, proxyProtocol: true });
    const refused = refusals(server);
    const direct = await WirePeer.connect(server.address().port); // a client that bypassed the balancer
    await direct.closed;
    expect(direct.all(FrameType.REJECT)[0]?.message).toMatch(/expected a PROXY protocol header .*a gkd routing preface: a client that bypassed the balancer/);
    expect(refused).toEqual([{ address: '127.0.0.1', code: ErrorCode.PROXY_HEADER, message: expect.stringMatching(/expected a PROXY protocol header/) }]);
  });

  it('a LOCAL header then a close (a health check) is not a refusal; a half header then a close is', async () => {
    server = await Server.bind('127.0.0.1:0', { key, proxyProtocol: true });
    const refused = refusals(server);
    const port = server.address().port;
    const check = await WirePeer.connect(port, { preface: encodeProxyV2() });
    await until(() => server!.stats().handshaking === 1, 5000, 'the check registered');
    check.destroy();
    await until(() => server!.stats().handshaking === 0, 5000, 'the check gone');
    const half = await WirePeer.connect(port, { preface: encodeProxyV2().subarray(0, 10) });
    await until(() => server!.stats().handshaking === 1, 5000, 'the half header registered');
    half.destroy();
    await until(() => refused.length === 1, 5000, 'a refusal');
    expect(refused[0]!.message).toBe('closed during the PROXY protocol header');
    expect(server.stats().handshaking).toBe(0);
  });

  it('no header within the handshake timeout: refused', async () => {
    server = await Server.bind('127.0.0.1:0', { key, proxyProtocol: true, handshakeTimeout: 200 });
    const refused = refusals(server);
    const idle = await WirePeer.connect(server.address().port, { preface: null });
    await idle.closed;
    expect(refused.map((r) => r.message)).toEqual(['no PROXY protocol header within 200 ms (this server is set to sit behind a balancer that sends one)']);
  });

  it('the per-address handshake cap counts the header addresses, not the balancer’s', async () => {
    server = await Server.bind('127.0.0.1:0', { key, proxyProtocol: true, maxHandshakesPerAddress: 2, handshakeTimeout: 60_000 });
    const refused = refusals(server);
    const port = server.address().port;
    // Six clients behind one balancer (every socket from 127.0.0.1), two handshakes each: none evicted.
    const peers: WirePeer[] = [];
    for (let c = 0; c < 6; c++)
      for (let i = 0; i < 2; i++) peers.push(await WirePeer.connect(port, { preface: fromClient(`198.51.100.${c + 1}`, port), challenge: true }));
    expect(server.stats().handshaking).toBe(12);
    expect(refused).toEqual([]);
    // A third from one of them evicts that client's oldest only, and the log names the client.
    await WirePeer.connect(port, { preface: fromClient('198.51.100.3', port), challenge: true });
    await peers[4]!.closed;
    expect(refused).toEqual([{ address: '198.51.100.3', code: ErrorCode.LIMIT, message: 'handshake evicted: more than 2 in progress from 198.51.100.3' }]);
    expect(peers.filter((p) => p.isClosed)).toHaveLength(1);
  });

  it('without the option a PROXY header is never accepted: it fails as a bad preface', async () => {
    server = await Server.bind('127.0.0.1:0', { key });
    const refused = refusals(server);
    const port = server.address().port;
    const spoof = await WirePeer.connect(port, { preface: fromClient('203.0.113.9', port) });
    await spoof.closed;
    expect(refused).toEqual([{ address: '127.0.0.1', code: ErrorCode.BAD_PREFACE, message: expect.stringMatching(/got byte 0x0d at offset 0/) }]);
    const v1 = await WirePeer.connect(port, { preface: Buffer.from('PROXY TCP4 203.0.113.9 127.0.0.1 1 2\r\n') });
    await v1.closed;
    expect(refused[1]!.code).toBe(ErrorCode.BAD_PREFACE);
    expect(server.peers()).toEqual([]);
  });

  it('the header, preface and AUTH split over many writes', async () => {
    server = await Server.bind('127.0.0.1:0', { key, proxyProtocol: true });
    const port = server.address().port;
    const wire = fromClient('192.0.2.44', port);
    const peer = await WirePeer.connect(port, { preface: null });
    for (const byte of wire) {
      peer.socket.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    expect((await peer.handshake({ mode: AuthMode.NEW, sessionId: newSessionId(), key })).answer?.type).toBe(FrameType.WELCOME);
    expect(server.peers().map((p) => p.remoteAddress)).toEqual(['192.0.2.44']);
  });

  it('proxyProtocol is validated', () => {
    expect(() => new Server({ key, proxyProtocol: 'yes' as unknown as boolean })).toThrow(/proxyProtocol/);
  });
});
