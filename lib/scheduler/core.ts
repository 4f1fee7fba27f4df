// The scheduling brain: queues, credits, dispatch, leases, timeouts, retries, requeue and liveness, with no I/O.
//
// The core owns every decision and no socket, timer or clock. The I/O shell feeds it events (a peer joined, a
// task was submitted, a result arrived, a peer was lost, a heartbeat interval passed, tick(now)) and the core
// answers through the CoreOutput it was given. Calls into an output object rather than returned action arrays
// keep the hot path free of per-task allocations, and a test records the calls just as easily.
//
// Peer "handles" (H) are opaque to the core: the shell passes its connection objects, tests pass anything.

import { ErrorCode, TaskwireError } from '../errors.js';
import { IdTable } from '../id-table.js';
import type { BodyRange } from '../protocol/messages.js';
import { LinkedList, Rows, Timeline, type Linked, type Timed } from './queue.js';

/** Where a task is. Exactly one holds at any time. */
export const TaskState = {
  /** In its type's queue, waiting for a worker: a row, or an object if it was requeued. */
  QUEUED: 0,
  /** Dispatched; held by `worker` under lease `attempt`. */
  RUNNING: 1,
  /** Waiting out a retry backoff before it is queued again. */
  DELAYED: 2,
  /** Settled, or dropped because its client left. */
  DONE: 3,
} as const;
export type TaskState = (typeof TaskState)[keyof typeof TaskState];

/**
 * A dispatched task, and one that was requeued or waits for a retry. A task that has only been queued is a row
 * in its queue's Rows instead, and becomes a Task when it is dispatched.
 */
export interface Task<H> extends Timed<Task<H>> {
  /** Monotonic submission number; orders tasks across job types and requeues. */
  readonly seq: number;
  /** The id on the wire to workers (u32; wraps after 2^32 tasks, far beyond any task's lifetime). */
  readonly id: number;
  readonly type: string;
  readonly body: Buffer;
  readonly requestId: number;
  /** The submitting client; null once that client has gone, so the task is never run or answered again. */
  client: ClientRecord<H> | null;
  /** The worker running the task, or null. */
  worker: WorkerRecord<H> | null;
  state: TaskState;
  /** Dispatch count, the lease number: a result must name the current one. */
  attempt: number;
  /** Dispatches that ended in an infrastructure fault (worker lost, timeout); at maxAttempts the task fails. */
  faults: number;
  /** Handler failures still to be retried, and how many were retried so far (for the backoff). */
  retriesLeft: number;
  retried: number;
  readonly timeoutMs: number;
  readonly backoffMs: number;
  /** Links among its client's task objects (see ClientRecord.firstTask). */
  prevOfClient: Task<H> | null;
  nextOfClient: Task<H> | null;
}

interface PeerBase<H> {
  readonly id: number;
  readonly name: string;
  readonly handle: H;
  /** Set by seen(); cleared by each heartbeat. */
  active: boolean;
  /** Consecutive heartbeats without any frame from the peer. */
  missedTicks: number;
}

export interface ClientRecord<H> extends PeerBase<H> {
  readonly kind: 'client';
  /** Unsettled tasks: queued, running or waiting for a retry. */
  pending: number;
  /**
   * Its unsettled tasks that are objects (running, requeued, waiting for a retry), linked through the tasks;
   * queued ones are rows. A Set here was rehashed every few dispatches under churn: 0.4 us per task of
   * SetGrow, table allocation and page faults in a profile of W1's scheduler.
   */
  firstTask: Task<H> | null;
  /** The last of them: tasks are linked in the order they became objects, so loss and shutdown go oldest first. */
  lastTask: Task<H> | null;
  /** Its lane in the queue of each job type it has tasks queued in. */
  readonly lanes: Map<string, Lane<H>>;
  /** The lane used last: a client nearly always submits one type after another. */
  lastLane: Lane<H> | null;
}

/**
 * A client's queued rows in one job type's queue, counted so that they can all be written off at once when the
 * client leaves: the rows stay where they are, with `client` null, and are skipped when they reach the head.
 */
interface Lane<H> {
  client: ClientRecord<H> | null;
  queue: TypeQueue<H>;
  /** Its live rows in `queue`. */
  queued: number;
}

