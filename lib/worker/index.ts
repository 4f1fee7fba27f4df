// A worker: connects to the scheduler, announces its job types and concurrency, runs tasks, returns results,
// and reconnects with backoff whenever the scheduler goes away.

import { EventEmitter } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ErrorCode, TaskwireError } from '../errors.js';
import { checkInteger, checkKnown, checkString, invalidOption, optionKeys, stripUndefined } from '../options.js';
import { builtinHandlers, isBoundedHandler } from '../jobs/index.js';
import {
  badResult,
  handlerErrorCode,
  handlerErrorMessage,
  type Handler,
  type HandlerResult,
  type Handlers,
  type TaskContext,
  type ThreadHandler,
} from '../jobs/handler.js';
import { ThreadPool } from './pool.js';
import { combineHandler, combineType, definitionHandler, isJobDefinition, type JobDefinition } from '../jobs/define.js';
import { Cmd, JOBS_VERSION, Role, decodeCancel, decodeNode, decodeTask, writeReady, writeResultError, writeResultOk, writeWorkerProgress } from '../protocol/index.js';
import { DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_LIMIT } from '../protocol/frame.js';
import { Session, type SessionOptions } from '../transport/session.js';
import { schedulerAddress } from '../transport/dial.js';
import type { TlsClientOptions } from '../transport/tcp.js';

export interface WorkerOptions {
  /** Scheduler host. Default '127.0.0.1'. */
  host?: string;
  /** Scheduler port. Default 9001. */
  port?: number;
  /**
   * The scheduler's WebSocket URL (`ws://host:http-port/ws`, or `wss:`), instead of host and port: the same
   * frames over WebSocket rather than TCP. Giving host or port as well is E_INVALID.
   */
  url?: string;
  /**
   * TLS to a scheduler started with `tls`: true trusts the system's CAs; `{ ca }` trusts those instead, `cert` and
   * `key` (PEM contents) are this side's certificate for a scheduler that requires one. The scheduler's certificate
   * must name `host` (or `servername`). Not with `url` (a wss: URL brings its own TLS).
   */
  tls?: TlsClientOptions;
  /** Handlers run at once. Default 16. */
  concurrency?: number;
  /**
   * Tasks held ahead of a free slot, so the next one is already here when a handler finishes. The worker grants
   * the scheduler `concurrency + prefetch` credits. 'auto' sizes the window from the measured handler time, to
   * hold about 20 ms of handler time (at most 8,192 tasks): trivial tasks get a deep pipeline, slow ones none, so
   * a worker never hoards slow tasks that another could run. Default 'auto'.
   */
  prefetch?: number | 'auto';
  /**
   * Job type -> handler: a function runs inline, on the worker's own thread; a ThreadHandler (`{ module, export }`)
   * runs in the worker's pool of threads. Default: the built-ins (sha256, arith). Spread `builtinHandlers` to
   * extend them.
   */
  handlers?: Handlers;
  /**
   * Typed job definitions (from defineJob()) to run beside `handlers`: each registers its `run` for its type, with
   * the payload decoded and the result encoded by its codec. A type may be defined once, here or in `handlers`.
   * Given without `handlers`, the built-ins are not added (add `builtinJobs.sha256`, `builtinJobs.arith`).
   */
  // any: a definition is invariant in its types (run takes P, decode gives P), and only its own codec feeds its run.
  jobs?: readonly JobDefinition<any, any>[];
  /** Threads in the pool for ThreadHandlers, started on first use. Default: the machine's available parallelism. */
  threads?: number;
  /**
   * How long a handler in a thread may go on after its task's AbortSignal fired (a timeout, a cancel) before its
   * thread is terminated and replaced, freeing the slot. An inline handler cannot be stopped this way. Default 5000.
   */
  stopGraceMs?: number;
  /**
   * Whether an inline handler may keep the worker's event loop busy for longer than a keepalive interval. The
   * worker tells the scheduler in its hello: while it says false, silence for 3 intervals means the worker is
   * dead, even while it runs tasks; while true, a worker running tasks that all have a timeout is not dropped for
   * silence, and the timeouts bound the wait. Default: true if any handler is a function other than a built-in.
   */
  inlineMayBlock?: boolean;
  /** Name shown by the scheduler. Default '<hostname>:<pid>'. */
  name?: string;
  /**
   * Largest frame payload accepted, in bytes: a task over it fails alone (E_TOO_LARGE). A handler's result must fit
   * the scheduler's announced limit (this one for a scheduler of version 1), or its task fails with E_TOO_LARGE.
   * Default 16 MiB.
   */
  maxPayload?: number;
  /** First reconnect delay in ms; doubles per failed attempt, with jitter. Default 100. */
  reconnectMinMs?: number;
  /** Ceiling of the reconnect delay in ms. Default 5000. */
  reconnectMaxMs?: number;
  /** How long close() lets running tasks finish before it aborts them, in ms. Default 10000. */
  closeGraceMs?: number;
  /** Shared secret, for a scheduler started with a token. */
  token?: string;
}

