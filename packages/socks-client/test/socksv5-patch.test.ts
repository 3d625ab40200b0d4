import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { socksv5 } from '../src/socksv5.js';

// Unit tests of the fixes in the vendored socksv5 (vendor/socksv5), on fake streams (deterministic, no sockets).

const require = createRequire(import.meta.url);

/** The bits of a socket socksv5's parsers use: 'data' events, pause/resume, unshift, write. */
class FakeStream extends EventEmitter {
  writable = true;
  written: Buffer[] = [];
  write(chunk: Buffer): boolean {
    this.written.push(Buffer.from(chunk));
    return true;
  }
  pause(): this {
    return this;
  }
  resume(): this {
    return this;
  }
  unshift(chunk: Buffer): void {
    queueMicrotask(() => this.emit('data', chunk));
  }
  feed(hex: string): void {
    this.emit('data', Buffer.from(hex, 'hex'));
  }
}

interface ParserLike extends EventEmitter {
  authed: boolean;
}
const Parser = require('../vendor/socksv5/lib/server.parser.js') as new (stream: FakeStream) => ParserLike;

function parseRequest(requestHex: string): { request?: { dstAddr: string; dstPort: number }; error?: Error & { rep?: number } } {
  const stream = new FakeStream();
  const parser = new Parser(stream);
  parser.authed = true; // skip the greeting: the next bytes are a request
  const out: ReturnType<typeof parseRequest> = {};
  parser.on('request', (r: { dstAddr: string; dstPort: number }) => (out.request = r));
  parser.on('error', (e: Error & { rep?: number }) => (out.error = e));
  stream.feed(requestHex);
  return out;
}

describe('patched socksv5 request parser', () => {
  it('prints every byte of an IPv6 address with two hex digits', () => {
    const { request } = parseRequest('05010004' + '20010db8010203040000000000000001' + '1f90');
    expect(request).toMatchObject({ dstAddr: '2001:0db8:0102:0304:0000:0000:0000:0001', dstPort: 8080 });
  });

  it('attaches REP 07 to an unknown command and REP 08 to an unknown address type', () => {
    expect(parseRequest('05090001').error).toMatchObject({ rep: 0x07 });
    expect(parseRequest('05010002').error).toMatchObject({ rep: 0x08 });
  });
});

describe('patched socksv5 UserPassword', () => {
  it('keeps each connection’s credentials apart when sub-negotiations interleave (0.0.6 crashed here)', () => {
    const seen: string[] = [];
    const handler = socksv5.auth.UserPassword((user, pass, cb) => {
      seen.push(`${user}:${pass}`);
      cb(user === 'alice' && pass === 's3cret');
    });
    const a = new FakeStream();
    const b = new FakeStream();
    const verdicts: (boolean | Error)[] = [];
    handler.server(a as never, (r) => verdicts.push(r));
    handler.server(b as never, (r) => verdicts.push(r));
    const credA = Buffer.concat([Buffer.from([1, 5]), Buffer.from('alice'), Buffer.from([6]), Buffer.from('s3cret')]);
    const credB = Buffer.concat([Buffer.from([1, 7]), Buffer.from('mallory'), Buffer.from([6]), Buffer.from('guess!')]);
    // Byte by byte, alternating: each step lands in the other connection's parse state.
    for (let i = 0; i < Math.max(credA.length, credB.length); i++) {
      if (i < credA.length) a.emit('data', credA.subarray(i, i + 1));
      if (i < credB.length) b.emit('data', credB.subarray(i, i + 1));
    }
    expect(seen).toEqual(['alice:s3cret', 'mallory:guess!']);
    expect(verdicts).toEqual([true, false]);
    expect(Buffer.concat(a.written).toString('hex')).toBe('0100');
    expect(Buffer.concat(b.written).toString('hex')).toBe('0101');
  });
});

describe('vendored socksv5 server', () => {
  it('refuses a request with a full REP 02 reply when no one listens for it (the copy has no dialling path)', async () => {
    const { createConnection } = await import('node:net');
    const server = socksv5.createServer({ auths: [socksv5.auth.None()] });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as { port: number };
      const socket = createConnection(port, '127.0.0.1');
      const received: Buffer[] = [];
      socket.on('data', (d: Buffer) => received.push(d));
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.write(Buffer.from('050100' + '050100017f0000010050', 'hex')); // greeting, then CONNECT 127.0.0.1:80
      await closed;
      expect(Buffer.concat(received).toString('hex')).toBe('0500' + '05020001000000000000');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
