/**
 * The hostile-input scenario, shared by test/hostile.test.ts (short) and `pnpm fuzz` (long).
 *
 * A gkd server (own process) with three users: alice (a legitimate client process moving data
 * through its SOCKS port the whole time), carol (a legitimate client in this process, wiretapped, so
 * attackers can replay her handshakes and name her session), and mallory (the attacker, with a valid
 * key of her own). Against it, at once: authenticated fuzzing sessions, unauthenticated connections,
 * a PING flooder that never reads, slowloris on the tunnel port, and hostile SOCKS5 / HTTP clients of
 * alice's proxy ports. Afterwards: what each side saw, the processes' peak RSS, and the security
 * properties (nothing dialed for a failed handshake, carol's session untouched).
 */
import { randomBytes } from 'node:crypto';
import { FrameType, Reason, encode, type GkdError } from '@gkd/protocol';
import { Client, type Connection } from '@gkd/transport';
import {
  authedAttacker,
  deafFlooder,
  emptyAuthedStats,
  emptyFrontEndStats,
  emptyPreAuthStats,
  frontEndAttacker,
  preAuthAttacker,
  tunnelSlowloris,
  type AuthedStats,
  type FrontEndStats,
  type PreAuthStats,
} from './attack.js';
import { sha256 } from '../data.js';
import { download, echoStream } from './load.js';
import type { ClientChild } from './proc.js';
import { startStack } from '../stack.js';
import type { ProcessStack } from './stack.js';
import { OwnSession, WirePeer } from '../wire-peer.js';
import { wiretap } from './wiretap.js';

const MiB = 1024 * 1024;

export interface HostileOptions {
  /** Authenticated hostile frames to send (the attack stops at this count or at the deadline). */
  frames: number;
  /** Longest the attack phase may run, in ms. */
  durationMs: number;
  seed: number;
  /** Concurrent authenticated hostile sessions. */
  authedWorkers: number;
  /** Tolerated frames per batch (one PONG round trip each). */
  batch: number;
  preAuthWorkers: number;
  preAuthConnections: number;
  frontEndWorkers: number;
  frontEndConnections: number;
  /** PINGs the never-reading flooder tries to push. */
  deafFrames: number;
  /** Tunnel-port connections that never complete a handshake. */
  slowloris: number;
  /** Legitimate transfers in flight at once, and the size of each, in bytes. */
  legitParallel: number;
  legitBytes: number;
  log?: (line: string) => void;
}

/** Legitimate traffic during the attack. */
export interface LegitReport {
  ok: number;
  failures: string[];
  bytes: number;
  /** Longest time with no legitimate transfer completing, in ms (from the start of the attack). */
  maxGapMs: number;
  /** Legitimate throughput (both directions), in MB/s. */
  mbps: number;
}

export interface HostileReport {
  seed: number;
  attackMs: number;
  authed: AuthedStats;
  preAuth: PreAuthStats;
  frontEnd: FrontEndStats;
  deaf: { sent: number; closedByServer: boolean };
  slowloris: { closedByServer: number; held: number };
  legitBaseline: LegitReport;
  legit: LegitReport;
  /** Connections each destination accepted. The canary: only carol's one stream; forbidden: none. */
  accepted: Record<string, number>;
  security: {
    /** Replays of carol's whole captured tunnel bytes, each on a fresh connection: the answers. */
    replayAnswers: string[];
    /** mallory's NEW with carol's session id (its own key): a separate session. */
    sessionIdReuse: string;
    /** Frames for carol's stream ids sent in mallory's session with carol's id: how the server took them. */
    crossSessionOutcome: string;
    /** carol after everything: tunnels up, her held stream intact, a fresh echo byte-exact. */
    carolTunnelsUp: number;
    carolStreamErrors: string[];
    carolEchoOk: boolean;
    /** Sessions on the server at the end, by user. */
    sessionsByUser: Record<string, number>;
    handshakingAtEnd: number;
  };
  rss: { serverBaseline: number; serverPeak: number; clientBaseline: number; clientPeak: number };
  serverRefused: Record<string, number>;
  /** Processes that died before the end, with their stderr; and each process's stderr. */
  crashed: string[];
  serverStderr: string;
  clientStderr: string;
}

