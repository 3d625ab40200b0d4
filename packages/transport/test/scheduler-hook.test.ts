import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { TunnelPicker } from '../src/index.js';
import { expectedHash, hashOf, source, until } from '@gkd/test-support';
import { makeRig, type Rig } from './support/links.js';

/** The scheduler is one injectable hook (`session.scheduler: () => TunnelPicker`) that DATA and control frames go through. */

const key = randomBytes(32);
let rig: Rig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

describe('an injected scheduler', () => {
  it('decides every frame: here, all DATA and control frames on the tunnel with the highest id', async () => {
    const calls = { data: 0, control: 0 };
    const highest: TunnelPicker = (tunnels, _bytes, _waiting, control) => {
      if (control) calls.control++;
      else calls.data++;
      let best = tunnels[0];
      for (const t of tunnels) if ((t as unknown as { id: number }).id > (best as unknown as { id: number }).id) best = t;
      return best && (best.hasRoom || control) ? best : undefined;
    };
    const made: number[] = [];
    const scheduler = (): TunnelPicker => {
      made.push(1);
      return highest;
    };
    rig = await makeRig('memory', { key, session: { scheduler } }, { key, tunnels: 4, session: { scheduler } });
    void (async () => {
      for await (const conn of rig!.server) {
        conn.on('error', () => undefined);
        conn.pipe(conn);
      }
    })();
    await until(() => rig!.client.tunnelsUp === 4, 5000, 'tunnels up');
    const conn = await rig.client.open({ host: 'echo', port: 1 });
    const size = 2 * 1024 * 1024;
    const want = await expectedHash(size);
    const [got] = await Promise.all([hashOf(conn), pipeline(source(size), conn)]);
    expect(got).toEqual(want);
    expect(made.length).toBe(2); // one picker per session: the client's and the server's
    expect(calls.data).toBeGreaterThan(0);
    expect(calls.control).toBeGreaterThan(0);
    // Only one of the client's tunnels carried the payload.
    const out = rig.client
      .stats()
      .tunnels.map((t) => t.bytesOut)
      .sort((a, b) => b - a);
    expect(out[0]).toBeGreaterThan(size);
    expect(out.slice(1).every((b) => b < 64 * 1024)).toBe(true);
  });
});
