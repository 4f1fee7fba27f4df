#!/usr/bin/env node
// taskwire-client: submits one job per input and prints the results in input order; or, with a command, asks
// about jobs by id (status, wait, cancel) and lists the latest ones.

import type { Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import {
  builtinJobs,
  CLIENT_DEFAULTS,
  createClient,
  ErrorCode,
  evaluateDistributed,
  PRIORITIES,
  TaskwireError,
  type Client,
  type JobInfo,
  type Progress,
  type SubmitOptions,
} from './lib/index.js';
import { VERSION, die, ownEnv, parser, printConfig, printable as p, quietOnClosedStdout, startLog, whole } from './lib/cli.js';
import { peerTls } from './lib/tls-files.js';

const program = 'taskwire-client';
const STATES = ['queued', 'delayed', 'running', 'completed', 'failed', 'cancelled'] as const;

/** Options every command takes: where the scheduler is, how to print, how long to wait. */
const common = <T>(y: Argv<T>) =>
  y
    // No yargs defaults for host and port: the library's apply, and --url can tell whether they were given.
    .option('host', { type: 'string', describe: `Scheduler host (default: ${CLIENT_DEFAULTS.host})` })
    .option('port', { alias: 'p', requiresArg: true, coerce: whole('port', '', 1, 65535), describe: `Scheduler port (default: ${CLIENT_DEFAULTS.port})` })
    .option('url', { type: 'string', describe: 'Scheduler WebSocket URL (ws://host:http-port/ws or wss://...), instead of --host/--port' })
    .option('token', { type: 'string', describe: 'Shared secret, if the scheduler requires one (or TASKWIRE_TOKEN)' })
    .option('tls', { type: 'boolean', describe: 'Reach the scheduler over TLS, trusting the system\'s CAs (or --tls-ca)' })
    .option('tls-ca', { type: 'string', requiresArg: true, describe: 'Trust the scheduler\'s certificate if this PEM CA signed it (implies --tls)' })
    .option('tls-cert', { type: 'string', requiresArg: true, describe: 'This side\'s PEM certificate, for a scheduler that requires one (with --tls-key)' })
    .option('tls-key', { type: 'string', requiresArg: true, describe: 'The PEM private key of --tls-cert' })
    .option('json', { type: 'boolean', default: false, describe: 'Print JSON instead of lines' })
    .option('timeout', { requiresArg: true, coerce: whole('timeout', 'ms'), default: 30_000, describe: 'Give up after this many ms (0: wait forever)' });

/** The submitting command's options. */
const submitOptions = (y: Argv) =>
  y
    .option('type', { alias: 't', type: 'string', default: 'sha256', describe: 'Job type (built-ins: sha256, arith, sumsq)' })
    .option('distributed', { type: 'boolean', default: false, describe: 'arith: run each expression as a graph of single operations on the workers' })
    .option('chunks', { requiresArg: true, coerce: whole('chunks', '', 1), describe: 'sumsq: split the range into this many parts, summed in parallel and combined' })
    .option('task-timeout', { requiresArg: true, coerce: whole('task-timeout', 'ms'), describe: "Ms each job may run on a worker before it is requeued (default: the scheduler's)" })
    .option('retries', { requiresArg: true, coerce: whole('retries', ''), describe: 'Times a failing job is retried, with exponential backoff' })
    .option('priority', { type: 'string', describe: 'high, normal, low, or an integer: higher runs first (default normal)' })
    .option('delay', { requiresArg: true, coerce: whole('delay', 'ms'), describe: 'Ms to wait before each job is queued' })
    .option('detach', { type: 'boolean', default: false, describe: 'Print each job id instead of waiting: the jobs run even after this exits' })
    .option('file', { alias: 'f', type: 'string', requiresArg: true, describe: 'Read inputs from this file, one per line (an input of - reads them from stdin)' });

const jobsOptions = (y: Argv) =>
  y
    .option('state', { type: 'string', choices: STATES, describe: 'Only jobs in this state' })
    .option('limit', { requiresArg: true, coerce: whole('limit', '', 1), default: 20, describe: 'At most this many' });

const cli = ownEnv(common(parser(program, hideBin(process.argv))), [submitOptions, jobsOptions])
  // Words after `--` are inputs, never a command; they are read verbatim below, as yargs would make `-1e3` a number.
  .parserConfiguration({ 'populate--': true })
  .command('$0 [inputs..]', 'Submit one job per input and print each result on its own line', (y) =>
    ownEnv(submitOptions(y)).positional('inputs', { type: 'string', array: true, describe: 'Job payloads' }),
  )
  .command('status <ids..>', "Print jobs' status by id", (y) => y.positional('ids', { type: 'number', array: true }))
  .command('wait <ids..>', "Wait for jobs by id and print their results (exit status as for a submission)", (y) =>
    y.positional('ids', { type: 'number', array: true }),
  )
  .command('cancel <ids..>', 'Cancel jobs by id: queued ones never run, running ones are aborted', (y) => y.positional('ids', { type: 'number', array: true }))
  .command('jobs', 'List the latest jobs, newest first', (y) => ownEnv(jobsOptions(y)))
  .example('$0 "Hello"', 'SHA-256 of "Hello"')
  .example('$0 --type arith "1+(2*3)/4-5"', 'evaluate an expression: -2.5')
  .example('$0 --type arith "2+3, 5*6, 10-4"', 'arith inputs may be comma-separated lists')
  .example('$0 --type arith --distributed "1+(2*3)/4-5"', 'the same result, one operation per task, independent ones in parallel')
  .example('$0 --type sumsq 1 1000000 --chunks 16', 'the sum of the squares of 1..1000000, exactly, in 16 parallel parts')
  .example('$0 --detach --priority high "big job"', 'print its job id and exit; the job runs anyway')
  .example('$0 wait 1764590000000001', "wait for a job by id and print its result")
  .example('$0 --url ws://127.0.0.1:9002/ws "Hello"', 'the same over WebSocket, at the scheduler\'s HTTP port')
  .epilogue(
    'Exit status: 0 when everything succeeded, 1 when a job failed, was cancelled or is unknown, 2 when the scheduler was unreachable, the run timed out or the usage was wrong. An input that is a command name or begins with - goes after --.',
  )
  .check((a) => a._.length > 0 || a['print-config'] === true || a.file !== undefined || readsStdin() || ((a.inputs as unknown[] | undefined)?.length ?? 0) > 0 || ((a['--'] as unknown[] | undefined)?.length ?? 0) > 0 || 'give at least one input')
  .strict()
  .help()
  .alias('help', 'h')
  .version(VERSION);
const argv = cli.parseSync();

if (argv['print-config']) {
  const command = argv._[0] === 'jobs' ? jobsOptions : argv._.length === 0 ? submitOptions : undefined;
  printConfig(cli, argv, { host: CLIENT_DEFAULTS.host, port: CLIENT_DEFAULTS.port }, command);
}
const log = startLog(program, argv);

/** An input of `-` (before any `--`): yargs drops a lone dash, so it is looked for in the arguments themselves. */
function readsStdin(): boolean {
  const args = hideBin(process.argv);
  const dashes = args.indexOf('--');
  return (dashes < 0 ? args : args.slice(0, dashes)).includes('-');
}

type Outcome = { input: string; ok: true; result: string } | { input: string; ok: false; code: string; error: string };
type Answer<T> = { id: number; ok: true; value: T } | { id: number; ok: false; code: string; error: string };

const failure = (err: TaskwireError) => ({ ok: false as const, code: err.code ?? 'E_UNKNOWN', error: err.message });

/** A line on the terminal that redraws itself: a progress bar on stderr, only when stdout is a terminal. */
class Bar {
  private readonly on = process.stdout.isTTY === true && process.stderr.isTTY === true;
  private shown = false;

  draw(text: string): void {
    if (!this.on) return;
    process.stderr.write(`\r\x1b[2K${text}`);
    this.shown = true;
  }

  count(done: number, total: number): void {
    if (total < 2) return;
    const width = 30;
    const full = Math.round((done / total) * width);
    this.draw(`[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${done}/${total}`);
  }

  progress(progress: Progress): void {
    const value = Number.isNaN(progress.value) ? '' : progress.value <= 1 ? `${Math.round(progress.value * 100)}% ` : `${progress.value} `;
    this.draw(`${value}${p(progress.message)}`.trim());
  }

  clear(): void {
    if (this.shown) process.stderr.write('\r\x1b[2K');
    this.shown = false;
  }
}

/** Runs `work` on a connected client, within --timeout (`what` says what was left undone); closes the client after. */
async function withClient<T>(what: string | ((client: Client) => string), work: (client: Client, bar: Bar) => Promise<T>): Promise<T> {
  const client = createClient({ host: argv.host, port: argv.port, url: argv.url, token: argv.token, tls: peerTls(argv) });
  client.on('connected', (c) => log.verbose(`connected to scheduler ${c.scheduler} at ${c.remote}`, { event: 'connected', scheduler: c.scheduler, remote: c.remote }));
  client.on('disconnected', (d) => d.code !== ErrorCode.CLOSED && log.verbose(`disconnected: ${d.message} (${d.code})`, { event: 'disconnected', code: d.code }));
  const bar = new Bar();
  // Interrupted: pending requests fail with E_CLOSED, what is done so far is printed.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void client.close());
  const done = work(client, bar);
  // The clock starts before the connection: a peer that accepts and never answers takes all of --timeout, not
  // the handshake's own 10 s on top of it.
  let connected = false;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    if (argv.timeout > 0) {
      const waiting = (): string => (connected ? (typeof what === 'string' ? what : what(client)) : `waiting for the scheduler at ${where()} to answer`);
      timer = setTimeout(() => reject(new Error(`timed out after ${argv.timeout} ms ${waiting()}`)), argv.timeout);
    }
  });
  try {
    await Promise.race([
      client.connect().catch((err: TaskwireError) => {
        if (err.code !== ErrorCode.CLOSED) throw err; // unreachable or refused: exit 2 with the reason
      }),
      timeout,
    ]);
    connected = true;
    return await Promise.race([done, timeout]);
  } finally {
    clearTimeout(timer);
    bar.clear();
    void client.close();
  }
}

