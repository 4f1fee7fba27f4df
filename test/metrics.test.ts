// GET /metrics on real sockets: Prometheus's text format line by line; the per-type counters as jobs complete,
// fail, are requeued (a worker process killed mid-task), time out, are cancelled and dropped; the latency
// histogram; queue depth by type and priority; bytes through the listeners; the token; and a flood of job types
// that leaves the series bounded.

import t, { type Test } from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, type Handlers } from '../lib/index.js';
import { MAX_COUNTED_TYPES } from '../lib/scheduler/counters.js';
import { spawnTs, startClient, startScheduler, startWorker, waitFor, within } from './helpers.js';

type Samples = Map<string, number>;

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/;

/** Parses a scrape, failing the test on any line that is not `# HELP`, `# TYPE` or a sample. */
function parse(t: Test, text: string): { samples: Samples; types: Map<string, string> } {
  const samples: Samples = new Map();
  const types = new Map<string, string>();
  const bad: string[] = [];
  t.ok(text.endsWith('\n'), 'the text ends with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    if (line.startsWith('# HELP ')) {
      const [name, ...help] = line.slice(7).split(' ');
      if (!NAME.test(name!) || help.join(' ').trim() === '') bad.push(line);
    } else if (line.startsWith('# TYPE ')) {
      const [name, type, ...rest] = line.slice(7).split(' ');
      if (!NAME.test(name!) || !['counter', 'gauge', 'histogram'].includes(type!) || rest.length > 0) bad.push(line);
      else types.set(name!, type!);
    } else {
      const m = SAMPLE.exec(line);
      if (m === null) bad.push(line);
      else samples.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
    }
  }
  t.same(bad, [], 'every line is # HELP, # TYPE or name{labels} value');
  return { samples, types };
}

async function scrape(t: Test, port: number, headers: Record<string, string> = {}): Promise<{ samples: Samples; types: Map<string, string>; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { headers, signal: AbortSignal.timeout(10_000) });
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const text = await res.text();
  return { ...parse(t, text), text };
}

const get = (s: Samples, name: string, labels = ''): number => s.get(`${name}${labels}`) ?? 0;
const typed = (type: string): string => `{type="${type}"}`;

/** Never settles until aborted: a task that stays running (or times out). */
const hang: Handlers[string] = (_payload, { signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));