const WORKER_OPTIONS = optionKeys({
  host: true,
  port: true,
  url: true,
  tls: true,
  concurrency: true,
  prefetch: true,
  handlers: true,
  jobs: true,
  threads: true,
  stopGraceMs: true,
  inlineMayBlock: true,
  name: true,
  maxPayload: true,
  reconnectMinMs: true,
  reconnectMaxMs: true,
  closeGraceMs: true,
  token: true,
} satisfies Record<keyof WorkerOptions, true>);

const THREAD_HANDLER_OPTIONS = optionKeys({ module: true, export: true, inlineBelow: true, inline: true } satisfies Record<keyof ThreadHandler, true>);

export const WORKER_DEFAULTS = {
  host: '127.0.0.1',
  port: 9001,
  concurrency: 16,
  prefetch: 'auto',
  maxPayload: DEFAULT_MAX_PAYLOAD,
  reconnectMinMs: 100,
  reconnectMaxMs: 5000,
  closeGraceMs: 10_000,
  stopGraceMs: 5000,
} as const;

export interface WorkerEvents {
  /** Handshake done and job types announced. */
  connected: [info: { scheduler: string; remote: string }];
  /** The connection ended; the worker reconnects unless it is closing. */
  disconnected: [info: { code: string; message: string }];
  /** A connection attempt failed; the next one is in `delayMs`. */
  reconnecting: [info: { attempt: number; delayMs: number; code: string; message: string }];
  /** A task failed here (its handler threw, or its result was refused): the scheduler retries or fails it. */
  taskFailed: [info: { taskId: number; attempt: number; type: string; code: string; message: string }];
  /** The scheduler took a task back (a timeout, a cancel, its client gone): its handler sees an abort. */
  taskCancelled: [info: { taskId: number; attempt: number; type: string; code: string; message: string }];
  close: [];
}

/**
 * The automatic prefetch window holds about this much handler time, and at most this many tasks. The handler time
 * is only part of what a task costs the worker (decoding, the result's write, the scheduler's turn to refill), so
 * the window must cover a few of the operating system's scheduling slices, not one task's worth. W1 through the
 * CLIs (20,000 sha256 tasks, a few µs of handler time each) against a relay with no window, 5 to 7 rounds each: 5
 * ms and 1,024 read 0.86x in three runs, 20 ms and 4,096 0.91x, 20 ms and 8,192 0.93-1.17x, 50 ms and 16,384
 * 1.17x, no limit 1.28x. 20 ms keeps tasks of 50 ms (the share and late-joiner tests) out of any window: a queue's
 * tail is never held back by more than about 20 ms of work per worker.
 */
const PREFETCH_BUDGET_MS = 20;
const PREFETCH_MAX = 8192;
/** One task in this many has its handler timed, for the automatic window: a clock read costs ~50 ns. */
const SAMPLE_EVERY = 8;

/**
 * A task being run or held, and the context its handler sees. `session` is the connection it came on, the only
 * one its result may go back on. One object per task: the handler's context is the record itself, and the
 * `signal` getter lives on the prototype (an object literal with a getter cost a closure per task).
 */
class Running implements TaskContext {
  controller: AbortController | null = null;
  /** Set while the task waits for a free slot: what to run it with. */
  held: { handler: Handler; body: Buffer } | null = null;
  inputs: readonly Buffer[] = NO_INPUTS;

