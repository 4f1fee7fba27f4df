// GET /metrics: the scheduler's counters in Prometheus's text format (version 0.0.4).
//
// Written here rather than with prom-client: the core already keeps plain counters (per job type, a latency
// histogram), so a scrape is rendering a snapshot of them as text, a few dozen lines; a registry of metric
// objects would be a dependency whose updates would sit on the per-task path instead. Nothing is computed until
// a scrape asks, and a scrape costs O(job types + priorities in use + connections), never O(tasks).

import type { Scheduler } from '../scheduler/index.js';
import { OTHER_TYPE } from '../scheduler/counters.js';
import type { SchedulerMetrics, TypeMetrics } from '../scheduler/metrics.js';
import type { HttpServer } from './server.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * Series of queue depth at most. Job types are capped where they are counted (MAX_COUNTED_TYPES), but priorities
 * are any integer a client sends: past this many type-and-priority pairs the rest are reported together.
 */
export const MAX_DEPTH_SERIES = 2000;

export interface MetricsContext {
  readonly scheduler: Scheduler;
}

export function addMetricsRoutes(http: HttpServer, ctx: MetricsContext): void {
  http.route('GET', '/metrics', ({ res }) => {
    const body = renderMetrics(ctx.scheduler.metrics(), Date.now());
    res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
    res.end(body);
  });
}

/** Per-type counters, in the order they are written: metric name suffix, help, field. */
const TYPE_COUNTERS: [string, string, keyof Omit<TypeMetrics, 'type'>][] = [
  ['submitted', 'Tasks accepted (plain jobs at submission, graph nodes when launched)', 'submitted'],
  ['completed', 'Tasks completed by a worker', 'completed'],
  ['failed', 'Tasks failed for good (handler error without retries left, attempts exhausted, no worker in time, too large)', 'failed'],
  ['cancelled', 'Tasks cancelled by id, and graph nodes withdrawn when their graph ended early', 'cancelled'],
  ['dropped', 'Attached tasks withdrawn because their client disconnected', 'dropped'],
  ['requeued', 'Times a task went back to the queue after its worker was lost or it timed out', 'requeued'],
  ['timed_out', 'Times a running task passed its timeout and was taken back', 'timedOut'],
  ['retried', 'Handler failures retried after a backoff', 'retried'],
  ['rejected', 'Submissions refused under a limit (queue full, too many pending, shutting down)', 'rejected'],
];