function where(): string {
  return argv.url ?? `${argv.host ?? CLIENT_DEFAULTS.host}:${argv.port ?? CLIENT_DEFAULTS.port}`;
}

function priorityOf(value: string | undefined): SubmitOptions['priority'] {
  if (value === undefined) return undefined;
  if (value in PRIORITIES) return value as keyof typeof PRIORITIES;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new Error(`--priority must be high, normal, low or an integer, got ${JSON.stringify(value)}`);
  return n;
}

function idsOf(values: unknown): number[] {
  const ids = (values as unknown[]).map(Number);
  const bad = ids.find((id) => !Number.isSafeInteger(id) || id < 1);
  if (bad !== undefined) throw new Error(`a job id is a whole number from 1, got ${String(bad)}`);
  return ids;
}

async function submit(): Promise<number> {
  const type = argv.type as string;
  const dashes = process.argv.indexOf('--');
  const raw = [...((argv.inputs as string[] | undefined) ?? []).map(String), ...(dashes < 0 ? [] : process.argv.slice(dashes + 1))];
  // Commas never occur in arithmetic, so an arith input may be a list; sumsq's two inputs are its range; other
  // types take inputs verbatim.
  const file = argv.file as string | undefined;
  const stdin = readsStdin();
  if ((file !== undefined || stdin) && raw.length > 0) throw new Error('give inputs either on the command line or with - or --file, not both');
  if (file !== undefined && stdin) throw new Error('give - or --file, not both');
  const inputs = stdin || file !== undefined ? [] : type === 'arith' ? raw.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean) : type === 'sumsq' ? [raw.join(' ')] : raw;
  if (inputs.length === 0 && !stdin && file === undefined) throw new Error('no input to submit');
  const distributed = argv.distributed as boolean;
  const chunks = argv.chunks as number | undefined;
  if (distributed && type !== 'arith') throw new Error('--distributed is for --type arith');
  if (chunks !== undefined && type !== 'sumsq') throw new Error('--chunks is for a job type that splits: --type sumsq');
  if (chunks !== undefined && (!Number.isInteger(chunks) || chunks < 1)) throw new Error(`--chunks must be a whole number from 1, got ${String(chunks)}`);
  if ((distributed || chunks !== undefined) && argv.detach) throw new Error('--detach cannot be combined with --distributed or --chunks');
  const options: SubmitOptions = {
    timeoutMs: argv['task-timeout'] as number | undefined,
    retries: argv.retries as number | undefined,
    priority: priorityOf(argv.priority as string | undefined),
    delayMs: argv.delay as number | undefined,
  };
  if (stdin || file !== undefined) {
    // Opened first, so a missing file is a one-line error before any connection, not a stream's unhandled one.
    const source = stdin
      ? process.stdin
      : (
          await open(file!, 'r').catch((err: Error) => {
            throw new Error(`cannot read --file: ${err.message}`);
          })
        ).createReadStream();
    const job = (client: Client, input: string): Promise<string> =>
      argv.detach ? client.enqueue(type, input, { ...options, detach: true }).then((j) => String(j.id)) : run(client, type, input, options, distributed, chunks);
    return streamLines(source, type, (client, input) => job(client, input));
  }
  if (argv.detach) {
    const answers = await withClient('waiting for the scheduler to accept the jobs', (client) =>
      Promise.all(
        inputs.map((input) =>
          client.enqueue(type, input, { ...options, detach: true }).then(
            (job) => ({ input, ok: true as const, id: job.id }),
            (err: TaskwireError) => ({ input, ...failure(err) }),
          ),
        ),
      ),
    );
    if (argv.json) process.stdout.write(`${JSON.stringify(answers, null, 2)}\n`);
    else for (const a of answers) a.ok ? process.stdout.write(`${a.id}\n`) : log.error(`${a.input}: ${a.error} (${a.code})`, { event: 'jobFailed', code: a.code });
    return answers.every((a) => a.ok) ? 0 : 1;
  }
  let finished = 0;
  const unanswered = (client: Client): string => `with ${client.pendingCount} task(s) unanswered (is a worker for '${type}' running?)`;
  const outcomes = await withClient(unanswered, (client, bar) =>
    Promise.all(
      inputs.map((input) =>
        run(client, type, input, { ...options, onProgress: inputs.length === 1 ? (progress) => bar.progress(progress) : undefined }, distributed, chunks)
          .then(
            (result): Outcome => ({ input, ok: true, result }),
            (err: TaskwireError): Outcome => ({ input, ...failure(err) }),
          )
          .finally(() => bar.count(++finished, inputs.length)),
      ),
    ),
  );
  if (argv.json) {
    process.stdout.write(`${JSON.stringify(outcomes, null, 2)}\n`);
  } else if (outcomes.length === 1) {
    const [o] = outcomes as [Outcome];
    if (o.ok) process.stdout.write(`${o.result}\n`);
    else log.error(`${o.error} (${o.code})`, { event: 'jobFailed', code: o.code });
  } else {
    for (const o of outcomes) process.stdout.write(o.ok ? `${o.input} = ${o.result}\n` : `${o.input} = error: ${p(o.error)} (${p(o.code)})\n`);
  }
  return outcomes.some((o) => !o.ok) ? 1 : 0;
}

