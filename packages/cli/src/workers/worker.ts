import type { Socket } from 'node:net';
import type { PeerInfo } from '@gkd/transport';
import { createLogger } from '../logger.js';
import { Metrics } from '../metrics.js';
import type { ServerSettings } from '../options.js';
import { loadServerIdentity } from '../server-identity.js';
import { runService } from '../commands/service.js';
import { startServerSide } from '../commands/server.js';
import type { FromWorker, ToWorker } from './messages.js';

/**
 * One worker of `gkd server --workers`: a whole gkd server (keys, TLS, policy, limits) without a port
 * of its own. The master sends it sockets whose preface it read; it answers metrics requests and
 * reports its sessions, so the master can route by load and forget ended sessions' tokens. It drains
 * on SIGTERM like a single server, and on its own when the master is gone (the IPC channel closed).
 */
export async function runWorker(settings: ServerSettings, id: number): Promise<number> {
  const logger = createLogger({ level: settings.logLevel, format: settings.logFormat, worker: id });
  // The master made whatever was missing (key, certificate) before it forked us.
  const identity = await loadServerIdentity(settings, { create: false });
  const send = (m: FromWorker) => {
    if (process.connected) process.send!(m);
  };
  return runService(logger, settings.drainMs, async (resources) => {
    const side = await startServerSide({ ...settings, ...identity, listen: null, embedded: false }, logger);
    resources.add('server', () => side.server.close());
    const metrics = new Metrics({ server: { server: side.server, sampler: side.sampler, refused: side.refused } });
    metrics.startSampling();
    resources.add('metrics', () => metrics.stopSampling());
    const report = () => send({ type: 'load', sessions: side.server.transport.stats().sessions });
    side.server.on('session', report);
    side.server.on('session-end', (peer: PeerInfo) => {
      send({ type: 'session-end', token: peer.routingToken });
      report();
    });
    process.on('message', (m: ToWorker, handle: unknown) => {
      if (m.type === 'tunnel') {
        const socket = handle as Socket | undefined;
        if (!socket) return;
        // The bytes the master read past the preface (the start of TLS or AUTH) go back in front.
        if (m.head) socket.unshift(Buffer.from(m.head, 'base64'));
        side.server.transport.handleConnection(socket, { token: Buffer.from(m.token, 'hex'), remoteAddress: m.remoteAddress });
      } else if (m.type === 'metrics') {
        metrics.render().then(
          async () => send({ type: 'metrics', id: m.id, metrics: await metrics.registry.getMetricsAsJSON() }),
          () => send({ type: 'metrics', id: m.id, metrics: [] }),
        );
      }
    });
    // The master is gone (killed): nobody can send us tunnels; drain what we have and exit.
    process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
    send({ type: 'ready' });
    return side.plan;
  });
}