/** A task's own settings; the scheduler's defaults are one object shared by every task without options. */
interface Settings {
  readonly timeoutMs: number;
  readonly retries: number;
  readonly backoffMs: number;
}

/** A worker's place in one job type's list of workers with a free slot. */
interface ReadySlot<H> extends Linked<ReadySlot<H>> {
  readonly worker: WorkerRecord<H>;
  readonly queue: TypeQueue<H>;
}

export interface WorkerRecord<H> extends PeerBase<H> {
  readonly kind: 'worker';
  /** Tasks it may hold at once (its credits); 0 until it sends READY, and again once it is draining. */
  concurrency: number;
  types: string[];
  /** The tasks it runs, by wire id (an IdTable, not a Map: see lib/id-table.ts). */
  readonly running: IdTable<Task<H>>;
  /**
   * Leases taken back whose handler may still be running, "id:attempt" -> whether the client had left (else it
   * timed out). Each keeps its slot busy until the worker answers for it, so a worker is never sent more tasks
   * than its concurrency even while it finishes work nobody waits for.
   */
  readonly revoked: Map<string, boolean>;
  slots: ReadySlot<H>[];
}

export type PeerRecord<H> = ClientRecord<H> | WorkerRecord<H>;

/**
 * Tasks waiting for one job type, and the workers of that type that have a free slot. New tasks wait as rows;
 * tasks put back after a fault or a retry delay wait as objects in `requeued`. Both are in submission order, and
 * the older of the two heads goes first.
 */
interface TypeQueue<H> {
  readonly type: string;
  readonly rows: Rows<Lane<H>, Settings>;
  readonly requeued: LinkedList<Task<H>>;
  readonly ready: LinkedList<ReadySlot<H>>;
  /** Workers announcing this type; the queue is dropped when no task waits in it and this is 0. */
  workers: number;
  /** Tasks waiting: live rows and requeued tasks. */
  live: number;
  /** Rows of clients that left, not yet skipped or swept. */
  dead: number;
}

/** A client's lanes are pruned of empty ones past this many job types, so a client cycling types cannot grow them. */
const MAX_LANES = 1024;

export interface CoreOutput<H> {
  sendTask(worker: WorkerRecord<H>, task: Task<H>): void;
  /** Tell a worker to abort a task it runs; it still answers for it, which returns the slot. */
  sendCancel?(worker: WorkerRecord<H>, taskId: number, attempt: number, code: string, message: string): void;
  /** `body` is the result as it arrived: a range of the RESULT frame's buffer, valid during the call only. */
  sendCompleted(client: ClientRecord<H>, requestId: number, body: BodyRange): void;
  sendFailed(client: ClientRecord<H>, requestId: number, code: string, message: string): void;
  sendKeepalive(peer: PeerRecord<H>): void;
  /** Close the peer's connection, telling it why. The core has already forgotten the peer. */
  closePeer(peer: PeerRecord<H>, error: TaskwireError): void;
  // Notifications for observers; the shell turns them into public events.
  taskQueued?(taskId: number, type: string, client: ClientRecord<H>, requestId: number, body: BodyRange): void;
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
  /** Heartbeats a peer may stay silent before it is dropped. Default 3. */
  deadAfterTicks?: number;
  /** Default task timeout in ms; 0 for none. Default 300000 (5 minutes). */
  timeoutMs?: number;
  /** Infrastructure faults (worker lost, timeout) a task survives before it fails with E_ATTEMPTS. Default 3. */
  maxAttempts?: number;
  /** First retry delay after a handler failure, doubled per retry. Default 1000. */
  backoffMs?: number;
  /** Tasks queued (waiting for a worker) at most; more are refused with E_QUEUE_FULL. Default 10,000,000. */
  maxQueued?: number;
  /** Unsettled tasks per client at most; more are refused with E_TOO_MANY_PENDING. Default 1,048,576. */
  maxPendingPerClient?: number;
  /** Failed tasks remembered for inspection. Default 1000. */
  deadLetterLimit?: number;
}

/** Handler-failure retries a task may ask for; more are treated as this many. */
export const MAX_RETRIES = 255;

