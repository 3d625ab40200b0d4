import { execFileSync, fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EchoPump, until, testTmpDir } from '@gkd/test-support';
import { Client, type Connection } from '@gkd/transport';

/**
 * deploy/haproxy.cfg, for real: HAProxy (started here, with the config's own rules and only the
 * addresses changed) in front of three gkd server processes (test/support/server-child.mjs). 100 client sessions of 8 tunnels, each
 * tunnel from its own source address, must each land whole on one server (stick on the preface's
 * routing token), and each server must see the client's own source address (send-proxy-v2, the
 * servers' proxyProtocol), not HAProxy's; one server killed mid-run: its clients stream again within
 * 5 s, the others' streams never notice and stay byte-exact.
 */

function findHaproxy(): string | null {
  for (const p of ['haproxy', '/usr/sbin/haproxy']) {
    try {
      execFileSync(p, ['-v'], { stdio: 'ignore' });
      return p;
    } catch {
      /* not there */
    }
  }
  return null;
}
const HAPROXY = findHaproxy();
if (!HAPROXY) console.log('skipping the HAProxy test: haproxy is not installed (Debian: apt-get install haproxy; .ci/run installs it as root)');

const SESSIONS = Number(process.env.GKD_HAPROXY_SESSIONS ?? 100);
const TUNNELS = 8;

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

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

interface ServerStats {
  sessions: { id: string; tunnelsUp: number; remoteAddress: string | undefined }[];
  refused: number;
}

function serverStats(proc: ChildProcess): Promise<ServerStats> {
  proc.send('stats');
  return once(proc, 'message').then(([m]) => m as ServerStats);
}

/** Bytes per write of the echo pumps (a multiple of 251), one write per 100 ms: 160 KiB/s each. */
const PERIOD = 251 * 64;
const pump = (conn: Connection) => new EchoPump(conn, { chunk: PERIOD, everyMs: 100 });

