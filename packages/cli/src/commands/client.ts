import { HandshakeTimeoutError } from '@gkd/protocol';
import { HttpProxyServer, SocksServer, type ProxyEvent } from '@gkd/socks-client';
import { AuthError, Reason } from '@gkd/protocol';
import { ClosedBeforeChallengeError, Client, type ClientTlsOptions, type HostPort, type PathInfo, type PathOptions, type TunnelsEvent } from '@gkd/transport';
import type { Args } from '../args.js';
import { formatHostPort, listenFailure, listenWithFallback } from '../listen.js';
import { LogDigest } from '../log-digest.js';
import { LogSink, createLogger, errorText, type Logger } from '../logger.js';
import type { ClientMetricsSource } from '../metrics.js';
import { clientOpener } from '../opener.js';
import { clientSettings, type ProxySettings } from '../options.js';
import { RetryLog } from '../retry-log.js';
import { TransportSampler } from '../sampler.js';
import type { DrainPlan, Resources } from '../shutdown.js';
import { StatusLine, clientStatusRenderer } from '../status-line.js';
import { socketTuningLines } from '../tuning.js';
import { runService, startMetrics } from './service.js';

/** What the client part of a process needs. */
export interface ClientSideOptions extends ProxySettings {
  server: HostPort;
  /** Every address of the server (default: `server` alone). */
  servers?: HostPort[];
  /** --via paths; undefined: one path over the system's route. */
  paths?: PathOptions[] | undefined;
  key: Buffer;
  user: string | undefined;
  tls: ClientTlsOptions | undefined;
  /** Inside `gkd up`: the server part logs failed OPENs with the policy's reason, so the proxy's own line goes to debug. */
  serverLogsOpenFailures: boolean;
  /** TCP congestion control for the tunnel sockets (governs uploads), or undefined for the system's. */
  congestion?: string | undefined;
}

/** A running client part: the transport client and the local proxies. */
export interface ClientSide {
  client: Client;
  socks: SocksServer;
  http: HttpProxyServer | undefined;
  sampler: TransportSampler;
  /** Resolves when every tunnel is up, or some are and 2 s passed since the first. */
  ready: Promise<void>;
  /** Stop: close the proxies' listeners and refuse new opens; drain the open streams; close the proxies and the client. */
  plan: DrainPlan;
}

/** How long the ready line waits for the remaining tunnels once one is up, in ms. */
const READY_SETTLE_MS = 2000;

/** Start the transport client and the SOCKS5 (and HTTP) proxies, logging their events. Throws StartError when a proxy cannot listen. */
export async function startClientSide(opts: ClientSideOptions, logger: Logger, resources: Resources, exit?: (code: number) => void): Promise<ClientSide> {
  const server = formatHostPort(opts.server);
  const client = Client.create(opts.servers ?? [opts.server], {
    key: opts.key,
    user: opts.user,
    tunnels: opts.tunnels,
    ...(opts.tunnels === 'auto'
      ? {
          minTunnels: opts.minTunnels,
          maxTunnels: opts.maxTunnels,
          // Several paths without --start-tunnels: the transport splits the start over them (defaultPathStart).
          adaptive: (opts.paths?.length ?? 0) > 1 && !opts.startTunnelsGiven ? {} : { start: opts.startTunnels },
        }
      : {}),
    paths: opts.paths,
    tls: opts.tls,
    ...(opts.congestion ? { session: { congestion: opts.congestion } } : {}),
  });
  let stopping = false;
  resources.add('client', () => {
    stopping = true;
    client.close();
  });
  logClientEvents(client, logger, server, opts.user !== undefined, () => stopping, opts.tls === undefined, exit);

  const opener = clientOpener(client);
  // Whoever can reach the local ports can cause these lines: digested, so a flood costs a few lines per 10 s.
  const digest = new LogDigest(logger);
  resources.add('log digest', () => digest.flush());
  const onEvent = (e: ProxyEvent): void => logProxyEvent(e, logger, digest, opts.serverLogsOpenFailures);
  const socks = await listenWithFallback(
    '--socks',
    opts.socks,
    opts.socksIsDefault,
    (at) => SocksServer.listen({ host: at.host, port: at.port, opener: opener.open, associator: opener.associate, auth: opts.socksAuth, onEvent }),
    logger,
  );
  resources.add('SOCKS5 proxy', () => socks.close());
  let http: HttpProxyServer | undefined;
  if (opts.http) {
    const at = opts.http;
    try {
      http = await HttpProxyServer.listen({ host: at.host, port: at.port, opener: opener.open, auth: opts.socksAuth, onEvent });
    } catch (err) {
      throw listenFailure('--http', at, err);
    }
    resources.add('HTTP proxy', () => http?.close());
  }

  return {
    client,
    socks,
    http,
    sampler: new TransportSampler(() => [client.stats()]),
    ready: tunnelsReady(client),
    plan: {
      stopAccepting: () => {
        // Release the ports at once; a client accepted just before still gets a failure reply, not a stream.
        socks.stopListening();
        http?.stopListening();
        opener.close();
      },
      active: () => client.stats().streamsOpen,
      close: async () => {
        stopping = true;
        await Promise.all([socks.close(), http?.close()]);
        client.close();
      },
    },
  };
}

