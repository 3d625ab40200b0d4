/**
 * The file server of the benchmarks: `GET /bytes/<n>` answers n bytes of incompressible data
 * (a 4 MiB random block, repeated), with Content-Length, written with backpressure. Serving from memory
 * keeps disk and page cache out of the measurement.
 *
 *   node --import tsx scripts/bench/fileserver.ts HOST PORT
 *
 * Prints `listening HOST:PORT` once ready.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';

const [host = '0.0.0.0', port = '8080'] = process.argv.slice(2);
const BLOCK = randomBytes(4 * 1024 * 1024);
const MAX = 64 * 1024 * 1024 * 1024;

const server = http.createServer((req, res) => {
  const m = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
  const n = m ? Number(m[1]) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX) {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('GET /bytes/<n>\n');
    return;
  }
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(n), Connection: 'close' });
  let left = n;
  const pump = (): void => {
    while (left > 0) {
      const chunk = left >= BLOCK.length ? BLOCK : BLOCK.subarray(0, left);
      left -= chunk.length;
      if (!res.write(chunk)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  res.on('close', () => (left = 0));
  pump();
});
server.listen(Number(port), host, () => console.log(`listening ${host}:${port}`));
