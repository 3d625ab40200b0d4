import * as net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { fdOf, kernelAccess, kernelSocket, parseTcpInfo } from '../src/kernel.js';
import { duplexPair } from '../src/memory.js';
import { PathEstimator } from '../src/path.js';
import { resolveSessionConfig } from '../src/config.js';
import { FrameType } from '@gkd/protocol';
import { Session } from '../src/session.js';
import { Tunnel, isLoopback, tunnelOptions } from '../src/tunnel.js';

/** Kernel socket access (kernel.ts): TCP_INFO parsing, and the real setsockopt/getsockopt on loopback sockets. */

describe('parseTcpInfo', () => {
  it('reads the fields at their struct tcp_info offsets (little-endian)', () => {
    const b = Buffer.alloc(232);
    b[0] = 1; // TCP_ESTABLISHED
    b[1] = 3; // recovery
    b.writeUInt32LE(204_000, 8); // rto µs
    b.writeUInt32LE(1448, 16); // snd_mss
    b.writeUInt32LE(7, 24); // unacked
    b.writeUInt32LE(2, 32); // lost
    b.writeUInt32LE(1, 36); // retrans
    b.writeUInt32LE(100_500, 68); // rtt µs
    b.writeUInt32LE(2_000, 72); // rttvar
    b.writeUInt32LE(20, 76); // ssthresh
    b.writeUInt32LE(42, 80); // cwnd
    b.writeUInt32LE(9, 100); // total_retrans
    b.writeBigUInt64LE(1_250_000n, 104); // pacing rate
    b.writeBigUInt64LE(123_456_789n, 120); // bytes acked
    b.writeUInt32LE(65_536, 144); // notsent
    b.writeUInt32LE(100_000, 148); // min rtt
    b.writeBigUInt64LE(987_654n, 160); // delivery rate
    b.writeBigUInt64LE(5n, 176); // rwnd limited
    b.writeBigUInt64LE(6n, 184); // sndbuf limited
    b.writeBigUInt64LE(4096n, 208); // bytes retrans
    expect(parseTcpInfo(b)).toEqual({
      state: 1,
      caState: 3,
      rto: 204_000,
      mss: 1448,
      unacked: 7,
      lost: 2,
      retrans: 1,
      rtt: 100_500,
      rttVar: 2_000,
      ssthresh: 20,
      cwnd: 42,
      totalRetrans: 9,
      pacingRate: 1_250_000,
      bytesAcked: 123_456_789,
      notSent: 65_536,
      minRtt: 100_000,
      deliveryRate: 987_654,
      rwndLimited: 5,
      sndbufLimited: 6,
      bytesRetrans: 4096,
    });
  });

  it('reads fields an older kernel did not fill as 0', () => {
    const b = Buffer.alloc(232, 0xff);
    const i = parseTcpInfo(b, 104); // up to tcpi_total_retrans (Linux 3.x)
    expect(i.cwnd).toBe(0xffffffff);
    expect(i.notSent).toBe(0);
    expect(i.deliveryRate).toBe(0);
  });
});

