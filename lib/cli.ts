// Small helpers shared by the three command-line programs: their argument parsing, settings from TASKWIRE_*
// variables and a configuration file, one-line errors, the log, and signal-driven shutdown.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { Argv } from 'yargs';
import { TaskwireError } from './errors.js';
import { createLogger, LOG_FORMATS, printable, type LogFormat, type Logger, type LogLevel } from './log.js';
import { nearestName } from './options.js';

export { printable } from './log.js';

/** The program's log once its options are read (startLog()); until then errors are plain lines. */
let active: Logger | null = null;

/** Prints `program: message` (never a stack trace), as a JSON line with --log-format json, and exits with `code`. */
export function die(program: string, error: unknown, code = 2): never {
  const message = error instanceof Error ? error.message : String(error);
  const errorCode = error instanceof TaskwireError ? error.code : undefined;
  if (active?.format === 'json') active.error(message, { event: 'fatal', code: errorCode, exitCode: code });
  else process.stderr.write(`${program}: ${printable(message)}${errorCode ? ` (${printable(errorCode)})` : ''}\n`);
  process.exit(code);
}

/** The log the options ask for: --quiet, -v/-vv and --log-format, which every program takes. */
export function startLog(program: string, argv: { quiet?: boolean; verbose?: number; 'log-format'?: string }): Logger {
  const verbose = verbosity(argv);
  const level: LogLevel = argv.quiet ? 'warn' : verbose >= 2 ? 'trace' : verbose === 1 ? 'verbose' : 'info';
  active = createLogger(program, { level, format: (argv['log-format'] ?? 'text') as LogFormat });
  return active;
}

/**
 * Runs `shutdown` on the first SIGINT or SIGTERM and exits 0 when it is done; a second signal exits at once
 * with 130, for when the graceful path is stuck.
 */
export function onSignals(program: string, shutdown: () => Promise<void>): void {
  let stopping = false;
  const log = (message: string, signal: string): void =>
    active ? active.info(message, { event: 'signal', signal }) : void process.stderr.write(`${program}: ${message}\n`);
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log(`${signal} again, exiting now`, signal);
      process.exit(130);
    }
    stopping = true;
    log(`${signal} received, shutting down`, signal);
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

/** Prints a usage error as one line pointing at --help, and exits 2. */
function usage(program: string, text: string): never {
  process.stderr.write(`${program}: ${printable(text)} (see --help)\n`);
  process.exit(2);
}

/**
 * -v counts: yargs adds a variable's or a file's value to the count as one more -v whatever it says, so
 * TASKWIRE_VERBOSE=2 and "verbose": 2 are read here instead, below any -v on the command line.
 */
let verboseSetting = 0;
const verbosity = (argv: { verbose?: number }): number => (argv.verbose ? argv.verbose : verboseSetting);

/** The options parser() gives every program, listed after each program's own. */
const COMMON = ['config', 'print-config', 'quiet', 'verbose', 'log-format'];

/** The programs' positional arguments, and yargs' own lists of them: lists whatever their length. */
const POSITIONALS = ['_', '--', 'inputs', 'ids'];

/** The program whose parser was made last, and its arguments: ownEnv() finds --config among them. */
let current: { program: string; args: readonly string[] } = { program: 'taskwire', args: [] };

/**
 * What every program's parser shares: word-wrapped help at the terminal's width, usage errors as one line
 * pointing at --help with exit status 2 (yargs prints the whole help and exits 1), and the options of the log
 * and of the configuration file.
 */
