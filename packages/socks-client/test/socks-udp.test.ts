import dgram from 'node:dgram';
import { EventEmitter, once } from 'node:events';
import type { Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_DATAGRAM_PAYLOAD, type Address } from '@gkd/protocol';
import { SocksServer, clientDatagram, parseClientDatagram, type DatagramAssociation, type SocksServerOptions } from '../src/index.js';
import { connectRaw, readAll, readBytes } from './helpers.js';

/** An in-memory association that echoes each datagram back from its destination, and records what it got. */
class EchoAssociation extends EventEmitter implements DatagramAssociation {
  open = true;
  readonly got: Array<{ destination: Address; payload: Buffer }> = [];
  send(destination: Address, payload: Buffer): boolean {
    if (!this.open) return false;
    this.got.push({ destination, payload: Buffer.from(payload) });
    setImmediate(() => this.open && this.emit('datagram', destination, payload));
    return true;
  }
  close(): void {
    if (!this.open) return;
    this.open = false;
    this.emit('close');
  }
}

const servers: SocksServer[] = [];
const sockets: dgram.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  for (const s of servers.splice(0)) await s.close();
});

async function start(options: Partial<SocksServerOptions> = {}): Promise<{ server: SocksServer; associations: EchoAssociation[] }> {
  const associations: EchoAssociation[] = [];
  const server = await SocksServer.listen({
    port: 0,
    opener: () => Promise.reject(new Error('no CONNECT here')),
    associator: async () => {
      const a = new EchoAssociation();
      associations.push(a);
      return a;
    },
    ...options,
  });
  servers.push(server);
  return { server, associations };
}

