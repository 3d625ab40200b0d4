/**
 * Every flag of every command, in one table: yargs builds its options and help from it, the
 * unknown-flag check reads it, the config-file check reads it, and the README table mirrors it.
 *
 * Defaults are NOT given to yargs (only shown in the help): options.ts applies them last, so the
 * precedence stays flags > environment > config file > defaults, and `gkd up` can tell a `--socks`
 * the user asked for from the default one (which may move to a free port).
 */

/** A command of the gkd binary. */
export type CommandName = 'server' | 'client' | 'up' | 'keygen' | 'link';

/** One flag. */
export interface FlagSpec {
  /** Kebab-case name, without the dashes: `log-level`. */
  readonly name: string;
  /** `list` flags may be repeated (and take comma-separated values); `boolean` flags take no value. */
  readonly kind: 'string' | 'boolean' | 'list';
  /** What the value looks like in the help, e.g. `HOST:PORT`. */
  readonly placeholder?: string;
  /** One line of help. */
  readonly describe: string;
  /** The default, as shown in the help (options.ts applies it). */
  readonly default?: string;
  /** The commands that take this flag. */
  readonly commands: readonly CommandName[];
}

const RUNNING: readonly CommandName[] = ['server', 'client', 'up'];
const PROXYING: readonly CommandName[] = ['client', 'up'];
const DIALING: readonly CommandName[] = ['server', 'up'];
/** The server, and `gkd link`, which reads the server's flags to print its link. */
const SERVING: readonly CommandName[] = ['server', 'link'];

