// The dashboard: GET / serves the page (dashboard-page.ts); GET /events streams a JSON snapshot a second to it
// as Server-Sent Events; the dead letters are listed at GET /dead-letters and submitted again with
// POST /dead-letters/{job_id}/retry. The page's other calls are the API's own (/submit, /job/{id}, DELETE).
//
// One timer samples the scheduler's counters once a second, whether or not anyone watches, so a page opened
// now draws the last five minutes at once; a snapshot is built once per second and written to every stream.

import type http from 'node:http';
import type { Client } from '../client/index.js';
import { ErrorCode } from '../errors.js';
import type { QueueDepth } from '../scheduler/counters.js';
import type { DeadLetter } from '../scheduler/core.js';
import type { Scheduler, SchedulerStats } from '../scheduler/index.js';
import { workersJson, type RegisteredWorker } from './api.js';
import { DASHBOARD_CSP, DASHBOARD_HTML } from './dashboard-page.js';
import { HttpError, sendJson, type HttpServer } from './server.js';

/** Event streams open at once at most; more are answered 503, so open tabs cannot pile up without bound. */
export const MAX_EVENT_STREAMS = 32;
/** How often the counters are sampled and a snapshot goes out. */
export const SAMPLE_MS = 1000;
/** Samples kept for the chart: five minutes. */
const HISTORY_POINTS = 300;
/** Rows of each table a snapshot carries. */
const ROWS = { workers: 200, queues: 50, jobs: 15, dead: 15 };
/** A stream this far behind (bytes written and not yet taken by the peer) is closed rather than buffered further. */
const STREAM_BACKLOG_MAX = 4 * 1024 * 1024;
/** Dead letters submitted again, remembered (job id -> the new job's id) so the page shows it. */
const RETRIED_MAX = 1000;

export interface DashboardContext {
  readonly scheduler: Scheduler;
  /** The in-process client jobs are submitted with (the API's). */
  client(): Client;
  httpWorkers(): RegisteredWorker[];
}

/** One sample: time (ms since the epoch), then submitted, completed and failed per second since the last one. */
type Point = [number, number, number, number];

export function addDashboardRoutes(http: HttpServer, ctx: DashboardContext): Dashboard {
  const board = new Dashboard(ctx);
  http.route('GET', '/', ({ res }) => {
    const body = DASHBOARD_HTML;
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'content-security-policy': DASHBOARD_CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
    });
    res.end(body);
  });
  http.route('GET', '/events', ({ req, res }) => board.stream(req, res));
  http.route('GET', '/dead-letters', ({ res, url }) => {
    const limit = Number(url.searchParams.get('limit') ?? 100);
    if (!Number.isInteger(limit) || limit < 1) throw new HttpError(400, ErrorCode.INVALID, '?limit must be a whole number from 1');
    const letters = ctx.scheduler.deadLetters().slice(-limit).reverse();
    sendJson(res, 200, { dead_letters: letters.map((d) => board.letterJson(d, Date.now())) });
  });
  http.route('POST', '/dead-letters/{id}/retry', async ({ res, params }) => {
    const id = Number(params.id);
    if (!/^\d+$/.test(params.id!) || !Number.isSafeInteger(id)) throw new HttpError(400, ErrorCode.INVALID, `a job id is a whole number, got ${JSON.stringify(params.id)}`);
    const jobId = await board.retry(id);
    sendJson(res, 200, { job_id: jobId, retry_of: id, finished: false });
  });
  return board;
}

