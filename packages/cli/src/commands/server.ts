import { GkdServer, type DatagramDeniedEvent, type OpenEvent } from '@gkd/server';
import type { HostPort, PeerInfo } from '@gkd/transport';
import type { Args } from '../args.js';
import { formatHostPort, listenFailure } from '../listen.js';
import { LogDigest } from '../log-digest.js';
import { createLogger, errorText, type Logger } from '../logger.js';
import { serverSettings, type PolicySettings, type ServerSettings } from '../options.js';
import { loadServerIdentity, type ServerIdentity } from '../server-identity.js';
import { guessPublicHost, serverLinks } from './link.js';
import { TransportSampler } from '../sampler.js';
import type { DrainPlan } from '../shutdown.js';
import { socketTuningLines } from '../tuning.js';
import { runService, startMetrics } from './service.js';
import { WorkerMaster } from '../workers/master.js';
import { WORKER_ENV } from '../workers/messages.js';
import { runWorker } from '../workers/worker.js';

/** What the server part of a process needs. */
export interface ServerSideOptions extends PolicySettings {
  /** null: no port (a worker: the master sends it the tunnels). */
  listen: HostPort | null;
  auth: ServerIdentity['auth'];
  /** Undefined: plain TCP. */
  tls: ServerIdentity['tls'];
  /** Inside `gkd up`: the client part reports tunnels and sessions, so the server logs them at debug. */
  embedded: boolean;
  /** TCP congestion control for the tunnel sockets (governs downloads), or undefined for the system's. */
  congestion?: string | undefined;
  /** --max-peers, or undefined for the server's default. */
  maxPeers?: number | undefined;
  /** Server-wide buffer pool in bytes (0: none); undefined: the server's default. */
  maxBufferedBytes?: number | undefined;
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
      limits: {
        ...(opts.maxPeers !== undefined ? { maxPeers: opts.maxPeers } : {}),
        ...(opts.maxBufferedBytes !== undefined ? { maxBufferedBytes: opts.maxBufferedBytes } : {}),
      },
      deny: opts.deny,
      ...(opts.congestion ? { session: { congestion: opts.congestion } } : {}),
    });
  } catch (err) {
    if (!opts.listen) throw err;
    throw listenFailure('--listen', opts.listen, err);
  }
  let refused = 0;
  const lifecycle = opts.embedded ? 'debug' : 'info';
  const who = (peer: PeerInfo): string =>
    [`session ${peer.sessionId.slice(0, 8)}`, peer.user ? `user ${peer.user}` : '', peer.remoteAddress ? `from ${peer.remoteAddress}` : '']
      .filter(Boolean)
      .join(', ');
  server.on('session', (peer: PeerInfo) => logger.log(lifecycle, `new session (${who(peer)})`, { event: 'session', session: peer.sessionId, user: peer.user }));
  server.on('session-end', (peer: PeerInfo, err?: Error) =>
    logger.log(lifecycle, `session ended (${who(peer)})${err ? `: ${errorText(err)}` : ''}`, {
      event: 'session-end',
      session: peer.sessionId,
      user: peer.user,
    }),
  );
  server.on('tunnel-up', (peer: PeerInfo, index: number) =>
    logger.log(lifecycle, `tunnel ${index} up (${who(peer)})`, { event: 'tunnel-up', tunnel: index, session: peer.sessionId }),
  );
  server.on('tunnel-down', (peer: PeerInfo, index: number, err?: Error) =>
    logger.log(lifecycle, `tunnel ${index} down (${who(peer)})${err ? `: ${errorText(err)}` : ''}`, {
      event: 'tunnel-down',
      tunnel: index,
      session: peer.sessionId,
    }),
  );
  // Anyone who can reach the port can cause a refusal, and a peer a failed OPEN: digested, so a flood
  // of them costs a few lines per 10 s, not one line each.
  const digest = new LogDigest(logger);
  server.on('refused', (remote: string | undefined, err: Error) => {
    refused++;
    const kind = refusalKind(err);
    digest.note('warn', `refused\0${kind}`, `refused tunnels (${kind})`, remote, `refused a tunnel from ${remote ?? 'an unknown address'}: ${errorText(err)}`, {
      event: 'refused',
      remote,
      error: errorText(err),
    });
  });
  server.on('open', (e: OpenEvent) =>
    logger.debug(`OPEN ${e.destination} ok in ${e.ms} ms (${who(e.peer)})`, { event: 'open', destination: e.destination, ms: e.ms }),
  );
  server.on('open-failed', (e: OpenEvent) => {
    const hint = e.reason === 'NOT_ALLOWED' && /denied by default/.test(e.message ?? '') ? `; to allow it, pass --allow ${e.destination}` : '';
    digest.note(
      'warn',
      `open-failed\0${e.peer.user}\0${e.reason}`,
      `failed OPENs (${e.reason}${e.peer.user ? `, user ${e.peer.user}` : ''})`,
      e.peer.remoteAddress,
      `OPEN ${e.destination} failed: ${e.reason}${e.message ? ` (${e.message})` : ''}${hint}`,
      {
        event: 'open-failed',
        destination: e.destination,
        reason: e.reason,
        detail: e.message,
        user: e.peer.user,
      },
    );
  });
  server.on('datagram-denied', (e: DatagramDeniedEvent) => {
    const hint = /denied by default/.test(e.message) ? `; to allow it, pass --allow ${e.destination}` : '';
    // A peer can name a fresh destination per datagram: digested like failed OPENs.
    digest.note(
      'warn',
      `datagram-denied\0${e.peer.user}`,
      `refused UDP datagrams${e.peer.user ? ` (user ${e.peer.user})` : ''}`,
      e.peer.remoteAddress,
      `UDP ${e.destination} refused: ${e.message}${hint}`,
      {
        event: 'datagram-denied',
        destination: e.destination,
        detail: e.message,
        user: e.peer.user,
      },
    );
  });
  server.on('error', (err: Error) => logger.error(`server: ${errorText(err)}`));
  return {
    server,
    sampler: new TransportSampler(() => server.stats().peers),
    refused: () => refused,
    plan: {
      stopAccepting: () => server.transport.goAway(),
      active: () => server.counters.activeStreams,
      close: async () => {
        await server.close();
        digest.flush();
      },
    },
  };
}