async function udpSocket(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  sockets.push(s);
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

/** Greet (no auth), send UDP ASSOCIATE naming `host:port`, and return the relay address from the reply. */
async function associate(control: Socket, host: string, port: number): Promise<{ reply: Buffer; relayPort: number }> {
  control.write(Buffer.from([0x05, 0x01, 0x00]));
  expect((await readBytes(control, 2)).toString('hex')).toBe('0500');
  const req = Buffer.from([0x05, 0x03, 0x00, 0x01, ...host.split('.').map(Number), port >> 8, port & 0xff]);
  control.write(req);
  const reply = await readBytes(control, 10);
  return { reply, relayPort: reply.readUInt16BE(8) };
}

/** The next datagram `socket` receives. */
function nextMessage(socket: dgram.Socket): Promise<Buffer> {
  return new Promise((resolve) => socket.once('message', (msg) => resolve(msg)));
}

const header = (hex: string) => Buffer.from(hex.replace(/ /g, ''), 'hex');

describe('SOCKS5 UDP ASSOCIATE (RFC 1928 §7)', () => {
  it('replies with the relay bound on the address the client reached, and relays every address type both ways', async () => {
    const { server, associations } = await start();
    const client = await udpSocket();
    const control = await connectRaw(server.address().port);
    const { reply, relayPort } = await associate(control, '0.0.0.0', client.address().port);
    expect(reply.subarray(0, 8).toString('hex')).toBe('050000017f000001'); // success, BND.ADDR 127.0.0.1
    expect(relayPort).toBeGreaterThan(0);
    const destinations: Address[] = [
      { type: 'ipv4', host: '192.0.2.1', port: 53 },
      { type: 'domain', host: 'example.com', port: 443 },
      { type: 'ipv6', host: '2001:db8::1', port: 4433 },
    ];
    for (const destination of destinations) {
      const payload = Buffer.from(`to ${destination.host}`);
      const answer = nextMessage(client);
      client.send(clientDatagram(destination, payload), relayPort, '127.0.0.1');
      const back = await answer;
      expect(parseClientDatagram(back)).toEqual({ destination, payload });
    }
    expect(associations).toHaveLength(1);
    expect(associations[0]!.got.map((g) => g.destination)).toEqual(destinations);
    expect(server.stats()).toMatchObject({ udpAssociations: 1, udpActive: 1, datagramsUp: 3, datagramsDown: 3, datagramsRejected: 0 });
  });

  it('drops hostile datagrams without harm: short or bad headers, FRAG ≠ 0, unknown address types, oversized, from a stranger', async () => {
    const { server, associations } = await start();
    const client = await udpSocket();
    const stranger = await udpSocket();
    const control = await connectRaw(server.address().port);
    const { relayPort } = await associate(control, '127.0.0.1', client.address().port);
    const hostile: Buffer[] = [
      header(''),
      header('00'),
      header('00 00 00'),
      header('00 00 00 01 7f 00'), // IPv4 cut short
      header('00 01 00 01 7f 00 00 01 00 35 61'), // RSV ≠ 0
      header('00 00 01 01 7f 00 00 01 00 35 61'), // FRAG 1
      header('00 00 80 01 7f 00 00 01 00 35 61'), // FRAG 0x80 (end-of-sequence bit)
      header('00 00 00 02 7f 00 00 01 00 35 61'), // ATYP 2
      header('00 00 00 00 61'), // ATYP 0
      header('00 00 00 05 7f 00 00 01 00 35 61'), // ATYP 5
      header('00 00 00 03 00 00 35 61'), // empty domain
      header('00 00 00 03 03 61 00 62 00 35 61'), // NUL in domain
      header('00 00 00 03 10 61 62'), // domain cut short
      header('00 00 00 01 7f 00 00 01 00 00 61'), // port 0
      clientDatagram({ type: 'ipv4', host: '192.0.2.1', port: 9 }, Buffer.alloc(MAX_DATAGRAM_PAYLOAD + 1)),
    ];
    for (const d of hostile) client.send(d, relayPort, '127.0.0.1');
    stranger.send(clientDatagram({ type: 'ipv4', host: '192.0.2.1', port: 9 }, Buffer.from('not yours')), relayPort, '127.0.0.1');
    // Then a valid one, from the client: it is relayed, so everything before it was handled (and dropped).
    const answer = nextMessage(client);
    client.send(clientDatagram({ type: 'ipv4', host: '192.0.2.1', port: 9 }, Buffer.from('ok')), relayPort, '127.0.0.1');
    expect(parseClientDatagram(await answer)?.payload.toString()).toBe('ok');
    const until = Date.now() + 5000;
    while (server.stats().datagramsRejected < hostile.length + 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    expect(server.stats().datagramsRejected).toBe(hostile.length + 1);
    expect(associations[0]!.got.map((g) => g.payload.toString())).toEqual(['ok']);
    expect(server.stats().udpActive).toBe(1);
  });

  it('the association ends with its TCP control connection, and the control connection with the association', async () => {
    const { server, associations } = await start();
    const client = await udpSocket();
    const control = await connectRaw(server.address().port);
    await associate(control, '0.0.0.0', client.address().port);
    const closed = once(associations[0]!, 'close');
    control.end();
    await closed;
    expect(associations[0]!.open).toBe(false);

    const control2 = await connectRaw(server.address().port);
    await associate(control2, '0.0.0.0', client.address().port);
    const ended = readAll(control2);
    associations[1]!.close(); // the far side ended it (the server closed it, or the session was lost)
    await ended;
    const until = Date.now() + 5000;
    while (server.stats().udpActive > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    expect(server.stats()).toMatchObject({ udpAssociations: 2, udpActive: 0 });
  });

  it('an association idle for udpIdleTimeout is closed', async () => {
    const { server, associations } = await start({ udpIdleTimeout: 150 });
    const client = await udpSocket();
    const control = await connectRaw(server.address().port);
    await associate(control, '0.0.0.0', client.address().port);
    const ended = readAll(control);
    await once(associations[0]!, 'close');
    await ended;
  });

  it('username and password apply as for CONNECT: a wrong password gets no association', async () => {
    const { server, associations } = await start({ auth: { username: 'u', password: 'right' } });
    const control = await connectRaw(server.address().port);
    control.write(Buffer.from([0x05, 0x01, 0x02]));
    expect((await readBytes(control, 2)).toString('hex')).toBe('0502');
    control.write(Buffer.concat([Buffer.from([0x01, 1]), Buffer.from('u'), Buffer.from([5]), Buffer.from('wrong')]));
    expect((await readBytes(control, 2)).toString('hex')).toBe('0101');
    await readAll(control);
    expect(associations).toHaveLength(0);
    expect(server.stats().authFailures).toBe(1);

    const ok = await connectRaw(server.address().port);
    ok.write(Buffer.from([0x05, 0x01, 0x02]));
    await readBytes(ok, 2);
    ok.write(Buffer.concat([Buffer.from([0x01, 1]), Buffer.from('u'), Buffer.from([5]), Buffer.from('right')]));
    expect((await readBytes(ok, 2)).toString('hex')).toBe('0100');
    ok.write(Buffer.from([0x05, 0x03, 0x00, 0x01, 0, 0, 0, 0, 0, 0]));
    expect((await readBytes(ok, 10)).subarray(0, 2).toString('hex')).toBe('0500');
    expect(associations).toHaveLength(1);
    ok.destroy();
  });

  it('a failed association is a full reply with the failure REP, then the socket closes', async () => {
    const { server } = await start({ associator: () => Promise.reject(Object.assign(new Error('no tunnel'), { code: 'GKD_ERR_NO_TUNNEL' })) });
    const control = await connectRaw(server.address().port);
    control.write(Buffer.from([0x05, 0x01, 0x00]));
    await readBytes(control, 2);
    control.write(Buffer.from([0x05, 0x03, 0x00, 0x01, 0, 0, 0, 0, 0, 0]));
    expect((await readBytes(control, 10)).toString('hex')).toBe('05010001000000000000');
    await readAll(control);
  });
});
