import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import type { GkdServer } from '@gkd/server';
import type { ProxyCounters } from '@gkd/socks-client';
import type { Client, HostPort } from '@gkd/transport';
import { readPaths } from './path-view.js';
import type { TransportSampler, TransportSnapshot } from './sampler.js';

/** The client side of a process, for metrics. */
export interface ClientMetricsSource {
  client: Client;
  sampler: TransportSampler;
  /** The local proxies' counters (SOCKS, and HTTP when enabled). */
  proxies: () => { proxy: 'socks' | 'http'; counters: ProxyCounters }[];
}

/** The server side of a process, for metrics. */
export interface ServerMetricsSource {
  server: GkdServer;
  sampler: TransportSampler;
  /** Tunnel handshakes refused so far. */
  refused: () => number;
}

type Side = 'client' | 'server';

/** This process's worker id under `gkd server --workers N` (its environment says), or "main". */
const WORKER = process.env.GKDWORKER_ID || 'main';

/**
 * Prometheus metrics of one gkd process, in a private registry. Values are read from `stats()` and
 * the counters when scraped (and once a second, so counters of tunnels that die between scrapes are
 * kept): nothing runs per frame. Series carry `side="client"|"server"` (`gkd up` has both).
 */
export class Metrics {
  /** The registry `/metrics` renders. */
  readonly registry = new Registry();
  private timer: NodeJS.Timeout | undefined;