function logClientEvents(
  client: Client,
  logger: Logger,
  server: string,
  hasUser: boolean,
  stopping: () => boolean,
  plaintext: boolean,
  exit?: (code: number) => void,
): void {
  const retries = new RetryLog(logger, server);
  let lastAuthError = '';
  let hinted = false;
  let everUp = false;
  // With more than one path (or a bound one), every tunnel line names its path.
  const named = client.paths.length > 1 || client.paths[0]!.binding.kind !== 'route';
  const onPath = (index: number): { text: string; fields: { path?: string } } => {
    if (!named) return { text: '', fields: {} };
    const path = client.pathOf(index).name;
    return { text: ` on path ${path}`, fields: { path } };
  };
  client.on('tunnel-up', (index: number) => {
    retries.up(index);
    lastAuthError = '';
    everUp = true;
    const p = onPath(index);
    logger.info(`tunnel ${index}${p.text} up (${client.tunnelsUp}/${client.tunnelCount})`, {
      event: 'tunnel-up',
      tunnel: index,
      up: client.tunnelsUp,
      ...p.fields,
    });
  });
  client.on('tunnels', (d: TunnelsEvent) => {
    if (stopping()) return;
    const path = d.path === undefined ? '' : `path ${d.path} `;
    logger.info(`${path}tunnels ${d.from} → ${d.target}: ${d.reason}`, {
      event: 'tunnels',
      ...(d.path === undefined ? {} : { path: d.path }),
      from: d.from,
      target: d.target,
      reason: d.reason,
    });
  });
  client.on('tunnel-retired', (index: number) => {
    logger.debug(`tunnel ${index} retired (${client.tunnelsUp}/${client.tunnelCount})`, { event: 'tunnel-retired', tunnel: index, up: client.tunnelsUp });
  });
  client.on('tunnel-down', (index: number, err?: Error) => {
    const level = stopping() ? 'debug' : 'info';
    const p = onPath(index);
    logger.log(level, `tunnel ${index}${p.text} down (${client.tunnelsUp}/${client.tunnelCount})${err ? `: ${errorText(err)}` : ''}`, {
      event: 'tunnel-down',
      tunnel: index,
      up: client.tunnelsUp,
      ...p.fields,
    });
  });
  if (named) {
    const downSince = new Map<string, number>();
    client.on('path-down', (path: PathInfo, err?: Error) => {
      if (stopping()) return;
      downSince.set(path.name, Date.now());
      const others = client.paths.filter((p) => p !== path && client.pathTunnelsUp(p.name) > 0).map((p) => p.name);
      const carry = others.length > 0 ? `connections carry on over ${others.join(', ')}` : 'no path is up: connections wait for one (up to the grace period)';
      logger.warn(
        `path ${path.name} down: none of its ${client.pathTunnelCount(path.name)} tunnels is up${err ? ` (${errorText(err)})` : ''}; ${carry}; it rejoins when it answers again`,
        { event: 'path-down', path: path.name },
      );
    });
    client.on('path-up', (path: PathInfo) => {
      const since = downSince.get(path.name);
      downSince.delete(path.name);
      if (since === undefined) logger.debug(`path ${path.name} up`, { event: 'path-up', path: path.name });
      else
        logger.info(`path ${path.name} back after ${((Date.now() - since) / 1000).toFixed(1)} s`, {
          event: 'path-up',
          path: path.name,
          downMs: Date.now() - since,
        });
    });
  }
  client.on('reconnecting', (index: number, delayMs: number, err: Error) => {
    if (stopping()) return;
    if (plaintext && !hinted && (err instanceof HandshakeTimeoutError || err instanceof ClosedBeforeChallengeError)) {
      // A TLS server waits for a ClientHello and a plaintext client for the server's challenge: both
      // stay silent until a timeout (the client's, or the server's, which then closes the tunnel), so
      // nothing else would tell the user what is wrong.
      hinted = true;
      logger.error(
        `no handshake from ${server} over plain TCP: a server that runs TLS (the default) says nothing to a --plaintext client. Unless the server runs --plaintext too, drop --plaintext and use its link (gkd link on the server)`,
        { event: 'plaintext-mismatch' },
      );
      return;
    }
    if (keyRejected(err)) {
      // 'auth-failed' said what happened; one line for the (long) wait, not a reconnect warning.
      logger.debug(`tunnels wait ${(delayMs / 1000).toFixed(0)} s before trying the key again`, { event: 'reconnecting', delayMs });
      return;
    }
    retries.failed(index, delayMs, err);
  });
  client.on('auth-failed', (err: Error) => {
    const text = errorText(err);
    const check = `check the key (GKD_KEY / --key, or the link)${hasUser ? ' and --user' : ''}`;
    // A certificate or TLS failure is not about the key: the message itself says what to check.
    const tls = /certificate|fingerprint|TLS/.test(text);
    if (keyRejected(err) && !everUp && exit) {
      // Never had a session: a typo (or a server that is not ours), not a hiccup. Retrying would only fill the server's log.
      logger.error(tls ? `cannot trust the server: ${text}. Exiting.` : `${text}; ${check}. Exiting.`, { event: 'auth-failed' });
      exit(2);
      return;
    }
    const level = text === lastAuthError ? 'debug' : 'error';
    lastAuthError = text;
    const retry = keyRejected(err) ? '; retrying rarely (the wait doubles, up to 5 min)' : '';
    const line = tls ? `cannot trust the server: ${text}` : `the server refused us: ${text}; ${check}${retry}`;
    logger.log(level, line, { event: 'auth-failed' });
  });
  client.on('session', (id: string) => logger.debug(`new session ${id.slice(0, 8)}`, { event: 'session', session: id }));
  client.on('session-lost', (err: Error) => {
    if (!stopping()) logger.warn(`session lost (${errorText(err)}): its connections were closed; starting a new session`, { event: 'session-lost' });
  });
  client.on('dormant', () => {
    if (!stopping()) logger.info('the server closed the idle session: tunnels stay down until the next connection', { event: 'dormant' });
  });
  client.on('awake', () => logger.info('reconnecting the tunnels for a new connection', { event: 'awake' }));
}

