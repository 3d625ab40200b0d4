import * as net from 'node:net';
import { describe, expect, it } from 'vitest';

/** The fallback: with kernel access unavailable (here forced by GKD_KERNEL=off) tunnels run in user mode. */
process.env.GKD_KERNEL = 'off';
const { kernelAccess, kernelSocket } = await import('../src/kernel.js');
const { resolveSessionConfig } = await import('../src/config.js');
const { Tunnel, tunnelOptions } = await import('../src/tunnel.js');

describe('without kernel access', () => {
  it('says why, and tunnels over real TCP run in user mode', async () => {
    expect(kernelAccess()).toEqual({
      available: false,
      reason: process.platform === 'linux' ? 'disabled by GKD_KERNEL=off' : `not Linux (${process.platform})`,
    });
    const srv = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const c = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((r) => c.once('connect', r));
    expect(kernelSocket(c)).toBeNull();
    // 'on' would put even a loopback tunnel in kernel mode: only the missing access keeps it in user mode.
    const t = new Tunnel(c, tunnelOptions(resolveSessionConfig({ congestion: 'bbr', socketTuning: 'on' }), 0));
    expect(t.stats()).toMatchObject({ mode: 'user', notSentLowat: 0, congestion: null, kernel: null });
    expect(t.pathRtt).toBeNull();
    t.close();
    srv.close();
  });
});
