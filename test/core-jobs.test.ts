// The core's job model: ids, detached jobs, cancel, status, wait, progress, priorities, delays, fairness, jobs
// without a worker, and the records of finished jobs.

import t from 'tap';
import { ErrorCode } from '../lib/errors.js';
import { PROGRESS_INTERVAL_MS } from '../lib/scheduler/core.js';
import { Harness, bodyOf } from './core-harness.js';
import { getGc } from './helpers.js';

t.test('job ids count up from firstJobId, are never reused, and a refused submission gets none', (t) => {
  const h = new Harness({ firstJobId: 1_000_000, maxQueued: 2 });
  h.client('c1');
  const ids = [h.submit('c1', 1, 'x', 'a'), h.submit('c1', 2, 'x', 'b'), h.submit('c1', 3, 'x', 'refused')];
  t.same(ids, [1_000_000, 1_000_001, 0]);
  t.match(h.settled, [{ requestId: 3, code: ErrorCode.QUEUE_FULL }]);
  h.worker('w1', 4, ['x']);
  for (const d of [...h.sent]) h.finish(d);
  t.equal(h.submit('c1', 4, 'x', 'c'), 1_000_002, 'the next id, whatever settled meanwhile');
  t.equal(h.sent.at(-1)!.taskId, 1_000_002 >>> 0, "the worker's lease id is the job id's low 32 bits");
  t.end();
});

t.test('a detached job outlives its client: queued, delayed and running ones run once, and their outcome is kept', (t) => {
  const h = new Harness();
  h.client('gone');
  h.client('other');
  const queued = h.submit('gone', 1, 'x', 'queued', { detach: true });
  const delayed = h.submit('gone', 2, 'x', 'delayed', { detach: true, delayMs: 5000 });
  const attached = h.submit('gone', 3, 'x', 'attached');
  h.worker('w1', 1, ['y']);
  const running = h.submit('gone', 4, 'y', 'running', { detach: true });
  t.equal(h.sent.length, 1);
  h.lost('gone');
  t.equal(h.core.status(attached), null, 'an attached job goes with its client');
  t.match(h.core.status(queued), { state: 'queued', detached: true, type: 'x' });
  t.match(h.core.status(delayed), { state: 'delayed', runAt: 5000 });
  t.match(h.core.status(running), { state: 'running', worker: 'worker w1', attempts: 1 });
  t.same(h.cancels, [], 'nothing of it was withdrawn');
  h.core.wait(h.c('other'), 77, queued);
  h.worker('w2', 4, ['x']);
  t.same(h.bodies('w2'), ['queued']);
  h.finish(h.find('queued'), 'hash');
  t.same(h.settled, [{ client: 'other', requestId: 77, ok: true, body: 'hash', code: '', message: '' }], 'the waiter is answered; nobody else');
  h.finish(h.find('running'));
  h.tick(5000);
  h.finish(h.find('delayed'));
  for (const id of [queued, running, delayed]) {
    const s = h.core.status(id)!;
    t.equal(s.state, 'completed', `job ${id} completed`);
    t.equal(bodyOf(s.result!).toString().startsWith('done:') || bodyOf(s.result!).toString() === 'hash', true, 'with its result kept');
  }
  t.match(h.stats(), { completed: 3, finishedJobs: 3, inFlight: 0, queued: 0, delayed: 0 });
  t.equal(h.core.indexedJobs, 0);
  t.end();
});