  private readonly tunnelBytes = this.counter(
    'gkd_tunnel_bytes_total',
    'Bytes on the wire per tunnel slot (frame headers included); direction "in" is received, "out" sent',
    ['side', 'tunnel', 'direction'],
  );
  private readonly tunnelFrames = this.counter('gkd_tunnel_frames_total', 'Frames per tunnel slot; direction "in" is received, "out" sent', [
    'side',
    'tunnel',
    'direction',
  ]);
  private readonly rtt = this.gauge('gkd_tunnel_rtt_seconds', 'Smoothed round-trip time per open tunnel slot (on a server: the largest over its sessions)', [
    'side',
    'tunnel',
  ]);
  private readonly tunnelsUp = this.gauge('gkd_tunnels_up', 'Tunnels up now', ['side']);
  private readonly tunnelsConfigured = this.gauge(
    'gkd_tunnels_configured',
    'Tunnels the client keeps up now: --tunnels N, or with --tunnels auto the current target',
    [],
  );
  private readonly tunnelsCeiling = this.gauge(
    'gkd_tunnels_ceiling',
    'Most tunnels the client may use now: --max-tunnels (or --tunnels N), lowered by the server cap',
    [],
  );
  private readonly tunnelsServerCap = this.gauge('gkd_tunnels_server_cap', "The server's per-session tunnel cap from WELCOME (absent until known)", []);
  private readonly tunnelChanges = this.counter('gkd_tunnel_target_changes_total', 'Changes of the adaptive tunnel target (--tunnels auto), by direction', [
    'direction',
  ]);
  private readonly streamBytes = this.counter('gkd_stream_bytes_total', 'Stream payload bytes; direction "in" is received from the peer, "out" sent to it', [
    'side',
    'direction',
  ]);
  private readonly streamsOpen = this.gauge('gkd_streams_open', 'Streams (proxied connections) open now', ['side']);
  private readonly resent = this.counter(
    'gkd_resent_frames_total',
    'DATA frames sent again on another tunnel (after a tunnel was lost, or as head-of-line copies)',
    ['side'],
  );
  private readonly resentBytes = this.counter(
    'gkd_resent_bytes_total',
    'DATA payload bytes sent again on another tunnel (after a tunnel was lost, or as head-of-line copies)',
    ['side'],
  );
  private readonly holResent = this.counter(
    'gkd_hol_resent_frames_total',
    'DATA frames copied onto a faster tunnel because the receiver waited for them (head-of-line re-sends)',
    ['side'],
  );
  private readonly holLate = this.counter(
    'gkd_hol_late_frames_total',
    'Head-of-line copies the peer acknowledged less than 0.9 RTT after they were sent: the first transmission got there first (a lower bound on wasted copies)',
    ['side'],
  );
  private readonly duplicateBytes = this.counter(
    'gkd_duplicate_bytes_total',
    'DATA payload bytes received that carried nothing new (copies the peer sent again)',
    ['side'],
  );
  private readonly tunnelMode = this.gauge(
    'gkd_tunnels_by_mode',
    'Open tunnels by path-estimate mode: "kernel" (TCP_INFO, TCP_NOTSENT_LOWAT) or "user" (PING timing only)',
    ['side', 'mode'],
  );
  private readonly reorder = this.gauge('gkd_reorder_depth', 'Out-of-order segments held for reassembly, over all streams', ['side']);
  private readonly opens = this.counter('gkd_opens_total', 'Connections opened through the tunnels', ['side']);
  private readonly openFailures = this.counter('gkd_open_failures_total', 'Failed OPENs by reason (client: as the local proxy classified them)', [
    'side',
    'reason',
  ]);
  private readonly proxyConnections = this.gauge('gkd_proxy_connections', 'Local proxy client connections open now', ['proxy']);
  private readonly peers = this.gauge('gkd_peers_connected', 'Peers (users, or the single key) with a live session', []);
  private readonly sessions = this.gauge('gkd_sessions', 'Sessions on the server, including those in their no-tunnel grace period', []);
  private readonly datagrams = this.counter(
    'gkd_datagrams_total',
    'UDP datagrams carried by the tunnels; direction "in" is received from the peer, "out" sent to it',
    ['side', 'direction'],
  );
  private readonly datagramsDropped = this.counter(
    'gkd_datagrams_dropped_total',
    'UDP datagrams dropped, by where: "tunnel" (every tunnel backed up or none up, too large, unknown association), "proxy" (client: bad header, FRAG, stranger, oversized, local send error), "policy" (server: destination denied or not resolved), "relay" (server: too many waiting for DNS, a reply from a stranger, a send error)',
    ['side', 'where'],
  );
  private readonly associations = this.gauge('gkd_udp_associations', 'SOCKS5 UDP associations open now', ['side']);
  private readonly pathTunnelsUp = this.gauge('gkd_path_tunnels_up', 'Client tunnels up now per network path (--via; "default" without one)', ['path']);
  private readonly pathTunnels = this.gauge(
    'gkd_path_tunnels_configured',
    'Client tunnels a network path keeps up now: its --via count, or with --tunnels auto its current target',
    ['path'],
  );
  private readonly pathRtt = this.gauge(
    'gkd_path_rtt_seconds',
    "Median smoothed round-trip time of a network path's open tunnels (absent while none is open)",
    ['path'],
  );
  private readonly pathBytes = this.counter(
    'gkd_path_bytes_total',
    'Bytes on the wire per network path (frame headers included); direction "in" is received, "out" sent',
    ['path', 'direction'],
  );
  private readonly refused = this.counter('gkd_refused_total', 'Tunnel handshakes the server refused (bad key, limits, timeouts)', []);
  private readonly buffered = this.gauge(
    'gkd_buffered_bytes',
    'Bytes the transport holds or has reserved, by kind: "recv_reserved" (receive windows granted, from the budgets), "send_reserved" (unacknowledged sent bytes, from the budgets), "received" (reorder + unread), "pending" (written by the destination side, not framed yet), "tunnel_queued" (in the tunnel sockets\' user-space send buffers; part of send_reserved). Labelled by worker ("main" without workers)',
    ['side', 'kind', 'worker'],
  );
  private readonly poolLimit = this.gauge(
    'gkd_buffer_pool_limit_bytes',
    'Server-wide buffer pool size per direction (limits.maxBufferedBytes / 2), by worker',
    ['direction', 'worker'],
  );
  private readonly memory = this.gauge(
    'gkd_process_memory_bytes',
    'process.memoryUsage() of the process, by kind ("rss", "heap_used", "external", "array_buffers") and worker ("main" without workers)',
    ['kind', 'worker'],
  );

  constructor(private readonly sources: { client?: ClientMetricsSource; server?: ServerMetricsSource }) {}

  /** Read the transports every `intervalMs` between scrapes, so short-lived tunnels are counted. */
  startSampling(intervalMs = 1000): void {
    this.timer ??= setInterval(() => {
      this.sources.client?.sampler.sample();
      this.sources.server?.sampler.sample();
    }, intervalMs);
    this.timer.unref();
  }

