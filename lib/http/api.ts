// The REST endpoints for jobs: submit, a job by id (with long polling), cancel, the latest jobs, the workers,
// health. Jobs go in through an ordinary client of the scheduler, connected from the same process, so an HTTP
// job is a job like any other: detached (it outlives the request), with an id any client can use.

import type { Client, SubmitOptions } from '../client/index.js';
import { ErrorCode } from '../errors.js';
import type { JobInfo, JobState } from '../scheduler/finished.js';
import { JOB_STATES } from '../scheduler/finished.js';
import type { Scheduler, WorkerStatus } from '../scheduler/index.js';
import { HttpError, readJson, sendJson, type HttpServer } from './server.js';

/** The longest long poll (`GET /job/{id}?wait=S`), in seconds. */
export const MAX_WAIT_S = 60;

/** A worker registered over HTTP, up or down. */
export interface RegisteredWorker {
  id: string;
  name: string;
  url: string;
  types: string[];
  concurrency: number;
  up: boolean;
  /** Its id in the scheduler while it is up. */
  coreId: number | null;
  /** Why it is down. */
  down: string | null;
}

export interface ApiContext {
  readonly scheduler: Scheduler;
  /** The in-process client jobs are submitted with; null until the scheduler listens. */
  client(): Client;
  readonly maxBodyBytes: number;
  readonly startedAt: number;
  httpWorkers(): RegisteredWorker[];
}

/**
 * The workers as GET /workers and the dashboard show them: the connected ones, then those registered over HTTP
 * that are down. An HTTP worker keeps the id it was registered with, whatever its id in the scheduler this time.
 */
export function workersJson(workers: readonly WorkerStatus[], registered: readonly RegisteredWorker[], now: number): Record<string, unknown>[] {
  const byCoreId = new Map(registered.filter((r) => r.coreId !== null).map((r) => [r.coreId!, r.id]));
  const out: Record<string, unknown>[] = workers.map((w) => ({
    worker_id: byCoreId.get(w.id) ?? w.id,
    status: 'up',
    name: w.name,
    address: w.remote,
    transport: w.transport,
    types: w.types,
    concurrency: w.concurrency,
    in_flight: w.inFlight,
    last_seen: new Date(w.lastSeenAt).toISOString(),
    last_seen_ms_ago: Math.max(0, now - w.lastSeenAt),
  }));
  for (const r of registered) {
    if (r.up) continue;
    out.push({ worker_id: r.id, status: 'down', name: r.name, address: r.url, transport: 'http', types: r.types, concurrency: r.concurrency, in_flight: 0, down_reason: r.down });
  }
  return out;
}

/** A job as GET /job/{id} answers it: the REST design's fields (job_id, finished, answer) and the job's status. */
export function jobJson(info: JobInfo): Record<string, unknown> {
  const finished = info.state === 'completed' || info.state === 'failed' || info.state === 'cancelled';
  const out: Record<string, unknown> = { job_id: info.id, finished, state: info.state, type: info.type };
  if (info.state === 'completed') {
    if (info.result !== undefined) out.answer = answerOf(info.type, info.result);
    else if (info.resultBase64 !== undefined) out.answer_base64 = info.resultBase64;
    else out.result_bytes = info.resultBytes;
  }
  if (info.error) out.error = info.error;
  out.attempts = info.attempts;
  out.priority = info.priority;
  out.worker = info.worker;
  out.submitted_at = info.submittedAt;
  out.started_at = info.startedAt;
  out.finished_at = info.finishedAt;
  if (info.runAt !== null) out.run_at = info.runAt;
  if (info.progress !== null) out.progress = info.progress;
  if (info.nodes) out.nodes = info.nodes;
  return out;
}

/** An arith result that JSON can carry as a number is answered as one (-2.5); everything else as its text. */
function answerOf(type: string, result: string): unknown {
  if (type !== 'arith') return result;
  const n = Number(result);
  return Number.isFinite(n) && String(n) === result ? n : result;
}

const OPTION_FIELDS = ['priority', 'delay', 'timeout', 'retries', 'backoff', 'tenant'] as const;

/** The job options a POST /submit body may carry, as the client takes them. */
function submitOptions(body: Record<string, unknown>): SubmitOptions {
  const options: SubmitOptions = { detach: true };
  const number = (field: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) throw new HttpError(400, ErrorCode.INVALID, `"${field}" must be a whole number of ms (or a count) from 0, got ${JSON.stringify(value)}`);
    return value;
  };
  if (body.priority !== undefined) {
    if (typeof body.priority !== 'number' && typeof body.priority !== 'string') throw new HttpError(400, ErrorCode.INVALID, '"priority" must be a number or "high", "normal", "low"');
    options.priority = body.priority as SubmitOptions['priority'];
  }
  if (body.delay !== undefined) options.delayMs = number('delay', body.delay);
  if (body.timeout !== undefined) options.timeoutMs = number('timeout', body.timeout);
  if (body.retries !== undefined) options.retries = number('retries', body.retries);
  if (body.backoff !== undefined) options.backoffMs = number('backoff', body.backoff);
  if (body.tenant !== undefined) options.tenant = body.tenant as string | number;
  return options;
}

