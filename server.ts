#!/usr/bin/env node
// taskwire-server: runs a scheduler, optionally with built-in workers in the same process.

import { hideBin } from 'yargs/helpers';
import { createScheduler, createWorker, SCHEDULER_DEFAULTS, STRATEGIES, WORKER_DEFAULTS, type Scheduler, type Strategy, type Worker } from './lib/index.js';
import { VERSION, die, onSignals, ownEnv, parser, printConfig, startLog, whole } from './lib/cli.js';
import type { Logger } from './lib/log.js';
import { schedulerTls } from './lib/tls-files.js';

const program = 'taskwire-server';

const options = parser(program, hideBin(process.argv))
  .usage('$0 [options]\n\nRuns the taskwire scheduler. Clients and workers connect to the same port.')
  .option('host', { type: 'string', default: SCHEDULER_DEFAULTS.host, describe: 'Interface to listen on (0.0.0.0 for all)' })
  .option('port', { alias: 'p', requiresArg: true, coerce: whole('port', '', 0, 65535), default: SCHEDULER_DEFAULTS.port, describe: 'TCP port (0 picks a free one)' })
  .option('http-port', { requiresArg: true, coerce: whole('http-port', '', 0, 65535), default: 9002, describe: 'HTTP API, dashboard, metrics and WebSocket peers (/ws) on this port (0: none)' })
  .option('http-host', { type: 'string', describe: 'Interface the HTTP API listens on (default: --host)' })
  .option('http-open', { type: 'boolean', default: false, describe: 'Without --token, answer HTTP requests from other machines too (default: this machine only)' })
  .option('local-workers', { alias: 'w', requiresArg: true, coerce: whole('local-workers', '', 0), default: 0, describe: 'Built-in workers to run in this process' })
  .option('concurrency', { alias: 'c', requiresArg: true, coerce: whole('concurrency', '', 1, 1_000_000), default: WORKER_DEFAULTS.concurrency, describe: 'Tasks each local worker runs at once' })
  .option('heartbeat', { requiresArg: true, coerce: whole('heartbeat', 'ms', 10, 3_600_000), default: SCHEDULER_DEFAULTS.heartbeatMs, describe: 'Keepalive interval in ms; silent peers are dropped after 3' })
  .option('max-payload', { requiresArg: true, coerce: whole('max-payload', 'bytes', 64), default: SCHEDULER_DEFAULTS.maxPayload, describe: 'Largest frame payload accepted, in bytes' })
  .option('token', { type: 'string', describe: 'Shared secret clients and workers must present (or TASKWIRE_TOKEN)' })
  .option('tls-cert', { type: 'string', requiresArg: true, describe: 'TLS on the TCP port: this PEM certificate (chain), with --tls-key' })
  .option('tls-key', { type: 'string', requiresArg: true, describe: 'The PEM private key of --tls-cert' })
  .option('tls-ca', { type: 'string', requiresArg: true, describe: 'Require client and worker certificates signed by this PEM CA' })
  .option('task-timeout', { requiresArg: true, coerce: whole('task-timeout', 'ms', 0), default: SCHEDULER_DEFAULTS.timeoutMs, describe: 'Default ms a task may run before it is requeued (0: none)' })
  .option('max-attempts', { requiresArg: true, coerce: whole('max-attempts', '', 1), default: SCHEDULER_DEFAULTS.maxAttempts, describe: 'Worker losses/timeouts a task survives before it fails (E_ATTEMPTS)' })
  .option('max-queued', { requiresArg: true, coerce: whole('max-queued', '', 0), default: SCHEDULER_DEFAULTS.maxQueued, describe: 'Queued tasks at most; more fail with E_QUEUE_FULL' })
  .option('max-queued-bytes', { requiresArg: true, coerce: whole('max-queued-bytes', 'bytes', 0), default: SCHEDULER_DEFAULTS.maxQueuedBytes, describe: 'Bytes of queued task bodies at most; more fail with E_QUEUE_FULL' })
  .option('max-concurrency', { requiresArg: true, coerce: whole('max-concurrency', '', 1), default: SCHEDULER_DEFAULTS.maxConcurrency, describe: 'Largest concurrency (credits) a worker may announce; more is capped' })
  .option('strategy', { type: 'string', choices: STRATEGIES, default: SCHEDULER_DEFAULTS.strategy, describe: 'Which idle worker gets a new task: round-robin or least-loaded (share of its concurrency in use)' })
  .option('fair', { type: 'boolean', default: SCHEDULER_DEFAULTS.fair, describe: 'Within one priority, clients take turns instead of the oldest job going first' })
  .option('no-worker-timeout', { requiresArg: true, coerce: whole('no-worker-timeout', 'ms', 0), default: SCHEDULER_DEFAULTS.noWorkerTimeoutMs, describe: 'Ms a job for a type no worker runs waits before it fails with E_NO_WORKER (0: for ever)' })
  .option('max-connections', { requiresArg: true, coerce: whole('max-connections', '', 1, 10_000_000), default: SCHEDULER_DEFAULTS.maxConnections, describe: 'Open connections at most' })
  .option('grace', { requiresArg: true, coerce: whole('grace', 'ms', 0), default: 10_000, describe: 'On SIGINT/SIGTERM, ms to let running and queued tasks finish' });