interface LegitRun {
  stop(): Promise<LegitReport>;
}

/** Legitimate transfers through alice's SOCKS port until stopped: echo (up and down) and downloads, each checked by sha256. */
function legitTraffic(client: ClientChild, ports: ProcessStack['ports'], parallel: number, bytes: number, hardDeadline: number): LegitRun {
  const t0 = performance.now();
  let last = t0;
  let maxGap = 0;
  let ok = 0;
  let moved = 0;
  let stopped = false;
  const failures: string[] = [];
  const worker = async (w: number) => {
    for (let i = 0; !stopped && Date.now() < hardDeadline && i < 1_000_000; i++) {
      try {
        if (i % 2 === 0) {
          const r = await echoStream(client.ready.socksPort, ports.echo, w * 1_000_000 + i, bytes, 60_000);
          if (!r.ok) throw new Error(r.error);
          moved += 2 * bytes;
        } else {
          await download(client.ready.socksPort, ports.source, bytes, 60_000);
          moved += bytes;
        }
        ok++;
        const now = performance.now();
        maxGap = Math.max(maxGap, now - last);
        last = now;
      } catch (err) {
        if (failures.length < 50) failures.push((err as Error).message);
        else failures.length++;
      }
    }
  };
  const workers = Array.from({ length: parallel }, (_, w) => worker(w));
  return {
    async stop() {
      stopped = true;
      await Promise.all(workers);
      const s = (performance.now() - t0) / 1000;
      return { ok, failures, bytes: moved, maxGapMs: Math.max(maxGap, performance.now() - last), mbps: moved / 1e6 / s };
    },
  };
}

