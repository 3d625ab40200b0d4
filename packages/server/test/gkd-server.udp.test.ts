import dgram from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { FrameType, Reason, type DatagramFrame, type Frame } from '@gkd/protocol';
import { defer, eventWhere, newKey, runCleanups, startServer, tableResolver } from './support/harness.js';
import { OwnSession, until } from '@gkd/test-support';

afterEach(runCleanups);

const keys = { alice: newKey(), bob: newKey() };

/** A UDP echo server on 127.0.0.1, port 0, recording every datagram it receives (and from where). */
async function udpEcho(): Promise<{ socket: dgram.Socket; port: number; seen: Array<{ msg: Buffer; port: number }> }> {
  const socket = dgram.createSocket('udp4');
  const seen: Array<{ msg: Buffer; port: number }> = [];
  socket.on('message', (msg, rinfo) => {
    seen.push({ msg, port: rinfo.port });
    socket.send(msg, rinfo.port, rinfo.address);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  defer(() => socket.close());
  return { socket, port: socket.address().port, seen };
}

const isDatagram = (association: number) => (f: Frame) => f.type === FrameType.DATAGRAM && f.association === association;
const isClose = (association: number) => (f: Frame) => f.type === FrameType.DATAGRAM_CLOSE && f.association === association;

describe('GkdServer UDP associations', () => {
  it('relays datagrams to an allowed destination (by address and by name) and the replies back, from the destination', async () => {
    const echo = await udpEcho();
    const resolver = tableResolver({ 'echo.test': ['127.0.0.1'] });
    const server = await startServer({ users: keys, allow: [`127.0.0.1:${echo.port}`], resolver });
    const s = await OwnSession.found(server.address().port, { user: 'alice', key: keys.alice });
    s.founder.send({
      type: FrameType.DATAGRAM,
      association: 1,
      address: { type: 'ipv4', host: '127.0.0.1', port: echo.port },
      payload: Buffer.from('by address'),
    });
    const r1 = (await s.founder.next(isDatagram(1))) as DatagramFrame;
    expect(r1.payload.toString()).toBe('by address');
    expect(r1.address).toEqual({ type: 'ipv4', host: '127.0.0.1', port: echo.port });
    s.founder.send({
      type: FrameType.DATAGRAM,
      association: 1,
      address: { type: 'domain', host: 'echo.test', port: echo.port },
      payload: Buffer.from('by name'),
    });
    const r2 = (await s.founder.next(isDatagram(1))) as DatagramFrame;
    expect(r2.payload.toString()).toBe('by name');
    expect(resolver.queries).toEqual(['echo.test']);
    // One UDP socket per association: both datagrams left from the same port.
    expect(new Set(echo.seen.map((d) => d.port)).size).toBe(1);
    expect(server.counters).toMatchObject({ associations: 1, datagramsUp: 2, datagramsDown: 2, datagramsDenied: 0 });
  });

  it('refuses denied destinations as CONNECT does (loopback by default, --deny rules, names that do not resolve): nothing is sent', async () => {
    const echo = await udpEcho();
    const resolver = tableResolver({ 'inside.test': ['127.0.0.1'] });
    const server = await startServer({ users: keys, deny: ['blocked.test'], resolver });
    const s = await OwnSession.found(server.address().port, { user: 'alice', key: keys.alice });
    const denied = eventWhere<[{ destination: string; message: string }]>(server, 'datagram-denied');
    const send = (host: string, type: 'ipv4' | 'domain') =>
      s.founder.send({ type: FrameType.DATAGRAM, association: 1, address: { type, host, port: echo.port }, payload: Buffer.from('x') });
    send('127.0.0.1', 'ipv4');
    const [first] = await denied;
    expect(first.destination).toBe(`127.0.0.1:${echo.port}`);
    expect(first.message).toMatch(/loopback/);
    send('inside.test', 'domain'); // resolves to loopback: denied after resolution
    send('blocked.test', 'domain'); // deny rule: refused before any DNS query
    send('nowhere.test', 'domain'); // does not resolve
    await until(() => server.counters.datagramsDenied === 4, 5000, 'four denials');
    expect(resolver.queries.sort()).toEqual(['inside.test', 'nowhere.test']);
    expect(await s.founder.ping()).toBe(true); // the tunnel carries on
    expect(echo.seen).toHaveLength(0);
    expect(server.counters.datagramsUp).toBe(0);
  });

  it('drops replies from a stranger (an address the association never sent to)', async () => {
    const echo = await udpEcho();
    const server = await startServer({ users: keys, allow: ['127.0.0.1'] });
    const s = await OwnSession.found(server.address().port, { user: 'alice', key: keys.alice });
    s.founder.send({ type: FrameType.DATAGRAM, association: 1, address: { type: 'ipv4', host: '127.0.0.1', port: echo.port }, payload: Buffer.from('hi') });
    await s.founder.next(isDatagram(1));
    const relayPort = echo.seen[0]!.port;
    const stranger = dgram.createSocket('udp4');
    defer(() => stranger.close());
    stranger.bind(0, '127.0.0.1');
    await once(stranger, 'listening');
    stranger.send(Buffer.from('let me in'), relayPort, '127.0.0.1');
    await until(() => server.counters.datagramsDropped === 1, 5000, 'the stranger dropped');
    expect(await s.founder.ping()).toBe(true);
    expect(s.founder.all(FrameType.DATAGRAM)).toHaveLength(1);
  });

  it('maxAssociationsPerPeer: the association beyond the limit is closed with LIMIT_EXCEEDED; another peer is unaffected', async () => {
    const echo = await udpEcho();
    const server = await startServer({ users: keys, allow: ['127.0.0.1'], limits: { maxAssociationsPerPeer: 2 } });
    const alice = await OwnSession.found(server.address().port, { user: 'alice', key: keys.alice });
    const to = { type: 'ipv4', host: '127.0.0.1', port: echo.port } as const;
    for (const association of [1, 2, 3]) alice.founder.send({ type: FrameType.DATAGRAM, association, address: to, payload: Buffer.from(`a${association}`) });
    await until(
      () => alice.founder.received.filter((f) => isDatagram(1)(f) || isDatagram(2)(f) || isClose(3)(f)).length === 3,
      5000,
      'two echoes and one refusal',
    );
    expect(alice.founder.all(FrameType.DATAGRAM_CLOSE)).toEqual([
      { type: FrameType.DATAGRAM_CLOSE, association: 3, reason: Reason.LIMIT_EXCEEDED, message: 'more than 2 UDP associations' },
    ]);
    expect(echo.seen.map((d) => d.msg.toString()).sort()).toEqual(['a1', 'a2']);
    const bob = await OwnSession.found(server.address().port, { user: 'bob', key: keys.bob });
    bob.founder.send({ type: FrameType.DATAGRAM, association: 1, address: to, payload: Buffer.from('b1') });
    expect(((await bob.founder.next(isDatagram(1))) as DatagramFrame).payload.toString()).toBe('b1');
    // Closing one frees a slot.
    alice.founder.send({ type: FrameType.DATAGRAM_CLOSE, association: 1, reason: Reason.NORMAL, message: '' });
    await until(() => server.counters.associations === 2, 5000, 'alice down to one association');
    alice.founder.send({ type: FrameType.DATAGRAM, association: 4, address: to, payload: Buffer.from('a4') });
    await until(() => alice.founder.received.some(isDatagram(4)), 5000, 'the echo on association 4');
  });

  it('associationIdleTimeout: an association with no traffic is closed with IDLE_TIMEOUT and its socket freed', async () => {
    const echo = await udpEcho();
    const server = await startServer({ users: keys, allow: ['127.0.0.1'], limits: { associationIdleTimeout: 200 } });
    const s = await OwnSession.found(server.address().port, { user: 'alice', key: keys.alice });
    s.founder.send({ type: FrameType.DATAGRAM, association: 1, address: { type: 'ipv4', host: '127.0.0.1', port: echo.port }, payload: Buffer.from('x') });
    expect(await s.founder.next(isClose(1))).toMatchObject({ reason: Reason.IDLE_TIMEOUT });
    expect(server.counters.associations).toBe(0);
  });

  it('hostile association frames: a late DATAGRAM for a closed id, a DATAGRAM_CLOSE for an unknown id: dropped, the tunnel carries on', async () => {
    const echo = await udpEcho();
    const server = await startServer({ users: keys, allow: ['127.0.0.1'] });
    const s = await OwnSession.found(server.address().port, { user: 'alice', key: keys.alice });
    const to = { type: 'ipv4', host: '127.0.0.1', port: echo.port } as const;
    s.founder.send({ type: FrameType.DATAGRAM_CLOSE, association: 77, reason: Reason.NORMAL, message: '' });
    s.founder.send({ type: FrameType.DATAGRAM, association: 5, address: to, payload: Buffer.from('once') });
    await s.founder.next(isDatagram(5));
    s.founder.send({ type: FrameType.DATAGRAM_CLOSE, association: 5, reason: Reason.NORMAL, message: '' });
    s.founder.send({ type: FrameType.DATAGRAM, association: 5, address: to, payload: Buffer.from('late') });
    s.founder.send({ type: FrameType.DATAGRAM, association: 77, address: to, payload: Buffer.from('after close') });
    expect(await s.founder.ping()).toBe(true);
    expect(echo.seen.map((d) => d.msg.toString())).toEqual(['once']);
    expect(server.counters.associations).toBe(0);
    expect(server.stats().peers[0]!.datagrams.droppedUnknown).toBe(2);
  });
});
