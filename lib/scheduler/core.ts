// The scheduling brain: queues, credits, dispatch, leases, timeouts, retries, requeue and liveness, with no I/O.
//
// The core owns every decision and no socket, timer or clock. The I/O shell feeds it events (a peer joined, a
// task was submitted, a result arrived, a peer was lost, a heartbeat interval passed, tick(now)) and the core
// answers through the CoreOutput it was given. Calls into an output object rather than returned action arrays
// keep the hot path free of per-task allocations, and a test records the calls just as easily.
//
// Peer "handles" (H) are opaque to the core: the shell passes its connection objects, tests pass anything. So are
// results (R): the core passes a worker's result on to the task's client without looking at it. A task's body is
// a Buffer whose length the byte budgets count; the core never reads its bytes, and imports nothing of the
// protocol.
//
// No operation costs more than its own work: requeueing N tasks is O(N log N), a new job type O(1), and nothing
// scans the queue or every worker on the way.

import { ErrorCode, TaskwireError } from '../errors.js';
import { IdTable } from '../id-table.js';
import { LeastLoaded, RoundRobin, type Strategy } from './balance.js';
import { detachBody } from './queue.js';
import {
  TaskState,
  newTask,
  type ClientRecord,
  type Lane,
  type PeerRecord,
  type Queue,
  type Settings,
  type Slot,
  type Task,
  type WorkerRecord,
} from './records.js';
import { TimerWheel } from './timers.js';
import { TypeQueue } from './type-queue.js';

export { STRATEGIES, type Strategy } from './balance.js';
export { TaskState } from './records.js';
export type { ClientRecord, PeerRecord, Task, WorkerRecord } from './records.js';

export interface CoreOutput<H, R = unknown> {
  /**
   * Send a task to a worker. Returns false when the worker's connection is not draining what it was sent: the
   * core then sends it nothing more (its credits stay owed, its tasks wait or go to other workers) until
   * writable(worker).
   */
  sendTask(worker: WorkerRecord<H>, task: Task<H>): boolean;
  /** Tell a worker to abort a task it runs; it still answers for it, which returns the slot. */
  sendCancel?(worker: WorkerRecord<H>, taskId: number, attempt: number, code: string, message: string): void;
  /** `result` is the worker's, as result() was given it: valid during the call only. */
  sendCompleted(client: ClientRecord<H>, requestId: number, result: R): void;
  sendFailed(client: ClientRecord<H>, requestId: number, code: string, message: string): void;
  sendKeepalive(peer: PeerRecord<H>): void;
  /** Close the peer's connection, telling it why. The core has already forgotten the peer. */
  closePeer(peer: PeerRecord<H>, error: TaskwireError): void;
  // Notifications for observers; the shell turns them into public events.
  taskQueued?(taskId: number, type: string, client: ClientRecord<H>, requestId: number, body: Buffer): void;
  taskDispatched?(task: Task<H>, worker: WorkerRecord<H>): void;
  taskCompleted?(task: Task<H>, worker: WorkerRecord<H>): void;
  taskFailed?(task: Task<H>, code: string, message: string): void;
  taskRequeued?(task: Task<H>, worker: WorkerRecord<H>, reason: string): void;
  peerLeft?(peer: PeerRecord<H>, reason: string, requeued: number): void;
}

/** Per-task options a client may send with SUBMIT; 0 or absent means the scheduler's default. */
export interface SubmitOptions {
  timeoutMs?: number;
  retries?: number;
  backoffMs?: number;
}

