// A client: submits jobs over one pipelined connection and settles each promise when its result comes back; asks
// about jobs by id (status, wait, cancel, the latest jobs) on the same connection.

import { EventEmitter } from 'node:events';
import os from 'node:os';
import { ErrorCode, TaskFailedError, TaskwireError } from '../errors.js';
import { IdTable } from '../id-table.js';
import { checkInteger, checkKnown, checkString, optionKeys, stripUndefined, unknownOption } from '../options.js';
import {
  Cmd,
  JOBS_VERSION,
  Role,
  decodeAccepted,
  decodeClientProgress,
  decodeCompleted,
  decodeFailed,
  decodeReply,
  GRAPH_VERSION,
  graphPayloadLength,
  submitPayloadLength,
  taskPayloadLength,
  writeAbort,
  writeGraph,
  writeList,
  writeStatus,
  writeSubmit,
  writeWait,
  type SubmitOptions as WireOptions,
} from '../protocol/index.js';
import { DEFAULT_MAX_PAYLOAD, FrameWriter, MAX_PAYLOAD_LIMIT } from '../protocol/frame.js';
import { combineType, decodeResult, encodePayload, isJobDefinition, type JobDefinition } from '../jobs/define.js';
import { JOB_STATES, type JobInfo, type JobState } from '../scheduler/finished.js';
import { Session } from '../transport/session.js';
import { schedulerAddress } from '../transport/dial.js';
import type { TlsClientOptions } from '../transport/tcp.js';

export interface ClientOptions {
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
  /** Name shown by the scheduler. Default '<hostname>:<pid>'. */
  name?: string;
  /**
   * Largest frame payload accepted, in bytes: a result over it fails its task alone (E_TOO_LARGE). Until the
   * scheduler has announced its own limit, submissions are checked against this one too. Default 16 MiB.
   */
  maxPayload?: number;
  /** Shared secret, for a scheduler started with a token. */
  token?: string;
}

/** Named priorities, for those who would rather not pick numbers. */
export const PRIORITIES = { high: 10, normal: 0, low: -10 } as const;

/** Per-job options; absent ones take the scheduler's defaults. */
export interface SubmitOptions {
  /** ms the task may run on a worker before it is taken back and requeued (u32). Default: the scheduler's. */
  timeoutMs?: number;
  /** Times a handler failure is retried, with exponential backoff (0-255). Default 0: fail at once. */
  retries?: number;
  /** First retry delay in ms, doubled per retry (u32). Default: the scheduler's (1000). */
  backoffMs?: number;
  /** Higher runs first, FIFO within one: an integer (signed 32-bit) or 'high' (10), 'normal' (0), 'low' (-10). Default 0. */
  priority?: number | keyof typeof PRIORITIES;
  /** ms to wait before the job is queued (u32); it is 'delayed' meanwhile. */
  delayMs?: number;
  /** When to queue the job (a Date, or ms since the epoch): the same as delayMs from now. */
  runAt?: Date | number;
  /** The job survives this client's disconnection (else it is cancelled with it). Default false. */
  detach?: boolean;
  /**
   * With a fair scheduler, the jobs of one tenant, from any client, take one turn together (else each client
   * takes its own): a name (hashed to 32 bits, so two names may rarely share a turn) or a u32.
   */
  tenant?: string | number;
  /** Called with each progress report of the job's handler (at most every 100 ms). */
  onProgress?: (progress: Progress) => void;
}

/**
 * One node of a graph job (submitGraph()): a job of its own type and payload, which also gets the results of the
 * nodes it lists in `inputs` (indices into the graph's nodes) as its handler's `context.inputs`, in that order.
 * The last node is the root: its result is the graph's.
 */
export interface GraphNode {
  type: string;
  payload: Payload;
  inputs?: readonly number[];
}

/** run()'s options: submit()'s, and for a job whose definition splits, into how many parts at most. */
export interface RunOptions extends SubmitOptions {
  /**
   * Split the payload into at most this many parts (the definition's split(), here), run them in parallel and
   * combine their results on a worker (its combine(), as the job type `<type>.combine`): one graph job.
   */
  chunks?: number;
}

