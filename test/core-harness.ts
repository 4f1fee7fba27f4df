// The recording harness for the core's unit tests: a CoreOutput that records every call, peer handles as plain
// strings ('w1', 'c1'), and bodies placed inside larger buffers as they arrive from sockets.

import type { BodyRange } from '../lib/protocol/index.js';
import { TaskwireError } from '../lib/errors.js';
import {
  SchedulerCore,
  type ClientRecord,
  type CoreOptions,
  type CoreOutput,
  type CoreStats,
  type OutcomeInput,
  type PeerRecord,
  type SubmitOptions,
  type Task,
  type WorkerRecord,
} from '../lib/scheduler/core.js';

/**
 * A task's body as the core receives it: a view of the bytes it arrived in, here between other bytes as in a
 * socket read, so a queue that lost track of the view's offset would send the wrong bytes.
 */
export function view(body: string | Buffer): Buffer {
  const inner = Buffer.from(body);
  return Buffer.concat([Buffer.from('<<<'), inner, Buffer.from('>>')]).subarray(3, 3 + inner.length);
}

/** A result as the shell passes it through the core (opaque to it): here a range of a RESULT frame's buffer. */
export function bytes(body: string | Buffer): BodyRange {
  const inner = Buffer.from(body);
  const buf = Buffer.concat([Buffer.from('<<<'), inner, Buffer.from('>>')]);
  return { buf, bodyStart: 3, bodyEnd: 3 + inner.length };
}

/** The bytes of a body range, as a Buffer. */
export function bodyOf(range: BodyRange): Buffer {
  return range.buf.subarray(range.bodyStart, range.bodyEnd);
}

/** The core as the tests drive it: results are ranges, as in the scheduler. */
export type Outcome = OutcomeInput<BodyRange>;

export type H = string;

// ---- recording harness ---------------------------------------------------------------------------------------

export interface Sent {
  worker: H;
  taskId: number;
  attempt: number;
  type: string;
  body: string;
  client: H | null;
  requestId: number;
  /** A graph node's inputs, as text; null for a task without. */
  inputs: string[] | null;
}

export interface Settled {
  client: H;
  requestId: number;
  ok: boolean;
  body: string;
  code: string;
  message: string;
}

export interface Closed {
  peer: H;
  error: TaskwireError;
}

export interface Requeued {
  body: string;
  taskId: number;
  attempt: number;
  from: H;
  reason: string;
}

export interface Cancel {
  worker: H;
  taskId: number;
  attempt: number;
  code: string;
  message: string;
}

export interface Left {
  peer: H;
  reason: string;
  requeued: number;
}

export class Harness {
  readonly core: SchedulerCore<H, BodyRange>;
  /** sendTask calls, in order. */
  readonly sent: Sent[] = [];
  /** sendCompleted and sendFailed calls, in order. */
  readonly settled: Settled[] = [];
  readonly keepalives: H[] = [];
  readonly closed: Closed[] = [];
  readonly requeued: Requeued[] = [];
  /** sendCancel calls, in order. */
  readonly cancels: Cancel[] = [];
  readonly left: Left[] = [];
  /** Bodies of taskQueued notifications. */
  readonly queuedEvents: string[] = [];
  readonly dispatchedEvents: string[] = [];
  readonly completedEvents: string[] = [];
  readonly failedEvents: { body: string; code: string }[] = [];
  /** sendProgress calls, in order. */
  readonly progress: { client: H; requestId: number; jobId: number; value: number; message: string }[] = [];
  /** Workers whose connection is taken to be full: sendTask answers false for them. */
  readonly saturated = new Set<H>();
  private readonly clients = new Map<H, ClientRecord<H>>();
  private readonly workers = new Map<H, WorkerRecord<H>>();

  constructor(options?: CoreOptions) {
    const output: CoreOutput<H, BodyRange> = {
      sendTask: (worker, task) => {
        this.sent.push({
          worker: worker.handle,
          taskId: task.id,
          attempt: task.attempt,
          type: task.type,
          body: task.body.toString(),
          client: task.owner?.handle ?? null,
          requestId: task.requestId,
          inputs: task.inputs === null ? null : task.inputs.map((r) => bodyOf(r as BodyRange).toString()),
        });
        return !this.saturated.has(worker.handle);
      },
      sendCancel: (worker, taskId, attempt, code, message) => {
        this.cancels.push({ worker: worker.handle, taskId, attempt, code, message });
      },
      sendCompleted: (client, requestId, body) => {
        this.settled.push({ client: client.handle, requestId, ok: true, body: bodyOf(body).toString(), code: '', message: '' });
      },
      sendFailed: (client, requestId, code, message) => {
        this.settled.push({ client: client.handle, requestId, ok: false, body: '', code, message });
      },
      sendProgress: (client, requestId, jobId, value, message) => {
        this.progress.push({ client: client.handle, requestId, jobId, value, message });
      },
      retainResult: (result) => {
        const copy = Buffer.from(bodyOf(result));
        return { result: { buf: copy, bodyStart: 0, bodyEnd: copy.length }, bytes: copy.length };
      },
      sendKeepalive: (peer) => {
        this.keepalives.push(peer.handle);
      },
      closePeer: (peer, error) => {
        this.closed.push({ peer: peer.handle, error });
      },
      taskQueued: (_taskId, _type, _client, _requestId, body) => {
        this.queuedEvents.push(body.toString());
      },
      taskDispatched: (task) => {
        this.dispatchedEvents.push(task.body.toString());
      },
      taskCompleted: (task) => {
        this.completedEvents.push(task.body.toString());
      },
      taskFailed: (task, code) => {
        this.failedEvents.push({ body: task.body.toString(), code });
      },
      taskRequeued: (task, worker, reason) => {
        this.requeued.push({ body: task.body.toString(), taskId: task.id, attempt: task.attempt, from: worker.handle, reason });
      },
      peerLeft: (peer, reason, requeued) => {
        this.left.push({ peer: peer.handle, reason, requeued });
      },
    };
    this.core = new SchedulerCore<H, BodyRange>(output, options);
  }

