import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeProxyV2 } from '@gkd/protocol';
import { Client, type Connection } from '@gkd/transport';
import { EchoPump, ensureBuilt, gkd, killAll, until } from '@gkd/test-support';

/**
 * `gkd server --workers 2` (packages/cli/src/workers): one port, two worker processes. Every tunnel of a
 * session reaches the worker that holds it (by the preface's routing token), new sessions spread by
 * load, a killed worker loses only its own sessions and is restarted, metrics are summed, and SIGTERM
 * drains every worker.
 */

beforeAll(ensureBuilt, 180_000);
afterEach(killAll);

let echo: net.Server;
const echoSockets = new Set<net.Socket>();
beforeAll(async () => {
  echo = net.createServer((s) => {
    echoSockets.add(s);
    s.on('close', () => echoSockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
});
afterAll(() => {
  for (const s of echoSockets) s.destroy();
  echo.close();
});

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? NaN : Number(line.split(' ').pop());
}

/** 251 × 131 bytes of a counter pattern mod 251, twice: any offset's next 32 881 bytes are one subarray. */
/** Bytes per write of the echo pumps (a multiple of 251: the pattern stays aligned). */
const PERIOD = 251 * 131;
/** About 8 MiB/s each, with at most 1 MiB in flight: the test process runs six of them. */
const pump = (conn: Connection) => new EchoPump(conn, { chunk: PERIOD, perTick: 5, everyMs: 20 });

describe('gkd server --workers 2', () => {
  it('over TLS (the default): the bytes after the preface reach the worker, which completes TLS; the fingerprint pins', async () => {
    const key = randomBytes(32).toString('base64url');
    const server = gkd(['server', '--workers', '2', '--listen', '127.0.0.1:0', '--allow', '127.0.0.1'], { env: { GKD_KEY: key } });
    const port = Number((await server.waitFor('stdout', /listening on 127\.0\.0\.1:(\d+)/, { timeoutMs: 60_000 }))[1]);
    const fingerprint = (await server.waitFor('stderr', /fingerprint ([0-9A-F:]+)/))[1]!;
    const clients = Array.from({ length: 4 }, () => Client.create(`127.0.0.1:${port}`, { key, tunnels: 4, tls: { fingerprint } }));
    try {
      await until(() => clients.every((c) => c.tunnelsUp === 4), 30_000, 'every TLS client with 4 tunnels');
      for (const c of clients) {
        const p = pump(await c.open({ host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port }));
        await until(() => p.received >= 2 * PERIOD || p.error !== null, 10_000, 'an echo over TLS');
        p.stop();
        expect(p.error).toBeNull();
        expect(p.mismatch).toBe(false);
      }
      // Both workers served TLS sessions, and none was refused.
      expect(server.stderr).toMatch(/worker 1: new session/);
      expect(server.stderr).toMatch(/worker 2: new session/);
      expect(server.stderr).not.toMatch(/refused/);
    } finally {
      for (const c of clients) c.close();
    }
  }, 120_000);

  it('keeps each session on one worker, restarts a killed worker (only its sessions are lost), sums metrics, drains on SIGTERM', async () => {
    const key = randomBytes(32).toString('base64url');
    const server = gkd(
      ['server', '--workers', '2', '--plaintext', '--listen', '127.0.0.1:0', '--allow', '127.0.0.1', '--metrics', '127.0.0.1:0', '--drain-timeout', '2'],
      { env: { GKD_KEY: key } },
    );
    const port = Number((await server.waitFor('stdout', /listening on 127\.0\.0\.1:(\d+)/, { timeoutMs: 60_000 }))[1]);
    const metricsUrl = `${(await server.waitFor('stderr', /metrics on (http:\/\/\S+)/))[1]}`;
    const pids = new Map<number, number>();
    for (const m of server.stderr.matchAll(/worker (\d+) up \(pid (\d+)\)/g)) pids.set(Number(m[1]), Number(m[2]));
    expect([...pids.keys()].sort()).toEqual([1, 2]);

    const clients: Client[] = [];
    let cleanupPumps: EchoPump[] = [];
    try {
      for (let i = 0; i < 6; i++) clients.push(Client.create(`127.0.0.1:${port}`, { key, tunnels: 8, reconnectMax: 200 }));
      await until(() => clients.every((c) => c.tunnelsUp === 8), 30_000, 'every client with 8 tunnels');
      // Affinity: a tunnel that reached the other worker would fail its JOIN (UNKNOWN_SESSION) and make
      // its client found a new session, so exactly one session per client means all 8 tunnels met it.
      await until(() => (server.stderr.match(/new session/g) ?? []).length === 6, 10_000, 'six sessions logged');
      expect(await metric(metricsUrl, 'gkd_sessions')).toBe(6);
      expect(await metric(metricsUrl, 'gkd_tunnels_up')).toBe(48);
      expect(await metric(metricsUrl, 'gkd_workers_up')).toBe(2);
      const workerOf = (c: Client): number => {
        const id = c.stats().id.slice(0, 8);
        const m = server.stderr.match(new RegExp(`worker (\\d+): new session \\(session ${id}`));
        return m ? Number(m[1]) : 0;
      };
      const onWorker = (w: number) => clients.filter((c) => workerOf(c) === w);
      // Spread by load: three and three.
      expect([onWorker(1).length, onWorker(2).length]).toEqual([3, 3]);

      const pumps = await Promise.all(clients.map(async (c) => pump(await c.open({ host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port }))));
      cleanupPumps = pumps;
      await until(() => pumps.every((p) => p.received > 1 << 20), 30_000, 'every stream moving');

      const victims = onWorker(1);
      const survivors = onWorker(2);
      const before = survivors.map((c) => pumps[clients.indexOf(c)]!.received);
      const killedAt = Date.now();
      process.kill(pids.get(1)!, 'SIGKILL');
      await server.waitFor('stderr', /worker 1 \(pid \d+\) died/);

      // The victims' clients found new sessions and stream again within 5 s.
      const recovered = await Promise.all(
        victims.map(async (c) => {
          await until(() => pumps[clients.indexOf(c)]!.error !== null, 5_000, 'the lost stream to fail');
          for (;;) {
            try {
              const conn = await c.open({ host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port });
              const p = pump(conn);
              try {
                await until(() => p.received > 64 * 1024 || p.error !== null, 5_000, 'a new stream to move');
              } finally {
                p.stop();
                conn.destroy();
              }
              if (!p.error && !p.mismatch) return Date.now() - killedAt;
            } catch {
              /* the old session is still being replaced: try again */
            }
            if (Date.now() - killedAt > 5_000) return Infinity;
          }
        }),
      );
      console.log(`workers test: the killed worker's 3 clients streamed again ${recovered.map((ms) => `${ms} ms`).join(', ')} after the kill`);
      for (const ms of recovered) expect(ms).toBeLessThan(5_000);

      // The other worker's streams never noticed: still moving, byte-exact, no error.
      await until(() => survivors.every((c, i) => pumps[clients.indexOf(c)]!.received > before[i]! + (2 << 20)), 20_000, 'the survivors to keep moving');
      for (const c of survivors) {
        const p = pumps[clients.indexOf(c)]!;
        expect(p.error).toBeNull();
        expect(p.mismatch).toBe(false);
      }
      // The dead worker was started again.
      await server.waitFor('stderr', /worker 1 up \(pid \d+\)/, { count: 2, timeoutMs: 30_000 });
      expect(await metric(metricsUrl, 'gkd_worker_restarts_total')).toBe(1);
      expect(await metric(metricsUrl, 'gkd_workers_up')).toBe(2);
    } finally {
      for (const p of cleanupPumps) p.stop();
      for (const c of clients) c.close();
    }

    // SIGTERM: every worker drains and stops, then the master exits 0.
    const workerPids = [...server.stderr.matchAll(/worker \d+ up \(pid (\d+)\)/g)].map((m) => Number(m[1]));
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
    expect(server.stderr.match(/worker \d+: stopped/g)?.length).toBe(2);
    for (const pid of workerPids) expect(() => process.kill(pid, 0)).toThrow(); // none left behind
  }, 180_000);

  it("--proxy-protocol: the master reads the header and the workers see the clients' own addresses; no header: refused; limit flags reach the workers", async () => {
    const key = randomBytes(32).toString('base64url');
    const server = gkd(
      ['server', '--workers', '2', '--plaintext', '--proxy-protocol', '--max-tunnels-per-session', '3', '--listen', '127.0.0.1:0', '--allow', '127.0.0.1'],
      { env: { GKD_KEY: key } },
    );
    const port = Number((await server.waitFor('stdout', /listening on 127\.0\.0\.1:(\d+)/, { timeoutMs: 60_000 }))[1]);
    // Two clients behind a "balancer": every socket from 127.0.0.1, each with a header naming its own address.
    const behind = (claimed: string, tunnels: number) =>
      Client.create(`127.0.0.1:${port}`, {
        key,
        tunnels,
        reconnectMax: 200,
        connect: () =>
          new Promise((resolve, reject) => {
            const s = net.connect(port, '127.0.0.1', () => {
              s.off('error', reject);
              s.write(encodeProxyV2({ address: claimed, port: 40_000 }, { address: '127.0.0.1', port }));
              resolve(s);
            });
            s.once('error', reject);
          }),
      });
    const clients = [behind('198.51.100.1', 4), behind('198.51.100.2', 3)];
    const direct = Client.create(`127.0.0.1:${port}`, { key, tunnels: 1, reconnectMax: 200 });
    try {
      await until(() => clients.every((c) => c.tunnelsUp === 3), 30_000, 'both clients with 3 tunnels');
      await server.waitFor('stderr', /worker \d: new session \(session \w+, from 198\.51\.100\.1\)/);
      await server.waitFor('stderr', /worker \d: new session \(session \w+, from 198\.51\.100\.2\)/);
      // --max-tunnels-per-session 3 reached the worker: the 4th tunnel is refused, and the line names the client.
      await server.waitFor('stderr', /worker \d: refused a tunnel from 198\.51\.100\.1: .*too many tunnels in this session/);
      expect(clients[0]!.tunnelsUp).toBe(3);
      // A client that bypasses the balancer sends no header: the master refuses it (REJECT on plain TCP).
      await server.waitFor('stderr', /warn {2}refused a tunnel from 127\.0\.0\.1: .*expected a PROXY protocol header .*bypassed the balancer/);
      expect(direct.tunnelsUp).toBe(0);
      expect(server.stderr).not.toMatch(/new session \(session \w+, from 127\.0\.0\.1\)/);
    } finally {
      for (const c of [...clients, direct]) c.close();
    }
  }, 120_000);
});
