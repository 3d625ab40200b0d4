import { X509Certificate, webcrypto } from 'node:crypto';

/** A certificate and its private key, PEM. */
export interface CertificatePair {
  cert: string;
  key: string;
}

/** How long a generated certificate is valid, in days. Clients pin its fingerprint, so expiry only matters to CA verification, which it never gets. */
const VALID_DAYS = 20 * 365;

/**
 * Make a self-signed certificate (EC P-256, ECDSA-SHA256, CN=gkd) and its private key.
 *
 * node:crypto can make keys but not X.509 certificates; @peculiar/x509 builds one on top of
 * WebCrypto. It is imported here, lazily, because it needs the reflect-metadata polyfill (for its
 * tsyringe container) and only a first start needs either.
 */
export async function makeSelfSignedCertificate(commonName = 'gkd'): Promise<CertificatePair> {
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const serial = Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)));
  serial[0]! &= 0x7f; // a positive INTEGER (RFC 5280 §4.1.2.2)
  const notBefore = new Date(Date.now() - 60_000); // tolerate a client clock a little behind
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: `CN=${commonName}`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + VALID_DAYS * 86_400_000),
    signingAlgorithm: alg,
    keys,
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { cert: cert.toString('pem') + '\n', key: pem('PRIVATE KEY', pkcs8) };
}

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** SHA-256 fingerprint of a PEM certificate, `AB:CD:…` (what clients pin). */
export function fingerprintOf(cert: string | Buffer): string {
  return new X509Certificate(cert).fingerprint256;
}
