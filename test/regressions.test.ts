/**
 * Reproductions of the bugs the reliability suite found, small and deterministic, on in-memory
 * tunnels in this process (the suite itself finds them under load over real sockets, in
 * test/load.test.ts). See docs/RELIABILITY.md, "Bugs found".
 */
import { randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { FrameType, Reason, encode } from '@gkd/protocol';
import { Client, Server, duplexPair, type Connection, type SessionConfig } from '@gkd/transport';
import { OwnSession, startStack, type ProcessStack } from '@gkd/test-support';

const KiB = 1024;
const MiB = 1024 * KiB;

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A library-mode server and a client joined by in-memory tunnels. */
async function pair(
  serverOpts: Partial<ConstructorParameters<typeof Server>[0]>,
  clientSession: Partial<SessionConfig> = {},
  tunnels = 2,
): Promise<{ server: Server; client: Client }> {
  const key = randomBytes(32);
  const server = new Server({ key, ...serverOpts });
  const client = Client.create('memory:1', {
    key,
    tunnels,
    session: clientSession,
    connect: async () => {
      const [a, b] = duplexPair();
      server.handleConnection(b);
      return a;
    },
  });
  cleanups.push(
    () => server.close(),
    () => client.close(),
  );
  await client.waitForTunnel(10_000);
  return { server, client };
}

/** Read a connection to its end; resolves with the byte count. */
function drain(conn: Connection): Promise<number> {
  return new Promise((resolve, reject) => {
    let n = 0;
    conn.on('data', (d: Buffer) => (n += d.length));
    conn.once('end', () => resolve(n));
    conn.once('error', reject);
  });
}

describe('regressions found by the reliability suite', () => {
  it('a stream that runs out of window credit and of the shared send budget at once is woken when the budget frees (it used to hang)', async () => {
    // Server send budget: 16 KiB for the whole peer (the minimum), so the streams contend for it; the
    // client's windows are one frame too (and never grow), so a stream that sends its frame is out of
    // credit and of budget at once. Its ACK then raises its credit while another stream holds the budget.
    const { server, client } = await pair({ maxBufferedBytesPerUser: 32 * KiB }, { initialWindow: 16 * KiB, maxWindow: 16 * KiB });
    void (async () => {
      for await (const conn of server) {
        conn.on('error', () => undefined);
        conn.end(Buffer.alloc(2 * MiB, conn.id & 0xff));
      }
    })();
    const conns = await Promise.all(Array.from({ length: 8 }, () => client.getConnection()));
    const got = conns.map((c) => drain(c));
    for (const c of conns) c.end();
    // Before the fix some of these never ended; the test timeout would fire.
    expect(await Promise.all(got)).toEqual(conns.map(() => 2 * MiB));
  }, 30_000);

  it('acknowledged payloads are freed while the stream lives (they used to stay referenced until it ended)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    /** Live ArrayBuffer bytes after full collections (releases deferred to later ticks are let through). */
    const live = async () => {
      let least = Infinity;
      for (let i = 0; i < 5; i++) {
        await new Promise((r) => setImmediate(r));
        gc();
        least = Math.min(least, process.memoryUsage().arrayBuffers);
      }
      return least;
    };
    const { server, client } = await pair({});
    const baseline = await live();
    void (async () => {
      for await (const conn of server) {
        conn.on('error', () => undefined);
        // 3 MiB in 16 KiB writes (192 frames: fewer than the 256 that used to trigger a compaction, and
        // no big buffer for one view to pin); the stream stays open.
        for (let i = 0; i < 192; i++) conn.write(randomBytes(16 * KiB));
      }
    })();
    const streams = 16;
    const conns: Connection[] = [];
    try {
      let received = 0;
      let allIn!: () => void;
      const allReceived = new Promise<void>((r) => (allIn = r));
      for (let i = 0; i < streams; i++) {
        const c = await client.getConnection();
        c.on('error', () => undefined);
        c.on('data', (d: Buffer) => {
          received += d.length;
          if (received === streams * 3 * MiB) allIn();
        });
        conns.push(c);
      }
      await allReceived;
      // Every byte is delivered; wait until the server saw every ACK and every tunnel's PONG (nothing
      // is unacknowledged or unconfirmed: no payload is needed for a re-send any more).
      const deadline = Date.now() + 10_000;
      const held = () =>
        server.stats().peers.reduce((a, p) => a + p.streams.reduce((b, s) => b + s.unacked, 0) + p.tunnels.reduce((b, t) => b + t.unconfirmed, 0), 0);
      while (held() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(held()).toBe(0);
      // 48 MiB were sent and acknowledged on streams that are still open. Before the fix all of it
      // stayed referenced (the streams' retransmission queues and the tunnels' confirmed frames).
      const grown = (await live()) - baseline;
      console.log(`live ArrayBuffer bytes after 48 MiB acknowledged on open streams: ${(grown / MiB).toFixed(1)} MiB over the baseline`);
      expect(grown).toBeLessThan(16 * MiB);
    } finally {
      for (const c of conns) c.destroy();
    }
  }, 30_000);

  describe('server process: OPENs the server has not answered yet', () => {
    let stack: ProcessStack | undefined;
    afterEach(async () => {
      await stack?.close();
      stack = undefined;
    });

    /** A server process with one user, and a tunnel of that user's. */
    async function server() {
      stack = await startStack({ users: ['mallory'], clients: [] });
      const peer = await new OwnSession(stack.serverPort, 'mallory', stack.keys.mallory!).tunnel();
      const open = (destination: { type: 'ipv4' | 'domain'; host: string; port: number }) =>
        encode({ type: FrameType.OPEN, stream: 1, window: 65536, destination });
      return { stack, peer, open };
    }

    // Both used to throw an unhandled 'error' event on the not-yet-accepted stream: the process died.
    for (const [what, next] of [
      ['a FIN beyond the window (a protocol error)', encode({ type: FrameType.FIN, stream: 1, offset: 1 << 20 })],
      ['an RST (the opener gave up)', encode({ type: FrameType.RST, stream: 1, reason: Reason.CANCELLED, message: 'gave up' })],
    ] as const) {
      it(`OPEN followed at once by ${what}`, async () => {
        const { stack, peer, open } = await server();
        peer.socket.write(Buffer.concat([open({ type: 'ipv4', host: '127.0.0.1', port: stack.ports.hold }), next]));
        const pong = peer.waitPong(1);
        await peer.write(encode({ type: FrameType.PING, id: 1 }));
        expect(await pong).toBe(true);
        expect(stack.server.alive).toBe(true);
        expect((await stack.server.call('stats')).sessions).toBe(1);
      }, 30_000);
    }

    it('an OPEN_OK sent to the server for its own OPEN is ignored (it used to open the stream before the dial and crash on the next error)', async () => {
      const { stack, peer, open } = await server();
      peer.socket.write(
        Buffer.concat([
          open({ type: 'ipv4', host: '127.0.0.1', port: stack.ports.hold }),
          encode({ type: FrameType.OPEN_OK, stream: 1, window: 65536 }),
          encode({ type: FrameType.FIN, stream: 1, offset: 1 << 20 }),
        ]),
      );
      const pong = peer.waitPong(1);
      await peer.write(encode({ type: FrameType.PING, id: 1 }));
      expect(await pong).toBe(true);
      expect(stack.server.alive).toBe(true);
    }, 30_000);

    it('an OPEN overtaken by a later one (another tunnel) is a new stream, not a repeat of a closed one (it used to fail)', async () => {
      const { stack, peer } = await server();
      const hold = { type: 'ipv4' as const, host: '127.0.0.1', port: stack.ports.hold };
      // Stream 3's OPEN arrives before stream 1's, as when 1's tunnel died and its OPEN was re-sent.
      await peer.write(
        Buffer.concat([
          encode({ type: FrameType.OPEN, stream: 3, window: 65536, destination: hold }),
          encode({ type: FrameType.OPEN, stream: 1, window: 65536, destination: hold }),
        ]),
      );
      const end = Date.now() + 10_000;
      while (peer.opened.size + peer.ended.size < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      expect([...peer.opened].sort()).toEqual([1, 3]);
      expect([...peer.ended]).toEqual([]);
    }, 30_000);

    it('an RST for an OPEN that has not arrived yet makes that late OPEN a refused repeat: no dial', async () => {
      const { stack, peer } = await server();
      const hold = { type: 'ipv4' as const, host: '127.0.0.1', port: stack.ports.hold };
      await peer.write(
        Buffer.concat([
          encode({ type: FrameType.OPEN, stream: 5, window: 65536, destination: hold }),
          encode({ type: FrameType.RST, stream: 3, reason: Reason.CANCELLED, message: 'open timed out' }),
          encode({ type: FrameType.OPEN, stream: 3, window: 65536, destination: hold }),
        ]),
      );
      const end = Date.now() + 10_000;
      while (peer.opened.size + peer.ended.size < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
      expect([...peer.opened]).toEqual([5]);
      expect([...peer.ended]).toEqual([3]);
      expect((await stack.destination.call('stats')).accepted.hold).toBe(1);
    }, 30_000);

    it('closing the server while a dial is pending exits cleanly', async () => {
      const { stack, peer, open } = await server();
      await peer.write(open({ type: 'domain', host: 'dial.slow.test', port: 80 })); // the test resolver takes 3 s
      const pong = peer.waitPong(1);
      await peer.write(encode({ type: FrameType.PING, id: 1 }));
      expect(await pong).toBe(true);
      await stack.server.call('close');
      expect(await stack.server.exited).toEqual({ code: 0, signal: null });
      expect(stack.server.stderr).toBe('');
    }, 30_000);
  });
});
