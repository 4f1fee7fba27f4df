// The tasks waiting for one job type, and the workers of that type with a free slot.
//
//   TypeQueue (one job type)
//     ready: the workers with a free slot, in the order the dispatch strategy keeps (balance.ts)
//     levels: one per priority in use, highest first
//       Level
//         lanes: each submitter's rows (attached and detached apart), new tasks in submission order
//           FIFO: a heap of lanes by their oldest row, so the oldest row of the level goes first
//           fair: a ring of lanes, one row each in turn, so a burst from one client cannot hold up another's
//         requeued: task objects put back after a fault or a delay, in a heap by submission number
//         avoiding: requeued tasks kept from the worker they timed out or failed on, by that worker
//
// A task goes from the highest level that has one the worker may take; within it, the oldest of the requeued heads
// and the row the lanes offer. So requeued and delayed tasks keep their place by submission, and rows are taken
// from the lanes' heads without ever being objects until they are dispatched.
//
// A task that timed out or failed on a worker is not offered to that worker again while another worker can take
// it: it waits in a heap of its own, keyed by the worker it avoids, which every other worker sees. The worker it
// avoids takes it only when no other worker of the type has credits to give (none is left, or all have
// concurrency 0). Without this, a worker that times out or fails everything it gets kept getting the same tasks
// back until they ran out of attempts.

import type { Balancer } from './balance.js';
import { TypeCounters, type QueueDepth } from './counters.js';
import { SeqHeap, type HeapItem } from './heap.js';
import { LinkedList, Rows, type Linked } from './queue.js';
import type { Timed } from './timers.js';

/** What the queue needs of a task object. */
export interface QueuedTask<W> extends HeapItem {
  /** The worker it timed out or failed on last, which should not get it back; null for none. */
  avoid: W | null;
  readonly priority: number;
  /** When it was submitted, for the age of the oldest task waiting (the core's tasks always say). */
  readonly submittedAt?: number;
}

/** The types a queue is made of: its task objects, workers, the owners of lanes, and each row's options. */
export interface QueueKinds {
  task: QueuedTask<this['worker']>;
  worker: unknown;
  owner: unknown;
  options: object;
}

/** How a queue turns rows into task objects, and tells its owner a lane is gone. */
export interface RowTaker<K extends QueueKinds> {
  /** The head row of `lane` is being dispatched: its task object, made from the row's fields. */
  fromRow(lane: Lane<K>, seq: number, requestId: number, time: number, body: Buffer, options: K['options']): K['task'];
  /** `lane` has no rows left and has left its level: whoever keeps it should forget it. */
  laneEmptied(lane: Lane<K>): void;
}

/** A worker's place in one job type's list of workers with a free slot. */
export interface ReadySlot<W, Q> extends Linked<ReadySlot<W, Q>> {
  readonly worker: W;
  readonly queue: Q;
}

/**
 * One submitter's queued rows of one type and priority, attached and detached apart: the unit the level orders
 * (FIFO or fair) and the unit written off when an attached submitter leaves.
 */
export class Lane<K extends QueueKinds> implements HeapItem {
  readonly rows = new Rows<K['options']>();
  /** Bytes of its rows' bodies. */
  bytes = 0;
  /**
   * Its oldest row's submission number (Infinity when it has none): its key in the level's heap. A field, kept
   * up to date by the level, rather than a getter: the heap reads it at every comparison.
   */
  seq = Infinity;
  heapIndex = -1;
  /** The turn it takes its rows' turns in (see Turn); set by its level when it first has rows. */
  turn: Turn<K> | null = null;

  constructor(
    /** Who is answered for its rows; null once a detached lane's submitter has left. */
    public owner: K['owner'] | null,
    readonly detached: boolean,
    readonly level: Level<K>,
    /** With fairness, the lanes of one tenant take turns together (else each lane on its own); null for none. */
    readonly tenant: number | null = null,
  ) {}

  get queue(): TypeQueue<K> {
    return this.level.queue;
  }
}