  client(handle: H): ClientRecord<H> {
    const record = this.core.addClient(handle, `client ${handle}`);
    this.clients.set(handle, record);
    return record;
  }

  /** Adds a worker; announces it with ready() when a concurrency is given. */
  worker(handle: H, concurrency?: number, types: readonly string[] = ['sha256']): WorkerRecord<H> {
    const record = this.core.addWorker(handle, `worker ${handle}`);
    this.workers.set(handle, record);
    if (concurrency !== undefined) this.core.ready(record, concurrency, types);
    return record;
  }

  c(handle: H): ClientRecord<H> {
    const record = this.clients.get(handle);
    if (!record) throw new Error(`no client ${handle}`);
    return record;
  }

  w(handle: H): WorkerRecord<H> {
    const record = this.workers.get(handle);
    if (!record) throw new Error(`no worker ${handle}`);
    return record;
  }

  ready(worker: H, concurrency: number, types: readonly string[] = ['sha256']): void {
    this.core.ready(this.w(worker), concurrency, types);
  }

  /** Submits a job; returns its id (0 if refused). */
  submit(client: H, requestId: number, type: string, body: string, options?: SubmitOptions): number {
    return this.core.submit(this.c(client), requestId, type, view(body), options);
  }

  /** Submits a graph job (root last); returns its id (0 if refused). */
  graph(client: H, requestId: number, nodes: readonly { type: string; body: string; inputs?: number[] }[], options?: SubmitOptions): number {
    const specs = nodes.map((n) => ({ type: n.type, body: view(n.body), inputs: n.inputs ?? [] }));
    return this.core.submitGraph(this.c(client), requestId, specs, options);
  }

  /** Advances the core's clock. */
  tick(now: number): void {
    this.core.tick(now);
  }

  /** The core's record of the client's unsettled request. */
  task(client: H, requestId: number): Task<H> | undefined {
    return this.core.tasksOf(this.c(client)).find((task) => task.requestId === requestId);
  }

  /** Reports success for a dispatched task, with body 'done:<task body>' unless told otherwise. */
  finish(d: Sent, body = `done:${d.body}`): TaskwireError | null {
    return this.core.result(this.w(d.worker), d.taskId, d.attempt, { ok: true, ...bytes(body) });
  }

  failTask(d: Sent, code: string, message: string): TaskwireError | null {
    return this.core.result(this.w(d.worker), d.taskId, d.attempt, { ok: false, code, message });
  }

  lost(handle: H, reason = 'connection closed'): void {
    const peer: PeerRecord<H> | undefined = this.clients.get(handle) ?? this.workers.get(handle);
    if (!peer) throw new Error(`no peer ${handle}`);
    this.core.lost(peer, reason);
  }

  /** A result for a lease (task id, attempt) the worker may no longer hold. */
  answer(worker: H, taskId: number, attempt: number, outcome: Outcome = { ok: true, ...bytes('late') }): TaskwireError | null {
    return this.core.result(this.w(worker), taskId, attempt, outcome);
  }

  /** Slots of a worker taken (running tasks plus revoked leases not yet answered). */
  busy(worker: H): number {
    const w = this.w(worker);
    return w.running.size + w.revoked.size;
  }

  /** The last dispatch of the task with this body. */
  find(body: string): Sent {
    for (let i = this.sent.length - 1; i >= 0; i--) if (this.sent[i]!.body === body) return this.sent[i]!;
    throw new Error(`task ${body} was never dispatched`);
  }

  bodies(worker?: H): string[] {
    return this.sent.filter((s) => worker === undefined || s.worker === worker).map((s) => s.body);
  }

  stats(): CoreStats {
    return this.core.stats();
  }

  /** Total number of recorded output calls, to prove that an operation did nothing. */
  get calls(): number {
    return (
      this.sent.length +
      this.settled.length +
      this.keepalives.length +
      this.closed.length +
      this.requeued.length +
      this.cancels.length +
      this.left.length +
      this.queuedEvents.length +
      this.dispatchedEvents.length +
      this.completedEvents.length +
      this.failedEvents.length +
      this.progress.length
    );
  }
}


export function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}