/** Submissions outstanding at once when inputs are streamed: enough to keep the workers fed, a bounded memory. */
const WINDOW = 1024;

/**
 * Inputs from a stream, one per line (blank lines skipped): each is submitted as it is read, at most WINDOW
 * outstanding, and its `input = result` line printed as soon as it and those before it are answered, so a
 * file of any length runs in bounded memory and output keeps input order. --json prints one object per line.
 */
async function streamLines(source: NodeJS.ReadableStream, type: string, job: (client: Client, input: string) => Promise<string>): Promise<number> {
  let failed = false;
  let written = 0;
  const unanswered = (client: Client): string => `with ${client.pendingCount} task(s) unanswered after ${written} result(s) (is a worker for '${type}' running?)`;
  await withClient(unanswered, async (client) => {
    const pending: { outcome?: Outcome }[] = [];
    let room: (() => void) | null = null;
    const print = (o: Outcome): void => {
      written++;
      if (!o.ok) failed = true;
      if (argv.json) process.stdout.write(`${JSON.stringify(o)}\n`);
      else process.stdout.write(o.ok ? `${o.input} = ${o.result}\n` : `${o.input} = error: ${p(o.error)} (${p(o.code)})\n`);
    };
    // An answer that overtakes an earlier line waits for it: output keeps input order.
    const drain = (): void => {
      while (pending.length > 0 && pending[0]!.outcome) print(pending.shift()!.outcome!);
      if (room && pending.length < WINDOW) {
        room();
        room = null;
      }
    };
    const submit = (input: string): void => {
      const entry: { outcome?: Outcome } = {};
      pending.push(entry);
      job(client, input).then(
        (result) => (entry.outcome = { input, ok: true, result }),
        (err: TaskwireError) => (entry.outcome = { input, ...failure(err) }),
      ).finally(drain);
    };
    // for await pulls the next line only when the loop body is done: a full window stops the reading.
    for await (const line of createInterface({ input: source, crlfDelay: Infinity })) {
      if (line === '') continue;
      submit(line);
      if (pending.length >= WINDOW) await new Promise<void>((resolve) => (room = resolve));
    }
    while (pending.length > 0) await new Promise<void>((resolve) => (room = resolve));
  });
  return failed ? 1 : 0;
}

