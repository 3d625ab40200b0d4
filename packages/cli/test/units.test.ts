// The CLI's pieces in process (no child processes): flag sources and precedence, validation,
// monotonic stats, the status line's rate limit, retry-log throttling, port fallback, draining.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { Writable } from 'node:stream';
import getPort from 'get-port';
import type { SessionStats, TunnelStats } from '@gkd/transport';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Args, checkCommandLine } from '../src/args.js';
import { newKey } from '../src/commands/keygen.js';
import { FLAGS, envName } from '../src/flags.js';
import { StartError, listenWithFallback } from '../src/listen.js';
import { LogDigest } from '../src/log-digest.js';
import { LogSink, createLogger } from '../src/logger.js';
import { availableParallelism } from 'node:os';
import { DEFAULT_LIMITS } from '@gkd/server';
import { clientSettings, serverSettings, upSettings, workerCount } from '../src/options.js';
import { RetryLog } from '../src/retry-log.js';
import { TransportSampler } from '../src/sampler.js';
import { drainAndClose } from '../src/shutdown.js';
import { StatusLine, formatClientStatus, formatRate } from '../src/status-line.js';
import { checkCongestion, notsentLowatTip, socketTuningLines } from '../src/tuning.js';

const KEY = 'Svz_12V9Gfa-V67vHKw3uXVQjGziO1yg9CmhRRNUqrE';

/** A logger whose JSON lines land in `records`. */
function capture(): { logger: ReturnType<typeof createLogger>; records: { level: string; message: string }[] } {
  const records: { level: string; message: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _e, cb) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) records.push(JSON.parse(l) as { level: string; message: string });
      cb();
    },
  });
  return { logger: createLogger({ level: 'debug', format: 'json', sink: new LogSink(stream) }), records };
}

function args(values: Record<string, unknown>, argv: string[] = [], env: Record<string, string> = {}): Args {
  return new Args(values, argv, env);
}

describe('Args: where a value came from', () => {
  it('booleans: command line > GKD_* (1/0, yes/no) > config file', () => {
    expect(args({ quiet: false }, [], { GKD_QUIET: '1' }).bool('quiet')).toBe(true); // yargs reads "1" as false
    expect(args({ quiet: false }, ['--no-quiet'], { GKD_QUIET: 'yes' }).bool('quiet')).toBe(false);
    expect(args({ quiet: true }, ['--quiet'], { GKD_QUIET: '0' }).bool('quiet')).toBe(true);
    expect(args({ quiet: true }).bool('quiet')).toBe(true);
    expect(args({}).bool('quiet')).toBeUndefined();
    expect(() => args({}, [], { GKD_QUIET: 'maybe' }).bool('quiet')).toThrow(/GKD_QUIET must be true or false/);
  });

  it('labels name the flag and, when not from the command line, the source', () => {
    expect(args({ tunnels: '3' }, ['--tunnels', '3']).label('tunnels')).toBe('--tunnels');
    expect(args({ tunnels: '3' }, [], { GKD_TUNNELS: '3' }).label('tunnels')).toBe('--tunnels (from GKD_TUNNELS)');
    expect(args({ tunnels: 3, config: 'gkd.json' }).label('tunnels')).toBe('--tunnels (from "tunnels" in gkd.json)');
  });

  it('the last of a repeated flag wins; lists split on commas', () => {
    expect(args({ tunnels: ['5', '6'] }).string('tunnels')).toBe('6');
    expect(args({ allow: ['a,b', 'c'] }).list('allow')).toEqual(['a', 'b', 'c']);
    expect(args({ allow: 'x' }).list('allow')).toEqual(['x']);
  });

  it('every flag maps to a GKD_ variable', () => {
    expect(envName('log-level')).toBe('GKD_LOG_LEVEL');
    expect(FLAGS.map((f) => envName(f.name))).toContain('GKD_SOCKS_PASS');
  });

  it('refuses unknown flags and stray arguments, pointing at the right command', () => {
    expect(() => checkCommandLine('up', ['up', '--tunnels', '3', '--no-quiet'], ['up'])).not.toThrow();
    expect(() => checkCommandLine('up', ['up', '--tunels', '3'], ['up'])).toThrow(/unknown flag --tunels/);
    expect(() => checkCommandLine('server', ['server', '--socks', 'x'], ['server'])).toThrow(/it is a flag of gkd client, gkd up/);
    expect(() => checkCommandLine('up', ['up', 'x'], ['up', 'x'])).toThrow(/unexpected argument "x"/);
  });
});