export function addJobRoutes(http: HttpServer, ctx: ApiContext): void {
  http.route('POST', '/submit', async ({ req, res }) => {
    const body = await readJson(req, ctx.maxBodyBytes);
    const known = new Set<string>(['task', 'type', 'payload', 'payload_base64', ...OPTION_FIELDS]);
    const unknown = Object.keys(body).filter((key) => !known.has(key));
    if (unknown.length > 0) throw new HttpError(400, ErrorCode.INVALID, `unknown field "${unknown[0]}"; a job is {"task": "<expression>"} or {"type", "payload" or "payload_base64"} with ${OPTION_FIELDS.join(', ')}`);
    let type: string;
    let payload: string | Buffer;
    if (body.task !== undefined) {
      if (typeof body.task !== 'string') throw new HttpError(400, ErrorCode.INVALID, '"task" must be an arithmetic expression, as a string');
      if (body.type !== undefined && body.type !== 'arith') throw new HttpError(400, ErrorCode.INVALID, '"task" is an arith job: give "type" and "payload" for other types');
      type = 'arith';
      payload = body.task;
    } else {
      if (typeof body.type !== 'string' || body.type === '') throw new HttpError(400, ErrorCode.INVALID, 'missing field "type" (or "task" for an arithmetic expression)');
      type = body.type;
      if (typeof body.payload === 'string') payload = body.payload;
      else if (typeof body.payload_base64 === 'string') payload = Buffer.from(body.payload_base64, 'base64');
      else throw new HttpError(400, ErrorCode.INVALID, 'missing field "payload" (a string), or "payload_base64"');
    }
    const options = submitOptions(body);
    if (!ctx.scheduler.workers().some((w) => w.types.includes(type))) {
      throw new HttpError(400, ErrorCode.NO_WORKER, `unknown job type '${type}': no connected worker runs it`);
    }
    const job = await ctx.client().enqueue(type, payload, options);
    job.result.catch(() => {}); // its outcome is read by id
    sendJson(res, 200, { job_id: job.id, finished: false });
  });

  http.route('GET', '/job/{id}', async ({ res, url, params }) => {
    const id = jobId(params.id!);
    const wait = url.searchParams.get('wait');
    let info = ctx.scheduler.status(id);
    if (info === null) throw new HttpError(404, ErrorCode.NO_SUCH_JOB, `no job ${id}: it never existed, or it finished and its record is gone`);
    if (wait !== null && !isFinished(info)) {
      const seconds = Number(wait);
      if (!Number.isFinite(seconds) || seconds < 0) throw new HttpError(400, ErrorCode.INVALID, `?wait must be a number of seconds, got ${JSON.stringify(wait)}`);
      await waitFor(ctx, id, Math.min(seconds, MAX_WAIT_S) * 1000);
      info = ctx.scheduler.status(id) ?? info;
    }
    sendJson(res, 200, jobJson(info));
  });

  http.route('DELETE', '/job/{id}', ({ res, params }) => {
    const id = jobId(params.id!);
    const outcome = ctx.scheduler.cancel(id);
    if (outcome === 'unknown') throw new HttpError(404, ErrorCode.NO_SUCH_JOB, `no job ${id}: it never existed, or it finished and its record is gone`);
    sendJson(res, 200, { job_id: id, outcome });
  });

  http.route('GET', '/jobs', ({ res, url }) => {
    const state = url.searchParams.get('state');
    if (state !== null && !JOB_STATES.includes(state as JobState)) throw new HttpError(400, ErrorCode.INVALID, `unknown state '${state}'; one of ${JOB_STATES.join(', ')}`);
    const limit = Number(url.searchParams.get('limit') ?? 100);
    if (!Number.isInteger(limit) || limit < 1) throw new HttpError(400, ErrorCode.INVALID, `?limit must be a whole number from 1`);
    const jobs = ctx.scheduler.jobs({ state: (state ?? undefined) as JobState | undefined, limit });
    sendJson(res, 200, { jobs: jobs.map(jobJson) });
  });

  http.route('GET', '/workers', ({ res }) => {
    sendJson(res, 200, { workers: workersJson(ctx.scheduler.workers(), ctx.httpWorkers(), Date.now()) });
  });

  http.route('GET', '/healthz', ({ res }) => {
    const stats = ctx.scheduler.stats();
    sendJson(res, 200, { status: 'ok', uptime_s: Math.round((Date.now() - ctx.startedAt) / 1000), workers: stats.workers, queued: stats.queued, in_flight: stats.inFlight });
  });
}

function isFinished(info: JobInfo): boolean {
  return info.state === 'completed' || info.state === 'failed' || info.state === 'cancelled';
}

function jobId(text: string): number {
  const id = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(id) || id < 1) throw new HttpError(400, ErrorCode.INVALID, `a job id is a whole number from 1, got ${JSON.stringify(text)}`);
  return id;
}

/** Resolves when job `id` has an outcome, or after `ms`; one wait per job on the client, shared by every poller. */
const waits = new WeakMap<Client, Map<number, Promise<unknown>>>();
function waitFor(ctx: ApiContext, id: number, ms: number): Promise<void> {
  const client = ctx.client();
  let byJob = waits.get(client);
  if (!byJob) waits.set(client, (byJob = new Map()));
  let done = byJob.get(id);
  if (!done) {
    done = client.wait(id).catch(() => {}).finally(() => byJob.delete(id));
    byJob.set(id, done);
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  return Promise.race([done.then(() => {}), timeout]).finally(() => clearTimeout(timer));
}
