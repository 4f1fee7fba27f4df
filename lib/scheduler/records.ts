// What the scheduling core keeps about tasks and peers. Plain data; the core (core.ts) changes it.

import type { IdTable } from '../id-table.js';
import type { TypeCounters } from './counters.js';
import type { GraphRun } from './graph.js';
import type { Timed } from './timers.js';
import type { Lane as QueueLane, Level as QueueLevel, ReadySlot, TypeQueue } from './type-queue.js';

/** Where a task is. Exactly one holds at any time. */
export const TaskState = {
  /** In its type's queue, waiting for a worker: a row, or an object if it was requeued. */
  QUEUED: 0,
  /** Dispatched; held by `worker` under lease `attempt`. */
  RUNNING: 1,
  /** Waiting out its delay, or a retry backoff, before it is queued (again). */
  DELAYED: 2,
  /** Settled, cancelled, or dropped because its client left. */
  DONE: 3,
} as const;
export type TaskState = (typeof TaskState)[keyof typeof TaskState];

/**
 * A job as an object: a dispatched task, one that was requeued, and one waiting out a delay or a retry backoff.
 * A job that has only been queued is a row of its lane instead (lib/scheduler/queue.ts), and becomes a Task when
 * it is dispatched.
 */
export interface Task<H> extends Timed<Task<H>> {
  /**
   * The job id: unique and never reused in the scheduler's lifetime (ids count up from the scheduler's start
   * time). It also orders tasks across job types and requeues.
   */
  readonly seq: number;
  /** The lease id on the wire to workers (u32; wraps after 2^32 tasks, far beyond any task's lifetime). */
  readonly id: number;
  readonly type: string;
  /** Replaced by a copy when the task goes back to wait (see detachBody()). */
  body: Buffer;
  /** The owner's request this job answers. */
  readonly requestId: number;
  /**
   * Who is answered: the client whose request this is. null once nobody waits for it: a detached job whose
   * client left (it still runs, and waiters and its finished record still learn the outcome), or a job dropped.
   */
  owner: ClientRecord<H> | null;
  /** Survives its owner's departure instead of being cancelled with it. */
  readonly detached: boolean;
  /** Higher runs first; FIFO within one priority. */
  readonly priority: number;
  /** The core's clock when the job was submitted, and when its current attempt was dispatched (0: never). */
  readonly submittedAt: number;
  startedAt: number;
  /** The worker running the task, or null. */
  worker: WorkerRecord<H> | null;
  /** The name of the worker it was dispatched to last, or null. */
  lastWorker: string | null;
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
  /** The worker it timed out or failed on last, which other workers take it from first (see TypeQueue). */
  avoid: WorkerRecord<H> | null;
  /** Its place in a requeued heap, or -1. */
  heapIndex: number;
  /** The last progress its handler reported, or null. */
  progress: Progress | null;
  /** Links among its owner's task objects (see ClientRecord.firstTask). */
  prevOfClient: Task<H> | null;
  nextOfClient: Task<H> | null;
  /**
   * The graph whose node this task runs (its owner is then null: the graph answers), or null. A node's task
   * shares its graph's job id as `seq`, its place in the queue, and has a lease id of its own.
   */
  graph: Graph<H> | null;
  /** Its node's index in the graph. */
  node: number;
  /** The results of the node's inputs, in the order of its inputs, for the worker; null for none. */
  inputs: readonly unknown[] | null;
  /** Its job type's counters (its queue's), so counting what happens to it needs no lookup by type. */
  readonly counters: TypeCounters;
}

/** A graph job of the core's (results are the core's opaque R, seen here as unknown). */
export type Graph<H> = GraphRun<Task<H>, ClientRecord<H>, Settings, unknown>;