export const CORE_DEFAULTS = {
  deadAfterTicks: 3,
  timeoutMs: 300_000,
  maxAttempts: 3,
  backoffMs: 1000,
  maxQueued: 10_000_000,
  maxPendingPerClient: 1_048_576,
  deadLetterLimit: 1000,
} as const;

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

/** A worker's report on a task: a decoded RESULT, whose body is a range of the frame's buffer. */
export type OutcomeInput = ({ ok: true } & BodyRange) | { ok: false; code: string; message: string };

export class SchedulerCore<H> {
  private readonly out: CoreOutput<H>;
  private readonly config: Required<CoreOptions>;
  private readonly queues = new Map<string, TypeQueue<H>>();
  private readonly clients = new Set<ClientRecord<H>>();
  private readonly workers = new Set<WorkerRecord<H>>();
  /** Running tasks by timeout, so those overdue are found without scanning. */
  private readonly deadlines = new Timeline<Task<H>>();
  /** Tasks waiting out a retry backoff. */
  private readonly backoffs = new Timeline<Task<H>>();
  private readonly dead: DeadLetter[] = [];
  private readonly defaults: Settings;
  private nextPeerId = 1;
  private nextSeq = 1;
  private queued = 0;
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
  /** The time of the latest tick (ms). Deadlines are set from it, so they are as precise as the tick rate. */
  now = 0;

  constructor(output: CoreOutput<H>, options: CoreOptions = {}) {
    this.out = output;
    this.config = { ...CORE_DEFAULTS, ...options };
    this.defaults = { timeoutMs: this.config.timeoutMs, retries: 0, backoffMs: this.config.backoffMs };
  }

  stats(): CoreStats {
    return {
      queued: this.queued,
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
      firstTask: null,
      lastTask: null,
      lanes: new Map(),
      lastLane: null,
    };
    this.clients.add(client);
    return client;
  }

