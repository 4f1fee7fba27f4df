// A client: submits tasks over one pipelined connection and settles each promise when its result comes back.

import { EventEmitter } from 'node:events';
import os from 'node:os';
import { ErrorCode, TaskFailedError, TaskwireError } from '../errors.js';
import { IdTable } from '../id-table.js';
import { checkInteger, checkString, stripUndefined } from '../options.js';
import { Cmd, Role, decodeCompleted, decodeFailed, submitPayloadLength, taskPayloadLength, writeSubmit } from '../protocol/index.js';
import { DEFAULT_MAX_PAYLOAD, FrameWriter, MAX_PAYLOAD_LIMIT } from '../protocol/frame.js';
import { Session } from '../transport/session.js';

export interface ClientOptions {
  /** Scheduler host. Default '127.0.0.1'. */
  host?: string;
  /** Scheduler port. Default 9001. */
  port?: number;
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

/** Per-task options; absent ones take the scheduler's defaults. */
export interface SubmitOptions {
  /** ms the task may run on a worker before it is taken back and requeued (u32). Default: the scheduler's. */
  timeoutMs?: number;
  /** Times a handler failure is retried, with exponential backoff (0-255). Default 0: fail at once. */
  retries?: number;
  /** First retry delay in ms, doubled per retry (u32). Default: the scheduler's (1000). */
  backoffMs?: number;
}

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

/** A submitted task's settle functions; `raw` says whether it resolves with bytes or text. */
interface Pending {
  resolve: (value: never) => void;
  reject: (error: Error) => void;
  raw: boolean;
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
    const o = { ...CLIENT_DEFAULTS, ...stripUndefined(options) };
    this.host = checkString('host', o.host);
    this.port = checkInteger('port', o.port, 1, 65535);
    this.maxPayload = checkInteger('maxPayload', o.maxPayload, 64, MAX_PAYLOAD_LIMIT);
    this.name = checkString('name', options.name ?? `${os.hostname()}:${process.pid}`);
    const token = options.token === undefined ? undefined : checkString('token', options.token);
    const { host, port, name, maxPayload } = this;
    this.opening = Session.open({ host, port, role: Role.CLIENT, name, maxPayload, token });
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

  /** Runs a task and resolves with its result as UTF-8 text. Rejects with a TaskwireError carrying a `code`. */
  submit(type: string, payload: Payload, options?: SubmitOptions): Promise<string> {
    return this.enqueue(type, payload, false, options);
  }

  /** Like submit(), but resolves with the result's raw bytes. */
  submitBuffer(type: string, payload: Payload, options?: SubmitOptions): Promise<Buffer> {
    return this.enqueue(type, payload, true, options);
  }

  /** Closes the connection; tasks still pending are rejected with E_CLOSED. */
  async close(): Promise<void> {
    if (!this.ended) this.end(new TaskwireError(ErrorCode.CLOSED, 'the client was closed'));
    await this.opening.catch(() => {});
  }

  private enqueue<T>(type: string, payload: Payload, raw: boolean, options: SubmitOptions | undefined): Promise<T> {
    if (this.ended) return Promise.reject(this.ended);
    const invalid = options && checkSubmitOptions(options);
    if (invalid) return Promise.reject(new TaskwireError(ErrorCode.INVALID, invalid));
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
      const size = Math.max(submitPayloadLength(type, payload, options), taskPayloadLength(type, payload));
      if (size > limit) {
        const whose = this.session?.schedulerMaxPayload === undefined ? 'maxPayload' : "the scheduler's maxPayload";
        return Promise.reject(new TaskwireError(ErrorCode.TOO_LARGE, `a task of ${size} bytes exceeds ${whose} (${limit})`));
      }
    }
    const id = this.allocateId();
    writeSubmit(this.outbox ?? this.session!.frames(), id, type, payload, options);
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: never) => void, reject, raw });
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
      this.take(requestId).reject(new TaskFailedError(code, message));
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

const SUBMIT_LIMITS = { timeoutMs: 0xffff_ffff, retries: 255, backoffMs: 0xffff_ffff } as const;

/** Returns what is wrong with per-task options, or null. */
function checkSubmitOptions(options: SubmitOptions): string | null {
  for (const [key, value] of Object.entries(options)) {
    const max = SUBMIT_LIMITS[key as keyof SubmitOptions];
    if (max === undefined) return `unknown submit option '${key}'`;
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
      return `options.${key} must be an integer from 0 to ${max}, got ${String(value)}`;
    }
  }
  return null;
}

/** Creates a client; it connects at once. Submissions made before the connection is up are sent when it is. */
export function createClient(options?: ClientOptions): Client {
  return new Client(options);
}
