/**
 * One hop of a plain Node TCP relay (the loopback bench's baseline for "what two extra Node hops
 * cost"): every accepted connection is piped both ways to TARGET_HOST:TARGET_PORT, nothing else.
 * Two of these in a row model gkd's client and server processes without framing, striping or
 * flow control.
 *
 *   node --import tsx scripts/bench/relay.ts LISTEN_HOST LISTEN_PORT TARGET_HOST TARGET_PORT
 *
 * Prints `listening HOST:PORT` once ready.
 */
import * as net from 'node:net';

const [lhost = '127.0.0.1', lport = '0', thost = '127.0.0.1', tport = '8080'] = process.argv.slice(2);

const server = net.createServer((inbound) => {
  const outbound = net.connect({ host: thost, port: Number(tport) });
  inbound.setNoDelay(true);
  outbound.setNoDelay(true);
  inbound.pipe(outbound);
  outbound.pipe(inbound);
  const close = (): void => {
    inbound.destroy();
    outbound.destroy();
  };
  inbound.on('error', close).on('close', close);
  outbound.on('error', close).on('close', close);
});
server.listen(Number(lport), lhost, () => {
  const a = server.address() as net.AddressInfo;
  console.log(`listening ${a.address}:${a.port}`);
});
