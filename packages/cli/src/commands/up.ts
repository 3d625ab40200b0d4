import { randomBytes } from 'node:crypto';
import type { Args } from '../args.js';
import { formatHostPort } from '../listen.js';
import { LogSink, createLogger } from '../logger.js';
import { upSettings } from '../options.js';
import { clientMetricsSource, showProgress, startClientSide } from './client.js';
import { runService, startMetrics } from './service.js';
import { KEY_BYTES } from './keygen.js';
import { startServerSide } from './server.js';
import { socketTuningLines } from '../tuning.js';

/**
 * `gkd up`: a gkd server on 127.0.0.1 (a free port) and a client connected to it, in one process,
 * with a fresh random key: a working SOCKS5 proxy in one command. The server keeps its destination
 * policy (loopback and private ranges denied unless `--allow`ed). Always one process (no `--workers`):
 * a local try carries one user's tunnels over loopback, where worker processes would only add start-up
 * time and memory. Returns the exit code.
 */
export async function upCommand(args: Args): Promise<number> {
  const settings = upSettings(args);
  const sink = new LogSink();
  const logger = createLogger({ level: settings.logLevel, format: settings.logFormat, sink });
  return runService(logger, settings.drainMs, async (resources) => {
    const key = randomBytes(KEY_BYTES);
    const serverSide = await startServerSide({ ...settings, listen: { host: '127.0.0.1', port: 0 }, auth: { key }, tls: undefined, embedded: true }, logger);
    resources.add('server', () => serverSide.server.close());
    const serverAt = serverSide.server.address();
    const server = formatHostPort(serverAt);
    const clientSide = await startClientSide(
      { ...settings, server: { host: serverAt.address, port: serverAt.port }, key, user: undefined, tls: undefined, serverLogsOpenFailures: true },
      logger,
      resources,
    );
    for (const l of socketTuningLines(settings.congestion, undefined, undefined, true)) logger.log(l.level, l.message, { event: 'socket-tuning' });
    const rules = [...settings.allow.map((r) => `allow ${r}`), ...settings.deny.map((r) => `deny ${r}`)];
    logger.info(
      `embedded server on ${server} with a fresh key; destination policy: ${rules.length ? `${rules.join(', ')}, then ` : ''}loopback and private ranges denied by default (--allow to reach them)`,
    );
    await startMetrics(
      settings.metrics,
      { client: clientMetricsSource(clientSide), server: { server: serverSide.server, sampler: serverSide.sampler, refused: serverSide.refused } },
      resources,
      logger,
    );
    showProgress(clientSide, server, settings.quiet, sink, resources);
    return {
      stopAccepting: () => {
        clientSide.plan.stopAccepting();
        serverSide.plan.stopAccepting();
      },
      active: () => Math.max(clientSide.plan.active(), serverSide.plan.active()),
      close: async () => {
        await clientSide.plan.close();
        await serverSide.plan.close();
      },
    };
  });
}
