// The scheduling brain: jobs, queues, credits, dispatch, leases, timeouts, retries, delays, cancels, requeue and
// liveness, with no I/O.
//
// The core owns every decision and no socket, timer or clock. The I/O shell feeds it events (a peer joined, a
// job was submitted, a result arrived, a peer was lost, a heartbeat interval passed, tick(now)) and the core
// answers through the CoreOutput it was given. Calls into an output object rather than returned action arrays
// keep the hot path free of per-task allocations, and a test records the calls just as easily.
//
// Peer "handles" (H) are opaque to the core: the shell passes its connection objects, tests pass anything. So are
// results (R): the core passes a worker's result on to the job's owner without looking at it. A job's body is a
// Buffer whose length the byte budgets count; the core never reads its bytes, and imports nothing of the
// protocol.
//
// Jobs own themselves. Each has an id that is never reused, and an owner: the client request it answers, or
// nobody (a detached job whose client left). Any client may ask for a job's status, wait for it or cancel it by
// id; a finished detached job leaves a record for a while. The queue of each job type (type-queue.ts) holds the
// representation of queued jobs, its priorities and its order (FIFO or fair); the dispatch strategy
// (balance.ts) picks the worker.
//
// No operation costs more than its own work: requeueing N tasks is O(N log N), a new job type O(1), a tick
// O(what falls due), and nothing scans the queue or every worker on the way.

import { ErrorCode, TaskwireError } from '../errors.js';
import { IdTable } from '../id-table.js';
import { LeastLoaded, RoundRobin, type Strategy } from './balance.js';
import { CountersTable, LatencyHistogram, type QueueDepth, type TypeCounters } from './counters.js';
import { FinishedJobs, type JobState, type JobStatus } from './finished.js';
import { GraphRun, checkGraph, type GraphNodeSpec } from './graph.js';
import { JobIndex } from './job-index.js';
import { detachBody } from './queue.js';
import {
  TaskState,
  newTask,
  type ClientRecord,
  type CoreKinds,
  type Graph,
  type Lane,
  type Level,
  type PeerRecord,
  type Queue,
  type Settings,
  type Slot,
  type Task,
  type WorkerRecord,
} from './records.js';
import { TimerWheel } from './timers.js';
import { Lane as QueueLane, TypeQueue, type RowTaker } from './type-queue.js';

export { STRATEGIES, type Strategy } from './balance.js';
export { JOB_STATES, type JobInfo, type JobState, type JobStatus } from './finished.js';
export type { GraphNodeSpec } from './graph.js';
export { LATENCY_BOUNDS_MS, MAX_COUNTED_TYPES, OTHER_TYPE, type QueueDepth, type TypeCounters } from './counters.js';
export { TaskState } from './records.js';
export type { ClientRecord, PeerRecord, Task, WorkerRecord } from './records.js';

export interface CoreOutput<H, R = unknown> {
  /**
   * Send a task to a worker. Returns false when the worker's connection is not draining what it was sent: the
   * core then sends it nothing more (its credits stay owed, its tasks wait or go to other workers) until
   * writable(worker).
   */
  sendTask(worker: WorkerRecord<H>, task: Task<H>): boolean;
  /**
   * Why a graph's node, with its inputs (task.inputs), cannot be sent to any worker (too large for a frame), or
   * null. Such a node fails with E_TOO_LARGE, and its graph with it.
   */
  nodeTooLarge?(task: Task<H>): string | null;
  /** Tell a worker to abort a task it runs; it still answers for it, which returns the slot. */
  sendCancel?(worker: WorkerRecord<H>, taskId: number, attempt: number, code: string, message: string): void;
  /** `result` is the worker's, as result() was given it (or as retainResult() kept it): valid during the call only. */
  sendCompleted(client: ClientRecord<H>, requestId: number, result: R): void;
  sendFailed(client: ClientRecord<H>, requestId: number, code: string, message: string): void;
  /** A running job's handler reported progress; `requestId` is the owner's or a waiter's request. */
  sendProgress?(client: ClientRecord<H>, requestId: number, jobId: number, value: number, message: string): void;
  sendKeepalive(peer: PeerRecord<H>): void;
  /** Close the peer's connection, telling it why. The core has already forgotten the peer. */
  closePeer(peer: PeerRecord<H>, error: TaskwireError): void;
  /**
   * A detached job completed: a copy of its result that stays valid, for its finished record, and the bytes the
   * copy holds. Without it, finished records keep no result.
   */
  retainResult?(result: R): { result: R; bytes: number };
  // Notifications for observers; the shell turns them into public events.
  taskQueued?(taskId: number, type: string, client: ClientRecord<H>, requestId: number, body: Buffer): void;
  taskDispatched?(task: Task<H>, worker: WorkerRecord<H>): void;
  taskCompleted?(task: Task<H>, worker: WorkerRecord<H>): void;
  taskFailed?(task: Task<H>, code: string, message: string): void;
  taskRequeued?(task: Task<H>, worker: WorkerRecord<H>, reason: string, cause: RequeueCause): void;
  peerLeft?(peer: PeerRecord<H>, reason: string, requeued: number): void;
}

/** Per-job options a client may send with SUBMIT; 0 or absent means the scheduler's default. */
export interface SubmitOptions {
  timeoutMs?: number;
  retries?: number;
  backoffMs?: number;
  /** Higher runs first; FIFO within one priority. Default 0. */
  priority?: number;
  /** ms to wait before the job is queued; it is 'delayed' meanwhile. */
  delayMs?: number;
  /** The job survives its client's departure (else it is cancelled with it). */
  detach?: boolean;
  /**
   * With fairness, the jobs of one tenant (of any client) take one turn together, instead of each client taking
   * its own; a u32 key.
   */
  tenant?: number;
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
  /**
   * Within one priority, whether clients take turns (one job each) instead of the oldest job going first. Default
   * false (FIFO).
   */
  fair?: boolean;
  /**
   * A queued job whose type no connected worker runs fails with E_NO_WORKER after waiting this long (counted from
   * its submission, or from when the type's last worker left, whichever is later); 0 waits for ever. Default
   * 300000 (5 minutes).
   */
  noWorkerTimeoutMs?: number;
  /** Finished detached jobs whose records are kept, at most. Default 10,000. */
  maxFinishedJobs?: number;
  /** How long a finished detached job's record is kept. Default 3,600,000 (an hour). */
  finishedTtlMs?: number;
  /** Bytes of the results those records keep, at most. Default 64 MiB. */
  maxFinishedBytes?: number;
  /** The first job id; the shell starts from its clock, so ids are not reused after a restart either. Default 1. */
  firstJobId?: number;
  /** Nodes a graph job may have; a larger graph is refused with E_GRAPH. Default 10,000. */
  maxGraphNodes?: number;
  /** Edges (node inputs) a graph job may have; more are refused with E_GRAPH. Default 100,000. */
  maxGraphEdges?: number;
  /**
   * Bytes of intermediate results a graph may hold at once (each is kept until every node consuming it has
   * completed); past it the graph fails with E_GRAPH_MEMORY. Default 64 MiB.
   */
  maxGraphBytes?: number;
}

