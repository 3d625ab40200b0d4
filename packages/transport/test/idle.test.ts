import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, Server } from '../src/index.js';
import { until } from './support/links.js';

const key = randomBytes(32);
let server: Server | undefined;
let client: Client | undefined;

afterEach(async () => {
  client?.close();
  await server?.close();
  server = client = undefined;
});

describe('a session the server closes for idleness (GOAWAY IDLE_TIMEOUT)', () => {
  it('leaves the client dormant (no tunnel, no new session) until the next open, which reconnects and works', async () => {
    server = await Server.bind('127.0.0.1:0', { key, idleSessionTimeout: 200 });
    (async () => {
      for await (const conn of server!) {
        conn.on('error', () => undefined);
        conn.pipe(conn);
      }
    })();
    let sessionsStarted = 0;
    server.on('session', () => sessionsStarted++);
    client = await Client.connect(`127.0.0.1:${server.address().port}`, { key, tunnels: 2 });
    const first = client.stats().id;
    expect(client.state).toBe('joined');
    await once(client, 'dormant');
    expect(client.state).toBe('dormant');
    await until(() => client!.tunnelsUp === 0 && server!.stats().sessions === 0, 5000, 'tunnels down and the session freed');
    expect(client.isDormant).toBe(true);
    // Several idle timeouts and many reconnect intervals (100 ms–1 s) later: still nothing.
    const quietUntil = Date.now() + 1500;
    await until(() => Date.now() >= quietUntil || sessionsStarted > 1 || client!.tunnelsUp > 0, 5000, 'the quiet period');
    expect(sessionsStarted).toBe(1);
    expect(client.tunnelsUp).toBe(0);

    // Demand wakes it: a new session, and the stream works.
    const conn = await client.getConnection();
    expect(client.isDormant).toBe(false);
    expect(client.state).toBe('joined');
    expect(client.stats().id).not.toBe(first);
    conn.end(Buffer.from('hello'));
    const chunks: Buffer[] = [];
    for await (const c of conn) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('hello');
    expect(sessionsStarted).toBe(2);
    client.close();
    expect(client.state).toBe('closed');
  }, 30_000);
});