/**
 * Lanes that take one turn together, their rows oldest first: every lane of a FIFO level (so the oldest row of
 * the level goes first), or in a fair level one client's lane, or all the lanes of one tenant. The lanes are kept
 * by their oldest row in a heap made when a second lane joins; a turn usually has one (a job type per task made a
 * heap per level cost 15% more memory per task).
 */
export class Turn<K extends QueueKinds> implements Linked<Turn<K>> {
  /** Lanes with rows. */
  size = 0;
  prev: Turn<K> | null = null;
  next: Turn<K> | null = null;
  list: LinkedList<Turn<K>> | null = null;
  private sole: Lane<K> | null = null;
  private byAge: SeqHeap<Lane<K>> | null = null;

  constructor(readonly tenant: number | null) {}

  /** The lane with the oldest row. */
  get head(): Lane<K> | null {
    return this.byAge !== null ? this.byAge.top : this.sole;
  }

  add(lane: Lane<K>): void {
    this.size++;
    if (this.byAge !== null) return this.byAge.push(lane);
    if (this.sole === null) {
      this.sole = lane;
      return;
    }
    this.byAge = new SeqHeap<Lane<K>>();
    this.byAge.push(this.sole);
    this.byAge.push(lane);
    this.sole = null;
  }

  /** A lane's oldest row changed. */
  update(lane: Lane<K>): void {
    this.byAge?.update(lane);
  }

  remove(lane: Lane<K>): void {
    if (this.byAge !== null) {
      if (lane.heapIndex < 0) return;
      this.byAge.remove(lane);
    } else if (this.sole === lane) {
      this.sole = null;
    } else {
      return;
    }
    this.size--;
  }

  *lanes(): IterableIterator<Lane<K>> {
    if (this.byAge !== null) yield* [...this.byAge.values()];
    else if (this.sole !== null) yield this.sole;
  }
}

/** The tasks of one priority in one queue. */
export class Level<K extends QueueKinds> {
  /** Tasks waiting here: live rows and requeued tasks. */
  live = 0;
  /** FIFO: one turn holding every lane with rows. Fair: the turns with rows, in turn, and the tenants' turns. */
  private readonly all: Turn<K> | null;
  private readonly turns: LinkedList<Turn<K>> | null;
  private readonly tenants: Map<number, Turn<K>> | null;
  // Both made on first use: most levels never see a requeue.
  private requeued: SeqHeap<K['task']> | null = null;
  private avoiding: Map<K['worker'], SeqHeap<K['task']>> | null = null;

  constructor(
    readonly queue: TypeQueue<K>,
    readonly priority: number,
    fair: boolean,
  ) {
    this.all = fair ? null : new Turn<K>(null);
    this.turns = fair ? new LinkedList<Turn<K>>() : null;
    this.tenants = fair ? new Map() : null;
  }

  /** The lane whose head row is this level's next row. */
  private get nextLane(): Lane<K> | null {
    return this.all !== null ? this.all.head : (this.turns!.head?.head ?? null);
  }

  /** The turn a lane takes its turns in: the level's one (FIFO), its tenant's, or its own. */
  private turnOf(lane: Lane<K>): Turn<K> {
    if (lane.turn !== null) return lane.turn;
    if (this.all !== null) return (lane.turn = this.all);
    if (lane.tenant === null) return (lane.turn = new Turn<K>(null));
    let turn = this.tenants!.get(lane.tenant);
    if (turn === undefined) this.tenants!.set(lane.tenant, (turn = new Turn<K>(lane.tenant)));
    return (lane.turn = turn);
  }

  /** A row was pushed to `lane`. */
  grew(lane: Lane<K>): void {
    this.live++;
    if (lane.rows.size > 1) return;
    const turn = this.turnOf(lane);
    turn.add(lane);
    if (this.turns !== null && turn.size === 1) this.turns.pushBack(turn);
  }