/** wait()'s options. */
export interface WaitOptions {
  /** Called with the job's progress as its handler reports it (at most about 10 times a second). */
  onProgress?: (progress: Progress) => void;
}

/** jobs()'s options. */
export interface JobsOptions {
  /** Only jobs in this state. */
  state?: JobState;
  /** At most this many (default 100). */
  limit?: number;
}

const WAIT_OPTIONS = optionKeys({ onProgress: true } satisfies Record<keyof WaitOptions, true>);
const JOBS_OPTIONS = optionKeys({ state: true, limit: true } satisfies Record<keyof JobsOptions, true>);

/** An E_INVALID error for a problem checkKnown's kin described, or null. */
const invalid = (problem: string | null): TaskwireError | null => (problem === null ? null : new TaskwireError(ErrorCode.INVALID, problem));

/** The most parts a split job may have (one less than a graph's default node limit). */
const MAX_CHUNKS = 9_999;

/** A handler's progress report: a number (NaN for none) and a message ('' for none). */
export interface Progress {
  value: number;
  message: string;
}

export type { JobInfo, JobState } from '../scheduler/finished.js';

/** A job accepted by the scheduler: its id, and its outcome to come. */
export interface Job<R = string> {
  readonly id: number;
  /** The result, as submit() resolves it (as run() does, from enqueueJob()). */
  readonly result: Promise<R>;
}

const CLIENT_OPTIONS = optionKeys({
  host: true,
  port: true,
  url: true,
  tls: true,
  name: true,
  maxPayload: true,
  token: true,
} satisfies Record<keyof ClientOptions, true>);

export const CLIENT_DEFAULTS = {
  host: '127.0.0.1',
  port: 9001,
  maxPayload: DEFAULT_MAX_PAYLOAD,
} as const;

export interface ClientEvents {
  connected: [info: { scheduler: string; remote: string }];
  /** The connection ended; every pending task was rejected with `code`. */
  disconnected: [info: { code: string; message: string }];
}

/**
 * A request waiting for its answer: a job's result (`raw` says whether as bytes or text), or a REPLY's JSON
 * (`reply`). A submission that asked for its id hears of it through `accepted`.
 */
interface Pending {
  resolve: (value: never) => void;
  reject: (error: Error) => void;
  raw: boolean;
  reply?: true;
  accepted?: (jobId: number) => void;
  progress?: (progress: Progress) => void;
  /** A graph job's: its failure names the node that failed. */
  graph?: true;
}

export type Payload = string | Uint8Array;

export class Client extends EventEmitter<ClientEvents> {
  readonly host: string;
  readonly port: number;
  readonly name: string;
  private readonly maxPayload: number;
  private session: Session | null = null;
  private readonly opening: Promise<Session>;
  /** Frames submitted before the handshake finished, written here and sent right after it. */
  private outbox: FrameWriter | null = new FrameWriter();
  /** By request id; an IdTable rather than a Map for the churn of one entry per task (see lib/id-table.ts). */
  private readonly pending = new IdTable<Pending>();
  private nextId = 0;
  /** Why this client can no longer submit, once it cannot. */
  private ended: TaskwireError | null = null;

  constructor(options: ClientOptions = {}) {
    super();
    checkKnown('createClient()', options, CLIENT_OPTIONS);
    const o = { ...CLIENT_DEFAULTS, ...stripUndefined(options) };
    const address = schedulerAddress('createClient()', options, () => ({ host: checkString('host', o.host), port: checkInteger('port', o.port, 1, 65535) }));
    this.host = address.host;
    this.port = address.port;
    this.maxPayload = checkInteger('maxPayload', o.maxPayload, 64, MAX_PAYLOAD_LIMIT);
    this.name = checkString('name', options.name ?? `${os.hostname()}:${process.pid}`);
    const token = options.token === undefined ? undefined : checkString('token', options.token);
    const { host, port, name, maxPayload } = this;
    this.opening = Session.open({ host, port, role: Role.CLIENT, name, maxPayload, token, dial: address.dial });
    this.opening.then(
      (session) => this.attach(session),
      (err: TaskwireError) => this.end(err),
    );
    // connect() reports the failure to whoever asks; an unobserved failure must not crash the process.
    this.opening.catch(() => {});
  }