/** Whether `err` says our key (or user name, or the server's proof of its key) was rejected: the client waits long before trying again. */
function keyRejected(err: Error): boolean {
  return err instanceof AuthError && err.reason === Reason.BAD_PROOF;
}

/** Failures the server reports too (OPEN_FAIL reasons), as opposed to ones only this side sees. */
const SERVER_REPORTED = new Set(['GENERAL_FAILURE', 'NOT_ALLOWED', 'NETWORK_UNREACHABLE', 'HOST_UNREACHABLE', 'CONNECTION_REFUSED', 'TIMEOUT']);

function logProxyEvent(e: ProxyEvent, logger: Logger, digest: LogDigest, serverLogsOpenFailures: boolean): void {
  const proxy = e.proxy === 'socks' ? 'SOCKS5' : 'HTTP';
  const source = e.client.replace(/:\d+$/, ''); // the address, without the client's port
  if (e.type === 'opened') {
    logger.debug(`${proxy} ${e.client} → ${e.destination} open in ${e.ms} ms`, { event: 'opened', ...e });
  } else if (e.type === 'udp-associated') {
    logger.debug(`${proxy} ${e.client} UDP association, relay at ${e.relay}`, { event: 'udp-associated', ...e });
  } else if (e.type === 'open-failed') {
    const level = serverLogsOpenFailures && SERVER_REPORTED.has(e.kind) ? 'debug' : 'warn';
    const line = `${proxy} ${e.client} → ${e.destination} failed: ${e.kind} (${e.message})`;
    if (level === 'debug') logger.debug(line, { event: 'open-failed', ...e });
    else digest.note(level, `${proxy}\0open-failed\0${e.kind}`, `${proxy} opens failed (${e.kind})`, source, line, { event: 'open-failed', ...e });
  } else {
    digest.note(
      'info',
      `${proxy}\0client-error\0${e.state}`,
      `${proxy} clients dropped (${e.state})`,
      source,
      `${proxy} client ${e.client} dropped (${e.state}): ${e.message}`,
      {
        event: 'client-error',
        ...e,
      },
    );
  }
}

/** Resolves when every tunnel is up, or at least one is and READY_SETTLE_MS passed since the first came up. */
function tunnelsReady(client: Client): Promise<void> {
  return new Promise((resolve) => {
    let settle: NodeJS.Timeout | undefined;
    const check = (): void => {
      if (client.tunnelsUp >= client.tunnelCount) done();
      else if (client.tunnelsUp > 0 && !settle) settle = setTimeout(done, READY_SETTLE_MS);
    };
    const done = (): void => {
      clearTimeout(settle);
      client.off('tunnel-up', check);
      resolve();
    };
    client.on('tunnel-up', check);
    check();
  });
}