/**
 * Why a task went back to the queue: its worker was lost, its attempt timed out (it then avoids that worker), or
 * its handler failed with retries left (after a backoff).
 */
export type RequeueCause = 'lost' | 'timeout' | 'retry';

/** Handler-failure retries a task may ask for; more are treated as this many. */
export const MAX_RETRIES = 255;
/** A job's progress goes to its owner and waiters at most once in this many ms; the latest is kept in between. */
export const PROGRESS_INTERVAL_MS = 100;
/** jobs() looks at most at this many of the latest jobs. */
export const RECENT_JOBS = 1024;

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
  fair: false,
  noWorkerTimeoutMs: 300_000,
  maxFinishedJobs: 10_000,
  finishedTtlMs: 3_600_000,
  maxFinishedBytes: 64 * 1024 * 1024,
  firstJobId: 1,
  maxGraphNodes: 10_000,
  maxGraphEdges: 100_000,
  maxGraphBytes: 64 * 1024 * 1024,
} as const satisfies Required<CoreOptions>;

/** A task that failed for good, kept for inspection in a bounded list. */
export interface DeadLetter {
  taskId: number;
  /** Its job's id (a graph's, for one of its nodes). */
  jobId: number;
  type: string;
  code: string;
  message: string;
  /** Dispatches made, retries included. */
  attempts: number;
  priority: number;
  payloadBytes: number;
  /**
   * A copy of its payload, so that it can be submitted again; null when it was over DEAD_PAYLOAD_MAX bytes, when
   * the payloads kept passed DEAD_PAYLOADS_MAX bytes (the oldest lose theirs first), or for a graph's node (which
   * means nothing without its inputs).
   */
  payload: Buffer | null;
  /** Whether it was one of a graph's nodes. */
  graphNode: boolean;
  /** The core's clock (ms) when it was submitted, and when it failed. */
  submittedAt: number;
  failedAt: number;
}

/** The largest payload a dead letter keeps a copy of. */
export const DEAD_PAYLOAD_MAX = 64 * 1024;
/** Bytes of payloads all dead letters together keep at most. */
export const DEAD_PAYLOADS_MAX = 16 * 1024 * 1024;

/** What the core counts, for metrics: read at scrape time, never copied on the way. */
export interface CoreMetrics {
  /** Per job type (capped: see counters.ts), the live counters objects. */
  types: readonly TypeCounters[];
  /** Submission to completion, of every task that completed (a graph's nodes each count). */
  latency: LatencyHistogram;
}

export interface CoreStats {
  /** Tasks waiting for a worker. */
  queued: number;
  /** Bytes of their bodies. */
  queuedBytes: number;
  /** Tasks running on a worker. */
  inFlight: number;
  /** Tasks waiting out a delay or a retry backoff. */
  delayed: number;
  workers: number;
  clients: number;
  submitted: number;
  dispatched: number;
  completed: number;
  failed: number;
  /** Jobs cancelled by id (not those dropped because their client left). */
  cancelled: number;
  /** Tasks put back in the queue after a worker was lost or a task timed out. */
  requeued: number;
  /** Handler failures retried. */
  retried: number;
  timedOut: number;
  /** Submissions refused (queue full, too many pending, shutting down). */
  rejected: number;
  /** Results that arrived for a lease already taken back (timed out, client gone): dropped. */
  late: number;
  /** Results dropped because their client had left or the job was cancelled. */
  discarded: number;
  /** Failed tasks remembered in deadLetters() (bounded by deadLetterLimit). */
  deadLetters: number;
  /** Finished detached jobs whose records are kept. */
  finishedJobs: number;
}

/** A worker's report on a task: a result of its own shape (R), passed on as it is, or a failure. */
export type OutcomeInput<R> = ({ ok: true } & R) | { ok: false; code: string; message: string };

/** What cancel() did: the job was cancelled now, it had already finished, or no job has that id. */
export type CancelOutcome = 'cancelled' | 'finished' | 'unknown';

export class SchedulerCore<H, R = unknown> {
  private readonly out: CoreOutput<H, R>;
  private readonly config: Required<CoreOptions>;
  private readonly queues = new Map<string, Queue<H>>();
  private readonly clients = new Set<ClientRecord<H>>();
  private readonly workers = new Set<WorkerRecord<H>>();
  /** Running tasks by timeout, so those overdue are found without scanning. */
  private readonly deadlines = new TimerWheel<Task<H>>();
  /** Jobs waiting out a delay or a retry backoff. */
  private readonly delayed = new TimerWheel<Task<H>>();
  /** Queues holding tasks while no worker runs their type, due when their oldest task has waited too long. */
  private readonly orphans = new TimerWheel<Queue<H>>();
  /** Every unsettled job by id: its task object, or the lane holding its row. */
  private readonly jobs = new JobIndex<Task<H> | Lane<H> | Graph<H>>();
  /** Finished detached jobs' records. */
  private readonly finished: FinishedJobs<R>;
  /** The ids of the latest jobs, a ring, for jobs(). */
  private readonly recent = new Float64Array(RECENT_JOBS);
  private recentCount = 0;
  /** Clients waiting for a job by id: job id -> [client, request id] pairs. */
  private readonly waiters = new Map<number, [ClientRecord<H>, number][]>();
  private readonly dead: DeadLetter[] = [];
  /** Bytes of the payloads the dead letters keep, and the index of the oldest one that may still keep one. */
  private deadPayloadBytes = 0;
  private deadPayloadFrom = 0;
  /** Counters by job type, outliving queues; each queue and task holds its own type's. */
  private readonly typeCounters = new CountersTable();
  private readonly latency = new LatencyHistogram();
  private readonly defaults: Settings;
  private readonly detachedDefaults: Settings;
  /** How rows become task objects, and lanes are forgotten (see TypeQueue). */
  private readonly taker: RowTaker<CoreKinds<H>>;
  private nextPeerId = 1;
  private nextSeq: number;
  private queued = 0;
  private queuedBytes = 0;
  private inFlight = 0;
  private draining = false;
  private readonly counters = {
    submitted: 0,
    dispatched: 0,
    completed: 0,
    failed: 0,
    cancelled: 0,
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
    const c = this.config;
    this.defaults = { timeoutMs: c.timeoutMs, retries: 0, backoffMs: c.backoffMs, priority: 0, detached: false };
    this.detachedDefaults = { ...this.defaults, detached: true };
    this.nextSeq = c.firstJobId;
    this.finished = new FinishedJobs<R>({ maxCount: c.maxFinishedJobs, maxAgeMs: c.finishedTtlMs, maxBytes: c.maxFinishedBytes });
    this.taker = {
      fromRow: (lane, seq, requestId, time, body, settings) => {
        const task = newTask(seq, lane.queue.type, body, requestId, lane.owner, settings, time, lane.queue.counters);
        this.jobs.set(seq, task);
        if (lane.owner !== null) this.adopt(task);
        return task;
      },
      laneEmptied: (lane) => this.forgetLane(lane),
    };
  }

