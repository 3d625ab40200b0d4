import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Client, Server } from '../src/index.js';

const key = randomBytes(32);

describe('the seed examples', () => {
  it('echo server; a client with 4 tunnels writes nine 3-byte chunks and reads them back', async () => {
    const server = await Server.bind('127.0.0.1:0', { key });
    (async () => {
      for await (const conn of server) {
        conn.on('error', () => undefined); // closing the server fails streams still open
        conn.pipe(conn);
      }
    })();
    const client = await Client.connect(`127.0.0.1:${server.address().port}`, { tunnels: 4, key });
    const conn = await client.getConnection();
    const chunks: Buffer[] = [];
    conn.on('data', (d: Buffer) => chunks.push(d));
    const sent: Buffer[] = [];
    for (let i = 0; i < 9; i++) {
      const b = Buffer.from([i, i + 1, i + 2]);
      sent.push(b);
      conn.write(b);
    }
    conn.end();
    await new Promise((r) => conn.once('end', r));
    expect(Buffer.concat(chunks)).toEqual(Buffer.concat(sent));
    client.close();
    await server.close();
  });
});
