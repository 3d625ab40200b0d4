/**
 * Hostile input over real sockets, end to end (scripts/reliability/lib/hostile.ts): a gkd server in
 * its own process, fuzzed by an authenticated peer (a valid key of its own) and by unauthenticated
 * connections, with hostile SOCKS5/HTTP clients on a gkd client's ports, while a legitimate peer keeps
 * moving sha256-checked data. `pnpm fuzz` runs the same scenario for longer (10^7 frames, 10 minutes).
 *
 * GKD_HOSTILE_FRAMES (default 10^6: about 10 s of the attack on a 2-core machine, see
 * docs/RELIABILITY.md) and GKD_HOSTILE_SECONDS (the attack's time limit, default 45) scale it;
 * GKD_FUZZ_SEED replays a run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FrameType, encode } from '@gkd/protocol';
import { DEFAULT_CAPS, summary, violations } from '../scripts/reliability/lib/hostile-check.js';
import { runHostile } from '../scripts/reliability/lib/hostile.js';
import { startStack, type Stack } from '../scripts/reliability/lib/stack.js';
import { OwnSession, type WirePeer } from '../scripts/reliability/lib/wire.js';

const FRAMES = Number(process.env.GKD_HOSTILE_FRAMES ?? 1_000_000);
const SECONDS = Number(process.env.GKD_HOSTILE_SECONDS ?? 45);
const SEED = Number(process.env.GKD_FUZZ_SEED ?? Date.now() % 1_000_000);

describe('hostile input over real sockets', () => {
  it(
    `${FRAMES.toLocaleString('en')} random and mutated frames from an authenticated peer, 10 000 unauthenticated openings, 600 hostile SOCKS5/HTTP clients: ` +
      'no crash, nothing dialed for a failed handshake, RSS under its caps, a legitimate peer byte-exact throughout',
    async () => {
      const report = await runHostile({
        frames: FRAMES,
        durationMs: SECONDS * 1000,
        seed: SEED,
        authedWorkers: 4,
        batch: 2000,
        preAuthWorkers: 16,
        preAuthConnections: 10_000,
        frontEndWorkers: 8,
        frontEndConnections: 600,
        deafFrames: 2_000_000,
        slowloris: 16,
        legitParallel: 2,
        legitBytes: 2 * 1024 * 1024,
      });
      console.log(summary(report, DEFAULT_CAPS));
      console.log(`replay this run with GKD_FUZZ_SEED=${SEED}`);
      expect(violations(report, FRAMES, DEFAULT_CAPS)).toEqual([]);
    },
    (SECONDS + 120) * 1000,
  );
});

describe('known, not fixed here (see docs/RELIABILITY.md, "Open issues")', () => {
  let stack: Stack;
  let peer: WirePeer;
  beforeAll(async () => {
    stack = await startStack({ users: ['mallory'], clients: [] });
    peer = await new OwnSession(stack.serverPort, 'mallory', stack.keys.mallory!).tunnel();
  }, 60_000);
  afterAll(async () => {
    peer?.destroy();
    expect(await stack?.close()).toEqual([]);
  });

  // Every frame the server sends is kept for failover until a PONG confirms it (PROTOCOL.md §6), and a
  // tunnel is dead only when nothing at all arrives for the keepalive deadline. A peer that reads
  // everything and keeps sending, but never answers a PING, is never dead and confirms nothing: each of
  // its frames that the server answers (here DATA for a stream that ended: RST STREAM_CLOSED) stays in
  // memory. About 150 bytes each; 700 MiB of RSS in 15 s with one tunnel. This test documents it; it
  // will start failing (as `.fails` expects the assertion to fail) once the server bounds it.
  it.fails('a peer that reads everything but never answers PINGs cannot make the server retain more than 65 536 unconfirmed frames', async () => {
    peer.answerPings = false;
    await peer.write(encode({ type: FrameType.OPEN, stream: 1, window: 65536, destination: null })); // refused: stream 1 ends by reset
    const batch = Buffer.concat(Array.from({ length: 4096 }, (_, i) => encode({ type: FrameType.DATA, stream: 1, offset: i, payload: Buffer.from('x') })));
    for (let i = 0; i < 40 && !peer.isClosed; i++) await peer.write(batch);
    const answered = () => peer.counts.get(FrameType.RST) ?? 0;
    const end = Date.now() + 30_000;
    while (answered() < 40 * 4096 && !peer.isClosed && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    const s = await stack.server.call('stats');
    const unconfirmed = Math.max(...(s.peers as { unconfirmed: number }[]).map((p) => p.unconfirmed));
    console.log(`server answers read: ${answered()}; frames the server retains for this never-confirming peer: ${unconfirmed}`);
    expect(unconfirmed).toBeLessThan(65_536);
  }, 60_000);
});