export interface CoreOptions {
  /** Keepalive intervals a peer may stay silent before it is dropped. Default 3. */
  deadAfterTicks?: number;
  /**
   * How many times per keepalive interval heartbeat() is called to check silence (keepalives go out on one call in
   * this many): a silent peer is dropped between deadAfterTicks and deadAfterTicks + 1/checksPerInterval
   * intervals after its last frame. Default 1.
   */
  checksPerInterval?: number;
  /** Default task timeout in ms; 0 for none. Default 300000 (5 minutes). */
  timeoutMs?: number;
  /** Infrastructure faults (worker lost, timeout) a task survives before it fails with E_ATTEMPTS. Default 3. */
  maxAttempts?: number;
  /** First retry delay after a handler failure, doubled per retry. Default 1000. */
  backoffMs?: number;
  /** Tasks queued (waiting for a worker) at most; more are refused with E_QUEUE_FULL. Default 10,000,000. */
  maxQueued?: number;
  /** Bytes of the bodies of queued tasks at most; more are refused with E_QUEUE_FULL. Default 1 GiB. */
  maxQueuedBytes?: number;
  /** Unsettled tasks per client at most; more are refused with E_TOO_MANY_PENDING. Default 1,048,576. */
  maxPendingPerClient?: number;
  /** Bytes of the bodies of a client's unsettled tasks at most; more are refused with E_TOO_MANY_PENDING. Default 256 MiB. */
  maxPendingBytesPerClient?: number;
  /** The largest concurrency a worker may announce; a larger one is capped to it. Default 65,536. */
  maxConcurrency?: number;
  /** Failed tasks remembered for inspection. Default 1000. */
  deadLetterLimit?: number;
  /**
   * Which of the workers with a free slot gets a new task while none waits: 'round-robin' (turns, one task each)
   * or 'least-loaded' (the smallest share of its concurrency in use). Default 'round-robin'.
   */
  strategy?: Strategy;
}

/** Handler-failure retries a task may ask for; more are treated as this many. */
export const MAX_RETRIES = 255;

export const CORE_DEFAULTS = {
  deadAfterTicks: 3,
  checksPerInterval: 1,
  timeoutMs: 300_000,
  maxAttempts: 3,
  backoffMs: 1000,
  maxQueued: 10_000_000,
  maxQueuedBytes: 1024 * 1024 * 1024,
  maxPendingPerClient: 1_048_576,
  maxPendingBytesPerClient: 256 * 1024 * 1024,
  maxConcurrency: 65_536,
  deadLetterLimit: 1000,
  strategy: 'round-robin',
} as const satisfies Required<CoreOptions>;

/** A task that failed for good, kept for inspection in a bounded list. */
export interface DeadLetter {
  taskId: number;
  type: string;
  code: string;
  message: string;
  /** Dispatches made, retries included. */
  attempts: number;
  payloadBytes: number;
  /** The core's clock (ms) when it failed. */
  failedAt: number;
}

export interface CoreStats {
  /** Tasks waiting for a worker. */
  queued: number;
  /** Bytes of their bodies. */
  queuedBytes: number;
  /** Tasks running on a worker. */
  inFlight: number;
  /** Tasks waiting out a retry backoff. */
  delayed: number;
  workers: number;
  clients: number;
  submitted: number;
  dispatched: number;
  completed: number;
  failed: number;
  /** Tasks put back in the queue after a worker was lost or a task timed out. */
  requeued: number;
  /** Handler failures retried. */
  retried: number;
  timedOut: number;
  /** Submissions refused (queue full, too many pending, shutting down). */
  rejected: number;
  /** Results that arrived for a lease already taken back (timed out, client gone): dropped. */
  late: number;
  /** Results dropped because their client had left. */
  discarded: number;
  /** Failed tasks remembered in deadLetters() (bounded by deadLetterLimit). */
  deadLetters: number;
}

/** A worker's report on a task: a result of its own shape (R), passed on as it is, or a failure. */
export type OutcomeInput<R> = ({ ok: true } & R) | { ok: false; code: string; message: string };

export class SchedulerCore<H, R = unknown> {
  private readonly out: CoreOutput<H, R>;
  private readonly config: Required<CoreOptions>;
  private readonly queues = new Map<string, Queue<H>>();
  private readonly clients = new Set<ClientRecord<H>>();
  private readonly workers = new Set<WorkerRecord<H>>();
  /** Running tasks by timeout, so those overdue are found without scanning. */
  private readonly deadlines = new TimerWheel<Task<H>>();
  /** Tasks waiting out a retry backoff. */
  private readonly backoffs = new TimerWheel<Task<H>>();
  private readonly dead: DeadLetter[] = [];
  private readonly defaults: Settings;
  private nextPeerId = 1;
  private nextSeq = 1;
  private queued = 0;
  private queuedBytes = 0;
  private inFlight = 0;
  private draining = false;
  private readonly counters = {
    submitted: 0,
    dispatched: 0,
    completed: 0,
    failed: 0,
    requeued: 0,
    retried: 0,
    timedOut: 0,
    rejected: 0,
    late: 0,
    discarded: 0,
  };
  /**
   * The core's clock (ms): the latest of tick(now) and clock(now). Deadlines and retry delays are set from it, so
   * the shell tells it the time before it feeds the core each read's frames; then a deadline is never earlier
   * than the moment the frame that caused the dispatch was read, plus the timeout.
   */
  now = 0;