/** The machine-readable ready line: `gkd: SOCKS5 proxy on 127.0.0.1:1080 (server 127.0.0.1:9990, 8 tunnels up)`. */
export function readyLine(side: ClientSide, server: string): string {
  const proxies = [`SOCKS5 proxy on ${formatHostPort(side.socks.address())}`];
  if (side.http) proxies.push(`HTTP proxy on ${formatHostPort(side.http.address())}`);
  const n = side.client.tunnelsUp;
  return `gkd: ${proxies.join(', ')} (server ${server}, ${n} tunnel${n === 1 ? '' : 's'} up)`;
}

/**
 * After the client side started: the status line (on a terminal, unless --quiet), the ready line on
 * stdout once the tunnels are up, and metrics.
 */
export function showProgress(side: ClientSide, server: string, quiet: boolean, sink: LogSink, resources: Resources): void {
  let status: StatusLine | undefined;
  if (StatusLine.wanted(process.stdout, quiet)) {
    const line = new StatusLine(process.stdout, clientStatusRenderer(side.client, side.sampler));
    status = line;
    if ((sink.stream as { isTTY?: boolean }).isTTY) sink.around = (write) => line.interrupt(write);
    line.start();
    resources.add('status line', () => {
      sink.around = undefined;
      line.stop();
    });
  }
  let cancelled = false;
  resources.add('ready line', () => (cancelled = true));
  void side.ready.then(() => {
    if (cancelled) return;
    const text = `${readyLine(side, server)}\n`;
    if (status) status.interrupt(() => process.stdout.write(text));
    else process.stdout.write(text);
  });
}

/** `gkd client`: run until SIGINT/SIGTERM. Returns the exit code. */
export async function clientCommand(args: Args): Promise<number> {
  const settings = clientSettings(args);
  const sink = new LogSink();
  const logger = createLogger({ level: settings.logLevel, format: settings.logFormat, sink });
  if (settings.keyOnCommandLine) logger.warn('the key was given with --key, where other users of this machine can see it (ps); prefer GKD_KEY');
  if (settings.linkOnCommandLine)
    logger.warn(
      'the link (which holds the key) was given on the command line, where other users of this machine can see it (ps); prefer GKD_LINK or "link" in a --config file',
    );
  if (!settings.tls) logger.warn('--plaintext: the tunnels are NOT encrypted; anyone on the path can read the traffic', { event: 'plaintext' });
  return runService(logger, settings.drainMs, async (resources, exit) => {
    const side = await startClientSide({ ...settings, serverLogsOpenFailures: false }, logger, resources, exit);
    const server = formatHostPort(settings.server);
    const total = side.client.tunnelCount;
    const count = settings.paths
      ? `${total} tunnel${total === 1 ? '' : 's'}`
      : settings.tunnels === 'auto'
        ? `${total} tunnels (auto: ${settings.minTunnels}–${settings.maxTunnels})`
        : `${settings.tunnels} tunnel${settings.tunnels === 1 ? '' : 's'}`;
    const also = settings.servers.length > 1 ? ` (also at ${settings.servers.slice(1).map(formatHostPort).join(', ')})` : '';
    const c = side.client;
    const pathCount = (name: string): string =>
      c.pathAdaptive(name)
        ? `auto from ${c.pathTunnelCount(name)}: ${settings.minTunnels}–${c.paths.find((p) => p.name === name)!.tunnels}`
        : String(c.pathTunnelCount(name));
    const paths = settings.paths ? ` on paths ${c.paths.map((p) => `${p.name} (${pathCount(p.name)})`).join(', ')}` : '';
    logger.info(`connecting ${count} to ${server}${also}${paths}${settings.tls ? ' over TLS' : ''}; SOCKS5 proxy on ${formatHostPort(side.socks.address())}`);
    for (const l of socketTuningLines(settings.congestion)) logger.log(l.level, l.message, { event: 'socket-tuning' });
    await startMetrics(settings.metrics, { client: clientMetricsSource(side) }, resources, logger);
    showProgress(side, server, settings.quiet, sink, resources);
    return side.plan;
  });
}

/** The metrics view of a client side. */
export function clientMetricsSource(side: ClientSide): ClientMetricsSource {
  return {
    client: side.client,
    sampler: side.sampler,
    proxies: () => [{ proxy: 'socks' as const, counters: side.socks.stats() }, ...(side.http ? [{ proxy: 'http' as const, counters: side.http.stats() }] : [])],
  };
}
