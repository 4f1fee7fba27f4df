// Dispatch strategies: which of the workers with a free slot for a job type gets that type's next task.
//
// A strategy decides only between workers that have room while nothing of the type is queued. Once tasks wait,
// each worker takes the oldest one it may take as soon as it has a free slot (the core's fill()), so the queue's
// order, not a strategy, decides what runs next.

import { LinkedList, type Linked } from './queue.js';

export const STRATEGIES = ['round-robin', 'least-loaded'] as const;
export type Strategy = (typeof STRATEGIES)[number];

/** The workers of one job type with a free slot, as slots of S (each in one strategy at most). */
export interface Balancer<S extends Linked<S>> {
  /** The slot whose worker gets the next task, or null when no worker has room. */
  pick(): S | null;
  /** A task went to `slot`'s worker (which has room still, or is removed next). */
  gave(slot: S): void;
  /** A worker with room and nothing to take joins. */
  add(slot: S): void;
  /** A worker that is full, blocked or leaving; harmless if `slot` is not in. */
  remove(slot: S): void;
  /** The first slot in; with each slot's `next`, every worker with room. */
  readonly head: S | null;
}

/** Round-robin: workers take turns, one task each, in the order they joined. The default. */
export class RoundRobin<S extends Linked<S>> implements Balancer<S> {
  private readonly list = new LinkedList<S>();

  get head(): S | null {
    return this.list.head;
  }

  pick(): S | null {
    return this.list.head;
  }

  gave(slot: S): void {
    this.list.moveToBack(slot);
  }

  add(slot: S): void {
    this.list.pushBack(slot);
  }

  remove(slot: S): void {
    this.list.remove(slot);
  }
}

/**
 * Least-loaded: the worker with the smallest share of its concurrency in use gets the next task; between equal
 * shares, turns as in round-robin. `load` gives a slot's worker's share (tasks held / concurrency). A pick looks at
 * every worker with room: this costs O(idle workers) per task while workers are idle, and nothing once tasks queue.
 */
export class LeastLoaded<S extends Linked<S>> extends RoundRobin<S> {
  constructor(private readonly load: (slot: S) => number) {
    super();
  }

  override pick(): S | null {
    let best: S | null = null;
    let least = Infinity;
    for (let slot = this.head; slot !== null; slot = slot.next) {
      const load = this.load(slot);
      if (load < least) {
        best = slot;
        least = load;
      }
    }
    return best;
  }
}
