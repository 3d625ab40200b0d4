// Issue 16, finding 3: sockets that connect and never authenticate must not make the server write a
// log line each. In process: the real server side (startServerSide) with its logger captured.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { startServerSide, type ServerSide } from '../src/commands/server.js';
import { LogSink, createLogger } from '../src/logger.js';
import { until } from '@gkd/test-support';

const sides: ServerSide[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const side of sides.splice(0)) await side.plan.close();
});

function capture(): { logger: ReturnType<typeof createLogger>; records: { level: string; message: string }[] } {
  const records: { level: string; message: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) records.push(JSON.parse(l) as { level: string; message: string });
      cb();
    },
  });
  return { logger: createLogger({ level: 'info', format: 'json', sink: new LogSink(stream) }), records };
}

describe('log flood from unauthenticated peers (finding 3)', () => {
  it('300 silent sockets from 4 loopback addresses: every eviction counted, a handful of lines, then one summary', async () => {
    const { logger, records } = capture();
    const side = await startServerSide(
      { listen: { host: '127.0.0.1', port: 0 }, auth: { key: randomBytes(32) }, tls: undefined, embedded: false, allow: [], deny: [] },
      logger,
    );
    sides.push(side);
    const port = side.server.address().port;
    const addresses = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'];
    const total = 300;
    for (let i = 0; i < total; i++) {
      const s = net.connect({ host: '127.0.0.1', port, localAddress: addresses[i % addresses.length] });
      s.on('error', () => {});
      sockets.push(s);
    }
    // 32 handshakes in progress per address at most: the rest evict their address's oldest.
    const evicted = total - 32 * addresses.length;
    await until(() => side.refused() >= evicted, 20_000, 'every eviction counted');
    const refusedLines = (): number => records.filter((r) => r.message.startsWith('refused a tunnel')).length;
    expect(refusedLines()).toBeLessThanOrEqual(5);
    await side.plan.close();
    sides.pop();
    const summaries = records.filter((r) => /more refused tunnels .* in the last \d+ s from \d+ address/.test(r.message));
    expect(summaries.length).toBeGreaterThanOrEqual(1);
    const summed = summaries.reduce((n, r) => n + Number(/^(\d+) more/.exec(r.message)![1]), 0);
    // Every eviction is either logged or summed up (the close itself refuses the handshakes still open, which may be counted too).
    expect(summed + refusedLines()).toBeGreaterThanOrEqual(evicted);
    expect(summed + refusedLines()).toBeLessThanOrEqual(side.refused());
    expect(summaries.some((r) => / from 4 addresses/.test(r.message))).toBe(true);
    expect(records.length).toBeLessThan(20);
  });
});
