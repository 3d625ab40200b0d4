/**
 * The properties a hostile run must hold, and a readable summary of one. Shared by
 * test/hostile.test.ts and `pnpm fuzz`, so CI and the long run judge the same way.
 */
import type { HostileReport } from './hostile.js';

const MiB = 1024 * 1024;

/** RSS ceilings for the hostile run, in bytes (see docs/RELIABILITY.md for how they are derived). */
export interface RssCaps {
  server: number;
  client: number;
}

/**
 * Server: Node + tsx + the sources (~110 MiB measured) + the per-peer byte budget of the three peers
 * (3 × 16 MiB) + the bounded queues of the hostile tunnels (4 × tunnelHighWater each while the peer
 * does not read; about 10 at once) + V8 heap growth; 320 MiB leaves about 100 MiB of headroom over the
 * peaks measured. Client: Node + tsx + its 64 MiB session budget + the hostile SOCKS/HTTP clients.
 */
export const DEFAULT_CAPS: RssCaps = { server: 320 * MiB, client: 256 * MiB };

/** Every violated property, as a sentence (empty: the run passed). */
export function violations(r: HostileReport, wantFrames: number, caps: RssCaps = DEFAULT_CAPS): string[] {
  const v: string[] = [];
  const a = r.authed;
  if (a.framesSent < wantFrames) v.push(`only ${a.framesSent} of ${wantFrames} authenticated frames were sent in ${(r.attackMs / 1000).toFixed(0)} s`);
  if (Object.keys(a.unexpectedCloses).length > 0) v.push(`the server closed tunnels on frames it must take: ${JSON.stringify(a.unexpectedCloses)}`);
  if (Object.keys(a.fatalTolerated).length > 0) v.push(`the server kept tunnels after frames it must refuse: ${JSON.stringify(a.fatalTolerated)}`);
  if (a.decodeErrors > 0) v.push(`the server sent ${a.decodeErrors} byte streams that do not decode`);
  if (r.preAuth.welcomes > 0) v.push(`WELCOME to a failed/forged/replayed handshake: ${r.preAuth.welcomeCases.join(', ')}`);
  // carol's one legitimate stream is the canary's only connection.
  if (r.accepted.canary !== 1) v.push(`the canary (named only after failed handshakes) accepted ${r.accepted.canary} connections, expected carol's 1`);
  if (r.accepted.forbidden !== 0) v.push(`the destination the policy denies accepted ${r.accepted.forbidden} connections`);
  const s = r.security;
  if (s.replayAnswers.length === 0 || s.replayAnswers.some((x) => x !== 'REJECT'))
    v.push(`replayed handshakes got ${JSON.stringify(s.replayAnswers)}, expected REJECT each`);
  if (s.sessionIdReuse !== 'WELCOME') v.push(`mallory's NEW with carol's session id: ${s.sessionIdReuse} (expected a separate session)`);
  if (!s.crossSessionOutcome.startsWith('tunnel closed')) v.push(`a frame for carol's stream in mallory's session: ${s.crossSessionOutcome}`);
  if (s.carolTunnelsUp < 1 || !s.carolEchoOk || s.carolStreamErrors.length > 0) {
    v.push(`carol was disturbed: ${s.carolTunnelsUp} tunnels up, echo ${s.carolEchoOk ? 'ok' : 'wrong'}, stream errors ${JSON.stringify(s.carolStreamErrors)}`);
  }
  if (s.sessionsByUser.alice !== 1 || s.sessionsByUser.carol !== 1) v.push(`legitimate sessions at the end: ${JSON.stringify(s.sessionsByUser)}`);
  if (s.handshakingAtEnd !== 0) v.push(`${s.handshakingAtEnd} handshakes still in progress after the attack`);
  if (r.legit.failures.length > 0) v.push(`legitimate transfers failed: ${r.legit.failures.slice(0, 5).join('; ')}`);
  if (r.legit.ok < 10) v.push(`only ${r.legit.ok} legitimate transfers completed during the attack`);
  if (r.legit.maxGapMs > 15_000) v.push(`no legitimate transfer completed for ${(r.legit.maxGapMs / 1000).toFixed(1)} s`);
  if (!r.deaf.closedByServer) v.push(`the never-reading PING flooder was not stopped (sent ${r.deaf.sent})`);
  if (r.slowloris.held > 0) v.push(`${r.slowloris.held} handshake-less connections outlived the handshake timeout`);
  if (Object.keys(r.frontEnd.wrong).length > 0) v.push(`hostile proxy clients got wrong answers: ${r.frontEnd.wrongSamples.join('; ')}`);
  if (r.rss.serverPeak > caps.server) v.push(`server peak RSS ${(r.rss.serverPeak / MiB).toFixed(0)} MiB over its cap ${(caps.server / MiB).toFixed(0)} MiB`);
  if (r.rss.clientPeak > caps.client) v.push(`client peak RSS ${(r.rss.clientPeak / MiB).toFixed(0)} MiB over its cap ${(caps.client / MiB).toFixed(0)} MiB`);
  if (r.serverStderr !== '') v.push(`server stderr: ${r.serverStderr.slice(0, 500)}`);
  if (r.clientStderr !== '') v.push(`client stderr: ${r.clientStderr.slice(0, 500)}`);
  return v;
}

