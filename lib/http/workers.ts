// HTTP workers, as in the REST design: any web service, in any language, becomes a worker by registering a URL
// (`POST /worker`); the scheduler sends it each task as `POST <url>` and takes the response as the result.
//
// To the core an HTTP worker is a worker like any other: its concurrency is its credits, its tasks have leases,
// timeouts, retries and requeue. What differs is liveness: there are no keepalives, so an endpoint is up while
// it answers, and marked down (its tasks requeued, as for a lost connection) when it refuses, times out or
// answers garbage. It is then probed with backoff and comes back as a new worker when it answers again.

import { ErrorCode } from '../errors.js';
import { FrameWriter } from '../protocol/frame.js';
import type { BodyRange } from '../protocol/index.js';
import type { ByteBudget } from '../transport/budget.js';
import type { CloseInfo, Connection } from '../transport/connection.js';
import type { RegisteredWorker } from './api.js';
import { HttpError, readJson, sendJson, type HttpServer } from './server.js';

/** A task as the scheduler hands it to an HTTP worker. */
export interface RemoteTask {
  /** The lease id and attempt, as a RESULT names them. */
  readonly id: number;
  readonly attempt: number;
  /** The job id (for a graph's node, the graph's). */
  readonly seq: number;
  readonly type: string;
  readonly body: Buffer;
  readonly inputs: readonly unknown[] | null;
}

/** What the scheduler shell calls on a worker that is not a connection. */
export interface RemoteTasks {
  send(task: RemoteTask): void;
  /** The lease was taken back (timed out, cancelled, its client left): abort it; `code` says why. */
  cancel(taskId: number, attempt: number, code: string): void;
}

/** The scheduler as an HTTP worker needs it: to join as a worker, report results, and leave. */
export interface RemoteWorkerHost {
  addRemoteWorker(name: string, conn: Connection, tasks: RemoteTasks, types: readonly string[], concurrency: number): RemotePeer;
}

export interface RemotePeer {
  readonly id: number;
  result(taskId: number, attempt: number, outcome: { ok: true; buf: Buffer; bodyStart: number; bodyEnd: number } | { ok: false; code: string; message: string }): void;
  /** Leaves: its running tasks are requeued. */
  lost(reason: string): void;
}

/** Probing a down endpoint starts this soon after it went down, and backs off to at most this. */
const PROBE_MIN_MS = 250;
const PROBE_MAX_MS = 30_000;
/** A probe (or a registration check) that gets no answer in this long counts as none. */
const PROBE_TIMEOUT_MS = 5000;

/**
 * The connection an HTTP worker stands on in the shell: there are no frames, so what the shell would write (its
 * hello, keepalives) goes nowhere, and closing it (the core dropping the worker) marks the endpoint down.
 */
class HttpWorkerConnection implements Connection {
  readonly transport = 'http';
  readonly pendingBytes = 0;
  readonly saturated = false;
  readonly readPaused = false;
  closed = false;
  maxPayload = 0;
  onFrame = (): void => {};
  onSkipped = (): void => {};
  onDrain = (): void => {};
  onRead = (): void => {};
  onClose: (info: CloseInfo) => void = () => {};
  private readonly sink = new FrameWriter();

  constructor(
    readonly remote: string,
    private readonly onClosed: (error: Error | undefined) => void,
  ) {}

  set skippable(_headOf: (cmd: number) => number) {}
  set frameTooLarge(_describe: (cmd: number, length: number, maxPayload: number) => Error) {}
  set budget(_budget: ByteBudget | null) {}

  frames(): FrameWriter {
    this.sink.clear();
    return this.sink;
  }

  send(): void {}
  pauseReading(): void {}
  resumeReading(): void {}

  close(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose({ error });
    this.onClosed(error);
  }
}

export interface HttpWorkerSpec {
  name: string;
  url: string;
  types: string[];
  concurrency: number;
}

/** One registered endpoint: up (a worker in the core) or down (probed until it answers). */
class HttpWorker implements RemoteTasks {
  readonly id: string;
  private peer: RemotePeer | null = null;
  private conn: HttpWorkerConnection | null = null;
  private readonly running = new Map<string, AbortController>();
  private probeDelay = PROBE_MIN_MS;
  private probeTimer: NodeJS.Timeout | null = null;
  private removed = false;
  /** Why it is down, while it is. */
  downReason: string | null = null;

  constructor(
    id: number,
    readonly spec: HttpWorkerSpec,
    private readonly host: RemoteWorkerHost,
  ) {
    this.id = `http-${id}`;
  }