t.test('cancel by id: a queued row, a requeued task, a delayed job and a running one each end cancelled once', (t) => {
  const h = new Harness();
  h.client('c1');
  h.client('c2');
  const row = h.submit('c1', 1, 'x', 'row');
  const later = h.submit('c1', 2, 'x', 'later');
  h.core.wait(h.c('c2'), 9, row);
  t.equal(h.core.cancel(row), 'cancelled');
  t.match(h.settled, [
    { client: 'c1', requestId: 1, ok: false, code: ErrorCode.CANCELLED, message: 'the job was cancelled' },
    { client: 'c2', requestId: 9, ok: false, code: ErrorCode.CANCELLED },
  ]);
  t.equal(h.core.cancel(row), 'unknown', 'an attached job leaves no record: once cancelled it is gone');
  t.match(h.stats(), { queued: 1, cancelled: 1 });

  h.worker('w1', 1, ['x']);
  t.same(h.bodies(), ['later'], 'the cancelled row never ran; the one behind it did');
  h.lost('w1');
  t.match(h.core.status(later), { state: 'queued', attempts: 1 }, 'requeued as a task object');
  t.equal(h.core.cancel(later), 'cancelled');
  t.match(h.settled.at(-1), { requestId: 2, code: ErrorCode.CANCELLED });

  const delayed = h.submit('c1', 3, 'x', 'delayed', { delayMs: 1000, detach: true });
  t.equal(h.core.cancel(delayed), 'cancelled');
  t.match(h.core.status(delayed), { state: 'cancelled', error: { code: ErrorCode.CANCELLED } }, 'a detached job keeps a record');
  t.equal(h.core.cancel(delayed), 'finished', 'cancelling a finished job says so');
  h.tick(5000);

  h.worker('w2', 1, ['x']);
  const running = h.submit('c1', 4, 'x', 'running');
  t.equal(h.core.cancel(running), 'cancelled');
  t.match(h.cancels, [{ worker: 'w2', code: ErrorCode.CANCELLED }], 'its handler is aborted');
  t.match(h.settled.at(-1), { requestId: 4, code: ErrorCode.CANCELLED });
  t.equal(h.busy('w2'), 1, 'its slot stays busy until the worker answers');
  const settled = h.settled.length;
  t.equal(h.finish(h.find('running')), null, 'the late answer is taken');
  t.equal(h.settled.length, settled, 'and dropped');
  t.match(h.stats(), { cancelled: 4, discarded: 1, late: 0, completed: 0, inFlight: 0 });
  t.equal(h.busy('w2'), 0);
  t.equal(h.core.cancel(123_456), 'unknown');
  t.equal(h.core.indexedJobs, 0);
  t.end();
});

t.test('status reports state, attempts, worker, times and progress; wait answers at once for a finished job', (t) => {
  const h = new Harness({ firstJobId: 50 });
  h.client('c1');
  h.client('c2');
  h.tick(1000);
  h.worker('w1', 1, ['x']);
  const id = h.submit('c1', 1, 'x', 'job', { detach: true, priority: 3 });
  h.tick(1500);
  h.core.progress(h.w('w1'), id >>> 0, 1, 0.5, 'half way');
  t.match(h.core.status(id), {
    id, type: 'x', state: 'running', priority: 3, detached: true, attempts: 1, worker: 'worker w1',
    submittedAt: 1000, startedAt: 1000, finishedAt: null, runAt: null, progress: { value: 0.5, message: 'half way' },
  });
  h.core.wait(h.c('c2'), 5, id);
  h.tick(2000);
  h.failTask(h.find('job'), 'E_CUSTOM', 'nope');
  t.match(h.core.status(id), { state: 'failed', finishedAt: 2000, error: { code: 'E_CUSTOM', message: 'nope' } });
  t.match(h.settled, [
    { client: 'c1', requestId: 1, ok: false, code: 'E_CUSTOM' },
    { client: 'c2', requestId: 5, ok: false, code: 'E_CUSTOM' },
  ]);
  h.core.wait(h.c('c2'), 6, id);
  t.match(h.settled.at(-1), { client: 'c2', requestId: 6, ok: false, code: 'E_CUSTOM' }, 'a finished job answers a new waiter at once');
  h.core.wait(h.c('c2'), 7, 999);
  t.match(h.settled.at(-1), { requestId: 7, code: ErrorCode.NO_SUCH_JOB });
  t.end();
});

