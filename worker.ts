#!/usr/bin/env node
// taskwire-worker: connects to a scheduler and runs the built-in job types (sha256, arith).

import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { createWorker, WORKER_DEFAULTS } from './lib/index.js';
import { die, onSignals, printable as p } from './lib/cli.js';

const program = 'taskwire-worker';

const argv = yargs(hideBin(process.argv))
  .scriptName(program)
  .usage('$0 [options]\n\nRuns a worker with the built-in job types (sha256, arith). Reconnects until stopped.')
  .env('TASKWIRE')
  .option('host', { type: 'string', default: WORKER_DEFAULTS.host, describe: 'Scheduler host' })
  .option('port', { alias: 'p', type: 'number', default: WORKER_DEFAULTS.port, describe: 'Scheduler port' })
  .option('concurrency', { alias: 'c', type: 'number', default: WORKER_DEFAULTS.concurrency, describe: 'Handlers run at once' })
  .option('prefetch', { type: 'string', default: WORKER_DEFAULTS.prefetch, describe: "Tasks held ahead of a free slot, or 'auto' (about 20 ms of handler time, at most 8,192)" })
  .option('name', { type: 'string', describe: 'Name shown by the scheduler (default: hostname:pid)' })
  .option('grace', { type: 'number', default: WORKER_DEFAULTS.closeGraceMs, describe: 'On SIGINT/SIGTERM, ms to finish running tasks' })
  .option('token', { type: 'string', describe: 'Shared secret, if the scheduler requires one (or TASKWIRE_TOKEN)' })
  .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Log only errors' })
  .example('$0 --port 9001 --concurrency 32', 'run up to 32 tasks at once')
  .strict()
  .help()
  .alias('help', 'h')
  .version()
  .parseSync();

try {
  const worker = createWorker({
    host: argv.host,
    port: argv.port,
    concurrency: argv.concurrency,
    prefetch: argv.prefetch === 'auto' ? 'auto' : Number(argv.prefetch),
    name: argv.name,
    closeGraceMs: argv.grace,
    token: argv.token,
  });
  const log = (line: string): void => {
    if (!argv.quiet) process.stderr.write(`${program}: ${line}\n`);
  };
  worker.on('connected', (c) => log(`connected to scheduler ${p(c.scheduler)} at ${c.remote}; running ${worker.types.join(', ')} x${worker.concurrency}, prefetch ${argv.prefetch}`));
  worker.on('disconnected', (d) => log(`disconnected: ${p(d.message)} (${p(d.code)})`));
  worker.on('reconnecting', (r) => log(`${p(r.message)}; retry ${r.attempt} in ${r.delayMs} ms`));
  onSignals(program, () => worker.close());
} catch (err) {
  die(program, err);
}
