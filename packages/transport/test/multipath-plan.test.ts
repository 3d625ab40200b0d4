import type { NetworkInterfaceInfo } from 'node:os';
import { describe, expect, it } from 'vitest';
import { PathPlan, parseVia, type PathOptions } from '../src/index.js';

const v4 = (address: string): NetworkInterfaceInfo => ({
  address,
  family: 'IPv4',
  netmask: '255.255.255.0',
  mac: '00:00:00:00:00:00',
  internal: false,
  cidr: null,
});
const v6 = (address: string): NetworkInterfaceInfo => ({
  address,
  family: 'IPv6',
  netmask: 'ffff:ffff:ffff:ffff::',
  mac: '00:00:00:00:00:00',
  internal: false,
  cidr: null,
  scopeid: 0,
});

describe('parseVia', () => {
  it.each<[string, PathOptions]>([
    ['wlan0', { via: 'wlan0' }],
    ['wlan0:4', { via: 'wlan0', tunnels: 4 }],
    ['192.168.1.20', { via: '192.168.1.20' }],
    ['192.168.1.20:2', { via: '192.168.1.20', tunnels: 2 }],
    ['2001:db8::2', { via: '2001:db8::2' }],
    ['[2001:db8::2]', { via: '2001:db8::2' }],
    ['[2001:db8::2]:3', { via: '2001:db8::2', tunnels: 3 }],
    [' enp0s31f6:8 ', { via: 'enp0s31f6', tunnels: 8 }],
  ])('%s', (text, want) => {
    expect(parseVia(text)).toEqual(want);
  });

  it.each([
    ['wlan0:0', /integer in \[1, 256\]/],
    ['wlan0:300', /integer in \[1, 256\]/],
    ['wlan0:x', /must be a number/],
    ['[192.168.1.1]:2', /not an IPv6 address/],
    ['bad name!', /neither an IP address nor an interface name/],
    ['', /neither/],
  ])('refuses %j', (text, message) => {
    expect(() => parseVia(text, '--via')).toThrow(message);
    try {
      parseVia(text, '--via');
    } catch (err) {
      expect((err as { code?: string }).code).toBe('GKD_ERR_CONFIG');
      expect((err as Error).message).toMatch(/^--via/);
    }
  });
});

describe('PathPlan', () => {
  const server4 = { host: '198.51.100.7', port: 9990 };
  const server6 = { host: '2001:db8::7', port: 9990 };

  it('without paths: one default path of `tunnels` tunnels over the system route', () => {
    const plan = new PathPlan([server4], undefined, 3);
    expect(plan.total).toBe(3);
    expect(plan.paths.map((p) => p.name)).toEqual(['default']);
    expect(plan.target(2)).toMatchObject({ host: server4.host, port: 9990 });
    expect(plan.target(2).localAddress).toBeUndefined();
  });

  it('numbers the slots path by path; a path without a count gets the default', () => {
    const plan = new PathPlan([server4], [{ via: '10.0.0.2', tunnels: 2 }, { via: '10.0.1.2' }], 5);
    expect(plan.total).toBe(7);
    expect([0, 1, 2, 6].map((i) => plan.pathOf(i).name)).toEqual(['10.0.0.2', '10.0.0.2', '10.0.1.2', '10.0.1.2']);
    expect(plan.target(1)).toMatchObject({ localAddress: '10.0.0.2', family: 4 });
    expect(plan.target(6)).toMatchObject({ localAddress: '10.0.1.2', family: 4 });
    expect(() => plan.pathOf(7)).toThrow(RangeError);
  });

  it('an address path dials only the server addresses of its family', () => {
    const plan = new PathPlan(
      [server4, server6],
      [
        { via: '10.0.0.2', tunnels: 2 },
        { via: '2001:db8::2', tunnels: 2 },
      ],
      1,
    );
    expect([0, 1].map((i) => plan.target(i).host)).toEqual([server4.host, server4.host]);
    expect([2, 3].map((i) => plan.target(i).host)).toEqual([server6.host, server6.host]);
    expect(() => new PathPlan([server6], [{ via: '10.0.0.2' }], 1)).toThrow(/no server address is of that family/);
  });

  it('spreads a path over the server addresses, and moves a slot to the next one after a failed dial', () => {
    const plan = new PathPlan([server4, server6], undefined, 4);
    expect([0, 1, 2, 3].map((i) => plan.target(i).host)).toEqual([server4.host, server6.host, server4.host, server6.host]);
    plan.failed(0);
    expect(plan.target(0).host).toBe(server6.host);
    expect(plan.target(2).host).toBe(server4.host); // other slots keep theirs
    plan.failed(0);
    expect(plan.target(0).host).toBe(server4.host);
  });

  it('an interface path takes its address at each dial: gone → PATH_DOWN, back (with a new address) → dials again', () => {
    let table: NodeJS.Dict<NetworkInterfaceInfo[]> = { wlan0: [v4('192.168.1.20'), v6('fe80::1'), v6('2001:db8::20')] };
    const plan = new PathPlan([server4, server6], [{ via: 'wlan0', tunnels: 2 }], 1, () => table);
    expect(plan.target(0)).toMatchObject({ host: server4.host, localAddress: '192.168.1.20', family: 4 });
    expect(plan.target(1)).toMatchObject({ host: server6.host, localAddress: '2001:db8::20', family: 6 }); // never the link-local one
    table = {};
    expect(() => plan.target(0)).toThrow(expect.objectContaining({ code: 'GKD_ERR_PATH_DOWN', path: 'wlan0', message: expect.stringMatching(/is not there/) }));
    table = { wlan0: [v6('fe80::1')] };
    expect(() => plan.target(0)).toThrow(/has no usable address/);
    table = { wlan0: [v4('192.168.7.3')] };
    // Only IPv4 now: both slots dial the IPv4 address, from the new local address.
    expect(plan.target(1)).toMatchObject({ host: server4.host, localAddress: '192.168.7.3' });
  });

  it('an interface with only the other family than every server address fails with PATH_DOWN', () => {
    const plan = new PathPlan([server6], [{ via: 'wwan0' }], 1, () => ({ wwan0: [v4('100.64.0.9')] }));
    expect(() => plan.target(0)).toThrow(expect.objectContaining({ code: 'GKD_ERR_PATH_DOWN', message: expect.stringMatching(/only IPv4 addresses/) }));
  });

  it("a server name goes with either family: the lookup is told the local address's", () => {
    const plan = new PathPlan([{ host: 'gkd.example', port: 9990 }], [{ via: 'wlan0' }, { via: '2001:db8::2' }], 1, () => ({
      wlan0: [v6('2001:db8::20'), v4('192.168.1.20')],
    }));
    expect(plan.target(0)).toMatchObject({ host: 'gkd.example', localAddress: '192.168.1.20', family: 4 });
    expect(plan.target(1)).toMatchObject({ host: 'gkd.example', localAddress: '2001:db8::2', family: 6 });
  });

  it('refuses a path given twice, too many tunnels in all, and no server', () => {
    expect(() => new PathPlan([server4], [{ via: 'wlan0' }, { via: 'wlan0' }], 2)).toThrow(/given twice/);
    expect(
      () =>
        new PathPlan(
          [server4],
          [
            { via: 'a0', tunnels: 200 },
            { via: 'b0', tunnels: 100 },
          ],
          2,
        ),
    ).toThrow(/300 tunnels in all, more than 256/);
    expect(() => new PathPlan([], undefined, 2)).toThrow(/at least one server/);
  });
});
