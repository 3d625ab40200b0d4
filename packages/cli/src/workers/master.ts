import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { AggregatorRegistry, Counter, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { BadPrefaceError, FrameType, PrefaceDecoder, ProxyHeaderDecoder, ProxyHeaderError, Reason, encode, type GkdError } from '@gkd/protocol';
import type { HostPort } from '@gkd/transport';
import { errorText, type Logger } from '../logger.js';
import { serveMetricsText, type MetricsServer } from '../metrics.js';
import { WORKER_ENV, type FromWorker, type ToWorker } from './messages.js';
import { TokenRouter } from './router.js';

/** Settings of the `gkd server --workers` master. Times in ms. */
export interface MasterOptions {
  listen: HostPort;
  /** Worker processes to keep running. */
  workers: number;
  /** The tunnels are TLS: a tunnel refused before TLS gets a close, not a REJECT frame. */
  tls: boolean;
  /** Every connection starts with a PROXY protocol header (a balancer's): read it, and tell the worker the address it names. Default false. */
  proxyProtocol?: boolean;
  /** How long a new connection may take to send its preface, in ms (the server's handshake timeout). Default 10 000. */
  prefaceTimeout?: number;
  /** Connections waiting for their preface, at most; a new one evicts the oldest. Default 1 024. */
  maxPending?: number;
  /** The worker's command line: the script and its arguments (default: this process's). */
  argv?: string[];
  /** First restart delay after a worker died, in ms; doubles per death in a row, up to 5 s. Default 100. */
  restartMin?: number;
}

interface WorkerSlot {
  id: number;
  child: ChildProcess | null;
  ready: boolean;
  /** Deaths in a row (reset once a worker stayed up 10 s). */
  deaths: number;
  startedAt: number;
}

/**
 * The master of `gkd server --workers N`: it owns the one listening port, reads each new connection's
 * routing preface (PROTOCOL.md §4.1), and hands the socket to the worker that holds the token's session
 * (a new token: the least-loaded worker). Workers are `gkd server` processes with the same flags that
 * serve only the sockets they are sent. A worker that dies loses only its own sessions (their clients
 * found new ones on the others) and is started again. `/metrics` sums the workers' series.
 * Events: 'worker-up' (id, pid), 'worker-exit' (id, code, signal), 'refused' (remoteAddress, error).
 */
export class WorkerMaster extends EventEmitter {
  private readonly opts: Required<MasterOptions>;
  private readonly router = new TokenRouter();
  private readonly slots: WorkerSlot[] = [];
  private listener: net.Server | null = null;
  /** Connections still sending their preface, oldest first: how to drop each. */
  private readonly pending = new Map<net.Socket, () => void>();
  private stopping = false;
  private nextRequest = 1;
  private readonly metricWaiters = new Map<number, (m: MetricObjectWithValues<MetricValue<string>>[]) => void>();
  /** Worker restarts so far. */
  restarts = 0;
  /** Tunnels handed to workers so far. */
  handedOff = 0;

  constructor(
    options: MasterOptions,
    private readonly logger: Logger,
  ) {
    super();
    this.opts = {
      prefaceTimeout: 10_000,
      maxPending: 1024,
      argv: process.argv.slice(1),
      restartMin: 100,
      proxyProtocol: false,
      ...options,
    };
  }

  /** Fork the workers, wait until each is ready, then listen. */
  async start(): Promise<void> {
    for (let id = 1; id <= this.opts.workers; id++) this.slots.push({ id, child: null, ready: false, deaths: 0, startedAt: 0 });
    await Promise.all(this.slots.map((s) => this.spawn(s)));
    const l = net.createServer({ pauseOnConnect: true }, (s) => this.accept(s));
    this.listener = l;
    await new Promise<void>((resolve, reject) => {
      l.once('error', reject);
      l.listen(this.opts.listen.port, this.opts.listen.host, () => {
        l.off('error', reject);
        l.on('error', (err) => this.logger.error(`listener: ${errorText(err)}`));
        resolve();
      });
    });
  }

  /** The listening address. */
  address(): net.AddressInfo {
    return this.listener!.address() as net.AddressInfo;
  }

  /** Workers running and ready now. */
  get liveWorkers(): number {
    return this.slots.filter((s) => s.child && s.ready).length;
  }

  /** Worker processes still alive (ready or not). */
  get runningWorkers(): number {
    return this.slots.filter((s) => s.child).length;
  }

  /** Process ids of the workers, by worker id (tests kill one). */
  pids(): Map<number, number> {
    return new Map(this.slots.filter((s) => s.child?.pid).map((s) => [s.id, s.child!.pid!]));
  }

  private spawn(slot: WorkerSlot): Promise<void> {
    const [script, ...args] = this.opts.argv;
    const child = fork(script!, args, {
      env: { ...process.env, [WORKER_ENV]: String(slot.id) },
      execArgv: process.execArgv,
      // Its own process group: a Ctrl-C on the terminal reaches the master only, which stops the
      // workers once (a second signal would cut their drain short).
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    slot.child = child;
    slot.ready = false;
    slot.startedAt = Date.now();
    return new Promise<void>((resolve) => {
      child.on('message', (m: FromWorker) => {
        switch (m.type) {
          case 'ready':
            slot.ready = true;
            this.router.addWorker(slot.id);
            this.emit('worker-up', slot.id, child.pid);
            resolve();
            break;
          case 'load':
            this.router.setLoad(slot.id, m.sessions);
            break;
          case 'session-end':
            this.router.forget(m.token);
            break;
          case 'metrics':
            this.metricWaiters.get(m.id)?.(m.metrics);
            break;
        }
      });
      child.on('error', (err) => this.logger.error(`worker ${slot.id}: ${errorText(err)}`));
      child.once('exit', (code, signal) => {
        slot.child = null;
        slot.ready = false;
        this.router.removeWorker(slot.id);
        resolve(); // a worker that dies before it is ready must not hang start()
        this.emit('worker-exit', slot.id, code, signal);
        if (this.stopping) return;
        if (Date.now() - slot.startedAt > 10_000) slot.deaths = 0;
        slot.deaths++;
        const delay = Math.min(5000, this.opts.restartMin * 2 ** Math.min(slot.deaths - 1, 10));
        this.logger.error(
          `worker ${slot.id} (pid ${child.pid}) died (${signal ?? `exit code ${code}`}): its sessions are lost, their clients start new ones; restarting it in ${delay} ms`,
          {
            event: 'worker-exit',
            worker: slot.id,
          },
        );
        setTimeout(() => {
          if (this.stopping) return;
          this.restarts++;
          void this.spawn(slot);
        }, delay).unref();
      });
    });
  }

  /**
   * A new connection: read its PROXY header (with `proxyProtocol`) and its 20-byte preface, then hand
   * the socket to the worker its token names, with the peer's address (the header's, or the socket's).
   */
  private accept(socket: net.Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    if (this.pending.size >= this.opts.maxPending) this.pending.values().next().value!();
    socket.on('error', () => undefined);
    let remoteAddress = socket.remoteAddress;
    let proxy: ProxyHeaderDecoder | null = this.opts.proxyProtocol ? new ProxyHeaderDecoder() : null;
    const decoder = new PrefaceDecoder();
    const drop = () => {
      clearTimeout(timer);
      this.pending.delete(socket);
      socket.off('data', onData);
    };
    const refuse = (err: GkdError) => {
      drop();
      this.emit('refused', remoteAddress, err);
      // Like a single-process server: a REJECT a version-1 client reads on plain TCP; on TLS only a close.
      if (this.opts.tls) socket.destroy();
      else {
        socket.end(encode({ type: FrameType.REJECT, reason: err.reason ?? Reason.BAD_VERSION, message: err.message }));
        setTimeout(() => socket.destroy(), 1000).unref();
      }
    };
    const timer = setTimeout(
      () =>
        refuse(
          proxy
            ? new ProxyHeaderError(
                `no PROXY protocol header within ${this.opts.prefaceTimeout} ms (this server is set to sit behind a balancer that sends one)`,
              )
            : new BadPrefaceError(`no routing preface within ${this.opts.prefaceTimeout} ms (a version-1 client? it must be upgraded to protocol version 2)`),
        ),
      this.opts.prefaceTimeout,
    );
    this.pending.set(socket, () => {
      drop();
      socket.destroy();
    });
    const onData = (data: Buffer) => {
      let chunk = data;
      let r: ReturnType<typeof decoder.push>;
      try {
        if (proxy) {
          const h = proxy.push(chunk);
          if (!h) return;
          proxy = null;
          remoteAddress = h.header.source?.address ?? socket.remoteAddress;
          chunk = h.rest;
        }
        r = decoder.push(chunk);
      } catch (err) {
        refuse(err as GkdError);
        return;
      }
      if (!r) return;
      drop();
      socket.pause();
      const extra: Buffer[] = [r.rest];
      for (let b = socket.read() as Buffer | null; b !== null; b = socket.read() as Buffer | null) extra.push(b);
      // Stop the handle reading now: once it is sent, whatever the master still read would be dropped
      // (Node sets its onread to a no-op), and those would be bytes of the client's TLS or AUTH.
      (socket as unknown as { _handle?: { readStop?: () => void } })._handle?.readStop?.();
      this.handOff(socket, r.token.toString('hex'), Buffer.concat(extra), remoteAddress);
    };
    // Closed before its preface: free the slot now; one that sent nothing (past a PROXY header: a
    // balancer's health check) is not worth a refusal in the logs.
    socket.once('close', () => {
      if (!this.pending.has(socket)) return;
      drop();
      if (proxy && proxy.bufferedBytes > 0) this.emit('refused', remoteAddress, new ProxyHeaderError('closed during the PROXY protocol header'));
      else if (decoder.bufferedBytes > 0) this.emit('refused', remoteAddress, new BadPrefaceError('closed during the routing preface'));
    });
    socket.on('data', onData);
    socket.resume(); // pauseOnConnect left it paused (flowing false): a 'data' listener alone does not start it
  }

  private handOff(socket: net.Socket, token: string, head: Buffer, remoteAddress: string | undefined): void {
    const id = this.router.route(token);
    const child = id === undefined ? null : this.slots[id - 1]!.child;
    if (!child?.connected) {
      // Every worker is down (restarting): the client retries with its usual backoff.
      socket.destroy();
      return;
    }
    const msg: ToWorker = { type: 'tunnel', token, head: head.toString('base64'), remoteAddress };
    child.send(msg, socket, { keepOpen: false }, (err) => {
      if (err) socket.destroy();
      else this.handedOff++;
    });
  }

  /** Every live worker's metrics, summed (counters and gauges) by prom-client's cluster aggregator, plus the master's own. */
  async renderMetrics(): Promise<{ text: string; contentType: string }> {
    const live = this.slots.filter((s) => s.child?.connected && s.ready);
    const answers = await Promise.all(live.map((s) => this.askMetrics(s.child!)));
    const aggregated = AggregatorRegistry.aggregate(answers.filter((a): a is MetricObjectWithValues<MetricValue<string>>[] => a !== null));
    const own = new Registry();
    new Gauge({ name: 'gkd_workers_up', help: 'Worker processes up and serving (gkd server --workers)', registers: [own] }).set(this.liveWorkers);
    new Counter({ name: 'gkd_worker_restarts_total', help: 'Worker processes started again after they died', registers: [own] }).inc(this.restarts);
    const merged = Registry.merge([aggregated as Registry, own]);
    return { text: await merged.metrics(), contentType: merged.contentType };
  }

  private askMetrics(child: ChildProcess): Promise<MetricObjectWithValues<MetricValue<string>>[] | null> {
    const id = this.nextRequest++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done(null), 2000);
      const done = (m: MetricObjectWithValues<MetricValue<string>>[] | null) => {
        clearTimeout(timer);
        this.metricWaiters.delete(id);
        resolve(m);
      };
      this.metricWaiters.set(id, done);
      const msg: ToWorker = { type: 'metrics', id };
      child.send(msg, (err) => {
        if (err) done(null);
      });
    });
  }

  /** Serve `GET /metrics` (the workers' sum) on `at`. */
  serveMetrics(at: HostPort): Promise<MetricsServer> {
    return serveMetricsText(at, () => this.renderMetrics());
  }

  /** Graceful stop: close the port, refuse connections still sending a preface, SIGTERM every worker (each drains its streams). */
  stopAccepting(): void {
    this.stopping = true;
    this.listener?.close();
    for (const drop of [...this.pending.values()]) drop();
    for (const s of this.slots) s.child?.kill('SIGTERM');
  }

  /** Kill what is left and wait for every worker to exit. */
  async close(): Promise<void> {
    this.stopping = true;
    this.listener?.close();
    for (const drop of [...this.pending.values()]) drop();
    const exits = this.slots.filter((s) => s.child).map((s) => new Promise<void>((r) => s.child!.once('exit', () => r())));
    for (const s of this.slots) s.child?.kill('SIGKILL');
    await Promise.all(exits);
  }
}
