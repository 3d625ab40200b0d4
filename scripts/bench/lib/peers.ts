/**
 * The servers of one scenario besides gkd: the file server, iperf3, and the peer tools from Debian
 * (microsocks, shadowsocks-libev, kcptun), each started in the namespace where a user would run it.
 * A tool whose binaries are missing is skipped with a message.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Proc, run, sleep } from './proc.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export function have(bin: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${bin}`], { encoding: 'utf8' }).status === 0;
}

/** Wait until something listens on `port` (tcp or udp) inside `ns`. */
export async function waitListen(ns: string, proto: 'tcp' | 'udp', port: number, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const r = await run(ns, 'ss', [proto === 'tcp' ? '-Hltn' : '-Hlun', `sport = :${port}`], 5000);
    if (r.stdout.trim()) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${proto}/${port} in ${ns} after ${timeoutMs} ms`);
}

/** The file server (scripts/bench/fileserver.ts) in `ns`. */
export async function startFileServer(ns: string, host: string, port: number, logDir: string): Promise<Proc> {
  const p = new Proc('file server', ns, 'node', ['--import', 'tsx', `${ROOT}scripts/bench/fileserver.ts`, host, String(port)], {
    logFile: `${logDir}/fileserver.log`,
  });
  await p.waitFor(/listening/);
  return p;
}

/** One plain Node relay hop (scripts/bench/relay.ts). */
export async function startRelay(ns: string, listenPort: number, targetPort: number, logDir: string, name: string): Promise<Proc> {
  const p = new Proc(name, ns, 'node', ['--import', 'tsx', `${ROOT}scripts/bench/relay.ts`, '127.0.0.1', String(listenPort), '127.0.0.1', String(targetPort)], {
    logFile: `${logDir}/relay.log`,
  });
  await p.waitFor(/listening/);
  return p;
}

/** How a tool's download is made from the client namespace. */
export interface Route {
  /** SOCKS5 proxy (host:port) curl goes through, if any. */
  socks?: string;
  /** Base URL of the file server as this route reaches it (`${base}/bytes/<n>`). */
  base: string;
}

/** A peer tool deployed for one scenario. */
export interface PeerTool {
  id: 'microsocks' | 'ss' | 'kcptun';
  label: string;
  route: Route;
  procs: Proc[];
  /** pids to account CPU to: [client side, server side]. */
  pids(): { client: number; server: number };
}

export const PEER_BINARIES: Record<PeerTool['id'], string[]> = {
  microsocks: ['microsocks'],
  ss: ['ss-server', 'ss-local'],
  kcptun: ['kcptun-server', 'kcptun-client'],
};

export interface Sides {
  nsClient: string;
  nsServer: string;
  /** Address the server side listens on, as the client side reaches it. */
  serverAddr: string;
  /** Where the file server is, as seen from the server side (a loopback address there). */
  fileHost: string;
  filePort: number;
  logDir: string;
}

/** microsocks on the server side: a plain SOCKS5 hop (one TCP connection across the WAN). */
export async function startMicrosocks(s: Sides, port = 1080): Promise<PeerTool> {
  const p = new Proc('microsocks', s.nsServer, 'microsocks', ['-i', s.serverAddr, '-p', String(port)], { logFile: `${s.logDir}/microsocks.log` });
  await waitListen(s.nsServer, 'tcp', port);
  return {
    id: 'microsocks',
    label: 'microsocks',
    route: { socks: `${s.serverAddr}:${port}`, base: `http://${s.fileHost}:${s.filePort}` },
    procs: [p],
    pids: () => ({ client: -1, server: p.pid }),
  };
}

/** shadowsocks-libev: ss-server on the server side, ss-local (SOCKS5) on the client side; AEAD chacha20-ietf-poly1305, the default. */
export async function startShadowsocks(s: Sides, port = 8388, socksPort = 1081): Promise<PeerTool> {
  const common = ['-k', 'gkd-bench-password', '-m', 'chacha20-ietf-poly1305', '-t', '60'];
  const server = new Proc('ss-server', s.nsServer, 'ss-server', ['-s', s.serverAddr, '-p', String(port), ...common], { logFile: `${s.logDir}/ss.log` });
  await waitListen(s.nsServer, 'tcp', port);
  const local = new Proc('ss-local', s.nsClient, 'ss-local', ['-s', s.serverAddr, '-p', String(port), '-b', '127.0.0.1', '-l', String(socksPort), ...common], {
    logFile: `${s.logDir}/ss.log`,
  });
  await waitListen(s.nsClient, 'tcp', socksPort);
  return {
    id: 'ss',
    label: 'shadowsocks-libev',
    route: { socks: `127.0.0.1:${socksPort}`, base: `http://${s.fileHost}:${s.filePort}` },
    procs: [server, local],
    pids: () => ({ client: local.pid, server: server.pid }),
  };
}

/**
 * kcptun: kcptun-server on the server side forwarding to the file server, kcptun-client on the client
 * side as a local port (kcptun is a port forwarder, not a SOCKS proxy). `--mode fast`; every other
 * setting is kcptun's default (aes, FEC 10/3, sndwnd 128 / rcvwnd 512 on the client, 1024/1024 on
 * the server, compression on).
 */
export async function startKcptun(s: Sides, port = 29900, localPort = 12948): Promise<PeerTool> {
  const server = new Proc(
    'kcptun-server',
    s.nsServer,
    'kcptun-server',
    ['-l', `${s.serverAddr}:${port}`, '-t', `${s.fileHost}:${s.filePort}`, '--mode', 'fast', '--quiet'],
    {
      logFile: `${s.logDir}/kcptun.log`,
    },
  );
  await waitListen(s.nsServer, 'udp', port);
  const client = new Proc(
    'kcptun-client',
    s.nsClient,
    'kcptun-client',
    ['-l', `127.0.0.1:${localPort}`, '-r', `${s.serverAddr}:${port}`, '--mode', 'fast', '--quiet'],
    {
      logFile: `${s.logDir}/kcptun.log`,
    },
  );
  await waitListen(s.nsClient, 'tcp', localPort);
  return {
    id: 'kcptun',
    label: 'kcptun (fast)',
    route: { base: `http://127.0.0.1:${localPort}` },
    procs: [server, client],
    pids: () => ({ client: client.pid, server: server.pid }),
  };
}
