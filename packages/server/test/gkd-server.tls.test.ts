import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect as tlsConnect } from 'node:tls';
import { AuthError, ErrorCode, type GkdError } from '@gkd/protocol';
import { Client, type ClientTlsOptions, type PeerInfo } from '@gkd/transport';
import type { GkdServer } from '../src/index.js';
import { recordingDestination, type RecordingDestination } from './support/destination.js';
import { defer, newKey, rejection, roundTripOk, runCleanups, startServer } from './support/harness.js';
import { makeTestPki, pkiUnsupported, type TestPki } from './support/tls.js';

afterEach(runCleanups);

async function eventually(cond: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const skip = pkiUnsupported();
if (skip) console.log(`skipping the TLS tests: ${skip}`);

describe.skipIf(skip !== null)('GkdServer over TLS', () => {
  const key = newKey();
  let pki: TestPki;
  beforeAll(() => {
    pki = makeTestPki();
  });

  /** A TLS server in front of a recording destination; counts sessions and refused tunnels. */
  async function rig(): Promise<{ server: GkdServer; dest: RecordingDestination; sessions: PeerInfo[]; refused: Error[] }> {
    const dest = await recordingDestination();
    defer(() => dest.close());
    const server = await startServer({ key, tls: { cert: pki.cert, key: pki.key }, allow: [`127.0.0.1:${dest.port}`] });
    const sessions: PeerInfo[] = [];
    const refused: Error[] = [];
    server.on('session', (p: PeerInfo) => sessions.push(p));
    server.on('refused', (_a: string, e: Error) => refused.push(e));
    return { server, dest, sessions, refused };
  }

  async function connect(server: GkdServer, tls: ClientTlsOptions): Promise<Client> {
    const client = await Client.connect(`127.0.0.1:${server.address().port}`, { key, tunnels: 2, tls, connectTimeout: 5_000 });
    defer(() => client.close());
    return client;
  }

  it.each([
    ['as printed (AB:CD:…)', () => pki.fingerprint],
    ['lower case, no colons', () => pki.fingerprint.replace(/:/g, '').toLowerCase()],
  ])('pinned fingerprint, %s: tunnels come up and traffic flows', async (_name, fingerprint) => {
    const { server, dest } = await rig();
    const client = await connect(server, { fingerprint: fingerprint() });
    expect(await roundTripOk(client, dest, 200_000)).toBe(true);
    expect(await dest.settle()).toBe(1);
  });

  it('a wrong fingerprint: Client.connect rejects with an AuthError naming it; no AUTH reaches the server, nothing is dialed', async () => {
    const { server, dest, sessions, refused } = await rig();
    const wrong = pki.fingerprint.replace(/^../, (h) => (h === '00' ? '11' : '00'));
    const err = await rejection(connect(server, { fingerprint: wrong }));
    expect(err).toBeInstanceOf(AuthError);
    expect(err.code).toBe(ErrorCode.AUTH);
    expect(err.message).toMatch(/fingerprint/);
    expect(err.message).toContain(pki.fingerprint); // what the server presented, so the operator can compare
    expect(err.message).toContain(wrong.toUpperCase()); // and what was pinned
    expect(sessions).toEqual([]);
    expect(server.stats().sessions).toBe(0);
    // The server saw TLS connections that closed before any AUTH: none was judged (no BAD_PROOF etc.).
    expect(refused.filter((e) => e instanceof AuthError && /proof|user/.test(e.message))).toEqual([]);
    expect(await dest.settle()).toBe(0);
  });

  it('a CA file: the server certificate verifies against it (by IP SAN, and by name with servername)', async () => {
    const { server, dest } = await rig();
    const byIp = await connect(server, { ca: pki.ca });
    expect(await roundTripOk(byIp, dest)).toBe(true);
    const byName = await connect(server, { ca: pki.ca, servername: 'gkd.test' });
    expect(await roundTripOk(byName, dest)).toBe(true);
  });

  it.each([
    ['another CA', () => ({ ca: pki.otherCa })],
    ['a name the certificate does not carry', () => ({ ca: pki.ca, servername: 'other.test' })],
  ])('verification fails with %s: Client.connect rejects at once with an AuthError, no session', async (_name, tls) => {
    const { server, dest, sessions } = await rig();
    const started = Date.now();
    const err = await rejection(connect(server, tls()));
    expect(err).toBeInstanceOf(AuthError);
    expect(err.message).toMatch(/certificate/);
    expect(Date.now() - started).toBeLessThan(4_000); // not after the connect timeout
    expect(sessions).toEqual([]);
    expect(await dest.settle()).toBe(0);
  });

  it('a TLS client that sends no routing preface (version 1) is closed at once and refused as BAD_PREFACE; the preface then TLS works', async () => {
    const { server, dest, sessions, refused } = await rig();
    const socket = tlsConnect({ host: '127.0.0.1', port: server.address().port, rejectUnauthorized: false });
    const err = await new Promise<Error>((resolve) => {
      socket.once('error', resolve);
      socket.once('secureConnect', () => resolve(new Error('TLS came up without a preface')));
    });
    expect(err.message).not.toMatch(/without a preface/);
    await eventually(() => refused.length === 1);
    expect((refused[0] as GkdError).code).toBe(ErrorCode.BAD_PREFACE);
    expect(refused[0]!.message).toMatch(/TLS ClientHello/);
    expect(sessions).toEqual([]);
    expect(await roundTripOk(await connect(server, { fingerprint: pki.fingerprint }), dest)).toBe(true);
  });

  it('a TLS client against a plaintext server: Client.connect rejects at once with an AuthError that says --plaintext; no session', async () => {
    const dest = await recordingDestination();
    defer(() => dest.close());
    const server = await startServer({ key, allow: [`127.0.0.1:${dest.port}`] });
    const sessions: PeerInfo[] = [];
    server.on('session', (p: PeerInfo) => sessions.push(p));
    const started = Date.now();
    const err = await rejection(connect(server, { fingerprint: pki.fingerprint }));
    expect(err).toBeInstanceOf(AuthError);
    expect(err.message).toMatch(/did not answer TLS .*--plaintext/);
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(sessions).toEqual([]);
    expect(await dest.settle()).toBe(0);
  });
});