  constructor(output: CoreOutput<H, R>, options: CoreOptions = {}) {
    this.out = output;
    this.config = { ...CORE_DEFAULTS, ...options };
    this.defaults = { timeoutMs: this.config.timeoutMs, retries: 0, backoffMs: this.config.backoffMs };
  }

  stats(): CoreStats {
    return {
      queued: this.queued,
      queuedBytes: this.queuedBytes,
      inFlight: this.inFlight,
      delayed: this.backoffs.size,
      workers: this.workers.size,
      clients: this.clients.size,
      ...this.counters,
      deadLetters: this.dead.length,
    };
  }

  /** The most recent failures, oldest first. */
  deadLetters(): DeadLetter[] {
    return this.dead.map((entry) => ({ ...entry }));
  }

  /** Tasks not yet settled: queued, running or waiting for a retry. */
  get unsettled(): number {
    return this.queued + this.inFlight + this.backoffs.size;
  }

  /**
   * Every unsettled task of a client, for tests and debugging: it walks every queued row, so never call it on a
   * hot path. Tasks still queued as rows come back as copies.
   */
  tasksOf(client: ClientRecord<H>): Task<H>[] {
    const out: Task<H>[] = [];
    for (let task = client.firstTask; task; task = task.nextOfClient) out.push(task);
    for (const queue of this.queues.values()) {
      queue.rows.forEach((lane, requestId, seq, body) => {
        if (lane.client === client) out.push(newTask(seq, queue.type, body(), requestId, client, this.defaults));
      });
    }
    return out;
  }

  /** Number of per-type queues alive; exposed for leak checks in tests. */
  get queueCount(): number {
    return this.queues.size;
  }

  // ---- peers -------------------------------------------------------------------------------------------------

  addClient(handle: H, name: string): ClientRecord<H> {
    const client: ClientRecord<H> = {
      kind: 'client',
      id: this.nextPeerId++,
      name,
      handle,
      active: true,
      missedTicks: 0,
      pending: 0,
      pendingBytes: 0,
      firstTask: null,
      lastTask: null,
      lanes: new Map(),
      lastLane: null,
    };
    this.clients.add(client);
    return client;
  }

  /** `mayBlock`: whether the worker's keepalives may wait for its handlers (see heartbeat()). Default true. */
  addWorker(handle: H, name: string, mayBlock = true): WorkerRecord<H> {
    const worker: WorkerRecord<H> = {
      kind: 'worker',
      id: this.nextPeerId++,
      name,
      handle,
      active: true,
      missedTicks: 0,
      concurrency: 0,
      types: [],
      running: new IdTable(),
      untimed: 0,
      revoked: new Map(),
      blocked: false,
      mayBlock,
      slots: [],
    };
    this.workers.add(worker);
    return worker;
  }

  /** Any frame from a peer proves it alive. */
  seen(peer: PeerRecord<H>): void {
    peer.active = true;
  }

  /**
   * A worker declares the job types it runs and its concurrency. Sent once after the handshake and again to
   * change either; concurrency 0 means "send me nothing more" (a worker shutting down). A concurrency above
   * maxConcurrency is capped to it.
   */
  ready(worker: WorkerRecord<H>, concurrency: number, types: readonly string[]): void {
    if (!this.workers.has(worker)) return;
    const touched = new Set<Queue<H>>();
    if (!sameTypes(worker.types, types)) {
      this.releaseTypes(worker, touched);
      worker.types = [...new Set(types)];
      worker.slots = worker.types.map((type) => {
        const queue = this.queueFor(type);
        queue.workers++;
        if (worker.concurrency > 0) queue.active++;
        return { worker, queue, prev: null, next: null, list: null };
      });
    }
    const capped = Math.min(concurrency, this.config.maxConcurrency);
    if (capped > 0 !== worker.concurrency > 0) {
      for (const slot of worker.slots) {
        slot.queue.active += capped > 0 ? 1 : -1;
        if (capped === 0 && slot.queue.avoidsAny) touched.add(slot.queue);
      }
    }
    worker.concurrency = capped;
    this.fill(worker);
    this.refill(touched);
  }

  /** A worker's connection drains again after sendTask() returned false: it takes tasks again. */
  writable(worker: WorkerRecord<H>): void {
    if (!this.workers.has(worker) || !worker.blocked) return;
    worker.blocked = false;
    this.fill(worker);
  }

