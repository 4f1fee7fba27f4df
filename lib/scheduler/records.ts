// What the scheduling core keeps about tasks and peers. Plain data; the core (core.ts) changes it.

import type { IdTable } from '../id-table.js';
import type { Timed } from './timers.js';
import type { ReadySlot, TypeQueue } from './type-queue.js';

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
  /** Replaced by a copy when the task goes back to wait (see detachBody()). */
  body: Buffer;
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
  /** The worker it timed out or failed on last, which other workers take it from first (see TypeQueue). */
  avoid: WorkerRecord<H> | null;
  /** Its place in a requeued heap, or -1. */
  heapIndex: number;
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
  /** Its lane in the queue of each job type it has rows queued in; a lane goes when its last row does. */
  readonly lanes: Map<string, Lane<H>>;
  /** The lane used last: a client nearly always submits one type after another. */
  lastLane: Lane<H> | null;
}

/**
 * A client's queued rows in one job type's queue, counted so that they can all be written off at once when the
 * client leaves: the rows stay where they are, with `client` null, and are skipped when they reach the head.
 */
export interface Lane<H> {
  client: ClientRecord<H> | null;
  readonly queue: Queue<H>;
  /** Its live rows in `queue`, and the bytes of their bodies. */
  queued: number;
  bytes: number;
}

/** A task's own settings; the scheduler's defaults are one object shared by every task without options. */
export interface Settings {
  readonly timeoutMs: number;
  readonly retries: number;
  readonly backoffMs: number;
}

export type Queue<H> = TypeQueue<Task<H>, WorkerRecord<H>, Lane<H>, Settings>;
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

export function newTask<H>(seq: number, type: string, body: Buffer, requestId: number, client: ClientRecord<H>, s: Settings): Task<H> {
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
    avoid: null,
    heapIndex: -1,
    deadline: 0,
    prev: null,
    next: null,
    list: null,
    prevOfClient: null,
    nextOfClient: null,
  };
}
