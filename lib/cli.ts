// Small helpers shared by the three command-line programs: one-line errors and signal-driven shutdown.

import { TaskwireError } from './errors.js';

/** Prints `program: message` (never a stack trace) and exits with `code`. */
export function die(program: string, error: unknown, code = 2): never {
  const message = error instanceof Error ? error.message : String(error);
  const tag = error instanceof TaskwireError ? ` (${error.code})` : '';
  process.stderr.write(`${program}: ${message}${tag}\n`);
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