  /** The submission number of the oldest task `worker` may take here, or Infinity. */
  headSeq(worker: K['worker'], alone: boolean): number {
    let best = this.nextLane?.seq ?? Infinity;
    const top = this.requeued?.top ?? null;
    if (top !== null && top.seq < best) best = top.seq;
    if (this.avoiding === null) return best;
    for (const [avoided, heap] of this.avoiding) {
      if (avoided === worker && !alone) continue;
      const seq = heap.top!.seq;
      if (seq < best) best = seq;
    }
    return best;
  }

  /** Takes what headSeq() found for `worker`. */
  take(worker: K['worker'], alone: boolean, taker: RowTaker<K>): K['task'] {
    this.live--;
    const lane = this.nextLane;
    let from: SeqHeap<K['task']> | null = null;
    let best = lane?.seq ?? Infinity;
    const top = this.requeued?.top ?? null;
    if (top !== null && top.seq < best) {
      best = top.seq;
      from = this.requeued;
    }
    if (this.avoiding !== null) {
      for (const [avoided, heap] of this.avoiding) {
        if (avoided === worker && !alone) continue;
        if (heap.top!.seq < best) {
          best = heap.top!.seq;
          from = heap;
        }
      }
    }
    if (from === null) return this.takeRow(lane!, taker);
    const task = from.pop()!;
    if (task.avoid !== null && from.size === 0) this.unavoid(task.avoid);
    task.avoid = null;
    return task;
  }

  private takeRow(lane: Lane<K>, taker: RowTaker<K>): K['task'] {
    const rows = lane.rows;
    const body = rows.body();
    const task = taker.fromRow(lane, rows.seq, rows.requestId, rows.time, body, rows.option);
    rows.shift();
    lane.seq = rows.size > 0 ? rows.seq : Infinity;
    lane.bytes -= body.length;
    const turn = lane.turn!;
    if (rows.size === 0) this.leave(lane, taker);
    else turn.update(lane);
    // Fair: the turn that gave a row goes to the back, if it has more.
    if (this.turns !== null && turn.size > 0) this.turns.moveToBack(turn);
    return task;
  }

  private leave(lane: Lane<K>, taker: RowTaker<K>): void {
    const turn = lane.turn!;
    turn.remove(lane);
    if (this.turns !== null) {
      lane.turn = null; // an own turn goes with it; a tenant's is found again by its key
      if (turn.size === 0) {
        this.turns.remove(turn);
        if (turn.tenant !== null) this.tenants!.delete(turn.tenant);
      }
    }
    taker.laneEmptied(lane);
  }

  /** Removes the row with this seq from `lane`; its body's length, or -1 if it is not there. */
  removeRow(lane: Lane<K>, seq: number, taker: RowTaker<K>): number {
    const length = lane.rows.remove(seq);
    if (length < 0) return -1;
    lane.seq = lane.rows.size > 0 ? lane.rows.seq : Infinity;
    this.live--;
    lane.bytes -= length;
    if (lane.rows.size === 0) this.leave(lane, taker);
    else lane.turn!.update(lane);
    return length;
  }

  /** Drops every row of `lane` (its attached submitter left); returns how many. */
  dropLane(lane: Lane<K>, taker: RowTaker<K>): number {
    const n = lane.rows.size;
    if (n === 0) return 0;
    this.live -= n;
    lane.seq = Infinity;
    this.leave(lane, taker);
    return n;
  }

  requeue(task: K['task'], avoid: K['worker'] | null): void {
    this.live++;
    task.avoid = avoid;
    if (avoid === null) return (this.requeued ??= new SeqHeap<K['task']>()).push(task);
    this.avoiding ??= new Map();
    let heap = this.avoiding.get(avoid);
    if (!heap) {
      heap = new SeqHeap<K['task']>();
      this.avoiding.set(avoid, heap);
    }
    heap.push(task);
  }

  remove(task: K['task']): void {
    this.live--;
    if (task.avoid === null) return this.requeued!.remove(task);
    const heap = this.avoiding!.get(task.avoid)!;
    heap.remove(task);
    if (heap.size === 0) this.unavoid(task.avoid);
    task.avoid = null;
  }