  /** Resolves once connected; rejects with E_CONNECT (or the scheduler's refusal) when it cannot be. */
  async connect(): Promise<void> {
    await this.opening;
    if (this.ended) throw this.ended;
  }

  /** Tasks submitted and not yet settled. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Runs a job and resolves with its result as UTF-8 text. Rejects with a TaskwireError carrying a `code`. */
  submit(type: string, payload: Payload, options?: SubmitOptions): Promise<string> {
    return this.send(type, payload, false, options);
  }

  /** Like submit(), but resolves with the result's raw bytes. */
  submitBuffer(type: string, payload: Payload, options?: SubmitOptions): Promise<Buffer> {
    return this.send(type, payload, true, options);
  }

  /**
   * Submits a job and resolves as soon as the scheduler accepted it, with its id and its result to come. With
   * `detach`, the id is the way to it from anywhere: status(), wait() and cancel() on any client.
   */
  enqueue(type: string, payload: Payload, options?: SubmitOptions): Promise<Job> {
    return new Promise<Job>((resolve, reject) => {
      let accepted = false;
      const result = this.send<string>(type, payload, false, options, (id) => {
        accepted = true;
        resolve({ id, result });
      });
      // A refusal comes instead of the id: it rejects this promise, and the result (which nobody holds) quietly.
      result.catch((err: unknown) => {
        if (!accepted) reject(err);
      });
    });
  }