  /** A peer is gone (connection closed or dropped by the core). Idempotent. */
  lost(peer: PeerRecord<H>, reason: string): void {
    if (peer.kind === 'worker') this.workerLost(peer, reason);
    else this.clientLost(peer, reason);
  }

  private workerLost(worker: WorkerRecord<H>, reason: string): void {
    if (!this.workers.delete(worker)) return;
    const held = [...worker.running.values()].sort((a, b) => a.seq - b.seq);
    worker.running.clear();
    worker.revoked.clear();
    const touched = new Set<Queue<H>>();
    this.releaseTypes(worker, touched);
    let requeued = 0;
    for (const task of held) {
      this.release(task, worker);
      const queue = this.fault(task, worker, `worker ${worker.name} was lost: ${reason}`, false);
      if (queue) {
        touched.add(queue);
        requeued++;
      }
    }
    this.out.peerLeft?.(worker, reason, requeued);
    this.refill(touched);
  }

  private clientLost(client: ClientRecord<H>, reason: string, cancelMessage = 'the task was cancelled: its client disconnected'): void {
    if (!this.clients.delete(client)) return;
    const touched = new Set<Queue<H>>();
    for (let task = client.firstTask; task; task = task.nextOfClient) {
      task.client = null;
      // Nothing runs for nobody: queued and delayed tasks go now; running ones are withdrawn from their worker.
      if (task.state === TaskState.QUEUED) {
        const queue = this.queues.get(task.type)!;
        queue.remove(task);
        this.queued--;
        this.queuedBytes -= task.body.length;
        touched.add(queue);
      } else if (task.state === TaskState.DELAYED) {
        this.backoffs.remove(task);
      } else if (task.state === TaskState.RUNNING) {
        this.revoke(task, ErrorCode.CANCELLED, cancelMessage);
      }
      task.state = TaskState.DONE;
    }
    // Its queued rows are written off by lane, in O(job types) rather than O(tasks).
    for (const lane of client.lanes.values()) {
      lane.client = null;
      lane.queue.live -= lane.queued;
      lane.queue.dead += lane.queued;
      this.queued -= lane.queued;
      this.queuedBytes -= lane.bytes;
      lane.queued = lane.bytes = 0;
      touched.add(lane.queue);
    }
    client.firstTask = client.lastTask = null;
    client.lanes.clear();
    client.lastLane = null;
    client.pending = client.pendingBytes = 0;
    for (const queue of touched) {
      queue.sweep();
      this.dropQueueIfIdle(queue.type);
    }
    this.out.peerLeft?.(client, reason, 0);
  }

  /**
   * A check of silence (checksPerInterval of them per keepalive interval): drop peers silent for deadAfterTicks
   * intervals; with `sendKeepalives`, send the others a keepalive.
   *
   * A worker that said its handlers may block its event loop (mayBlock) is not dropped for silence while it runs
   * tasks: a CPU-bound handler blocks the keepalives too, and a healthy worker must not look dead and have its
   * work requeued again and again. Its tasks' timeouts bound the wait instead; once they are taken back, silence
   * counts again. A task without a timeout gives no such bound, so it does not excuse silence. A worker whose
   * keepalives never wait for a handler (handlers in threads, or bounded ones) gets no excuse: silent is dead.
   */
  heartbeat(sendKeepalives = true): void {
    const { deadAfterTicks, checksPerInterval } = this.config;
    const deadAfter = deadAfterTicks * checksPerInterval;
    for (const peers of [this.clients, this.workers] as Set<PeerRecord<H>>[]) {
      for (const peer of peers) {
        if (peer.active || (peer.kind === 'worker' && peer.mayBlock && peer.running.size > 0 && peer.untimed === 0)) {
          peer.active = false;
          peer.missedTicks = 0;
        } else if (++peer.missedTicks >= deadAfter) {
          const reason = `no frame for ${peer.missedTicks / checksPerInterval} keepalive intervals`;
          this.lost(peer, reason);
          this.out.closePeer(peer, new TaskwireError(ErrorCode.TIMEOUT, reason));
          continue;
        }
        if (sendKeepalives) this.out.sendKeepalive(peer);
      }
    }
  }

  /** Sets the clock without acting on it: what falls due is handled at the next tick(). Never moves it back. */
  clock(now: number): void {
    if (now > this.now) this.now = now;
  }