/** All flags, grouped as the help shows them. */
export const FLAGS: readonly FlagSpec[] = [
  // server
  {
    name: 'listen',
    kind: 'string',
    placeholder: 'HOST:PORT',
    describe: 'Where the server accepts tunnels (gkd link: its port goes in the link)',
    default: '0.0.0.0:9990',
    commands: SERVING,
  },
  {
    name: 'max-peers',
    kind: 'string',
    placeholder: 'N',
    describe: 'Most peers (users, or the one key) with a live session at once, per worker process',
    default: '32',
    commands: ['server'],
  },
  {
    name: 'max-tunnels-per-session',
    kind: 'string',
    placeholder: 'N',
    describe: 'Most tunnels in one session, per worker process (announced to clients, so --tunnels auto stays under it)',
    default: '32',
    commands: ['server'],
  },
  {
    name: 'max-tunnels-per-peer',
    kind: 'string',
    placeholder: 'N',
    describe: 'Most tunnels of one peer over all its sessions, per worker process',
    default: '64',
    commands: ['server'],
  },
  {
    name: 'max-total-tunnels',
    kind: 'string',
    placeholder: 'N',
    describe: 'Most tunnels of all peers together, per worker process',
    default: '1024',
    commands: ['server'],
  },
  {
    name: 'max-handshakes',
    kind: 'string',
    placeholder: 'N',
    describe: 'Most connections still in their handshake (not yet authenticated), per worker process; a new one evicts the oldest',
    default: '256',
    commands: ['server'],
  },
  {
    name: 'max-buffered',
    kind: 'string',
    placeholder: 'MIB',
    describe:
      'Most payload bytes all peers together may make one worker buffer, in MiB (half for receive windows, half for unacknowledged sent bytes, shared fairly among the active peers); 0: no server-wide bound, only the 32 MiB per peer',
    default: '256',
    commands: ['server'],
  },
  {
    name: 'max-handshakes-per-address',
    kind: 'string',
    placeholder: 'N',
    describe:
      "The same from one address (the PROXY header's with --proxy-protocol), at most --max-handshakes; a tunnel joining a live session counts with its session instead",
    default: '32',
    commands: ['server'],
  },
  {
    name: 'workers',
    kind: 'string',
    placeholder: 'N|auto',
    describe:
      'Worker processes behind the one --listen port (auto: one per available core; 1: a single process); every tunnel of a session goes to the worker that holds it, by its routing token',
    default: 'auto',
    commands: ['server'],
  },
  {
    name: 'proxy-protocol',
    kind: 'boolean',
    describe:
      "Behind a load balancer that sends a PROXY protocol header (HAProxy send-proxy-v2): take the client's address from it, and refuse connections without one. Only when nothing but the balancer can reach --listen",
    default: 'false',
    commands: ['server'],
  },
  {
    name: 'users',
    kind: 'string',
    placeholder: 'FILE',
    describe: 'JSON file of users and their keys, { "alice": "<key>" } (instead of --key)',
    commands: SERVING,
  },
  {
    name: 'tls-cert',
    kind: 'string',
    placeholder: 'FILE',
    describe: 'PEM certificate to serve instead of the self-signed one (with --tls-key)',
    commands: SERVING,
  },
  { name: 'tls-key', kind: 'string', placeholder: 'FILE', describe: 'PEM private key of --tls-cert', commands: SERVING },
  {
    name: 'state-dir',
    kind: 'string',
    placeholder: 'DIR',
    describe: 'Where the server keeps its self-signed certificate, its private key and (when none is given) its key; owner-only',
    default: '$XDG_STATE_HOME/gkd or ~/.local/state/gkd',
    commands: SERVING,
  },
  {
    name: 'plaintext',
    kind: 'boolean',
    describe: 'Unencrypted tunnels (trusted links, benchmarks): anyone on the path can read the traffic. Both ends must ask for it',
    default: 'false',
    commands: ['server', 'client', 'link'],
  },
  {
    name: 'host',
    kind: 'string',
    placeholder: 'NAME',
    describe: "The name or address clients reach the server by (behind NAT the server cannot know it); default: this machine's first public-looking address",
    commands: ['link'],
  },
  {
    name: 'allow',
    kind: 'list',
    placeholder: 'RULE',
    describe: 'Destinations to allow despite the default-denied ranges (loopback, private, link-local…), e.g. 127.0.0.1, 10.0.0.0/8:443, *.lan; repeatable',
    commands: DIALING,
  },
  {
    name: 'deny',
    kind: 'list',
    placeholder: 'RULE',
    describe: 'Destinations to refuse, e.g. :25, example.com; deny beats allow; repeatable',
    commands: DIALING,
  },
  // client
  {
    name: 'link',
    kind: 'string',
    placeholder: 'gkd://…',
    describe: 'The connection link from `gkd link` on the server (server, key, fingerprint in one); also the first argument: gkd client LINK',
    commands: ['client'],
  },
  {
    name: 'server',
    kind: 'list',
    placeholder: 'HOST[:PORT]',
    describe:
      "The gkd server to connect to (port 9990 when omitted), instead of a link; repeat it for one server's other addresses (IPv4 and IPv6): each path spreads its tunnels over those it can reach",
    commands: ['client'],
  },
  {
    name: 'via',
    kind: 'list',
    placeholder: 'ADDR|IFACE[:N]',
    describe:
      'A network path: tunnels start from this local address or interface (N of them, fixed; without N: --tunnels, and with --tunnels auto the path adapts its own count within --min/--max-tunnels, the server cap shared between paths); repeat it to bond links (--via wlan0 --via wwan0:4). All paths carry one session',
    commands: ['client'],
  },
  {
    name: 'tunnels',
    kind: 'string',
    placeholder: 'N|auto',
    describe:
      'TCP tunnels to stripe each connection over: a fixed count (1–256), or auto (more while more tunnels buy more goodput, fewer when idle; the server caps it)',
    default: 'auto',
    commands: PROXYING,
  },
  { name: 'min-tunnels', kind: 'string', placeholder: 'N', describe: 'With --tunnels auto: fewest tunnels', default: '2', commands: PROXYING },
  {
    name: 'start-tunnels',
    kind: 'string',
    placeholder: 'N',
    describe:
      'With --tunnels auto: the count a new client starts with, before it has measured anything (within --min/--max-tunnels); with several --via paths, per path, and by default 8 in all is split over them (4 each for two)',
    default: '16',
    commands: PROXYING,
  },
  {
    name: 'max-tunnels',
    kind: 'string',
    placeholder: 'N',
    describe: 'With --tunnels auto: most tunnels. N tunnels take about N shares of a shared bottleneck: this is your cap on what gkd takes from others',
    default: '32',
    commands: PROXYING,
  },
  {
    name: 'socks',
    kind: 'string',
    placeholder: 'HOST:PORT',
    describe: 'Where the local SOCKS5 proxy listens (`gkd up` moves to a free port when the default is taken)',
    default: '127.0.0.1:1080',
    commands: PROXYING,
  },
  { name: 'http', kind: 'string', placeholder: 'HOST:PORT', describe: 'Also serve an HTTP proxy (CONNECT and plain HTTP) here', commands: PROXYING },
  {
    name: 'socks-user',
    kind: 'string',
    placeholder: 'NAME',
    describe: 'Require this username (with --socks-pass) on the SOCKS5 port, and on the --http port (Proxy-Authorization: Basic)',
    commands: PROXYING,
  },
  {
    name: 'socks-pass',
    kind: 'string',
    placeholder: 'PASSWORD',
    describe: 'The password for --socks-user (prefer GKD_SOCKS_PASS: argv is visible to other users)',
    commands: PROXYING,
  },
  {
    name: 'user',
    kind: 'string',
    placeholder: 'NAME',
    describe: "User name, when the server has a --users file (gkd link: print only this user's link)",
    commands: ['client', 'link'],
  },
  {
    name: 'tls',
    kind: 'boolean',
    describe: 'Connect to the server over TLS (verified with the system CAs unless --tls-ca or --tls-fingerprint)',
    default: 'false',
    commands: ['client'],
  },
  {
    name: 'tls-fingerprint',
    kind: 'string',
    placeholder: 'SHA256',
    describe: "Pin the server certificate's SHA-256 fingerprint (hex; the server logs it); implies --tls",
    commands: ['client'],
  },
  { name: 'tls-ca', kind: 'string', placeholder: 'FILE', describe: 'Verify the server certificate with this PEM CA; implies --tls', commands: ['client'] },
  { name: 'quiet', kind: 'boolean', describe: 'No live status line on the terminal', default: 'false', commands: PROXYING },
  // shared
  {
    name: 'key',
    kind: 'string',
    placeholder: 'KEY',
    describe: 'The pre-shared key from `gkd keygen` (prefer GKD_KEY: argv is visible to other users); a server without one makes one in --state-dir',
    commands: ['server', 'client', 'link'],
  },
  { name: 'metrics', kind: 'string', placeholder: 'HOST:PORT', describe: 'Serve Prometheus metrics at http://HOST:PORT/metrics', commands: RUNNING },
  {
    name: 'drain-timeout',
    kind: 'string',
    placeholder: 'SECONDS',
    describe: 'On SIGINT/SIGTERM, how long open connections may finish before they are closed, in seconds',
    default: '10',
    commands: RUNNING,
  },
  {
    name: 'congestion',
    kind: 'string',
    placeholder: 'NAME',
    describe:
      "TCP congestion control for the tunnel sockets (e.g. bbr, cubic; what the kernel offers, Linux). On a server it governs downloads, on a client uploads. Default: the system's",
    commands: RUNNING,
  },
  { name: 'log-level', kind: 'string', placeholder: 'LEVEL', describe: 'error, warn, info or debug', default: 'info', commands: RUNNING },
  {
    name: 'log-format',
    kind: 'string',
    placeholder: 'FORMAT',
    describe: 'pretty (one line per event) or json (one JSON object per line); logs go to stderr',
    default: 'pretty',
    commands: RUNNING,
  },
];

/** The flags a command takes. */
export function flagsFor(command: CommandName): FlagSpec[] {
  return FLAGS.filter((f) => f.commands.includes(command));
}

/** The environment variable that sets a flag: `--log-level` → `GKD_LOG_LEVEL`. */
export function envName(flag: string): string {
  return `GKD_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** `log-level` → `logLevel` (yargs accepts both spellings; so does the config file). */
export function camelName(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Flags every command takes besides its own (yargs adds them). */
export const BUILTIN_FLAGS: readonly string[] = ['help', 'version', 'config'];