  addWorker(handle: H, name: string): WorkerRecord<H> {
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
      revoked: new Map(),
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
   * change either; concurrency 0 means "send me nothing more" (a worker shutting down).
   */
  ready(worker: WorkerRecord<H>, concurrency: number, types: readonly string[]): void {
    if (!this.workers.has(worker)) return;
    if (!sameTypes(worker.types, types)) {
      this.releaseTypes(worker);
      worker.types = [...new Set(types)];
      worker.slots = worker.types.map((type) => {
        const queue = this.queueFor(type);
        queue.workers++;
        return { worker, queue, prev: null, next: null, list: null };
      });
    }
    worker.concurrency = concurrency;
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
    this.releaseTypes(worker);
    let requeued = 0;
    const touched = new Set<TypeQueue<H>>();
    for (const task of held) {
      this.release(task);
      const queue = this.fault(task, worker, `worker ${worker.name} was lost: ${reason}`);
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
    const touched = new Set<TypeQueue<H>>();
    for (let task = client.firstTask; task; task = task.nextOfClient) {
      task.client = null;
      // Nothing runs for nobody: queued and delayed tasks go now; running ones are withdrawn from their worker.
      if (task.state === TaskState.QUEUED) {
        const queue = this.queues.get(task.type)!;
        queue.requeued.remove(task);
        queue.live--;
        this.queued--;
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
      if (lane.queued === 0) continue;
      lane.queue.live -= lane.queued;
      lane.queue.dead += lane.queued;
      this.queued -= lane.queued;
      lane.queued = 0;
      touched.add(lane.queue);
    }
    client.firstTask = client.lastTask = null;
    client.lanes.clear();
    client.lastLane = null;
    client.pending = 0;
    for (const queue of touched) this.sweep(queue);
    this.out.peerLeft?.(client, reason, 0);
  }

  /**
   * A keepalive interval passed: drop peers silent for deadAfterTicks intervals, send the others a keepalive.
   *
   * A worker running tasks is not dropped for silence: a CPU-bound handler blocks its event loop and with it
   * the keepalives, and a healthy worker must not look dead and have its work requeued again and again. Its
   * tasks' timeouts bound the wait instead; once they are taken back, silence counts again. A task without a
   * timeout gives no such bound, so it does not excuse silence.
   */
  heartbeat(): void {
    for (const peers of [this.clients, this.workers] as Set<PeerRecord<H>>[]) {
      for (const peer of peers) {
        if (peer.active || (peer.kind === 'worker' && silenceExcused(peer))) {
          peer.active = false;
          peer.missedTicks = 0;
        } else if (++peer.missedTicks >= this.config.deadAfterTicks) {
          const reason = `no frame for ${peer.missedTicks} keepalive intervals`;
          this.lost(peer, reason);
          this.out.closePeer(peer, new TaskwireError(ErrorCode.TIMEOUT, reason));
          continue;
        }
        this.out.sendKeepalive(peer);
      }
    }
  }

  /** Advances the clock: running tasks past their timeout are taken back, retries whose backoff ended are queued. */
  tick(now: number): void {
    this.now = now;
    if (this.deadlines.size > 0) {
      // Due tasks come out grouped by timeout length; all are requeued, in submission order, before any worker
      // is refilled, so a younger task never overtakes an older one.
      const due = this.deadlines.popDue(now).sort((a, b) => a.seq - b.seq);
      const touched = new Set<TypeQueue<H>>();
      for (const task of due) {
        const worker = task.worker!;
        this.counters.timedOut++;
        const message = `timed out after ${task.timeoutMs} ms on worker ${worker.name}`;
        this.revoke(task, ErrorCode.TIMEOUT, message);
        const queue = this.fault(task, worker, message);
        if (queue) touched.add(queue);
      }
      this.refill(touched);
    }
    if (this.backoffs.size > 0) {
      const touched = new Set<TypeQueue<H>>();
      for (const task of this.backoffs.popDue(now)) touched.add(this.requeue(task));
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
  submit(client: ClientRecord<H>, requestId: number, type: string, body: BodyRange, options?: SubmitOptions): void {
    if (!this.clients.has(client)) return;
    const queue = this.queueFor(type);
    const slot = queue.ready.head;
    const refusal = this.refusal(client, slot === null);
    if (refusal) {
      this.dropQueueIfIdle(type);
      this.counters.rejected++;
      this.out.sendFailed(client, requestId, refusal.code, refusal.message);
      return;
    }
    const seq = this.nextSeq++;
    const settings = options ? this.settings(options) : this.defaults;
    client.pending++;
    this.counters.submitted++;
    if (slot) {
      const view = body.buf.subarray(body.bodyStart, body.bodyEnd);
      this.assign(slot.worker, this.adopt(newTask(seq, type, view, requestId, client, settings)));
      queue.ready.moveToBack(slot); // round-robin among workers with room
      return;
    }
    const lane = this.laneOf(client, queue);
    queue.rows.push(seq, requestId, lane, body.buf, body.bodyStart, body.bodyEnd, settings);
    lane.queued++;
    queue.live++;
    this.queued++;
    this.out.taskQueued?.(seq >>> 0, type, client, requestId, body);
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

  /** Unlinks a settled task from its client's task objects. */
  private disown(client: ClientRecord<H>, task: Task<H>): void {
    const { prevOfClient: prev, nextOfClient: next } = task;
    if (prev) prev.nextOfClient = next;
    else client.firstTask = next;
    if (next) next.prevOfClient = prev;
    else client.lastTask = prev;
    task.prevOfClient = task.nextOfClient = null;
  }

  private laneOf(client: ClientRecord<H>, queue: TypeQueue<H>): Lane<H> {
    const last = client.lastLane;
    if (last !== null && last.queue === queue) return last;
    let lane = client.lanes.get(queue.type);
    if (lane === undefined) {
      if (client.lanes.size >= MAX_LANES) {
        for (const [type, idle] of client.lanes) if (idle.queued === 0) client.lanes.delete(type);
      }
      lane = { client, queue, queued: 0 };
      client.lanes.set(queue.type, lane);
    } else if (lane.queue !== queue) {
      lane.queue = queue; // its old queue was dropped, which it was only once this lane had nothing in it
    }
    client.lastLane = lane;
    return lane;
  }

  private refusal(client: ClientRecord<H>, mustQueue: boolean): { code: string; message: string } | null {
    if (this.draining) return { code: ErrorCode.SHUTDOWN, message: 'the scheduler is shutting down' };
    if (client.pending >= this.config.maxPendingPerClient) {
      return {
        code: ErrorCode.TOO_MANY_PENDING,
        message: `this client already has ${client.pending} unsettled tasks (maxPendingPerClient)`,
      };
    }
    if (mustQueue && this.queued >= this.config.maxQueued) {
      return { code: ErrorCode.QUEUE_FULL, message: `the queue is full: ${this.queued} tasks waiting (maxQueued)` };
    }
    return null;
  }

  /**
   * A worker reports on a lease. Returns an error when it reports on one it never held (the shell then
   * closes the worker); a report on a lease already taken back is dropped and frees its slot.
   */
  result(worker: WorkerRecord<H>, taskId: number, attempt: number, outcome: OutcomeInput): TaskwireError | null {
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
    this.release(task);
    if (outcome.ok) this.complete(task, worker, outcome);
    else if (task.retriesLeft > 0) this.retry(task, worker, outcome.message);
    else this.fail(task, outcome.code, outcome.message);
    this.fill(worker);
    return null;
  }

  private complete(task: Task<H>, worker: WorkerRecord<H>, body: BodyRange): void {
    const client = task.client!; // a task whose client left was revoked, so it never gets here
    task.state = TaskState.DONE;
    this.counters.completed++;
    this.disown(client, task);
    client.pending--;
    this.out.sendCompleted(client, task.requestId, body);
    this.out.taskCompleted?.(task, worker);
  }

  private fail(task: Task<H>, code: string, message: string): void {
    const client = task.client!;
    task.state = TaskState.DONE;
    this.counters.failed++;
    this.disown(client, task);
    client.pending--;
    this.remember(task, code, message);
    this.out.sendFailed(client, task.requestId, code, message);
    this.out.taskFailed?.(task, code, message);
  }

  /** A handler failure with retries left: back in the queue after an exponential backoff. */
  private retry(task: Task<H>, worker: WorkerRecord<H>, message: string): void {
    task.retriesLeft--;
    task.retried++;
    this.counters.retried++;
    task.state = TaskState.DELAYED;
    const delay = Math.min(task.backoffMs * 2 ** (task.retried - 1), 86_400_000);
    this.backoffs.add(task, this.now, delay);
    this.out.taskRequeued?.(task, worker, `handler failed (${message}); retry ${task.retried} in ${delay} ms`);
  }

  /**
   * An infrastructure fault ended the task's current attempt. Requeues it (returning its queue) or, on its
   * maxAttempts-th fault, fails it with E_ATTEMPTS so a task that kills every worker cannot loop forever.
   */
  private fault(task: Task<H>, worker: WorkerRecord<H>, reason: string): TypeQueue<H> | null {
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
    const queue = this.requeue(task);
    this.out.taskRequeued?.(task, worker, reason);
    return queue;
  }

  /** Takes a running task back from its worker, telling the worker; its slot stays busy until it answers. */
  private revoke(task: Task<H>, code: string, message: string): void {
    const worker = task.worker!;
    worker.running.delete(task.id);
    worker.revoked.set(`${task.id}:${task.attempt}`, task.client === null);
    this.release(task);
    this.out.sendCancel?.(worker, task.id, task.attempt, code, message);
  }

  /** Clears a running task's lease bookkeeping. */
  private release(task: Task<H>): void {
    if (task.state === TaskState.RUNNING) {
      this.inFlight--;
      this.deadlines.remove(task);
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
    this.inFlight++;
    this.counters.dispatched++;
    this.out.sendTask(worker, task);
    this.out.taskDispatched?.(task, worker);
    if (this.busy(worker) >= worker.concurrency) this.unready(worker);
  }

  private busy(worker: WorkerRecord<H>): number {
    return worker.running.size + worker.revoked.size;
  }

  /**
   * Gives a worker queued tasks until it is full; if its queues run dry first, it waits in the ready list of
   * each of its types. Picking the oldest head among its types costs O(types it runs), never O(workers).
   */
  private fill(worker: WorkerRecord<H>): void {
    while (this.busy(worker) < worker.concurrency) {
      let best: TypeQueue<H> | null = null;
      let bestSeq = Infinity;
      for (const slot of worker.slots) {
        const seq = this.headSeq(slot.queue);
        if (seq < bestSeq) {
          best = slot.queue;
          bestSeq = seq;
        }
      }
      if (!best) {
        for (const slot of worker.slots) if (!slot.list) slot.queue.ready.pushBack(slot);
        return;
      }
      this.assign(worker, this.take(best));
    }
    this.unready(worker);
  }

  /** The submission number of the oldest task waiting in `queue`, or Infinity; skips rows of clients that left. */
  private headSeq(queue: TypeQueue<H>): number {
    const rows = queue.rows;
    while (rows.size > 0 && rows.lane.client === null) {
      rows.shift();
      queue.dead--;
    }
    const requeued = queue.requeued.head;
    if (rows.size === 0) return requeued ? requeued.seq : Infinity;
    return requeued && requeued.seq < rows.seq ? requeued.seq : rows.seq;
  }

  /** Takes the oldest waiting task out of `queue`, right after headSeq() found one; a row becomes a Task here. */
  private take(queue: TypeQueue<H>): Task<H> {
    queue.live--;
    this.queued--;
    const rows = queue.rows;
    const requeued = queue.requeued.head;
    if (requeued && (rows.size === 0 || requeued.seq < rows.seq)) {
      queue.requeued.remove(requeued);
      return requeued;
    }
    const lane = rows.lane;
    lane.queued--;
    const task = newTask(rows.seq, queue.type, rows.body(), rows.requestId, lane.client!, rows.option);
    rows.shift();
    return this.adopt(task);
  }

  /** After a client left: sweeps its rows out once they outnumber the live ones (so O(1) per row, amortised). */
  private sweep(queue: TypeQueue<H>): void {
    if (queue.dead > queue.live) {
      queue.rows.filter((lane) => lane.client !== null);
      queue.dead = 0;
    }
    this.dropQueueIfIdle(queue.type);
  }

  /** After tasks went back into queues, the workers waiting on those queues take them. */
  private refill(touched: Set<TypeQueue<H>>): void {
    if (touched.size === 0) return;
    const ready = new Set<WorkerRecord<H>>();
    for (const queue of touched) for (let slot = queue.ready.head; slot; slot = slot.next) ready.add(slot.worker);
    for (const worker of ready) this.fill(worker);
  }

  /**
   * Puts a task back in its queue at the place its submission order gives it, among the other requeued tasks
   * (few: those a fault or a retry delay put back and no worker took yet).
   */
  private requeue(task: Task<H>): TypeQueue<H> {
    const queue = this.queueFor(task.type);
    let after = queue.requeued.head;
    while (after && after.seq < task.seq) after = after.next;
    task.state = TaskState.QUEUED;
    queue.requeued.insertBefore(task, after);
    queue.live++;
    this.queued++;
    return queue;
  }

  private unready(worker: WorkerRecord<H>): void {
    for (const slot of worker.slots) slot.list?.remove(slot);
  }

  private releaseTypes(worker: WorkerRecord<H>): void {
    this.unready(worker);
    for (const slot of worker.slots) {
      slot.queue.workers--;
      this.dropQueueIfIdle(slot.queue.type);
    }
    worker.slots = [];
  }

  private queueFor(type: string): TypeQueue<H> {
    let queue = this.queues.get(type);
    if (!queue) {
      queue = { type, rows: new Rows(), requeued: new LinkedList(), ready: new LinkedList(), workers: 0, live: 0, dead: 0 };
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

function newTask<H>(seq: number, type: string, body: Buffer, requestId: number, client: ClientRecord<H>, s: Settings): Task<H> {
  return {
    seq,
    id: seq >>> 0,
    type,
    body,
    requestId,
    client,
    worker: null,
    state: TaskState.QUEUED,
    attempt: 0,
    faults: 0,
    retriesLeft: s.retries,
    retried: 0,
    timeoutMs: s.timeoutMs,
    backoffMs: s.backoffMs,
    deadline: 0,
    prev: null,
    next: null,
    list: null,
    prevOfClient: null,
    nextOfClient: null,
  };
}

/** A silent worker is presumed busy, not dead, while every task it runs has a timeout to end the wait. */
function silenceExcused<H>(worker: WorkerRecord<H>): boolean {
  if (worker.running.size === 0) return false;
  for (const task of worker.running.values()) if (task.timeoutMs === 0) return false;
  return true;
}

function sameTypes(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((type, i) => type === b[i]);
}
