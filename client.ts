#!/usr/bin/env node
// taskwire-client: submits one task per input and prints the results in input order.

import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { CLIENT_DEFAULTS, createClient, ErrorCode, TaskwireError } from './lib/index.js';
import { die, printable as p } from './lib/cli.js';

const program = 'taskwire-client';

const argv = yargs(hideBin(process.argv))
  .scriptName(program)
  .usage('$0 [options] <input...>\n\nSubmits one task per input to a scheduler and prints each result on its own line.')
  .env('TASKWIRE')
  .option('type', { alias: 't', type: 'string', default: 'sha256', describe: 'Job type (built-ins: sha256, arith)' })
  .option('host', { type: 'string', default: CLIENT_DEFAULTS.host, describe: 'Scheduler host' })
  .option('port', { alias: 'p', type: 'number', default: CLIENT_DEFAULTS.port, describe: 'Scheduler port' })
  .option('json', { type: 'boolean', default: false, describe: 'Print a JSON array of {input, ok, result | code, error}' })
  .option('timeout', { type: 'number', default: 30_000, describe: 'Give up after this many ms (0: wait forever)' })
  .option('task-timeout', { type: 'number', describe: "Ms each task may run on a worker before it is requeued (default: the scheduler's)" })
  .option('retries', { type: 'number', describe: 'Times a failing task is retried, with exponential backoff' })
  .option('token', { type: 'string', describe: 'Shared secret, if the scheduler requires one (or TASKWIRE_TOKEN)' })
  .example('$0 "Hello"', 'SHA-256 of "Hello"')
  .example('$0 --type arith "1+(2*3)/4-5"', 'evaluate an expression: -2.5')
  .example('$0 --type arith "2+3, 5*6, 10-4"', 'arith inputs may be comma-separated lists')
  .epilogue('Exit status: 0 when every task succeeded, 1 when any failed, 2 when the scheduler was unreachable or the run timed out.')
  .demandCommand(1, 'give at least one input')
  .strict()
  .help()
  .alias('help', 'h')
  .version()
  .parseSync();

type Outcome = { input: string; ok: true; result: string } | { input: string; ok: false; code: string; error: string };

async function main(): Promise<number> {
  const raw = argv._.map(String);
  // Commas never occur in arithmetic, so an arith input may be a list; other types take inputs verbatim.
  const inputs = argv.type === 'arith' ? raw.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean) : raw;
  if (inputs.length === 0) throw new Error('no input to submit');

  const client = createClient({ host: argv.host, port: argv.port, token: argv.token });
  // Interrupted: tasks still pending fail with E_CLOSED (the scheduler drops them), the results so far are
  // printed, and the exit status says not everything succeeded.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void client.close());
  const options = { timeoutMs: argv['task-timeout'], retries: argv.retries };
  // Submitted before the connection is up (the client sends them once it is), so an interruption at any point,
  // even during the handshake, still settles every task with E_CLOSED and prints it.
  const settled = Promise.all(
    inputs.map((input) =>
      client.submit(argv.type, input, options).then(
        (result): Outcome => ({ input, ok: true, result }),
        (err: TaskwireError): Outcome => ({ input, ok: false, code: err.code ?? 'E_UNKNOWN', error: err.message }),
      ),
    ),
  );
  await client.connect().catch((err: TaskwireError) => {
    if (err.code !== ErrorCode.CLOSED) throw err; // unreachable or refused: exit 2 with the reason
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    if (argv.timeout > 0) {
      timer = setTimeout(
        () => reject(new Error(`timed out after ${argv.timeout} ms with ${client.pendingCount} task(s) unanswered (is a worker for '${argv.type}' running?)`)),
        argv.timeout,
      );
    }
  });
  const outcomes = await Promise.race([settled, timeout]).finally(() => {
    clearTimeout(timer);
    void client.close();
  });

  const failed = outcomes.some((o) => !o.ok);
  if (argv.json) {
    process.stdout.write(`${JSON.stringify(outcomes, null, 2)}\n`);
  } else if (outcomes.length === 1) {
    const [o] = outcomes as [Outcome];
    if (o.ok) process.stdout.write(`${o.result}\n`);
    else process.stderr.write(`${program}: ${p(o.error)} (${p(o.code)})\n`);
  } else {
    for (const o of outcomes) process.stdout.write(o.ok ? `${o.input} = ${o.result}\n` : `${o.input} = error: ${p(o.error)} (${p(o.code)})\n`);
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => die(program, err),
);