/**
 * One input's job: as a task of its type; an arith expression as a graph of its operations (--distributed),
 * whose failure reads as local evaluation's (the failing node's message without the node); a sumsq range in
 * parts (--chunks).
 */
function run(client: Client, type: string, input: string, options: SubmitOptions, distributed: boolean, chunks: number | undefined): Promise<string> {
  if (chunks !== undefined) return client.run(builtinJobs.sumsq, input, { ...options, chunks });
  if (!distributed) return client.submit(type, input, options);
  return evaluateDistributed(client, input, options);
}

/** status, wait and cancel: one request per id, answered in order. */
async function byId<T>(ids: number[], what: string, ask: (client: Client, id: number, bar: Bar) => Promise<T>, line: (id: number, value: T) => string): Promise<number> {
  const answers = await withClient(what, (client, bar) =>
    Promise.all(
      ids.map((id) =>
        ask(client, id, bar).then(
          (value): Answer<T> => ({ id, ok: true, value }),
          (err: TaskwireError): Answer<T> => ({ id, ...failure(err) }),
        ),
      ),
    ),
  );
  if (argv.json) process.stdout.write(`${JSON.stringify(answers.map((a) => (a.ok ? { id: a.id, ok: true, ...jsonOf(a.value) } : a)), null, 2)}\n`);
  else for (const a of answers) a.ok ? process.stdout.write(`${line(a.id, a.value)}\n`) : process.stdout.write(`${a.id}: error: ${p(a.error)} (${p(a.code)})\n`);
  return answers.every((a) => a.ok) ? 0 : 1;
}

