// GOAWAY SHUTDOWN (PROTOCOL.md §7): "existing streams may finish". After either end sends it, data on
// streams already open must keep flowing both ways; only new streams are refused.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Client, Server, type Connection } from '../src/index.js';

const key = randomBytes(32);

async function echoRoundTrip(conn: Connection, payload: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  const done = new Promise<void>((resolve) =>
    conn.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= payload.length) resolve();
    }),
  );
  conn.write(payload);
  await done;
  return Buffer.concat(chunks);
}

describe('GOAWAY SHUTDOWN', () => {
  it('streams open before the server went away still carry data both ways', async () => {
    const server = await Server.bind('127.0.0.1:0', { key });
    (async () => {
      for await (const conn of server) {
        conn.on('error', () => undefined);
        conn.pipe(conn);
      }
    })();
    const client = await Client.connect(`127.0.0.1:${server.address().port}`, { tunnels: 2, key });
    const conn = await client.getConnection();
    conn.on('error', () => undefined);
    const before = randomBytes(1000);
    expect(await echoRoundTrip(conn, before)).toEqual(before);

    server.goAway();
    // Wait until the GOAWAY reached the client: its tunnels are draining, none is "up" for new streams.
    while (client.tunnelsUp > 0) await new Promise((r) => setTimeout(r, 5));
    conn.removeAllListeners('data');
    const during = randomBytes(200_000);
    expect(await echoRoundTrip(conn, during)).toEqual(during);

    conn.end();
    await once(conn, 'end');
    client.close();
    await server.close();
  });
});
