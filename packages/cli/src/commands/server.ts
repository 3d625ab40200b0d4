import { GkdServer, type DatagramDeniedEvent, type OpenEvent } from '@gkd/server';
import type { HostPort, PeerInfo } from '@gkd/transport';
import type { Args } from '../args.js';
import { formatHostPort, listenFailure } from '../listen.js';
import { createLogger, errorText, type Logger } from '../logger.js';
import { serverSettings, type PolicySettings, type ServerSettings } from '../options.js';
import { TransportSampler } from '../sampler.js';
import type { DrainPlan } from '../shutdown.js';
import { socketTuningLines } from '../tuning.js';
import { runService, startMetrics } from './service.js';

/** What the server part of a process needs. */
export interface ServerSideOptions extends PolicySettings {
  listen: HostPort;
  auth: ServerSettings['auth'];
  tls: ServerSettings['tls'];
  /** Inside `gkd up`: the client part reports tunnels and sessions, so the server logs them at debug. */
  embedded: boolean;
  /** TCP congestion control for the tunnel sockets (governs downloads), or undefined for the system's. */
  congestion?: string | undefined;
}

/** A running server part. */
export interface ServerSide {
  server: GkdServer;
  sampler: TransportSampler;
  /** Tunnel handshakes refused so far. */
  refused(): number;
  /** Stop: GOAWAY to every peer and close the listener; drain the spliced streams; close. */
  plan: DrainPlan;
}

/** Start a GkdServer and log its events. Throws StartError when it cannot listen. */
export async function startServerSide(opts: ServerSideOptions, logger: Logger): Promise<ServerSide> {
  let server: GkdServer;
  try {
    server = await GkdServer.start({
      listen: opts.listen,
      ...('key' in opts.auth ? { key: opts.auth.key } : { users: opts.auth.users }),
      tls: opts.tls ? { cert: opts.tls.cert, key: opts.tls.key } : undefined,
      allow: opts.allow,
      deny: opts.deny,
      ...(opts.congestion ? { session: { congestion: opts.congestion } } : {}),
    });
  } catch (err) {
    throw listenFailure('--listen', opts.listen, err);
  }
  let refused = 0;
  const lifecycle = opts.embedded ? 'debug' : 'info';
  const who = (peer: PeerInfo): string =>
    [`session ${peer.sessionId.slice(0, 8)}`, peer.user ? `user ${peer.user}` : '', peer.remoteAddress ? `from ${peer.remoteAddress}` : ''].filter(Boolean).join(', ');
  server.on('session', (peer: PeerInfo) => logger.log(lifecycle, `new session (${who(peer)})`, { event: 'session', session: peer.sessionId, user: peer.user }));
  server.on('session-end', (peer: PeerInfo, err?: Error) =>
    logger.log(lifecycle, `session ended (${who(peer)})${err ? `: ${errorText(err)}` : ''}`, { event: 'session-end', session: peer.sessionId, user: peer.user }),
  );
  server.on('tunnel-up', (peer: PeerInfo, index: number) => logger.log(lifecycle, `tunnel ${index} up (${who(peer)})`, { event: 'tunnel-up', tunnel: index, session: peer.sessionId }));
  server.on('tunnel-down', (peer: PeerInfo, index: number, err?: Error) =>
    logger.log(lifecycle, `tunnel ${index} down (${who(peer)})${err ? `: ${errorText(err)}` : ''}`, { event: 'tunnel-down', tunnel: index, session: peer.sessionId }),
  );
  server.on('refused', (remote: string | undefined, err: Error) => {
    refused++;
    logger.warn(`refused a tunnel from ${remote ?? 'an unknown address'}: ${errorText(err)}`, { event: 'refused', remote, error: errorText(err) });
  });
  server.on('open', (e: OpenEvent) => logger.debug(`OPEN ${e.destination} ok in ${e.ms} ms (${who(e.peer)})`, { event: 'open', destination: e.destination, ms: e.ms }));
  server.on('open-failed', (e: OpenEvent) => {
    const hint = e.reason === 'NOT_ALLOWED' && /denied by default/.test(e.message ?? '') ? `; to allow it, pass --allow ${e.destination}` : '';
    logger.warn(`OPEN ${e.destination} failed: ${e.reason}${e.message ? ` (${e.message})` : ''}${hint}`, {
      event: 'open-failed',
      destination: e.destination,
      reason: e.reason,
      detail: e.message,
      user: e.peer.user,
    });
  });
  server.on('datagram-denied', (e: DatagramDeniedEvent) => {
    const hint = /denied by default/.test(e.message) ? `; to allow it, pass --allow ${e.destination}` : '';
    logger.warn(`UDP ${e.destination} refused: ${e.message}${hint}`, { event: 'datagram-denied', destination: e.destination, detail: e.message, user: e.peer.user });
  });
  server.on('error', (err: Error) => logger.error(`server: ${errorText(err)}`));
  return {
    server,
    sampler: new TransportSampler(() => server.stats().peers),
    refused: () => refused,
    plan: {
      stopAccepting: () => server.transport.goAway(),
      active: () => server.counters.activeStreams,
      close: () => server.close(),
    },
  };
}

/** `gkd server`: run until SIGINT/SIGTERM. Returns the exit code. */
export async function serverCommand(args: Args): Promise<number> {
  const settings = serverSettings(args);
  const logger = createLogger({ level: settings.logLevel, format: settings.logFormat });
  if (settings.keyOnCommandLine) logger.warn('the key was given with --key, where other users of this machine can see it (ps); prefer GKD_KEY');
  return runService(logger, settings.drainMs, async (resources) => {
    const side = await startServerSide({ ...settings, embedded: false }, logger);
    resources.add('server', () => side.server.close());
    if (settings.tls) logger.info(`TLS certificate SHA-256 fingerprint ${settings.tls.fingerprint} (for clients' --tls-fingerprint)`);
    await startMetrics(settings.metrics, { server: { server: side.server, sampler: side.sampler, refused: side.refused } }, resources, logger);
    const at = formatHostPort(side.server.address());
    const auth = 'key' in settings.auth ? 'one key' : `${Object.keys(settings.auth.users).length} users from ${settings.auth.file}`;
    const rules = [...settings.allow.map((r) => `allow ${r}`), ...settings.deny.map((r) => `deny ${r}`)];
    logger.info(`listening on ${at} (${settings.tls ? 'TLS' : 'plain TCP'}, ${auth}); destination policy: ${rules.length ? rules.join(', ') + ', then ' : ''}loopback and private ranges denied by default`);
    process.stdout.write(`gkd: server listening on ${at} (${settings.tls ? 'TLS' : 'plain TCP'}, ${auth})\n`);
    for (const l of socketTuningLines(settings.congestion)) logger.log(l.level, l.message, { event: 'socket-tuning' });
    return side.plan;
  });
}