  get up(): boolean {
    return this.peer !== null;
  }

  get coreId(): number | null {
    return this.peer?.id ?? null;
  }

  join(): void {
    if (this.removed) return;
    this.downReason = null;
    const conn = new HttpWorkerConnection(this.spec.url, (error) => {
      // The core dropped it (or the scheduler is closing): what it was sending is abandoned.
      if (this.conn === conn) this.down(error?.message ?? 'closed', false);
    });
    this.conn = conn;
    this.peer = this.host.addRemoteWorker(this.spec.name, conn, this, this.spec.types, this.spec.concurrency);
  }

  /** Deregistered (DELETE /worker/{id}) or the scheduler is closing: gone for good. */
  remove(reason: string): void {
    this.removed = true;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    if (this.peer) this.down(reason, true);
  }

  send(task: RemoteTask): void {
    const key = `${task.id}:${task.attempt}`;
    const controller = new AbortController();
    this.running.set(key, controller);
    const body: Record<string, unknown> = { job_id: task.seq, type: task.type, attempt: task.attempt };
    const text = utf8(task.body);
    if (text !== null) body.payload = text;
    else body.payload_base64 = task.body.toString('base64');
    if (task.inputs !== null) {
      body.inputs = (task.inputs as readonly BodyRange[]).map((r) => {
        const bytes = r.buf.subarray(r.bodyStart, r.bodyEnd);
        const s = utf8(bytes);
        return s !== null ? s : { base64: bytes.toString('base64') };
      });
    }
    const peer = this.peer!;
    void this.post(JSON.stringify(body), controller.signal).then(
      (outcome) => {
        if (this.running.get(key) !== controller || this.peer !== peer) return; // taken back meanwhile
        this.running.delete(key);
        if (outcome.down) return this.down(outcome.down, true);
        // An answer proves it up: the next time it goes down, probing starts again from the shortest delay.
        this.probeDelay = PROBE_MIN_MS;
        peer.result(task.id, task.attempt, outcome.result!);
      },
      () => {},
    );
  }

  cancel(taskId: number, attempt: number, code: string): void {
    const key = `${taskId}:${attempt}`;
    const controller = this.running.get(key);
    if (!controller) return;
    this.running.delete(key);
    controller.abort();
    // The endpoint did not answer within the task's timeout: it is as good as down. The core has requeued the
    // task already; the slot it holds is freed when the worker leaves.
    if (code === ErrorCode.TIMEOUT) this.down(`it did not answer within the task's timeout`, true);
    else this.peer?.result(taskId, attempt, { ok: false, code, message: 'cancelled' });
  }

  /** POSTs a task; the result, or why the endpoint must be marked down. */
  private async post(body: string, signal: AbortSignal): Promise<{ result?: Parameters<RemotePeer['result']>[2]; down?: string }> {
    let res: Response;
    try {
      res = await fetch(this.spec.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal });
    } catch (err) {
      if (signal.aborted) return {};
      return { down: `POST ${this.spec.url} failed: ${describe(err)}` };
    }
    let reply: unknown;
    let text = '';
    try {
      text = await res.text();
      reply = JSON.parse(text);
    } catch (err) {
      if (signal.aborted) return {};
      return { down: `POST ${this.spec.url} answered ${res.status} with a body that is not JSON (${text.slice(0, 60)})` };
    }
    const r = reply as { result?: unknown; result_base64?: unknown; error?: { code?: unknown; message?: unknown } } | null;
    if (res.status === 200 && r !== null && typeof r === 'object') {
      if (typeof r.result === 'string') return { result: bytesResult(Buffer.from(r.result)) };
      if (typeof r.result_base64 === 'string') return { result: bytesResult(Buffer.from(r.result_base64, 'base64')) };
    }
    if (res.status >= 400 && r?.error && typeof r.error.code === 'string' && typeof r.error.message === 'string') {
      return { result: { ok: false, code: r.error.code.slice(0, 64) || ErrorCode.HANDLER, message: r.error.message } };
    }
    return { down: `POST ${this.spec.url} answered ${res.status} without {"result": "..."} or {"error": {"code", "message"}}` };
  }

  /** Marks the endpoint down: it leaves the core (its tasks requeued) and is probed with backoff. */
  private down(reason: string, tellCore: boolean): void {
    const peer = this.peer;
    this.peer = null;
    const conn = this.conn;
    this.conn = null;
    for (const controller of this.running.values()) controller.abort();
    this.running.clear();
    if (peer && tellCore) {
      if (conn) conn.closed = true; // the core closes it: that must not come back here
      peer.lost(`HTTP worker ${this.spec.name} is down: ${reason}`);
    }
    this.downReason = reason;
    if (!this.removed) this.scheduleProbe();
  }

  private scheduleProbe(): void {
    if (this.probeTimer) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      void probe(this.spec.url).then((ok) => {
        if (this.removed || this.peer) return;
        // Doubled either way: an endpoint that answers probes but fails its tasks must not flap at the shortest delay.
        this.probeDelay = Math.min(this.probeDelay * 2, PROBE_MAX_MS);
        if (ok) return this.join();
        this.scheduleProbe();
      });
    }, this.probeDelay);
    this.probeTimer.unref();
  }
}