export async function runHostile(o: HostileOptions): Promise<HostileReport> {
  const log = o.log ?? (() => undefined);
  const stack = await startStack({
    users: ['alice', 'carol', 'mallory'],
    clients: [{ user: 'alice', tunnels: 4, socks: { handshakeTimeout: 2000 }, http: { headersTimeout: 2000 } }],
    limits: {
      // Streams per session: the default (1024); hostile proxy clients make alice's client open many at once.
      maxSessionsPerPeer: o.authedWorkers + 8,
      maxTunnelsPerSession: 8,
      // mallory's sessions may all be full: the per-peer tunnel cap is not what this run tests.
      maxTunnelsPerPeer: (o.authedWorkers + 8) * 8,
      maxBufferedBytesPerPeer: 16 * MiB,
      handshakeTimeout: 3000,
    },
  });
  const alice = stack.clients.values().next().value!;
  const tap = await wiretap(stack.serverPort);
  let carol: Client | undefined;
  const carolErrors: string[] = [];
  try {
    // carol: two tunnels through the wiretap, and one stream held open to the canary.
    carol = Client.create(`127.0.0.1:${tap.port}`, { key: stack.keys.carol!, user: 'carol', tunnels: 2 });
    await carol.waitForTunnel(20_000);
    while (carol.tunnelsUp < 2) await new Promise((r) => carol!.once('tunnel-up', r));
    const held: Connection = await carol.open({ host: '127.0.0.1', port: stack.ports.canary });
    held.on('error', (e: GkdError) => carolErrors.push(`${e.code}: ${e.message}`));
    held.write('carol was here');
    const carolSid = tap.sessionId();
    if (!carolSid) throw new Error('the wiretap saw no AUTH from carol');

    const serverBaseline = (await stack.server.rss()).rss;
    const clientBaseline = (await alice.rss()).rss;

    log('baseline: legitimate traffic alone for 3 s');
    const base = legitTraffic(alice, stack.ports, o.legitParallel, o.legitBytes, Date.now() + 20_000);
    await new Promise((r) => setTimeout(r, 3000));
    const legitBaseline = await base.stop();

    const t0 = Date.now();
    const deadline = t0 + o.durationMs;
    const legit = legitTraffic(alice, stack.ports, o.legitParallel, o.legitBytes, deadline + 60_000);
    const authed = emptyAuthedStats();
    const preAuth = emptyPreAuthStats();
    const frontEnd = emptyFrontEndStats();
    const ownSessions: OwnSession[] = [];
    const fuzzPorts = { hold: stack.ports.hold, forbidden: stack.ports.forbidden, allowed: Object.values(stack.ports) };
    const authBudget = { left: o.frames };
    const preBudget = { left: o.preAuthConnections };
    const frontBudget = { left: o.frontEndConnections };
    let deafResult: { sent: number; closedByServer: boolean } | undefined;
    let slowResult: { closedByServer: number; held: number } | undefined;
    const progress = setInterval(() => {
      void stack.server
        .rss()
        .then((r) =>
          log(
            `${((Date.now() - t0) / 1000).toFixed(0)} s: ${authed.framesSent} authenticated frames (${authed.framesProcessed} confirmed processed), ` +
              `${preAuth.connections} unauthenticated connections, ${frontEnd.connections} hostile proxy clients; server RSS ${(r.rss / MiB).toFixed(0)} MiB`,
          ),
        );
    }, 5000);
    let attackError: unknown;
    try {
      await Promise.all(
        [
          ...Array.from({ length: o.authedWorkers }, (_, i) =>
            authedAttacker({
              port: stack.serverPort,
              user: 'mallory',
              key: stack.keys.mallory!,
              ports: fuzzPorts,
              maxBody: 65_544,
              seed: o.seed + i,
              deadline,
              budget: authBudget,
              batch: o.batch,
              pFatal: 0.25,
              pWild: 0.15,
              stats: authed,
              onSession: (s) => ownSessions.push(s),
            }),
          ),
          ...Array.from({ length: o.preAuthWorkers }, (_, i) =>
            preAuthAttacker({
              port: stack.serverPort,
              seed: o.seed + 1000 + i,
              deadline,
              budget: preBudget,
              canaryPort: stack.ports.canary,
              victimUser: 'carol',
              attackerUser: 'mallory',
              attackerKey: stack.keys.mallory!,
              victimSessionId: () => carolSid,
              captured: () => tap.captured(),
              ownAuths: () => ownSessions.flatMap((s) => s.auths),
              stats: preAuth,
            }),
          ),
          ...Array.from({ length: o.frontEndWorkers }, (_, i) =>
            frontEndAttacker(
              {
                socksPort: alice.ready.socksPort,
                httpPort: alice.ready.httpPort,
                seed: o.seed + 2000 + i,
                deadline,
                budget: frontBudget,
                forbiddenPort: stack.ports.forbidden,
                stats: frontEnd,
              },
              2000,
            ),
          ),
        ].concat([
          // Its own deadline: after the server stops reading it, the keepalive deadline (5 s) must close it.
          deafFlooder(stack.serverPort, 'mallory', stack.keys.mallory!, o.deafFrames, Math.max(deadline, Date.now() + 15_000)).then((r) => {
            deafResult = r;
          }),
          tunnelSlowloris(stack.serverPort, o.slowloris, 3000 + 10_000).then((r) => {
            slowResult = r;
          }),
        ]),
      );
    } catch (err) {
      attackError = err;
    } finally {
      clearInterval(progress);
    }
    const attackMs = Date.now() - t0;
    const legitReport = await legit.stop();
    if (attackError) throw attackError;
    log(`attack over after ${(attackMs / 1000).toFixed(1)} s`);

    // Security, deterministically: every captured carol tunnel replayed whole on a fresh connection.
    const replayAnswers: string[] = [];
    for (const bytes of tap.captured()) {
      const p = await WirePeer.connect(stack.serverPort, { record: false });
      p.socket.write(bytes);
      await p.closed;
      const rej = p.counts.get(FrameType.REJECT) ?? 0;
      const wel = p.counts.get(FrameType.WELCOME) ?? 0;
      replayAnswers.push(wel > 0 ? 'WELCOME' : rej > 0 ? 'REJECT' : 'closed');
    }
    // mallory founds a session with carol's session id (her own valid key): it must be a separate one,
    // and frames for carol's stream (id 1) in it must never reach carol.
    const reuse = new OwnSession(stack.serverPort, 'mallory', stack.keys.mallory!, { sessionId: carolSid, record: false });
    let sessionIdReuse = 'WELCOME';
    let crossSessionOutcome = 'not tried';
    try {
      const t = await reuse.tunnel();
      // A frame for carol's stream 1: in this session, a stream never opened.
      t.socket.write(encode({ type: FrameType.DATA, stream: 1, offset: 14, payload: Buffer.from('INJECTED') }));
      await t.closed;
      crossSessionOutcome = `tunnel closed (GOAWAY ${t.goaway === Reason.PROTOCOL_ERROR ? 'PROTOCOL_ERROR' : String(t.goaway)})`;
    } catch (err) {
      sessionIdReuse = (err as Error).message;
    }
    // carol is untouched: her tunnels are up, her held stream is alive, and a fresh echo is byte-exact.
    const carolEchoOk = await (async () => {
      const c = await carol!.open({ host: '127.0.0.1', port: stack.ports.echo });
      const payload = randomBytes(256 * 1024);
      const chunks: Buffer[] = [];
      const done = new Promise<void>((resolve, reject) => {
        c.on('data', (d: Buffer) => chunks.push(d));
        c.once('end', resolve);
        c.once('error', reject);
      });
      c.end(payload);
      await done;
      return sha256(Buffer.concat(chunks)) === sha256(payload);
    })();
    held.write(' and still is');
    const stats = await stack.server.call('stats');
    // Handshakes in progress drain within the handshake timeout (3 s) once the attack is over.
    const end = Date.now() + 10_000;
    let handshaking = stats.handshaking as number;
    while (handshaking > 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 100));
      handshaking = (await stack.server.call('stats')).handshaking;
    }
    const sessionsByUser: Record<string, number> = {};
    for (const p of stats.peers as { user: string }[]) sessionsByUser[p.user] = (sessionsByUser[p.user] ?? 0) + 1;
    const dest = await stack.destination.call('stats');
    const report: HostileReport = {
      seed: o.seed,
      attackMs,
      authed,
      preAuth,
      frontEnd,
      deaf: deafResult ?? { sent: 0, closedByServer: false },
      slowloris: slowResult ?? { closedByServer: 0, held: 0 },
      legitBaseline,
      legit: legitReport,
      accepted: dest.accepted,
      security: {
        replayAnswers,
        sessionIdReuse,
        crossSessionOutcome,
        carolTunnelsUp: carol.tunnelsUp,
        carolStreamErrors: carolErrors,
        carolEchoOk,
        sessionsByUser,
        handshakingAtEnd: handshaking,
      },
      rss: {
        serverBaseline,
        serverPeak: Math.max((await stack.server.rss()).peak, stack.server.maxSampledRss),
        clientBaseline,
        clientPeak: Math.max((await alice.rss()).peak, alice.maxSampledRss),
      },
      serverRefused: stats.refused,
      crashed: [],
      serverStderr: stack.server.stderr,
      clientStderr: alice.stderr,
    };
    held.destroy();
    return report;
  } finally {
    carol?.close();
    await tap.close();
    const crashed = await stack.close();
    // biome-ignore lint/correctness/noUnsafeFinally: a crashed process is the finding that matters most, even over the run's own error.
    if (crashed.length > 0) throw new Error(`processes died during the hostile run:\n${crashed.join('\n')}`);
  }
}
