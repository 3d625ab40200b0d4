import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import { OpenFailedError, Reason } from '@gkd/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HttpProxyServer, type Opener } from '../src/index.js';
import { connectRaw, directOpener, readAll } from './helpers.js';
import { until } from '@gkd/test-support';

/**
 * Findings 1 and 2 of issue 16, with raw bytes against the real HTTP proxy port: a request body must
 * reach the origin framed (or it reads as a second, smuggled request), and responses must keep the
 * order of the requests pipelined on one connection, a CONNECT included.
 */

/** An origin on loopback that records every request it parses (with its body) and every byte it receives. */
interface RecordingOrigin {
  port: number;
  requests: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[];
  raw: () => string;
  /** Until this resolves, /slow is not answered. */
  holdSlow: (gate: Promise<unknown>) => void;
  close(): Promise<void>;
}

async function startRecordingOrigin(): Promise<RecordingOrigin> {
  const requests: RecordingOrigin['requests'] = [];
  const rawChunks: Buffer[] = [];
  let slowGate: Promise<unknown> = Promise.resolve();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const answer = `${req.method} ${req.url} body=${JSON.stringify(body)}`;
      void (req.url === '/slow' ? slowGate : Promise.resolve()).then(() => {
        res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(answer) });
        res.end(answer);
      });
    });
  });
  server.on('connection', (socket: Socket) => socket.on('data', (c: Buffer) => rawChunks.push(c)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    raw: () => Buffer.concat(rawChunks).toString(),
    holdSlow: (gate) => (slowGate = gate),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

let origin: RecordingOrigin;
beforeEach(async () => {
  origin = await startRecordingOrigin();
});
afterEach(() => origin.close());

async function withProxy(opener: Opener, run: (port: number) => Promise<void>): Promise<void> {
  const server = await HttpProxyServer.listen({ port: 0, opener });
  try {
    await run(server.address().port);
  } finally {
    await server.close();
  }
}

describe('request bodies are forwarded with their framing (finding 1)', () => {
  const inner = 'GET /inner HTTP/1.1\r\nHost: smuggled\r\n\r\n';
  const chunked = `${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`;

  it.each(['GET', 'DELETE', 'OPTIONS', 'HEAD', 'POST', 'PUT'])(
    '%s with a chunked body reaches the origin as one request carrying that body',
    async (method) => {
      await withProxy(directOpener().opener, async (port) => {
        const socket = await connectRaw(port);
        const reply = readAll(socket);
        socket.write(
          `${method} http://127.0.0.1:${origin.port}/x HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunked}`,
        );
        const text = (await reply).data.toString();
        expect(text).toMatch(/^HTTP\/1\.1 200 /);
        if (method !== 'HEAD') expect(text).toContain(`body=${JSON.stringify(inner)}`);
      });
      expect(origin.requests.map((r) => [r.method, r.url, r.body])).toEqual([[method, '/x', inner]]);
      expect(origin.raw()).not.toMatch(/\r\n\r\nGET \/inner/); // never unframed on the wire
    },
  );

  it('a Content-Length body is forwarded with its Content-Length', async () => {
    await withProxy(directOpener().opener, async (port) => {
      const socket = await connectRaw(port);
      const reply = readAll(socket);
      socket.write(`GET http://127.0.0.1:${origin.port}/x HTTP/1.1\r\nHost: a\r\nContent-Length: ${inner.length}\r\nConnection: close\r\n\r\n${inner}`);
      expect((await reply).data.toString()).toContain(`body=${JSON.stringify(inner)}`);
    });
    expect(origin.requests.map((r) => [r.method, r.url, r.body, r.headers['content-length']])).toEqual([['GET', '/x', inner, String(inner.length)]]);
  });
});

describe('pipelined requests are answered in order, a CONNECT included (finding 2)', () => {
  /**
   * Dials the origin directly; `tunnel:443` answers with `tunnel` (an echo), `denied:443` is refused by
   * policy. `connectCalled` resolves when a CONNECT's open starts.
   */
  function opener(tunnel: PassThrough): { opener: Opener; connectCalled: Promise<void> } {
    const direct = directOpener().opener;
    let called!: () => void;
    const connectCalled = new Promise<void>((r) => (called = r));
    return {
      connectCalled,
      opener: (destination, signal) => {
        if (destination.host === 'denied') {
          called();
          return Promise.reject(new OpenFailedError(Reason.NOT_ALLOWED, 'test policy'));
        }
        if (destination.host === 'tunnel') {
          called();
          return Promise.resolve(tunnel);
        }
        return direct(destination, signal);
      },
    };
  }
  // The origin answers /slow once the CONNECT's open has started, or after 300 ms: a proxy that keeps
  // order never opens before /slow is answered, so the bound is what releases it there; a proxy that
  // does not keep order opens at once, and /slow's answer comes after the CONNECT's.
  const gate = (called: Promise<void>): Promise<unknown> => Promise.race([called, new Promise((r) => setTimeout(r, 300))]);

  it('GET then a refused CONNECT in one write: the GET response, then the 403, then EOF', async () => {
    const o = opener(new PassThrough());
    origin.holdSlow(gate(o.connectCalled));
    await withProxy(o.opener, async (port) => {
      const socket = await connectRaw(port);
      const reply = readAll(socket);
      socket.write(`GET http://127.0.0.1:${origin.port}/slow HTTP/1.1\r\nHost: a\r\n\r\nCONNECT denied:443 HTTP/1.1\r\nHost: denied:443\r\n\r\n`);
      const text = (await reply).data.toString();
      const get = text.indexOf('GET /slow body=""');
      const refused = text.indexOf('HTTP/1.1 403 ');
      expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(get).toBeGreaterThan(0);
      expect(refused).toBeGreaterThan(get);
    });
    expect(origin.requests.map((r) => r.url)).toEqual(['/slow']);
  });

  it('GET then an allowed CONNECT in one write: the GET response, then 200, then only tunnel bytes', async () => {
    const tunnel = new PassThrough();
    const o = opener(tunnel);
    origin.holdSlow(gate(o.connectCalled));
    await withProxy(o.opener, async (port) => {
      const socket = await connectRaw(port);
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.write(`GET http://127.0.0.1:${origin.port}/slow HTTP/1.1\r\nHost: a\r\n\r\nCONNECT tunnel:443 HTTP/1.1\r\nHost: tunnel:443\r\n\r\nhello`);
      await until(() => Buffer.concat(chunks).toString().endsWith('hello'), 5_000, 'the body');
      const text = Buffer.concat(chunks).toString();
      const established = 'HTTP/1.1 200 Connection established\r\n\r\n';
      const at = text.indexOf(established);
      expect(at).toBeGreaterThan(0);
      expect(text.slice(0, at)).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nGET \/slow body=""$/);
      expect(text.slice(at + established.length)).toBe('hello'); // the tunnel carries the echo and nothing else
      socket.destroy();
    });
  });
});