  constructor(
    readonly session: Session,
    readonly taskId: number,
    readonly attempt: number,
    readonly type: string,
  ) {}

  /** Most handlers never look at the signal, so its controller is made on first use only. */
  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }

  /** When progress was last sent; reports closer together than PROGRESS_INTERVAL_MS are dropped here already. */
  private progressAt = -Infinity;

  progress(value = Number.NaN, message = ''): void {
    const session = this.session;
    if (session.closed || session.schedulerVersion < JOBS_VERSION || this.controller?.signal.aborted) return;
    if (typeof value !== 'number' || typeof message !== 'string') return;
    const now = performance.now();
    if (now - this.progressAt < PROGRESS_INTERVAL_MS) return;
    this.progressAt = now;
    // A message is short by contract; a long one is cut rather than failing the handler.
    const text = Buffer.byteLength(message) > MAX_PROGRESS_MESSAGE ? Buffer.from(message).subarray(0, MAX_PROGRESS_MESSAGE).toString() : message;
    writeWorkerProgress(session.frames(), this.taskId, this.attempt, value, text);
  }
}

const NO_INPUTS: readonly Buffer[] = Object.freeze([]);

/** Bytes that are a small part of the read they are a view of, copied out: a waiting task must not keep reads alive. */
function ownBytes(bytes: Buffer): Buffer {
  return bytes.length * 2 >= bytes.buffer.byteLength ? bytes : Buffer.from(bytes);
}

/** The longest progress message sent, in bytes. */
const MAX_PROGRESS_MESSAGE = 1024;
/** A task's progress goes out at most this often; the scheduler passes it on at the same rate. */
const PROGRESS_INTERVAL_MS = 100;

/** How a job type runs: inline, in the pool, or inline below a payload size and in the pool above it. */
interface Route {
  readonly inline: Handler | null;
  readonly thread: Handler | null;
  readonly inlineBelow: number;
}

/**
 * Running tasks are keyed by task id and attempt: after a timeout the scheduler may send the same task here
 * again while the first attempt is still winding down. Both fit in a safe integer (attempt < 2^21).
 */
function leaseKey(taskId: number, attempt: number): number {
  return attempt * 0x1_0000_0000 + taskId;
}

export class Worker extends EventEmitter<WorkerEvents> {
  readonly host: string;
  readonly port: number;
  readonly name: string;
  readonly concurrency: number;
  /** The fixed prefetch window, or null for 'auto'. */
  private readonly prefetch: number | null;
  /** The prefetch window announced in the last READY. */
  private window = 0;
  /** Mean handler time in ms over the sampled tasks (an exponential moving average), 0 before the first. */
  private meanMs = 0;
  private sampleCountdown = SAMPLE_EVERY;
  /** What runs each job type: inline, in a thread, or by payload size (see ThreadHandler.inlineBelow). */
  private readonly routes = new Map<string, Route>();
  private readonly pool: ThreadPool;
  /** Told to the scheduler in the hello (see inlineMayBlock). */
  readonly inlineMayBlock: boolean;
  private readonly maxPayload: number;
  private readonly reconnectMinMs: number;
  private readonly reconnectMaxMs: number;
  private readonly closeGraceMs: number;
  private readonly token: string | undefined;
  /** How to reach a scheduler given by URL; undefined for TCP to host:port. */
  private readonly dial: SessionOptions['dial'];
  private session: Session | null = null;
  /** Tasks held and not answered that wait for something: handlers still running (async), or a free slot. */
  private readonly running = new Map<number, Running>();
  /** Async handlers in progress: at most `concurrency`. */
  private active = 0;
  /** Tasks held ahead of a free slot, oldest first. */
  private readonly waiting: Running[] = [];
  private waitingHead = 0;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private closing: Promise<void> | null = null;
  private idle: (() => void) | null = null;
  private connectedOnce: Promise<void>;
  private markConnected!: () => void;