describe('keygen', () => {
  it('makes 32-byte base64url keys that never start with "-" (so `--key $(gkd keygen)` is not a flag)', () => {
    const keys = Array.from({ length: 500 }, newKey);
    for (const k of keys) {
      expect(k).toMatch(/^[A-Za-z0-9_][A-Za-z0-9_-]{42}$/);
      expect(Buffer.from(k, 'base64url')).toHaveLength(32);
    }
    expect(new Set(keys).size).toBe(500);
  });
});

describe('README', () => {
  it('documents every flag with its environment variable', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    for (const f of FLAGS) {
      expect(readme).toMatch(new RegExp(`\\| \`--${f.name}[ \`]`));
      expect(readme).toContain(`\`${envName(f.name)}\``);
    }
  });
});

describe('options', () => {
  it('client: --server without a port means 9990; defaults fill in', () => {
    const s = clientSettings(args({ server: 'example.com', key: KEY, plaintext: true }, ['--plaintext']));
    expect(s.server).toEqual({ host: 'example.com', port: 9990 });
    expect(clientSettings(args({ server: '[::1]', key: KEY, plaintext: true }, ['--plaintext'])).server).toEqual({ host: '::1', port: 9990 });
    expect(s).toMatchObject({
      tunnels: 'auto',
      minTunnels: 2,
      maxTunnels: 32,
      socks: { host: '127.0.0.1', port: 1080 },
      socksIsDefault: true,
      http: undefined,
      quiet: false,
      drainMs: 10_000,
      logLevel: 'info',
      logFormat: 'pretty',
      tls: undefined,
    });
    expect(Buffer.from(s.key).toString('base64url')).toBe(KEY);
  });

  it('client: --tunnels auto is the default; a number fixes it; --min/--max-tunnels only with auto, and in order', () => {
    const base = { server: 'h:1', key: KEY, plaintext: true };
    expect(clientSettings(args({ ...base, tunnels: '6' }, ['--plaintext'])).tunnels).toBe(6);
    expect(clientSettings(args({ ...base, tunnels: 'auto', 'min-tunnels': '4', 'max-tunnels': '64' }, ['--plaintext']))).toMatchObject({
      tunnels: 'auto',
      minTunnels: 4,
      maxTunnels: 64,
    });
    expect(clientSettings(args({ ...base, 'min-tunnels': '40' }, ['--plaintext']))).toMatchObject({ minTunnels: 40, maxTunnels: 40, startTunnels: 40 });
    expect(clientSettings(args({ ...base, 'start-tunnels': '8' }, ['--plaintext']))).toMatchObject({ startTunnels: 8 });
    expect(() => clientSettings(args({ ...base, 'start-tunnels': '64' }, ['--plaintext']))).toThrow(/--start-tunnels must be an integer 2–32/);
    expect(() => clientSettings(args({ ...base, tunnels: '6', 'start-tunnels': '8' }, ['--plaintext']))).toThrow(/--start-tunnels is for --tunnels auto/);
    expect(() => clientSettings(args({ ...base, tunnels: '6', 'max-tunnels': '9' }, ['--plaintext']))).toThrow(/--max-tunnels is for --tunnels auto/);
    expect(() => clientSettings(args({ ...base, 'min-tunnels': '8', 'max-tunnels': '4' }, ['--plaintext']))).toThrow(/must be at least --min-tunnels/);
    expect(() => clientSettings(args({ ...base, tunnels: 'many' }, ['--plaintext']))).toThrow(/--tunnels must be an integer 1–256/);
  });

  it('client: --server repeats (one server, several addresses) and --via gives the paths', () => {
    const s = clientSettings(
      args({ server: ['198.51.100.7', '[2001:db8::7]:443'], via: ['192.168.1.20:2', 'wwan0'], key: KEY, plaintext: true, tunnels: '3' }, ['--plaintext']),
    );
    expect(s.server).toEqual({ host: '198.51.100.7', port: 9990 });
    expect(s.servers).toEqual([
      { host: '198.51.100.7', port: 9990 },
      { host: '2001:db8::7', port: 443 },
    ]);
    expect(s.paths).toEqual([{ via: '192.168.1.20', tunnels: 2 }, { via: 'wwan0' }]);
    expect(clientSettings(args({ server: 'h', key: KEY, plaintext: true }, ['--plaintext'])).paths).toBeUndefined();
    expect(() => clientSettings(args({ server: 'h', via: ['wlan0', 'wlan0:2'], key: KEY, plaintext: true }, ['--plaintext', '--via']))).toThrow(
      /^--via: path wlan0 is given twice/,
    );
  });

  it('client TLS: --tls-fingerprint implies TLS; --tls alone uses the system CAs', () => {
    const fp = 'AB:'.repeat(31) + 'AB';
    expect(clientSettings(args({ server: 'h:1', key: KEY, 'tls-fingerprint': fp })).tls).toEqual({ fingerprint: 'AB'.repeat(32) });
    expect(clientSettings(args({ server: 'h:1', key: KEY, tls: true }, ['--tls'])).tls).toEqual({});
    expect(() => clientSettings(args({ server: 'h:1', key: KEY, 'tls-fingerprint': fp, 'tls-ca': '/x' }))).toThrow(/not both/);
  });

  it('client: TLS unless --plaintext; without a pin, a CA, --tls or a link it refuses to start', () => {
    expect(() => clientSettings(args({ server: 'h:1', key: KEY }))).toThrow(/no way to check the server's certificate/);
    expect(clientSettings(args({ server: 'h:1', key: KEY, plaintext: true }, ['--plaintext'])).tls).toBeUndefined();
  });

  it('client: a link gives the server, the key, the user and the pin', () => {
    const link = `gkd://alice@vps.example.com:4433?v=1&key=${KEY}&fp=${'AB'.repeat(32)}`;
    const s = clientSettings(args({ link }, ['--link', link]));
    expect(s).toMatchObject({
      server: { host: 'vps.example.com', port: 4433 },
      user: 'alice',
      tls: { fingerprint: 'AB'.repeat(32) },
      linkOnCommandLine: true,
      keyOnCommandLine: false,
    });
    expect(Buffer.from(s.key).toString('base64url')).toBe(KEY);
    expect(clientSettings(new Args({ link }, [], { GKD_LINK: link })).linkOnCommandLine).toBe(false);
    expect(() => clientSettings(args({ link, server: 'other:1' }, ['--link', link]))).toThrow(/give --link or --server/);
    expect(() => clientSettings(args({ link: link.replace(/key=[^&]+/, 'key=c2hvcnQ') }))).toThrow(/at least 128 bits/);
  });

  it("server: a key, a users file, or (neither) the state directory's; listen defaults to 0.0.0.0:9990; TLS self-signed unless --plaintext or --tls-cert", () => {
    const s = serverSettings(args({ key: KEY }, ['--key', KEY]));
    expect(s.listen).toEqual({ host: '0.0.0.0', port: 9990 });
    expect(s.keyOnCommandLine).toBe(true);
    expect(s.tls).toBe('self-signed');
    const bare = serverSettings(args({ 'state-dir': '/tmp/x' }));
    expect(bare.auth).toBeUndefined();
    expect(bare.stateDir).toBe('/tmp/x');
    expect(serverSettings(args({ plaintext: true }, ['--plaintext'])).tls).toBe('plaintext');
  });

  it('server: --workers defaults to the available cores (1 keeps one process), at most 256; auto is the same', () => {
    const none = args({});
    expect(workerCount(none, undefined, 6)).toBe(6);
    expect(workerCount(none, undefined, 1)).toBe(1);
    expect(workerCount(none, undefined, 512)).toBe(256);
    expect(workerCount(none, 'auto', 12)).toBe(12);
    expect(workerCount(none, '1', 12)).toBe(1);
    expect(serverSettings(args({})).workers).toBe(Math.min(256, availableParallelism()));
    expect(serverSettings(args({ workers: '1' }, ['--workers', '1'])).workers).toBe(1);
    for (const bad of ['0', '257', 'two', '1.5', '-1'])
      expect(() => serverSettings(args({ workers: bad }, ['--workers', bad]))).toThrow(`--workers must be a number 1–256 or auto, got "${bad}"`);
  });

  it('server: the limit flags set @gkd/server limits (only those given), validated by name', () => {
    expect(serverSettings(args({})).limits).toEqual({});
    const s = serverSettings(
      args({
        'max-peers': '5',
        'max-tunnels-per-session': '8',
        'max-tunnels-per-peer': '16',
        'max-total-tunnels': '100',
        'max-handshakes': '64',
        'max-handshakes-per-address': '4',
      }),
    );
    expect(s.limits).toEqual({ maxPeers: 5, maxTunnelsPerSession: 8, maxTunnelsPerPeer: 16, maxTunnels: 100, maxHandshakes: 64, maxHandshakesPerAddress: 4 });
    expect(() => serverSettings(args({ 'max-tunnels-per-session': '65536' }, ['--max-tunnels-per-session', '65536']))).toThrow(
      '--max-tunnels-per-session must be a number 1–65535, got "65536"',
    );
    expect(() => serverSettings(args({ 'max-total-tunnels': '0' }, [], { GKD_MAX_TOTAL_TUNNELS: '0' }))).toThrow(
      '--max-total-tunnels (from GKD_MAX_TOTAL_TUNNELS) must be a number 1–1000000, got "0"',
    );
    expect(() => serverSettings(args({ 'max-handshakes': '16' }, ['--max-handshakes', '16']))).toThrow(
      `--max-handshakes leaves --max-handshakes-per-address (${DEFAULT_LIMITS.maxHandshakesPerAddress}) above --max-handshakes (16)`,
    );
    expect(() => serverSettings(args({ 'max-handshakes-per-address': '300' }, ['--max-handshakes-per-address', '300']))).toThrow(
      '--max-handshakes-per-address leaves --max-handshakes-per-address (300) above --max-handshakes (256)',
    );
  });

  it('server: --proxy-protocol is off unless given', () => {
    expect(serverSettings(args({})).proxyProtocol).toBe(false);
    expect(serverSettings(args({ 'proxy-protocol': true }, ['--proxy-protocol'])).proxyProtocol).toBe(true);
    expect(serverSettings(args({}, [], { GKD_PROXY_PROTOCOL: '1' })).proxyProtocol).toBe(true); // Args reads booleans' GKD_* itself
  });

  it('up: --socks given is not the default; --drain-timeout is seconds', () => {
    const s = upSettings(args({ socks: '127.0.0.1:1081', 'drain-timeout': '2.5', allow: ['127.0.0.1'] }));
    expect(s).toMatchObject({ socksIsDefault: false, socks: { port: 1081 }, drainMs: 2500, allow: ['127.0.0.1'] });
    expect(() => upSettings(args({ socks: '127.0.0.1:1080', http: '127.0.0.1:1080' }))).toThrow(/cannot share/);
  });
});

function tunnel(id: number, index: number, bytesIn: number, framesIn = 1): TunnelStats {
  return {
    id,
    index,
    state: 'open',
    rtt: 2,
    bytesIn,
    bytesOut: 10,
    framesIn,
    framesOut: 1,
    queued: 0,
    inflight: 0,
    rate: null,
    unconfirmed: 0,
    mode: 'user',
    congestion: null,
    notSentLowat: 0,
    express: false,
    pacing: false,
    kernel: null,
  };
}

function session(id: string, bytesIn: number, tunnels: TunnelStats[], resentFrames = 0, sent = 0): SessionStats {
  const datagrams = { associations: 0, sent, received: 0, dropped: 0, droppedTooLarge: 0, droppedUnknown: 0 };
  return {
    id,
    tunnelsUp: tunnels.length,
    streamsOpen: 0,
    bytesIn,
    bytesOut: 0,
    resentFrames,
    resentBytes: 0,
    holResentFrames: 0,
    holLateFrames: 0,
    duplicateBytes: 0,
    recvBudgetUsed: 0,
    sendBudgetUsed: 0,
    heldFrames: 0,
    datagrams,
    tunnels,
    streams: [],
  };
}

describe('TransportSampler', () => {
  it('totals never go down when tunnels reconnect or the session is replaced', () => {
    let now: SessionStats[] = [session('a', 1000, [tunnel(1, 0, 100), tunnel(2, 1, 50)], 3)];
    const sampler = new TransportSampler(() => now);
    let snap = sampler.sample();
    expect(snap.tunnels.get(0)!.bytesIn).toBe(100);
    now = [session('a', 1500, [tunnel(1, 0, 160), tunnel(2, 1, 50)], 4)];
    snap = sampler.sample();
    expect(snap.tunnels.get(0)!.bytesIn).toBe(160);
    expect(snap.resentFrames).toBe(4);
    // Tunnel 0 reconnected (new id, counters from 0); then a new session.
    now = [session('a', 1600, [tunnel(3, 0, 30), tunnel(2, 1, 50)], 4)];
    snap = sampler.sample();
    expect(snap.tunnels.get(0)!.bytesIn).toBe(190);
    now = [session('b', 200, [tunnel(4, 0, 5)], 1)];
    snap = sampler.sample();
    expect(snap.tunnels.get(0)!.bytesIn).toBe(195);
    expect(snap.bytesIn).toBe(1800);
    expect(snap.resentFrames).toBe(5);
  });

  it('totals the datagrams of every session, across a session replacement', () => {
    let now: SessionStats[] = [session('a', 0, [], 0, 7)];
    const sampler = new TransportSampler(() => now);
    expect(sampler.sample().datagramsSent).toBe(7);
    now = [session('b', 0, [], 0, 3)];
    expect(sampler.sample().datagramsSent).toBe(10);
  });
});

describe('status line', () => {
  afterEach(() => vi.useRealTimers());

  it('shows UDP datagrams and drops once there were any', () => {
    const base = { tunnelsUp: 1, tunnels: 1, rtt: [1], down: 0, up: 0, streams: 0 };
    expect(formatClientStatus({ ...base, datagrams: { sent: 0, received: 0, dropped: 0 } })).not.toContain('udp');
    expect(formatClientStatus({ ...base, datagrams: { sent: 12, received: 10, dropped: 2 } })).toMatch(/ · udp ↑ 12 ↓ 10 · 2 dropped$/);
  });

  it('with paths: tunnels, median RTT and rates per path instead of per-tunnel RTTs', () => {
    expect(
      formatClientStatus({
        tunnelsUp: 4,
        tunnels: 8,
        rtt: [],
        down: 7_100_000,
        up: 40_000,
        streams: 2,
        paths: [
          { name: 'wlan0', tunnelsUp: 4, tunnels: 4, rtt: 21.4, down: 5_100_000, up: 40_000 },
          { name: 'wwan0', tunnelsUp: 0, tunnels: 4, rtt: null, down: 0, up: 0 },
        ],
      }),
    ).toBe('wlan0 4/4 21 ms ↓ 5.1 MB/s ↑ 40.0 kB/s · wwan0 0/4 - ms ↓ 0 B/s ↑ 0 B/s · ↓ 7.1 MB/s ↑ 40.0 kB/s · 2 streams');
  });

  it('formats tunnels, per-tunnel RTT, throughput and streams', () => {
    expect(formatRate(999)).toBe('999 B/s');
    expect(formatRate(12_345_678)).toBe('12.3 MB/s');
    expect(formatClientStatus({ tunnelsUp: 2, tunnels: 3, rtt: [0.42, 12.6, null], down: 2_000_000, up: 1500, streams: 1 })).toBe(
      'tunnels 2/3 · rtt 0.4 13 - ms · ↓ 2.0 MB/s ↑ 1.5 kB/s · 1 stream',
    );
    // --tunnels auto: the ceiling, and past 8 tunnels the RTT range
    const rtt = Array.from({ length: 16 }, (_, i) => (i === 3 ? null : 100 + i));
    expect(formatClientStatus({ tunnelsUp: 15, tunnels: 16, auto: { ceiling: 32 }, rtt, down: 0, up: 0, streams: 2 })).toBe(
      'tunnels 15/16 auto ≤32 · rtt 100–115 ms · ↓ 0 B/s ↑ 0 B/s · 2 streams',
    );
  });

  it('renders at most twice a second, redraws in place, fits the width, and clears on stop', () => {
    vi.useFakeTimers();
    const writes: string[] = [];
    const out = { isTTY: true, columns: 20, write: (s: string) => writes.push(s) } as unknown as NodeJS.WriteStream;
    let renders = 0;
    const line = new StatusLine(out, () => `render ${++renders} ${'x'.repeat(40)}`, 100); // asks for 100 ms: held to 500
    line.start();
    for (let i = 0; i < 20; i++) line.interrupt(() => writes.push('log\n')); // log lines do not re-render
    vi.advanceTimersByTime(5000);
    expect(renders).toBe(11); // at start, then every 500 ms
    expect(writes.every((w) => w === 'log\n' || w.startsWith('\r\x1b[2K'))).toBe(true);
    expect(writes.filter((w) => w.startsWith('\r\x1b[2Kr')).every((w) => w.length - 5 <= 19)).toBe(true);
    line.stop();
    expect(writes[writes.length - 1]).toBe('\r\x1b[2K');
    expect(StatusLine.wanted(out, false)).toBe(true);
    expect(StatusLine.wanted(out, true)).toBe(false);
    expect(StatusLine.wanted({ isTTY: false } as NodeJS.WriteStream, false)).toBe(false);
  });
});

describe('RetryLog', () => {
  it('warns on attempts 1, 2, 4, 8 … and once per round for tunnels failing alike', () => {
    const { logger, records } = capture();
    const log = new RetryLog(logger, '127.0.0.1:9');
    const err = new Error('connect ECONNREFUSED');
    for (let attempt = 1; attempt <= 8; attempt++) for (let t = 0; t < 4; t++) log.failed(t, 100, err);
    const warns = records.filter((r) => r.level === 'warn');
    expect(warns.map((r) => /attempt (\d+)/.exec(r.message)![1])).toEqual(['1', '2', '4', '8']);
    expect(warns[0]!.message).toBe('cannot reach the server 127.0.0.1:9 (connect ECONNREFUSED); tunnel 0 retrying in 0.1 s (attempt 1)');
    expect(records.filter((r) => r.level === 'debug')).toHaveLength(28);
    log.up(2);
    log.failed(2, 100, new Error('other'));
    expect(records[records.length - 1]).toMatchObject({ level: 'warn', message: expect.stringContaining('tunnel 2 retrying in 0.1 s (attempt 1)') });
  });
});

describe('LogDigest', () => {
  afterEach(() => vi.useRealTimers());

  it('logs the first lines of a kind per window, sums up the rest when the window ends, and keeps kinds apart', () => {
    vi.useFakeTimers();
    const { logger, records } = capture();
    const digest = new LogDigest(logger, { windowMs: 10_000, burst: 3 });
    for (let i = 0; i < 1000; i++) digest.note('warn', 'evicted', 'refused tunnels (evicted)', `10.0.0.${i % 16}`, `evicted ${i}`);
    digest.note('warn', 'timeout', 'refused tunnels (timeout)', '10.0.0.1', 'timeout 0');
    expect(records.map((r) => r.message)).toEqual(['evicted 0', 'evicted 1', 'evicted 2', 'timeout 0']);
    vi.advanceTimersByTime(10_000);
    expect(records.slice(4)).toMatchObject([
      { level: 'warn', message: '997 more refused tunnels (evicted) in the last 10 s from 16 addresses (not logged one by one)' },
    ]);
    // A new window logs in full again.
    digest.note('warn', 'evicted', 'refused tunnels (evicted)', '10.0.0.1', 'evicted again');
    expect(records[records.length - 1]!.message).toBe('evicted again');
    vi.advanceTimersByTime(60_000);
    expect(records).toHaveLength(6); // nothing suppressed, nothing to sum up
  });

  it('flush() sums up at once; kinds beyond maxKinds share one count', () => {
    const { logger, records } = capture();
    const digest = new LogDigest(logger, { burst: 1, maxKinds: 2 });
    for (let k = 0; k < 10; k++) for (let i = 0; i < 3; i++) digest.note('info', `kind ${k}`, `kind ${k}`, undefined, `k${k} #${i}`);
    digest.flush();
    expect(records.map((r) => r.message)).toEqual([
      'k0 #0',
      'k1 #0',
      'k2 #0',
      '2 more kind 0 in the last 1 s (not logged one by one)',
      '2 more kind 1 in the last 1 s (not logged one by one)',
      '23 more other events in the last 1 s (not logged one by one)',
    ]);
  });
});

describe('listenWithFallback', () => {
  it('moves to a free port when the preferred one is taken (and says so), or fails naming the flag', async () => {
    const port = await getPort({ host: '127.0.0.1' });
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
    const { logger, records } = capture();
    const listen = (at: { host: string; port: number }): Promise<net.Server> =>
      new Promise((resolve, reject) => {
        const s = net.createServer();
        s.once('error', reject);
        s.listen(at.port, at.host, () => resolve(s));
      });
    try {
      const moved = await listenWithFallback('--socks', { host: '127.0.0.1', port }, true, listen, logger);
      const got = (moved.address() as net.AddressInfo).port;
      expect(got).not.toBe(port);
      expect(records.find((r) => r.level === 'warn')?.message).toBe(
        `127.0.0.1:${port} is already in use; using 127.0.0.1:${got} instead (pass --socks HOST:PORT to choose)`,
      );
      moved.close();
      const err = await listenWithFallback('--socks', { host: '127.0.0.1', port }, false, listen, logger).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StartError);
      expect((err as Error).message).toBe(`--socks 127.0.0.1:${port}: address already in use`);
    } finally {
      blocker.close();
    }
  });
});

