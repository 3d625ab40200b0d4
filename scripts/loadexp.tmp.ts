// Experiment: 1000 × 1 MiB echo through 8 tunnels, with a session config from argv[2] (JSON).
import { startStack, firstClient } from '/work/main/scripts/reliability/lib/stack.js';
import { echoLoad } from '/work/main/scripts/reliability/lib/load.js';
const session = JSON.parse(process.argv[2] ?? '{}');
const stack = await startStack({ users: ['alice'], clients: [{ user: 'alice', tunnels: 8, socks: { maxConnections: 2000 }, session }], limits: { maxStreamsPerSession: 2000 }, session });
const client = firstClient(stack);
const t0 = Date.now();
const load = await echoLoad(client.ready.socksPort, stack.ports.echo, 1000, 1024 * 1024, 180_000);
const cs = await client.call('stats');
console.log(JSON.stringify(session), 'wall', ((Date.now() - t0) / 1000).toFixed(1), 's', JSON.stringify(load).slice(0, 200), 'resent', cs.resentFrames);
await stack.close();
process.exit(0);