t.test('progress goes to the owner and waiters at most every PROGRESS_INTERVAL_MS; the latest is kept', (t) => {
  const h = new Harness();
  h.client('c1');
  h.client('c2');
  h.worker('w1', 1, ['x']);
  const id = h.submit('c1', 1, 'x', 'job');
  h.core.wait(h.c('c2'), 3, id);
  const w = h.w('w1');
  h.core.progress(w, id >>> 0, 1, 0.1, '');
  h.core.progress(w, id >>> 0, 1, 0.2, 'too soon');
  h.tick(PROGRESS_INTERVAL_MS);
  h.core.progress(w, id >>> 0, 1, 0.3, 'later');
  h.core.progress(w, id >>> 0, 2, 0.9, 'a lease it does not hold');
  t.same(
    h.progress.map((p) => [p.client, p.requestId, p.value, p.message]),
    [['c1', 1, 0.1, ''], ['c2', 3, 0.1, ''], ['c1', 1, 0.3, 'later'], ['c2', 3, 0.3, 'later']],
  );
  t.match(h.core.status(id), { progress: { value: 0.3, message: 'later' } });
  t.end();
});

t.test('priorities: the highest first, FIFO within one, across the job types a worker runs', (t) => {
  const h = new Harness();
  h.client('c1');
  h.submit('c1', 1, 'x', 'x-normal');
  h.submit('c1', 2, 'y', 'y-low', { priority: -1 });
  h.submit('c1', 3, 'y', 'y-high', { priority: 5 });
  h.submit('c1', 4, 'x', 'x-high', { priority: 5 });
  h.submit('c1', 5, 'x', 'x-normal-2');
  h.worker('w1', 1, ['x', 'y']);
  for (let i = 0; i < 5; i++) h.finish(h.sent.at(-1)!);
  t.same(h.bodies(), ['y-high', 'x-high', 'x-normal', 'x-normal-2', 'y-low']);
  t.end();
});

t.test('a delayed job is not queued before its time, and is at the first tick after it', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 4, ['x']);
  h.tick(100);
  const id = h.submit('c1', 1, 'x', 'later', { delayMs: 250 });
  t.match(h.core.status(id), { state: 'delayed', runAt: 350 });
  t.match(h.stats(), { delayed: 1, queued: 0 });
  h.tick(349);
  t.same(h.sent, [], 'not at 349');
  h.tick(350);
  t.same(h.bodies(), ['later'], 'at 350');
  t.end();
});

t.test('fair: within a priority, clients take turns, so a burst holds a single job up by one job per client', (t) => {
  for (const fair of [false, true]) {
    const h = new Harness({ fair });
    h.client('burst');
    h.client('one');
    for (let i = 1; i <= 100; i++) h.submit('burst', i, 'x', `b${i}`);
    h.submit('one', 1, 'x', 'single');
    h.worker('w1', 1, ['x']);
    let before = 0;
    while (h.sent.at(-1)!.body !== 'single') {
      before++;
      h.finish(h.sent.at(-1)!);
    }
    t.equal(before, fair ? 1 : 100, fair ? 'fair: one job of the burst ran first' : 'FIFO: all hundred ran first');
  }
  t.end();
});

t.test('E_NO_WORKER: a job no worker can run fails after noWorkerTimeoutMs, counted from the later of its submission and the last worker leaving', (t) => {
  const h = new Harness({ noWorkerTimeoutMs: 1000 });
  h.client('c1');
  h.submit('c1', 1, 'x', 'early');
  h.tick(600);
  h.submit('c1', 2, 'x', 'later');
  h.tick(999);
  t.same(h.settled, []);
  h.tick(1000);
  t.match(h.settled, [{ requestId: 1, code: ErrorCode.NO_WORKER, message: "no worker for job type 'x' connected within 1000 ms" }]);
  h.tick(1599);
  t.equal(h.settled.length, 1, 'the later one has its own wait');
  h.worker('w1', 1, ['x']);
  t.same(h.bodies(), ['later'], 'a worker came in time');
  h.submit('c1', 3, 'x', 'queued');
  h.tick(2000);
  h.lost('w1');
  h.tick(2999);
  t.equal(h.settled.length, 1);
  h.tick(3000);
  t.match(
    h.settled.slice(1),
    [
      { requestId: 2, code: ErrorCode.NO_WORKER },
      { requestId: 3, code: ErrorCode.NO_WORKER },
    ],
    "counted from the worker's departure, for the queued job and the one it was running",
  );
  t.match(h.stats(), { queued: 0, failed: 3 });
  t.end();
});