  /**
   * Runs a typed job: the payload is encoded with the definition's codec and submitted as submit() does (same
   * options), and the result decoded with it. Rejects as submit() does; with E_INVALID for a payload the codec
   * cannot encode, E_DECODE for a result it cannot decode.
   */
  run<P, R>(definition: JobDefinition<P, R>, payload: NoInfer<P>, options?: RunOptions): Promise<R> {
    const { chunks, ...rest } = options ?? {};
    const submitOptions = options ? rest : undefined;
    let body: Payload;
    try {
      // Here too, for chunks to be suggested; named as submit() names them, since run() takes submit()'s options.
      if (options) checkKnown('submit()', options, RUN_OPTIONS);
      body = typedBody(definition, payload);
      if (chunks !== undefined) return this.runSplit(definition, payload, body, chunks, submitOptions);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.submitBuffer(definition.type, body, submitOptions).then((bytes) => decodeResult(definition, bytes));
  }

  /**
   * A split job: its parts (split() here, in the client) run as a graph's nodes in parallel, and its combine on a
   * worker, as the graph's root.
   */
  private runSplit<P, R>(definition: JobDefinition<P, R>, payload: P, body: Payload, chunks: number, options: SubmitOptions | undefined): Promise<R> {
    if (!Number.isInteger(chunks) || chunks < 1 || chunks > MAX_CHUNKS) {
      throw new TaskwireError(ErrorCode.INVALID, `options.chunks must be an integer from 1 to ${MAX_CHUNKS}, got ${String(chunks)}`);
    }
    const { split, type } = definition;
    if (split === undefined) throw new TaskwireError(ErrorCode.INVALID, `job type '${type}' does not split: its definition has no split and combine`);
    const parts = split(payload, chunks);
    if (!Array.isArray(parts) || parts.length === 0 || parts.length > chunks) {
      throw new TaskwireError(ErrorCode.INVALID, `split of job type '${type}' must return from 1 to ${chunks} payloads, got ${Array.isArray(parts) ? parts.length : typeof parts}`);
    }
    const nodes: GraphNode[] = parts.map((part) => ({ type, payload: encodePayload(definition, part) }));
    nodes.push({ type: combineType(type), payload: body, inputs: parts.map((_, i) => i) });
    return this.submitGraphBuffer(nodes, options).then((bytes) => decodeResult(definition, bytes));
  }

  /** enqueue() for a typed job: resolves once accepted, with its id and its result decoded as run() does. */
  async enqueueJob<P, R>(definition: JobDefinition<P, R>, payload: NoInfer<P>, options?: SubmitOptions): Promise<Job<R>> {
    const body = typedBody(definition, payload);
    const job = await new Promise<Job<Buffer>>((resolve, reject) => {
      let accepted = false;
      const result = this.send<Buffer>(definition.type, body, true, options, (id) => {
        accepted = true;
        resolve({ id, result });
      });
      result.catch((err: unknown) => {
        if (!accepted) reject(err);
      });
    });
    const result = job.result.then((bytes) => decodeResult(definition, bytes));
    // As with enqueue(), a result nobody holds (a detached job, say) must not fail the process when it fails.
    result.catch(() => {});
    return { id: job.id, result };
  }

  /**
   * Runs a graph job: every node whose inputs have completed runs (independent ones in parallel, on any
   * workers), fed its inputs' results, and the graph resolves with the root's (the last node's) result as text.
   * A failing node fails the graph: the error's code is the node's, its message names the node (`node 3
   * (sha256) failed: ...`) and its `node` property is the node's index. Options are submit()'s (they apply to
   * every node), but for delayMs and runAt. Needs a scheduler of protocol version 4.
   */
  submitGraph(nodes: readonly GraphNode[], options?: SubmitOptions): Promise<string> {
    return this.sendGraph<string>(nodes, false, options);
  }

  /** Like submitGraph(), but resolves with the root's result as raw bytes. */
  submitGraphBuffer(nodes: readonly GraphNode[], options?: SubmitOptions): Promise<Buffer> {
    return this.sendGraph<Buffer>(nodes, true, options);
  }

  /** enqueue() for a graph: resolves once the scheduler accepted it, with its job id and its result to come. */
  enqueueGraph(nodes: readonly GraphNode[], options?: SubmitOptions): Promise<Job> {
    return new Promise<Job>((resolve, reject) => {
      let accepted = false;
      const result = this.sendGraph<string>(nodes, false, options, (id) => {
        accepted = true;
        resolve({ id, result });
      });
      result.catch((err: unknown) => {
        if (!accepted) reject(err);
      });
    });
  }

  /** A job's status by id; rejects with E_NO_SUCH_JOB for a job the scheduler does not know (any more). */
  status(id: number): Promise<JobInfo> {
    return this.ask<JobInfo>('status', (w, requestId) => writeStatus(w, requestId, checkJobId(id)));
  }

  /** Resolves with a job's result (or rejects with its error) once it has one; at once for a finished one on record. */
  wait(id: number, options: WaitOptions = {}): Promise<string> {
    const check = this.jobsCheck('wait') ?? invalid(unknownOption('wait()', options, WAIT_OPTIONS));
    if (check) return Promise.reject(check);
    let jobId: number;
    try {
      jobId = checkJobId(id);
    } catch (err) {
      return Promise.reject(err);
    }
    const requestId = this.allocateId();
    writeWait(this.outbox ?? this.session!.frames(), requestId, jobId);
    return new Promise<string>((resolve, reject) => {
      this.pending.set(requestId, { resolve: resolve as (value: never) => void, reject, raw: false, progress: options.onProgress });
    });
  }

  /**
   * Cancels a job by id: a queued or delayed one never runs, a running one's handler is aborted. Resolves
   * 'cancelled', or 'finished' for a job that had already ended (it is left as it was); rejects with E_NO_SUCH_JOB.
   */
  async cancel(id: number): Promise<'cancelled' | 'finished'> {
    const reply = await this.ask<{ outcome: 'cancelled' | 'finished' }>('cancel', (w, requestId) => writeAbort(w, requestId, checkJobId(id)));
    return reply.outcome;
  }

  /** The latest jobs (up to 1,024 back), newest first: unsettled ones, and finished detached ones on record. */
  async jobs(options: JobsOptions = {}): Promise<JobInfo[]> {
    const limit = options.limit ?? 100;
    const problem = invalid(unknownOption('jobs()', options, JOBS_OPTIONS));
    if (problem) throw problem;
    if (!Number.isInteger(limit) || limit < 1 || limit > 0xffff_ffff) {
      throw new TaskwireError(ErrorCode.INVALID, `options.limit must be a whole number from 1, got ${String(limit)}`);
    }
    if (options.state !== undefined && !JOB_STATES.includes(options.state)) {
      throw new TaskwireError(ErrorCode.INVALID, `options.state must be one of ${JOB_STATES.join(', ')}, got ${JSON.stringify(options.state)}`);
    }
    const reply = await this.ask<{ jobs: JobInfo[] }>('jobs', (w, requestId) => writeList(w, requestId, limit, options.state ?? ''));
    return reply.jobs;
  }

  /** Closes the connection; tasks still pending are rejected with E_CLOSED. */
  async close(): Promise<void> {
    if (!this.ended) this.end(new TaskwireError(ErrorCode.CLOSED, 'the client was closed'));
    await this.opening.catch(() => {});
  }

  /** Why a request about jobs by id cannot be made now, or null. */
  private jobsCheck(what: string): TaskwireError | null {
    if (this.ended) return this.ended;
    const version = this.session?.schedulerVersion ?? JOBS_VERSION;
    if (version < JOBS_VERSION) {
      return new TaskwireError(ErrorCode.VERSION, `${what} needs a scheduler of protocol version ${JOBS_VERSION}; this one speaks ${version}`);
    }
    return null;
  }

  /** Sends a request answered with REPLY and resolves with its JSON. */
  private ask<T>(what: string, write: (w: FrameWriter, requestId: number) => void): Promise<T> {
    const check = this.jobsCheck(what);
    if (check) return Promise.reject(check);
    const requestId = this.allocateId();
    try {
      write(this.outbox ?? this.session!.frames(), requestId);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<T>((resolve, reject) => {
      this.pending.set(requestId, { resolve: resolve as (value: never) => void, reject, raw: false, reply: true });
    });
  }

  private send<T>(
    type: string,
    payload: Payload,
    raw: boolean,
    options: SubmitOptions | undefined,
    accepted?: (jobId: number) => void,
  ): Promise<T> {
    if (this.ended) return Promise.reject(this.ended);
    const wire = options ? wireOptions(options) : undefined;
    if (typeof wire === 'string') return Promise.reject(new TaskwireError(ErrorCode.INVALID, wire));
    const sent: WireOptions | undefined = accepted ? { ...wire, accept: true } : wire;
    const check = sent && usesJobs(sent) ? this.jobsCheck('priority, delayMs, runAt, detach and enqueue()') : null;
    if (check) return Promise.reject(check);
    // A UTF-16 unit is at most 3 UTF-8 bytes, so only a type over 85 units needs measuring.
    if (typeof type !== 'string' || type.length === 0 || (type.length > 85 && Buffer.byteLength(type) > 255)) {
      return Promise.reject(new TaskwireError(ErrorCode.INVALID, 'type must be a job type name of 1 to 255 bytes'));
    }
    if (typeof payload !== 'string' && !(payload instanceof Uint8Array)) {
      return Promise.reject(new TaskwireError(ErrorCode.INVALID, 'payload must be a string or a Uint8Array'));
    }
    // A task too large for the scheduler (as a SUBMIT, or as the TASK it becomes) is refused here, unsent. Its
    // exact size costs a UTF-8 length pass, so it is only computed when a bound could pass the limit: 3 bytes
    // per UTF-16 unit, under 512 for the other fields.
    const limit = this.session?.schedulerMaxPayload ?? this.maxPayload;
    if ((typeof payload === 'string' ? payload.length * 3 : payload.length) + 512 > limit) {
      const size = Math.max(submitPayloadLength(type, payload, sent), taskPayloadLength(type, payload));
      if (size > limit) {
        const whose = this.session?.schedulerMaxPayload === undefined ? 'maxPayload' : "the scheduler's maxPayload";
        return Promise.reject(new TaskwireError(ErrorCode.TOO_LARGE, `a task of ${size} bytes exceeds ${whose} (${limit})`));
      }
    }
    const id = this.allocateId();
    writeSubmit(this.outbox ?? this.session!.frames(), id, type, payload, sent);
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: never) => void, reject, raw, accepted, progress: options?.onProgress });
    });
  }

  private async sendGraph<T>(nodes: readonly GraphNode[], raw: boolean, options: SubmitOptions | undefined, accepted?: (jobId: number) => void): Promise<T> {
    const wire = options ? wireOptions(options) : undefined;
    if (typeof wire === 'string') throw new TaskwireError(ErrorCode.INVALID, wire);
    if (wire?.delayMs !== undefined) throw new TaskwireError(ErrorCode.INVALID, 'a graph job takes no delayMs or runAt');
    const problem = graphProblem(nodes);
    if (problem) throw new TaskwireError(ErrorCode.INVALID, problem);
    // The scheduler's version decides whether it can read a GRAPH at all: wait for its hello.
    await this.connect();
    const session = this.session;
    if (this.ended || session === null) throw this.ended ?? new TaskwireError(ErrorCode.DISCONNECTED, 'not connected');
    if (session.schedulerVersion < GRAPH_VERSION) {
      throw new TaskwireError(ErrorCode.VERSION, `graph jobs need a scheduler of protocol version ${GRAPH_VERSION}; this one speaks ${session.schedulerVersion}`);
    }
    const sent: WireOptions | undefined = accepted ? { ...wire, accept: true } : wire;
    const specs = nodes.map((n) => ({ type: n.type, body: n.payload, inputs: n.inputs ?? [] }));
    const size = graphPayloadLength(specs, sent);
    const limit = session.schedulerMaxPayload ?? this.maxPayload;
    if (size > limit) throw new TaskwireError(ErrorCode.TOO_LARGE, `a graph of ${size} bytes exceeds the scheduler's maxPayload (${limit})`);
    const id = this.allocateId();
    writeGraph(session.frames(), id, specs, sent);
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: never) => void, reject, raw, accepted, progress: options?.onProgress, graph: true });
    });
  }

  /** Request ids are u32 and unique among pending tasks; they wrap after 2^32 submissions. */
  private allocateId(): number {
    do this.nextId = (this.nextId + 1) >>> 0;
    while (this.pending.has(this.nextId));
    return this.nextId;
  }

  private attach(session: Session): void {
    if (this.ended) {
      session.close();
      return;
    }
    this.session = session;
    session.onFrame = (cmd, buf, start, end) => this.frame(cmd, buf, start, end);
    session.onSkipped = (cmd, head, length) => {
      if (cmd !== Cmd.COMPLETED) throw new TaskwireError(ErrorCode.PROTOCOL, `a scheduler may not send command ${cmd} to a client`);
      const message = `the result of ${length - 4} bytes exceeds this client's maxPayload (${this.maxPayload})`;
      this.take(head.readUInt32BE(0)).reject(new TaskFailedError(ErrorCode.TOO_LARGE, message));
    };
    session.onClose = (error) => {
      this.end(error ?? new TaskwireError(ErrorCode.DISCONNECTED, 'the connection to the scheduler closed'));
    };
    const queued = this.outbox!.take();
    if (queued) session.send(queued);
    this.outbox = null;
    this.emit('connected', { scheduler: session.schedulerName, remote: session.remote });
  }

  private frame(cmd: number, buf: Buffer, start: number, end: number): void {
    if (cmd === Cmd.COMPLETED) {
      const { requestId, bodyStart, bodyEnd } = decodeCompleted(buf, start, end);
      const task = this.take(requestId);
      // toString() copies; a raw result is copied too so it does not pin the socket's whole read buffer.
      const result = task.raw ? Buffer.copyBytesFrom(buf, bodyStart, bodyEnd - bodyStart) : buf.toString('utf8', bodyStart, bodyEnd);
      task.resolve(result as never);
      return;
    }
    if (cmd === Cmd.FAILED) {
      const { requestId, code, message } = decodeFailed(buf, start, end);
      const request = this.take(requestId);
      const error = new TaskFailedError(code, message);
      const node = request.graph ? /^node (\d+) \(/.exec(message) : null;
      if (node) error.node = Number(node[1]);
      request.reject(error);
      return;
    }
    if (cmd === Cmd.ACCEPTED) {
      const { requestId, jobId } = decodeAccepted(buf, start, end);
      const request = this.pending.get(requestId);
      if (!request?.accepted) throw new TaskwireError(ErrorCode.PROTOCOL, `ACCEPTED for request id ${requestId}, which did not ask for it`);
      request.accepted(jobId);
      request.accepted = undefined;
      return;
    }
    if (cmd === Cmd.REPLY) {
      const { requestId, json } = decodeReply(buf, start, end);
      const request = this.take(requestId);
      if (!request.reply) throw new TaskwireError(ErrorCode.PROTOCOL, `REPLY for request id ${requestId}, which expects a result`);
      let value: unknown;
      try {
        value = JSON.parse(json);
      } catch {
        throw new TaskwireError(ErrorCode.PROTOCOL, `REPLY for request id ${requestId} is not JSON`);
      }
      request.resolve(value as never);
      return;
    }
    if (cmd === Cmd.PROGRESS) {
      const { requestId, value, message } = decodeClientProgress(buf, start, end);
      // Progress is best effort: a report for a request this side no longer holds is not worth the connection.
      this.pending.get(requestId)?.progress?.({ value, message });
      return;
    }
    throw new TaskwireError(ErrorCode.PROTOCOL, `a scheduler may not send command ${cmd} to a client`);
  }

  private take(requestId: number): Pending {
    const task = this.pending.get(requestId);
    if (!task) throw new TaskwireError(ErrorCode.PROTOCOL, `result for unknown request id ${requestId}`);
    this.pending.delete(requestId);
    return task;
  }

  /** Rejects every pending task with `reason` and refuses new ones. */
  private end(reason: TaskwireError): void {
    if (this.ended) return;
    this.outbox = null;
    const session = this.session;
    this.session = null;
    // Once connected, every way of losing the connection (reset, silent scheduler, scheduler shutting down or
    // refusing a frame) is one code to the caller, E_DISCONNECTED; the message keeps the scheduler's reason.
    const error =
      session && reason.code !== ErrorCode.CLOSED && reason.code !== ErrorCode.DISCONNECTED
        ? new TaskwireError(ErrorCode.DISCONNECTED, `${reason.message} (${reason.code})`, { cause: reason })
        : reason;
    this.ended = error;
    for (const task of this.pending.values()) task.reject(error);
    this.pending.clear();
    if (session) {
      session.close();
      this.emit('disconnected', { code: error.code, message: error.message });
    }
  }
}

