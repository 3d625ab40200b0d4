// stopListening(): the graceful-shutdown step of a front-end. The port is released at once, new
// clients are refused, connected clients go on; close() then drops what is left.
import { once } from 'node:events';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpProxyServer, SocksServer } from '../src/index.js';
import { connectRaw, directOpener, readAll, readBytes, socksConnect } from './helpers.js';

let echo: net.Server;
let echoPort = 0;

beforeAll(async () => {
  echo = net.createServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  echoPort = (echo.address() as net.AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => echo.close(() => resolve())));

async function refused(port: number): Promise<string | undefined> {
  const socket = net.connect(port, '127.0.0.1');
  const [err] = (await Promise.race([once(socket, 'error'), once(socket, 'connect').then(() => [undefined])])) as [NodeJS.ErrnoException | undefined];
  socket.destroy();
  return err?.code;
}

describe('stopListening', () => {
  it('SOCKS5: new clients are refused, a connected one keeps working until close()', async () => {
    const server = await SocksServer.listen({ host: '127.0.0.1', port: 0, opener: directOpener().opener });
    const port = server.address().port;
    const client = await connectRaw(port);
    expect((await socksConnect(client, '127.0.0.1', echoPort))[1]).toBe(0x00);

    server.stopListening();
    server.stopListening(); // idempotent
    expect(await refused(port)).toBe('ECONNREFUSED');
    client.write('still here');
    expect((await readBytes(client, 10)).toString()).toBe('still here');

    const dropped = readAll(client); // resolves once the proxy closed the connection
    await server.close();
    await dropped;
  });

  it('HTTP: new clients are refused, an open CONNECT tunnel keeps working until close()', async () => {
    const server = await HttpProxyServer.listen({ host: '127.0.0.1', port: 0, opener: directOpener().opener });
    const port = server.address().port;
    const client = await connectRaw(port);
    client.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`);
    const head = (await readBytes(client, 12)).toString();
    expect(head).toBe('HTTP/1.1 200');
    let rest = '';
    while (!rest.endsWith('\r\n\r\n')) rest += (await readBytes(client, 1)).toString();

    server.stopListening();
    expect(await refused(port)).toBe('ECONNREFUSED');
    client.write('tunnel');
    expect((await readBytes(client, 6)).toString()).toBe('tunnel');

    const dropped = readAll(client); // resolves once the proxy closed the connection
    await server.close();
    await dropped;
  });
});
