// What the core counts for metrics: per job type, the tasks that went through each transition, and one
// histogram of the time from submission to completion. Plain numbers bumped in place, read at scrape time.
//
// Each queue holds its type's counters object, found once when the queue is made, and each task object holds its
// queue's: counting a transition is an increment on an object the core already has in hand, never a lookup by
// type on the hot path. The objects live in a table of the core's, not in the queues, so a type's counts outlive
// its queue going idle (queues go as soon as nothing waits in them and no worker runs their type).

/** Counts of one job type's tasks (a graph's nodes count as tasks of their own types). */
export class TypeCounters {
  /** Accepted: plain jobs at submission, a graph's nodes when they are launched. */
  submitted = 0;
  completed = 0;
  /** Failed for good: handler errors with no retry left, attempts exhausted, no worker in time, too large. */
  failed = 0;
  /** Cancelled by id, and a graph's nodes withdrawn when their graph ended early. */
  cancelled = 0;
  /** Withdrawn because the client of an attached job left (or the scheduler shut down). */
  dropped = 0;
  /** Put back in the queue after a worker was lost or a timeout (events: a task may count several times). */
  requeued = 0;
  timedOut = 0;
  /** Handler failures retried after a backoff. */
  retried = 0;
  /** Submissions refused under a limit. */
  rejected = 0;

  constructor(
    /** The label the counts are reported under: the job type, or OTHER_TYPE past the table's cap. */
    readonly type: string,
  ) {}
}

/** The label of every job type past the table's cap. */
export const OTHER_TYPE = '_other';
/** Job types counted apart at most; the rest share OTHER_TYPE, so a peer inventing types cannot grow memory. */
export const MAX_COUNTED_TYPES = 1000;

/** Counters by job type, capped: the first MAX_COUNTED_TYPES types seen get their own, the rest share one. */
export class CountersTable {
  private readonly byType = new Map<string, TypeCounters>();
  private readonly other = new TypeCounters(OTHER_TYPE);

  constructor(private readonly cap = MAX_COUNTED_TYPES) {}

  /** The counters a type counts into; called when its queue is made, not per task. */
  of(type: string): TypeCounters {
    const known = this.byType.get(type);
    if (known !== undefined) return known;
    if (this.byType.size >= this.cap) return this.other;
    const made = new TypeCounters(type);
    this.byType.set(type, made);
    return made;
  }

  /** Every counters object (OTHER_TYPE's last, once it has been used), for a scrape. */
  all(): TypeCounters[] {
    const out = [...this.byType.values()];
    if (this.byType.size >= this.cap) out.push(this.other);
    return out;
  }
}

/**
 * Upper bounds of the latency histogram's buckets, in ms: from a round trip on one machine (about 0.3 ms, so the
 * first bucket) to jobs that wait in a queue for minutes.
 */
export const LATENCY_BOUNDS_MS: readonly number[] = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 300_000];

/** A histogram of ms, as Prometheus keeps one: counts per bucket (the last one past every bound), sum and count. */
export class LatencyHistogram {
  readonly bounds = LATENCY_BOUNDS_MS;
  /** Observations per bucket, not cumulative: bucket i holds those above bound i-1 and at most bound i. */
  readonly counts = new Float64Array(LATENCY_BOUNDS_MS.length + 1);
  sumMs = 0;
  count = 0;

  /** A few comparisons and three increments: most tasks land in the first buckets. */
  observe(ms: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && ms > bounds[i]!) i++;
    this.counts[i]!++;
    this.sumMs += ms;
    this.count++;
  }
}

/** Tasks waiting in one job type's queue at one priority. */
export interface QueueDepth {
  type: string;
  /** The label its counts are reported under: `type`, or OTHER_TYPE past the cap. */
  label: string;
  priority: number;
  /** Tasks waiting (queued rows and requeued tasks). */
  count: number;
  /** The core's clock when the oldest of them was submitted. */
  oldestAt: number;
}
