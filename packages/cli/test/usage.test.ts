// The gkd binary's command line: keygen, help, missing key, bad flags, config file and environment,
// users files, ports in use. Every case runs the real binary (`node packages/cli/bin/gkd.js`).
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import getPort from 'get-port';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, gkd, killAll, runGkd, testTmpDir } from '@gkd/test-support';

const dir = testTmpDir('gkd-cli-usage');
let key = '';

beforeAll(async () => {
  await ensureBuilt();
  key = (await runGkd(['keygen'])).stdout.trim();
}, 300_000);
afterEach(killAll);

describe('gkd keygen', () => {
  it('prints a fresh 32-byte base64url key on its own line', async () => {
    const a = await runGkd(['keygen']);
    const b = await runGkd(['keygen']);
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/^[A-Za-z0-9_-]{43}\n$/);
    expect(Buffer.from(a.stdout.trim(), 'base64url')).toHaveLength(32);
    expect(a.stdout).not.toBe(b.stdout);
    expect(a.stderr).toBe('');
  });

  it('makes a key that `gkd server` accepts (GKD_KEY)', async () => {
    const server = gkd(['server', '--listen', '127.0.0.1:0'], { env: { GKD_KEY: key } });
    await server.waitFor('stdout', /^gkd: server listening on 127\.0\.0\.1:\d+ \(TLS, one key\)$/m);
    server.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
  });
});