const SUBMIT_LIMITS = { timeoutMs: 0xffff_ffff, retries: 255, backoffMs: 0xffff_ffff, delayMs: 0xffff_ffff } as const;
const SUBMIT_KEYS = {
  timeoutMs: true,
  retries: true,
  backoffMs: true,
  priority: true,
  delayMs: true,
  runAt: true,
  detach: true,
  tenant: true,
  onProgress: true,
} satisfies Record<keyof SubmitOptions, true>;
const SUBMIT_OPTIONS = optionKeys(SUBMIT_KEYS);
const RUN_OPTIONS = optionKeys({ ...SUBMIT_KEYS, chunks: true } satisfies Record<keyof RunOptions, true>);

/** The options as SUBMIT carries them, or what is wrong with them. */
function wireOptions(options: SubmitOptions): WireOptions | string {
  const unknown = unknownOption('submit()', options, SUBMIT_OPTIONS);
  if (unknown !== null) return unknown;
  const wire: WireOptions = {};
  for (const key of ['timeoutMs', 'retries', 'backoffMs', 'delayMs'] as const) {
    const value = options[key];
    if (value === undefined) continue;
    const max = SUBMIT_LIMITS[key];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
      return `options.${key} must be an integer from 0 to ${max}, got ${String(value)}`;
    }
    wire[key] = value;
  }
  const { priority, runAt, detach, onProgress } = options;
  if (priority !== undefined) {
    const n = typeof priority === 'string' ? PRIORITIES[priority as keyof typeof PRIORITIES] : priority;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < -0x8000_0000 || n > 0x7fff_ffff) {
      return `options.priority must be 'high', 'normal', 'low' or an integer from -2147483648 to 2147483647, got ${String(priority)}`;
    }
    if (n !== 0) wire.priority = n;
  }
  if (runAt !== undefined) {
    if (options.delayMs !== undefined) return 'options.runAt and options.delayMs cannot both be given';
    const at = runAt instanceof Date ? runAt.getTime() : runAt;
    if (typeof at !== 'number' || !Number.isFinite(at)) return `options.runAt must be a Date or ms since the epoch, got ${String(runAt)}`;
    const delay = Math.ceil(at - Date.now());
    if (delay > SUBMIT_LIMITS.delayMs) return `options.runAt is more than ${SUBMIT_LIMITS.delayMs} ms away`;
    if (delay > 0) wire.delayMs = delay;
  }
  if (detach !== undefined && typeof detach !== 'boolean') return `options.detach must be true or false, got ${String(detach)}`;
  if (detach) wire.detach = true;
  const tenant = options.tenant;
  if (typeof tenant === 'string' && tenant.length > 0) wire.tenant = fnv1a(tenant);
  else if (typeof tenant === 'number' && Number.isInteger(tenant) && tenant >= 0 && tenant <= 0xffff_ffff) wire.tenant = tenant;
  else if (tenant !== undefined) return `options.tenant must be a non-empty string or an integer from 0 to 4294967295, got ${String(tenant)}`;
  if (onProgress !== undefined && typeof onProgress !== 'function') return 'options.onProgress must be a function';
  return wire;
}

