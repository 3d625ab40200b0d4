import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { AuthError, ErrorCode, FrameType, HandshakeTimeoutError, Reason, StreamResetError, toAddress, type GkdError } from '@gkd/protocol';
import { Client, type PeerInfo } from '@gkd/transport';
import { receivedAtLeast, recordingDestination, type Behaviour, type RecordingDestination } from './support/destination.js';
import { connectClient, defer, eventWhere, newKey, rejection, runCleanups, startServer } from './support/harness.js';
import { OwnSession, WirePeer } from '@gkd/test-support';

afterEach(runCleanups);

const keys = { alice: newKey(), bob: newKey() };

async function destination(behaviour?: Behaviour): Promise<RecordingDestination> {
  const d = await recordingDestination(behaviour);
  defer(() => d.close());
  return d;
}

/** Accept and hold: neither read-side FIN nor reply, so streams stay open. */
const hold: Behaviour = () => undefined;

describe('GkdServer limits', () => {
  it('maxStreamsPerSession: the OPEN beyond the limit gets OPEN_FAIL LIMIT_EXCEEDED and no dial; a closed stream frees a slot', async () => {
    const dest = await destination(hold);
    const server = await startServer({ users: keys, allow: [`127.0.0.1:${dest.port}`], limits: { maxStreamsPerSession: 2 } });
    const s = await OwnSession.found(server.address().port, { user: 'alice', key: keys.alice });
    const open = (stream: number) => s.founder.send({ type: FrameType.OPEN, stream, window: 1 << 16, destination: toAddress('127.0.0.1', dest.port) });
    const answer = (stream: number) => s.founder.next((f) => (f.type === FrameType.OPEN_OK || f.type === FrameType.OPEN_FAIL) && f.stream === stream);

    open(1);
    open(3);
    expect(await answer(1)).toMatchObject({ type: FrameType.OPEN_OK });
    expect(await answer(3)).toMatchObject({ type: FrameType.OPEN_OK });
    open(5);
    expect(await answer(5)).toMatchObject({ type: FrameType.OPEN_FAIL, reason: Reason.LIMIT_EXCEEDED });
    expect(await dest.settle()).toBe(2);

    s.founder.send({ type: FrameType.RST, stream: 1, reason: Reason.CANCELLED, message: '' });
    open(7);
    expect(await answer(7)).toMatchObject({ type: FrameType.OPEN_OK });
    expect(await dest.settle()).toBe(3);
  });

  it('maxStreamsPerSession: a client learns the limit from WELCOME; its extra open fails with reason LIMIT_EXCEEDED (0x15)', async () => {
    const dest = await destination(hold);
    const server = await startServer({ users: keys, allow: [`127.0.0.1:${dest.port}`], limits: { maxStreamsPerSession: 2 } });
    const client = await connectClient(server, { key: keys.alice, user: 'alice', tunnels: 1 });
    const held = [await client.open(dest), await client.open(dest)];
    for (const c of held) c.on('error', () => undefined);
    const err = await rejection(client.open(dest));
    expect(err.reason).toBe(Reason.LIMIT_EXCEEDED);
    expect(await dest.settle()).toBe(2);
  });

  it('maxTunnelsPerSession: the JOIN beyond the limit gets REJECT LIMIT_EXCEEDED', async () => {
    const server = await startServer({ users: keys, limits: { maxTunnelsPerSession: 2 } });
    const s = await OwnSession.found(server.address().port, { user: 'alice', key: keys.alice });
    expect((await s.join(1)).answer?.type).toBe(FrameType.WELCOME);
    const third = await s.join(2);
    expect(third.answer).toMatchObject({ type: FrameType.REJECT, reason: Reason.LIMIT_EXCEEDED });
    await third.peer.waitClosed();
    expect(server.stats().peers[0]!.tunnelsUp).toBe(2);
  });

  it('maxTunnelsPerSession: a client asking for more tunnels gets the limit, the rest refused', async () => {
    const server = await startServer({ users: keys, limits: { maxTunnelsPerSession: 2 } });
    const client = Client.create(`127.0.0.1:${server.address().port}`, { key: keys.alice, user: 'alice', tunnels: 3 });
    defer(() => client.close());
    const [err] = await eventWhere<[GkdError]>(client, 'auth-failed');
    expect(err).toBeInstanceOf(AuthError);
    expect(err.reason).toBe(Reason.LIMIT_EXCEEDED);
    while (client.tunnelsUp < 2) await once(client, 'tunnel-up');
    expect(server.stats().peers[0]!.tunnelsUp).toBe(2);
  });

  it('maxSessionsPerPeer: a second session of the same user is refused, another user is not', async () => {
    const server = await startServer({ users: keys, limits: { maxSessionsPerPeer: 1 } });
    await connectClient(server, { key: keys.alice, user: 'alice', tunnels: 1 });
    const err = await rejection(Client.connect(`127.0.0.1:${server.address().port}`, { key: keys.alice, user: 'alice', tunnels: 1 }));
    expect(err).toBeInstanceOf(AuthError);
    expect(err.reason).toBe(Reason.LIMIT_EXCEEDED);
    await connectClient(server, { key: keys.bob, user: 'bob', tunnels: 1 });
    expect(server.stats().sessions).toBe(2);
  });

  it('maxPeers: a second user is refused, the first user may still open sessions', async () => {
    const server = await startServer({ users: keys, limits: { maxPeers: 1 } });
    await connectClient(server, { key: keys.alice, user: 'alice', tunnels: 1 });
    const p = await WirePeer.connect(server.address().port, { challenge: true });
    const { answer } = await p.handshake({ mode: 0, sessionId: randomBytes(16), user: 'bob', key: keys.bob });
    expect(answer).toMatchObject({ type: FrameType.REJECT, reason: Reason.LIMIT_EXCEEDED });
    const err = await rejection(Client.connect(`127.0.0.1:${server.address().port}`, { key: keys.bob, user: 'bob', tunnels: 1 }));
    expect(err.reason).toBe(Reason.LIMIT_EXCEEDED);
    await connectClient(server, { key: keys.alice, user: 'alice', tunnels: 1 });
    expect(server.transport.peers().map((x) => x.user)).toEqual(['alice', 'alice']);
  });

  it('maxSessions: the session beyond the server-wide limit is refused', async () => {
    const server = await startServer({ users: keys, limits: { maxSessions: 2 } });
    await OwnSession.found(server.address().port, { user: 'alice', key: keys.alice });
    await OwnSession.found(server.address().port, { user: 'bob', key: keys.bob });
    const err = await rejection(OwnSession.found(server.address().port, { user: 'alice', key: keys.alice }));
    expect(err.message).toMatch(/REJECT 0x15/);
  });

  it('handshakeTimeout: a connection that never sends AUTH gets REJECT HANDSHAKE_TIMEOUT and is closed in time', async () => {
    const server = await startServer({ users: keys, limits: { handshakeTimeout: 200 } });
    const refused = eventWhere<[string, Error]>(server, 'refused');
    const started = Date.now();
    const p = await WirePeer.connect(server.address().port, { challenge: true });
    expect(server.stats().handshaking).toBe(1);
    expect(await p.next()).toMatchObject({ type: FrameType.REJECT, reason: Reason.HANDSHAKE_TIMEOUT });
    await p.waitClosed();
    const ms = Date.now() - started;
    expect(ms).toBeGreaterThanOrEqual(190);
    expect(ms).toBeLessThan(2_000);
    const [, err] = await refused;
    expect(err).toBeInstanceOf(HandshakeTimeoutError);
    expect(server.stats()).toMatchObject({ handshaking: 0, sessions: 0 });
  });

  it('idleSessionTimeout: a session with no stream is freed (GOAWAY IDLE_TIMEOUT); one with a stream is kept', async () => {
    const dest = await destination(hold);
    const server = await startServer({ users: keys, allow: [`127.0.0.1:${dest.port}`], limits: { idleSessionTimeout: 300 } });
    const ended: { peer: PeerInfo; sessions: number; err: GkdError }[] = [];
    server.on('session-end', (peer: PeerInfo, err: GkdError) => ended.push({ peer, sessions: server.stats().sessions, err }));

    const busy = await connectClient(server, { key: keys.alice, user: 'alice', tunnels: 1 });
    const conn = await busy.open(dest);
    conn.on('error', () => undefined);
    const idle = await OwnSession.found(server.address().port, { user: 'bob', key: keys.bob });
    expect(server.stats().sessions).toBe(2);

    const goaway = await idle.founder.nextOfType(FrameType.GOAWAY);
    expect(goaway.reason).toBe(Reason.IDLE_TIMEOUT);
    await idle.founder.waitClosed();
    expect(ended.map((e) => e.peer.user)).toEqual(['bob']);
    expect(ended[0]!.err.reason).toBe(Reason.IDLE_TIMEOUT);
    expect(server.stats().sessions).toBe(1);

    // The busy session lives on while its stream is open; once the stream is over it goes idle and is freed too.
    expect(server.stats().peers[0]!.streamsOpen).toBe(1);
    const aliceEnd = eventWhere<[PeerInfo]>(server, 'session-end', (p) => p.user === 'alice');
    conn.destroy();
    await aliceEnd;
    expect(ended.map((e) => [e.peer.user, e.sessions])).toEqual([
      ['bob', 1],
      ['alice', 0],
    ]);
  });
});

describe('GkdServer: destination reset', () => {
  it('a destination reset mid-stream fails the client stream with GKD_ERR_STREAM_RESET, reason CONNECTION_REFUSED (0x05)', async () => {
    // The destination takes 64 KiB of the upload, then resets while the client is still sending.
    const dest = await destination((socket, log) => {
      void receivedAtLeast(log, 64 * 1024).then(
        () => socket.resetAndDestroy(),
        () => undefined,
      );
    });
    const server = await startServer({ users: keys, allow: [`127.0.0.1:${dest.port}`] });
    const client = await connectClient(server, { key: keys.alice, user: 'alice', tunnels: 2 });
    const conn = await client.open(dest);
    const failed = once(conn, 'error') as Promise<[GkdError]>;
    const chunk = randomBytes(64 * 1024);
    const pump = () => {
      while (!conn.destroyed && conn.write(chunk));
    };
    conn.on('drain', pump);
    pump();
    const [err] = await failed;
    expect(err).toBeInstanceOf(StreamResetError);
    expect(err.code).toBe(ErrorCode.STREAM_RESET);
    expect(err.reason).toBe(Reason.CONNECTION_REFUSED);
  });
});
