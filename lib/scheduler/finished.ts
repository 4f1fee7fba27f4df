// What a job looks like from outside (its status), and the records of finished detached jobs, kept so that any
// client can still read a job's outcome after it ended: bounded by count, age and bytes.

/** A job's state as status(), wait() and jobs() report it. */
export type JobState = 'queued' | 'delayed' | 'running' | 'completed' | 'failed' | 'cancelled';
export const JOB_STATES: readonly JobState[] = ['queued', 'delayed', 'running', 'completed', 'failed', 'cancelled'];

/** A job, as status() reports it. Times are the core's clock (the scheduler's: ms since the epoch). */
export interface JobStatus<R> {
  id: number;
  type: string;
  state: JobState;
  priority: number;
  detached: boolean;
  /** Dispatches so far, retries included. */
  attempts: number;
  /** The name of the worker running it (running), or that ran it last (finished), or null. */
  worker: string | null;
  submittedAt: number;
  /** When its current or last attempt was dispatched; null if never. */
  startedAt: number | null;
  finishedAt: number | null;
  /** When a delayed job falls due; null otherwise. */
  runAt: number | null;
  progress: { value: number; message: string } | null;
  /** A graph job's nodes: how many, how many have completed, and the bytes of their results it holds for consumers. */
  nodes?: { total: number; done: number; bytes: number };
  /** A completed job's result, if it was kept (see retainResult). */
  result?: R;
  /** A failed or cancelled job's error. */
  error?: { code: string; message: string };
}

/**
 * A job's status as clients see it (the client's status() and jobs(), the scheduler's own): its result as UTF-8
 * text, or as base64 when it is not text, up to 64 KiB in status(); otherwise, and in jobs(), only its size.
 */
export type JobInfo = Omit<JobStatus<never>, 'result'> & { result?: string; resultBase64?: string; resultBytes?: number };

export interface FinishedLimits {
  /** Records kept at most; the oldest go first. */
  maxCount: number;
  /** A record goes this long after its job finished. */
  maxAgeMs: number;
  /** Bytes of the results kept at most. */
  maxBytes: number;
}

interface Entry<R> {
  status: JobStatus<R>;
  bytes: number;
}

/** Finished jobs' records by id, oldest first (a Map keeps insertion order, and jobs are recorded as they end). */
export class FinishedJobs<R> {
  private readonly entries = new Map<number, Entry<R>>();
  private bytes = 0;

  constructor(private readonly limits: FinishedLimits) {}

  get size(): number {
    return this.entries.size;
  }

  get(id: number): JobStatus<R> | undefined {
    return this.entries.get(id)?.status;
  }

  /** Records a finished job; `bytes` is what its result holds. Keeps the limits by dropping the oldest. */
  add(status: JobStatus<R>, bytes: number): void {
    if (this.limits.maxCount === 0) return;
    this.entries.set(status.id, { status, bytes });
    this.bytes += bytes;
    for (const [id, entry] of this.entries) {
      if (this.entries.size <= this.limits.maxCount && this.bytes <= this.limits.maxBytes) break;
      this.drop(id, entry);
    }
  }

  /** Drops the records older than maxAgeMs at `now`. */
  expire(now: number): void {
    for (const [id, entry] of this.entries) {
      if (entry.status.finishedAt! + this.limits.maxAgeMs > now) break;
      this.drop(id, entry);
    }
  }

  private drop(id: number, entry: Entry<R>): void {
    this.entries.delete(id);
    this.bytes -= entry.bytes;
  }
}