function jsonOf(value: unknown): object {
  return typeof value === 'object' && value !== null ? value : { result: value };
}

/** One line for a job: id, state, type and what there is to say of it. */
function describe(job: JobInfo): string {
  const parts = [String(job.id), job.state, p(job.type), `attempts ${job.attempts}`];
  if (job.priority !== 0) parts.push(`priority ${job.priority}`);
  if (job.worker) parts.push(`worker ${p(job.worker)}`);
  if (job.progress) parts.push(`progress ${Number.isNaN(job.progress.value) ? '' : job.progress.value} ${p(job.progress.message)}`.trim());
  if (job.error) parts.push(`error: ${p(job.error.message)} (${p(job.error.code)})`);
  if (job.result !== undefined) parts.push(`result ${p(job.result)}`);
  return parts.join('  ');
}

async function main(): Promise<number> {
  const command = argv._[0];
  if (command === 'status') return byId(idsOf(argv.ids), 'waiting for the status', (c, id) => c.status(id), (_id, job) => describe(job));
  if (command === 'wait') {
    const ids = idsOf(argv.ids);
    return byId(ids, 'waiting for the jobs to finish', (c, id, bar) => c.wait(id, { onProgress: ids.length === 1 ? (x) => bar.progress(x) : undefined }), (id, result) => (ids.length === 1 ? result : `${id} = ${result}`));
  }
  if (command === 'cancel') return byId(idsOf(argv.ids), 'waiting for the cancels', (c, id) => c.cancel(id), (id, outcome) => `${id} ${outcome}`);
  if (command === 'jobs') {
    const limit = argv.limit as number;
    if (!Number.isInteger(limit) || limit < 1) throw new Error(`--limit must be a whole number from 1, got ${String(argv.limit)}`);
    const jobs = await withClient('waiting for the list', (c) => c.jobs({ state: argv.state as JobInfo['state'] | undefined, limit }));
    if (argv.json) process.stdout.write(`${JSON.stringify(jobs, null, 2)}\n`);
    else for (const job of jobs) process.stdout.write(`${describe(job)}\n`);
    return 0;
  }
  return submit();
}

quietOnClosedStdout();
main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => die(program, err),
);