/** What a refusal was, without the parts that vary per peer (addresses, counts): the message up to its first colon. */
function refusalKind(err: Error): string {
  const code = (err as { code?: unknown }).code;
  const head = errorText(err)
    .split(':')[0]!
    .replace(/\d+(\.\d+)*/g, 'N')
    .slice(0, 60);
  return typeof code === 'string' ? `${code}: ${head}` : head;
}

/** `gkd server`: run until SIGINT/SIGTERM. Returns the exit code. */
export async function serverCommand(args: Args): Promise<number> {
  const settings = serverSettings(args);
  const workerId = process.env[WORKER_ENV];
  if (workerId !== undefined && process.send) return runWorker(settings, Number(workerId));
  const logger = createLogger({ level: settings.logLevel, format: settings.logFormat });
  if (settings.keyOnCommandLine) logger.warn('the key was given with --key, where other users of this machine can see it (ps); prefer GKD_KEY');
  const identity = await loadServerIdentity(settings, { create: true });
  for (const note of identity.notes) logger.info(note, { event: 'state' });
  for (const warning of identity.warnings) logger.warn(warning, { event: 'state' });
  if (!identity.tls)
    logger.warn('--plaintext: the tunnels are NOT encrypted; anyone on the path can read the traffic (the handshake is still authenticated)', {
      event: 'plaintext',
    });
  if (settings.workers > 1) return runMaster(settings, identity, logger);
  return runService(logger, settings.drainMs, async (resources) => {
    const side = await startServerSide({ ...settings, ...identity, embedded: false }, logger);
    resources.add('server', () => side.server.close());
    if (identity.tls)
      logger.info(`TLS certificate SHA-256 fingerprint ${identity.tls.fingerprint} (clients pin it: it is in the link)`, {
        event: 'fingerprint',
        fingerprint: identity.tls.fingerprint,
      });
    await startMetrics(settings.metrics, { server: { server: side.server, sampler: side.sampler, refused: side.refused } }, resources, logger);
    const address = side.server.address();
    const at = formatHostPort(address);
    const auth = 'key' in identity.auth ? 'one key' : `${Object.keys(identity.auth.users).length} users from ${identity.auth.file}`;
    const rules = [...settings.allow.map((r) => `allow ${r}`), ...settings.deny.map((r) => `deny ${r}`)];
    const transport = identity.tls ? 'TLS' : 'plain TCP';
    logger.info(
      `listening on ${at} (${transport}, ${auth}); destination policy: ${rules.length ? rules.join(', ') + ', then ' : ''}loopback and private ranges denied by default`,
    );
    process.stdout.write(`gkd: server listening on ${at} (${transport}, ${auth})\n`);
    printLinks(identity, { host: settings.listen.host, port: address.port });
    for (const l of socketTuningLines(settings.congestion)) logger.log(l.level, l.message, { event: 'socket-tuning' });
    return side.plan;
  });
}