  constructor(options: WorkerOptions = {}) {
    super();
    checkKnown('createWorker()', options, WORKER_OPTIONS);
    const o = { ...WORKER_DEFAULTS, ...stripUndefined(options) };
    const address = schedulerAddress('createWorker()', options, () => ({ host: checkString('host', o.host), port: checkInteger('port', o.port, 1, 65535) }));
    this.host = address.host;
    this.port = address.port;
    this.dial = address.dial;
    this.concurrency = checkInteger('concurrency', o.concurrency, 1, 1_000_000);
    this.prefetch = o.prefetch === 'auto' ? null : checkInteger('prefetch', o.prefetch, 0, 1_000_000);
    this.window = this.prefetch ?? 0;
    this.maxPayload = checkInteger('maxPayload', o.maxPayload, 64, MAX_PAYLOAD_LIMIT);
    this.reconnectMinMs = checkInteger('reconnectMinMs', o.reconnectMinMs, 1, 3_600_000);
    this.reconnectMaxMs = checkInteger('reconnectMaxMs', o.reconnectMaxMs, this.reconnectMinMs, 3_600_000);
    this.closeGraceMs = checkInteger('closeGraceMs', o.closeGraceMs, 0, 86_400_000);
    this.name = checkString('name', options.name ?? `${os.hostname()}:${process.pid}`);
    this.token = options.token === undefined ? undefined : checkString('token', options.token);
    const handlers = options.handlers ?? (options.jobs === undefined ? builtinHandlers : {});
    if (typeof handlers !== 'object' || handlers === null) invalidOption('handlers', 'an object of job type -> handler', handlers);
    const threads = checkInteger('threads', o.threads ?? os.availableParallelism(), 1, 1024);
    this.pool = new ThreadPool(threads, checkInteger('stopGraceMs', o.stopGraceMs, 0, 3_600_000));
    for (const [type, handler] of Object.entries(handlers)) {
      if (type.length === 0 || Buffer.byteLength(type) > 255) invalidOption('handlers', 'keyed by job type names of 1 to 255 bytes', type);
      this.routes.set(type, this.route(type, handler));
    }
    this.addJobs(options.jobs);
    if (this.routes.size === 0) invalidOption('handlers', 'an object with at least one handler', handlers);
    const mayBlock = [...this.routes.values()].some((r) => r.inline !== null && !isBoundedHandler(r.inline));
    this.inlineMayBlock = options.inlineMayBlock ?? mayBlock;
    if (typeof this.inlineMayBlock !== 'boolean') invalidOption('inlineMayBlock', 'a boolean', this.inlineMayBlock);
    this.connectedOnce = new Promise((resolve) => (this.markConnected = resolve));
    this.connect();
  }

  /** Job types this worker runs. */
  get types(): string[] {
    return [...this.routes.keys()];
  }

  /** Threads terminated because a handler did not stop after its task's AbortSignal fired. */
  get threadsStopped(): number {
    return this.pool.stopped;
  }

  /** Checks `jobs` and routes each definition's type, which neither `handlers` nor another definition may have. */
  private addJobs(jobs: WorkerOptions['jobs']): void {
    if (jobs === undefined) return;
    if (!Array.isArray(jobs)) invalidOption('jobs', 'an array of job definitions (from defineJob())', jobs);
    const fromJobs = new Set<string>();
    jobs.forEach((definition: unknown, i) => {
      if (!isJobDefinition(definition)) invalidOption(`jobs[${i}]`, 'a job definition (from defineJob())', definition);
      const { type } = definition;
      if (fromJobs.has(type)) throw new TaskwireError(ErrorCode.INVALID, `options.jobs defines job type '${type}' twice`);
      if (this.routes.has(type)) throw new TaskwireError(ErrorCode.INVALID, `job type '${type}' is in both options.jobs and options.handlers`);
      fromJobs.add(type);
      this.routes.set(type, this.route(type, definitionHandler(definition)));
      if (definition.combine === undefined) return;
      // A split job's parts are combined on a worker too: whoever runs the type runs its combine.
      const combined = combineType(type);
      if (this.routes.has(combined)) throw new TaskwireError(ErrorCode.INVALID, `job type '${combined}' (the combine of '${type}') is defined twice`);
      this.routes.set(combined, this.route(combined, combineHandler(definition)));
    });
  }

