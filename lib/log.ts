// The command-line programs' log: one stream (stderr, so stdout carries only results), five levels, and lines
// either for people (`program: message`) or for log collectors (one JSON object per line).

/**
 * Characters a terminal or a log reader would act on rather than show: C0 and C1 controls, DEL, line and paragraph
 * separators, and the bidirectional overrides that can make a line read differently from its bytes.
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * Text from a peer (a worker's name, a job type, an error message) made safe to print on one line: control
 * characters are shown as escapes instead of acting, so no peer can forge a log line or drive the terminal.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => NAMED[c] ?? `\\u{${c.charCodeAt(0).toString(16).padStart(4, '0')}}`);
}

/** From the fewest lines to the most: --quiet is `warn`, the default `info`, -v `verbose`, -vv `trace`. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'verbose', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** What a JSON line carries beyond its time, level, program and message: the event's name and its ids. */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  readonly level: LogLevel;
  readonly format: LogFormat;
  /** Whether lines of this level are written: checked before building a line that costs something. */
  enabled(level: LogLevel): boolean;
  log(level: LogLevel, message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  verbose(message: string, fields?: LogFields): void;
  trace(message: string, fields?: LogFields): void;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Default process.stderr. */
  write?: (line: string) => void;
}

export function createLogger(program: string, options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  const format = options.format ?? 'text';
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  const rank = LOG_LEVELS.indexOf(level);
  const enabled = (l: LogLevel): boolean => LOG_LEVELS.indexOf(l) <= rank;
  const log = (l: LogLevel, message: string, fields?: LogFields): void => {
    if (!enabled(l)) return;
    if (format === 'json') {
      // JSON.stringify escapes every control character, so peer-supplied text cannot break a line here either.
      write(`${JSON.stringify({ time: new Date().toISOString(), level: l, program, msg: message, ...fields })}\n`);
    } else {
      // Names, job types and messages come from peers: printable() keeps them from forging lines or driving the terminal.
      write(`${program}: ${printable(message)}\n`);
    }
  };
  return {
    level,
    format,
    enabled,
    log,
    error: (m, f) => log('error', m, f),
    warn: (m, f) => log('warn', m, f),
    info: (m, f) => log('info', m, f),
    verbose: (m, f) => log('verbose', m, f),
    trace: (m, f) => log('trace', m, f),
  };
}