  /**
   * Advances the clock and acts on it: running tasks past their timeout are taken back, retries whose backoff ended
   * are queued. A deadline is due once `now` has reached it: never before, and at most one tick after.
   */
  tick(now: number): void {
    this.clock(now);
    now = this.now;
    if (this.deadlines.size > 0) {
      // Due tasks come out in no order; all are requeued before any worker is refilled (the queue orders them by
      // submission), and handled oldest first so their cancels and events come in that order.
      const due = this.deadlines.popDue(now).sort((a, b) => a.seq - b.seq);
      const touched = new Set<Queue<H>>();
      for (const task of due) {
        const worker = task.worker!;
        this.counters.timedOut++;
        const message = `timed out after ${task.timeoutMs} ms on worker ${worker.name}`;
        this.revoke(task, ErrorCode.TIMEOUT, message);
        const queue = this.fault(task, worker, message, true);
        if (queue) touched.add(queue);
      }
      this.refill(touched);
    }
    if (this.backoffs.size > 0) {
      const touched = new Set<Queue<H>>();
      for (const task of this.backoffs.popDue(now).sort((a, b) => a.seq - b.seq)) touched.add(this.requeue(task, task.avoid));
      this.refill(touched);
    }
  }

  /** From now on new submissions are refused with E_SHUTDOWN; queued and running tasks carry on. */
  drain(): void {
    this.draining = true;
  }

  /** Fails every client's unsettled tasks with E_SHUTDOWN and forgets all peers; the end of a scheduler's close(). */
  shutdown(message: string): void {
    this.draining = true;
    const failed = (task: Task<H>, client: ClientRecord<H>): void => {
      this.counters.failed++;
      this.out.sendFailed(client, task.requestId, ErrorCode.SHUTDOWN, message);
      this.out.taskFailed?.(task, ErrorCode.SHUTDOWN, message);
    };
    for (const queue of this.queues.values()) {
      queue.rows.forEach((lane, requestId, seq, body) => {
        if (lane.client) failed(newTask(seq, queue.type, body(), requestId, lane.client, this.defaults), lane.client);
      });
    }
    for (const client of [...this.clients]) {
      for (let task = client.firstTask; task; task = task.nextOfClient) failed(task, client);
      this.clientLost(client, message, `the task was cancelled: ${message}`);
    }
    for (const worker of [...this.workers]) this.workerLost(worker, message);
  }

  // ---- tasks -------------------------------------------------------------------------------------------------

  /**
   * Dispatches a task, or queues it as a row when no worker of its type has a free slot. A refusal under a limit
   * is answered to the client as a failed task.
   *
   * Request ids are the client's to keep unique among its unsettled tasks; they are not checked here, as an index
   * of every queued task's id would cost more memory than the row itself. A client that reuses one gets both
   * answers under it.
   */
  submit(client: ClientRecord<H>, requestId: number, type: string, body: Buffer, options?: SubmitOptions): void {
    if (!this.clients.has(client)) return;
    const queue = this.queueFor(type);
    const slot = queue.ready.pick();
    const size = body.length;
    const refusal = this.refusal(client, size, slot === null);
    if (refusal) {
      this.dropQueueIfIdle(type);
      this.counters.rejected++;
      this.out.sendFailed(client, requestId, refusal.code, refusal.message);
      return;
    }
    const seq = this.nextSeq++;
    const settings = options ? this.settings(options) : this.defaults;
    client.pending++;
    client.pendingBytes += size;
    this.counters.submitted++;
    if (slot) {
      this.assign(slot.worker, this.adopt(newTask(seq, type, body, requestId, client, settings)));
      queue.ready.gave(slot);
      return;
    }
    const lane = this.laneOf(client, queue);
    queue.rows.push(seq, requestId, lane, body, settings);
    lane.queued++;
    lane.bytes += size;
    queue.live++;
    this.queued++;
    this.queuedBytes += size;
    this.out.taskQueued?.(seq >>> 0, type, client, requestId, body);
  }

  /** Refuses a submission the shell could not accept (too large to read or to send on), answering that request alone. */
  refuse(client: ClientRecord<H>, requestId: number, code: string, message: string): void {
    if (!this.clients.has(client)) return;
    this.counters.rejected++;
    this.out.sendFailed(client, requestId, code, message);
  }

