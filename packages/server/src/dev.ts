/**
 * A development server: `pnpm --filter @gkd/server dev` runs this in watch mode (it restarts when a
 * source file changes). Sensible local defaults, everything logged to the console:
 *
 * - listens on 127.0.0.1:9990 (GKD_LISTEN overrides);
 * - the key comes from GKD_KEY; without it a fresh random key is made and printed once, with how to
 *   keep it across restarts;
 * - loopback destinations are allowed (127.0.0.0/8, ::1), so a local test service can be reached;
 *   the other default-denied ranges stay denied.
 *
 * Not for production: use the `gkd server` command.
 */
import { randomBytes } from 'node:crypto';
import type { PeerInfo } from '@gkd/transport';
import { GkdServer, type OpenEvent } from './index.js';

const listen = process.env.GKD_LISTEN ?? '127.0.0.1:9990';
let key = process.env.GKD_KEY;
if (!key) {
  key = randomBytes(32).toString('base64url');
  console.log(`No GKD_KEY set: made a random key for this run (a restart makes a new one):\n\n  GKD_KEY=${key}\n`);
  console.log(`Keep it across restarts: GKD_KEY=${key} pnpm --filter @gkd/server dev`);
  console.log(`Connect a client with the same key: GKD_KEY=${key} gkd client --server ${listen}\n`);
}

const log = (...parts: unknown[]) => console.log(new Date().toISOString().slice(11, 23), ...parts);
const who = (p: PeerInfo) => `${p.user || 'peer'}/${p.sessionId.slice(0, 8)}${p.remoteAddress ? ` from ${p.remoteAddress}` : ''}`;
const why = (err: unknown) => (err instanceof Error ? err.message : err === undefined ? '' : String(err));

const server = await GkdServer.start({ listen, key, allow: ['127.0.0.0/8', '::1'] });
const { address, port } = server.address();
log(`gkd dev server listening on ${address}:${port}; loopback destinations allowed`);

server.on('session', (p: PeerInfo) => log('session', who(p)));
server.on('session-end', (p: PeerInfo, err?: Error) => log('session end', who(p), why(err)));
server.on('tunnel-up', (p: PeerInfo, index: number) => log(`tunnel ${index} up`, who(p)));
server.on('tunnel-down', (p: PeerInfo, index: number, err?: Error) => log(`tunnel ${index} down`, who(p), why(err)));
server.on('refused', (remote: string | undefined, err: Error) => log('refused', remote ?? '?', why(err)));
server.on('open', (e: OpenEvent) => log('open', e.destination, `${e.ms} ms`, who(e.peer)));
server.on('open-failed', (e: OpenEvent) => log('open failed', e.destination, e.reason, e.message ?? '', who(e.peer)));
server.on('error', (err: Error) => log('error', why(err)));

// `node --watch` restarts with SIGTERM; Ctrl-C sends SIGINT. Close the port so the next run can bind it.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: closing`);
    void server.close().then(() => process.exit(0));
  });
}
