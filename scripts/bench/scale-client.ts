/**
 * Child of scale.ts: runs its share of the bench's peers (one client per user, `--tunnels` each), one
 * download stream per client from the endless destination, and reports the bytes received over the
 * measured window. Protocol over IPC: parent sends the job; child sends { ready } once every tunnel
 * is up and every stream moves, then { bytes } when told 'measure' and 'stop' after it.
 */
import { Client } from '@gkd/transport';

interface Job {
  port: number;
  destPort: number;
  tunnels: number;
  users: [user: string, key: string][];
}

const job = await new Promise<Job>((r) => process.once('message', (m) => r(m as Job)));
const clients = job.users.map(([user, key]) => Client.create(`127.0.0.1:${job.port}`, { key, user, tunnels: job.tunnels }));
let received = 0;
const deadline = Date.now() + 120_000;
while (!clients.every((c) => c.tunnelsUp === job.tunnels)) {
  if (Date.now() > deadline) throw new Error(`tunnels up: ${clients.map((c) => c.tunnelsUp).join(',')}`);
  await new Promise((r) => setTimeout(r, 50));
}
for (const c of clients) {
  const conn = await c.open({ host: '127.0.0.1', port: job.destPort });
  conn.on('data', (d: Buffer) => (received += d.length));
  conn.on('error', () => undefined);
}
process.send!({ ready: true });
process.on('message', (m) => {
  if (m === 'mark') process.send!({ bytes: received });
  if (m === 'stop') {
    for (const c of clients) c.close();
    process.exit(0);
  }
});
