// The tasks waiting for one job type, and the workers of that type with a free slot.
//
// New tasks wait as rows (lib/scheduler/queue.ts); tasks put back after a fault or a retry delay wait as objects
// in a heap by submission number. The oldest of the two heads goes first, so requeued tasks keep their place.
//
// A task that timed out or failed on a worker is not offered to that worker again while another worker can take
// it: it waits in a heap of its own, keyed by the worker it avoids, which every other worker sees. The worker it
// avoids takes it only when no other worker of the type has credits to give (none is left, or all have
// concurrency 0). Without this, a worker that times out or fails everything it gets kept getting the same tasks
// back until they ran out of attempts.

import type { Balancer } from './balance.js';
import { SeqHeap, type HeapItem } from './heap.js';
import { Rows, type Linked } from './queue.js';

/** What the queue needs of a task object. */
export interface QueuedTask<W> extends HeapItem {
  /** The worker it timed out or failed on last, which should not get it back; null for none. */
  avoid: W | null;
}

/** What the queue needs of a row's lane: rows of a lane whose client left are skipped. */
export interface RowLane {
  readonly client: unknown;
}

/** A worker's place in one job type's list of workers with a free slot. */
export interface ReadySlot<W, Q> extends Linked<ReadySlot<W, Q>> {
  readonly worker: W;
  readonly queue: Q;
}

export class TypeQueue<T extends QueuedTask<W>, W, L extends RowLane, O> {
  readonly rows = new Rows<L, O>();
  /** Workers announcing this type; the queue is dropped when no task waits in it and this is 0. */
  workers = 0;
  /** Of those, the ones with concurrency above 0: the ones that may take a task. */
  active = 0;
  /** Tasks waiting: live rows and requeued tasks. */
  live = 0;
  /** Rows of clients that left, not yet skipped or swept. */
  dead = 0;
  // Both made on first use: a queue exists for every job type in use, and most never see a requeue. A queue per
  // task (a new job type each) cost 2.5 KB per task with them and a 16-row first block; see Rows for the rest.
  /** Requeued tasks any worker may take. */
  private requeued: SeqHeap<T> | null = null;
  /** Requeued tasks avoiding a worker, by that worker. */
  private avoiding: Map<W, SeqHeap<T>> | null = null;

  /** @param ready the workers of this type with a free slot, under the scheduler's dispatch strategy */
  constructor(
    readonly type: string,
    readonly ready: Balancer<ReadySlot<W, TypeQueue<T, W, L, O>>>,
  ) {}

  /** Waiting task objects (requeued ones), all heaps together. */
  get requeuedCount(): number {
    let n = this.requeued?.size ?? 0;
    if (this.avoiding) for (const heap of this.avoiding.values()) n += heap.size;
    return n;
  }

  /**
   * The submission number of the oldest task `worker` may take here, or Infinity; skips rows of clients that
   * left. Costs O(1) plus the number of workers that tasks here avoid (rarely more than one).
   */
  headSeq(worker: W): number {
    if (this.dead > 0) this.skipDead();
    let best = this.rows.size > 0 ? this.rows.seq : Infinity;
    const top = this.requeued?.top ?? null;
    if (top !== null && top.seq < best) best = top.seq;
    if (this.avoiding === null) return best;
    const alone = this.active <= 1;
    for (const [avoided, heap] of this.avoiding) {
      if (avoided === worker && !alone) continue;
      const seq = heap.top!.seq;
      if (seq < best) best = seq;
    }
    return best;
  }

  /**
   * Takes the oldest task `worker` may take, right after headSeq() found one: a requeued task, or null when it is
   * the head row (the caller shifts it, making its Task).
   */
  take(worker: W): T | null {
    this.live--;
    if (this.requeued === null && this.avoiding === null) return null; // nothing was ever put back: the head row
    const rowSeq = this.rows.size > 0 ? this.rows.seq : Infinity;
    let from: SeqHeap<T> | null = null;
    let best = rowSeq;
    const top = this.requeued?.top ?? null;
    if (top !== null && top.seq < best) {
      best = top.seq;
      from = this.requeued;
    }
    if (this.avoiding !== null) {
      const alone = this.active <= 1;
      for (const [avoided, heap] of this.avoiding) {
        if (avoided === worker && !alone) continue;
        if (heap.top!.seq < best) {
          best = heap.top!.seq;
          from = heap;
        }
      }
    }
    if (from === null) return null;
    const task = from.pop()!;
    if (task.avoid !== null && from.size === 0) this.unavoid(task.avoid);
    task.avoid = null;
    return task;
  }

  /**
   * Puts a task back at the place its submission order gives it. With `avoid`, other workers get it first; the
   * caller passes a worker only while that worker announces this type.
   */
  requeue(task: T, avoid: W | null): void {
    this.live++;
    task.avoid = avoid;
    if (avoid === null) return (this.requeued ??= new SeqHeap<T>()).push(task);
    this.avoiding ??= new Map();
    let heap = this.avoiding.get(avoid);
    if (!heap) {
      heap = new SeqHeap<T>();
      this.avoiding.set(avoid, heap);
    }
    heap.push(task);
  }

  /** Removes a waiting task object (its client left). */
  remove(task: T): void {
    this.live--;
    if (task.avoid === null) return this.requeued!.remove(task);
    const heap = this.avoiding!.get(task.avoid)!;
    heap.remove(task);
    if (heap.size === 0) this.unavoid(task.avoid);
    task.avoid = null;
  }

  /** A worker no longer announces this type (or is gone): the tasks avoiding it are open to all. */
  forget(worker: W): void {
    const heap = this.avoiding?.get(worker);
    if (!heap) return;
    this.unavoid(worker);
    for (const task of heap.values()) task.avoid = null;
    (this.requeued ??= new SeqHeap<T>()).absorb(heap);
  }

  /** Whether some waiting task avoids a worker. */
  get avoidsAny(): boolean {
    return this.avoiding !== null;
  }

  /** Every waiting task object, for shutdown and tests. */
  *requeuedTasks(): IterableIterator<T> {
    if (this.requeued) yield* this.requeued.values();
    if (this.avoiding) for (const heap of this.avoiding.values()) yield* heap.values();
  }

  private unavoid(worker: W): void {
    this.avoiding!.delete(worker);
    if (this.avoiding!.size === 0) this.avoiding = null;
  }

  /** After a client left: sweeps its rows out once they outnumber the live ones (so O(1) per row, amortised). */
  sweep(): void {
    if (this.dead <= this.live) return;
    this.rows.filter((lane) => lane.client !== null);
    this.dead = 0;
  }

  private skipDead(): void {
    const rows = this.rows;
    while (rows.size > 0 && rows.lane.client === null) {
      rows.shift();
      this.dead--;
    }
  }
}