describe('help', () => {
  it('lists the commands and states the precedence', async () => {
    const r = await runGkd(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['up', 'server', 'client', 'keygen']) expect(r.stdout).toContain(`gkd ${c}`);
    expect(r.stdout).toMatch(/flags > environment > config file > defaults/);
  });

  it('lists every flag of a command', async () => {
    const r = await runGkd(['client', '--help']);
    expect(r.code).toBe(0);
    for (const f of [
      '--server',
      '--tunnels',
      '--socks',
      '--http',
      '--user',
      '--tls',
      '--tls-fingerprint',
      '--tls-ca',
      '--socks-user',
      '--socks-pass',
      '--key',
      '--metrics',
      '--drain-timeout',
      '--log-level',
      '--log-format',
      '--quiet',
      '--config',
    ]) {
      expect(r.stdout).toContain(f);
    }
    expect(r.stdout).toMatch(/flags > environment > config file > defaults/);
  });

  it('no command is a usage error (exit 2)', async () => {
    const r = await runGkd([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/gkd up, server, client, link or keygen/);
  });
});

describe('missing key', () => {
  it.each([['client', ['client', '--server', '127.0.0.1:9990', '--socks', '127.0.0.1:0', '--plaintext']]])(
    'gkd %s refuses to start, says how to make one, exit 2',
    async (_name, args) => {
      const r = await runGkd(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('gkd keygen');
      expect(r.stderr).toContain('GKD_KEY');
      expect(r.stdout).toBe('');
    },
  );
});

describe('bad flag values name the flag (exit 2)', () => {
  const cases: [string, string[], RegExp][] = [
    ['tunnels 0', ['up', '--tunnels', '0'], /--tunnels must be an integer 1–256, got "0"/],
    ['tunnels text', ['up', '--tunnels', 'many'], /--tunnels must be an integer 1–256, got "many"/],
    ['listen port', ['server', '--listen', '0.0.0.0:99999'], /--listen: invalid port in "0\.0\.0\.0:99999"/],
    ['listen shape', ['server', '--listen', 'nowhere'], /--listen must be HOST:PORT/],
    ['socks port', ['up', '--socks', '127.0.0.1:x'], /--socks: invalid port/],
    ['server port 0', ['client', '--plaintext', '--server', 'example.com:0'], /--server: invalid port in "example\.com:0"/],
    ['log level', ['up', '--log-level', 'loud'], /--log-level must be one of error, warn, info, debug, got "loud"/],
    ['log format', ['up', '--log-format', 'xml'], /--log-format must be one of pretty, json/],
    ['drain timeout', ['up', '--drain-timeout', 'soon'], /--drain-timeout must be a number of seconds/],
    ['allow rule', ['up', '--allow', '10.0.0.0/33'], /--allow "10\.0\.0\.0\/33": .*prefix length/],
    ['port-only allow', ['up', '--allow', ':443'], /--allow ":443"/],
    ['fingerprint', ['client', '--server', 'h', '--tls-fingerprint', 'abc'], /--tls-fingerprint must be a SHA-256 fingerprint/],
    ['ca file', ['client', '--server', 'h', '--tls-ca', '/nonexistent/ca.pem'], /--tls-ca \/nonexistent\/ca\.pem: cannot read it/],
    ['cert without key', ['server', '--tls-cert', '/x.pem'], /--tls-cert needs --tls-key too/],
    ['socks user alone', ['up', '--socks-user', 'me'], /--socks-user needs --socks-pass too/],
    ['key too short', ['server', '--key', 'abcd'], /--key must be at least 128 bits/],
    ['key not base64', ['server', '--key', 'not a key!'], /--key is not hex or base64/],
    ['unknown flag', ['up', '--tunnel', '3'], /gkd up: unknown flag --tunnel\b/],
    ['flag of another command', ['client', '--listen', '1.2.3.4:5'], /gkd client: unknown flag --listen \(it is a flag of gkd server, gkd link\)/],
    ['missing value', ['up', '--socks'], /socks/],
    ['stray argument', ['up', 'now'], /gkd up: unexpected argument "now"/],
    ['unknown command', ['upp'], /unknown command "upp"; the commands are up, server, client, link and keygen/],
    [
      'client without a way to check the server',
      ['client', '--server', 'h'],
      /no way to check the server's certificate: .*link.*--tls-fingerprint.*--plaintext/,
    ],
    ['plaintext and a pin', ['client', '--server', 'h', '--plaintext', '--tls-fingerprint', 'AB'.repeat(32)], /give --plaintext or TLS flags/],
    [
      'server plaintext and a certificate',
      ['server', '--plaintext', '--tls-cert', '/x.pem', '--tls-key', '/y.pem'],
      /give --plaintext or --tls-cert, not both/,
    ],
    ['link and a key', ['client', 'gkd://h:1?v=1&key=' + 'A'.repeat(43) + '&fp=' + 'AB'.repeat(32), '--key', 'B'.repeat(43)], /give --link or --key, not both/],
    [
      'a plaintext link without --plaintext',
      ['client', 'gkd://h:1?v=1&key=' + 'A'.repeat(43) + '&plaintext=1'],
      /is for a server run with --plaintext.*Add --plaintext/,
    ],
    ['a link of a newer format', ['client', 'gkd://h:1?v=2&key=' + 'A'.repeat(43) + '&fp=' + 'AB'.repeat(32)], /link version 2 is not supported/],
    ['two links', ['client', 'gkd://a', 'gkd://b'], /unexpected argument "gkd:\/\/b"/],
  ];
  it.each(cases)('%s', async (name, args, message) => {
    // A link carries its own key: GKD_KEY as well would be refused as "not both".
    const r = await runGkd(args, { env: /link/.test(name) && !/and a key/.test(name) ? {} : { GKD_KEY: key } });
    expect(r.stderr).toMatch(message);
    expect(r.code).toBe(2);
  });

  it('names the environment variable when the value came from there', async () => {
    const r = await runGkd(['up'], { env: { GKD_TUNNELS: '300' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--tunnels \(from GKD_TUNNELS\) must be an integer 1–256, got "300"/);
  });
});

describe('--config file', () => {
  it('names the file and the key for a bad value', async () => {
    const file = join(dir, 'bad-value.json');
    writeFileSync(file, JSON.stringify({ tunnels: 0 }));
    const r = await runGkd(['up', '--config', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--tunnels (from "tunnels" in ${file}) must be an integer 1–256, got "0"`);
  });

  it('refuses an unknown key (a typo) and invalid JSON', async () => {
    const typo = join(dir, 'typo.json');
    writeFileSync(typo, JSON.stringify({ tunnel: 4 }));
    const r1 = await runGkd(['up', '--config', typo]);
    expect(r1.code).toBe(2);
    expect(r1.stderr).toContain(`--config ${typo}: unknown key "tunnel"`);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, '{ "tunnels": ');
    const r2 = await runGkd(['up', '--config', broken]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toContain(`--config ${broken}: not valid JSON`);
    const r3 = await runGkd(['up', '--config', join(dir, 'missing.json')]);
    expect(r3.code).toBe(2);
    expect(r3.stderr).toMatch(/--config .*missing\.json: cannot read it/);
  });

  it('gives a server its key, listen address and rules (and GKD_CONFIG names the file)', async () => {
    const file = join(dir, 'server.json');
    writeFileSync(file, JSON.stringify({ key, listen: '127.0.0.1:0', allow: ['127.0.0.1'], 'log-level': 'debug' }));
    const s = gkd(['server'], { env: { GKD_CONFIG: file } });
    await s.waitFor('stdout', /server listening on 127\.0\.0\.1:\d+/);
    await s.waitFor('stderr', /destination policy: allow 127\.0\.0\.1/);
    s.kill();
    expect((await s.exited).code).toBe(0);
  });
});

describe('--users file', () => {
  it('starts a server with valid users', async () => {
    const file = join(dir, 'users.json');
    writeFileSync(file, JSON.stringify({ alice: key, bob: (await runGkd(['keygen'])).stdout.trim() }));
    const s = gkd(['server', '--listen', '127.0.0.1:0', '--users', file]);
    await s.waitFor('stdout', new RegExp(`server listening on 127\\.0\\.0\\.1:\\d+ \\(TLS, 2 users from ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)`));
    s.kill();
    expect((await s.exited).code).toBe(0);
  });

  const bad: [string, () => unknown, RegExp][] = [
    ['a bad key', () => ({ alice: key, bob: 'c2hvcnQ' }), /user "bob": the key must be at least 128 bits.*gkd keygen/],
    ['a key that is not a string', () => ({ carol: 42 }), /user "carol": the key must be a string/],
    ['not an object', () => [key], /must be a JSON object of user names and keys/],
    ['no users', () => ({}), /no users in it/],
  ];
  it.each(bad)('refuses a file with %s, naming the file and the user', async (_name, content, message) => {
    const file = join(dir, `users-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify(content()));
    const r = await runGkd(['server', '--listen', '127.0.0.1:0', '--users', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--users ${file}:`);
    expect(r.stderr).toMatch(message);
  });

  it('refuses --users together with a key', async () => {
    const file = join(dir, 'users.json');
    const r = await runGkd(['server', '--users', file], { env: { GKD_KEY: key } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/give --users or --key \(from GKD_KEY\), not both/);
  });
});

describe('a port in use', () => {
  let blocker: net.Server;
  let port = 0;
  beforeAll(async () => {
    port = await getPort({ host: '127.0.0.1' });
    blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => blocker.close(() => resolve())));

  it.each([
    ['--socks', ['up', '--socks', 'PORT']],
    ['--http', ['up', '--socks', '127.0.0.1:0', '--http', 'PORT']],
    ['--listen', ['server', '--listen', 'PORT']],
    ['--metrics', ['up', '--socks', '127.0.0.1:0', '--metrics', 'PORT']],
  ])('%s: says which address is in use, exit 1', async (flag, args) => {
    const r = await runGkd(
      args.map((a) => (a === 'PORT' ? `127.0.0.1:${port}` : a)),
      { env: { GKD_KEY: key } },
    );
    expect(r.stderr).toContain(`${flag} 127.0.0.1:${port}: address already in use`);
    expect(r.code).toBe(1);
    expect(r.stdout).not.toContain('gkd: SOCKS5 proxy on');
  });
});