describe.skipIf(process.platform !== 'linux')('kernel socket access on Linux', () => {
  const closers: (() => void)[] = [];
  afterEach(() => {
    for (const c of closers.splice(0)) c();
  });

  async function pair(): Promise<[net.Socket, net.Socket]> {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
    const c = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((r) => c.once('connect', r));
    const s = await accepted;
    closers.push(() => {
      c.destroy();
      s.destroy();
      srv.close();
    });
    return [c, s];
  }

  it('loads (koffi ships a prebuilt binary for this platform)', () => {
    expect(kernelAccess()).toEqual({ available: true });
  });

  it('sets TCP_NOTSENT_LOWAT and congestion control, and reads TCP_INFO, on a real socket', async () => {
    const [c] = await pair();
    const k = kernelSocket(c)!;
    expect(k).not.toBeNull();
    expect(k.fd).toBe(fdOf(c));
    expect(k.setNotSentLowat(32 * 1024)).toBe(true);
    k.setCongestion('reno'); // always built in, and in tcp_allowed_congestion_control
    expect(k.congestion()).toBe('reno');
    const info = k.info()!;
    expect(info.state).toBe(1); // established
    expect(info.mss).toBeGreaterThan(0);
    expect(info.cwnd).toBeGreaterThan(0);
    expect(() => k.setCongestion('no-such-cc')).toThrow(/refused/);
    expect(() => k.setCongestion('bad name;')).toThrow(/invalid/);
  });

  it('has no fd to work on for an in-memory pair, and says so with null', () => {
    const [a] = duplexPair();
    expect(fdOf(a)).toBeNull();
    expect(kernelSocket(a)).toBeNull();
  });

  it('stops touching the fd once the socket is closed (the number may be reused)', async () => {
    const [c] = await pair();
    const k = kernelSocket(c)!;
    c.destroy();
    await new Promise((r) => c.once('close', r));
    expect(k.info()).toBeNull();
    expect(k.setNotSentLowat(1024)).toBe(false);
  });

  it('a TCP tunnel runs in kernel mode with TCP_NOTSENT_LOWAT; an in-memory one in user mode', async () => {
    const [c] = await pair();
    const cfg = resolveSessionConfig({ congestion: 'reno', socketTuning: 'on' });
    const t = new Tunnel(c, tunnelOptions(cfg, 0));
    const st = t.stats();
    expect(st.mode).toBe('kernel');
    expect(st.notSentLowat).toBe(cfg.notSentLowat);
    expect(st.congestion).toBe('reno');
    expect(st.kernel?.cwnd).toBeGreaterThan(0);
    expect(t.pathRtt).not.toBeNull(); // the kernel's RTT, before any PING
    const [m] = duplexPair();
    const u = new Tunnel(m, tunnelOptions(cfg, 1));
    expect(u.stats()).toMatchObject({ mode: 'user', notSentLowat: 0, congestion: null, kernel: null });
    t.close();
    u.close();
  });

  it('the express lane: tunnel 0 of a session keeps short queues (kernel mode only)', async () => {
    const cfg = resolveSessionConfig({ socketTuning: 'on' });
    expect(cfg.expressLane).toBe(16 * 1024);
    const session = new Session('client', 'express-test', cfg);
    const [c0] = await pair();
    const [c1] = await pair();
    const t0 = new Tunnel(c0, tunnelOptions(cfg, 0));
    const t1 = new Tunnel(c1, tunnelOptions(cfg, 1));
    for (const t of [t0, t1]) {
      t.transition('handshaking');
      t.transition('open');
      session.addTunnel(t);
    }
    expect(t0.stats()).toMatchObject({ mode: 'kernel', express: true, notSentLowat: 16 * 1024 });
    expect(t1.stats()).toMatchObject({ mode: 'kernel', express: false, notSentLowat: cfg.notSentLowat });
    // 20 KB queued in user space: past the lane's mark, under the other tunnels' (64 KiB)
    c0.cork();
    c1.cork();
    c0.write(Buffer.alloc(20_000));
    c1.write(Buffer.alloc(20_000));
    expect(t0.hasRoom).toBe(false);
    expect(t1.hasRoom).toBe(true);
    // control frames take the lane even with its queue fuller than the other tunnel's (an ACK or
    // OPEN_OK waits behind at most 16 KiB + 16 KiB there, behind up to 192 KiB elsewhere)
    const before = [t0.stats().framesOut, t1.stats().framesOut];
    for (let i = 0; i < 5; i++) session.sendControl({ type: FrameType.ACK, stream: 1, ack: 0, window: 1 << 20 });
    expect(t0.stats().framesOut - before[0]!).toBe(5);
    expect(t1.stats().framesOut - before[1]!).toBe(0);
    session.close();
    // a user-mode tunnel (in memory) cannot be one: nothing changes
    const [m] = duplexPair();
    const u = new Tunnel(m, tunnelOptions(cfg, 0));
    expect(u.expressLane(16 * 1024)).toBe(false);
    expect(u.stats()).toMatchObject({ mode: 'user', express: false, notSentLowat: 0 });
    u.close();
    // and a session configured without it leaves tunnel 0 alone
    const off = resolveSessionConfig({ socketTuning: 'on', expressLane: 0 });
    const s2 = new Session('client', 'express-off', off);
    const [c2] = await pair();
    const t2 = new Tunnel(c2, tunnelOptions(off, 0));
    s2.addTunnel(t2);
    expect(t2.stats()).toMatchObject({ express: false, notSentLowat: off.notSentLowat });
    s2.close();
  });

  it('a tunnel queues about `tunnelDepth` ms at its send rate: TCP_NOTSENT_LOWAT follows the rate between 16 KiB and `notSentLowat`', async () => {
    const [c] = await pair();
    const cfg = resolveSessionConfig({ socketTuning: 'on' });
    expect(cfg.tunnelDepth).toBe(100);
    const t = new Tunnel(c, tunnelOptions(cfg, 1));
    const rate = vi.spyOn(t.path, 'rate');
    const at = (now: number, bytesPerSecond: number) => {
      rate.mockReturnValue(bytesPerSecond);
      t.adaptDepth(now);
      return t.stats().notSentLowat;
    };
    // 1.6 Mbit/s (a tunnel in scenario (b)): 100 ms is 20 KB unsent in the kernel, 16 KiB in user space
    expect(at(1000, 200_000)).toBe(20_000);
    expect(t.highWater).toBe(16 * 1024);
    // looked at most every 20 ms; a move under 25 % changes nothing
    expect(at(1010, 1_000_000)).toBe(20_000);
    expect(at(1030, 230_000)).toBe(20_000);
    // 8 Mbit/s: 100 KB, and half that in user space
    expect(at(1060, 1_000_000)).toBe(100_000);
    expect(t.highWater).toBe(50_000);
    // bounded by the configured notSentLowat and tunedHighWater above, 16 KiB below
    expect(at(1090, 100_000_000)).toBe(cfg.notSentLowat);
    expect(t.highWater).toBe(cfg.tunedHighWater);
    expect(at(1120, 1_000)).toBe(16 * 1024);
    t.close();
    // tunnelDepth 0: fixed at notSentLowat
    const [c2] = await pair();
    const fixed = resolveSessionConfig({ socketTuning: 'on', tunnelDepth: 0 });
    const t2 = new Tunnel(c2, tunnelOptions(fixed, 1));
    vi.spyOn(t2.path, 'rate').mockReturnValue(200_000);
    t2.adaptDepth(1000);
    expect(t2.stats().notSentLowat).toBe(fixed.notSentLowat);
    t2.close();
  });

  it("socketTuning 'auto' leaves a loopback tunnel in user mode (the CPU, not the network, is the limit there)", async () => {
    const [c] = await pair();
    expect(isLoopback('127.0.0.1')).toBe(true);
    expect(isLoopback('::ffff:127.0.0.2')).toBe(true);
    expect(isLoopback('::1')).toBe(true);
    expect(isLoopback('10.77.0.2')).toBe(false);
    expect(isLoopback('2001:db8::1')).toBe(false);
    const t = new Tunnel(c, tunnelOptions(resolveSessionConfig(), 0));
    expect(t.stats()).toMatchObject({ mode: 'user', notSentLowat: 0, pacing: false, kernel: null });
    t.close();
  });

  it("socketTuning 'off' keeps a TCP tunnel in user mode", async () => {
    const [c] = await pair();
    const t = new Tunnel(c, tunnelOptions(resolveSessionConfig({ socketTuning: 'off' }), 0));
    expect(t.stats()).toMatchObject({ mode: 'user', notSentLowat: 0, kernel: null });
    t.close();
  });

  it('a congestion control the kernel refuses is reported, and the tunnel still works', async () => {
    const [c] = await pair();
    const t = new Tunnel(c, tunnelOptions(resolveSessionConfig({ congestion: 'nosuchcc', socketTuning: 'on' }), 0));
    expect(t.congestionError).toMatch(/refused congestion control 'nosuchcc'/);
    expect(t.stats().mode).toBe('kernel');
    t.close();
  });

  it("PathEstimator's rate: the window over the RTT, capped by the pacing rate (BBR's window is twice its rate), or the delivery rate if higher", () => {
    const info = { ...parseTcpInfo(Buffer.alloc(232)), rtt: 100_000, cwnd: 100, mss: 1000 }; // 100 segments per 100 ms: 1 MB/s
    const rate = (o: Partial<typeof info>) => new PathEstimator(() => ({ ...info, ...o })).rate(null);
    expect(rate({ pacingRate: 1_200_000 })).toBe(1_000_000); // cubic, paced at 1.2 × window / RTT
    expect(rate({ pacingRate: 500_000 })).toBe(500_000); // BBR: cwnd 2 × BDP, paced at its bandwidth estimate
    expect(rate({ pacingRate: 500_000, deliveryRate: 600_000 })).toBe(600_000);
    expect(rate({ pacingRate: 0 })).toBe(1_000_000); // no pacing rate reported: the window alone
    expect(new PathEstimator(null).rate(42)).toBe(42); // user mode: the PING rate
  });

  it('PathEstimator reads TCP_INFO at most once per refresh interval', () => {
    let reads = 0;
    let now = 0;
    const info = parseTcpInfo(Buffer.alloc(232));
    const p = new PathEstimator(
      () => {
        reads++;
        return info;
      },
      5,
      () => now,
    );
    p.sample();
    p.sample();
    now = 4;
    p.sample();
    expect(reads).toBe(1);
    now = 5;
    p.sample();
    expect(reads).toBe(2);
  });
});