const argv = ownEnv(options)
  .example('$0', 'listen on 127.0.0.1:9001')
  .example('$0 --local-workers 2', 'also run two built-in workers (sha256, arith)')
  .example('TASKWIRE_PORT=7000 $0', 'options can come from TASKWIRE_* variables')
  .example('$0 --config taskwire.json --print-config', 'show the settings a configuration file gives')
  .strict()
  .help()
  .alias('help', 'h')
  .version(VERSION)
  .parseSync();

if (argv['print-config']) printConfig(options, argv);
const log = startLog(program, argv);

async function main(): Promise<void> {
  const scheduler = createScheduler({
    host: argv.host,
    port: argv.port,
    heartbeatMs: argv.heartbeat,
    maxPayload: argv['max-payload'],
    token: argv.token,
    tls: schedulerTls(argv),
    timeoutMs: argv['task-timeout'],
    maxAttempts: argv['max-attempts'],
    maxQueued: argv['max-queued'],
    maxQueuedBytes: argv['max-queued-bytes'],
    maxConcurrency: argv['max-concurrency'],
    maxConnections: argv['max-connections'],
    strategy: argv.strategy as Strategy,
    fair: argv.fair,
    noWorkerTimeoutMs: argv['no-worker-timeout'],
    ...httpOptions(),
  });
  logEvents(scheduler, log);

  const { host, port } = await scheduler.listen();
  const workers: Worker[] = [];
  const localWorkers = argv['local-workers'];
  if (!Number.isInteger(localWorkers) || localWorkers < 0) throw new Error('--local-workers must be a whole number >= 0');
  const connectHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  for (let i = 1; i <= localWorkers; i++) {
    workers.push(createWorker({ host: connectHost, port, concurrency: argv.concurrency, name: `local-${i}`, token: argv.token, tls: scheduler.localTls() }));
  }
  await Promise.all(workers.map((w) => w.ready()));
  log.info(`listening on ${host}:${port}` + (localWorkers ? ` with ${localWorkers} local worker(s)` : ''), { event: 'listening', host, port, localWorkers });
  if (scheduler.http) {
    const httpHost = argv['http-host'] ?? host;
    const url = `http://${httpHost.includes(':') ? `[${httpHost}]` : httpHost}:${scheduler.httpPort}/`;
    log.info(`HTTP API and dashboard on ${url} (WebSocket peers at /ws)`, { event: 'httpListening', url });
  }

  onSignals(program, async () => {
    // Drain first, while the local workers are still there to run what is queued; then stop them.
    const closed = scheduler.close({ graceMs: argv.grace });
    await waitUntilSettled(scheduler, argv.grace);
    await Promise.all(workers.map((w) => w.close()));
    await closed;
  });
}

