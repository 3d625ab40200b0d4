import { describe, expect, it } from 'vitest';
import { ConfigError, ErrorCode, formatIPv4, formatIPv6, parseIPv4, parseIPv6 } from '@gkd/protocol';
import { DEFAULT_DENIED_RANGES, compilePolicy, normalizeHostName, parseRule, type Policy } from '../src/index.js';

const defaults = compilePolicy();

/** Expect `policy` to deny `address` (optionally asked for as `name`), with a reason containing `why`. */
function expectDenied(policy: Policy, address: string, port = 443, name?: string, why?: string | RegExp): void {
  const v = policy.check(address, port, name);
  expect(v.allowed, `${address}:${port}${name ? ` (${name})` : ''} should be denied: ${v.reason}`).toBe(false);
  if (why !== undefined) expect(v.reason).toMatch(why);
}
function expectAllowed(policy: Policy, address: string, port = 443, name?: string): void {
  const v = policy.check(address, port, name);
  expect(v.allowed, `${address}:${port}${name ? ` (${name})` : ''} should be allowed: ${v.reason}`).toBe(true);
}

// ---- address arithmetic for the exhaustive range tests -------------------------------------------

function bytesOf(text: string): Buffer {
  const b = parseIPv4(text) ?? parseIPv6(text);
  if (!b) throw new Error(`bad address ${text}`);
  return b;
}
function textOf(b: Buffer): string {
  return b.length === 4 ? formatIPv4(b) : formatIPv6(b);
}
/** First and last address of a CIDR. */
function bounds(cidr: string): { first: Buffer; last: Buffer } {
  const [addr, len] = cidr.split('/') as [string, string];
  const first = bytesOf(addr);
  const last = Buffer.from(first);
  const prefix = Number(len);
  for (let bit = prefix; bit < last.length * 8; bit++) last[bit >> 3]! |= 0x80 >> (bit & 7);
  return { first, last };
}
/** `b` plus `delta` (±1), or null when it wraps around. */
function step(b: Buffer, delta: 1 | -1): Buffer | null {
  const out = Buffer.from(b);
  for (let i = out.length - 1; i >= 0; i--) {
    const v = out[i]! + delta;
    out[i] = v & 0xff;
    if (v >= 0 && v <= 0xff) return out;
  }
  return null;
}
/** The IPv6 forms that designate an IPv4 address. */
function embeddings(v4: string): Record<string, string> {
  const b = bytesOf(v4);
  const hex = (i: number) => ((b[i]! << 8) | b[i + 1]!).toString(16);
  const inv = Buffer.from(b.map((x) => x ^ 0xff));
  const invHex = (i: number) => ((inv[i]! << 8) | inv[i + 1]!).toString(16);
  return {
    mapped: `::ffff:${v4}`,
    mappedHex: `::ffff:${hex(0)}:${hex(2)}`,
    translated: `::ffff:0:${v4}`,
    nat64: `64:ff9b::${v4}`,
    sixToFour: `2002:${hex(0)}:${hex(2)}::1`,
    teredo: `2001:0:4136:e378:8000:63bf:${invHex(0)}:${invHex(2)}`,
  };
}