describe('drainAndClose', () => {
  it('stops accepting, waits for the streams, closes; cuts them at the timeout; a second signal cuts at once', async () => {
    const { logger } = capture();
    const calls: string[] = [];
    let open = 2;
    const plan = { stopAccepting: () => calls.push('stop'), active: () => open, close: async () => void calls.push('close') };
    setTimeout(() => (open = 0), 100);
    expect(await drainAndClose(plan, { timeoutMs: 5000, logger })).toBe(0);
    expect(calls).toEqual(['stop', 'close']);

    open = 1;
    let t0 = Date.now();
    expect(await drainAndClose(plan, { timeoutMs: 200, logger })).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);

    const force = new AbortController();
    setTimeout(() => force.abort(), 50);
    t0 = Date.now();
    expect(await drainAndClose(plan, { timeoutMs: 10_000, logger, force: force.signal })).toBe(1);
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});

describe('notsentLowatTip', () => {
  it('tips when the kernel default (unlimited) is in force, and names the value', () => {
    expect(notsentLowatTip(() => '4294967295\n')).toMatch(/sysctl -w net\.ipv4\.tcp_notsent_lowat=131072 \(now 4294967295\)/);
  });
  it('says nothing when it is already low, or cannot be read (not Linux)', () => {
    expect(notsentLowatTip(() => '131072\n')).toBeUndefined();
    expect(notsentLowatTip(() => '16384')).toBeUndefined();
    expect(
      notsentLowatTip(() => {
        throw new Error('ENOENT');
      }),
    ).toBeUndefined();
    expect(notsentLowatTip(() => 'garbage')).toBeUndefined();
  });
});

describe('socket tuning lines and --congestion', () => {
  const proc = (files: Record<string, string>) => (p: string) => {
    if (!(p in files)) throw new Error('ENOENT');
    return files[p]!;
  };
  it('kernel mode: one info line naming TCP_NOTSENT_LOWAT, pacing and the congestion control', () => {
    expect(socketTuningLines('bbr', { available: true })).toEqual([
      {
        level: 'info',
        message:
          "tunnel sockets: kernel mode (TCP_NOTSENT_LOWAT 100 ms at each tunnel's rate, 16–128 KiB, pacing, TCP_INFO path estimates, congestion control bbr; tunnels to loopback addresses stay in user mode)",
      },
    ]);
  });
  it('user mode: says why, warns when --congestion cannot apply, and adds the sysctl tip where it helps', () => {
    const read = proc({ '/proc/sys/net/ipv4/tcp_notsent_lowat': '4294967295\n' });
    const lines = socketTuningLines('bbr', { available: false, reason: 'not Linux (darwin)' }, read);
    expect(lines[0]).toEqual({
      level: 'warn',
      message: 'tunnel sockets: user mode, path estimates from PING timing only (not Linux (darwin)); --congestion bbr cannot be applied',
    });
    expect(lines[1]?.message).toMatch(/tcp_notsent_lowat=131072/);
    expect(socketTuningLines(undefined, { available: false, reason: 'x' }, proc({}))).toHaveLength(1);
  });
  it('checkCongestion accepts what the kernel offers and names the choices otherwise', () => {
    const read = proc({
      '/proc/sys/net/ipv4/tcp_available_congestion_control': 'reno cubic bbr\n',
      '/proc/sys/net/ipv4/tcp_allowed_congestion_control': 'reno cubic\n',
    });
    expect(() => checkCongestion('bbr', read, true)).not.toThrow();
    expect(() => checkCongestion('bbr', read, false)).toThrow(/not allowed for unprivileged processes \(allowed: reno, cubic/);
    expect(() => checkCongestion('vegas', read, true)).toThrow(
      /not available in this kernel \(available: reno, cubic, bbr; a module may load it: modprobe tcp_vegas\)/,
    );
    expect(() => checkCongestion('bbr;rm', read, true)).toThrow(/not a congestion control name/);
    expect(() => checkCongestion('bbr', proc({}), false)).not.toThrow(); // no /proc: the kernel decides per tunnel
  });
});