/** The text of one scrape. `now` (ms since the epoch) dates the ages of the oldest queued tasks. */
export function renderMetrics(m: SchedulerMetrics, now: number): string {
  const out: string[] = [];
  const family = (name: string, type: 'gauge' | 'counter' | 'histogram', help: string): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  };
  const sample = (name: string, value: number, labels = ''): void => {
    out.push(`${name}${labels} ${num(value)}`);
  };
  /** A family of one sample without labels. */
  const single = (name: string, type: 'gauge' | 'counter', help: string, value: number): void => {
    family(name, type, help);
    sample(name, value);
  };
  const s = m.stats;

  const depths = new Map<string, { type: string; priority: string; count: number; oldestAt: number }>();
  for (const q of m.queues) {
    let key = `${q.label}\u0000${q.priority}`;
    if (!depths.has(key) && depths.size >= MAX_DEPTH_SERIES) key = `${OTHER_TYPE}\u0000${OTHER_TYPE}`;
    const entry = depths.get(key);
    if (entry === undefined) {
      const other = key === `${OTHER_TYPE}\u0000${OTHER_TYPE}`;
      depths.set(key, { type: other ? OTHER_TYPE : q.label, priority: other ? OTHER_TYPE : String(q.priority), count: q.count, oldestAt: q.oldestAt });
    } else {
      entry.count += q.count;
      entry.oldestAt = Math.min(entry.oldestAt, q.oldestAt);
    }
  }
  family('taskwire_queue_depth', 'gauge', 'Tasks waiting for a worker, by job type and priority');
  const depthLabels = [...depths.values()].map((d) => labels({ type: d.type, priority: d.priority }));
  [...depths.values()].forEach((d, i) => sample('taskwire_queue_depth', d.count, depthLabels[i]));
  family('taskwire_queue_oldest_age_seconds', 'gauge', 'Age of the oldest task waiting (since its submission), by job type and priority');
  [...depths.values()].forEach((d, i) => sample('taskwire_queue_oldest_age_seconds', Math.max(0, now - d.oldestAt) / 1000, depthLabels[i]));

  single('taskwire_tasks_queued', 'gauge', 'Tasks waiting for a worker', s.queued);
  single('taskwire_tasks_queued_bytes', 'gauge', 'Bytes of the payloads of the tasks waiting for a worker', s.queuedBytes);
  single('taskwire_tasks_in_flight', 'gauge', 'Tasks running on a worker', s.inFlight);
  single('taskwire_tasks_delayed', 'gauge', 'Tasks waiting out a delay or a retry backoff', s.delayed);
  single('taskwire_workers_connected', 'gauge', 'Workers connected', s.workers);
  single('taskwire_worker_slots', 'gauge', "Connected workers' concurrency, summed: tasks they may hold at once", m.workerSlots);
  single('taskwire_clients_connected', 'gauge', 'Clients connected', s.clients);
  single('taskwire_connections', 'gauge', 'Open connections, handshakes included', s.connections);

  const typeLabels = m.types.map((t) => labels({ type: t.type }));
  for (const [suffix, help, field] of TYPE_COUNTERS) {
    const name = `taskwire_tasks_${suffix}_total`;
    family(name, 'counter', `${help}, by job type`);
    m.types.forEach((t, i) => sample(name, t[field], typeLabels[i]));
  }

  const h = m.latency;
  family('taskwire_task_latency_seconds', 'histogram', 'Time from submission to completion of completed tasks (queue wait, retries and run time)');
  h.boundsSeconds.forEach((le, i) => sample('taskwire_task_latency_seconds_bucket', h.cumulative[i]!, labels({ le: num(le) })));
  sample('taskwire_task_latency_seconds_bucket', h.cumulative[h.boundsSeconds.length]!, labels({ le: '+Inf' }));
  sample('taskwire_task_latency_seconds_sum', h.sumSeconds);
  sample('taskwire_task_latency_seconds_count', h.count);

  single('taskwire_results_late_total', 'counter', 'Results that arrived for a lease already taken back (timed out), dropped', s.late);
  single('taskwire_results_discarded_total', 'counter', 'Results dropped because their client had left or the job was cancelled', s.discarded);
  single('taskwire_dead_letters', 'gauge', 'Failed tasks kept for inspection (bounded by deadLetterLimit)', s.deadLetters);
  single('taskwire_finished_jobs', 'gauge', 'Records of finished detached jobs kept for status and wait', s.finishedJobs);

  family('taskwire_received_bytes_total', 'counter', "Bytes read from the scheduler's sockets, by listener (tcp: peers; http: API, dashboard, WebSocket peers)");
  sample('taskwire_received_bytes_total', m.traffic.tcp.received, labels({ transport: 'tcp' }));
  sample('taskwire_received_bytes_total', m.traffic.http.received, labels({ transport: 'http' }));
  family('taskwire_sent_bytes_total', 'counter', "Bytes written to the scheduler's sockets, by listener");
  sample('taskwire_sent_bytes_total', m.traffic.tcp.sent, labels({ transport: 'tcp' }));
  sample('taskwire_sent_bytes_total', m.traffic.http.sent, labels({ transport: 'http' }));

  const cpu = process.cpuUsage();
  single('process_cpu_seconds_total', 'counter', 'User and system CPU time spent, in seconds', (cpu.user + cpu.system) / 1e6);
  single('process_resident_memory_bytes', 'gauge', 'Resident memory size, in bytes', process.memoryUsage.rss());
  single('process_start_time_seconds', 'gauge', 'Start time of the process since the epoch, in seconds', Math.round(PROCESS_START_MS / 10) / 100);
  return `${out.join('\n')}\n`;
}

const PROCESS_START_MS = Date.now() - process.uptime() * 1000;

/** `{a="x",b="y"}`, values escaped as the format says (backslash, double quote, newline). */
function labels(pairs: Record<string, string>): string {
  const parts: string[] = [];
  for (const key in pairs) {
    const value = pairs[key]!;
    parts.push(`${key}="${/[\\"\n]/.test(value) ? value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : value}"`);
  }
  return `{${parts.join(',')}}`;
}

function num(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}
