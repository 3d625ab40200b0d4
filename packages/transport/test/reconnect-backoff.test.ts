import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Client } from '../src/index.js';
import { until } from '@gkd/test-support';

/**
 * PROTOCOL.md §6 states the reconnect backoff in numbers; this holds the text and the client together:
 * the delays a client reports on 'reconnecting' must fall in the ranges the text gives, read from the text.
 */

const protocolMd = readFileSync(new URL('../../../PROTOCOL.md', import.meta.url), 'utf8');

let server: net.Server | undefined;
let client: Client | undefined;

afterEach(async () => {
  await client?.close();
  client = undefined;
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

describe('reconnect backoff (PROTOCOL.md §6)', () => {
  it('the delays after failed handshakes are the ones PROTOCOL.md states', async () => {
    const m = /min\((\d+) ms · 2\^\(n−1\), (\d+) s\), times a random\s+factor in \[0\.5, 1\)/.exec(protocolMd);
    expect(m, 'PROTOCOL.md §6 states the backoff as "min(X ms · 2^(n−1), Y s), times a random factor in [0.5, 1)"').not.toBeNull();
    const first = Number(m![1]);
    const cap = Number(m![2]) * 1000;

    // A server that hangs up on every connection: each attempt fails at once, so the delays are all backoff.
    server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const delays: number[] = [];
    client = Client.create(`127.0.0.1:${port}`, { key: randomBytes(32), tunnels: 1 });
    client.on('reconnecting', (_index: number, delayMs: number) => delays.push(delayMs));
    client.on('tunnel-down', () => undefined);
    // Six failures reach the cap (100, 200, 400, 800, then 1000 twice): about 2.5 s of waiting at most.
    await until(() => delays.length >= 6, 20_000, 'six reconnect delays');

    delays.slice(0, 6).forEach((delay, i) => {
      const base = Math.min(cap, first * 2 ** i);
      expect(delay, `delay after failure ${i + 1}`).toBeGreaterThanOrEqual(Math.floor(base * 0.5));
      expect(delay, `delay after failure ${i + 1}`).toBeLessThanOrEqual(base);
    });
  }, 30_000);
});