  stats(): CoreStats {
    return {
      queued: this.queued,
      queuedBytes: this.queuedBytes,
      inFlight: this.inFlight,
      delayed: this.delayed.size,
      workers: this.workers.size,
      clients: this.clients.size,
      ...this.counters,
      deadLetters: this.dead.length,
      finishedJobs: this.finished.size,
    };
  }

  /** The most recent failures, oldest first. */
  deadLetters(): DeadLetter[] {
    return this.dead.map((entry) => ({ ...entry }));
  }

  /** The counters behind the metrics (live objects: read them, do not keep them). */
  metrics(): CoreMetrics {
    return { types: this.typeCounters.all(), latency: this.latency };
  }

  /**
   * What waits in each queue, per job type and priority: how many tasks, and when the oldest was submitted.
   * O(job types + priorities in use), not O(tasks) (with fairness, plus the clients with rows).
   */
  queueDepths(): QueueDepth[] {
    const out: QueueDepth[] = [];
    for (const queue of this.queues.values()) queue.depths(out);
    return out;
  }

  /** Tasks not yet settled: queued, running or delayed. */
  get unsettled(): number {
    return this.queued + this.inFlight + this.delayed.size;
  }

  /**
   * Every unsettled task of a client, for tests and debugging: it walks every queued row, so never call it on a
   * hot path. Tasks still queued as rows come back as copies.
   */
  tasksOf(client: ClientRecord<H>): Task<H>[] {
    const out: Task<H>[] = [];
    for (let task = client.firstTask; task; task = task.nextOfClient) out.push(task);
    for (const queue of this.queues.values()) {
      for (const lane of queue.lanes()) {
        if (lane.owner !== client) continue;
        lane.rows.forEach((requestId, seq, time, body) => {
          out.push(newTask(seq, queue.type, body(), requestId, client, lane.detached ? this.detachedDefaults : this.defaults, time, queue.counters));
        });
      }
    }
    return out;
  }

  /** Number of per-type queues alive; exposed for leak checks in tests. */
  get queueCount(): number {
    return this.queues.size;
  }