  private settings(options: SubmitOptions): Settings {
    return {
      timeoutMs: options.timeoutMs || this.config.timeoutMs,
      // Capped so a task's dispatch count stays small (the worker keys leases by task id and attempt).
      retries: Math.min(options.retries ?? 0, MAX_RETRIES),
      backoffMs: options.backoffMs || this.config.backoffMs,
    };
  }

  /** Records a task object as its client's. */
  private adopt(task: Task<H>): Task<H> {
    const client = task.client!;
    const last = client.lastTask;
    task.prevOfClient = last;
    if (last) last.nextOfClient = task;
    else client.firstTask = task;
    client.lastTask = task;
    return task;
  }

  /** Unlinks a settled task from its client's task objects and its body from the client's budget. */
  private disown(client: ClientRecord<H>, task: Task<H>): void {
    const { prevOfClient: prev, nextOfClient: next } = task;
    if (prev) prev.nextOfClient = next;
    else client.firstTask = next;
    if (next) next.prevOfClient = prev;
    else client.lastTask = prev;
    task.prevOfClient = task.nextOfClient = null;
    client.pending--;
    client.pendingBytes -= task.body.length;
  }

  /**
   * The client's lane in a queue, made on first use. A lane goes as soon as its last row leaves (take()), so a
   * client holds lanes only in the queues where it has rows: a client submitting a new job type with every task
   * costs O(1) per task, not a scan of its lanes.
   */
  private laneOf(client: ClientRecord<H>, queue: Queue<H>): Lane<H> {
    const last = client.lastLane;
    if (last !== null && last.queue === queue) return last;
    let lane = client.lanes.get(queue.type);
    if (lane === undefined) {
      lane = { client, queue, queued: 0, bytes: 0 };
      client.lanes.set(queue.type, lane);
    }
    client.lastLane = lane;
    return lane;
  }

  private refusal(client: ClientRecord<H>, size: number, mustQueue: boolean): { code: string; message: string } | null {
    if (this.draining) return { code: ErrorCode.SHUTDOWN, message: 'the scheduler is shutting down' };
    const c = this.config;
    if (client.pending >= c.maxPendingPerClient) {
      return {
        code: ErrorCode.TOO_MANY_PENDING,
        message: `this client already has ${client.pending} unsettled tasks (maxPendingPerClient)`,
      };
    }
    if (client.pendingBytes + size > c.maxPendingBytesPerClient) {
      return {
        code: ErrorCode.TOO_MANY_PENDING,
        message: `this client's unsettled tasks hold ${client.pendingBytes} bytes; ${size} more would pass maxPendingBytesPerClient (${c.maxPendingBytesPerClient})`,
      };
    }
    if (!mustQueue) return null;
    if (this.queued >= c.maxQueued) {
      return { code: ErrorCode.QUEUE_FULL, message: `the queue is full: ${this.queued} tasks waiting (maxQueued)` };
    }
    if (this.queuedBytes + size > c.maxQueuedBytes) {
      return {
        code: ErrorCode.QUEUE_FULL,
        message: `the queue is full: its tasks hold ${this.queuedBytes} bytes; ${size} more would pass maxQueuedBytes (${c.maxQueuedBytes})`,
      };
    }
    return null;
  }

  /**
   * A worker reports on a lease. Returns an error when it reports on one it never held (the shell then
   * closes the worker); a report on a lease already taken back is dropped and frees its slot.
   */
  result(worker: WorkerRecord<H>, taskId: number, attempt: number, outcome: OutcomeInput<R>): TaskwireError | null {
    if (!this.workers.has(worker)) return null;
    const task = worker.running.get(taskId);
    if (!task || task.attempt !== attempt) {
      const key = `${taskId}:${attempt}`;
      const clientGone = worker.revoked.get(key);
      if (clientGone === undefined) {
        return new TaskwireError(ErrorCode.PROTOCOL, `result for task ${taskId} attempt ${attempt}, which this worker does not hold`);
      }
      worker.revoked.delete(key);
      if (clientGone) this.counters.discarded++;
      else this.counters.late++;
      this.fill(worker);
      return null;
    }
    worker.running.delete(taskId);
    this.release(task, worker);
    if (outcome.ok) this.complete(task, worker, outcome);
    else if (task.retriesLeft > 0) this.retry(task, worker, outcome.message);
    else this.fail(task, outcome.code, outcome.message);
    this.fill(worker);
    return null;
  }