describe.skipIf(HAPROXY === null)('HAProxy (deploy/haproxy.cfg) in front of three gkd servers', () => {
  it(`keeps each of ${SESSIONS} sessions × ${TUNNELS} tunnels (from ${TUNNELS} source addresses each) on one server; a killed server's clients stream again within 5 s, the others byte-exact`, async () => {
    const key = randomBytes(32).toString('base64url');
    const servers: { proc: ChildProcess; port: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const proc = fork(fileURLToPath(new URL('./support/server-child.mjs', import.meta.url)), [], {
        env: { ...process.env, GKD_TEST_KEY: key },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.push(proc);
      const [m] = (await once(proc, 'message')) as [{ port: number }];
      servers.push({ proc, port: m.port });
    }
    // The shipped configuration, with this machine's addresses: what is tested is what operators copy.
    const front = await getPort({ host: '127.0.0.1' });
    let cfg = readFileSync(new URL('../deploy/haproxy.cfg', import.meta.url), 'utf8');
    cfg = cfg.replace(/^(\s*)bind :9990$/m, `$1bind 127.0.0.1:${front}`);
    cfg = cfg.replace(/^\s*server gkd\d .*\n/gm, '');
    // After the default-server line, as in the shipped file: it applies only to servers below it
    // (health checks, send-proxy-v2).
    cfg = cfg.replace(/^(\s*default-server .*)$/m, `$1\n${servers.map((s, i) => `    server gkd${i + 1} 127.0.0.1:${s.port}`).join('\n')}`);
    cfg = cfg.replace(/^\s*log stdout.*\n/m, '');
    expect(cfg).toContain('stick on req.payload(4,16)');
    expect(cfg).toMatch(/^\s*default-server .*\bsend-proxy-v2\b/m);
    expect(cfg.indexOf('default-server')).toBeLessThan(cfg.indexOf('server gkd1 '));
    const dir = testTmpDir('gkd-haproxy');
    writeFileSync(join(dir, 'haproxy.cfg'), cfg);
    const haproxy = spawn(HAPROXY!, ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let haproxyErr = '';
    haproxy.stderr!.on('data', (d: Buffer) => (haproxyErr += d.toString()));
    const clients: Client[] = [];
    const pumps: EchoPump[] = [];
    try {
      await until(() => haproxy.exitCode === null && haproxyErr.length >= 0, 1000, 'haproxy');
      for (let tries = 0; ; tries++) {
        const ok = await new Promise<boolean>((resolve) => {
          const s = net.connect(front, '127.0.0.1', () => {
            s.destroy();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        });
        if (ok) break;
        if (tries > 200 || haproxy.exitCode !== null) throw new Error(`haproxy did not start: ${haproxyErr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      // Every tunnel from its own source address (Linux routes all of 127/8 to loopback), as with
      // multipath or NAT rebinding: a balancer that stuck on the source would split the session.
      // In waves of 16 clients (128 tunnels): the servers see each client's own address (PROXY
      // header), so the per-address handshake cap no longer lumps them together, but 800 at once
      // would pass a server's 256 handshakes in progress (LIMITS.md) and be partly evicted and retried.
      for (let c = 0; c < SESSIONS; c++) {
        if (c % 16 === 0 && c > 0)
          await until(() => clients.every((cl) => cl.tunnelsUp === TUNNELS), 60_000, `wave ${c / 16}`).catch((err: Error) => {
            throw new Error(`${err.message}: tunnels up ${clients.map((cl) => cl.tunnelsUp).join(',')}`);
          });
        clients.push(
          Client.create(`127.0.0.1:${front}`, {
            key,
            tunnels: TUNNELS,
            reconnectMax: 300,
            connect: (index) =>
              new Promise((resolve, reject) => {
                const s = net.connect({ host: '127.0.0.1', port: front, localAddress: `127.${1 + (c >> 8)}.${c & 255}.${index + 1}` });
                s.once('connect', () => {
                  s.off('error', reject);
                  resolve(s);
                });
                s.once('error', reject);
              }),
          }),
        );
      }
      await until(() => clients.every((c) => c.tunnelsUp === TUNNELS), 120_000, `every client with ${TUNNELS} tunnels`).catch((err: Error) => {
        throw new Error(`${err.message}: tunnels up per client ${clients.map((c) => c.tunnelsUp).join(',')}; haproxy said: ${haproxyErr.slice(-2000)}`);
      });
      // Each server's own account: every client's session on exactly one server with all its tunnels,
      // and no refused tunnel (a tunnel on the wrong server would be refused UNKNOWN_SESSION and its
      // client would found a new session).
      const stats = await Promise.all(servers.map((s) => serverStats(s.proc)));
      console.log(`haproxy test: sessions per server ${stats.map((st) => st.sessions.length).join('/')}, refused ${stats.map((st) => st.refused).join('/')}`);
      const home = new Map<string, number>();
      for (const [i, st] of stats.entries()) {
        expect(st.refused).toBe(0);
        expect(st.sessions.length).toBeGreaterThan(0);
        for (const sess of st.sessions) {
          expect(home.has(sess.id)).toBe(false);
          home.set(sess.id, i);
          expect(sess.tunnelsUp).toBe(TUNNELS);
        }
      }
      expect(home.size).toBe(SESSIONS);
      for (const c of clients) expect(home.has(c.stats().id)).toBe(true);
      // Each server saw the client's own address (one of the 8 its tunnels come from), not HAProxy's.
      const seenFrom = new Map(stats.flatMap((st) => st.sessions.map((sess) => [sess.id, sess.remoteAddress] as const)));
      for (const [c, client] of clients.entries()) {
        expect(seenFrom.get(client.stats().id), `client ${c}`).toMatch(new RegExp(`^127\\.${1 + (c >> 8)}\\.${c & 255}\\.[1-${TUNNELS}]$`));
      }

      const serverOf = (c: Client): number => home.get(c.stats().id)!;
      const echoPort = (echo.address() as net.AddressInfo).port;
      for (const c of clients) pumps.push(pump(await c.open({ host: '127.0.0.1', port: echoPort })));
      await until(() => pumps.every((p) => p.received >= 2 * PERIOD), 60_000, 'every stream moving');

      const victim = 0;
      const victims = clients.filter((c) => serverOf(c) === victim);
      const survivors = clients.filter((c) => serverOf(c) !== victim);
      expect(victims.length + survivors.length).toBe(SESSIONS);
      const before = survivors.map((c) => pumps[clients.indexOf(c)]!.received);
      const killedAt = Date.now();
      servers[victim]!.proc.kill('SIGKILL');

      const recovered = await Promise.all(
        victims.map(async (c) => {
          for (;;) {
            if (Date.now() - killedAt > 10_000) return Infinity;
            try {
              const conn = await c.open({ host: '127.0.0.1', port: echoPort });
              const p = pump(conn);
              try {
                await until(() => p.received >= PERIOD || p.error !== null, 5_000, 'a new stream to move');
              } finally {
                p.stop();
                conn.destroy();
              }
              if (!p.error && !p.mismatch) return Date.now() - killedAt;
            } catch {
              await new Promise((r) => setTimeout(r, 50)); // the old session is still being replaced
            }
          }
        }),
      );
      const worst = Math.max(...recovered);
      console.log(`haproxy test: ${victims.length} clients of the killed server streaming again after ${Math.min(...recovered)}–${worst} ms`);
      expect(worst).toBeLessThan(5_000);
      await until(
        () => survivors.every((c, i) => pumps[clients.indexOf(c)]!.received >= before[i]! + 4 * PERIOD),
        30_000,
        'the other clients to keep streaming',
      );
      for (const c of survivors) {
        const p = pumps[clients.indexOf(c)]!;
        expect(p.error).toBeNull();
        expect(p.mismatch).toBe(false);
      }
    } finally {
      for (const p of pumps) p.stop();
      for (const c of clients) c.close();
      haproxy.kill('SIGKILL');
    }
  }, 300_000);
});
