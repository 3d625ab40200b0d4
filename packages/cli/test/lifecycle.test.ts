// How the real binary lives and dies: retrying an unreachable server, graceful shutdown on SIGTERM
// (drain, refuse new connections, cut what is left at the drain timeout), and the status line
// (absent on a pipe, present on a terminal).
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GKD_BIN, ROOT, childEnv, ensureBuilt, gkd, killAll, runGkd } from '@gkd/test-support';

let echo: net.Server;
let echoPort = 0;
let key = '';

beforeAll(async () => {
  await ensureBuilt();
  key = (await runGkd(['keygen'])).stdout.trim();
  echo = net.createServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  echoPort = (echo.address() as net.AddressInfo).port;
}, 300_000);
afterEach(killAll);
afterAll(() => new Promise<void>((resolve) => echo.close(() => resolve())));

/** A SOCKS5 CONNECT to 127.0.0.1:`port` through the proxy; resolves with the socket and the reply code. */
async function socksConnect(proxyPort: number, port: number): Promise<{ socket: net.Socket; rep: number }> {
  const socket = net.connect(proxyPort, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  let buffered = Buffer.alloc(0);
  const read = async (n: number): Promise<Buffer> => {
    while (buffered.length < n) {
      const [chunk] = (await Promise.race([once(socket, 'data'), once(socket, 'close').then(() => [Buffer.alloc(0)])])) as [Buffer];
      if (chunk.length === 0) throw new Error('proxy closed the connection');
      buffered = Buffer.concat([buffered, chunk]);
    }
    const out = buffered.subarray(0, n);
    buffered = buffered.subarray(n);
    return out;
  };
  socket.write(Buffer.from([5, 1, 0]));
  expect([...(await read(2))]).toEqual([5, 0]);
  socket.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 255]));
  const reply = await read(10).catch(() => Buffer.from([5, 0xff]));
  return { socket, rep: reply[1]! };
}

/** Write `text` and wait for it to come back from the echo server. */
async function roundTrip(socket: net.Socket, text: string): Promise<void> {
  let got = '';
  socket.setEncoding('utf8');
  socket.write(text);
  while (got.length < text.length) got += ((await once(socket, 'data')) as [string])[0];
  expect(got).toBe(text);
}

describe('an unreachable server', () => {
  it('the client warns with the backoff delay, keeps retrying and stays up', async () => {
    const nobody = await getPort({ host: '127.0.0.1' });
    const client = gkd(['client', '--plaintext', '--server', `127.0.0.1:${nobody}`, '--tunnels', '2', '--socks', '127.0.0.1:0'], { env: { GKD_KEY: key } });
    const retry = /warn {2}cannot reach the server 127\.0\.0\.1:\d+ \(connect ECONNREFUSED[^)]*\); tunnel \d retrying in \d+\.\d s \(attempt \d+\)/;
    await client.waitFor('stderr', retry, { count: 2 });
    expect(client.child.exitCode).toBeNull();
    expect(client.stdout).toBe(''); // not ready: no ready line
    client.kill('SIGTERM');
    expect((await client.exited).code).toBe(0);
  });
});