/** What a handler last said of its progress: a number (NaN for none) and a short message ('' for none). */
export interface Progress {
  readonly value: number;
  readonly message: string;
  /** The core's clock when it was reported, and when a report was last passed on (see PROGRESS_INTERVAL_MS). */
  readonly at: number;
  readonly sentAt: number;
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
  /** Bytes of their bodies. */
  pendingBytes: number;
  /**
   * Its unsettled tasks that are objects (running, requeued, waiting for a retry), linked through the tasks;
   * queued ones are rows. A Set here was rehashed every few dispatches under churn: 0.4 us per task of
   * SetGrow, table allocation and page faults in a profile of W1's scheduler.
   */
  firstTask: Task<H> | null;
  /** The last of them: tasks are linked in the order they became objects, so loss and shutdown go oldest first. */
  lastTask: Task<H> | null;
  /** Its lanes holding rows, by level (job type and priority): attached ones, and detached ones apart. */
  readonly lanes: Map<Level<H>, Lane<H>>;
  readonly detachedLanes: Map<Level<H>, Lane<H>>;
  /** Its lanes of jobs given a tenant, by level, then by tenant * 2 + detached; null until it has one. */
  tenantLanes: Map<Level<H>, Map<number, Lane<H>>> | null;
  /** The lane used last: a client nearly always submits one type after another. */
  lastLane: Lane<H> | null;
  /** Jobs it waits for by id (wait()), each with the requests to answer; null until it waits for one. */
  waits: Map<number, number[]> | null;
  /** Its unsettled graph jobs; null until it submits one. */
  graphs: Set<Graph<H>> | null;
}

/**
 * A task's own settings; the scheduler's defaults are one object shared by every task without options. A row
 * keeps its settings object, so the priority and detached flag are here, not in a column of their own.
 */
export interface Settings {
  readonly timeoutMs: number;
  readonly retries: number;
  readonly backoffMs: number;
  readonly priority: number;
  readonly detached: boolean;
}

/** The types the core's queues are made of. */
export interface CoreKinds<H> {
  task: Task<H>;
  worker: WorkerRecord<H>;
  owner: ClientRecord<H>;
  options: Settings;
}
export type Queue<H> = TypeQueue<CoreKinds<H>>;
export type Level<H> = QueueLevel<CoreKinds<H>>;
/** A client's rows of one level, attached or detached. */
export type Lane<H> = QueueLane<CoreKinds<H>>;
export type Slot<H> = ReadySlot<WorkerRecord<H>, Queue<H>>;

export interface WorkerRecord<H> extends PeerBase<H> {
  readonly kind: 'worker';
  /** Tasks it may hold at once (its credits, capped); 0 until it sends READY, and again once it is draining. */
  concurrency: number;
  types: string[];
  /** The tasks it runs, by wire id (an IdTable, not a Map: see lib/id-table.ts). */
  readonly running: IdTable<Task<H>>;
  /** Of those, the ones without a timeout: while there is one, silence is not excused (see heartbeat()). */
  untimed: number;
  /**
   * Leases taken back whose handler may still be running, "id:attempt" -> whether the client had left (else it
   * timed out). Each keeps its slot busy until the worker answers for it, so a worker is never sent more tasks
   * than its concurrency even while it finishes work nobody waits for.
   */
  readonly revoked: Map<string, boolean>;
  /** Its connection is not draining what it was sent: no task goes to it until writable(). */
  blocked: boolean;
  /**
   * Whether its keepalives may wait for a handler, as its hello said (peers of version 1, or that do not say:
   * yes). If not, 3 intervals of silence mean it is dead, whatever it runs.
   */
  readonly mayBlock: boolean;
  slots: Slot<H>[];
}

export type PeerRecord<H> = ClientRecord<H> | WorkerRecord<H>;

/**
 * A new task object; `owner` is the client answered (null for none), `at` the core's clock at submission,
 * `counters` its type's, `id` its lease id when it is not its job id's low 32 bits (a graph's node).
 */
export function newTask<H>(
  seq: number,
  type: string,
  body: Buffer,
  requestId: number,
  owner: ClientRecord<H> | null,
  s: Settings,
  at: number,
  counters: TypeCounters,
  id = seq >>> 0,
): Task<H> {
  return {
    seq,
    id,
    type,
    body,
    requestId,
    owner,
    detached: s.detached,
    priority: s.priority,
    submittedAt: at,
    startedAt: 0,
    worker: null,
    lastWorker: null,
    state: TaskState.QUEUED,
    attempt: 0,
    faults: 0,
    retriesLeft: s.retries,
    retried: 0,
    timeoutMs: s.timeoutMs,
    backoffMs: s.backoffMs,
    avoid: null,
    heapIndex: -1,
    progress: null,
    deadline: 0,
    prev: null,
    next: null,
    list: null,
    prevOfClient: null,
    nextOfClient: null,
    graph: null,
    node: 0,
    inputs: null,
    counters,
  };
}