export function parser(program: string, args: readonly string[]) {
  current = { program, args };
  const y = yargs(args);
  return y
    .scriptName(program)
    // A flag given twice takes its last value, as `npm start -- --local-workers 2` gives it after the script's own
    // --local-workers 1: yargs makes an array of them, which no single-valued option takes. (Numeric options
    // take the last one in whole(), which runs before this.)
    .middleware((argv) => {
      const lists = new Set([...(y as unknown as { getOptions(): { array: string[] } }).getOptions().array, ...POSITIONALS]);
      for (const [key, value] of Object.entries(argv)) if (Array.isArray(value) && !lists.has(key)) argv[key] = value.at(-1);
    }, true)
    .wrap(helpWidth())
    // Named first, so each program's own options come before the ones every program shares.
    .group(['help', 'version'], 'Options:')
    .option('config', { type: 'string', requiresArg: true, describe: 'Read settings from this JSON file (a flag beats a TASKWIRE_* variable, which beats the file)' })
    .option('print-config', { type: 'boolean', describe: 'Print the settings in effect as JSON (the token masked) and exit' })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Log only errors and warnings' })
    .option('verbose', { alias: 'v', type: 'count', describe: 'Log more: -v a line per requeue, timeout, retry and dead letter; -vv every task' })
    .option('log-format', { type: 'string', choices: LOG_FORMATS, default: 'text', describe: 'Log lines as text, or one JSON object per line for log collectors' })
    .group([...COMMON], 'Log and configuration:')
    .fail((message: string | undefined, error: Error | undefined) => {
      let text = message ?? error?.message ?? 'invalid arguments';
      // yargs reads "-5+2" as options; the input is meant, and only `--` can say so.
      const dashes = args.indexOf('--');
      const input = (dashes < 0 ? args : args.slice(0, dashes)).find((arg) => /^-[^-a-zA-Z]/.test(arg));
      if (input !== undefined && /^Unknown argument/.test(text)) text += `; an input that begins with "-" goes after --, as in: ${program} [options] -- ${input}`;
      usage(program, text);
    });
}

const envName = (option: string): string => `TASKWIRE_${option.replace(/[A-Z]/g, (c) => `_${c}`).replace(/-/g, '_').toUpperCase()}`;
const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Options that are not settings: they ask the program to do something else, or name the file itself. */
const NOT_SETTINGS = new Set(['help', 'version', '$0', 'print-config']);
/** Options naming files: in a configuration file they are relative to the file's directory, as in tsconfig.json. */
const PATH_OPTIONS = new Set(['tls-cert', 'tls-key', 'tls-ca', 'jobs', 'file']);
/** A configuration file's sections, each read by one program only, so one file can serve all three. */
const SECTIONS = { 'taskwire-server': 'server', 'taskwire-worker': 'worker', 'taskwire-client': 'client' } as Record<string, string>;

interface ConfigFile {
  path: string;
  /** As the command line or TASKWIRE_CONFIG gave it, for messages. */
  given: string;
  /** Its settings for this program (its section over the shared keys), by option name. */
  values: Record<string, unknown>;
  checked: boolean;
}

let loaded: ConfigFile | null | undefined;

/** The file of --config (or TASKWIRE_CONFIG), read once; a file that cannot be used is a usage error. */
function configFile(): ConfigFile | null {
  if (loaded !== undefined) return loaded;
  const { program, args } = current;
  const end = args.includes('--') ? args.indexOf('--') : args.length;
  let file: string | undefined;
  for (let i = 0; i < end; i++) {
    if (args[i] === '--config') file = args[i + 1];
    else if (args[i]!.startsWith('--config=')) file = args[i]!.slice('--config='.length);
  }
  file ??= process.env.TASKWIRE_CONFIG || undefined;
  if (file === undefined || file.startsWith('-')) return (loaded = null); // yargs says what is missing
  // --help and --version answer whatever the file holds: they are how one finds out what it may hold.
  if (args.slice(0, end).some((arg) => ['--help', '-h', '--version'].includes(arg))) return (loaded = null);
  const where = path.resolve(file);
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(where, 'utf8'));
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    usage(program, `--config ${file}: ${reason}`);
  }
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(data)) usage(program, `--config ${file}: must hold a JSON object of settings`);
  const section = SECTIONS[program];
  const own = section !== undefined ? data[section] : undefined;
  if (own !== undefined && !isObject(own)) usage(program, `--config ${file}: "${section}" must be an object of settings`);
  const values: Record<string, unknown> = {};
  const take = (from: Record<string, unknown>, prefix: string): void => {
    for (const [key, value] of Object.entries(from)) {
      if (prefix === '' && Object.values(SECTIONS).includes(key)) continue;
      const name = kebab(key);
      if (NOT_SETTINGS.has(name) || name === 'config') usage(program, `--config ${file}: "${prefix}${key}" cannot be set in a file`);
      values[name] = PATH_OPTIONS.has(name) ? relativeTo(path.dirname(where), value) : value;
    }
  };
  take(data, '');
  if (own) take(own, `${section}.`);
  return (loaded = { path: where, given: file, values, checked: false });
}