t.test('the text parses, and the counters move as jobs complete, fail, time out, are cancelled and dropped', async (t) => {
  const scheduler = await startScheduler(t, { httpPort: 0 });
  startWorker(t, scheduler.port, { ok: (p) => `ok:${p.toString()}`, bad: () => Promise.reject(new Error('nope')), hang }, { name: 'w1' });
  await waitFor('a worker', () => scheduler.stats().workers === 1);
  const c = startClient(t, scheduler.port);

  const before = await scrape(t, scheduler.httpPort);
  t.equal(before.types.get('taskwire_tasks_submitted_total'), 'counter');
  t.equal(before.types.get('taskwire_queue_depth'), 'gauge');
  t.equal(before.types.get('taskwire_task_latency_seconds'), 'histogram');
  t.equal(get(before.samples, 'taskwire_workers_connected'), 1);

  await within(10_000, '50 jobs', Promise.all(Array.from({ length: 50 }, (_, i) => c.submit('ok', `x${i}`))));
  await t.rejects(c.submit('bad', 'y'), { code: ErrorCode.HANDLER });
  await t.rejects(c.submit('bad', 'z', { retries: 2, backoffMs: 1 }), { code: ErrorCode.HANDLER }, 'failed after two retries');
  // Alone on its type, the worker gets a timed-out task back; the third timeout fails it (maxAttempts 3).
  await t.rejects(within(10_000, 'timeouts', c.submit('hang', 'h', { timeoutMs: 100 })), { code: ErrorCode.ATTEMPTS });
  const queued = await c.enqueue('nobody-runs-this', 'q');
  queued.result.catch(() => {});
  t.equal(scheduler.cancel(queued.id), 'cancelled');
  const leaving = startClient(t, scheduler.port);
  leaving.submit('nobody-runs-this', 'dropped-1').catch(() => {});
  leaving.submit('nobody-runs-this', 'dropped-2').catch(() => {});
  leaving.submit('hang', 'dropped-running').catch(() => {});
  await waitFor('the departing client queued its jobs', () => scheduler.stats().queued === 2 && scheduler.stats().inFlight === 1);
  await leaving.close();
  await waitFor('its jobs dropped', () => scheduler.stats().queued === 0 && scheduler.stats().inFlight === 0);

  const { samples: s } = await scrape(t, scheduler.httpPort);
  t.equal(get(s, 'taskwire_tasks_submitted_total', typed('ok')), 50);
  t.equal(get(s, 'taskwire_tasks_completed_total', typed('ok')), 50);
  t.equal(get(s, 'taskwire_tasks_submitted_total', typed('bad')), 2);
  t.equal(get(s, 'taskwire_tasks_failed_total', typed('bad')), 2);
  t.equal(get(s, 'taskwire_tasks_retried_total', typed('bad')), 2);
  t.equal(get(s, 'taskwire_tasks_timed_out_total', typed('hang')), 3);
  t.equal(get(s, 'taskwire_tasks_requeued_total', typed('hang')), 2, 'requeued after the first two timeouts');
  t.equal(get(s, 'taskwire_tasks_failed_total', typed('hang')), 1);
  t.equal(get(s, 'taskwire_tasks_dropped_total', typed('hang')), 1, 'the running job of the client that left');
  t.equal(get(s, 'taskwire_tasks_cancelled_total', typed('nobody-runs-this')), 1);
  t.equal(get(s, 'taskwire_tasks_dropped_total', typed('nobody-runs-this')), 2);
  t.equal(get(s, 'taskwire_tasks_submitted_total', typed('nobody-runs-this')), 3);
  t.equal(get(s, 'taskwire_tasks_in_flight'), 0);
  t.equal(get(s, 'taskwire_dead_letters'), 3);

  // The histogram: cumulative buckets ending in +Inf, which equals the count, which is every completion.
  const buckets = [...s].filter(([k]) => k.startsWith('taskwire_task_latency_seconds_bucket'));
  t.ok(buckets.length > 5, `${buckets.length} buckets`);
  t.equal(buckets.at(-1)![0], 'taskwire_task_latency_seconds_bucket{le="+Inf"}');
  t.ok(buckets.every(([, v], i) => i === 0 || v >= buckets[i - 1]![1]), 'cumulative');
  t.equal(buckets.at(-1)![1], 50);
  t.equal(get(s, 'taskwire_task_latency_seconds_count'), 50);
  t.ok(get(s, 'taskwire_task_latency_seconds_sum') >= 0);

  t.ok(get(s, 'taskwire_received_bytes_total', '{transport="tcp"}') > get(before.samples, 'taskwire_received_bytes_total', '{transport="tcp"}'), 'bytes in grew');
  t.ok(get(s, 'taskwire_sent_bytes_total', '{transport="tcp"}') > get(before.samples, 'taskwire_sent_bytes_total', '{transport="tcp"}'), 'bytes out grew');
  t.ok(get(s, 'taskwire_received_bytes_total', '{transport="http"}') > 0, 'the scrapes themselves came over HTTP');

  const api = scheduler.metrics();
  t.match(api.types.find((m) => m.type === 'ok'), { submitted: 50, completed: 50 }, 'scheduler.metrics() gives the same counts');
  t.equal(api.latency.count, 50);
});

t.test('a worker killed mid-task: its task is requeued and counted so', async (t) => {
  const scheduler = await startScheduler(t, { httpPort: 0 });
  const victim = spawnTs(t, 'test/fixtures/slow-worker.ts', [String(scheduler.port), 'victim', '1', '60000']);
  await waitFor('the worker process', () => scheduler.stats().workers === 1, 20_000);
  const c = startClient(t, scheduler.port);
  const result = c.submit('slow', 'p');
  await waitFor('the task running on it', () => scheduler.stats().inFlight === 1);
  victim.proc.kill('SIGKILL');
  await waitFor('the task back in the queue', () => scheduler.stats().requeued === 1);
  const mid = (await scrape(t, scheduler.httpPort)).samples;
  t.equal(get(mid, 'taskwire_tasks_requeued_total', typed('slow')), 1);
  t.equal(get(mid, 'taskwire_queue_depth', '{type="slow",priority="0"}'), 1, 'waiting again');
  t.equal(get(mid, 'taskwire_workers_connected'), 0);
  startWorker(t, scheduler.port, { slow: (p) => `done:${p.toString()}` });
  t.equal(await within(10_000, 'the requeued task', result), 'done:p');
  const after = (await scrape(t, scheduler.httpPort)).samples;
  t.equal(get(after, 'taskwire_tasks_completed_total', typed('slow')), 1);
  t.equal(get(after, 'taskwire_tasks_submitted_total', typed('slow')), 1, 'one task, requeued once');
  t.notOk(after.has('taskwire_queue_depth{type="slow",priority="0"}'), 'no depth series for an empty queue');
});

