import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AuthError,
  AuthMode,
  Decoder,
  decodePreface,
  ErrorCode,
  FrameType,
  Reason,
  encode,
  reasonName,
  toAddress,
  type AuthModeValue,
  type Frame,
} from '@gkd/protocol';
import { Client } from '@gkd/transport';
import type { PeerInfo } from '@gkd/transport';
import { receivedAtLeast, recordingDestination, sha256, type RecordingDestination } from './support/destination.js';
import { connectClient, defer, eventWhere, newKey, readAll, rejection, runCleanups, startServer, transfer } from './support/harness.js';
import { OwnSession, WirePeer, makeAuth, recordingRelay } from '@gkd/test-support';

afterEach(runCleanups);

async function destination(): Promise<RecordingDestination> {
  const d = await recordingDestination();
  defer(() => d.close());
  return d;
}

const keys = { alice: newKey(), bob: newKey(), mallory: newKey() };

describe('GkdServer: many isolated peers', () => {
  it('two peers with different keys transfer at once, byte-exact, each to its own destination connection', async () => {
    const dest = await destination();
    const server = await startServer({ users: keys, allow: [`127.0.0.1:${dest.port}`] });
    const sessions: PeerInfo[] = [];
    server.on('session', (p: PeerInfo) => sessions.push(p));
    const alice = await connectClient(server, { key: keys.alice, user: 'alice', tunnels: 4 });
    const bob = await connectClient(server, { key: keys.bob, user: 'bob', tunnels: 3 });
    const payloads = { alice: randomBytes(4 << 20), bob: randomBytes(3 << 20) };

    const [a, b] = await Promise.all([transfer(alice, dest, payloads.alice), transfer(bob, dest, payloads.bob)]);

    expect(a).toBe(sha256(payloads.alice));
    expect(b).toBe(sha256(payloads.bob));
    // The destination saw exactly two connections, each carrying exactly one peer's bytes.
    expect(await dest.settle()).toBe(2);
    expect(dest.logs.map((l) => sha256(l.received())).sort()).toEqual([sha256(payloads.alice), sha256(payloads.bob)].sort());
    expect(sessions.map((p) => p.user).sort()).toEqual(['alice', 'bob']);
    expect(server.stats().sessions).toBe(2);
  });

  it('an attacker with a valid key of its own, knowing the victim’s session and stream ids, can neither read nor inject', async () => {
    const dest = await destination();
    const server = await startServer({ users: keys, allow: [`127.0.0.1:${dest.port}`] });
    const port = server.address().port;
    const alice = await connectClient(server, { key: keys.alice, user: 'alice', tunnels: 2 });

    // The victim's transfer is in flight: half sent and received by the destination, the rest held back.
    const payload = randomBytes(2 << 20);
    const half = payload.length / 2;
    const conn = await alice.open(dest);
    const victimErrors: Error[] = [];
    conn.on('error', (e: Error) => victimErrors.push(e));
    const reply = readAll(conn);
    void reply.catch(() => undefined); // awaited below; a failure must not surface as an unhandled rejection first
    conn.write(payload.subarray(0, half));
    const victimLog = await dest.connection(0);
    await receivedAtLeast(victimLog, half);

    const [victim] = server.stats().peers;
    const sid = Buffer.from(victim!.id, 'hex');
    expect(server.transport.peers().map((p) => p.user)).toEqual(['alice']);

    // (a) JOIN the victim's session, using its own key where the session secret should be: refused as
    // if the session did not exist (UNKNOWN_SESSION), so the attempt does not even confirm it does.
    for (const key of [keys.mallory, keys.alice.subarray(0, 16)]) {
      const p = await WirePeer.connect(port, { challenge: true });
      const { answer } = await p.handshake({ mode: AuthMode.JOIN, sessionId: sid, user: 'alice', tunnelIndex: 2, key });
      expect(answer).toMatchObject({ type: FrameType.REJECT, reason: Reason.UNKNOWN_SESSION });
      await p.waitClosed();
    }
    // NEW as the victim's user with the attacker's key: BAD_PROOF too (and not SESSION_EXISTS: the id is not confirmed).
    {
      const p = await WirePeer.connect(port, { challenge: true });
      const { answer } = await p.handshake({ mode: AuthMode.NEW, sessionId: sid, user: 'alice', key: keys.mallory });
      expect(answer).toMatchObject({ type: FrameType.REJECT, reason: Reason.BAD_PROOF });
      await p.waitClosed();
    }
    // JOIN under its own user: that session does not exist.
    {
      const p = await WirePeer.connect(port, { challenge: true });
      const { answer } = await p.handshake({ mode: AuthMode.JOIN, sessionId: sid, user: 'mallory', key: keys.mallory });
      expect(answer).toMatchObject({ type: FrameType.REJECT, reason: Reason.UNKNOWN_SESSION });
      await p.waitClosed();
    }

    // (b) NEW with the victim's session id under its own user: a separate session (sessions are keyed by user + id).
    const evil = await OwnSession.found(port, { user: 'mallory', key: keys.mallory, sessionId: sid });
    expect(server.stats().peers.map((p) => p.id)).toEqual([victim!.id, victim!.id]);
    const victimStreams = [1, 3, 5];
    const attacks: Frame[] = [];
    for (const stream of victimStreams) {
      attacks.push(
        { type: FrameType.DATA, stream, offset: half, payload: Buffer.from('INJECTED') },
        { type: FrameType.DATA, stream, offset: 0, payload: Buffer.from('INJECTED') },
        { type: FrameType.FIN, stream, offset: half },
        { type: FrameType.RST, stream, reason: Reason.CANCELLED, message: 'bye' },
        { type: FrameType.ACK, stream, ack: 0, window: 1 << 20 },
        { type: FrameType.OPEN_OK, stream, window: 1 << 20 },
        { type: FrameType.OPEN_FAIL, stream, reason: Reason.CONNECTION_REFUSED, message: '' },
      );
    }
    let tunnel = evil.founder;
    let nextIndex = 1;
    const outcomes: string[] = [];
    for (const frame of attacks) {
      tunnel.send(frame);
      if (await tunnel.ping()) {
        outcomes.push('ignored');
        continue;
      }
      // The server closed the attacker's tunnel; a GOAWAY, if it got through before the close, says why.
      const goaway = tunnel.all(FrameType.GOAWAY)[0];
      outcomes.push(goaway ? `closed ${reasonName(goaway.reason)}` : 'closed');
      // Back in through its own session (the attacker holds that secret) for the next attempt.
      const j = await evil.join(nextIndex++);
      expect(j.answer?.type).toBe(FrameType.WELCOME);
      tunnel = j.peer;
    }
    for (const o of outcomes) expect(o).toMatch(/^(ignored|closed( PROTOCOL_ERROR)?)$/);
    expect(outcomes.filter((o) => o.startsWith('closed')).length).toBeGreaterThan(0);

    // Its own stream 1 (library mode, refused) is its own: frames for it stay in its session.
    tunnel.send({ type: FrameType.OPEN, stream: 1, window: 1 << 16, destination: null });
    expect(await tunnel.nextOfType(FrameType.OPEN_FAIL)).toMatchObject({ stream: 1, reason: Reason.NOT_ALLOWED });
    tunnel.send({ type: FrameType.DATA, stream: 1, offset: half, payload: Buffer.from('INJECTED') });
    tunnel.send({ type: FrameType.FIN, stream: 1, offset: half + 8 });
    expect(await tunnel.ping()).toBe(true);
    expect(tunnel.all(FrameType.RST).every((f) => f.stream === 1 && f.reason === Reason.STREAM_CLOSED)).toBe(true);

    // The victim finishes: byte-exact both ways, and the destination got only the victim's bytes.
    conn.end(payload.subarray(half));
    expect((await reply).toString()).toBe(sha256(payload));
    expect(victimErrors).toEqual([]);
    expect(await dest.settle()).toBe(1);
    expect(victimLog.received().equals(payload)).toBe(true);
    // Nothing of the victim's stream reached the attacker.
    const attackerGot = [evil.founder, tunnel].flatMap((t) => t.received);
    expect(attackerGot.filter((f) => f.type === FrameType.DATA)).toEqual([]);
    expect(alice.tunnelsUp).toBe(2);
  });

  it('a replayed AUTH (NEW or JOIN, with everything that followed it) is refused (BAD_PROOF, UNKNOWN_SESSION) and dials nothing', async () => {
    const dest = await destination();
    const server = await startServer({ users: keys, allow: [`127.0.0.1:${dest.port}`] });
    const relay = await recordingRelay(server.address().port);
    defer(() => relay.close());
    const sessions: PeerInfo[] = [];
    server.on('session', (p: PeerInfo) => sessions.push(p));

    // A legitimate client, wiretapped.
    const bob = await Client.connect(`127.0.0.1:${relay.port}`, { key: keys.bob, user: 'bob', tunnels: 2 });
    defer(() => bob.close());
    while (bob.tunnelsUp < 2) await new Promise((r) => bob.once('tunnel-up', r));
    const payload = randomBytes(100_000);
    expect(await transfer(bob, dest, payload)).toBe(sha256(payload));
    expect(await dest.settle()).toBe(1);

    // What the wiretap saw: the routing preface (the same token on both tunnels), then one AUTH first
    // on each tunnel (one NEW, one JOIN), then the OPEN and the data.
    const prefaces = relay.fromClient.map((chunks) => decodePreface(Buffer.concat(chunks)));
    expect(prefaces[1]!.token).toEqual(prefaces[0]!.token);
    const captured = prefaces.map((p) => p.rest);
    const frames = captured.map((bytes) => new Decoder().push(bytes));
    const auths = frames.map((f) => f[0]);
    expect(auths.map((a) => (a?.type === FrameType.AUTH ? a.mode : -1)).sort()).toEqual([AuthMode.NEW, AuthMode.JOIN]);
    expect(frames.flat().some((f) => f.type === FrameType.OPEN)).toBe(true);

    // Replay each tunnel's whole byte stream on a fresh connection, while bob's session is alive.
    for (const bytes of captured) {
      const p = await WirePeer.connect(server.address().port, { challenge: true });
      p.send(bytes);
      const answer = await p.next((f) => f.type === FrameType.REJECT || f.type === FrameType.WELCOME);
      const first = new Decoder().push(bytes)[0];
      const mode = first?.type === FrameType.AUTH ? first.mode : -1;
      expect(answer).toMatchObject({ type: FrameType.REJECT, reason: mode === AuthMode.NEW ? Reason.BAD_PROOF : Reason.UNKNOWN_SESSION });
      await p.waitClosed();
      expect(p.all(FrameType.OPEN_OK)).toEqual([]);
    }
    expect(await dest.settle()).toBe(1); // no dial for the replays
    expect(sessions.map((s) => s.user)).toEqual(['bob']);
    expect(server.stats().sessions).toBe(1);
  });

  it('a peer without the secret learns nothing: a live session and a gone one, a known user and an unknown one, get the same REJECT', async () => {
    const server = await startServer({ users: keys });
    const port = server.address().port;
    const alice = await connectClient(server, { key: keys.alice, user: 'alice', tunnels: 1 });
    const sid = Buffer.from(server.stats().peers[0]!.id, 'hex');
    const reject = async (p: { mode: AuthModeValue; user: string; key: Buffer; sessionId: Buffer }): Promise<unknown> => {
      const peer = await WirePeer.connect(port, { challenge: true });
      const { answer } = await peer.handshake({ ...p, tunnelIndex: 1 });
      await peer.waitClosed();
      return answer;
    };
    const joinAlive = await reject({ mode: AuthMode.JOIN, user: 'alice', key: keys.mallory, sessionId: sid });
    const ended = eventWhere(server, 'session-end');
    alice.close();
    await ended;
    expect(server.stats().sessions).toBe(0);
    const joinGone = await reject({ mode: AuthMode.JOIN, user: 'alice', key: keys.mallory, sessionId: sid });
    const joinNever = await reject({ mode: AuthMode.JOIN, user: 'nobody', key: keys.mallory, sessionId: randomBytes(16) });
    expect(joinAlive).toMatchObject({ type: FrameType.REJECT, reason: Reason.UNKNOWN_SESSION });
    expect(joinGone).toEqual(joinAlive);
    expect(joinNever).toEqual(joinAlive);

    const wrongKey = await reject({ mode: AuthMode.NEW, user: 'alice', key: keys.mallory, sessionId: randomBytes(16) });
    const unknownUser = await reject({ mode: AuthMode.NEW, user: 'eve', key: keys.mallory, sessionId: randomBytes(16) });
    expect(wrongKey).toMatchObject({ type: FrameType.REJECT, reason: Reason.BAD_PROOF });
    expect(unknownUser).toEqual(wrongKey);
  });

  it('a wrong key never causes a dial: Client.connect rejects with an AuthError', async () => {
    const dest = await destination();
    const server = await startServer({ users: keys, allow: [`127.0.0.1:${dest.port}`] });
    const refused: Error[] = [];
    server.on('refused', (_addr: string, err: Error) => refused.push(err));

    const wrongKey = await rejection(Client.connect(`127.0.0.1:${server.address().port}`, { key: newKey(), user: 'alice', tunnels: 2 }));
    expect(wrongKey).toBeInstanceOf(AuthError);
    expect(wrongKey.code).toBe(ErrorCode.AUTH);
    expect(wrongKey.reason).toBe(Reason.BAD_PROOF);
    const unknownUser = await rejection(Client.connect(`127.0.0.1:${server.address().port}`, { key: keys.alice, user: 'eve', tunnels: 1 }));
    expect(unknownUser).toBeInstanceOf(AuthError);
    expect(unknownUser.reason).toBe(Reason.BAD_PROOF);

    // A raw peer with the wrong key sends its OPEN right behind the AUTH, in the same write: still no dial.
    const p = await WirePeer.connect(server.address().port, { challenge: true });
    const { frame } = makeAuth(
      {
        mode: AuthMode.NEW,
        sessionId: randomBytes(16),
        user: 'alice',
        key: newKey(),
      },
      p.challenge!,
    );
    p.send(Buffer.concat([encode(frame), encode({ type: FrameType.OPEN, stream: 1, window: 1 << 16, destination: toAddress('127.0.0.1', dest.port) })]));
    expect(await p.next()).toMatchObject({ type: FrameType.REJECT, reason: Reason.BAD_PROOF });
    await p.waitClosed();

    expect(await dest.settle()).toBe(0);
    expect(server.stats().sessions).toBe(0);
    // Three refused handshakes (the rest of 'refused' are the failed client's other tunnel, closed mid-handshake).
    expect(refused.filter((e) => e instanceof AuthError && e.reason === Reason.BAD_PROOF).length).toBe(3);
  });
});
