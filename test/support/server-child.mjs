// One gkd server in its own process, for tests that kill servers (test/haproxy.test.ts). Plain TCP on
// 127.0.0.1, port 0, the key from GKD_TEST_KEY, loopback destinations allowed, room for 1 024
// sessions of the one key, behind a balancer that sends a PROXY protocol header (proxyProtocol).
// Sends { port } when listening; answers 'stats' with each session's id, tunnels up and the address
// its first tunnel came from (what a test checks affinity and the PROXY header with).
import { GkdServer } from '@gkd/server';

const server = await GkdServer.start({
  listen: '127.0.0.1:0',
  key: process.env.GKD_TEST_KEY,
  allow: ['127.0.0.1'],
  proxyProtocol: true,
  limits: { maxPeers: 1024, maxSessions: 1024, maxSessionsPerPeer: 1024, maxTunnelsPerPeer: 65_536, maxTunnels: 65_536 },
});
let refused = 0;
server.on('refused', () => refused++);
process.on('message', (m) => {
  if (m !== 'stats') return;
  const from = new Map(server.transport.peers().map((p) => [p.sessionId, p.remoteAddress]));
  process.send({ sessions: server.stats().peers.map((p) => ({ id: p.id, tunnelsUp: p.tunnelsUp, remoteAddress: from.get(p.id) })), refused });
});
process.send({ port: server.address().port });
process.on('disconnect', () => process.exit(0));
