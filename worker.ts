#!/usr/bin/env node
// taskwire-worker: connects to a scheduler and runs the built-in job types (sha256, arith), and those of the
// modules given with --jobs.

import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { hideBin } from 'yargs/helpers';
import { builtinHandlers, createWorker, WORKER_DEFAULTS, type Handlers, type JobDefinition } from './lib/index.js';
import { VERSION, die, onSignals, ownEnv, parser, printConfig, startLog, whole } from './lib/cli.js';
import { isJobDefinition } from './lib/jobs/define.js';
import { peerTls } from './lib/tls-files.js';

const program = 'taskwire-worker';

const options = parser(program, hideBin(process.argv))
  .usage('$0 [options]\n\nRuns a worker with the built-in job types (sha256, arith), and those of --jobs modules. Reconnects until stopped.')
  // No yargs defaults for host and port: the library's apply, and --url can tell whether they were given.
  .option('host', { type: 'string', describe: `Scheduler host (default: ${WORKER_DEFAULTS.host})` })
  .option('port', { alias: 'p', requiresArg: true, coerce: whole('port', '', 1, 65535), describe: `Scheduler port (default: ${WORKER_DEFAULTS.port})` })
  .option('url', { type: 'string', describe: 'Scheduler WebSocket URL (ws://host:http-port/ws or wss://...), instead of --host/--port' })
  .option('concurrency', { alias: 'c', requiresArg: true, coerce: whole('concurrency', '', 1, 1_000_000), default: WORKER_DEFAULTS.concurrency, describe: 'Handlers run at once' })
  .option('prefetch', { type: 'string', coerce: (v: string) => (v === 'auto' ? v : String(whole('prefetch', '')(v))), default: WORKER_DEFAULTS.prefetch, describe: "Tasks held ahead of a free slot, or 'auto' (about 20 ms of handler time, at most 8,192)" })
  .option('name', { type: 'string', describe: 'Name shown by the scheduler (default: hostname:pid)' })
  .option('grace', { requiresArg: true, coerce: whole('grace', 'ms', 0, 86_400_000), default: WORKER_DEFAULTS.closeGraceMs, describe: 'On SIGINT/SIGTERM, ms to finish running tasks' })
  .option('token', { type: 'string', describe: 'Shared secret, if the scheduler requires one (or TASKWIRE_TOKEN)' })
  .option('tls', { type: 'boolean', describe: 'Reach the scheduler over TLS, trusting the system\'s CAs (or --tls-ca)' })
  .option('tls-ca', { type: 'string', requiresArg: true, describe: 'Trust the scheduler\'s certificate if this PEM CA signed it (implies --tls)' })
  .option('tls-cert', { type: 'string', requiresArg: true, describe: 'This side\'s PEM certificate, for a scheduler that requires one (with --tls-key)' })
  .option('tls-key', { type: 'string', requiresArg: true, describe: 'The PEM private key of --tls-cert' })
  .option('jobs', {
    type: 'string',
    array: true,
    describe:
      "Module (path or file URL) whose job definitions, and functions as handlers of their export's name, to run too; repeatable; a type it defines replaces that built-in",
  });

const argv = ownEnv(options)
  .example('$0 --port 9001 --concurrency 32', 'run up to 32 tasks at once')
  .example('$0 --jobs ./jobs.js', "also run the job types that jobs.js exports")
  .example('$0 --url ws://127.0.0.1:9002/ws', "reach the scheduler over WebSocket, at its HTTP port")
  .strict()
  .help()
  .alias('help', 'h')
  .version(VERSION)
  .parseSync();

if (argv['print-config']) printConfig(options, argv, { host: WORKER_DEFAULTS.host, port: WORKER_DEFAULTS.port, name: null });
const log = startLog(program, argv);