  forget(worker: K['worker']): void {
    const heap = this.avoiding?.get(worker);
    if (!heap) return;
    this.unavoid(worker);
    for (const task of heap.values()) task.avoid = null;
    (this.requeued ??= new SeqHeap<K['task']>()).absorb(heap);
  }

  get avoidsAny(): boolean {
    return this.avoiding !== null;
  }

  /**
   * When the oldest task waiting here was submitted (Infinity for none): the heads of the lanes' turns and of the
   * requeued heaps, never the tasks behind them. A FIFO level has one turn; a fair one has a turn per client or
   * tenant with rows.
   */
  oldestTime(): number {
    let oldest = Infinity;
    if (this.all !== null) {
      const lane = this.all.head;
      if (lane !== null) oldest = lane.rows.time;
    } else {
      for (let turn = this.turns!.head; turn; turn = turn.next) {
        const lane = turn.head;
        if (lane !== null && lane.rows.time < oldest) oldest = lane.rows.time;
      }
    }
    const top = this.requeued?.top ?? null;
    if (top !== null) oldest = Math.min(oldest, top.submittedAt ?? Infinity);
    if (this.avoiding !== null) for (const heap of this.avoiding.values()) oldest = Math.min(oldest, heap.top!.submittedAt ?? Infinity);
    return oldest;
  }

  get requeuedCount(): number {
    let n = this.requeued?.size ?? 0;
    if (this.avoiding) for (const heap of this.avoiding.values()) n += heap.size;
    return n;
  }

  *requeuedTasks(): IterableIterator<K['task']> {
    if (this.requeued) yield* this.requeued.values();
    if (this.avoiding) for (const heap of this.avoiding.values()) yield* heap.values();
  }

  /** Every lane with rows, in no particular order. */
  *lanes(): IterableIterator<Lane<K>> {
    if (this.all !== null) return yield* this.all.lanes();
    const turns: Turn<K>[] = [];
    for (let turn = this.turns!.head; turn; turn = turn.next) turns.push(turn);
    for (const turn of turns) yield* turn.lanes();
  }

  private unavoid(worker: K['worker']): void {
    this.avoiding!.delete(worker);
    if (this.avoiding!.size === 0) this.avoiding = null;
  }
}

export class TypeQueue<K extends QueueKinds> implements Timed<TypeQueue<K>> {
  /** Workers announcing this type; the queue is dropped when no task waits in it and this is 0. */
  workers = 0;
  /**
   * Since when tasks have waited here with no worker announcing the type, or -1. While it is set the queue waits in
   * the core's wheel of queues without workers, due when its oldest task has waited the longest allowed.
   */
  orphanedAt = -1;
  deadline = 0;
  prev: TypeQueue<K> | null = null;
  next: TypeQueue<K> | null = null;
  list: { remove(item: TypeQueue<K>): void } | null = null;
  /** Of those, the ones with concurrency above 0: the ones that may take a task. */
  active = 0;
  /** Tasks waiting, all levels together. */
  live = 0;
  /** The priority of what the last headSeq() found. */
  headPriority = 0;
  /** Levels in use, highest priority first; usually one. */
  private readonly levels: Level<K>[] = [];
  /** The level the last headSeq() found a task in, for take(). */
  private found: Level<K> | null = null;

  /**
   * @param ready the workers of this type with a free slot, under the scheduler's dispatch strategy
   * @param fair whether the lanes of a level take turns (else the oldest row goes first)
   */
  constructor(
    readonly type: string,
    readonly ready: Balancer<ReadySlot<K['worker'], TypeQueue<K>>>,
    private readonly fair: boolean,
    private readonly taker: RowTaker<K>,
    /** This type's counters, which outlive the queue (see counters.ts). */
    readonly counters: TypeCounters = new TypeCounters(type),
  ) {}