/** Whether the endpoint answers at all: any HTTP response to a GET, even a 405, means it is there. */
async function probe(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { method: 'GET', signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    await res.body?.cancel();
    return true;
  } catch {
    return false;
  }
}

function bytesResult(buf: Buffer): { ok: true; buf: Buffer; bodyStart: number; bodyEnd: number } {
  return { ok: true, buf, bodyStart: 0, bodyEnd: buf.length };
}

const decoder = new TextDecoder('utf-8', { fatal: true });
function utf8(bytes: Buffer): string | null {
  try {
    return decoder.decode(bytes);
  } catch {
    return null;
  }
}

function describe(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
}

/** The registered HTTP workers, and their endpoints. */
export class HttpWorkers {
  private readonly workers = new Map<string, HttpWorker>();
  private nextId = 1;

  constructor(
    private readonly host: RemoteWorkerHost,
    private readonly maxConcurrency: number,
  ) {}

  list(): RegisteredWorker[] {
    return [...this.workers.values()].map((w) => ({ id: w.id, name: w.spec.name, url: w.spec.url, types: w.spec.types, concurrency: w.spec.concurrency, up: w.up, coreId: w.coreId, down: w.downReason }));
  }

  /** Whether a core worker id is one of these (for GET /workers, which lists them apart). */
  has(coreId: number): boolean {
    for (const w of this.workers.values()) if (w.coreId === coreId) return true;
    return false;
  }

  register(spec: HttpWorkerSpec): string {
    const worker = new HttpWorker(this.nextId++, spec, this.host);
    this.workers.set(worker.id, worker);
    worker.join();
    return worker.id;
  }

  remove(id: string): boolean {
    const worker = this.workers.get(id);
    if (!worker) return false;
    this.workers.delete(id);
    worker.remove('deregistered');
    return true;
  }

  close(): void {
    for (const worker of this.workers.values()) worker.remove('the scheduler is shutting down');
    this.workers.clear();
  }

  /** POST /worker, DELETE /worker/{worker_id}. */
  addRoutes(http: HttpServer, maxBodyBytes: number): void {
    http.route('POST', '/worker', async ({ req, res }) => {
      const body = await readJson(req, maxBodyBytes);
      const spec = this.spec(body);
      sendJson(res, 200, { worker_id: this.register(spec) });
    });
    http.route('DELETE', '/worker/{id}', ({ res, params }) => {
      if (!this.remove(params.id!)) throw new HttpError(404, 'E_NO_SUCH_WORKER', `no HTTP worker ${params.id}`);
      sendJson(res, 200, { worker_id: params.id, removed: true });
    });
  }

  private spec(body: Record<string, unknown>): HttpWorkerSpec {
    const invalid = (message: string): never => {
      throw new HttpError(400, ErrorCode.INVALID, message);
    };
    const { worker_name: name, url, types, concurrency = 1 } = body as { worker_name?: unknown; url?: unknown; types?: unknown; concurrency?: unknown };
    if (typeof name !== 'string' || name.length === 0 || name.length > 200) invalid('"worker_name" must be a non-empty string');
    if (typeof url !== 'string') return invalid('"url" must be the worker\'s compute URL, e.g. "http://host:port/compute"');
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return invalid(`"url" is not a URL: ${JSON.stringify(url)}`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') invalid('"url" must be http:// or https://');
    if (!Array.isArray(types) || types.length === 0 || !types.every((t) => typeof t === 'string' && t.length > 0 && Buffer.byteLength(t) <= 255)) {
      invalid('"types" must be a non-empty array of job type names (1 to 255 bytes each)');
    }
    if (typeof concurrency !== 'number' || !Number.isInteger(concurrency) || concurrency < 1 || concurrency > this.maxConcurrency) {
      invalid(`"concurrency" must be a whole number from 1 to ${this.maxConcurrency}`);
    }
    return { name: name as string, url, types: [...new Set(types as string[])], concurrency: concurrency as number };
  }
}