function relativeTo(dir: string, value: unknown): unknown {
  if (Array.isArray(value)) return value.map((v) => relativeTo(dir, v));
  return typeof value === 'string' && !/^file:/i.test(value) ? path.resolve(dir, value) : value;
}

/** The names of the options `y` declares (long names only: no aliases, no settings that are not). */
function declared(y: Argv<unknown>): string[] {
  const options = (y as unknown as { getOptions(): { key: Record<string, unknown>; alias: Record<string, string[]> } }).getOptions();
  const aliases = new Set(Object.values(options.alias).flat());
  return Object.keys(options.key).filter((name) => !aliases.has(name) && !NOT_SETTINGS.has(name));
}

/**
 * The settings of the options `y` declares so far from their TASKWIRE_* variables and from the configuration
 * file, as defaults below the command line's: a flag beats a variable, which beats the file. Only these
 * variables: one shell often runs all three programs, and `.env('TASKWIRE')` handed each the others' variables
 * (TASKWIRE_LOCAL_WORKERS for a worker), which `.strict()` then refused. An empty variable counts as unset, as
 * compose files and shells make them. `commands` are the builders of the program's commands: a file's key must
 * be an option of one of them or of the program.
 */
export function ownEnv<T>(y: Argv<T>, commands: ((y: Argv) => Argv<unknown>)[] = []): Argv<T> {
  const options = declared(y as Argv<unknown>);
  const file = configFile();
  if (file && !file.checked) {
    file.checked = true;
    const known = new Set(options);
    for (const build of commands) for (const name of declared(build(yargs([])))) known.add(name);
    for (const key of Object.keys(file.values)) {
      if (known.has(key)) continue;
      const near = nearestName(key, known);
      usage(current.program, `--config ${file.given}: unknown setting "${key}"${near === null ? '' : `; did you mean "${near}"?`}`);
    }
  }
  const values: Record<string, unknown> = {};
  for (const option of options) {
    const value = process.env[envName(option)];
    if (value !== undefined && value !== '') values[option] = value;
    else if (file && Object.hasOwn(file.values, option)) values[option] = file.values[option];
  }
  if (values.verbose !== undefined) {
    const count = values.verbose === true || values.verbose === 'true' ? 1 : values.verbose === false || values.verbose === 'false' ? 0 : Number(values.verbose);
    if (!Number.isInteger(count) || count < 0 || count > 2) usage(current.program, `verbose must be 0, 1 or 2 (or true or false), got ${JSON.stringify(values.verbose)}`);
    verboseSetting = count;
    delete values.verbose;
  }
  return y
    .config(values)
    .epilogue(`Environment: ${[...options.filter((o) => !COMMON.includes(o)), ...COMMON.filter((o) => options.includes(o))].map(envName).join(', ')} set the options of the same name. Precedence: the command line, then these variables, then the --config file, then the defaults.`);
}

/**
 * --print-config: the settings in effect after the command line, the variables, the file and the defaults, as
 * JSON on stdout, the token masked; `fallbacks` are the library's defaults of options the program leaves unset,
 * and `command` the builder of the command that ran, whose options yargs no longer lists after the parse.
 */
export function printConfig(y: Argv<unknown>, argv: Record<string, unknown>, fallbacks: Record<string, unknown> = {}, command?: (y: Argv) => Argv<unknown>): never {
  const settings: Record<string, unknown> = {};
  const names = new Set([...declared(y), ...(command ? declared(command(yargs([]))) : [])]);
  for (const name of [...names].filter((n) => !POSITIONALS.includes(n)).sort()) {
    const value = name === 'verbose' ? verbosity(argv) : (argv[name] ?? fallbacks[name] ?? null);
    settings[name] = name === 'token' && value !== null ? '********' : value;
  }
  process.stdout.write(`${JSON.stringify(settings, null, 2)}\n`);
  process.exit(0);
}

/**
 * A coercion for a numeric option that names the flag and what it got: yargs' number type turns "abc" into
 * NaN, which then surfaced as a library error about `options.port`.
 */
export function whole(flag: string, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): (value: unknown) => number {
  return (given) => {
    const value: unknown = Array.isArray(given) ? given.at(-1) : given; // given twice: the last one
    if (value === undefined) return value as unknown as number;
    const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `from ${min}` : `from ${min} to ${max}`;
      throw new Error(`--${flag} must be a whole number${what ? ` of ${what}` : ''} ${range}, got ${JSON.stringify(String(value))}`);
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