/** What the --jobs modules export, as createWorker() takes it; a type two of them define is an error. */
async function loadJobs(modules: string[]): Promise<{ jobs: JobDefinition<unknown, unknown>[]; handlers: Handlers; owner: Map<string, string> }> {
  const jobs: JobDefinition<unknown, unknown>[] = [];
  const handlers: Handlers = {};
  const owner = new Map<string, string>();
  for (const module of modules) {
    let exports: Record<string, unknown>;
    try {
      exports = (await import(/^file:/i.test(module) ? module : pathToFileURL(path.resolve(module)).href)) as Record<string, unknown>;
    } catch (err) {
      throw new Error(`cannot load --jobs module ${module}: ${err instanceof Error ? err.message : String(err)}`);
    }
    // The same definition or function may be exported twice (by name and in the default object): taken once.
    const found = new Map<string, unknown>();
    const take = (name: string, value: unknown): void => {
      const type = isJobDefinition(value) ? value.type : typeof value === 'function' ? name : null;
      if (type === null || found.get(type) === value) return;
      if (found.has(type)) throw new Error(`--jobs module ${module} defines job type '${type}' twice`);
      const other = owner.get(type);
      if (other !== undefined) throw new Error(`job type '${type}' is defined by both --jobs modules ${other} and ${module}`);
      found.set(type, value);
    };
    for (const [name, value] of Object.entries(exports)) if (name !== 'default') take(name, value);
    const fallback = exports.default;
    if (isJobDefinition(fallback)) take('default', fallback);
    else if (typeof fallback === 'function') throw new Error(`--jobs module ${module}: its default export is a function; export it under the name of its job type`);
    else if (typeof fallback === 'object' && fallback !== null) for (const [name, value] of Object.entries(fallback)) take(name, value);
    if (found.size === 0) throw new Error(`--jobs module ${module} exports no job definition or function`);
    for (const [type, value] of found) {
      owner.set(type, module);
      if (isJobDefinition(value)) jobs.push(value);
      else handlers[type] = value as Handlers[string];
    }
  }
  return { jobs, handlers, owner };
}

try {
  const modules = [argv.jobs ?? []].flat().map(String);
  const loaded = modules.length > 0 ? await loadJobs(modules) : null;
  // The built-ins stay unless a module defines a type of the same name: the module's is the one asked for.
  const replaced = loaded ? [...loaded.owner.keys()].filter((type) => Object.hasOwn(builtinHandlers, type)) : [];
  const builtins = Object.fromEntries(Object.entries(builtinHandlers).filter(([type]) => !replaced.includes(type)));
  const worker = createWorker({
    jobs: loaded?.jobs,
    handlers: loaded ? { ...builtins, ...loaded.handlers } : undefined,
    host: argv.host,
    port: argv.port,
    url: argv.url,
    concurrency: argv.concurrency,
    prefetch: argv.prefetch === 'auto' ? 'auto' : Number(argv.prefetch),
    name: argv.name,
    closeGraceMs: argv.grace,
    token: argv.token,
    tls: peerTls(argv),
  });
  for (const type of replaced) log.info(`job type ${type} of ${loaded!.owner.get(type)!} replaces the built-in one`, { event: 'replaced', type });
  worker.on('connected', (c) =>
    log.info(`connected to scheduler ${c.scheduler} at ${c.remote}; running ${worker.types.join(', ')} x${worker.concurrency}, prefetch ${argv.prefetch}`, {
      event: 'connected', scheduler: c.scheduler, remote: c.remote, types: worker.types.join(', '), concurrency: worker.concurrency,
    }),
  );
  worker.on('disconnected', (d) => log.warn(`disconnected: ${d.message} (${d.code})`, { event: 'disconnected', code: d.code }));
  worker.on('reconnecting', (r) => {
    // A wrong token or protocol version is refused the same way on every retry: say so once and stop.
    if (r.code === 'E_AUTH' || r.code === 'E_VERSION') die(program, `${r.message} (${r.code})`);
    log.warn(`${r.message}; retry ${r.attempt} in ${r.delayMs} ms`, { event: 'reconnecting', code: r.code, attempt: r.attempt, delayMs: r.delayMs });
  });
  if (log.enabled('verbose')) {
    worker.on('taskFailed', (f) => log.verbose(`task ${f.taskId} (${f.type}) attempt ${f.attempt} failed: ${f.message} (${f.code})`, { event: 'taskFailed', ...f }));
    worker.on('taskCancelled', (c) => log.verbose(`task ${c.taskId} (${c.type}) attempt ${c.attempt} taken back: ${c.message} (${c.code})`, { event: 'taskCancelled', ...c }));
  }
  onSignals(program, () => worker.close());
} catch (err) {
  die(program, err);
}