  private complete(task: Task<H>, worker: WorkerRecord<H>, result: R): void {
    const client = task.client!; // a task whose client left was revoked, so it never gets here
    task.state = TaskState.DONE;
    this.counters.completed++;
    this.disown(client, task);
    this.out.sendCompleted(client, task.requestId, result);
    this.out.taskCompleted?.(task, worker);
  }

  private fail(task: Task<H>, code: string, message: string): void {
    const client = task.client!;
    task.state = TaskState.DONE;
    this.counters.failed++;
    this.disown(client, task);
    this.remember(task, code, message);
    this.out.sendFailed(client, task.requestId, code, message);
    this.out.taskFailed?.(task, code, message);
  }

  /** A handler failure with retries left: back in the queue after an exponential backoff, for another worker. */
  private retry(task: Task<H>, worker: WorkerRecord<H>, message: string): void {
    task.retriesLeft--;
    task.retried++;
    this.counters.retried++;
    task.state = TaskState.DELAYED;
    task.body = detachBody(task.body);
    task.avoid = worker;
    const delay = Math.min(task.backoffMs * 2 ** (task.retried - 1), 86_400_000);
    this.backoffs.add(task, this.now, delay);
    this.out.taskRequeued?.(task, worker, `handler failed (${message}); retry ${task.retried} in ${delay} ms`);
  }

  /**
   * An infrastructure fault ended the task's current attempt. Requeues it (returning its queue), for another
   * worker than this one if `avoid` (a timeout: the worker may be stuck), or, on its maxAttempts-th fault, fails it
   * with E_ATTEMPTS so a task that kills every worker cannot loop forever.
   */
  private fault(task: Task<H>, worker: WorkerRecord<H>, reason: string, avoid: boolean): Queue<H> | null {
    if (!task.client) {
      task.state = TaskState.DONE; // its client left; nobody waits for it
      return null;
    }
    task.faults++;
    if (task.faults >= this.config.maxAttempts) {
      this.fail(task, ErrorCode.ATTEMPTS, `gave up after ${task.faults} attempts; last: ${reason}`);
      return null;
    }
    this.counters.requeued++;
    const queue = this.requeue(task, avoid ? worker : null);
    this.out.taskRequeued?.(task, worker, reason);
    return queue;
  }

  /** Takes a running task back from its worker, telling the worker; its slot stays busy until it answers. */
  private revoke(task: Task<H>, code: string, message: string): void {
    const worker = task.worker!;
    worker.running.delete(task.id);
    worker.revoked.set(`${task.id}:${task.attempt}`, task.client === null);
    this.release(task, worker);
    this.out.sendCancel?.(worker, task.id, task.attempt, code, message);
  }

  /** Clears a running task's lease bookkeeping; `worker` is the one that held it. */
  private release(task: Task<H>, worker: WorkerRecord<H>): void {
    if (task.state === TaskState.RUNNING) {
      this.inFlight--;
      this.deadlines.remove(task);
      if (task.timeoutMs === 0) worker.untimed--;
    }
    task.worker = null;
  }

  /** Keeps the latest failures, dropping the oldest past deadLetterLimit. */
  private remember(task: Task<H>, code: string, message: string): void {
    if (this.config.deadLetterLimit === 0) return;
    if (this.dead.length >= this.config.deadLetterLimit) this.dead.shift(); // bounded and small: shift is fine
    this.dead.push({
      taskId: task.id,
      type: task.type,
      code,
      message,
      attempts: task.attempt,
      payloadBytes: task.body.length,
      failedAt: this.now,
    });
  }

  // ---- dispatch ----------------------------------------------------------------------------------------------

  private assign(worker: WorkerRecord<H>, task: Task<H>): void {
    task.worker = worker;
    task.state = TaskState.RUNNING;
    task.attempt++;
    worker.running.set(task.id, task);
    if (task.timeoutMs > 0) this.deadlines.add(task, this.now, task.timeoutMs);
    else worker.untimed++;
    this.inFlight++;
    this.counters.dispatched++;
    if (!this.out.sendTask(worker, task)) worker.blocked = true;
    this.out.taskDispatched?.(task, worker);
    if (worker.blocked || this.busy(worker) >= worker.concurrency) this.unready(worker);
  }

  private busy(worker: WorkerRecord<H>): number {
    return worker.running.size + worker.revoked.size;
  }

