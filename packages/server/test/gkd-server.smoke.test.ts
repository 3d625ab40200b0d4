import { randomBytes, createHash } from 'node:crypto';
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { ErrorCode, Reason } from '@gkd/protocol';
import { Client } from '@gkd/transport';
import { GkdServer } from '../src/index.js';

describe('GkdServer end to end (smoke)', () => {
  it('dials an allowed loopback destination and splices both ways; refuses a denied one', async () => {
    const dest = net.createServer({ allowHalfOpen: true }, (s) => {
      const h = createHash('sha256');
      s.on('data', (d) => h.update(d));
      s.on('end', () => s.end(h.digest('hex')));
    });
    await new Promise<void>((r) => dest.listen(0, '127.0.0.1', r));
    const port = (dest.address() as net.AddressInfo).port;
    const key = randomBytes(32);
    const server = await GkdServer.start({ listen: '127.0.0.1:0', key, allow: [`127.0.0.1:${port}`] });
    const client = await Client.connect(`127.0.0.1:${server.address().port}`, { key, tunnels: 4 });
    const conn = await client.open({ host: '127.0.0.1', port });
    const payload = randomBytes(3_000_000);
    const reply: Buffer[] = [];
    conn.on('data', (d: Buffer) => reply.push(d));
    conn.end(payload);
    await new Promise((r) => conn.once('end', r));
    expect(Buffer.concat(reply).toString()).toBe(createHash('sha256').update(payload).digest('hex'));
    // Loopback on another port is denied by default.
    const err = await client.open({ host: '127.0.0.1', port: port + 1 }).catch((e) => e);
    expect(err.code).toBe(ErrorCode.OPEN_FAILED);
    expect(err.reason).toBe(Reason.NOT_ALLOWED);
    client.close();
    await server.close();
    dest.close();
  });
});
