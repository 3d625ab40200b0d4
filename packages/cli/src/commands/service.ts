import type { HostPort } from '@gkd/transport';
import { StartError, formatHostPort, listenFailure } from '../listen.js';
import { errorText, type Logger } from '../logger.js';
import { Metrics, serveMetrics, type ClientMetricsSource, type ServerMetricsSource } from '../metrics.js';
import { Resources, drainAndClose, watchStopSignals, type DrainPlan } from '../shutdown.js';

/**
 * The life of a long-running command: `start` opens everything (registering what to close in
 * `resources`) and returns how to drain; then wait for SIGINT/SIGTERM, drain up to `drainMs`, close,
 * and return 0. A start that fails (StartError: a port in use…) is logged and returns 1. `exit(code)`,
 * given to `start`, ends the command without a signal: everything is closed at once and `code` returned
 * (a client whose key the server rejects before it ever had a session: 2).
 */
export async function runService(
  logger: Logger,
  drainMs: number,
  start: (resources: Resources, exit: (code: number) => void) => Promise<DrainPlan>,
): Promise<number> {
  const resources = new Resources(logger);
  const signals = watchStopSignals(logger);
  let exit!: (code: number) => void;
  const exited = new Promise<number>((resolve) => (exit = resolve));
  try {
    let plan: DrainPlan;
    try {
      plan = await start(resources, exit);
    } catch (err) {
      await resources.closeAll();
      logger.error(err instanceof StartError ? err.message : `cannot start: ${errorText(err)}`);
      if (!(err instanceof StartError)) logger.debug((err as Error).stack ?? String(err));
      return 1;
    }
    const ended = await Promise.race([signals.first.then((signal) => ({ signal })), exited.then((code) => ({ code }))]);
    if ('code' in ended) {
      await plan.close();
      await resources.closeAll();
      return ended.code;
    }
    const { signal } = ended;
    logger.info(`${signal}: stopping (new connections are refused)`);
    await drainAndClose(
      {
        stopAccepting: () => plan.stopAccepting(),
        active: () => plan.active(),
        ...(plan.unit ? { unit: plan.unit } : {}),
        close: async () => {
          await plan.close();
          await resources.closeAll();
        },
      },
      { timeoutMs: drainMs, logger, force: signals.force },
    );
    logger.info('stopped');
    return 0;
  } finally {
    signals.dispose();
  }
}

/** Serve /metrics when `at` is set; registers its close in `resources`. Throws StartError when it cannot listen. */
export async function startMetrics(
  at: HostPort | undefined,
  sources: { client?: ClientMetricsSource; server?: ServerMetricsSource },
  resources: Resources,
  logger: Logger,
): Promise<void> {
  if (!at) return;
  let endpoint: Awaited<ReturnType<typeof serveMetrics>>;
  try {
    endpoint = await serveMetrics(at, new Metrics(sources));
  } catch (err) {
    throw listenFailure('--metrics', at, err);
  }
  resources.add('metrics', () => endpoint.close());
  logger.info(`metrics on http://${formatHostPort(endpoint.address)}/metrics`);
}