function top(m: Record<string, number>, n = 40): string {
  return Object.entries(m)
    .sort((x, y) => y[1] - x[1])
    .slice(0, n)
    .map(([k, c]) => `${k} ${c}`)
    .join(', ');
}

/** A human summary of a run (what was tried, what the server answered, memory, legitimate traffic). */
export function summary(r: HostileReport, caps: RssCaps = DEFAULT_CAPS): string {
  const a = r.authed;
  const mb = (b: number) => `${(b / MiB).toFixed(0)} MiB`;
  return [
    `hostile run, seed ${r.seed}, attack ${(r.attackMs / 1000).toFixed(1)} s`,
    `authenticated (valid key of its own): ${a.framesSent} frames sent, ${a.framesProcessed} confirmed processed (PONG after each batch, or the close a fatal frame must cause)`,
    `  ${a.batches} batches, ${a.fatalClosed} fatal frames (each closed its tunnel), ${a.wild} wild mutations, ${a.rejoins} re-joins; unexpected closes ${JSON.stringify(a.unexpectedCloses)}, fatal frames tolerated ${JSON.stringify(a.fatalTolerated)}`,
    `  frame kinds: ${top(a.kinds)}`,
    `  server answers: ${top(a.answers)}`,
    `unauthenticated: ${r.preAuth.connections} connections, ${r.preAuth.frames} openings, WELCOMEs ${r.preAuth.welcomes}; outcomes ${top(r.preAuth.outcomes)}`,
    `  cases: ${top(r.preAuth.byCase)}`,
    `  server refusals: ${top(r.serverRefused)}`,
    `never-reading PING flooder: ${r.deaf.sent} PINGs pushed, stopped by the server: ${r.deaf.closedByServer}; slowloris: ${r.slowloris.closedByServer} closed by the handshake timeout, ${r.slowloris.held} held`,
    `hostile SOCKS5/HTTP clients: ${r.frontEnd.connections}, wrong answers ${JSON.stringify(r.frontEnd.wrong)}; outcomes ${top(r.frontEnd.outcomes)}`,
    `  cases: ${top(r.frontEnd.byCase)}`,
    `destinations accepted: ${JSON.stringify(r.accepted)} (canary: carol's one stream; forbidden: none)`,
    `security: replays ${JSON.stringify(r.security.replayAnswers)}; NEW with carol's session id as mallory: ${r.security.sessionIdReuse}, a frame for carol's stream there: ${r.security.crossSessionOutcome}; carol after: ${r.security.carolTunnelsUp} tunnels, echo ${r.security.carolEchoOk ? 'byte-exact' : 'WRONG'}, stream errors ${r.security.carolStreamErrors.length}`,
    `legitimate peer (alice, SOCKS, sha256-checked): baseline ${r.legitBaseline.mbps.toFixed(0)} MB/s; during the attack ${r.legit.ok} transfers, ${r.legit.failures.length} failed, ${(r.legit.bytes / 1e9).toFixed(2)} GB, ${r.legit.mbps.toFixed(0)} MB/s, longest gap ${(r.legit.maxGapMs / 1000).toFixed(2)} s`,
    `RSS: server ${mb(r.rss.serverBaseline)} before, peak ${mb(r.rss.serverPeak)} (cap ${mb(caps.server)}); client ${mb(r.rss.clientBaseline)} before, peak ${mb(r.rss.clientPeak)} (cap ${mb(caps.client)})`,
  ].join('\n');
}