t.test('queue depth by type and priority matches the queued jobs, with the age of the oldest', async (t) => {
  const scheduler = await startScheduler(t, { httpPort: 0 });
  const c = startClient(t, scheduler.port);
  const plan: [string, 'high' | 'normal' | 'low' | number, number][] = [
    ['idle-a', 'high', 3],
    ['idle-a', 'normal', 2],
    ['idle-a', 'low', 1],
    ['idle-b', 'normal', 4],
    ['idle-b', 7, 2],
  ];
  for (const [type, priority, n] of plan) for (let i = 0; i < n; i++) c.submit(type, `${type}-${i}`, { priority }).catch(() => {});
  await waitFor('12 queued', () => scheduler.stats().queued === 12);
  await sleep(300);
  const { samples: s } = await scrape(t, scheduler.httpPort);
  const expected = { 'idle-a,10': 3, 'idle-a,0': 2, 'idle-a,-10': 1, 'idle-b,0': 4, 'idle-b,7': 2 };
  for (const [key, n] of Object.entries(expected)) {
    const [type, priority] = key.split(',');
    t.equal(get(s, 'taskwire_queue_depth', `{type="${type}",priority="${priority}"}`), n, `${type} at ${priority}`);
    const oldest = get(s, 'taskwire_queue_oldest_age_seconds', `{type="${type}",priority="${priority}"}`);
    t.ok(oldest >= 0.25 && oldest < 30, `${type} at ${priority}: oldest waited ${oldest} s`);
  }
  t.equal([...s.keys()].filter((k) => k.startsWith('taskwire_queue_depth{')).length, 5, 'one series per type and priority in use');
  t.equal(get(s, 'taskwire_tasks_queued'), 12);
  const depths = scheduler.queueDepths();
  t.equal(depths.reduce((n, d) => n + d.count, 0), 12, 'queueDepths() adds up to the queue');
  t.same(depths.filter((d) => d.type === 'idle-a').map((d) => d.priority), [10, 0, -10], 'highest priority first');
});

t.test('a flood of 5,000 distinct job types keeps the per-type series bounded', async (t) => {
  const scheduler = await startScheduler(t, { httpPort: 0 });
  const c = startClient(t, scheduler.port);
  const n = 5000;
  for (let i = 0; i < n; i++) c.submit(`flood-${i}`, 'x').catch(() => {});
  await waitFor(`${n} queued`, () => scheduler.stats().queued === n, 20_000);
  const started = Date.now();
  const { samples: s, text } = await scrape(t, scheduler.httpPort);
  t.comment(`scrape of ${text.length} bytes in ${Date.now() - started} ms`);
  const series = (name: string): [string, number][] => [...s].filter(([k]) => k.startsWith(`${name}{`));
  const submitted = series('taskwire_tasks_submitted_total');
  t.equal(submitted.length, MAX_COUNTED_TYPES + 1, `${MAX_COUNTED_TYPES} types counted apart, the rest as _other`);
  t.equal(get(s, 'taskwire_tasks_submitted_total', typed('_other')), n - MAX_COUNTED_TYPES);
  t.equal(submitted.reduce((sum, [, v]) => sum + v, 0), n, 'every submission counted once');
  const depth = series('taskwire_queue_depth');
  t.equal(depth.length, MAX_COUNTED_TYPES + 1, 'queue depth under the same labels');
  t.equal(get(s, 'taskwire_queue_depth', '{type="_other",priority="0"}'), n - MAX_COUNTED_TYPES);
  t.ok(text.length < 2_000_000, `the scrape stays small: ${text.length} bytes`);
  // The counters outlive the queues: once the client and its jobs are gone the counts remain, and no more series.
  await c.close();
  await waitFor('the flood dropped with its client', () => scheduler.stats().queued === 0);
  const after = (await scrape(t, scheduler.httpPort)).samples;
  t.equal(get(after, 'taskwire_tasks_dropped_total', typed('_other')), n - MAX_COUNTED_TYPES);
  t.equal(get(after, 'taskwire_tasks_dropped_total', typed('flood-0')), 1);
  t.equal([...after.keys()].filter((k) => k.startsWith('taskwire_queue_depth{')).length, 0);
});

t.test('label values are escaped; the token guards /metrics, as a bearer token or ?token= on a GET', async (t) => {
  const scheduler = await startScheduler(t, { httpPort: 0, token: 'm3trics' });
  const c = startClient(t, scheduler.port, { token: 'm3trics' });
  c.submit('we"ird\\type\nname', 'x').catch(() => {});
  await waitFor('queued', () => scheduler.stats().queued === 1);
  const base = `http://127.0.0.1:${scheduler.httpPort}`;
  t.equal((await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(10_000) })).status, 401);
  t.equal((await fetch(`${base}/metrics?token=wrong`, { signal: AbortSignal.timeout(10_000) })).status, 401);
  const { samples } = await scrape(t, scheduler.httpPort, { authorization: 'Bearer m3trics' });
  t.equal(get(samples, 'taskwire_queue_depth', '{type="we\\"ird\\\\type\\nname",priority="0"}'), 1, 'escaped as the format says');
  const viaQuery = await fetch(`${base}/metrics?token=m3trics`, { signal: AbortSignal.timeout(10_000) });
  t.equal(viaQuery.status, 200, '?token= on a GET');
  await viaQuery.text();
  const post = await fetch(`${base}/submit?token=m3trics`, { method: 'POST', body: '{"task":"1+1"}', signal: AbortSignal.timeout(10_000) });
  t.equal(post.status, 401, 'but not on a POST');
  await post.text();
});