export class Dashboard {
  private readonly streams = new Set<http.ServerResponse>();
  private readonly history: Point[] = [];
  private readonly retried = new Map<number, number>();
  private last: { t: number; submitted: number; completed: number; failed: number };
  private readonly startedAt = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly ctx: DashboardContext) {
    const stats = ctx.scheduler.stats();
    this.last = { t: Date.now(), submitted: stats.submitted, completed: stats.completed, failed: stats.failed };
    this.timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.timer.unref();
    ctx.scheduler.once('close', () => this.close());
  }

  /** Streams open now. */
  get streamCount(): number {
    return this.streams.size;
  }

  stream(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.streams.size >= MAX_EVENT_STREAMS) {
      throw new HttpError(503, 'E_TOO_MANY_STREAMS', `${MAX_EVENT_STREAMS} event streams are open already; close a dashboard tab`);
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      // A proxy that buffers responses would hold the events back.
      'x-accel-buffering': 'no',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    this.streams.add(res);
    const forget = (): void => void this.streams.delete(res);
    req.on('close', forget);
    res.on('close', forget);
    res.write(`retry: 2000\n\n`);
    this.send(res, JSON.stringify(this.snapshot(this.ctx.scheduler.stats(), Date.now(), true)));
  }

  /** Submits a dead letter's job again, from the copy of its payload; resolves with the new job's id. */
  async retry(jobId: number): Promise<number> {
    const letter = this.ctx.scheduler.deadLetters().findLast((d) => d.jobId === jobId);
    if (letter === undefined) throw new HttpError(404, ErrorCode.NO_SUCH_JOB, `no dead letter for job ${jobId} (only the latest failures are kept)`);
    const refusal = notRetryable(letter);
    if (refusal !== null) throw new HttpError(409, 'E_NOT_RETRYABLE', `job ${jobId} cannot be submitted again: ${refusal}`);
    if (!this.ctx.scheduler.workers().some((w) => w.types.includes(letter.type))) {
      throw new HttpError(400, ErrorCode.NO_WORKER, `unknown job type '${letter.type}': no connected worker runs it`);
    }
    const job = await this.ctx.client().enqueue(letter.type, letter.payload!, { detach: true, priority: letter.priority });
    job.result.catch(() => {}); // its outcome is read by id
    this.retried.set(jobId, job.id);
    if (this.retried.size > RETRIED_MAX) this.retried.delete(this.retried.keys().next().value!);
    return job.id;
  }

  letterJson(d: DeadLetter, now: number): Record<string, unknown> {
    const refusal = notRetryable(d);
    return {
      job_id: d.jobId,
      type: d.type,
      code: d.code,
      message: d.message,
      attempts: d.attempts,
      payload_bytes: d.payloadBytes,
      retryable: refusal === null,
      ...(refusal === null ? {} : { not_retryable: refusal }),
      retried_as: this.retried.get(d.jobId) ?? null,
      failed_at: d.failedAt,
      failed_ago_ms: now - d.failedAt,
    };
  }

  private sample(): void {
    const now = Date.now();
    const stats = this.ctx.scheduler.stats();
    const seconds = Math.max(0.001, (now - this.last.t) / 1000);
    const point: Point = [
      now,
      round1((stats.submitted - this.last.submitted) / seconds),
      round1((stats.completed - this.last.completed) / seconds),
      round1((stats.failed - this.last.failed) / seconds),
    ];
    this.last = { t: now, submitted: stats.submitted, completed: stats.completed, failed: stats.failed };
    this.history.push(point);
    if (this.history.length > HISTORY_POINTS) this.history.shift();
    if (this.streams.size === 0) return;
    const data = JSON.stringify(this.snapshot(stats, now, false));
    for (const res of this.streams) this.send(res, data);
  }

  private send(res: http.ServerResponse, data: string): void {
    if (res.writableLength > STREAM_BACKLOG_MAX) {
      this.streams.delete(res);
      res.destroy();
      return;
    }
    res.write(`data: ${data}\n\n`);
  }

  private snapshot(stats: SchedulerStats, now: number, withHistory: boolean): Record<string, unknown> {
    const s = this.ctx.scheduler;
    const point = this.history.at(-1) ?? [now, 0, 0, 0];
    const workers = workersJson(s.workers(), this.ctx.httpWorkers(), now);
    const queues = s.queueDepths();
    const dead = s.deadLetters();
    return {
      t: now,
      name: s.name,
      uptime_s: Math.round((now - this.startedAt) / 1000),
      stats: {
        queued: stats.queued,
        running: stats.inFlight,
        delayed: stats.delayed,
        submitted: stats.submitted,
        completed: stats.completed,
        failed: stats.failed,
        cancelled: stats.cancelled,
        requeued: stats.requeued,
        timed_out: stats.timedOut,
        workers: stats.workers,
        clients: stats.clients,
        dead_letters: stats.deadLetters,
      },
      rate: { submitted: point[1], completed: point[2], failed: point[3] },
      ...(withHistory ? { history: this.history } : { point }),
      workers: workers.slice(0, ROWS.workers),
      workers_total: workers.length,
      queues: largest(queues, ROWS.queues).map((q) => ({ type: q.type, priority: q.priority, count: q.count, oldest_ms: Math.max(0, now - q.oldestAt) })),
      queues_total: queues.length,
      jobs: s.jobs({ limit: ROWS.jobs }).map((j) => ({
        id: j.id,
        type: j.type,
        state: j.state,
        attempts: j.attempts,
        worker: j.worker,
        age_ms: Math.max(0, now - j.submittedAt),
      })),
      dead: dead.slice(-ROWS.dead).reverse().map((d) => this.letterJson(d, now)),
      dead_total: dead.length,
    };
  }

  private close(): void {
    clearInterval(this.timer);
    for (const res of this.streams) res.end();
    this.streams.clear();
  }
}

function notRetryable(d: DeadLetter): string | null {
  if (d.graphNode) return 'it was a node of a graph job (submit the graph again)';
  if (d.payload === null) return `its payload (${d.payloadBytes} bytes) was not kept`;
  return null;
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

/** The `k` queues holding the most tasks (the oldest first among equals), without sorting them all. */
function largest(queues: QueueDepth[], k: number): QueueDepth[] {
  const before = (a: QueueDepth, b: QueueDepth): boolean => a.count > b.count || (a.count === b.count && a.oldestAt < b.oldestAt);
  const top: QueueDepth[] = [];
  for (const q of queues) {
    if (top.length === k && !before(q, top[k - 1]!)) continue;
    let i = top.length === k ? k - 1 : top.length;
    while (i > 0 && before(q, top[i - 1]!)) i--;
    top.splice(i, 0, q);
    if (top.length > k) top.pop();
  }
  return top;
}