  /** Checks one entry of `handlers` and makes its route. */
  private route(type: string, handler: Handler | ThreadHandler): Route {
    if (typeof handler === 'function') return { inline: handler, thread: null, inlineBelow: Infinity };
    if (typeof handler !== 'object' || handler === null) invalidOption(`handlers.${type}`, 'a function or { module, export }', handler);
    checkKnown('createWorker()', handler, THREAD_HANDLER_OPTIONS, `handlers.${type}`);
    const { module, export: name = 'default', inlineBelow = 0, inline = null } = handler;
    const url = module instanceof URL ? module.href : typeof module === 'string' && module.length > 0 ? toUrl(module) : null;
    if (url === null) invalidOption(`handlers.${type}.module`, 'a file URL or a path', module);
    if (typeof name !== 'string' || name.length === 0) invalidOption(`handlers.${type}.export`, 'an export name', name);
    checkInteger(`handlers.${type}.inlineBelow`, inlineBelow, 0, Number.MAX_SAFE_INTEGER);
    if (inlineBelow > 0 && typeof inline !== 'function') invalidOption(`handlers.${type}.inline`, 'a function, with inlineBelow', inline);
    const thread: Handler = (payload, context) =>
      this.pool.run({ module: url, export: name, payload, inputs: context.inputs, taskId: context.taskId, attempt: context.attempt, type }, context.signal, (value, message) =>
        context.progress(value, message),
      );
    return { inline: inlineBelow > 0 ? inline : null, thread, inlineBelow };
  }

  get connected(): boolean {
    return this.session !== null && !this.session.closed;
  }

  /** Tasks held and not answered: running, or waiting for a free slot. */
  get activeTasks(): number {
    return this.running.size;
  }

  /** The credits granted to the scheduler: the tasks this worker may hold at once. */
  get credits(): number {
    return this.concurrency + this.window;
  }

  /** Resolves once the worker is connected and registered (the first time). */
  ready(): Promise<void> {
    return this.connectedOnce;
  }

  /**
   * Stops taking work, lets running tasks finish (up to closeGraceMs, then aborts them), disconnects and stops
   * reconnecting.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const session = this.session;
    if (session && !session.closed) {
      writeReady(session.frames(), 0, this.types); // no more tasks, please
      await this.drained(this.closeGraceMs);
      session.close();
    }
    await this.pool.close();
    for (const task of this.running.values()) task.controller?.abort(new TaskwireError(ErrorCode.CLOSED, 'the worker is closing'));
    this.running.clear();
    this.dropWaiting();
    this.emit('close');
  }

  private drained(graceMs: number): Promise<void> {
    if (this.running.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, graceMs);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        self.idle = null;
        resolve();
      }
      this.idle = done;
    });
  }

  // ---- connection ------------------------------------------------------------------------------------------

  private connect(): void {
    this.retryTimer = null;
    const { host, port, name, maxPayload, token, dial } = this;
    const settings = { mayBlock: this.inlineMayBlock };
    Session.open({ host, port, role: Role.WORKER, name, maxPayload, token, settings, dial }).then(
      (session) => this.attach(session),
      (err: TaskwireError) => this.retry(err),
    );
  }

  private attach(session: Session): void {
    if (this.closing) {
      session.close();
      return;
    }
    this.failures = 0;
    this.session = session;
    session.onFrame = (cmd, buf, start, end) => {
      if (cmd === Cmd.TASK || cmd === Cmd.NODE) return this.run(session, cmd, buf, start, end);
      if (cmd === Cmd.CANCEL) return this.cancel(buf, start, end);
      throw new TaskwireError(ErrorCode.PROTOCOL, `a scheduler may not send command ${cmd} to a worker`);
    };
    session.onSkipped = (cmd, head, length) => {
      if (cmd !== Cmd.TASK) throw new TaskwireError(ErrorCode.PROTOCOL, `a scheduler may not send command ${cmd} to a worker`);
      const message = `a task of ${length} bytes exceeds this worker's maxPayload (${this.maxPayload})`;
      writeResultError(session.frames(), head.readUInt32BE(0), head.readUInt32BE(4), ErrorCode.TOO_LARGE, message);
    };
    session.onClose = (error) => {
      this.session = null;
      // The scheduler requeues what this worker held; results for it could no longer be delivered.
      for (const [id, task] of this.running) {
        if (task.session !== session) continue;
        task.controller?.abort(error ?? new TaskwireError(ErrorCode.DISCONNECTED, 'connection closed'));
        this.running.delete(id);
      }
      this.dropWaiting(); // the scheduler requeues what this connection held
      this.idle?.();
      if (error) this.emit('disconnected', { code: error.code, message: error.message });
      if (!this.closing) this.retry(error);
    };
    writeReady(session.frames(), this.credits, this.types);
    this.emit('connected', { scheduler: session.schedulerName, remote: session.remote });
    this.markConnected();
  }

  /** Exponential backoff with full jitter, so a restarted scheduler is not hit by every worker at once. */
  private retry(err: TaskwireError | null): void {
    if (this.closing) return;
    this.failures++;
    const ceiling = Math.min(this.reconnectMaxMs, this.reconnectMinMs * 2 ** Math.min(this.failures - 1, 30));
    const delayMs = Math.round(this.reconnectMinMs / 2 + Math.random() * (ceiling - this.reconnectMinMs / 2));
    this.emit('reconnecting', {
      attempt: this.failures,
      delayMs,
      code: err?.code ?? ErrorCode.DISCONNECTED,
      message: err?.message ?? 'connection closed',
    });
    this.retryTimer = setTimeout(() => this.connect(), delayMs);
  }

