import { Writable } from 'node:stream';
import winston from 'winston';
import type { LogFormat, LogLevel } from './options.js';

/** The logger every command uses (winston). */
export type Logger = winston.Logger;

/**
 * Where log lines go: a stream (stderr), with an optional hook around each write so the status line
 * can step out of the way on a shared terminal.
 */
export class LogSink {
  /** Called with each write; must call `write()` once. Set by the status line. */
  around: ((write: () => void) => void) | undefined;

  constructor(readonly stream: NodeJS.WritableStream = process.stderr) {}

  /** Write one line (the text has no newline). */
  writeLine(text: string): void {
    const write = (): void => void this.stream.write(`${text}\n`);
    if (this.around) this.around(write);
    else write();
  }
}

/** Settings of the logger. */
export interface LoggerOptions {
  level: LogLevel;
  format: LogFormat;
  sink?: LogSink;
  /** Colour the level in pretty output. Default: when the sink is a terminal and NO_COLOR is unset. */
  colors?: boolean;
  /** A worker of `gkd server --workers`: its id tags every line (`worker 2: …`; json: `"worker":2`). */
  worker?: number;
}

const COLORS: Record<string, string> = { error: '\x1b[31m', warn: '\x1b[33m', info: '\x1b[36m', debug: '\x1b[90m' };

/**
 * A logger writing one line per event to stderr. `pretty`: `2026-01-02T03:04:05.678Z info  tunnel 3 up`;
 * `json`: `{"level":"info","message":"tunnel 3 up","tunnel":3,"time":"…"}` with the event's fields.
 */
export function createLogger(options: LoggerOptions): Logger {
  const sink = options.sink ?? new LogSink();
  const colors = options.colors ?? ((sink.stream as { isTTY?: boolean }).isTTY === true && !process.env.NO_COLOR);
  const { combine, timestamp, json, printf } = winston.format;
  const format =
    options.format === 'json'
      ? combine(
          timestamp({ alias: 'time' }),
          winston.format((info) => {
            delete info.timestamp; // keep `time` only
            return info;
          })(),
          json(),
        )
      : combine(
          timestamp(),
          printf((info) => {
            const level = info.level.padEnd(5);
            const shown = colors ? `${COLORS[info.level] ?? ''}${level}\x1b[0m` : level;
            return `${String(info.timestamp)} ${shown} ${options.worker === undefined ? '' : `worker ${options.worker}: `}${String(info.message)}`;
          }),
        );
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      sink.writeLine(chunk.toString().replace(/\r?\n$/, ''));
      callback();
    },
  });
  return winston.createLogger({
    level: options.level,
    levels: { error: 0, warn: 1, info: 2, debug: 3 },
    format,
    ...(options.worker === undefined ? {} : { defaultMeta: { worker: options.worker } }),
    transports: [new winston.transports.Stream({ stream })],
  });
}

/** An error's message for a log line (`Error: x` → `x`; anything else as text). */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}