/** The HTTP listener's options: --http-port 0 turns it off. */
function httpOptions(): { httpPort?: number; httpHost?: string; httpOpen?: boolean } {
  const port = argv['http-port'];
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--http-port must be a port number from 0 to 65535, got ${String(port)}`);
  if (port === 0) return {};
  return { httpPort: port, httpHost: argv['http-host'], httpOpen: argv['http-open'] };
}

/**
 * What the scheduler logs, by level: workers at the default level, protocol errors as warnings; with -v clients
 * (many and short-lived: every command-line call and container health check is one) and each requeue (a lost
 * worker's task), timeout, retry and dead letter; with -vv every dispatch and completion too. Task events
 * name workers by id: their names come from workerReady.
 */
function logEvents(scheduler: Scheduler, log: Logger): void {
  const names = new Map<number, string>();
  const worker = (id: number | null): string => (id === null ? '-' : (names.get(id) ?? `#${id}`));
  // A worker announces itself again whenever its prefetch window moves: only a new worker, or new job types, is
  // news at the default level; a new credit count alone is for -vv.
  const announced = new Map<number, string>();
  scheduler.on('workerReady', (w) => {
    names.set(w.id, w.name);
    const types = w.types.join(', ');
    const level = announced.get(w.id) === types ? 'trace' : 'info';
    announced.set(w.id, types);
    log.log(level, `worker ${w.name} (${w.remote}) ready: ${types} x${w.concurrency}${w.mayBlock ? ', handlers may block it' : ''}`, {
      event: 'workerReady', workerId: w.id, worker: w.name, remote: w.remote, types, concurrency: w.concurrency,
    });
  });
  scheduler.on('clientJoined', (c) => log.verbose(`client ${c.name} (${c.remote}) connected`, { event: 'clientJoined', clientId: c.id, client: c.name, remote: c.remote }));
  scheduler.on('peerLeft', (l) => {
    if (l.role === 'worker') {
      names.delete(l.id);
      announced.delete(l.id);
    }
    const requeued = l.requeued ? `, ${l.requeued} task(s) requeued` : '';
    log.log(l.role === 'client' ? 'verbose' : 'info', `${l.role} ${l.name} left: ${l.reason}${requeued}`, { event: 'peerLeft', role: l.role, id: l.id, name: l.name, reason: l.reason, requeued: l.requeued });
  });
  scheduler.on('peerError', (e) => log.warn(`peer ${e.remote}: ${e.message} (${e.code})`, { event: 'peerError', remote: e.remote, code: e.code }));
  if (log.enabled('verbose')) {
    scheduler.on('taskRequeued', (e) => {
      const fields = { taskId: e.taskId, type: e.type, attempt: e.attempt, workerId: e.fromWorkerId, worker: worker(e.fromWorkerId), reason: e.reason };
      if (e.cause === 'retry') log.verbose(`task ${e.taskId} (${e.type}) will be retried: ${e.reason}`, { event: 'retry', ...fields });
      else if (e.cause === 'timeout') log.verbose(`task ${e.taskId} (${e.type}) ${e.reason}; requeued`, { event: 'timeout', ...fields });
      else log.verbose(`task ${e.taskId} (${e.type}) requeued from worker ${worker(e.fromWorkerId)}: ${e.reason}`, { event: 'requeue', ...fields });
    });
    scheduler.on('taskFailed', (e) => {
      // Shutdown fails what is left without keeping it: every other failure is kept as a dead letter.
      const event = e.code === 'E_SHUTDOWN' ? 'failed' : 'deadLetter';
      const what = event === 'deadLetter' ? 'failed for good (dead letter)' : 'failed';
      log.verbose(`task ${e.taskId} (${e.type}) ${what} after ${e.attempt} attempt(s): ${e.message} (${e.code})`, {
        event, taskId: e.taskId, type: e.type, attempt: e.attempt, code: e.code, message: e.message,
      });
    });
  }
  if (log.enabled('trace')) {
    scheduler.on('taskDispatched', (e) => log.trace(`task ${e.taskId} (${e.type}) attempt ${e.attempt} -> worker ${worker(e.workerId)}`, { event: 'dispatched', taskId: e.taskId, type: e.type, attempt: e.attempt, workerId: e.workerId, worker: worker(e.workerId) }));
    scheduler.on('taskCompleted', (e) => log.trace(`task ${e.taskId} completed by worker ${worker(e.workerId)}`, { event: 'completed', taskId: e.taskId, type: e.type, workerId: e.workerId, worker: worker(e.workerId) }));
  }
}

async function waitUntilSettled(scheduler: Scheduler, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  const busy = (): boolean => {
    const s = scheduler.stats();
    return s.queued + s.inFlight + s.delayed > 0;
  };
  while (busy() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

main().catch((err: unknown) => die(program, err));