/** What is wrong with a graph's nodes as given (their shape is the scheduler's to check), or null. */
function graphProblem(nodes: readonly GraphNode[]): string | null {
  if (!Array.isArray(nodes) || nodes.length === 0) return 'a graph needs an array of at least one node';
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i];
    if (typeof node !== 'object' || node === null) return `node ${i} must be an object { type, payload, inputs }`;
    const { type, payload, inputs } = node;
    if (typeof type !== 'string' || type.length === 0 || Buffer.byteLength(type) > 255) return `node ${i}: type must be a job type name of 1 to 255 bytes`;
    if (typeof payload !== 'string' && !(payload instanceof Uint8Array)) return `node ${i}: payload must be a string or a Uint8Array`;
    if (inputs !== undefined && (!Array.isArray(inputs) || inputs.length > 0xffff || !inputs.every((k) => Number.isInteger(k) && k >= 0 && k <= 0xffff_ffff))) {
      return `node ${i}: inputs must be an array of at most 65535 node indices`;
    }
  }
  return null;
}

/** Whether SUBMIT options need a scheduler of version 3. */
function usesJobs(wire: WireOptions): boolean {
  return wire.priority !== undefined || wire.delayMs !== undefined || wire.detach !== undefined || wire.accept !== undefined || wire.tenant !== undefined;
}

/** FNV-1a, 32 bits, of a tenant's name in UTF-8: the same name gives the same key in every client. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text)) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return hash;
}

/** A typed job's payload as bytes or text; throws E_INVALID for what is not a definition or not encodable. */
function typedBody<P, R>(definition: JobDefinition<P, R>, payload: P): Payload {
  if (!isJobDefinition(definition)) throw new TaskwireError(ErrorCode.INVALID, 'definition must be a job definition from defineJob()');
  return encodePayload(definition, payload);
}

/** A job id as the library hands them out: a whole number below 2^53. */
function checkJobId(id: number): number {
  if (!Number.isSafeInteger(id) || id < 1) throw new TaskwireError(ErrorCode.INVALID, `a job id is a whole number from 1, got ${String(id)}`);
  return id;
}

/** Creates a client; it connects at once. Submissions made before the connection is up are sent when it is. */
export function createClient(options?: ClientOptions): Client {
  return new Client(options);
}