  /** Stop the background reads. */
  stopSampling(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** The Prometheus text exposition, read now. */
  async render(): Promise<string> {
    this.registry.resetMetrics();
    const { client, server } = this.sources;
    if (client) {
      const snap = client.sampler.sample();
      this.transport('client', snap);
      this.bufferGauges('client', snap);
      for (const p of readPaths(client.client, snap)) {
        this.pathTunnelsUp.set({ path: p.name }, p.tunnelsUp);
        this.pathTunnels.set({ path: p.name }, p.tunnels);
        if (p.rtt !== null) this.pathRtt.set({ path: p.name }, p.rtt / 1000);
        this.pathBytes.inc({ path: p.name, direction: 'in' }, p.bytesIn);
        this.pathBytes.inc({ path: p.name, direction: 'out' }, p.bytesOut);
      }
      this.tunnelsUp.set({ side: 'client' }, client.client.tunnelsUp);
      this.tunnelsConfigured.set(client.client.tunnelCount);
      this.tunnelsCeiling.set(client.client.tunnelCeiling);
      const cap = client.client.serverTunnelCap;
      if (cap !== null) this.tunnelsServerCap.set(cap);
      const ch = client.client.tunnelChanges;
      if (ch.up) this.tunnelChanges.inc({ direction: 'up' }, ch.up);
      if (ch.down) this.tunnelChanges.inc({ direction: 'down' }, ch.down);
      let opened = 0;
      const failed: Record<string, number> = {};
      for (const { proxy, counters } of client.proxies()) {
        opened += counters.opened;
        this.proxyConnections.set({ proxy }, counters.active);
        for (const [kind, n] of Object.entries(counters.failed)) failed[kind] = (failed[kind] ?? 0) + n;
      }
      this.opens.inc({ side: 'client' }, opened);
      let udpActive = 0;
      let proxyDropped = 0;
      for (const { counters } of client.proxies()) {
        udpActive += counters.udpActive;
        proxyDropped += counters.datagramsDropped + counters.datagramsRejected;
      }
      this.associations.set({ side: 'client' }, udpActive);
      this.datagramsDropped.inc({ side: 'client', where: 'proxy' }, proxyDropped);
      for (const [reason, n] of Object.entries(failed)) this.openFailures.inc({ side: 'client', reason }, n);
    }
    if (server) {
      const snap = server.sampler.sample();
      this.transport('server', snap);
      this.tunnelsUp.set(
        { side: 'server' },
        snap.sessions.reduce((n, s) => n + s.tunnelsUp, 0),
      );
      const c = server.server.counters;
      this.opens.inc({ side: 'server' }, c.opens);
      this.associations.set({ side: 'server' }, c.associations);
      this.datagramsDropped.inc({ side: 'server', where: 'policy' }, c.datagramsDenied);
      this.datagramsDropped.inc({ side: 'server', where: 'relay' }, c.datagramsDropped);
      for (const [reason, n] of Object.entries(c.openFailures)) this.openFailures.inc({ side: 'server', reason }, n);
      this.peers.set(new Set(server.server.transport.peers().map((p) => p.user)).size);
      this.sessions.set(snap.sessions.length);
      this.refused.inc(server.refused());
      const pools = server.server.transport.poolStats();
      this.bufferGauges('server', snap, pools);
      if (pools) {
        this.poolLimit.set({ direction: 'recv', worker: WORKER }, pools.recv.limit);
        this.poolLimit.set({ direction: 'send', worker: WORKER }, pools.send.limit);
      }
    }
    const m = process.memoryUsage();
    this.memory.set({ kind: 'rss', worker: WORKER }, m.rss);
    this.memory.set({ kind: 'heap_used', worker: WORKER }, m.heapUsed);
    this.memory.set({ kind: 'external', worker: WORKER }, m.external);
    this.memory.set({ kind: 'array_buffers', worker: WORKER }, m.arrayBuffers);
    return this.registry.metrics();
  }

  private transport(side: Side, snap: TransportSnapshot): void {
    for (const [index, t] of snap.tunnels) {
      const tunnel = String(index);
      this.tunnelBytes.inc({ side, tunnel, direction: 'in' }, t.bytesIn);
      this.tunnelBytes.inc({ side, tunnel, direction: 'out' }, t.bytesOut);
      this.tunnelFrames.inc({ side, tunnel, direction: 'in' }, t.framesIn);
      this.tunnelFrames.inc({ side, tunnel, direction: 'out' }, t.framesOut);
    }
    const rtt = new Map<number, number>();
    let streams = 0;
    let reorder = 0;
    for (const s of snap.sessions) {
      streams += s.streamsOpen;
      for (const st of s.streams) reorder += st.reorderDepth;
      for (const t of s.tunnels) {
        if (t.state === 'open' && t.rtt !== null) rtt.set(t.index, Math.max(rtt.get(t.index) ?? 0, t.rtt));
      }
    }
    for (const [index, ms] of rtt) this.rtt.set({ side, tunnel: String(index) }, ms / 1000);
    this.streamBytes.inc({ side, direction: 'in' }, snap.bytesIn);
    this.streamBytes.inc({ side, direction: 'out' }, snap.bytesOut);
    this.streamsOpen.set({ side }, streams);
    this.resent.inc({ side }, snap.resentFrames);
    this.resentBytes.inc({ side }, snap.resentBytes);
    this.holResent.inc({ side }, snap.holResentFrames);
    this.holLate.inc({ side }, snap.holLateFrames);
    this.duplicateBytes.inc({ side }, snap.duplicateBytes);
    this.datagrams.inc({ side, direction: 'in' }, snap.datagramsReceived);
    this.datagrams.inc({ side, direction: 'out' }, snap.datagramsSent);
    this.datagramsDropped.inc({ side, where: 'tunnel' }, snap.datagramsDropped);
    const modes = { kernel: 0, user: 0 };
    for (const s of snap.sessions) for (const t of s.tunnels) if (t.state === 'open') modes[t.mode]++;
    for (const [mode, n] of Object.entries(modes)) this.tunnelMode.set({ side, mode }, n);
    this.reorder.set({ side }, reorder);
  }

  /**
   * Where the transport's bytes are, summed over every session and stream of the snapshot. The
   * reserved figures come from the server-wide pools when there are some: a peer's sessions share
   * one budget, so summing the sessions would count it once per session.
   */
  private bufferGauges(side: Side, snap: TransportSnapshot, pools?: { recv: { used: number }; send: { used: number } }): void {
    const sum = { recv_reserved: 0, send_reserved: 0, received: 0, pending: 0, tunnel_queued: 0 };
    for (const s of snap.sessions) {
      sum.recv_reserved += s.recvBudgetUsed;
      sum.send_reserved += s.sendBudgetUsed;
      for (const st of s.streams) {
        sum.received += st.buffered;
        sum.pending += st.pending;
      }
      for (const t of s.tunnels) sum.tunnel_queued += t.queued;
    }
    if (pools) {
      sum.recv_reserved = pools.recv.used;
      sum.send_reserved = pools.send.used;
    }
    for (const [kind, v] of Object.entries(sum)) this.buffered.set({ side, kind, worker: WORKER }, v);
  }

  private counter<L extends string>(name: string, help: string, labelNames: L[]): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  private gauge<L extends string>(name: string, help: string, labelNames: L[]): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }
}

/** A running /metrics endpoint. */
export interface MetricsServer {
  address: AddressInfo;
  close(): Promise<void>;
}

/** Serve `GET /metrics` on `at`. Rejects with the listen error (EADDRINUSE, …). */
export async function serveMetrics(at: HostPort, metrics: Metrics): Promise<MetricsServer> {
  const served = await serveMetricsText(at, async () => ({ text: await metrics.render(), contentType: metrics.registry.contentType }));
  metrics.startSampling();
  return {
    address: served.address,
    close: () => {
      metrics.stopSampling();
      return served.close();
    },
  };
}

/** Serve `GET /metrics` on `at` from `render` (one process's registry, or the workers' sum). Rejects with the listen error. */
export async function serveMetricsText(at: HostPort, render: () => Promise<{ text: string; contentType: string }>): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('gkd: metrics are at /metrics\n');
      return;
    }
    render().then(
      ({ text, contentType }) => res.writeHead(200, { 'Content-Type': contentType }).end(req.method === 'HEAD' ? undefined : text),
      (err: unknown) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`gkd: ${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
