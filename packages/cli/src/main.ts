import yargs, { type Argv } from 'yargs';
import { Args, UsageError, checkCommandLine, readConfigFile } from './args.js';
import { clientCommand } from './commands/client.js';
import { keygenCommand } from './commands/keygen.js';
import { linkCommand } from './commands/link.js';
import { serverCommand } from './commands/server.js';
import { upCommand } from './commands/up.js';
import { flagsFor, type CommandName } from './flags.js';
import { installedVersion } from './version.js';

/** Exit codes of the gkd command. */
export const ExitCode = {
  OK: 0,
  /** Could not start or failed while running (a port in use, …). */
  FAILURE: 1,
  /** Bad flags, environment or config file; a missing key. */
  USAGE: 2,
} as const;

const PRECEDENCE =
  'Every flag can also be set in the environment as GKD_<FLAG> (--log-level → GKD_LOG_LEVEL, --key → GKD_KEY) or in a ' +
  'JSON file given with --config (keys are flag names: { "tunnels": 8, "allow": ["127.0.0.1"] }). ' +
  'Precedence: flags > environment > config file > defaults. Lists (--allow, --deny) take comma-separated values; ' +
  'a list on the command line replaces the one from the environment or the file.';

const OPERATION_FLAGS = new Set(['metrics', 'drain-timeout', 'log-level', 'log-format', 'config']);

/** Add a command's flags (from flags.ts) to its yargs builder. */
function withFlags(y: Argv, command: CommandName): Argv {
  let out = y;
  for (const f of flagsFor(command)) {
    out = out.option(f.name, {
      type: f.kind === 'boolean' ? 'boolean' : 'string',
      describe: f.describe,
      ...(f.default !== undefined ? { defaultDescription: f.default } : {}),
      ...(f.kind === 'boolean' ? {} : { requiresArg: true }),
    });
  }
  const own = flagsFor(command)
    .filter((f) => !OPERATION_FLAGS.has(f.name))
    .map((f) => f.name);
  const operation = flagsFor(command)
    .filter((f) => OPERATION_FLAGS.has(f.name))
    .map((f) => f.name);
  out = out.group(own, 'Options:');
  if (operation.length > 0) out = out.group([...operation, 'config'], 'Logging, metrics, shutdown:');
  return out.epilogue(PRECEDENCE);
}

/**
 * Entry point of the gkd command: parse `argv` (without `node` and the script), run the command,
 * and resolve with the exit code (see ExitCode). Long-running commands resolve after SIGINT/SIGTERM.
 */
export async function main(argv: string[]): Promise<number> {
  let code: number = ExitCode.OK;
  let commandName = '';
  const run = (command: CommandName, body: (args: Args) => Promise<number> | number) => async (parsed: Record<string, unknown>) => {
    commandName = command;
    const positionals = (parsed._ as unknown[] | undefined) ?? [];
    checkCommandLine(command, argv, positionals);
    const link: Record<string, string> = command === 'client' && positionals.length > 1 ? { link: String(positionals[1]) } : {};
    code = await body(new Args(parsed, argv, process.env, link));
  };
  const cli = yargs(argv)
    .scriptName('gkd')
    .usage('gkd: a multi-tunnel TCP accelerator. SOCKS5 in, N parallel TCP tunnels out.\n\nUsage: gkd <command> [flags]')
    .env('GKD')
    .config('config', 'JSON file of flag values (see below)', readConfigFile)
    .command(
      'up',
      'Server and client in one process on loopback, with a fresh key: a local SOCKS5 proxy in one command',
      (y) => withFlags(y, 'up'),
      run('up', upCommand),
    )
    .command(
      'server',
      'Run a gkd server: accept tunnels from clients and dial destinations for them',
      (y) => withFlags(y, 'server'),
      run('server', serverCommand),
    )
    .command(
      'client',
      'Run the local SOCKS5 (and HTTP) proxy, striping each connection over N tunnels to a gkd server: gkd client LINK',
      (y) => withFlags(y, 'client'),
      run('client', clientCommand),
    )
    .command(
      'link',
      "Print the connection link (gkd://…) clients need, from the server's state and flags",
      (y) => withFlags(y, 'link'),
      run('link', linkCommand),
    )
    .command(
      'keygen',
      'Print a new random key (32 bytes, base64url) for GKD_KEY or a users file',
      (y) => y,
      run('keygen', () => keygenCommand()),
    )
    .example('gkd up --allow 127.0.0.1', 'SOCKS5 proxy on 127.0.0.1:1080 that may also reach this machine')
    .example('gkd server', 'a server: TLS with a self-signed certificate and a key, both made on first start')
    .example('gkd link --host vps.example.com', 'print the link for clients (on the server)')
    .example("gkd client 'gkd://vps.example.com:9990?v=1&key=…&fp=…'", 'a client; then: curl --socks5-hostname 127.0.0.1:1080 https://example.com')
    .epilogue(PRECEDENCE)
    .demandCommand(1, 'Say which command to run: gkd up, server, client, link or keygen (gkd --help lists them).')
    .help()
    .alias('h', 'help')
    .version(installedVersion())
    .wrap(Math.min(120, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((message, err) => {
      if (err instanceof UsageError) throw err;
      if (err && !message) throw err;
      throw new UsageError(message ?? err?.message ?? 'invalid arguments');
    });
  try {
    const parsed = await cli.parseAsync();
    const first = parsed._[0];
    if (!commandName && first !== undefined && !['up', 'server', 'client', 'link', 'keygen'].includes(String(first))) {
      throw new UsageError(`unknown command "${String(first)}"; the commands are up, server, client, link and keygen`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(
        `gkd${commandName ? ` ${commandName}` : ''}: ${err.message}\nRun \`gkd ${commandName ? `${commandName} ` : ''}--help\` for the flags.\n`,
      );
      return ExitCode.USAGE;
    }
    process.stderr.write(`gkd${commandName ? ` ${commandName}` : ''}: ${err instanceof Error ? err.message : String(err)}\n`);
    return ExitCode.FAILURE;
  }
  return code;
}