t.test('finished records are bounded by maxFinishedJobs, finishedTtlMs and maxFinishedBytes', (t) => {
  const h = new Harness({ maxFinishedJobs: 3, finishedTtlMs: 1000, maxFinishedBytes: 25 });
  h.client('c1');
  h.worker('w1', 10, ['x']);
  const ids = Array.from({ length: 5 }, (_, i) => h.submit('c1', i + 1, 'x', `j${i}`, { detach: true }));
  for (const d of [...h.sent]) h.finish(d, 'r'.repeat(10));
  t.same(ids.map((id) => h.core.status(id)?.state ?? null), [null, null, null, 'completed', 'completed'], '25 bytes hold two 10-byte results');
  h.submit('c1', 9, 'x', 'small', { detach: true });
  h.finish(h.sent.at(-1)!, 'r');
  t.equal(h.stats().finishedJobs, 3);
  h.tick(1000);
  t.equal(h.stats().finishedJobs, 0, 'all gone once finishedTtlMs has passed');
  t.end();
});

t.test('recentJobs lists the latest jobs, newest first, filtered by state', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 1, ['x']);
  const a = h.submit('c1', 1, 'x', 'a', { detach: true });
  const b = h.submit('c1', 2, 'x', 'b');
  const c = h.submit('c1', 3, 'x', 'c', { delayMs: 100 });
  h.finish(h.find('a'));
  t.same(h.core.recentJobs().map((j) => [j.id, j.state]), [[c, 'delayed'], [b, 'running'], [a, 'completed']]);
  t.same(h.core.recentJobs(10, 'running').map((j) => j.id), [b]);
  t.same(h.core.recentJobs(1).map((j) => j.id), [c]);
  t.end();
});

t.test('a million finished detached jobs: the records stay at maxFinishedJobs and the heap does not grow with them', (t) => {
  const gc = getGc();
  t.ok(gc, 'a garbage collector to call');
  if (!gc) return t.end();
  const h = new Harness({ maxFinishedJobs: 1000 });
  const core = h.core;
  const client = h.client('c1');
  const worker = h.worker('w1', 64, ['x']);
  const body = Buffer.from('payload');
  const result = { ok: true as const, buf: Buffer.from('the result'), bodyStart: 0, bodyEnd: 10 };
  const run = (n: number): void => {
    for (let i = 0; i < n; i++) {
      core.submit(client, i, 'x', body, { detach: true });
      const d = h.sent.pop()!;
      core.result(worker, d.taskId, d.attempt, result);
      h.settled.length = 0;
      h.dispatchedEvents.length = h.completedEvents.length = 0;
    }
  };
  run(50_000);
  gc();
  const before = process.memoryUsage().heapUsed;
  run(1_000_000);
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  t.equal(h.stats().finishedJobs, 1000);
  t.equal(h.stats().completed, 1_050_000);
  t.equal(core.indexedJobs, 0);
  t.ok(grown < 8 * 1024 * 1024, `the heap grew ${(grown / 1024 / 1024).toFixed(1)} MB over a million jobs`);
  t.end();
});

t.test('fair with tenants: the lanes of one tenant, from any client, take one turn together', (t) => {
  for (const tenant of [7, undefined]) {
    const h = new Harness({ fair: true });
    for (const c of ['a1', 'a2', 'b']) h.client(c);
    for (let i = 1; i <= 3; i++) h.submit('a1', i, 'x', `a1-${i}`, { tenant });
    for (let i = 1; i <= 3; i++) h.submit('a2', i, 'x', `a2-${i}`, { tenant });
    for (let i = 1; i <= 3; i++) h.submit('b', i, 'x', `b-${i}`);
    h.worker('w1', 1, ['x']);
    while (h.sent.length < 9) h.finish(h.sent.at(-1)!);
    if (tenant === undefined) {
      t.same(h.bodies(), ['a1-1', 'a2-1', 'b-1', 'a1-2', 'a2-2', 'b-2', 'a1-3', 'a2-3', 'b-3'], 'without: three clients, three turns');
    } else {
      t.same(h.bodies(), ['a1-1', 'b-1', 'a1-2', 'b-2', 'a1-3', 'b-3', 'a2-1', 'a2-2', 'a2-3'], "with: a1 and a2 share tenant 7's turn, oldest first");
    }
  }
  t.end();
});
