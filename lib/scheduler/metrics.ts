// The scheduler's metrics as one plain snapshot: the core's counters copied out at the moment of a scrape,
// with the shell's own figures (connections, traffic, worker capacity). Built only when asked for.

import type { CoreMetrics } from './core.js';
import type { QueueDepth } from './counters.js';
import type { SchedulerStats, WorkerStatus } from './index.js';
import type { SocketTraffic } from './traffic.js';

/** One job type's counts (see TypeCounters); `type` is OTHER_TYPE for the types past the cap, together. */
export interface TypeMetrics {
  type: string;
  submitted: number;
  completed: number;
  failed: number;
  cancelled: number;
  dropped: number;
  requeued: number;
  timedOut: number;
  retried: number;
  rejected: number;
}

export interface SchedulerMetrics {
  stats: SchedulerStats;
  types: TypeMetrics[];
  /** Submission to completion of completed tasks: cumulative counts per upper bound (seconds), then +Inf. */
  latency: { boundsSeconds: number[]; cumulative: number[]; sumSeconds: number; count: number };
  /** Per job type and priority: tasks waiting and when the oldest was submitted (ms since the epoch). */
  queues: QueueDepth[];
  /** Connected workers' concurrency, summed: the tasks they may hold at once. */
  workerSlots: number;
  /** Bytes through the scheduler's sockets: its TCP listener, and its HTTP listener (API, dashboard, WebSocket peers). */
  traffic: { tcp: { received: number; sent: number }; http: { received: number; sent: number } };
}

export function snapshotMetrics(
  core: CoreMetrics,
  queues: QueueDepth[],
  stats: SchedulerStats,
  workers: WorkerStatus[],
  traffic: { tcp: SocketTraffic; http: SocketTraffic },
): SchedulerMetrics {
  const types = core.types.map((c) => ({
    type: c.type,
    submitted: c.submitted,
    completed: c.completed,
    failed: c.failed,
    cancelled: c.cancelled,
    dropped: c.dropped,
    requeued: c.requeued,
    timedOut: c.timedOut,
    retried: c.retried,
    rejected: c.rejected,
  }));
  const h = core.latency;
  const cumulative: number[] = [];
  let running = 0;
  for (const n of h.counts) cumulative.push((running += n));
  let workerSlots = 0;
  for (const w of workers) workerSlots += w.concurrency;
  return {
    stats,
    types,
    latency: { boundsSeconds: h.bounds.map((ms) => ms / 1000), cumulative, sumSeconds: h.sumMs / 1000, count: h.count },
    queues,
    workerSlots,
    traffic: { tcp: traffic.tcp.totals(), http: traffic.http.totals() },
  };
}
