import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Test-only TLS material, made fresh for each run with the `openssl` CLI: no private key is ever
 * committed (secret scanners stay quiet, nothing to rotate), and no fixture expires under the tests.
 */
export interface TestPki {
  /** PEM of the CA that signed `cert`. */
  ca: string;
  /** PEM of the server certificate: CN gkd.test, SAN DNS:gkd.test and IP:127.0.0.1. */
  cert: string;
  /** PEM of the server certificate's private key. */
  key: string;
  /** SHA-256 fingerprint of `cert`, as `AB:CD:…` (what `openssl x509 -fingerprint -sha256` prints). */
  fingerprint: string;
  /** A second, unrelated CA (PEM): verifying with it must fail. */
  otherCa: string;
}

/** Why test certificates cannot be made here, or null if they can. */
export function pkiUnsupported(): string | null {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `needs the openssl CLI to make test certificates (${r.error?.message ?? r.stderr.trim()})`;
  return null;
}

/** Make a CA, a server certificate it signs (EC P-256, valid 2 days), and a second CA. */
export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'gkd-tls-'));
  const f = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const newCa = (name: string) =>
    openssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-subj',
      `/CN=${name} test CA`,
      '-keyout',
      f(`${name}.key`),
      '-out',
      f(`${name}.pem`),
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign',
    );
  try {
    newCa('gkd');
    newCa('other');
    openssl(
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-subj',
      '/CN=gkd.test',
      '-keyout',
      f('server.key'),
      '-out',
      f('server.csr'),
    );
    writeFileSync(f('server.ext'), 'subjectAltName=DNS:gkd.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    openssl(
      'x509',
      '-req',
      '-in',
      f('server.csr'),
      '-CA',
      f('gkd.pem'),
      '-CAkey',
      f('gkd.key'),
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      f('server.ext'),
      '-out',
      f('server.pem'),
    );
    const cert = readFileSync(f('server.pem'), 'utf8');
    return {
      ca: readFileSync(f('gkd.pem'), 'utf8'),
      cert,
      key: readFileSync(f('server.key'), 'utf8'),
      fingerprint: new X509Certificate(cert).fingerprint256,
      otherCa: readFileSync(f('other.pem'), 'utf8'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
