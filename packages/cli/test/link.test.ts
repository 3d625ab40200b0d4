// The connection link (pure: format and parse) and the state directory's files, in process.
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError } from '../src/args.js';
import { newKey } from '../src/commands/keygen.js';
import { formatLink, parseLink, type ConnectionLink } from '../src/link.js';
import { fingerprintOf, makeSelfSignedCertificate } from '../src/self-signed.js';
import { defaultStateDir, ensureStateDir, tooOpen, writeSecretFile } from '../src/state.js';

const FP = 'C3AD8F48E0DF3DA0498145182FACDE82055484CDE5AE345E3FE509ABFA9D3E4E';
const KEY = 'Svz_12V9Gfa-V67vHKw3uXVQjGziO1yg9CmhRRNUqrE';

describe('connection link', () => {
  const cases: [string, ConnectionLink][] = [
    ['a name', { host: 'vps.example.com', port: 9990, user: undefined, key: KEY, tls: { fingerprint: FP } }],
    ['an IPv4 address, port 1', { host: '203.0.113.7', port: 1, user: undefined, key: KEY, tls: { fingerprint: FP } }],
    ['an IPv6 address, port 65535', { host: '2001:db8::1', port: 65535, user: undefined, key: KEY, tls: { fingerprint: FP } }],
    ['a user that needs escaping', { host: 'h', port: 9990, user: 'al ice@home/ä:%', key: KEY, tls: { fingerprint: FP } }],
    ['a plaintext server', { host: 'h', port: 9990, user: 'bob', key: KEY, tls: 'plaintext' }],
    ['a random key', { host: 'h', port: 443, user: undefined, key: newKey(), tls: { fingerprint: FP } }],
  ];
  it.each(cases)('round-trips %s', (_name, link) => {
    const text = formatLink(link);
    expect(text).toMatch(/^gkd:\/\/\S+$/); // one pasteable token: no spaces
    expect(parseLink('link', text)).toEqual(link);
  });

  it('writes the documented shape', () => {
    expect(formatLink({ host: 'vps.example.com', port: 9990, user: 'alice', key: KEY, tls: { fingerprint: FP } })).toBe(
      `gkd://alice@vps.example.com:9990?v=1&key=${KEY}&fp=${FP}`,
    );
  });

  it('reads a fingerprint with colons and in lower case, and a link without a port (9990)', () => {
    const colons = FP.toLowerCase().replace(/(..)(?!$)/g, '$1:');
    expect(parseLink('l', `gkd://h?v=1&key=${KEY}&fp=${colons}`)).toEqual({ host: 'h', port: 9990, user: undefined, key: KEY, tls: { fingerprint: FP } });
  });

  const bad: [string, string, RegExp][] = [
    ['another scheme', `ss://h:1?v=1&key=${KEY}&fp=${FP}`, /not a gkd:\/\/ link/],
    ['no version', `gkd://h:1?key=${KEY}&fp=${FP}`, /no version/],
    ['a newer version', `gkd://h:1?v=2&key=${KEY}&fp=${FP}`, /link version 2 is not supported: this gkd reads version 1/],
    ['no key', `gkd://h:1?v=1&fp=${FP}`, /no key=/],
    ['no fingerprint', `gkd://h:1?v=1&key=${KEY}`, /no fp=/],
    ['a short fingerprint', `gkd://h:1?v=1&key=${KEY}&fp=ABCD`, /fp= must be a SHA-256 fingerprint/],
    ['fp and plaintext', `gkd://h:1?v=1&key=${KEY}&fp=${FP}&plaintext=1`, /fp= and plaintext= together/],
    ['plaintext=0', `gkd://h:1?v=1&key=${KEY}&plaintext=0`, /plaintext= must be 1/],
    ['an unknown parameter', `gkd://h:1?v=1&key=${KEY}&fp=${FP}&tunnels=8`, /unknown parameter "tunnels"/],
    ['a repeated parameter', `gkd://h:1?v=1&key=${KEY}&key=${KEY}&fp=${FP}`, /"key" given twice/],
    ['a password', `gkd://u:p@h:1?v=1&key=${KEY}&fp=${FP}`, /no password/],
    ['a path', `gkd://h:1/x?v=1&key=${KEY}&fp=${FP}`, /unexpected path/],
    ['a fragment', `gkd://h:1?v=1&key=${KEY}&fp=${FP}#x`, /fragment/],
    ['a bad port', `gkd://h:99999?v=1&key=${KEY}&fp=${FP}`, /valid URL|invalid port/],
    ['port 0', `gkd://h:0?v=1&key=${KEY}&fp=${FP}`, /invalid port/],
    ['no host', `gkd://:1?v=1&key=${KEY}&fp=${FP}`, /valid URL|no host/],
  ];
  it.each(bad)('refuses %s with a UsageError that names the flag and shows the shape', (_name, text, message) => {
    let err: unknown;
    try {
      parseLink('--link', text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(/^--link: /);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain('gkd://HOST:PORT?v=1&key=…&fp=…');
  });
});

describe('state directory', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gkd-state-unit-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('defaults to $XDG_STATE_HOME/gkd, else ~/.local/state/gkd (a relative XDG_STATE_HOME is ignored, as the spec says)', () => {
    expect(defaultStateDir({ XDG_STATE_HOME: '/x/state' }, '/home/u')).toBe('/x/state/gkd');
    expect(defaultStateDir({}, '/home/u')).toBe('/home/u/.local/state/gkd');
    expect(defaultStateDir({ XDG_STATE_HOME: 'rel' }, '/home/u')).toBe('/home/u/.local/state/gkd');
  });

  it('is made 0700 and its files 0600, whatever the umask', () => {
    const old = process.umask(0o022);
    try {
      const state = join(dir, 'a', 'gkd');
      ensureStateDir('--state-dir', state);
      expect(statSync(state).mode & 0o777).toBe(0o700);
      writeSecretFile('--state-dir', join(state, 'key'), 'secret\n');
      expect(statSync(join(state, 'key')).mode & 0o777).toBe(0o600);
      expect(tooOpen(join(state, 'key'))).toBe(false);
      writeFileSync(join(state, 'loose'), 'x', { mode: 0o644 });
      expect(tooOpen(join(state, 'loose'))).toBe(true);
    } finally {
      process.umask(old);
    }
  });

  it('a directory that cannot be made is a UsageError naming it', () => {
    const file = join(dir, 'plain-file');
    writeFileSync(file, '');
    expect(() => ensureStateDir('--state-dir', join(file, 'sub'))).toThrow(UsageError);
    expect(() => ensureStateDir('--state-dir', join(file, 'sub'))).toThrow(/--state-dir .*plain-file\/sub: cannot use it/);
  });
});

describe('self-signed certificate', () => {
  it('is a P-256 certificate whose key goes with it, each one different', async () => {
    const { createPrivateKey, X509Certificate } = await import('node:crypto');
    const { createSecureContext } = await import('node:tls');
    const a = await makeSelfSignedCertificate();
    const b = await makeSelfSignedCertificate();
    const cert = new X509Certificate(a.cert);
    expect(cert.subject).toBe('CN=gkd');
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    expect(cert.checkPrivateKey(createPrivateKey(a.key))).toBe(true);
    expect(() => createSecureContext({ cert: a.cert, key: a.key })).not.toThrow();
    expect(new Date(cert.validTo).getTime()).toBeGreaterThan(Date.now() + 10 * 365 * 86_400_000);
    expect(fingerprintOf(a.cert)).not.toBe(fingerprintOf(b.cert));
  });
});