  // ---- tasks -----------------------------------------------------------------------------------------------

  private run(session: Session, cmd: number, buf: Buffer, start: number, end: number): void {
    const { taskId, attempt, type, body, inputs } = cmd === Cmd.NODE ? decodeNode(buf, start, end) : decodeTask(buf, start, end);
    const route = this.routes.get(type);
    const handler = route && (route.thread === null || body.length < route.inlineBelow ? route.inline : route.thread);
    if (!handler) {
      writeResultError(session.frames(), taskId, attempt, ErrorCode.NO_HANDLER, `this worker has no handler for job type '${type}'`);
      return;
    }
    const task = new Running(session, taskId, attempt, type);
    if (inputs !== undefined) task.inputs = inputs;
    if (this.active < this.concurrency) return this.start(task, handler, body);
    // Every slot is busy: the task waits here, in the prefetch window. Its body is a view of the socket read,
    // copied out when it is a small part of it, so waiting tasks do not keep reads alive.
    task.held = { handler, body: ownBytes(body) };
    if (inputs !== undefined) task.inputs = inputs.map(ownBytes);
    this.running.set(leaseKey(taskId, attempt), task);
    this.waiting.push(task);
  }

  private start(task: Running, handler: Handler, body: Buffer): void {
    const sampled = --this.sampleCountdown === 0;
    const began = sampled ? performance.now() : 0;
    let result: HandlerResult | Promise<HandlerResult>;
    try {
      result = handler(body, task);
    } catch (err) {
      if (sampled) this.sampled(began);
      return this.reply(task, null, err);
    }
    // Synchronous handlers (the built-ins) answer in the same turn: no promise, no bookkeeping, nothing that
    // could have changed meanwhile. Only tasks that wait are tracked, for cancellation and connection loss.
    if (!isPromiseLike(result)) {
      if (sampled) this.sampled(began);
      return this.reply(task, result, null);
    }
    const key = leaseKey(task.taskId, task.attempt);
    this.running.set(key, task);
    this.active++;
    result.then(
      (value) => this.settle(key, task, value, null, sampled ? began : -1),
      (err: unknown) => this.settle(key, task, null, err ?? new Error('handler rejected'), sampled ? began : -1),
    );
  }

  /** Starts held tasks while there are free slots. */
  private startWaiting(): void {
    while (this.active < this.concurrency && this.waitingHead < this.waiting.length) {
      const task = this.waiting[this.waitingHead]!;
      this.waiting[this.waitingHead++] = undefined!;
      const held = task.held;
      if (held === null) continue; // cancelled while it waited
      task.held = null;
      this.running.delete(leaseKey(task.taskId, task.attempt));
      this.start(task, held.handler, held.body);
    }
    if (this.waitingHead === this.waiting.length) {
      this.waiting.length = 0;
      this.waitingHead = 0;
    }
  }

  private dropWaiting(): void {
    for (let i = this.waitingHead; i < this.waiting.length; i++) this.waiting[i]!.held = null;
    this.waiting.length = 0;
    this.waitingHead = 0;
  }