describe('default ranges', () => {
  it('denies the first and last address of every default range, naming its kind', () => {
    for (const { cidr, kind } of DEFAULT_DENIED_RANGES) {
      const { first, last } = bounds(cidr);
      for (const b of [first, last]) {
        const v = defaults.check(textOf(b), 443);
        expect(v.allowed, `${textOf(b)} in ${cidr}`).toBe(false);
        // A narrower range listed first may name it (169.254.169.254, 255.255.255.255, ::, ::1).
        if (!/^(169\.254\.0\.0|240\.0\.0\.0|::)\//.test(cidr)) expect(v.reason).toContain(kind);
      }
    }
  });

  it('allows the addresses just outside every default range unless another range holds them', () => {
    const denied = (b: Buffer) =>
      DEFAULT_DENIED_RANGES.some(({ cidr }) => {
        const { first, last } = bounds(cidr);
        return b.length === first.length && Buffer.compare(b, first) >= 0 && Buffer.compare(b, last) <= 0;
      });
    for (const { cidr } of DEFAULT_DENIED_RANGES) {
      const { first, last } = bounds(cidr);
      for (const b of [step(first, -1), step(last, 1)]) {
        if (!b || denied(b)) continue;
        // Outside every range; embedded IPv4 forms are covered separately below.
        if (b.length === 16 && /^(::ffff:|64:ff9b::|2002:|2001:0?:)/.test(textOf(b))) continue;
        expectAllowed(defaults, textOf(b));
      }
    }
  });

  it.each([
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['10.0.0.1', 'private'],
    ['10.255.255.255', 'private'],
    ['100.64.0.1', 'CGNAT'],
    ['100.127.255.255', 'CGNAT'],
    ['127.0.0.1', 'loopback'],
    ['127.1.2.3', 'loopback'],
    ['169.254.0.1', 'link-local'],
    ['169.254.169.254', 'metadata'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['::127.0.0.1', 'IPv4-compatible'],
    ['::8.8.8.8', 'IPv4-compatible'],
    ['fe80::1', 'link-local'],
    ['febf:ffff::1', 'link-local'],
    ['fc00::1', 'unique-local'],
    ['fd12:3456:789a::1', 'unique-local'],
    ['fd00:ec2::254', 'unique-local'],
    ['fec0::1', 'site-local'],
    ['ff02::1', 'multicast'],
    ['ff0e::1', 'multicast'],
    ['64:ff9b:1::a00:1', 'NAT64'],
  ])('denies %s (%s)', (address, kind) => {
    expectDenied(defaults, address, 443, undefined, new RegExp(kind));
  });

  it.each([
    '1.1.1.1',
    '8.8.8.8',
    '9.255.255.255',
    '11.0.0.0',
    '100.63.255.255',
    '100.128.0.0',
    '126.255.255.255',
    '128.0.0.0',
    '169.253.255.255',
    '169.255.0.0',
    '172.15.255.255',
    '172.32.0.0',
    '192.167.255.255',
    '192.169.0.0',
    '223.255.255.255',
    '2001:4860:4860::8888',
    '2606:4700::1111',
    'fbff:ffff::1',
    'fe00::1',
    '::ffff:8.8.8.8',
    '64:ff9b::8.8.8.8',
    '2002:808:808::1',
  ])('allows the public address %s', (address) => {
    expectAllowed(defaults, address);
  });

  it('applies to any port', () => {
    for (const port of [0, 1, 22, 443, 65535]) expectDenied(defaults, '127.0.0.1', port);
  });

  it('denies text that is not an IP address', () => {
    for (const text of ['', 'localhost', '127.0.0.1.', 'fe80::1%eth0', '1.2.3.256']) expectDenied(defaults, text);
  });
});

describe('IPv6 forms that embed an IPv4 address', () => {
  const v4Samples = [
    '0.0.0.0',
    '10.1.2.3',
    '100.64.0.1',
    '127.0.0.1',
    '169.254.169.254',
    '172.16.0.1',
    '192.168.0.1',
    '224.0.0.1',
    '255.255.255.255',
    '240.0.0.1',
  ];

  it.each(v4Samples)('denies every embedded form of %s', (v4) => {
    for (const [form, v6] of Object.entries(embeddings(v4))) {
      const v = defaults.check(v6, 443);
      expect(v.allowed, `${form} ${v6}`).toBe(false);
      expect(v.reason).toContain(v4);
    }
  });

  it('allows every embedded form of a public address', () => {
    for (const [form, v6] of Object.entries(embeddings('8.8.8.8'))) {
      expect(defaults.check(v6, 443).allowed, `${form} ${v6}`).toBe(true);
    }
  });

  it('matches IPv4 rules against the embedded address', () => {
    const p = compilePolicy({ deny: ['8.8.8.0/24'], allow: ['127.0.0.1:8080'] });
    for (const v6 of Object.values(embeddings('8.8.8.8'))) expectDenied(p, v6, 443, undefined, /deny rule "8\.8\.8\.0\/24"/);
    for (const v6 of Object.values(embeddings('127.0.0.1'))) {
      expectAllowed(p, v6, 8080);
      expectDenied(p, v6, 8081);
    }
  });

  it('needs both the IPv6 and the IPv4 view allowed', () => {
    // Allowing all of IPv6 does not make ::ffff:127.0.0.1 anything but loopback.
    const allV6 = compilePolicy({ allow: ['::/0'] });
    expectDenied(allV6, '::ffff:127.0.0.1', 443, undefined, /loopback/);
    expectDenied(allV6, '64:ff9b::a00:1', 443, undefined, /private/);
    expectAllowed(allV6, 'fd00::1');
    expectAllowed(allV6, '::1');
    // A deny on the IPv6 form applies even when the IPv4 address is allowed.
    const noMapped = compilePolicy({ deny: ['::ffff:0:0/96'] });
    expectDenied(noMapped, '::ffff:8.8.8.8', 443, undefined, /deny rule/);
    expectAllowed(noMapped, '8.8.8.8');
  });
});

describe('rule kinds', () => {
  // Each row: the rule, then [address, port, requested name?] that it must match and must not match.
  // As `allow` the rule lifts the default deny on private addresses; as `deny` it blocks public ones.
  type Case = [address: string, port: number, name?: string];
  const rows: { rule: string; privateHits: Case[]; privateMisses: Case[]; publicHits: Case[]; publicMisses: Case[] }[] = [
    {
      rule: '10.1.2.3',
      privateHits: [
        ['10.1.2.3', 1],
        ['10.1.2.3', 65535],
        ['10.1.2.3', 80, 'some.name'],
      ],
      privateMisses: [['10.1.2.4', 80]],
      publicHits: [],
      publicMisses: [['8.8.8.8', 80]],
    },
    {
      rule: '::1',
      privateHits: [
        ['::1', 22],
        ['0:0:0:0:0:0:0:1', 22],
      ],
      privateMisses: [
        ['::2', 22],
        ['127.0.0.1', 22],
      ],
      publicHits: [],
      publicMisses: [['2001:db8::1', 22]],
    },
    {
      rule: '10.0.0.0/8',
      privateHits: [
        ['10.0.0.0', 80],
        ['10.255.255.255', 80],
      ],
      privateMisses: [['172.16.0.1', 80]],
      publicHits: [],
      publicMisses: [
        ['11.0.0.0', 80],
        ['9.255.255.255', 80],
      ],
    },
    {
      rule: 'fd00::/8',
      privateHits: [
        ['fd00::1', 80],
        ['fdff:ffff::1', 80],
      ],
      privateMisses: [['fc00::1', 80]],
      publicHits: [],
      publicMisses: [['2001:db8::1', 80]],
    },
    {
      rule: '2001:db8::/32',
      privateHits: [],
      privateMisses: [['fd00::1', 80]],
      publicHits: [
        ['2001:db8::1', 80],
        ['2001:db8:ffff::1', 80],
      ],
      publicMisses: [['2001:db9::1', 80]],
    },
    {
      rule: '8.8.8.8',
      privateHits: [],
      privateMisses: [],
      publicHits: [
        ['8.8.8.8', 53],
        ['8.8.8.8', 53, 'dns.google'],
      ],
      publicMisses: [['8.8.4.4', 53]],
    },
    {
      rule: 'intranet.example',
      privateHits: [
        ['10.1.2.3', 80, 'intranet.example'],
        ['10.1.2.3', 80, 'INTRANET.Example'.toLowerCase()],
      ],
      privateMisses: [
        ['10.1.2.3', 80],
        ['10.1.2.3', 80, 'a.intranet.example'],
        ['10.1.2.3', 80, 'intranet.example.com'],
      ],
      publicHits: [['8.8.8.8', 443, 'intranet.example']],
      publicMisses: [
        ['8.8.8.8', 443],
        ['8.8.8.8', 443, 'other.example'],
      ],
    },
    {
      rule: '*.corp.example',
      privateHits: [
        ['10.1.2.3', 80, 'a.corp.example'],
        ['10.1.2.3', 80, 'a.b.corp.example'],
      ],
      privateMisses: [
        ['10.1.2.3', 80, 'corp.example'],
        ['10.1.2.3', 80, 'xcorp.example'],
        ['10.1.2.3', 80],
      ],
      publicHits: [['8.8.8.8', 443, 'x.corp.example']],
      publicMisses: [['8.8.8.8', 443, 'corp.example']],
    },
    {
      rule: ':22',
      privateHits: [],
      privateMisses: [],
      publicHits: [
        ['8.8.8.8', 22],
        ['2001:db8::1', 22],
        ['8.8.8.8', 22, 'ssh.example'],
      ],
      publicMisses: [
        ['8.8.8.8', 21],
        ['8.8.8.8', 23],
      ],
    },
    {
      rule: ':8000-9000',
      privateHits: [],
      privateMisses: [],
      publicHits: [
        ['8.8.8.8', 8000],
        ['8.8.8.8', 8500],
        ['8.8.8.8', 9000],
      ],
      publicMisses: [
        ['8.8.8.8', 7999],
        ['8.8.8.8', 9001],
      ],
    },
    {
      rule: '127.0.0.1:8080',
      privateHits: [['127.0.0.1', 8080]],
      privateMisses: [
        ['127.0.0.1', 8081],
        ['127.0.0.2', 8080],
        ['::1', 8080],
      ],
      publicHits: [],
      publicMisses: [['8.8.8.8', 8080]],
    },
    {
      rule: '10.0.0.0/8:443',
      privateHits: [['10.9.9.9', 443]],
      privateMisses: [
        ['10.9.9.9', 80],
        ['192.168.0.1', 443],
      ],
      publicHits: [],
      publicMisses: [['8.8.8.8', 443]],
    },
    {
      rule: '[::1]:8080',
      privateHits: [['::1', 8080]],
      privateMisses: [
        ['::1', 8081],
        ['127.0.0.1', 8080],
      ],
      publicHits: [],
      publicMisses: [],
    },
    {
      rule: '[fd00::/8]:443-444',
      privateHits: [
        ['fd00::1', 443],
        ['fd00::1', 444],
      ],
      privateMisses: [
        ['fd00::1', 445],
        ['fc00::1', 443],
      ],
      publicHits: [],
      publicMisses: [],
    },
    {
      rule: 'example.com:443',
      privateHits: [['10.0.0.1', 443, 'example.com']],
      privateMisses: [['10.0.0.1', 80, 'example.com']],
      publicHits: [['93.184.216.34', 443, 'example.com']],
      publicMisses: [
        ['93.184.216.34', 80, 'example.com'],
        ['93.184.216.34', 443],
      ],
    },
    {
      rule: '*.example.com:8000-9000',
      privateHits: [['10.0.0.1', 8080, 'api.example.com']],
      privateMisses: [
        ['10.0.0.1', 443, 'api.example.com'],
        ['10.0.0.1', 8080, 'example.com'],
      ],
      publicHits: [['1.2.3.4', 9000, 'a.b.example.com']],
      publicMisses: [['1.2.3.4', 9001, 'a.b.example.com']],
    },
  ];

  describe.each(rows)('$rule', ({ rule, privateHits, privateMisses, publicHits, publicMisses }) => {
    const isPortOnly = /^:[0-9]/.test(rule);
    it('as allow: lifts the default deny exactly where it matches', () => {
      if (isPortOnly) {
        // A port-only allow would open loopback and metadata on that port: refused (see rule errors).
        expect(() => compilePolicy({ allow: [rule] })).toThrow(/an allow rule must name a host/);
        return;
      }
      const p = compilePolicy({ allow: [rule] });
      for (const [a, port, name] of privateHits) expectAllowed(p, a, port, name);
      for (const [a, port, name] of privateMisses) expectDenied(p, a, port, name);
      for (const [a, port, name] of [...publicHits, ...publicMisses]) expectAllowed(p, a, port, name);
    });
    it('as deny: denies exactly where it matches', () => {
      const p = compilePolicy({ deny: [rule] });
      for (const [a, port, name] of [...privateHits, ...publicHits]) expectDenied(p, a, port, name, /deny rule/);
      for (const [a, port, name] of publicMisses) expectAllowed(p, a, port, name);
      for (const [a, port, name] of privateMisses) expectDenied(p, a, port, name, /denied by default/);
    });
  });

  it('matches names case-insensitively, ignoring a trailing dot, and IDN names as A-labels', () => {
    const p = compilePolicy({ deny: ['Example.COM.', '*.Bücher.example'] });
    expectDenied(p, '8.8.8.8', 443, 'example.com');
    expectDenied(p, '8.8.8.8', 443, 'shop.xn--bcher-kva.example');
    expect(p.checkName(normalizeHostName('EXAMPLE.com.')!, 443)?.allowed).toBe(false);
    expect(p.checkName(normalizeHostName('shop.bücher.example')!, 443)?.allowed).toBe(false);
  });

  it('ignores whitespace around a rule', () => {
    const p = compilePolicy({ deny: ['  10.0.0.0/8:443 '] });
    expect(p.rules[0]!.text).toBe('10.0.0.0/8:443');
    expect(p.rules[0]!.host).toEqual({ kind: 'network', family: 4, cidr: '10.0.0.0/8' });
    expect(p.rules[0]!.ports).toEqual({ from: 443, to: 443 });
  });

  it('parses each form into its parts', () => {
    expect(parseRule('deny', ':22')).toEqual({ action: 'deny', text: ':22', host: { kind: 'any' }, ports: { from: 22, to: 22 } });
    expect(parseRule('allow', '[fd00::/8]:443').host).toEqual({ kind: 'network', family: 6, cidr: 'fd00::/8' });
    expect(parseRule('allow', '*.Example.com').host).toEqual({ kind: 'name', name: 'example.com', wildcard: true });
    expect(parseRule('allow', '::ffff:7f00:1').host).toEqual({
      kind: 'network',
      family: 6,
      cidr: `${formatIPv6(parseIPv6('::ffff:127.0.0.1')!)}/128`,
    });
    expect(parseRule('allow', '[::1]').ports).toBeNull();
  });
});

describe('precedence', () => {
  it('deny beats allow, whatever the order or specificity', () => {
    const cases: [allow: string[], deny: string[], address: string, port: number, name?: string][] = [
      [['10.0.0.5'], ['10.0.0.5'], '10.0.0.5', 80],
      [['10.0.0.0/8'], ['10.0.0.5'], '10.0.0.5', 80],
      [['10.0.0.5'], ['10.0.0.0/8'], '10.0.0.5', 80],
      [['10.0.0.5:25'], [':25'], '10.0.0.5', 25],
      [['api.example.com'], ['*.example.com'], '8.8.8.8', 443, 'api.example.com'],
      [['10.0.0.0/8'], ['intranet.example'], '10.0.0.1', 80, 'intranet.example'],
      [['intranet.example'], ['10.0.0.0/8'], '10.0.0.1', 80, 'intranet.example'],
    ];
    for (const [allow, deny, address, port, name] of cases) {
      for (const p of [compilePolicy({ allow, deny }), compilePolicy({ allow: [...allow].reverse(), deny: [...deny].reverse() })]) {
        expectDenied(p, address, port, name, /^deny rule/);
      }
    }
    // ...but only where the deny matches.
    expectAllowed(compilePolicy({ allow: ['10.0.0.0/8'], deny: ['10.0.0.5'] }), '10.0.0.6', 80);
  });

  it('explicit allow beats the defaults; the deciding rule is reported', () => {
    const p = compilePolicy({ allow: ['10.0.0.0/8', '127.0.0.1'] });
    const v = p.check('10.1.2.3', 80);
    expect(v).toMatchObject({ allowed: true, reason: 'allow rule "10.0.0.0/8"' });
    expect(v.rule?.text).toBe('10.0.0.0/8');
    expectAllowed(p, '127.0.0.1', 1);
    expectDenied(p, '127.0.0.2', 1, undefined, /loopback/);
    expectDenied(p, '192.168.0.1', 1, undefined, /private/);
  });

  it('name rules match the requested name; addresses and defaults match the resolved address', () => {
    const p = compilePolicy({ allow: ['intranet.example'] });
    expectAllowed(p, '10.1.2.3', 80, 'intranet.example'); // the admin trusts this name's DNS
    expectDenied(p, '10.1.2.3', 80); // the same address asked for as a literal
    expectDenied(p, '127.0.0.1', 80, 'evil.test', /loopback/); // DNS rebinding: the resolved address decides
    expectDenied(defaults, '127.0.0.1', 80, 'localhost', /loopback/);
    const q = compilePolicy({ deny: ['blocked.example'] });
    expectDenied(q, '8.8.8.8', 443, 'blocked.example');
    expectAllowed(q, '8.8.8.8', 443); // a name rule cannot block an address asked for directly
  });

  it('checkName denies before resolution only when no address could be allowed', () => {
    const p = compilePolicy({ deny: ['blocked.example', '*.ads.example', ':25', '10.0.0.0/8'], allow: ['ok.example'] });
    expect(p.checkName('blocked.example', 443)).toMatchObject({ allowed: false, reason: 'deny rule "blocked.example"' });
    expect(p.checkName('x.ads.example', 443)?.allowed).toBe(false);
    expect(p.checkName('mail.example', 25)?.allowed).toBe(false);
    expect(p.checkName('mail.example', 587)).toBeNull();
    expect(p.checkName('ok.example', 443)).toBeNull(); // allowed names still need their addresses checked
    expect(p.checkName('ads.example', 443)).toBeNull();
    expect(defaults.checkName('localhost', 80)).toBeNull(); // defaults need the resolved address
  });

  it('with 0.0.0.0/0 and ::/0 allowed the defaults are off, and denies still apply', () => {
    const p = compilePolicy({ allow: ['0.0.0.0/0', '::/0'], deny: ['169.254.169.254'] });
    for (const a of ['127.0.0.1', '10.0.0.1', '::1', 'fe80::1', '::ffff:127.0.0.1', '64:ff9b::a00:1']) expectAllowed(p, a);
    expectDenied(p, '169.254.169.254', 80);
    expectDenied(p, '::ffff:169.254.169.254', 80);
  });
});

describe('rule errors', () => {
  it.each([
    ['deny', '', /the rule is empty/],
    ['deny', '   ', /the rule is empty/],
    ['deny', '10.0.0.0/33', /prefix length must be 0–32/],
    ['deny', '::/129', /prefix length must be 0–128/],
    ['deny', '10.0.0.0/', /prefix length/],
    ['deny', '10.0.0.0/08', /prefix length/],
    ['deny', '10.0.0.1/8', /host bits are set; did you mean 10\.0\.0\.0\/8/],
    ['deny', 'fd00::1/8', /did you mean fd00::\/8/],
    ['deny', 'foo/8', /"foo" is not an IPv4 or IPv6 address/],
    ['deny', ':0', /ports must be 1–65535/],
    ['deny', ':70000', /ports must be 1–65535/],
    ['deny', ':9000-8000', /backwards/],
    ['deny', ':abc', /not a port/],
    ['deny', ':', /not a port/],
    ['deny', '1.2.3.4:', /not a port/],
    ['deny', 'example.com:http', /not a port/],
    ['deny', 'exa mple.com', /not an IP address, CIDR or host name/],
    ['deny', 'under_score%.com', /not an IP address, CIDR or host name/],
    ['deny', '*', /only allowed as a leading "\*\."/],
    ['deny', '*.', /not an IP address, CIDR or host name/],
    ['deny', 'foo.*.com', /only allowed as a leading/],
    ['deny', '**.com', /only allowed as a leading/],
    ['deny', '256.1.1.1', /numeric label/],
    ['deny', '10.0.0', /numeric label/],
    ['deny', `${'a'.repeat(64)}.com`, /host name/],
    ['deny', '[::1', /missing "\]"/],
    ['deny', '[::1]x', /unexpected "x"/],
    ['deny', '[10.0.0.1]:80', /brackets are for IPv6/],
    ['deny', '[::1]:', /not a port/],
    ['deny', '::1:8080:', /not an IP address, CIDR or host name/],
    ['allow', ':22', /an allow rule must name a host/],
    ['allow', ':8000-9000', /an allow rule must name a host/],
  ] as const)('%s %j → ConfigError', (action, rule, why) => {
    const run = () => compilePolicy({ [action]: ['1.2.3.4', rule] });
    expect(run).toThrow(ConfigError);
    expect(run).toThrow(why);
    try {
      run();
    } catch (err) {
      expect((err as ConfigError).code).toBe(ErrorCode.CONFIG);
      expect((err as Error).message).toContain(`invalid ${action}[1] rule ${JSON.stringify(rule)}`);
    }
  });

  it('rejects rule lists that are not arrays of strings', () => {
    expect(() => compilePolicy({ deny: '10.0.0.0/8' as unknown as string[] })).toThrow(/invalid option deny: must be an array/);
    expect(() => compilePolicy({ allow: [42 as unknown as string] })).toThrow(/invalid allow\[0\] rule 42: a rule must be a string/);
  });
});

describe('normalizeHostName', () => {
  it.each([
    ['example.com', 'example.com'],
    ['Example.COM.', 'example.com'],
    ['_srv._tcp.example.com', '_srv._tcp.example.com'],
    ['bücher.example', 'xn--bcher-kva.example'],
    ['example。com', 'example.com'],
    ['localhost', 'localhost'],
    ['127.1', '127.1'],
    ['', null],
    ['.', null],
    ['a..b', null],
    ['exa mple.com', null],
    ['ex%41mple.com', null],
    ['evil.com/x.good.com', null],
    ['evil.com#good.com', null],
    ['bücher.example/x', null],
    [`${'a'.repeat(64)}.com`, null],
    [`${'a.'.repeat(127)}a`, null],
  ])('%j → %j', (input, expected) => {
    expect(normalizeHostName(input)).toBe(expected);
  });
});
