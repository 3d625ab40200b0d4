/**
 * Development entry point (`pnpm --filter @gkd/socks-client dev`): a gkd client with a SOCKS5 port and an
 * HTTP proxy port, against a local gkd server (start one with `pnpm --filter @gkd/server dev`).
 * GKD_KEY must hold the server's key; GKD_SERVER (default 127.0.0.1:9990), GKD_SOCKS (default
 * 127.0.0.1:1080), GKD_HTTP (default 127.0.0.1:8080) and GKD_TUNNELS (default 4) change the rest.
 */
import { Client, parseHostPort } from '@gkd/transport';
import { HttpProxyServer } from './http-proxy.js';
import { SocksServer } from './socks-server.js';

const key = process.env.GKD_KEY;
if (!key) {
  console.error('GKD_KEY is not set: use the key `pnpm --filter @gkd/server dev` printed, e.g. GKD_KEY=... pnpm --filter @gkd/socks-client dev');
  process.exit(2);
}
const server = process.env.GKD_SERVER ?? '127.0.0.1:9990';
const socksAt = parseHostPort(process.env.GKD_SOCKS ?? '127.0.0.1:1080', '127.0.0.1', 'GKD_SOCKS');
const httpAt = parseHostPort(process.env.GKD_HTTP ?? '127.0.0.1:8080', '127.0.0.1', 'GKD_HTTP');
const client = Client.create(server, { key, tunnels: Number(process.env.GKD_TUNNELS ?? 4) });
client.on('tunnel-up', (i: number) => console.log(`tunnel ${i} up`));
client.on('tunnel-down', (i: number, err?: Error) => console.log(`tunnel ${i} down${err ? `: ${err.message}` : ''}`));
client.on('reconnecting', (i: number, ms: number, err: Error) => console.log(`tunnel ${i}: ${err.message}; retrying in ${ms} ms`));
const opener = (destination: Parameters<Client['open']>[0], signal?: AbortSignal) => client.open(destination, { signal });
const onEvent = (e: { type: string }) => console.log(JSON.stringify(e));
const socks = await SocksServer.listen({ ...socksAt, opener, onEvent });
const http = await HttpProxyServer.listen({ ...httpAt, opener, onEvent });
console.log(`SOCKS5 on ${socks.address().address}:${socks.address().port}, HTTP proxy on ${http.address().address}:${http.address().port}, server ${server}`);
const stop = async () => {
  await socks.close();
  await http.close();
  client.close();
  process.exit(0);
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
