// Small helpers shared by the three command-line programs: one-line errors, safe log text and signal-driven shutdown.

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
