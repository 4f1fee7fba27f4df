// Small helpers shared by the three command-line programs: their argument parsing, one-line errors, safe log
// text and signal-driven shutdown.

import { createRequire } from 'node:module';
import type { Argv } from 'yargs';
import { TaskwireError } from './errors.js';

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

/** Prints `program: message` (never a stack trace) and exits with `code`. */
export function die(program: string, error: unknown, code = 2): never {
  const message = error instanceof Error ? error.message : String(error);
  const tag = error instanceof TaskwireError ? ` (${printable(error.code)})` : '';
  process.stderr.write(`${program}: ${printable(message)}${tag}\n`);
  process.exit(code);
}

/**
 * Runs `shutdown` on the first SIGINT or SIGTERM and exits 0 when it is done; a second signal exits at once
 * with 130, for when the graceful path is stuck.
 */
export function onSignals(program: string, shutdown: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      process.stderr.write(`${program}: ${signal} again, exiting now\n`);
      process.exit(130);
    }
    stopping = true;
    process.stderr.write(`${program}: ${signal} received, shutting down\n`);
    shutdown().then(
      () => process.exit(0),
      (err: unknown) => die(program, err, 1),
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

/**
 * yargs as CommonJS: its ESM entry loads cliui's ESM build, which wraps help text at the column whatever the
 * word (cliui 8 leaves word wrapping to wrap-ansi only in its CommonJS build), so `--help` read "conn/ect".
 */
export const yargs = createRequire(import.meta.url)('yargs') as (args: readonly string[]) => Argv;

/**
 * The package's version for --version: CommonJS yargs guesses it from the package.json nearest the process's
 * working directory or entry point, which is the installing project's, not taskwire's.
 */
export const VERSION = (createRequire(import.meta.url)('taskwire/package.json') as { version: string }).version;

/** The width help text wraps at: the terminal's, else $COLUMNS, else 80 (a pipe), at most 120. */
export function helpWidth(): number {
  const columns = process.stdout.columns || Number.parseInt(process.env.COLUMNS ?? '', 10) || 80;
  return Math.max(40, Math.min(120, columns));
}

/**
 * What every program's parser shares: word-wrapped help at the terminal's width, and usage errors as one line
 * pointing at --help with exit status 2 (yargs prints the whole help and exits 1).
 */
export function parser(program: string, args: readonly string[]): Argv {
  return yargs(args)
    .scriptName(program)
    .wrap(helpWidth())
    .fail((message: string | undefined, error: Error | undefined) => {
      let text = message ?? error?.message ?? 'invalid arguments';
      // yargs reads "-5+2" as options; the input is meant, and only `--` can say so.
      const dashes = args.indexOf('--');
      const input = (dashes < 0 ? args : args.slice(0, dashes)).find((arg) => /^-[^-a-zA-Z]/.test(arg));
      if (input !== undefined && /^Unknown argument/.test(text)) text += `; an input that begins with "-" goes after --, as in: ${program} [options] -- ${input}`;
      process.stderr.write(`${program}: ${printable(text)} (see --help)\n`);
      process.exit(2);
    });
}

const envName = (option: string): string => `TASKWIRE_${option.replace(/[A-Z]/g, (c) => `_${c}`).replace(/-/g, '_').toUpperCase()}`;

/**
 * The TASKWIRE_* variables of the options `y` declares so far, as defaults below the command line's. Only
 * these: one shell often runs all three programs, and `.env('TASKWIRE')` handed each the others' variables
 * (TASKWIRE_LOCAL_WORKERS for a worker), which `.strict()` then refused.
 */
export function ownEnv<T>(y: Argv<T>): Argv<T> {
  const declared = (y as unknown as { getOptions(): { key: Record<string, unknown>; alias: Record<string, string[]> } }).getOptions();
  const aliases = new Set(Object.values(declared.alias).flat());
  const options = Object.keys(declared.key).filter((name) => !aliases.has(name) && !['help', 'version', '$0'].includes(name));
  const values: Record<string, string> = {};
  for (const option of options) {
    const value = process.env[envName(option)];
    if (value !== undefined) values[option] = value;
  }
  return y.config(values).epilogue(`Environment: ${options.map(envName).join(', ')} set the options of the same name; the command line wins.`);
}

/**
 * A coercion for a numeric option that names the flag and what it got: yargs' number type turns "abc" into
 * NaN, which then surfaced as a library error about `options.port`.
 */
export function whole(flag: string, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): (value: unknown) => number {
  return (value) => {
    if (value === undefined) return value as unknown as number;
    const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `from ${min}` : `from ${min} to ${max}`;
      throw new Error(`--${flag} must be a whole number${what ? ` of ${what}` : ''} ${range}, got ${JSON.stringify(Array.isArray(value) ? value.map(String).join(' ') : String(value))}`);
    }
    return n;
  };
}

/**
 * Ends the program quietly when the reader of its stdout goes away (`| head -1`): what it had to say is no
 * longer wanted, and Node would otherwise print an EPIPE stack trace.
 */
export function quietOnClosedStdout(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    throw err;
  });
}