/** `gkd server --workers N` (N > 1): this process holds the port and N workers serve the tunnels. */
async function runMaster(settings: ServerSettings, identity: ServerIdentity, logger: Logger): Promise<number> {
  // The workers drain for up to --drain-timeout themselves; the master waits a little longer for them.
  return runService(logger, settings.drainMs + 2000, async (resources) => {
    const master = new WorkerMaster({ listen: settings.listen, workers: settings.workers, tls: identity.tls !== undefined }, logger);
    resources.add('workers', () => master.close());
    const digest = new LogDigest(logger);
    master.on('worker-up', (id: number, pid: number) => logger.info(`worker ${id} up (pid ${pid})`, { event: 'worker-up', worker: id, pid }));
    master.on('refused', (remote: string | undefined, err: Error) =>
      digest.note(
        'warn',
        `refused\0${refusalKind(err)}`,
        `refused tunnels (${refusalKind(err)})`,
        remote,
        `refused a tunnel from ${remote ?? 'an unknown address'}: ${errorText(err)}`,
        {
          event: 'refused',
          remote,
          error: errorText(err),
        },
      ),
    );
    try {
      await master.start();
    } catch (err) {
      throw listenFailure('--listen', settings.listen, err);
    }
    if (settings.metrics) {
      let endpoint: Awaited<ReturnType<WorkerMaster['serveMetrics']>>;
      try {
        endpoint = await master.serveMetrics(settings.metrics);
      } catch (err) {
        throw listenFailure('--metrics', settings.metrics, err);
      }
      resources.add('metrics', () => endpoint.close());
      logger.info(`metrics on http://${formatHostPort(endpoint.address)}/metrics (the sum over the workers)`);
    }
    if (identity.tls)
      logger.info(`TLS certificate SHA-256 fingerprint ${identity.tls.fingerprint} (clients pin it: it is in the link)`, {
        event: 'fingerprint',
        fingerprint: identity.tls.fingerprint,
      });
    const address = master.address();
    const at = formatHostPort(address);
    const auth = 'key' in identity.auth ? 'one key' : `${Object.keys(identity.auth.users).length} users from ${identity.auth.file}`;
    const transport = identity.tls ? 'TLS' : 'plain TCP';
    logger.info(`listening on ${at} (${transport}, ${auth}) with ${settings.workers} worker processes`);
    process.stdout.write(`gkd: server listening on ${at} (${transport}, ${auth}, ${settings.workers} workers)\n`);
    printLinks(identity, { host: settings.listen.host, port: address.port });
    return {
      stopAccepting: () => master.stopAccepting(),
      // Each worker drains its own streams on SIGTERM: the master waits for the workers to exit.
      active: () => master.runningWorkers,
      close: async () => {
        await master.close();
        digest.flush();
      },
    };
  });
}

/**
 * The connection link(s), on stdout, only when stdout is a terminal: a link holds the key, and a
 * service's stdout usually ends up in a journal or a log file. Elsewhere, say how to print them.
 */
function printLinks(identity: ServerIdentity, listen: HostPort): void {
  const { host, guessed } = guessPublicHost(listen);
  const again = `gkd link --host NAME${listen.port === 9990 ? '' : ` --listen ${formatHostPort(listen)}`}`;
  if (!process.stdout.isTTY) {
    process.stdout.write(`gkd: connection link: run \`${again}\` (not printed here: stdout is not a terminal, and a link holds the key)\n`);
    return;
  }
  for (const { user, link } of serverLinks(identity, host, listen.port)) {
    process.stdout.write(`gkd: connection link${user === undefined ? '' : ` for ${user}`} (a secret: it holds the key): ${link}\n`);
  }
  if (guessed)
    process.stdout.write(`gkd: ${host} is a guess at this server's address; if clients reach it by another name, \`${again}\` prints the link with it\n`);
}
