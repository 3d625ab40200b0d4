import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, Server, type CountDecision, type ServerOptions } from '../src/index.js';
import { echoRandom, until } from '@gkd/test-support';

/** Adaptive tunnel count end to end on loopback: the server's caps, idle shrink, lossless retirement. */

const key = randomBytes(32);
const servers: Server[] = [];
const clients: Client[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await s.close();
});

async function echoServer(opts: Partial<ServerOptions> = {}): Promise<Server> {
  const server = await Server.bind('127.0.0.1:0', { key, ...opts });
  servers.push(server);
  (async () => {
    for await (const conn of server) {
      conn.on('error', () => undefined);
      conn.pipe(conn);
    }
  })();
  return server;
}

function client(server: Server, opts: Partial<Parameters<typeof Client.create>[1]> = {}): Client {
  const c = Client.create(`127.0.0.1:${server.address().port}`, { key, tunnels: 'auto', ...opts });
  clients.push(c);
  return c;
}

/** Tunnels up on the server, over all sessions. */
const tunnelsOf = (server: Server) => server.stats().peers.reduce((n, s) => n + s.tunnelsUp, 0);

describe("tunnels: 'auto'", () => {
  it('stays under the per-session cap the server announces in WELCOME', async () => {
    const server = await echoServer({ maxTunnelsPerSession: 3 });
    const decisions: CountDecision[] = [];
    const c = client(server, { minTunnels: 2, maxTunnels: 32, adaptive: { start: 8 } });
    c.on('tunnels', (d: CountDecision) => decisions.push(d));
    await until(() => c.serverTunnelCap === 3, 5000, 'WELCOME read');
    await until(() => c.tunnelsUp === 3, 5000, 'three tunnels up');
    expect(c.tunnelCount).toBe(3);
    expect(c.tunnelCeiling).toBe(3);
    expect(decisions[0]).toMatchObject({ from: 8, target: 3 });
    expect(decisions[0]!.reason).toMatch(/allows 3 tunnels/);
    expect(tunnelsOf(server)).toBeLessThanOrEqual(3);
  }, 20_000);

  it('a fixed count above the server cap is lowered to it instead of retrying refused tunnels', async () => {
    const server = await echoServer({ maxTunnelsPerSession: 2 });
    let refused = 0;
    server.on('refused', () => refused++);
    const c = client(server, { tunnels: 5 });
    await until(() => c.tunnelsUp === 2 && c.tunnelCount === 2, 5000, 'two tunnels');
    // Slots that were already handshaking when WELCOME came may each be refused once; then none.
    await new Promise((r) => setTimeout(r, 500));
    expect(refused).toBeLessThanOrEqual(3);
    const before = refused;
    await new Promise((r) => setTimeout(r, 1500));
    expect(refused - before).toBe(0);
  }, 20_000);

  it('a JOIN refused by the per-user cap lowers the ceiling for a while (no knocking every second)', async () => {
    const server = await echoServer({ maxTunnelsPerSession: 10, maxTunnelsPerUser: 3 });
    let refused = 0;
    server.on('refused', () => refused++);
    const first = client(server, { tunnels: 2 });
    await until(() => first.tunnelsUp === 2, 5000, 'the first session');
    const second = client(server, { minTunnels: 1, adaptive: { start: 4 } });
    await until(() => second.tunnelsUp === 1 && second.tunnelCeiling === 1, 5000, 'the second session capped at one tunnel');
    await new Promise((r) => setTimeout(r, 500)); // slots already handshaking may each be refused once
    expect(refused).toBeLessThanOrEqual(3);
    const before = refused;
    await new Promise((r) => setTimeout(r, 2000));
    expect(refused - before).toBe(0);
    expect(second.tunnelCount).toBe(1);
    // and it works
    const conn = await second.getConnection();
    conn.end(Buffer.from('ok'));
    const got: Buffer[] = [];
    for await (const b of conn) got.push(b as Buffer);
    expect(Buffer.concat(got).toString()).toBe('ok');
  }, 20_000);

  it('an idle client shrinks to its minimum, retiring tunnels without a tunnel-down', async () => {
    const server = await echoServer();
    const c = client(server, { minTunnels: 2, adaptive: { start: 6, idleShrinkMs: 400 } });
    let downs = 0;
    let retired = 0;
    c.on('tunnel-down', () => downs++);
    c.on('tunnel-retired', () => retired++);
    await until(() => c.tunnelsUp === 6, 5000, 'six tunnels');
    await until(() => c.tunnelCount === 2, 5000, 'target 2');
    await until(() => retired === 4 && tunnelsOf(server) === 2, 8000, 'four tunnels retired on both ends');
    expect(c.tunnelsUp).toBe(2);
    expect(downs).toBe(0);
  }, 20_000);

  it('retiring tunnels in the middle of a transfer loses no byte (echo of 24 MiB, checksummed)', async () => {
    const server = await echoServer();
    // busyRate out of reach: every epoch looks idle, so the client shrinks from 8 to 2 mid-transfer.
    const c = client(server, { minTunnels: 2, adaptive: { start: 8, idleShrinkMs: 300, busyRate: 1e12 } });
    let retired = 0;
    c.on('tunnel-retired', () => retired++);
    await until(() => c.tunnelsUp === 8, 5000, 'eight tunnels');
    const conn = await c.getConnection();
    // Write slowly enough that the retirement lands in the middle.
    const echo = await echoRandom(conn, 24 * 1024 * 1024, async (off) => {
      if (off === 4 * 1024 * 1024) await until(() => c.tunnelCount === 2, 5000, 'the shrink');
    });
    expect(echo).toEqual({ bytes: 24 * 1024 * 1024, intact: true });
    await until(() => retired === 6, 8000, 'six tunnels retired');
  }, 60_000);
});