  /** The share of a ready worker's concurrency in use, for the least-loaded strategy. */
  private readonly load = (slot: Slot<H>): number => this.busy(slot.worker) / slot.worker.concurrency;

  /**
   * Gives a worker queued tasks until it is full or blocked; if its queues have nothing for it, it waits in the
   * ready list of each of its types. Picking the oldest head among its types costs O(types it runs), never
   * O(workers).
   */
  private fill(worker: WorkerRecord<H>): void {
    while (!worker.blocked && this.busy(worker) < worker.concurrency) {
      let best: Queue<H> | null = null;
      let bestSeq = Infinity;
      for (const slot of worker.slots) {
        const seq = slot.queue.headSeq(worker);
        if (seq < bestSeq) {
          best = slot.queue;
          bestSeq = seq;
        }
      }
      if (!best) {
        for (const slot of worker.slots) if (!slot.list) slot.queue.ready.add(slot);
        return;
      }
      this.assign(worker, this.take(best, worker));
    }
    this.unready(worker);
  }

  /** Takes the oldest task `worker` may take out of `queue`, right after headSeq() found one; a row becomes a Task here. */
  private take(queue: Queue<H>, worker: WorkerRecord<H>): Task<H> {
    this.queued--;
    const requeued = queue.take(worker);
    if (requeued) {
      this.queuedBytes -= requeued.body.length;
      return requeued;
    }
    const rows = queue.rows;
    const lane = rows.lane;
    const body = rows.body();
    const task = newTask(rows.seq, queue.type, body, rows.requestId, lane.client!, rows.option);
    rows.shift();
    this.queuedBytes -= body.length;
    lane.bytes -= body.length;
    if (--lane.queued === 0) dropLane(lane);
    return this.adopt(task);
  }

  /** After tasks went back into queues (or a worker left them), the workers waiting on those queues take them. */
  private refill(touched: Set<Queue<H>>): void {
    if (touched.size === 0) return;
    const ready = new Set<WorkerRecord<H>>();
    for (const queue of touched) for (let slot = queue.ready.head; slot; slot = slot.next) ready.add(slot.worker);
    for (const worker of ready) this.fill(worker);
  }

  /**
   * Puts a task back in its queue at the place its submission order gives it, in O(log n). With `avoid`, the
   * other workers of its type get it first, if that worker still runs the type.
   */
  private requeue(task: Task<H>, avoid: WorkerRecord<H> | null): Queue<H> {
    const queue = this.queueFor(task.type);
    task.state = TaskState.QUEUED;
    task.body = detachBody(task.body);
    queue.requeue(task, avoid !== null && avoid.slots.some((slot) => slot.queue === queue) ? avoid : null);
    this.queued++;
    this.queuedBytes += task.body.length;
    return queue;
  }

  private unready(worker: WorkerRecord<H>): void {
    for (const slot of worker.slots) slot.queue.ready.remove(slot);
  }

  /**
   * The worker stops announcing its types. Queues where tasks were kept from another worker that is now alone go
   * into `touched`, so that worker is given them (see TypeQueue).
   */
  private releaseTypes(worker: WorkerRecord<H>, touched: Set<Queue<H>>): void {
    this.unready(worker);
    for (const slot of worker.slots) {
      const queue = slot.queue;
      queue.workers--;
      if (worker.concurrency > 0) queue.active--;
      queue.forget(worker);
      if (queue.avoidsAny) touched.add(queue);
      this.dropQueueIfIdle(queue.type);
    }
    worker.slots = [];
  }

  private queueFor(type: string): Queue<H> {
    let queue = this.queues.get(type);
    if (!queue) {
      queue = new TypeQueue(type, this.config.strategy === 'least-loaded' ? new LeastLoaded(this.load) : new RoundRobin());
      this.queues.set(type, queue);
    }
    return queue;
  }

  /** Job types come from peers, so their queues must not outlive their tasks and workers. */
  private dropQueueIfIdle(type: string): void {
    const queue = this.queues.get(type);
    if (queue && queue.workers === 0 && queue.live === 0) this.queues.delete(type);
  }
}

/** Forgets a lane whose last row left, so a client's lanes are only those holding rows. */
function dropLane<H>(lane: Lane<H>): void {
  const client = lane.client!;
  if (client.lanes.get(lane.queue.type) === lane) client.lanes.delete(lane.queue.type);
  if (client.lastLane === lane) client.lastLane = null;
}

function sameTypes(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((type, i) => type === b[i]);
}
