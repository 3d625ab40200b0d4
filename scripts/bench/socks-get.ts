/**
 * One HTTP GET through a SOCKS5 proxy, with its arrival timeline: what the multipath bench needs and curl
 * does not print (when each byte came, to measure a stall and the rate after a path failed, and a hash
 * to check the body byte for byte).
 *
 *   node --import tsx scripts/bench/socks-get.ts SOCKS_HOST:PORT DEST_HOST:PORT PATH CAP_SECONDS
 *
 * Prints one JSON line: { bytes, sha256, status, firstByteAt (epoch ms), bucketMs, buckets (body bytes
 * per bucket from firstByteAt), capped, error? }.
 */
import { createHash } from 'node:crypto';
import * as net from 'node:net';

const [socksAt = '127.0.0.1:1080', dest = '127.0.0.1:8080', path = '/bytes/1', capText = '30'] = process.argv.slice(2);
const BUCKET_MS = 50;
const [socksHost, socksPort] = split(socksAt);
const [destHost, destPort] = split(dest);

function split(hp: string): [string, number] {
  const i = hp.lastIndexOf(':');
  return [hp.slice(0, i), Number(hp.slice(i + 1))];
}

const hash = createHash('sha256');
const buckets: number[] = [];
let firstByteAt = 0;
let body = 0;
let status = 0;
let expected = -1;
let done = false;

function finish(error?: string): void {
  if (done) return;
  done = true;
  const out = {
    bytes: body,
    sha256: hash.digest('hex'),
    status,
    firstByteAt,
    bucketMs: BUCKET_MS,
    buckets,
    capped: expected >= 0 && body < expected,
    ...(error ? { error } : {}),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
}

const sock = net.connect(socksPort, socksHost);
const cap = setTimeout(() => {
  sock.destroy();
  finish();
}, Number(capText) * 1000);
sock.on('error', (err) => finish(err.message));
sock.on('close', () => {
  clearTimeout(cap);
  finish(expected >= 0 && body < expected ? 'connection closed early' : undefined);
});

// SOCKS5: no auth, CONNECT to a domain name (the proxy resolves, as curl --socks5-hostname does).
let stage: 'greet' | 'connect' | 'head' | 'body' = 'greet';
let pending = Buffer.alloc(0);
sock.on('connect', () => sock.write(Buffer.from([5, 1, 0])));
sock.on('data', (chunk: Buffer) => {
  if (stage === 'body') return onBody(chunk);
  pending = Buffer.concat([pending, chunk]);
  if (stage === 'greet') {
    if (pending.length < 2) return;
    if (pending[1] !== 0) return finish('SOCKS5: no acceptable auth method');
    pending = pending.subarray(2);
    const host = Buffer.from(destHost);
    const req = Buffer.concat([Buffer.from([5, 1, 0, 3, host.length]), host, Buffer.from([destPort >> 8, destPort & 255])]);
    sock.write(req);
    stage = 'connect';
  }
  if (stage === 'connect') {
    if (pending.length < 5) return;
    if (pending[1] !== 0) return finish(`SOCKS5: CONNECT failed, REP ${pending[1]}`);
    const len = pending[3] === 1 ? 10 : pending[3] === 4 ? 22 : 7 + pending[4]!;
    if (pending.length < len) return;
    pending = pending.subarray(len);
    sock.write(`GET ${path} HTTP/1.1\r\nHost: ${destHost}:${destPort}\r\nConnection: close\r\n\r\n`);
    stage = 'head';
  }
  if (stage === 'head') {
    const end = pending.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = pending.subarray(0, end).toString('latin1');
    status = Number(/^HTTP\/1\.[01] (\d+)/.exec(head)?.[1] ?? 0);
    const m = /\r\ncontent-length: *(\d+)/i.exec(head);
    expected = m ? Number(m[1]) : -1;
    const rest = pending.subarray(end + 4);
    pending = Buffer.alloc(0);
    stage = 'body';
    if (rest.length) onBody(rest);
  }
});

function onBody(chunk: Buffer): void {
  const now = Date.now();
  if (!firstByteAt) firstByteAt = now;
  const i = Math.floor((now - firstByteAt) / BUCKET_MS);
  while (buckets.length <= i) buckets.push(0);
  buckets[i]! += chunk.length;
  hash.update(chunk);
  body += chunk.length;
  if (expected >= 0 && body >= expected) sock.end();
}