  /** Unsettled jobs in the index by id; exposed for leak checks in tests. */
  get indexedJobs(): number {
    return this.jobs.size;
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
      detachedLanes: new Map(),
      tenantLanes: null,
      lastLane: null,
      waits: null,
      graphs: null,
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
        if (queue.workers++ === 0) this.unorphan(queue);
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
      if (task.state !== TaskState.RUNNING) continue; // its graph failed on an earlier one, and withdrew it
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

  /**
   * A client is gone. Its attached jobs go with it: nothing runs for nobody, so queued and delayed ones are
   * dropped and running ones withdrawn from their workers. Its detached jobs carry on, owned by nobody.
   */
  private clientLost(
    client: ClientRecord<H>,
    reason: string,
    cancelMessage = 'the task was cancelled: its client disconnected',
    ending = false,
  ): void {
    if (!this.clients.delete(client)) return;
    const touched = new Set<Queue<H>>();
    for (let task = client.firstTask; task; task = task.nextOfClient) {
      task.owner = null;
      if (task.detached && !ending) continue; // at shutdown() detached jobs end with the rest
      this.withdraw(task, cancelMessage, touched);
      task.counters.dropped++;
      task.state = TaskState.DONE;
      this.jobs.delete(task.seq);
      this.dropWaiters(task.seq, ErrorCode.CANCELLED, cancelMessage);
    }
    for (const graph of client.graphs ?? []) {
      graph.owner = null;
      if (graph.detached && !ending) continue;
      this.endGraph(graph, 'cancelled', ErrorCode.CANCELLED, cancelMessage, null);
    }
    client.graphs = null;
    const tenantLanes = client.tenantLanes === null ? [] : [...client.tenantLanes.values()].flatMap((m) => [...m.values()]);
    // Its attached rows go lane by lane, in O(job types) plus their index entries.
    for (const lane of [...client.lanes.values(), ...tenantLanes.filter((l) => !l.detached)]) {
      const queue = lane.queue;
      const bytes = lane.bytes;
      lane.rows.forEach((_requestId, seq) => {
        this.jobs.delete(seq);
        this.dropWaiters(seq, ErrorCode.CANCELLED, cancelMessage);
      });
      const dropped = queue.dropLane(lane);
      queue.counters.dropped += dropped;
      this.queued -= dropped;
      this.queuedBytes -= bytes;
      touched.add(queue);
    }
    for (const lane of [...client.detachedLanes.values(), ...tenantLanes.filter((l) => l.detached)]) {
      if (!ending) {
        lane.owner = null;
        continue;
      }
      const queue = lane.queue;
      const bytes = lane.bytes;
      lane.rows.forEach((_requestId, seq) => this.jobs.delete(seq));
      const dropped = queue.dropLane(lane);
      queue.counters.dropped += dropped;
      this.queued -= dropped;
      this.queuedBytes -= bytes;
      touched.add(queue);
    }
    client.firstTask = client.lastTask = null;
    client.lanes.clear();
    client.detachedLanes.clear();
    client.tenantLanes = null;
    client.lastLane = null;
    client.pending = client.pendingBytes = 0;
    if (client.waits !== null) {
      for (const jobId of client.waits.keys()) this.unwait(jobId, client);
      client.waits = null;
    }
    for (const queue of touched) this.dropQueueIfIdle(queue.type);
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
   * Advances the clock and acts on it: running tasks past their timeout are taken back, delayed jobs whose time
   * came are queued, jobs that waited too long for a worker fail, old finished records go. A deadline is due once
   * `now` has reached it: never before, and at most one tick after.
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
        if (task.state !== TaskState.RUNNING) continue; // its graph failed on an earlier one, and withdrew it
        const worker = task.worker!;
        this.counters.timedOut++;
        task.counters.timedOut++;
        const message = `timed out after ${task.timeoutMs} ms on worker ${worker.name}`;
        this.revoke(task, ErrorCode.TIMEOUT, message);
        const queue = this.fault(task, worker, message, true);
        if (queue) touched.add(queue);
      }
      this.refill(touched);
    }
    if (this.delayed.size > 0) {
      const touched = new Set<Queue<H>>();
      for (const task of this.delayed.popDue(now).sort((a, b) => a.seq - b.seq)) {
        if (task.state === TaskState.DELAYED) touched.add(this.requeue(task, task.avoid));
      }
      this.refill(touched);
    }
    if (this.orphans.size > 0) for (const queue of this.orphans.popDue(now)) this.expireOrphans(queue);
    this.finished.expire(now);
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
      for (const lane of queue.lanes()) {
        const owner = lane.owner;
        if (owner === null) continue;
        lane.rows.forEach((requestId, seq, time, body) => failed(newTask(seq, queue.type, body(), requestId, owner, this.defaults, time, queue.counters), owner));
      }
    }
    for (const client of [...this.clients]) {
      for (let task = client.firstTask; task; task = task.nextOfClient) failed(task, client);
      for (const graph of client.graphs ?? []) {
        this.counters.failed++;
        this.out.sendFailed(client, graph.requestId, ErrorCode.SHUTDOWN, message);
      }
      for (const [jobId, requests] of client.waits ?? []) {
        for (const requestId of requests) this.out.sendFailed(client, requestId, ErrorCode.SHUTDOWN, message);
        this.unwait(jobId, client);
      }
      client.waits = null;
      this.clientLost(client, message, `the task was cancelled: ${message}`, true);
    }
    for (const worker of [...this.workers]) this.workerLost(worker, message);
    // What is left are detached jobs that nobody owned any more. The scheduler ends, and with no journal to keep
    // them they end with it, unanswered (there is nobody to answer).
    this.queues.clear();
    this.delayed.clear();
    this.deadlines.clear();
    this.orphans.clear();
    this.jobs.clear();
    this.waiters.clear();
    this.queued = this.queuedBytes = this.inFlight = 0;
  }

  // ---- jobs --------------------------------------------------------------------------------------------------

  /**
   * Accepts a job and returns its id, dispatching it at once or queueing it (as a row when no worker of its type
   * has a free slot); with a delay it waits first. A refusal under a limit is answered to the client as a failed
   * request, and returns 0.
   *
   * Request ids are the client's to keep unique among its unsettled jobs; they are not checked here, as an index
   * of every request would cost more memory than a queued row. A client that reuses one gets both answers under
   * it.
   */
  submit(client: ClientRecord<H>, requestId: number, type: string, body: Buffer, options?: SubmitOptions): number {
    if (!this.clients.has(client)) return 0;
    const queue = this.queueFor(type);
    const delayed = options !== undefined && options.delayMs !== undefined && options.delayMs > 0;
    const slot = delayed ? null : queue.ready.pick();
    const size = body.length;
    const refusal = this.refusal(client, size, slot === null); // a delayed job will wait: the queue limits apply
    if (refusal) {
      queue.counters.rejected++;
      this.dropQueueIfIdle(type);
      this.refuse(client, requestId, refusal.code, refusal.message);
      return 0;
    }
    const seq = this.admit(client, size);
    const settings = options ? this.settings(options) : this.defaults;
    queue.counters.submitted++;
    if (delayed) {
      const task = this.adopt(newTask(seq, type, detachBody(body), requestId, client, settings, this.now, queue.counters));
      task.state = TaskState.DELAYED;
      this.jobs.set(seq, task);
      this.delayed.add(task, this.now, Math.min(options.delayMs!, MAX_DELAY_MS));
      this.dropQueueIfIdle(type);
      return seq;
    }
    if (slot) {
      const task = this.adopt(newTask(seq, type, body, requestId, client, settings, this.now, queue.counters));
      this.jobs.set(seq, task);
      this.assign(slot.worker, task);
      queue.ready.gave(slot);
      return seq;
    }
    const lane = this.laneOf(client, queue.level(settings.priority), settings.detached, options?.tenant ?? null);
    queue.push(lane, seq, requestId, this.now, body, settings);
    this.jobs.set(seq, lane);
    this.queued++;
    this.queuedBytes += size;
    if (queue.workers === 0) this.orphan(queue);
    this.out.taskQueued?.(seq >>> 0, type, client, requestId, body);
    return seq;
  }

  /**
   * Accepts a graph job and returns its id (0 if it is refused: a bad shape is E_GRAPH, a limit as for submit()).
   * Its nodes without inputs are queued at once; each other node when all its inputs have completed, with their
   * results. The graph answers `requestId` with its root's result, or fails with the first node that fails. The
   * options apply to every node; a graph takes no delay.
   */
  submitGraph(client: ClientRecord<H>, requestId: number, specs: readonly GraphNodeSpec[], options?: SubmitOptions): number {
    if (!this.clients.has(client)) return 0;
    const c = this.config;
    let size = 0;
    for (const spec of specs) size += spec.body.length;
    const refusal =
      options?.delayMs !== undefined && options.delayMs > 0
        ? { code: ErrorCode.INVALID, message: 'a graph job takes no delay' }
        : mapShape(checkGraph(specs, { maxNodes: c.maxGraphNodes, maxEdges: c.maxGraphEdges })) ?? this.refusal(client, size, true);
    if (refusal) {
      this.refuse(client, requestId, refusal.code, refusal.message);
      return 0;
    }
    const seq = this.admit(client, size);
    const settings = options ? this.settings(options) : this.defaults;
    const nodes = specs.map((spec) => ({ type: spec.type, body: detachBody(spec.body), inputs: spec.inputs }));
    const graph: Graph<H> = new GraphRun(seq, requestId, client, settings, this.now, nodes, size);
    (client.graphs ??= new Set()).add(graph);
    this.jobs.set(seq, graph);
    for (const index of graph.sources()) this.launch(graph, index);
    return seq;
  }

  /**
   * Refuses a submission: one under a limit here, or one the shell could not accept (too large to read or to send
   * on). Answers that request alone.
   */
  refuse(client: ClientRecord<H>, requestId: number, code: string, message: string): void {
    if (!this.clients.has(client)) return;
    this.counters.rejected++;
    this.out.sendFailed(client, requestId, code, message);
  }

  /** An accepted job's id, its bytes counted against its client until it settles; in the latest jobs' ring. */
  private admit(client: ClientRecord<H>, size: number): number {
    const seq = this.nextSeq++;
    this.recent[this.recentCount++ % RECENT_JOBS] = seq;
    client.pending++;
    client.pendingBytes += size;
    this.counters.submitted++;
    return seq;
  }

  /**
   * Cancels a job by id, from any client: a queued or delayed job is removed, a running one is withdrawn from its
   * worker (its handler's signal fires; the slot stays busy until the worker answers, and that answer is dropped).
   * Its owner and everyone waiting for it are answered E_CANCELLED. A finished job is left as it is.
   */
  cancel(jobId: number, message = 'the job was cancelled'): CancelOutcome {
    const entry = this.jobs.get(jobId);
    if (entry === undefined) return this.finished.get(jobId) ? 'finished' : 'unknown';
    if (entry instanceof GraphRun) {
      this.counters.cancelled++;
      this.endGraph(entry, 'cancelled', ErrorCode.CANCELLED, message, null);
      return 'cancelled';
    }
    const touched = new Set<Queue<H>>();
    if (entry instanceof QueueLane) touched.add(entry.queue);
    const task = entry instanceof QueueLane ? this.takeOut(entry, jobId) : entry;
    if (task === null) return 'unknown';
    this.withdraw(task, message, touched);
    this.counters.cancelled++;
    task.counters.cancelled++;
    this.settle(task, 'cancelled', ErrorCode.CANCELLED, message, null);
    for (const queue of touched) this.dropQueueIfIdle(queue.type);
    return 'cancelled';
  }

  /** A job's status by id: an unsettled job, or a finished detached one still on record; null if neither. */
  status(jobId: number): JobStatus<R> | null {
    const entry = this.jobs.get(jobId);
    if (entry === undefined) return this.finished.get(jobId) ?? null;
    if (entry instanceof GraphRun) return this.describeGraph(entry, entry.state, null, null);
    if (!(entry instanceof QueueLane)) return this.describe(entry, stateOf(entry), null, null);
    const row = entry.rows.find(jobId);
    if (row === null) return null;
    const task = newTask(jobId, entry.queue.type, row.body, row.requestId, entry.owner, row.options, row.time, entry.queue.counters);
    return this.describe(task, 'queued', null, null);
  }

  /**
   * Answers `requestId` of `client` with the job's outcome once it has one: at once for a finished job on record,
   * E_NO_SUCH_JOB for an unknown id. Progress reports reach the waiter too.
   */
  wait(client: ClientRecord<H>, requestId: number, jobId: number): void {
    if (!this.clients.has(client)) return;
    if (this.jobs.get(jobId) === undefined) {
      const record = this.finished.get(jobId);
      if (record === undefined) {
        this.out.sendFailed(client, requestId, ErrorCode.NO_SUCH_JOB, `no job ${jobId}: it never existed, or it finished and its record is gone`);
      } else if (record.state === 'completed') {
        if (record.result === undefined) this.out.sendFailed(client, requestId, ErrorCode.NO_SUCH_JOB, `job ${jobId} completed; its result was not kept`);
        else this.out.sendCompleted(client, requestId, record.result);
      } else {
        this.out.sendFailed(client, requestId, record.error!.code, record.error!.message);
      }
      return;
    }
    let list = this.waiters.get(jobId);
    if (list === undefined) this.waiters.set(jobId, (list = []));
    list.push([client, requestId]);
    client.waits ??= new Map();
    const mine = client.waits.get(jobId);
    if (mine) mine.push(requestId);
    else client.waits.set(jobId, [requestId]);
  }

  /** The latest jobs (at most RECENT_JOBS back), newest first, in `state` if given: unsettled ones and finished ones on record. */
  recentJobs(limit = 100, state?: JobState): JobStatus<R>[] {
    const out: JobStatus<R>[] = [];
    const n = Math.min(this.recentCount, RECENT_JOBS);
    for (let i = 1; i <= n && out.length < limit; i++) {
      const status = this.status(this.recent[(this.recentCount - i) % RECENT_JOBS]!);
      if (status !== null && (state === undefined || status.state === state)) out.push(status);
    }
    return out;
  }

  /**
   * A handler reported progress on a lease. The latest report is the job's; its owner and waiters get one at most
   * every PROGRESS_INTERVAL_MS. A report on a lease the worker does not hold (any more) is dropped.
   */
  progress(worker: WorkerRecord<H>, taskId: number, attempt: number, value: number, message: string): void {
    const task = worker.running.get(taskId);
    if (task === undefined || task.attempt !== attempt) return;
    if (task.graph !== null) return; // a graph's progress is its nodes done (graphProgress())
    const last = task.progress;
    const send = last === null || this.now - last.sentAt >= PROGRESS_INTERVAL_MS;
    task.progress = { value, message, at: this.now, sentAt: send ? this.now : last!.sentAt };
    if (!send || this.out.sendProgress === undefined) return;
    if (task.owner) this.out.sendProgress(task.owner, task.requestId, task.seq, value, message);
    for (const [client, requestId] of this.waiters.get(task.seq) ?? []) this.out.sendProgress(client, requestId, task.seq, value, message);
  }

  /**
   * Takes a task object out of where it waits or runs, for good: its queue (which goes into `touched`), the
   * delays, or its worker, which is told to abort it with E_CANCELLED and whose answer will be discarded.
   */
  private withdraw(task: Task<H>, message: string, touched: Set<Queue<H>>): void {
    if (task.state === TaskState.QUEUED) {
      const queue = this.queues.get(task.type)!;
      queue.remove(task);
      this.queued--;
      this.queuedBytes -= task.body.length;
      touched.add(queue);
    } else if (task.state === TaskState.DELAYED) {
      this.delayed.remove(task);
    } else if (task.state === TaskState.RUNNING) {
      this.revoke(task, ErrorCode.CANCELLED, message, true);
    }
  }

  /** A queued row taken out of its lane as a task object (for cancel or expiry), or null if it is not there. */
  private takeOut(lane: Lane<H>, jobId: number): Task<H> | null {
    const row = lane.rows.find(jobId);
    if (row === null) return null;
    const queue = lane.queue;
    const task = newTask(jobId, queue.type, row.body, row.requestId, lane.owner, row.options, row.time, queue.counters);
    queue.removeRow(lane, jobId);
    this.queued--;
    this.queuedBytes -= task.body.length;
    this.jobs.set(jobId, task);
    if (lane.owner !== null) this.adopt(task);
    task.state = TaskState.DONE;
    return task;
  }

  private describe(task: Task<H>, state: JobState, result: R | null, error: { code: string; message: string } | null): JobStatus<R> {
    const p = task.progress;
    const status: JobStatus<R> = {
      id: task.seq,
      type: task.type,
      state,
      priority: task.priority,
      detached: task.detached,
      attempts: task.attempt,
      worker: task.worker?.name ?? task.lastWorker,
      submittedAt: task.submittedAt,
      startedAt: task.startedAt || null,
      finishedAt: state === 'completed' || state === 'failed' || state === 'cancelled' ? this.now : null,
      runAt: task.state === TaskState.DELAYED ? task.deadline : null,
      progress: p === null ? null : { value: p.value, message: p.message },
    };
    if (result !== null) status.result = result;
    if (error !== null) status.error = error;
    return status;
  }

  // ---- graphs -------------------------------------------------------------------------------------------------

  /** A graph's node whose inputs are all there becomes a task: dispatched at once to a free worker, else queued. */
  private launch(graph: Graph<H>, index: number): void {
    if (graph.settled) return; // an earlier node of the same turn ended it
    const node = graph.nodes[index]!;
    const queue = this.queueFor(node.type);
    const task = newTask<H>(graph.seq, node.type, node.body, 0, null, graph.settings, this.now, queue.counters, this.nextSeq++ >>> 0);
    task.graph = graph;
    task.node = index;
    if (node.inputs.length > 0) task.inputs = graph.inputsOf(index);
    node.task = task;
    graph.active++;
    queue.counters.submitted++;
    const tooLarge = task.inputs !== null ? (this.out.nodeTooLarge?.(task) ?? null) : null;
    if (tooLarge !== null) {
      this.fail(task, ErrorCode.TOO_LARGE, tooLarge);
      return this.dropQueueIfIdle(node.type);
    }
    const slot = queue.ready.pick();
    if (slot !== null) {
      this.assign(slot.worker, task);
      queue.ready.gave(slot);
      return;
    }
    task.state = TaskState.QUEUED;
    queue.requeue(task, null);
    this.queued++;
    this.queuedBytes += task.body.length;
    if (queue.workers === 0) this.orphan(queue);
  }

  /** A node's task settled: a completion feeds its consumers (or answers the graph, from the root); anything else ends the graph. */
  private nodeSettled(task: Task<H>, state: 'completed' | 'failed' | 'cancelled', code: string, message: string, result: R | null): void {
    const graph = task.graph!;
    task.state = TaskState.DONE;
    task.inputs = null;
    if (graph.settled) return;
    const index = task.node;
    if (result === null) {
      graph.ended(index);
      const cause = state === 'cancelled' ? message : `node ${index} (${task.type}) failed: ${message}`;
      return this.endGraph(graph, state === 'cancelled' ? 'cancelled' : 'failed', code, cause, null);
    }
    if (index === graph.root) {
      graph.completed(index, result, 0);
      return this.endGraph(graph, 'completed', '', '', result);
    }
    const kept = this.out.retainResult ? this.out.retainResult(result) : { result, bytes: 0 };
    const runnable = graph.completed(index, kept.result, kept.bytes);
    if (graph.bytes > this.config.maxGraphBytes) {
      const limit = this.config.maxGraphBytes;
      const cause = `node ${index} (${task.type}) brought the results the graph holds to ${graph.bytes} bytes; at most ${limit} are allowed (maxGraphBytes)`;
      return this.endGraph(graph, 'failed', ErrorCode.GRAPH_MEMORY, cause, null);
    }
    this.graphProgress(graph);
    for (const next of runnable) this.launch(graph, next);
  }

  /** Nodes done of the total, to the graph's owner and waiters, at most every PROGRESS_INTERVAL_MS. */
  private graphProgress(graph: Graph<H>): void {
    if (this.out.sendProgress === undefined || this.now - graph.progressSentAt < PROGRESS_INTERVAL_MS) return;
    graph.progressSentAt = this.now;
    const message = `${graph.done}/${graph.nodes.length} nodes done`;
    if (graph.owner) this.out.sendProgress(graph.owner, graph.requestId, graph.seq, graph.done, message);
    for (const [client, requestId] of this.waiters.get(graph.seq) ?? []) this.out.sendProgress(client, requestId, graph.seq, graph.done, message);
  }

  /**
   * A graph's end, once: every node task still alive is withdrawn (a running one's worker is told to abort it),
   * the results it holds go, and its owner and waiters are answered as for any job.
   */
  private endGraph(graph: Graph<H>, state: 'completed' | 'failed' | 'cancelled', code: string, message: string, result: R | null): void {
    if (graph.settled) return;
    const touched = new Set<Queue<H>>();
    for (const task of graph.close()) {
      this.withdraw(task, message, touched);
      task.counters.cancelled++;
      task.state = TaskState.DONE;
      task.inputs = null;
    }
    for (const queue of touched) this.dropQueueIfIdle(queue.type);
    this.jobs.delete(graph.seq);
    const owner = graph.owner;
    if (owner !== null) {
      owner.graphs?.delete(graph);
      owner.pending--;
      owner.pendingBytes -= graph.bodyBytes;
    }
    if (state === 'completed') this.counters.completed++;
    else if (state === 'failed') this.counters.failed++;
    this.answer(owner, graph.requestId, graph.seq, code, message, result);
    if (!graph.detached || this.config.maxFinishedJobs === 0) return;
    const kept = result !== null && this.out.retainResult ? this.out.retainResult(result) : null;
    const status = this.describeGraph(graph, state, kept?.result ?? null, result === null ? { code, message } : null);
    this.finished.add(status, kept?.bytes ?? 0);
  }

  private describeGraph(graph: Graph<H>, state: JobState, result: R | null, error: { code: string; message: string } | null): JobStatus<R> {
    const total = graph.nodes.length;
    const status: JobStatus<R> = {
      id: graph.seq,
      type: 'graph',
      state,
      priority: graph.priority,
      detached: graph.detached,
      attempts: graph.dispatches,
      worker: graph.lastWorker,
      submittedAt: graph.submittedAt,
      startedAt: graph.startedAt || null,
      finishedAt: state === 'completed' || state === 'failed' || state === 'cancelled' ? this.now : null,
      runAt: null,
      progress: { value: graph.done, message: `${graph.done}/${total} nodes done` },
      nodes: { total, done: graph.done, bytes: graph.bytes },
    };
    if (result !== null) status.result = result;
    if (error !== null) status.error = error;
    return status;
  }

  /**
   * A job's end, for everyone but the worker: its owner (if still there) and waiters are answered, its index entry
   * goes, and a detached job leaves a record. `result` is the worker's, for a completion.
   */
  private settle(task: Task<H>, state: 'completed' | 'failed' | 'cancelled', code: string, message: string, result: R | null): void {
    if (task.graph !== null) return this.nodeSettled(task, state, code, message, result);
    task.state = TaskState.DONE;
    this.jobs.delete(task.seq);
    const owner = task.owner;
    if (owner !== null) this.disown(owner, task);
    this.answer(owner, task.requestId, task.seq, code, message, result);
    if (!task.detached || this.config.maxFinishedJobs === 0) return;
    const kept = result !== null && this.out.retainResult ? this.out.retainResult(result) : null;
    const status = this.describe(task, state, kept?.result ?? null, result === null ? { code, message } : null);
    this.finished.add(status, kept?.bytes ?? 0);
  }

  /** A job's outcome to its owner's request (if it has an owner still) and to everyone waiting for it. */
  private answer(owner: ClientRecord<H> | null, requestId: number, jobId: number, code: string, message: string, result: R | null): void {
    if (owner !== null) {
      if (result !== null) this.out.sendCompleted(owner, requestId, result);
      else this.out.sendFailed(owner, requestId, code, message);
    }
    const waiting = this.waiters.size > 0 ? this.waiters.get(jobId) : undefined;
    if (waiting === undefined) return;
    this.waiters.delete(jobId);
    for (const [client, request] of waiting) {
      client.waits?.delete(jobId);
      if (result !== null) this.out.sendCompleted(client, request, result);
      else this.out.sendFailed(client, request, code, message);
    }
  }

  /** The waiters of a job that goes without an answer of its own (its client left): told why. */
  private dropWaiters(jobId: number, code: string, message: string): void {
    const waiting = this.waiters.get(jobId);
    if (waiting === undefined) return;
    this.waiters.delete(jobId);
    for (const [client, requestId] of waiting) {
      client.waits?.delete(jobId);
      this.out.sendFailed(client, requestId, code, message);
    }
  }

  /** Forgets a departed client's waits for a job. */
  private unwait(jobId: number, client: ClientRecord<H>): void {
    const list = this.waiters.get(jobId);
    if (list === undefined) return;
    const kept = list.filter(([c]) => c !== client);
    if (kept.length > 0) this.waiters.set(jobId, kept);
    else this.waiters.delete(jobId);
  }

  private settings(options: SubmitOptions): Settings {
    return {
      timeoutMs: options.timeoutMs || this.config.timeoutMs,
      // Capped so a task's dispatch count stays small (the worker keys leases by task id and attempt).
      retries: Math.min(options.retries ?? 0, MAX_RETRIES),
      backoffMs: options.backoffMs || this.config.backoffMs,
      priority: options.priority ?? 0,
      detached: options.detach ?? false,
    };
  }

  /** Records a task object as its owner's. */
  private adopt(task: Task<H>): Task<H> {
    const client = task.owner!;
    const last = client.lastTask;
    task.prevOfClient = last;
    if (last) last.nextOfClient = task;
    else client.firstTask = task;
    client.lastTask = task;
    return task;
  }

  /** Unlinks a settled task from its owner's task objects and its body from the owner's budget. */
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
   * The client's lane in a level (a job type and priority), attached or detached, made on first use. A lane goes
   * as soon as its last row leaves (forgetLane()), so a client holds lanes only where it has rows: a client
   * submitting a new job type with every task costs O(1) per task, not a scan of its lanes.
   */
  private laneOf(client: ClientRecord<H>, level: Level<H>, detached: boolean, tenant: number | null): Lane<H> {
    const last = client.lastLane;
    if (last !== null && last.level === level && last.detached === detached && last.tenant === tenant) return last;
    let lane: Lane<H> | undefined;
    if (tenant === null) {
      const lanes = detached ? client.detachedLanes : client.lanes;
      lane = lanes.get(level);
      if (lane === undefined) lanes.set(level, (lane = new QueueLane<CoreKinds<H>>(client, detached, level)));
    } else {
      client.tenantLanes ??= new Map();
      let lanes = client.tenantLanes.get(level);
      if (lanes === undefined) client.tenantLanes.set(level, (lanes = new Map()));
      const key = tenant * 2 + (detached ? 1 : 0);
      lane = lanes.get(key);
      if (lane === undefined) lanes.set(key, (lane = new QueueLane<CoreKinds<H>>(client, detached, level, tenant)));
    }
    // The lane it replaces as the last one goes if it is empty (see forgetLane()).
    if (last !== null && last.rows.size === 0) this.unlist(client, last);
    client.lastLane = lane;
    return lane;
  }

  /** Takes a lane out of its client's maps. */
  private unlist(client: ClientRecord<H>, lane: Lane<H>): void {
    if (lane.tenant === null) {
      const lanes = lane.detached ? client.detachedLanes : client.lanes;
      if (lanes.get(lane.level) === lane) lanes.delete(lane.level);
      return;
    }
    const lanes = client.tenantLanes?.get(lane.level);
    const key = lane.tenant * 2 + (lane.detached ? 1 : 0);
    if (lanes?.get(key) !== lane) return;
    lanes.delete(key);
    if (lanes.size === 0) client.tenantLanes!.delete(lane.level);
  }

  /** A lane with no rows left: its client forgets it, so a client's lanes are only those holding rows. */
  private forgetLane(lane: Lane<H>): void {
    const client = lane.owner;
    // The lane used last is kept, empty, for the client's next submission, which nearly always goes to it:
    // making a lane and its rows again whenever a client's queue ran dry cost 1-2 µs a task with 256 clients.
    // One lane a client at most, so a client cycling through job types still holds nothing for them.
    if (client === null || client.lastLane === lane) return;
    this.unlist(client, lane);
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
      const discard = worker.revoked.get(key);
      if (discard === undefined) {
        return new TaskwireError(ErrorCode.PROTOCOL, `result for task ${taskId} attempt ${attempt}, which this worker does not hold`);
      }
      worker.revoked.delete(key);
      if (discard) this.counters.discarded++;
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
    if (task.graph === null) this.counters.completed++; // a graph counts once, when it ends
    task.counters.completed++;
    this.latency.observe(this.now - task.submittedAt);
    this.settle(task, 'completed', '', '', result);
    this.out.taskCompleted?.(task, worker);
  }

  private fail(task: Task<H>, code: string, message: string): void {
    if (task.graph === null) this.counters.failed++;
    task.counters.failed++;
    this.remember(task, code, message);
    this.settle(task, 'failed', code, message, null);
    this.out.taskFailed?.(task, code, message);
  }

  /** A handler failure with retries left: back in the queue after an exponential backoff, for another worker. */
  private retry(task: Task<H>, worker: WorkerRecord<H>, message: string): void {
    task.retriesLeft--;
    task.retried++;
    this.counters.retried++;
    task.counters.retried++;
    task.state = TaskState.DELAYED;
    task.body = detachBody(task.body);
    task.avoid = worker;
    const delay = Math.min(task.backoffMs * 2 ** (task.retried - 1), 86_400_000);
    this.delayed.add(task, this.now, delay);
    this.out.taskRequeued?.(task, worker, `handler failed (${message}); retry ${task.retried} in ${delay} ms`, 'retry');
  }

  /**
   * An infrastructure fault ended the task's current attempt. Requeues it (returning its queue), for another
   * worker than this one if `avoid` (a timeout: the worker may be stuck), or, on its maxAttempts-th fault, fails it
   * with E_ATTEMPTS so a task that kills every worker cannot loop forever.
   */
  private fault(task: Task<H>, worker: WorkerRecord<H>, reason: string, avoid: boolean): Queue<H> | null {
    if (unwanted(task)) {
      task.state = TaskState.DONE; // its client left; nobody waits for it
      return null;
    }
    task.faults++;
    if (task.faults >= this.config.maxAttempts) {
      this.fail(task, ErrorCode.ATTEMPTS, `gave up after ${task.faults} attempts; last: ${reason}`);
      return null;
    }
    this.counters.requeued++;
    task.counters.requeued++;
    const queue = this.requeue(task, avoid ? worker : null);
    this.out.taskRequeued?.(task, worker, reason, avoid ? 'timeout' : 'lost');
    return queue;
  }

  /**
   * Takes a running task back from its worker, telling the worker; its slot stays busy until it answers. With
   * `discard` (nobody wants the answer: its client left, or it was cancelled) that answer counts as discarded,
   * else as late.
   */
  private revoke(task: Task<H>, code: string, message: string, discard = unwanted(task)): void {
    const worker = task.worker!;
    this.release(task, worker);
    if (!this.workers.has(worker)) return; // lost while a graph's failure withdrew its tasks: nothing to tell
    worker.running.delete(task.id);
    worker.revoked.set(`${task.id}:${task.attempt}`, discard);
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

  /**
   * Keeps the latest failures, dropping the oldest past deadLetterLimit, each with a copy of its payload up to
   * DEAD_PAYLOAD_MAX bytes (so it can be submitted again), within DEAD_PAYLOADS_MAX bytes for all of them.
   */
  private remember(task: Task<H>, code: string, message: string): void {
    if (this.config.deadLetterLimit === 0) return;
    if (this.dead.length >= this.config.deadLetterLimit) {
      const gone = this.dead.shift()!; // bounded and small: shift is fine
      if (gone.payload !== null) this.deadPayloadBytes -= gone.payload.length;
      if (this.deadPayloadFrom > 0) this.deadPayloadFrom--;
    }
    const size = task.body.length;
    const keep = task.graph === null && size <= DEAD_PAYLOAD_MAX;
    this.dead.push({
      taskId: task.id,
      jobId: task.seq,
      type: task.type,
      code,
      message,
      attempts: task.attempt,
      priority: task.priority,
      payloadBytes: size,
      payload: keep ? Buffer.copyBytesFrom(task.body) : null,
      graphNode: task.graph !== null,
      submittedAt: task.submittedAt,
      failedAt: this.now,
    });
    if (!keep) return;
    this.deadPayloadBytes += size;
    // Past the budget the oldest letters give their copies up; each letter is passed over once.
    while (this.deadPayloadBytes > DEAD_PAYLOADS_MAX && this.deadPayloadFrom < this.dead.length - 1) {
      const letter = this.dead[this.deadPayloadFrom++]!;
      if (letter.payload === null) continue;
      this.deadPayloadBytes -= letter.payload.length;
      letter.payload = null;
    }
  }

  // ---- dispatch ----------------------------------------------------------------------------------------------

  private assign(worker: WorkerRecord<H>, task: Task<H>): void {
    task.worker = worker;
    task.lastWorker = worker.name;
    task.state = TaskState.RUNNING;
    task.attempt++;
    task.startedAt = this.now;
    const graph = task.graph;
    if (graph !== null) {
      if (graph.dispatches++ === 0) graph.startedAt = this.now;
      graph.lastWorker = worker.name;
    }
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
   * ready list of each of its types. It takes the highest priority first, then the oldest, across its types:
   * O(types it runs), never O(workers).
   */
  private fill(worker: WorkerRecord<H>): void {
    while (!worker.blocked && this.busy(worker) < worker.concurrency) {
      let best: Queue<H> | null = null;
      let bestSeq = Infinity;
      let bestPriority = -Infinity;
      for (const slot of worker.slots) {
        const queue = slot.queue;
        const seq = queue.headSeq(worker);
        if (seq === Infinity) continue;
        const priority = queue.headPriority;
        if (priority > bestPriority || (priority === bestPriority && seq < bestSeq)) {
          best = queue;
          bestSeq = seq;
          bestPriority = priority;
        }
      }
      if (!best) {
        for (const slot of worker.slots) if (!slot.list) slot.queue.ready.add(slot);
        return;
      }
      // Each queue keeps what its own headSeq() found, for its take(): asking the others since changed nothing.
      this.assign(worker, this.take(best, worker));
    }
    this.unready(worker);
  }

  /** Takes the task `worker` gets from `queue`, right after headSeq() found one; a row becomes a Task here. */
  private take(queue: Queue<H>, worker: WorkerRecord<H>): Task<H> {
    this.queued--;
    const task = queue.take(worker);
    this.queuedBytes -= task.body.length;
    return task;
  }

  /** After tasks went back into queues (or a worker left them), the workers waiting on those queues take them. */
  private refill(touched: Set<Queue<H>>): void {
    if (touched.size === 0) return;
    const ready = new Set<WorkerRecord<H>>();
    for (const queue of touched) for (let slot = queue.ready.head; slot; slot = slot.next) ready.add(slot.worker);
    for (const worker of ready) this.fill(worker);
  }

  /**
   * Puts a task back in its queue at the place its submission order gives it, in O(log n): after a fault, at the
   * end of a retry backoff or of its delay. With `avoid`, the other workers of its type get it first, if that
   * worker still runs the type.
   */
  private requeue(task: Task<H>, avoid: WorkerRecord<H> | null): Queue<H> {
    const queue = this.queueFor(task.type);
    task.state = TaskState.QUEUED;
    task.body = detachBody(task.body);
    queue.requeue(task, avoid !== null && avoid.slots.some((slot) => slot.queue === queue) ? avoid : null);
    this.queued++;
    this.queuedBytes += task.body.length;
    if (queue.workers === 0) this.orphan(queue);
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
      if (queue.workers === 0 && queue.live > 0) this.orphan(queue);
      this.dropQueueIfIdle(queue.type);
    }
    worker.slots = [];
  }

  // ---- jobs without a worker ---------------------------------------------------------------------------------

  /** `queue` holds tasks and no worker runs its type: its tasks start counting towards noWorkerTimeoutMs. */
  private orphan(queue: Queue<H>): void {
    if (queue.orphanedAt >= 0 || this.config.noWorkerTimeoutMs === 0) return;
    queue.orphanedAt = this.now;
    this.orphans.add(queue, this.now, this.config.noWorkerTimeoutMs);
  }

  private unorphan(queue: Queue<H>): void {
    queue.orphanedAt = -1;
    this.orphans.remove(queue);
  }

  /**
   * An orphaned queue fell due: its tasks that waited noWorkerTimeoutMs (since their submission or the orphaning,
   * whichever is later) fail with E_NO_WORKER; the queue waits again for its next one.
   */
  private expireOrphans(queue: Queue<H>): void {
    const wait = this.config.noWorkerTimeoutMs;
    const cutoff = this.now - wait; // tasks queued at or before this have waited long enough
    const message = `no worker for job type '${queue.type}' connected within ${wait} ms`;
    const due: Task<H>[] = [];
    let next = Infinity;
    for (const task of queue.requeuedTasks()) {
      if (Math.max(task.submittedAt, queue.orphanedAt) <= cutoff) due.push(task);
      else next = Math.min(next, task.submittedAt);
    }
    for (const task of due) {
      if (task.state !== TaskState.QUEUED) continue; // its graph failed on an earlier one, and withdrew it
      queue.remove(task);
      this.queued--;
      this.queuedBytes -= task.body.length;
      this.fail(task, ErrorCode.NO_WORKER, message);
    }
    for (const lane of [...queue.lanes()]) {
      while (lane.rows.size > 0 && Math.max(lane.rows.time, queue.orphanedAt) <= cutoff) {
        const task = this.takeOut(lane, lane.rows.seq)!;
        this.fail(task, ErrorCode.NO_WORKER, message);
      }
      if (lane.rows.size > 0) next = Math.min(next, lane.rows.time);
    }
    if (queue.live > 0) {
      // Still orphaned since the same moment; what is left was submitted after the cutoff, so its own wait counts.
      this.orphans.add(queue, this.now, next + wait - this.now);
    } else {
      this.dropQueueIfIdle(queue.type);
    }
  }

  private queueFor(type: string): Queue<H> {
    let queue = this.queues.get(type);
    if (!queue) {
      const ready = this.config.strategy === 'least-loaded' ? new LeastLoaded(this.load) : new RoundRobin<Slot<H>>();
      queue = new TypeQueue<CoreKinds<H>>(type, ready, this.config.fair, this.taker, this.typeCounters.of(type));
      this.queues.set(type, queue);
    }
    return queue;
  }

  /** Job types come from peers, so their queues must not outlive their tasks and workers. */
  private dropQueueIfIdle(type: string): void {
    const queue = this.queues.get(type);
    if (queue && queue.workers === 0 && queue.live === 0) {
      if (queue.orphanedAt >= 0) this.unorphan(queue);
      this.queues.delete(type);
    }
  }
}

/** The largest delay a job may ask for: the u32 the protocol carries (about 49.7 days). */
export const MAX_DELAY_MS = 0xffff_ffff;

/** A task nobody wants any more: an attached job whose client left (not a detached job, nor a graph's node). */
function unwanted<H>(task: Task<H>): boolean {
  return task.owner === null && !task.detached && task.graph === null;
}

/** A graph's shape problem as a refusal. */
function mapShape(problem: string | null): { code: string; message: string } | null {
  return problem === null ? null : { code: ErrorCode.GRAPH, message: problem };
}

function stateOf<H>(task: Task<H>): JobState {
  return task.state === TaskState.RUNNING ? 'running' : task.state === TaskState.DELAYED ? 'delayed' : 'queued';
}

function sameTypes(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((type, i) => type === b[i]);
}
