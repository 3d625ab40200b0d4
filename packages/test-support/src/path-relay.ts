import * as net from 'node:net';

/** How a relay treats the connections from one source address (one client path). */
export type PathState = 'open' | 'blackhole' | 'reset';

/**
 * A TCP relay in front of a server that tells the client's paths apart by their source address (the
 * client binds each path to its own loopback alias) and can cut one: 'blackhole' stops forwarding on
 * that path's connections without closing them (an interface that went down: only keepalives notice)
 * and drops new ones unanswered; 'reset' destroys them and refuses new ones at once. 'open' restores.
 */
export class PathRelay {
  private readonly server: net.Server;
  private readonly states = new Map<string, PathState>();
  private readonly pairs = new Map<string, Set<[net.Socket, net.Socket]>>();
  private readonly silent = new Set<net.Socket>();
  /** Connections accepted per source address, and bytes relayed from the server to each. */
  readonly accepted = new Map<string, number>();
  readonly bytesDown = new Map<string, number>();

  private constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => this.accept(client));
  }

  static async start(target: { host: string; port: number }): Promise<PathRelay> {
    const r = new PathRelay(target);
    await new Promise<void>((resolve) => r.server.listen(0, '127.0.0.1', resolve));
    return r;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Cut or restore the path whose tunnels come from `source`. */
  set(source: string, state: PathState): void {
    this.states.set(source, state);
    const pairs = this.pairs.get(source) ?? new Set();
    if (state !== 'blackhole') for (const s of this.silent) s.destroy();
    if (state === 'open' || state === 'reset') {
      // Restoring a black hole: what was cut stays dead (its peers gave up on it), as on a real path.
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    } else {
      for (const [a, b] of pairs) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
    }
  }

  async close(): Promise<void> {
    for (const pairs of this.pairs.values())
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
    for (const s of this.silent) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private accept(client: net.Socket): void {
    const source = (client.remoteAddress ?? '').replace(/^::ffff:/, '');
    this.accepted.set(source, (this.accepted.get(source) ?? 0) + 1);
    client.on('error', () => undefined);
    const state = this.states.get(source) ?? 'open';
    if (state === 'reset') return void client.destroy();
    if (state === 'blackhole') {
      // Accepted but never answered nor closed: the client's handshake times out.
      client.pause();
      this.silent.add(client);
      client.once('close', () => this.silent.delete(client));
      return;
    }
    const upstream = net.connect(this.target);
    upstream.on('error', () => undefined);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    let set = this.pairs.get(source);
    if (!set) {
      set = new Set();
      this.pairs.set(source, set);
    }
    set.add(pair);
    const drop = (): void => {
      set.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.once('close', drop);
    upstream.once('close', drop);
    upstream.on('data', (d: Buffer) => this.bytesDown.set(source, (this.bytesDown.get(source) ?? 0) + d.length));
    client.pipe(upstream);
    upstream.pipe(client);
  }
}

/** Whether this machine lets a socket bind to `address` (127.0.0.2 works on Linux loopback without setup; not on macOS). */
export async function canBind(address: string): Promise<boolean> {
  const server = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, address, resolve);
    });
    return true;
  } catch {
    return false;
  } finally {
    server.close();
  }
}
