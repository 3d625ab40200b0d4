import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { spawn } from 'node:child_process';

/** A local HTTP server with one big random file and a small HTML page; it counts the requests it served. */
export interface Web {
  port: number;
  host: string;
  fileSha256: string;
  fileSize: number;
  pageToken: string;
  requests: number;
  close(): Promise<void>;
}

export async function startWeb(fileSize: number, host = '127.0.0.1'): Promise<Web> {
  const file = randomBytes(fileSize);
  const pageToken = `gkd-page-${randomBytes(8).toString('hex')}`;
  const state = { requests: 0 };
  const server = http.createServer((req, res) => {
    state.requests++;
    if (req.url === '/file') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': file.length });
      res.end(file);
    } else {
      const body = `<!doctype html><html><head><title>gkd</title></head><body><p id="t">${pageToken}</p></body></html>`;
      res.writeHead(200, { 'content-type': 'text/html', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    }
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    port: (server.address() as AddressInfo).port,
    host,
    fileSha256: createHash('sha256').update(file).digest('hex'),
    fileSize,
    pageToken,
    get requests() {
      return state.requests;
    },
    set requests(v: number) {
      state.requests = v;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Run curl; its exit code, stderr, and the sha256 and size of what it wrote to stdout. */
export function curl(args: string[], timeoutMs = 120_000): Promise<{ code: number | null; stderr: string; sha256: string; bytes: number; stdout: string }> {
  return new Promise((resolve) => {
    const p = spawn('curl', ['-sS', '--max-time', String(Math.ceil(timeoutMs / 1000)), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const h = createHash('sha256');
    let bytes = 0;
    const head: Buffer[] = [];
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => {
      h.update(d);
      if (bytes < 65536) head.push(d);
      bytes += d.length;
    });
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('close', (code) => resolve({ code, stderr, sha256: h.digest('hex'), bytes, stdout: Buffer.concat(head).toString('latin1') }));
  });
}