describe('SIGTERM', () => {
  it('with nothing open: stops at once, exit 0', async () => {
    const up = gkd(['up', '--socks', '127.0.0.1:0', '--tunnels', '2']);
    await up.ready();
    const t0 = Date.now();
    up.kill('SIGTERM');
    expect((await up.exited).code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(up.stderr).toMatch(/SIGTERM: stopping/);
    expect(up.stderr).toMatch(/info {2}stopped\n$/);
  });

  it('refuses new connections, lets an open one drain up to --drain-timeout, then cuts it, exit 0', async () => {
    const up = gkd(['up', '--socks', '127.0.0.1:0', '--tunnels', '2', '--allow', `127.0.0.1:${echoPort}`, '--drain-timeout', '1.5']);
    const { socksPort } = await up.ready();
    const held = await socksConnect(socksPort, echoPort);
    expect(held.rep).toBe(0);
    await roundTrip(held.socket, 'before');

    const t0 = Date.now();
    up.kill('SIGTERM');
    await up.waitFor('stderr', /waiting up to 1\.5 s for 1 open connection to finish/);
    // The SOCKS5 port is closed at once: a new client is refused.
    const late = net.connect(socksPort, '127.0.0.1');
    const [err] = (await once(late, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNREFUSED');
    await roundTrip(held.socket, 'during'); // the open one still works

    const closed = once(held.socket, 'close');
    const { code } = await up.exited;
    const elapsed = Date.now() - t0;
    expect(code).toBe(0);
    expect(elapsed).toBeGreaterThanOrEqual(1400);
    expect(elapsed).toBeLessThan(5000);
    expect(up.stderr).toMatch(/closing 1 connection still open/);
    await closed;
  }, 20_000);

  it('exits as soon as the open connections finish, before the drain timeout', async () => {
    const up = gkd(['up', '--socks', '127.0.0.1:0', '--tunnels', '2', '--allow', `127.0.0.1:${echoPort}`, '--drain-timeout', '30']);
    const { socksPort } = await up.ready();
    const held = await socksConnect(socksPort, echoPort);
    await roundTrip(held.socket, 'hello');
    const t0 = Date.now();
    up.kill('SIGTERM');
    await up.waitFor('stderr', /waiting up to 30 s for 1 open connection/);
    held.socket.end(); // the echo server ends its side too: the stream closes
    expect((await up.exited).code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(up.stderr).not.toMatch(/still open/);
  });

  it('gkd server drains and exits 0 too', async () => {
    const server = gkd(['server', '--listen', '127.0.0.1:0'], { env: { GKD_KEY: key } });
    await server.waitFor('stdout', /server listening/);
    server.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
    expect(server.stderr).toMatch(/info {2}stopped\n$/);
  });
});

describe('status line', () => {
  it('is absent when stdout is not a terminal: stdout holds only the ready line', async () => {
    const up = gkd(['up', '--socks', '127.0.0.1:0', '--tunnels', '2', '--allow', `127.0.0.1:${echoPort}`]);
    const { socksPort } = await up.ready();
    const s = await socksConnect(socksPort, echoPort);
    await roundTrip(s.socket, 'x'.repeat(100_000));
    s.socket.destroy();
    up.kill('SIGTERM');
    await up.exited;
    expect(up.stdout).toMatch(/^gkd: SOCKS5 proxy on 127\.0\.0\.1:\d+ \(server 127\.0\.0\.1:\d+, 2 tunnels up\)\n$/);
    expect(up.stdout).not.toContain('\r');
    expect(up.stderr).not.toContain('\r');
    expect(up.stderr).not.toContain('tunnels 2/2 ·');
  });

  const haveScript = (() => {
    try {
      execFileSync('script', ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  if (!haveScript) console.log('skipping the terminal status-line tests: `script` (util-linux) is not installed');

  /** Run `gkd up …` under a pseudo-terminal (script -qfec); resolves once `until` matches its output. */
  async function underTerminal(args: string[], until: RegExp): Promise<string> {
    const command = [process.execPath, GKD_BIN, ...args].map((a) => `'${a}'`).join(' ');
    const child = spawn('script', ['-qfec', command, '/dev/null'], { cwd: ROOT, env: childEnv({ COLUMNS: '200' }), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${until} in terminal output:\n${JSON.stringify(out)}`)), 20_000);
        const check = (): void => {
          if (until.test(out)) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout.on('data', check);
        child.once('exit', () => {
          clearTimeout(timer);
          reject(new Error(`script exited early:\n${out}`));
        });
      });
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    }
    return out;
  }

  it.skipIf(!haveScript)('is shown on a terminal: redrawn in place with tunnels, RTT, throughput and streams', async () => {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the status line is redrawn with the terminal's ESC [2K.
    const statusLine = /\r\x1b\[2Ktunnels 2\/2 · rtt [\d.]+ [\d.]+ ms · ↓ [\d.]+ k?B\/s ↑ [\d.]+ k?B\/s · 0 streams/;
    const out = await underTerminal(['up', '--socks', '127.0.0.1:0', '--tunnels', '2'], statusLine);
    expect(out).toMatch(/gkd: SOCKS5 proxy on 127\.0\.0\.1:\d+/);
  });

  it.skipIf(!haveScript)('gkd server on a terminal prints the connection link, the same one `gkd link` prints', async () => {
    const port = await getPort({ host: '127.0.0.1' });
    const out = await underTerminal(['server', '--listen', `127.0.0.1:${port}`], /connection link \(a secret: it holds the key\): (gkd:\/\/\S+)/);
    const printed = /connection link \(a secret: it holds the key\): (gkd:\/\/\S+)/.exec(out)![1];
    const again = await runGkd(['link', '--listen', `127.0.0.1:${port}`]);
    expect(again.code).toBe(0);
    expect(printed).toBe(again.stdout.trim());
  });

  it.skipIf(!haveScript)('--quiet turns it off on a terminal', async () => {
    const out = await underTerminal(['up', '--socks', '127.0.0.1:0', '--tunnels', '2', '--quiet'], /gkd: SOCKS5 proxy on 127\.0\.0\.1:\d+ [^\n]*\n/);
    expect(out).not.toContain('tunnels 2/2 ·');
    expect(out).not.toContain('\x1b[2K');
  });
});