  /**
   * A sampled handler finished: folds its time into the mean and, with an automatic window, announces a new
   * window when it has moved by more than a quarter (and at least 2), so READY is rare.
   */
  private sampled(began: number): void {
    this.sampleCountdown = SAMPLE_EVERY;
    const ms = performance.now() - began;
    this.meanMs = this.meanMs === 0 ? ms : this.meanMs * 0.8 + ms * 0.2;
    if (this.prefetch !== null || this.closing) return;
    const wanted = Math.min(PREFETCH_MAX, Math.floor(PREFETCH_BUDGET_MS / Math.max(this.meanMs, 1e-3)));
    if (Math.abs(wanted - this.window) <= Math.max(2, this.window / 4)) return;
    this.window = wanted;
    const session = this.session;
    if (session && !session.closed) writeReady(session.frames(), this.credits, this.types);
  }

  /**
   * The scheduler took a task back (timeout, or its client left): abort the handler. Its answer is still sent
   * when it settles, because the scheduler keeps the slot busy until then. A task still waiting for a slot is
   * answered at once, unrun.
   */
  private cancel(buf: Buffer, start: number, end: number): void {
    const { taskId, attempt, code, message } = decodeCancel(buf, start, end);
    const key = leaseKey(taskId, attempt);
    const running = this.running.get(key);
    if (!running) return; // already answered; the answer and the cancel crossed on the wire
    if (this.listenerCount('taskCancelled') > 0) this.emit('taskCancelled', { taskId, attempt, type: running.type, code, message });
    if (running.held !== null) {
      running.held = null;
      this.running.delete(key);
      writeResultError(running.session.frames(), taskId, attempt, code, `not run: ${message}`);
      if (this.running.size === 0) this.idle?.();
      return;
    }
    running.controller ??= new AbortController();
    running.controller.abort(new TaskwireError(code, message));
  }

  private settle(key: number, running: Running, value: HandlerResult | null, error: unknown, began: number): void {
    if (began >= 0) this.sampled(began);
    if (this.running.get(key) !== running) return; // its connection is gone; the task was requeued
    this.running.delete(key);
    this.active--;
    this.reply(running, value, error);
    this.startWaiting();
    if (this.running.size === 0) this.idle?.();
  }

  private reply(task: Running, value: HandlerResult | null, error: unknown): void {
    const { session, taskId, attempt } = task;
    const bad = error === null ? badResult(value) : null;
    if (error !== null) {
      this.failed(task, handlerErrorCode(error), handlerErrorMessage(error));
    } else if (bad === null) {
      // A RESULT the scheduler would refuse fails its task here instead of costing the connection. The exact
      // size of a string is only measured when 3 bytes per UTF-16 unit could pass the limit.
      const limit = session.schedulerMaxPayload ?? this.maxPayload;
      const result = value as HandlerResult;
      const bound = typeof result === 'string' ? result.length * 3 : result.length;
      const size = bound + 9 > limit ? 9 + (typeof result === 'string' ? Buffer.byteLength(result) : result.length) : 0;
      if (size > limit) {
        this.failed(task, ErrorCode.TOO_LARGE, `the handler's result of ${size - 9} bytes does not fit the scheduler's maxPayload (${limit})`);
        return;
      }
      writeResultOk(session.frames(), taskId, attempt, result);
    } else {
      this.failed(task, ErrorCode.HANDLER, bad);
    }
  }

  private failed(task: Running, code: string, message: string): void {
    writeResultError(task.session.frames(), task.taskId, task.attempt, code, message);
    if (this.listenerCount('taskFailed') > 0) this.emit('taskFailed', { taskId: task.taskId, attempt: task.attempt, type: task.type, code, message });
  }
}

function isPromiseLike(value: unknown): value is PromiseLike<HandlerResult> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

/** A module given as a path is resolved against the current directory, as a user would expect of a path. */
function toUrl(module: string): string {
  return /^[a-z][a-z0-9+.-]*:/i.test(module) && !/^[a-z]:[\\/]/i.test(module) ? module : pathToFileURL(path.resolve(module)).href;
}

/** Creates a worker; it connects at once and keeps reconnecting until close(). */
export function createWorker(options?: WorkerOptions): Worker {
  return new Worker(options);
}