  /** The level of a priority, made on first use; levels stay sorted, highest first. */
  level(priority: number): Level<K> {
    const levels = this.levels;
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i]!;
      if (level.priority === priority) return level;
      if (level.priority < priority) {
        const made = new Level<K>(this, priority, this.fair);
        levels.splice(i, 0, made);
        return made;
      }
    }
    const made = new Level<K>(this, priority, this.fair);
    levels.push(made);
    return made;
  }

  /** Queues a new task as a row of `lane` (a lane of one of this queue's levels). */
  push(lane: Lane<K>, seq: number, requestId: number, time: number, body: Buffer, options: K['options']): void {
    lane.rows.push(seq, requestId, time, body, options);
    if (lane.rows.size === 1) lane.seq = seq;
    lane.bytes += body.length;
    this.live++;
    lane.level.grew(lane);
  }

  /**
   * The submission number of the oldest task of the highest priority that `worker` may take, or Infinity; its
   * priority is left in headPriority. Costs O(1) per level looked at (one, unless the top one holds only tasks
   * avoiding this worker) plus the number of workers that tasks avoid (rarely more than one).
   */
  headSeq(worker: K['worker']): number {
    const alone = this.active <= 1;
    for (const level of this.levels) {
      if (level.live === 0) continue;
      const seq = level.headSeq(worker, alone);
      if (seq < Infinity) {
        this.found = level;
        this.headPriority = level.priority;
        return seq;
      }
    }
    this.found = null;
    return Infinity;
  }

  /** Takes the task headSeq(worker) just found. */
  take(worker: K['worker']): K['task'] {
    const level = this.found!;
    this.found = null;
    this.live--;
    const task = level.take(worker, this.active <= 1, this.taker);
    this.dropLevelIfEmpty(level);
    return task;
  }

  /**
   * Puts a task object back at the place its submission order gives it in its priority. With `avoid`, other
   * workers get it first; the caller passes a worker only while that worker announces this type.
   */
  requeue(task: K['task'], avoid: K['worker'] | null): void {
    this.live++;
    this.level(task.priority).requeue(task, avoid);
  }

  /** Removes a waiting task object (cancelled, or its client left). */
  remove(task: K['task']): void {
    const level = this.level(task.priority);
    this.live--;
    level.remove(task);
    this.dropLevelIfEmpty(level);
  }

  /** Removes a queued row by its submission number; its body's length, or -1 if it is not in `lane`. */
  removeRow(lane: Lane<K>, seq: number): number {
    const length = lane.level.removeRow(lane, seq, this.taker);
    if (length >= 0) {
      this.live--;
      this.dropLevelIfEmpty(lane.level);
    }
    return length;
  }

  /** Drops every row of a lane whose attached submitter left; returns how many. */
  dropLane(lane: Lane<K>): number {
    const n = lane.level.dropLane(lane, this.taker);
    this.live -= n;
    this.dropLevelIfEmpty(lane.level);
    return n;
  }

  /** A worker no longer announces this type (or is gone): the tasks avoiding it are open to all. */
  forget(worker: K['worker']): void {
    for (const level of this.levels) level.forget(worker);
  }

  /** Whether some waiting task avoids a worker. */
  get avoidsAny(): boolean {
    return this.levels.some((level) => level.avoidsAny);
  }

  /** Waiting task objects (requeued ones), all levels together. */
  get requeuedCount(): number {
    return this.levels.reduce((n, level) => n + level.requeuedCount, 0);
  }

  /** Every waiting task object, for shutdown and tests. */
  *requeuedTasks(): IterableIterator<K['task']> {
    for (const level of this.levels) yield* level.requeuedTasks();
  }

  /** Every lane with rows, for shutdown and tests. */
  *lanes(): IterableIterator<Lane<K>> {
    for (const level of this.levels) yield* level.lanes();
  }

  /** Appends what waits at each priority, highest first: O(levels), whatever the number of tasks. */
  depths(out: QueueDepth[]): void {
    for (const level of this.levels) {
      if (level.live === 0) continue;
      out.push({ type: this.type, label: this.counters.type, priority: level.priority, count: level.live, oldestAt: level.oldestTime() });
    }
  }

  private dropLevelIfEmpty(level: Level<K>): void {
    if (level.live > 0) return;
    const i = this.levels.indexOf(level);
    if (i >= 0) this.levels.splice(i, 1);
  }
}
