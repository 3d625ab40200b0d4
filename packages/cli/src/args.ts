import { readFileSync } from 'node:fs';
import { BUILTIN_FLAGS, FLAGS, camelName, envName, flagsFor, type CommandName } from './flags.js';

/** A bad flag, environment variable or config file: the message names it. Exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `logLevel` → `log-level`. */
function kebabName(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The flag names found in `argv` (`--name`, `--name=value`, `--no-name`, `-h`), up to a bare `--`. */
function flagsOnCommandLine(argv: readonly string[]): string[] {
  const names: string[] = [];
  for (const token of argv) {
    if (token === '--') break;
    if (!token.startsWith('-') || token === '-' || /^-\d/.test(token)) continue;
    // Short flags (only -h exists) keep their dash, so they never match a long name.
    names.push(token.startsWith('--') ? kebabName(token.slice(2).split('=')[0]!) : token.split('=')[0]!);
  }
  return names;
}

/**
 * The merged values yargs parsed (command line, GKD_* environment, --config file), with what yargs
 * cannot tell: where a value came from (for error messages) and the right precedence for booleans
 * (yargs reads GKD_QUIET=1 as false).
 */
export class Args {
  private readonly given: Set<string>;

  constructor(
    /** yargs' argv object. */
    readonly values: Readonly<Record<string, unknown>>,
    /** The raw command-line arguments. */
    readonly argv: readonly string[],
    readonly env: NodeJS.ProcessEnv = process.env,
    /** Flags given as positional arguments (`gkd client LINK` sets `link`): they count as the command line. */
    positional: Readonly<Record<string, string>> = {},
  ) {
    this.given = new Set(flagsOnCommandLine(argv).map((n) => (n.startsWith('no-') && !FLAGS.some((f) => f.name === n) ? n.slice(3) : n)));
    if (Object.keys(positional).length > 0) {
      for (const name of Object.keys(positional)) {
        if (this.given.has(name)) throw new UsageError(`give the ${name} as an argument or as --${name}, not both`);
        this.given.add(name);
      }
      this.values = { ...values, ...positional };
    }
  }

  /** True when the flag was given on the command line. */
  onCommandLine(name: string): boolean {
    return this.given.has(name);
  }

  /** The flag's name for a message, with the source when it is not the command line: `--tunnels (from GKD_TUNNELS)`. */
  label(name: string): string {
    if (this.given.has(name)) return `--${name}`;
    if (this.env[envName(name)] !== undefined) return `--${name} (from ${envName(name)})`;
    const config = this.values.config;
    if (typeof config === 'string') return `--${name} (from "${name}" in ${config})`;
    return `--${name}`;
  }

  private raw(name: string): unknown {
    const v = this.values[name] ?? this.values[camelName(name)];
    return v === null ? undefined : v;
  }

  /** A single-valued flag as text; when repeated, the last one wins. Undefined when not set. */
  string(name: string): string | undefined {
    let v = this.raw(name);
    if (Array.isArray(v)) v = v[v.length - 1];
    if (v === undefined) return undefined;
    if (typeof v === 'number') return String(v);
    if (typeof v !== 'string') throw new UsageError(`${this.label(name)} must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A repeatable flag: every value, each split on commas and whitespace. Undefined when not set. */
  list(name: string): string[] | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    const items = Array.isArray(v) ? v : [v];
    const out: string[] = [];
    for (const item of items) {
      if (typeof item !== 'string') throw new UsageError(`${this.label(name)} must be a string or a list of strings, got ${JSON.stringify(item)}`);
      out.push(...item.split(/[\s,]+/).filter((s) => s.length > 0));
    }
    return out;
  }

  /** A boolean flag: command line, then GKD_* (1/0, true/false, yes/no, on/off), then the config file. */
  bool(name: string): boolean | undefined {
    const v = this.raw(name);
    if (this.given.has(name)) return v === true || (Array.isArray(v) && v[v.length - 1] === true);
    const env = this.env[envName(name)];
    if (env !== undefined) {
      const t = env.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(t)) return true;
      if (['0', 'false', 'no', 'off', ''].includes(t)) return false;
      throw new UsageError(`${envName(name)} must be true or false (1/0, yes/no, on/off), got "${env}"`);
    }
    if (v === undefined) return undefined;
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    throw new UsageError(`${this.label(name)} must be true or false, got ${JSON.stringify(v)}`);
  }
}

/** Throw UsageError for a flag `command` does not take, or a stray positional argument. */
export function checkCommandLine(command: CommandName, argv: readonly string[], positionals: readonly unknown[]): void {
  const known = new Set([...flagsFor(command).map((f) => f.name), ...BUILTIN_FLAGS, '-h']);
  for (const name of flagsOnCommandLine(argv)) {
    const bare = name.startsWith('no-') ? name.slice(3) : name;
    if (known.has(name) || known.has(bare)) continue;
    const elsewhere = FLAGS.find((f) => f.name === name || f.name === bare);
    const hint = elsewhere ? ` (it is a flag of ${elsewhere.commands.map((c) => `gkd ${c}`).join(', ')})` : '';
    throw new UsageError(`unknown flag ${name.startsWith('-') ? name : `--${name}`}${hint}`);
  }
  const extra = positionals.slice(1);
  if (command === 'client') {
    // `gkd client LINK`: the one positional argument a command takes.
    if (extra.length > 1) throw new UsageError(`unexpected argument "${extra.slice(1).join(' ')}" (gkd client takes one link and flags)`);
    return;
  }
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra.join(' ')}" (gkd ${command} takes only flags)`);
}

/**
 * Read a `--config` file for yargs: a JSON object whose keys are flag names (`"log-level"` or
 * `"logLevel"`). A key no command knows is an error, so a typo does not pass silently; a key of
 * another command is fine (one file can serve `server` and `client`).
 */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`--config ${path}: cannot read it (${(err as Error).message})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--config ${path}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`--config ${path}: must be a JSON object of flag names and values, like { "tunnels": 8 }`);
  }
  for (const key of Object.keys(parsed)) {
    const name = kebabName(key);
    if (name === 'config') throw new UsageError(`--config ${path}: "${key}" cannot be set in a config file`);
    if (!FLAGS.some((f) => f.name === name)) throw new UsageError(`--config ${path}: unknown key "${key}" (the keys are flag names, e.g. "log-level")`);
  }
  return parsed as Record<string, unknown>;
}
