// Client.open(destination, { signal }): the one way to open a stream with cancellation (issue 17).
import { randomBytes } from 'node:crypto';
import { AbortError, ErrorCode, GkdError, Reason } from '@gkd/protocol';
import { until } from '@gkd/test-support';
import { afterEach, describe, expect, it } from 'vitest';
import { Client, Server, type OpenRequest } from '../src/index.js';

const key = randomBytes(32);
const dest = { host: '192.0.2.1', port: 80 };
let server: Server | undefined;
let client: Client | undefined;

afterEach(async () => {
  client?.close();
  await server?.close();
  server = client = undefined;
});

/** A server that holds every OPEN unanswered and keeps the requests, so a test decides when (or whether) to answer. */
async function holdingServer(): Promise<{ server: Server; held: OpenRequest[] }> {
  const held: OpenRequest[] = [];
  const s = await Server.bind('127.0.0.1:0', { key, onOpen: (req) => held.push(req) });
  return { server: s, held };
}

function rejection(p: Promise<unknown>): Promise<GkdError> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: GkdError) => err,
  );
}

describe('Client.open with an AbortSignal', () => {
  it('abort before OPEN_OK: rejects with AbortError (GKD_ERR_ABORTED) and cancels the stream on the wire', async () => {
    const h = await holdingServer();
    server = h.server;
    client = await Client.connect(`127.0.0.1:${server.address().port}`, { key, tunnels: 2 });
    const ac = new AbortController();
    const opening = client.open(dest, { signal: ac.signal });
    await until(() => h.held.length === 1, 5000, 'the OPEN at the server');
    const req = h.held[0]!;
    expect(req.signal.aborted).toBe(false);
    const why = new Error('the SOCKS client went away');
    ac.abort(why);
    const err = await rejection(opening);
    expect(err).toBeInstanceOf(AbortError);
    expect(err).toBeInstanceOf(GkdError);
    expect(err.name).toBe('AbortError');
    expect(err.code).toBe(ErrorCode.ABORTED);
    expect(err.reason).toBe(Reason.CANCELLED);
    expect(err.cause).toBe(why);
    // The RST CANCELLED reached the server: its pending request is aborted, and answering it late opens nothing.
    await until(() => req.signal.aborted, 5000, 'the server to see the cancel');
    req.accept();
    await until(() => client!.stats().streamsOpen === 0 && server!.stats().peers[0]!.streamsOpen === 0, 5000, 'no stream left on either end');
  });

  it('an already-aborted signal: rejects at once and sends no OPEN', async () => {
    const h = await holdingServer();
    server = h.server;
    client = await Client.connect(`127.0.0.1:${server.address().port}`, { key, tunnels: 1 });
    const err = await rejection(client.open(dest, { signal: AbortSignal.abort() }));
    expect(err).toBeInstanceOf(AbortError);
    // One tunnel delivers in order: had the aborted open sent an OPEN, the server would hold two once the next one came.
    const ok = client.open(dest);
    await until(() => h.held.length >= 1, 5000, 'the second OPEN');
    expect(h.held).toHaveLength(1);
    h.held[0]!.reject(Reason.NOT_ALLOWED);
    await expect(ok).rejects.toMatchObject({ code: ErrorCode.OPEN_FAILED });
  });

  it('abort while no tunnel is up: rejects promptly, long before the tunnel wait would end', async () => {
    // A port nobody listens on: tunnels never come up (Client.create does not wait for them).
    const probe = await Server.bind('127.0.0.1:0', { key });
    const port = probe.address().port;
    await probe.close();
    client = Client.create(`127.0.0.1:${port}`, { key, tunnels: 1, tunnelWaitTimeout: 60_000 });
    const ac = new AbortController();
    const opening = client.open(dest, { signal: ac.signal });
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 50);
    const err = await rejection(opening);
    expect(err).toBeInstanceOf(AbortError);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('abort after OPEN_OK changes nothing: the connection stays open and carries data', async () => {
    server = await Server.bind('127.0.0.1:0', {
      key,
      onOpen: (req) => {
        const conn = req.accept();
        conn.on('error', () => undefined);
        conn.pipe(conn);
      },
    });
    client = await Client.connect(`127.0.0.1:${server.address().port}`, { key, tunnels: 2 });
    const ac = new AbortController();
    const conn = await client.open(dest, { signal: ac.signal });
    ac.abort();
    conn.end(Buffer.from('still here'));
    const chunks: Buffer[] = [];
    for await (const c of conn) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('still here');
  });
});
