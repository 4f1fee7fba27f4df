// The core's clock: timeouts and leases, retries with backoff, and the timer wheel's cost per tick.

import t from 'tap';
import { ErrorCode } from '../lib/errors.js';
import { CORE_DEFAULTS, TaskState } from '../lib/scheduler/core.js';
import { Harness } from './core-harness.js';

// ---- 15. clock, timeouts and leases --------------------------------------------------------------------------

t.test('tick(now) moves the core clock, heartbeat() does not; documented defaults', (t) => {
  const h = new Harness();
  t.equal(h.core.now, 0);
  h.tick(1234);
  t.equal(h.core.now, 1234);
  h.core.heartbeat();
  t.equal(h.core.now, 1234);
  t.match(CORE_DEFAULTS, { deadAfterTicks: 3, timeoutMs: 300_000, maxAttempts: 3, backoffMs: 1000, deadLetterLimit: 1000 });
  t.match(h.stats(), { delayed: 0, retried: 0, timedOut: 0, rejected: 0, late: 0, discarded: 0, deadLetters: 0 });
  t.same(h.core.deadLetters(), []);
  t.equal(h.core.unsettled, 0);
  t.end();
});

t.test('timeout: cancel E_TIMEOUT, requeue, the slot stays busy until the late result, which is dropped', (t) => {
  const h = new Harness({ timeoutMs: 1000 });
  h.client('c1');
  h.worker('w1', 1);
  h.submit('c1', 1, 'sha256', 't1');
  h.submit('c1', 2, 'sha256', 't2');
  const d1 = h.find('t1');
  t.equal(h.task('c1', 1)?.state, TaskState.RUNNING);
  t.equal(h.task('c1', 2)?.state, TaskState.QUEUED);

  h.tick(999);
  t.same(h.cancels, [], 'not due before its timeout');
  t.match(h.stats(), { inFlight: 1, queued: 1, timedOut: 0 });

  h.tick(1000);
  const reason = 'timed out after 1000 ms on worker worker w1';
  t.same(h.cancels, [{ worker: 'w1', taskId: d1.taskId, attempt: 1, code: ErrorCode.TIMEOUT, message: reason }], 'sendCancel E_TIMEOUT');
  t.same(h.requeued, [{ body: 't1', taskId: d1.taskId, attempt: 1, from: 'w1', reason }], 'taskRequeued with the reason');
  t.match(h.stats(), { queued: 2, inFlight: 0, delayed: 0, timedOut: 1, requeued: 1, late: 0, completed: 0, failed: 0 });
  t.equal(h.core.unsettled, 2);
  t.equal(h.task('c1', 1)?.state, TaskState.QUEUED, 'back in the queue');
  t.same([...h.w('w1').revoked], [[`${d1.taskId}:1`, false]], 'the lease is recorded as revoked (client still there)');
  t.equal(h.w('w1').running.size, 0);
  t.same(h.bodies(), ['t1'], 'nothing more is sent to w1: it may still be running t1');
  h.submit('c1', 3, 'sha256', 't3');
  t.same(h.bodies(), ['t1'], 'a new submission does not take the busy slot either');
  t.same(h.settled, [], 'the client is told nothing yet');

  h.tick(1500);
  t.equal(h.cancels.length, 1, 'a revoked lease is not timed out again');
  t.equal(h.finish(d1, 'too late'), null, 'the late result is accepted without error');
  t.same(h.settled, [], 'and not forwarded');
  t.match(h.stats(), { late: 1, discarded: 0, completed: 0, timedOut: 1 });
  t.equal(h.w('w1').revoked.size, 0, 'the lease is forgotten');
  t.same(h.sent.at(-1), { worker: 'w1', taskId: d1.taskId, attempt: 2, type: 'sha256', body: 't1', client: 'c1', requestId: 1, inputs: null },
    'the freed slot takes the oldest queued task: t1 again, under lease 2');
  t.equal(h.finish(d1)?.code, ErrorCode.PROTOCOL, 'a second answer for the old lease is a protocol error');

  // The new lease's deadline counts from the core's clock when it was dispatched (1500).
  h.tick(2499);
  t.equal(h.cancels.length, 1);
  t.equal(h.finish(h.find('t1')), null);
  t.same(h.settled, [{ client: 'c1', requestId: 1, ok: true, body: 'done:t1', code: '', message: '' }], 'settled once, by lease 2');
  t.same(h.bodies(), ['t1', 't1', 't2']);
  h.finish(h.find('t2'));
  h.finish(h.find('t3'));
  t.same(h.settled.map((s) => s.requestId), [1, 2, 3]);
  t.match(h.stats(), { completed: 3, late: 1, timedOut: 1, requeued: 1, dispatched: 4, queued: 0, inFlight: 0 });
  t.equal(h.core.unsettled, 0);
  t.end();
});

t.test('timeout: the same worker may get the task back while it still owes the old lease', (t) => {
  const h = new Harness({ timeoutMs: 1000 });
  h.client('c1');
  h.worker('w1', 2);
  h.submit('c1', 1, 'sha256', 't1');
  const first = h.find('t1');
  h.tick(1000);
  const second = h.find('t1');
  t.same([second.worker, second.attempt], ['w1', 2], 'its spare slot took t1 again');
  t.equal(h.busy('w1'), 2, 'one running lease and one revoked lease');
  t.equal(h.answer('w1', first.taskId, 3)?.code, ErrorCode.PROTOCOL, 'a lease never held is still a protocol error');
  t.equal(h.finish(first, 'old'), null, 'the old lease is answered late');
  t.match(h.stats(), { late: 1, completed: 0 });
  t.equal(h.finish(second), null);
  t.same(h.settled, [{ client: 'c1', requestId: 1, ok: true, body: 'done:t1', code: '', message: '' }]);
  t.equal(h.busy('w1'), 0);
  t.end();
});

t.test('timeout on the maxAttempts-th attempt fails the task with E_ATTEMPTS and the last reason', (t) => {
  const h = new Harness({ timeoutMs: 1000 });
  h.client('c1');
  for (const w of ['w1', 'w2', 'w3']) h.worker(w, 1);
  h.submit('c1', 1, 'sha256', 'payload');
  h.tick(1000);
  h.tick(2000);
  t.same(h.sent.map((s) => [s.worker, s.attempt]), [['w1', 1], ['w2', 2], ['w3', 3]], 'each attempt on the next idle worker');
  t.same(h.settled, []);
  h.tick(3000);
  const message = 'gave up after 3 attempts; last: timed out after 1000 ms on worker worker w3';
  t.same(h.settled, [{ client: 'c1', requestId: 1, ok: false, body: '', code: ErrorCode.ATTEMPTS, message }]);
  t.ok(h.settled[0]!.message.startsWith('gave up after 3 attempts; last: '));
  t.same(h.failedEvents, [{ body: 'payload', code: ErrorCode.ATTEMPTS }]);
  t.same(
    h.cancels.map((c) => [c.worker, c.attempt, c.code]),
    [['w1', 1, ErrorCode.TIMEOUT], ['w2', 2, ErrorCode.TIMEOUT], ['w3', 3, ErrorCode.TIMEOUT]],
  );
  t.equal(h.requeued.length, 2, 'requeued after the first two timeouts only');
  t.match(h.stats(), { failed: 1, requeued: 2, timedOut: 3, queued: 0, inFlight: 0, deadLetters: 1 });
  t.same(h.core.deadLetters(), [
    {
      taskId: h.sent[0]!.taskId,
      jobId: h.sent[0]!.taskId,
      type: 'sha256',
      code: ErrorCode.ATTEMPTS,
      message,
      attempts: 3,
      priority: 0,
      payloadBytes: 7,
      payload: Buffer.from('payload'),
      graphNode: false,
      submittedAt: 0,
      failedAt: 3000,
    },
  ]);
  t.equal(h.core.unsettled, 0);
  t.equal(h.task('c1', 1), undefined, 'the request id is free again');
  for (const d of h.sent) t.equal(h.finish(d), null, `late answer from ${d.worker}`);
  t.equal(h.settled.length, 1, 'no late answer reaches the client');
  t.match(h.stats(), { late: 3, discarded: 0, completed: 0 });
  t.end();
});

t.test('a task whose worker is lost 3 times fails with E_ATTEMPTS; the tasks behind it are unaffected', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 1);
  h.submit('c1', 1, 'sha256', 'crasher');
  h.submit('c1', 2, 'sha256', 'next');
  h.lost('w1', 'crash 1');
  h.worker('w2', 1);
  h.lost('w2', 'crash 2');
  h.worker('w3', 1);
  t.same(h.sent.map((s) => [s.worker, s.body, s.attempt]), [['w1', 'crasher', 1], ['w2', 'crasher', 2], ['w3', 'crasher', 3]]);
  h.lost('w3', 'crash 3');
  const message = 'gave up after 3 attempts; last: worker worker w3 was lost: crash 3';
  t.same(h.settled, [{ client: 'c1', requestId: 1, ok: false, body: '', code: ErrorCode.ATTEMPTS, message }]);
  t.same(h.left.map((l) => [l.peer, l.requeued]), [['w1', 1], ['w2', 1], ['w3', 0]], 'peerLeft counts only the requeued');
  t.same(h.requeued.map((r) => r.reason), ['worker worker w1 was lost: crash 1', 'worker worker w2 was lost: crash 2']);
  t.match(h.stats(), { failed: 1, requeued: 2, queued: 1, inFlight: 0, timedOut: 0, deadLetters: 1 });
  t.match(h.core.deadLetters(), [{ code: ErrorCode.ATTEMPTS, message, attempts: 3, payloadBytes: 7 }]);
  h.worker('w4', 1);
  t.same(h.sent.at(-1)!.body, 'next');
  t.equal(h.sent.at(-1)!.attempt, 1, 'the task behind it starts fresh');
  h.finish(h.sent.at(-1)!);
  t.same(h.settled.at(-1), { client: 'c1', requestId: 2, ok: true, body: 'done:next', code: '', message: '' });
  t.end();
});

t.test('maxAttempts is respected, counting timeouts and worker losses together, not handler retries', (t) => {
  t.test('maxAttempts 1: the first fault fails the task', (t) => {
    const h = new Harness({ maxAttempts: 1 });
    h.client('c1');
    h.worker('w1', 1);
    h.submit('c1', 1, 'sha256', 't1');
    h.lost('w1', 'gone');
    const message = 'gave up after 1 attempts; last: worker worker w1 was lost: gone';
    t.same(h.settled, [{ client: 'c1', requestId: 1, ok: false, body: '', code: ErrorCode.ATTEMPTS, message }]);
    t.same(h.requeued, []);
    t.same(h.left, [{ peer: 'w1', reason: 'gone', requeued: 0 }]);
    t.match(h.stats(), { requeued: 0, failed: 1, queued: 0 });
    t.end();
  });

  t.test('maxAttempts 4: three faults of either kind are survived, the fourth fails', (t) => {
    const h = new Harness({ maxAttempts: 4, timeoutMs: 1000 });
    h.client('c1');
    h.worker('w1', 1);
    h.submit('c1', 1, 'sha256', 't1');
    h.lost('w1', 'one'); // fault 1
    h.worker('w2', 1);
    h.tick(1000); // fault 2 (timeout)
    h.worker('w3', 1);
    h.lost('w3', 'three'); // fault 3
    t.same(h.settled, []);
    t.match(h.stats(), { requeued: 3, timedOut: 1 });
    h.worker('w4', 1);
    t.same(h.sent.map((s) => [s.worker, s.attempt]), [['w1', 1], ['w2', 2], ['w3', 3], ['w4', 4]]);
    h.tick(2000); // fault 4
    const message = 'gave up after 4 attempts; last: timed out after 1000 ms on worker worker w4';
    t.same(h.settled, [{ client: 'c1', requestId: 1, ok: false, body: '', code: ErrorCode.ATTEMPTS, message }]);
    t.match(h.stats(), { requeued: 3, timedOut: 2, failed: 1 });
    t.end();
  });

  t.test('maxAttempts 2 with 1 retry: dispatched at most 3 times', (t) => {
    const h = new Harness({ maxAttempts: 2, timeoutMs: 5000 });
    h.client('c1');
    h.worker('w1', 1);
    h.submit('c1', 1, 'sha256', 't1', { retries: 1 });
    h.lost('w1', 'one'); // fault 1
    h.worker('w2', 1);
    h.failTask(h.find('t1'), ErrorCode.HANDLER, 'boom'); // retry 1, not a fault
    t.match(h.stats(), { delayed: 1, retried: 1, requeued: 1 });
    h.tick(1000);
    t.same(h.sent.map((s) => [s.worker, s.attempt]), [['w1', 1], ['w2', 2], ['w2', 3]]);
    h.tick(6000); // fault 2 = maxAttempts
    t.match(h.settled, [
      { requestId: 1, ok: false, code: ErrorCode.ATTEMPTS, message: /^gave up after 2 attempts; last: timed out after 5000 ms/ },
    ]);
    t.match(h.core.deadLetters(), [{ attempts: 3, code: ErrorCode.ATTEMPTS }]);
    t.equal(h.sent.length, 3);
    t.end();
  });
  t.end();
});

t.test('per-task timeoutMs overrides the default; timeoutMs 0 in CoreOptions means no timeout', (t) => {
  t.test('default 300000 ms', (t) => {
    const h = new Harness();
    h.client('c1');
    h.worker('w1', 3);
    h.submit('c1', 1, 'sha256', 'default');
    h.submit('c1', 2, 'sha256', 'short', { timeoutMs: 2000 });
    h.submit('c1', 3, 'sha256', 'zero', { timeoutMs: 0 });
    const id = (body: string): number => h.find(body).taskId;
    h.tick(1999);
    t.same(h.cancels, []);
    h.tick(2000);
    t.same(h.cancels.map((c) => [c.taskId, c.message]), [[id('short'), 'timed out after 2000 ms on worker worker w1']], 'the per-task timeout');
    h.tick(299_999);
    t.equal(h.cancels.length, 1);
    h.tick(300_000);
    t.same(
      h.cancels.slice(1).map((c) => c.taskId).sort((a, b) => a - b),
      [id('default'), id('zero')],
      'the default applies with no option and with timeoutMs 0',
    );
    t.equal(h.stats().timedOut, 3);
    t.end();
  });

  t.test('default 0: no timeout unless the task asks for one', (t) => {
    const h = new Harness({ timeoutMs: 0 });
    h.client('c1');
    h.worker('w1', 2);
    h.submit('c1', 1, 'sha256', 'forever');
    h.submit('c1', 2, 'sha256', 'bounded', { timeoutMs: 500 });
    h.tick(499);
    t.same(h.cancels, []);
    h.tick(500);
    t.same(h.cancels.map((c) => [c.taskId, c.code]), [[h.find('bounded').taskId, ErrorCode.TIMEOUT]]);
    h.tick(1e12);
    t.equal(h.cancels.length, 1, 'the task without a timeout is never cancelled');
    t.equal(h.stats().timedOut, 1);
    t.equal(h.finish(h.find('forever')), null);
    t.same(h.settled.map((s) => [s.requestId, s.ok]), [[1, true]]);
    t.end();
  });
  t.end();
});

// ---- 16. retries ---------------------------------------------------------------------------------------------

t.test('retries: exponential backoff (1000, 2000, 4000 ms by tick times), then success', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 1);
  h.submit('c1', 1, 'sha256', 'r', { retries: 3 });
  h.submit('c1', 2, 'sha256', 'other');
  const id = h.find('r').taskId;

  t.equal(h.failTask(h.find('r'), 'E_HANDLER', 'boom 1'), null);
  t.same(h.settled, [], 'not failed: it has retries left');
  t.equal(h.task('c1', 1)?.state, TaskState.DELAYED);
  t.same(h.requeued, [{ body: 'r', taskId: id, attempt: 1, from: 'w1', reason: 'handler failed (boom 1); retry 1 in 1000 ms' }]);
  t.match(h.stats(), { delayed: 1, retried: 1, requeued: 0, failed: 0, queued: 0, inFlight: 1 });
  t.equal(h.core.unsettled, 2, 'a delayed task is unsettled');
  t.same(h.bodies(), ['r', 'other'], 'the slot went to the next task meanwhile');
  h.finish(h.find('other'));

  const schedule: [failAt: number, delay: number][] = [[0, 1000], [1000, 2000], [3000, 4000]];
  for (let i = 0; i < schedule.length; i++) {
    const [failAt, delay] = schedule[i]!;
    h.tick(failAt + delay - 1);
    t.equal(h.bodies().filter((b) => b === 'r').length, i + 1, `retry ${i + 1} not before ${failAt + delay}`);
    h.tick(failAt + delay);
    const d = h.sent.at(-1)!;
    t.same([d.body, d.attempt, d.taskId], ['r', i + 2, id], `retry ${i + 1} dispatched at ${failAt + delay}`);
    t.match(h.stats(), { delayed: 0, inFlight: 1 });
    if (i < schedule.length - 1) {
      h.failTask(d, 'E_HANDLER', `boom ${i + 2}`);
      t.equal(h.requeued.at(-1)!.reason, `handler failed (boom ${i + 2}); retry ${i + 2} in ${schedule[i + 1]![1]} ms`);
    }
  }
  t.equal(h.finish(h.sent.at(-1)!), null);
  t.same(h.settled.map((s) => [s.requestId, s.ok, s.body]), [[2, true, 'done:other'], [1, true, 'done:r']]);
  t.match(h.stats(), { retried: 3, requeued: 0, completed: 2, failed: 0, delayed: 0, deadLetters: 0, dispatched: 5 });
  t.equal(h.core.unsettled, 0);
  t.end();
});

t.test('retries: per-task backoffMs; failure after the retries are spent carries the worker code', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 1);
  h.submit('c1', 1, 'sha256', 'doomed', { retries: 2, backoffMs: 100 });
  h.tick(50);
  h.failTask(h.find('doomed'), 'E_FIRST', 'first');
  h.tick(149);
  t.equal(h.sent.length, 1);
  h.tick(150);
  t.equal(h.sent.length, 2, 'first retry after 100 ms');
  h.failTask(h.find('doomed'), 'E_SECOND', 'second');
  h.tick(349);
  t.equal(h.sent.length, 2);
  h.tick(350);
  t.equal(h.sent.length, 3, 'second retry after 200 ms');
  t.same(h.settled, []);
  h.failTask(h.find('doomed'), 'E_LAST', 'third');
  t.same(
    h.settled,
    [{ client: 'c1', requestId: 1, ok: false, body: '', code: 'E_LAST', message: 'third' }],
    'the last failure, as the worker reported it',
  );
  t.same(h.failedEvents, [{ body: 'doomed', code: 'E_LAST' }]);
  t.same(h.requeued.map((r) => r.reason), ['handler failed (first); retry 1 in 100 ms', 'handler failed (second); retry 2 in 200 ms']);
  t.match(h.stats(), { failed: 1, retried: 2, requeued: 0, delayed: 0, deadLetters: 1 });
  t.same(h.core.deadLetters(), [
    {
      taskId: h.sent[0]!.taskId,
      jobId: h.sent[0]!.taskId,
      type: 'sha256',
      code: 'E_LAST',
      message: 'third',
      attempts: 3,
      priority: 0,
      payloadBytes: 6,
      payload: Buffer.from('doomed'),
      graphNode: false,
      submittedAt: 0,
      failedAt: 350,
    },
  ]);
  t.end();
});

t.test("a lost client's queued and delayed tasks are dropped at once", (t) => {
  const h = new Harness();
  h.client('c1');
  h.client('c2');
  h.worker('w1', 1);
  h.submit('c1', 1, 'sha256', 'retrying', { retries: 1 });
  h.submit('c1', 2, 'sha256', 'queued');
  h.submit('c1', 3, 'other-type', 'waiting');
  h.failTask(h.find('retrying'), 'E_HANDLER', 'boom');
  t.same(h.bodies(), ['retrying', 'queued']);
  t.match(h.stats(), { delayed: 1, queued: 1, inFlight: 1 });
  t.equal(h.core.queueCount, 2);

  h.lost('c1');
  t.match(h.stats(), { delayed: 0, queued: 0, inFlight: 0 });
  t.equal(h.core.unsettled, 0);
  t.equal(h.core.queueCount, 1, 'the queue of the type nobody runs is gone');
  t.same(h.cancels.map((c) => [c.taskId, c.code]), [[h.find('queued').taskId, ErrorCode.CANCELLED]]);
  const calls = h.calls;
  h.tick(10_000);
  t.equal(h.calls, calls, 'the delay ends and nothing happens');
  t.equal(h.finish(h.find('queued')), null);
  t.match(h.stats(), { discarded: 1, late: 0 });
  h.submit('c2', 1, 'sha256', 'c2 task');
  t.same(h.bodies(), ['retrying', 'queued', 'c2 task'], 'the dropped retry never ran again');
  t.same(h.settled, [], 'nothing was sent to c1');
  t.end();
});

t.test("a lost client's queued rows go with its lane at once; the others keep their order", (t) => {
  // Each client's rows are a lane of their own (lib/scheduler/type-queue.ts), so a departed client's rows are
  // dropped with its lane: nothing dead is left in the queue to skip or sweep. (Reads the queue: no public view.)
  const h = new Harness();
  h.client('stay');
  h.client('go');
  h.worker('W1', 1, ['sha256']);
  h.submit('stay', 1, 'sha256', 'running');
  for (let i = 1; i <= 6; i++) {
    h.submit('go', i, 'sha256', `go-${i}`);
    h.submit('stay', 10 + i, 'sha256', `stay-${i}`);
  }
  type Queues = Map<string, { lanes(): Iterable<{ rows: { size: number } }> }>;
  const rows = (): number => {
    const queue = (h.core as unknown as { queues: Queues }).queues.get('sha256');
    return queue ? [...queue.lanes()].reduce((n, lane) => n + lane.rows.size, 0) : 0;
  };
  t.equal(rows(), 12);
  h.lost('go');
  t.match(h.stats(), { queued: 6, inFlight: 1 }, "the departed client's six are no longer counted");
  t.equal(rows(), 6, 'and no longer held');
  for (let i = 0; i < 7; i++) h.finish(h.sent[h.sent.length - 1]!);
  t.same(h.bodies(), ['running', 'stay-1', 'stay-2', 'stay-3', 'stay-4', 'stay-5', 'stay-6'], 'only the live rows ran, in order');
  t.equal(rows(), 0);
  t.equal(h.core.indexedJobs, 0, 'no job id is left in the index');
  t.end();
});

t.test('a client cycling through job types does not grow its lanes: a lane goes with its last row', (t) => {
  const h = new Harness();
  h.client('c1');
  const types = Array.from({ length: 1100 }, (_, i) => `type-${i}`);
  h.worker('W1', 1, types);
  // Each task waits as a row (W1 is busy), taking a lane in its type's queue, then runs and frees the lane.
  h.submit('c1', 1, 'type-0', 'first');
  for (let i = 1; i < 1100; i++) {
    h.submit('c1', i + 1, types[i]!, `t${i}`);
    h.finish(h.sent[h.sent.length - 1]!);
  }
  t.equal(h.stats().completed, 1099);
  // Only the last lane may stay, empty, for the client's next submission; the 1,099 others went with their rows.
  const lanes = [...h.c('c1').lanes.values()];
  t.ok(lanes.length <= 1 && lanes.every((lane) => lane.rows.size === 0 && lane === h.c('c1').lastLane), `${lanes.length} lane left, empty`);
  h.lost('c1');
  t.match(h.stats(), { queued: 0, inFlight: 0 });
  t.end();
});

t.test('a new job type per task costs O(1): lanes and queues are exactly those holding tasks (regression: a scan per type)', (t) => {
  // Before, a client past 1,024 lanes scanned all of them on every new type: 40,000 types took 12-14 s.
  const h = new Harness();
  h.client('c1');
  const n = 20_000;
  for (let i = 0; i < n; i++) h.submit('c1', i + 1, `type-${i}`, `t${i}`);
  t.equal(h.stats().queued, n);
  t.equal(h.c('c1').lanes.size, n, 'one lane per queued type');
  t.equal(h.core.queueCount, n);
  // A worker of every 10th type takes its tasks: those lanes and queues go.
  h.worker('W', n, Array.from({ length: n / 10 }, (_, i) => `type-${i * 10}`));
  t.equal(h.sent.length, n / 10);
  for (const d of [...h.sent]) h.finish(d);
  t.equal(h.c('c1').lanes.size, n - n / 10);
  h.lost('W');
  t.equal(h.core.queueCount, n - n / 10, 'the served types left no queue behind');
  h.lost('c1');
  t.equal(h.core.queueCount, 0);
  t.match(h.stats(), { queued: 0, queuedBytes: 0 });
  t.end();
});

t.test('credits are capped at maxConcurrency: a worker announcing 2^32-1 is sent that many at most', (t) => {
  const h = new Harness({ maxConcurrency: 5 });
  h.client('c1');
  for (let i = 1; i <= 20; i++) h.submit('c1', i, 'sha256', `t${i}`);
  h.worker('greedy', 0xffff_ffff);
  t.equal(h.w('greedy').concurrency, 5);
  t.equal(h.sent.length, 5, 'five tasks in flight, not the whole queue');
  h.finish(h.sent[0]!);
  t.equal(h.sent.length, 6, 'one more per slot freed');
  t.equal(CORE_DEFAULTS.maxConcurrency, 65_536, 'the documented default');
  t.end();
});

t.test('a task that timed out on a worker goes to another worker first, and back to it only when it is alone', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('good', 1);
  h.submit('c1', 1, 'sha256', 'keeps good busy');
  h.worker('stuck', 100);
  h.submit('c1', 2, 'sha256', 't1', { timeoutMs: 1000 });
  t.equal(h.find('t1').worker, 'stuck');
  h.tick(1000);
  t.same(h.cancels.map((c) => [c.worker, c.code]), [['stuck', ErrorCode.TIMEOUT]], 't1 taken back from stuck');
  t.equal(h.task('c1', 2)?.state, TaskState.QUEUED, 'stuck has 99 free credits, but t1 waits for good');
  t.equal(h.bodies().filter((b) => b === 't1').length, 1);
  h.submit('c1', 3, 'sha256', 'fresh');
  t.equal(h.find('fresh').worker, 'stuck', 'stuck still takes fresh tasks');
  h.finish(h.find('keeps good busy'));
  t.same([h.find('t1').worker, h.find('t1').attempt], ['good', 2], 'attempt 2 runs on the other worker');

  // Alone, the worker gets back a task that timed out on it.
  const solo = new Harness();
  solo.client('c1');
  solo.worker('only', 10);
  solo.submit('c1', 1, 'sha256', 'x', { timeoutMs: 500 });
  solo.tick(500);
  t.same(solo.sent.map((s) => [s.worker, s.attempt]), [['only', 1], ['only', 2]], 'no other worker: it goes back at once');

  // When the other worker leaves, the one left takes what was kept from it.
  const two = new Harness();
  two.client('c1');
  two.worker('b', 1);
  two.submit('c1', 1, 'sha256', 'keeps b busy');
  two.worker('a', 10);
  two.submit('c1', 2, 'sha256', 'y', { timeoutMs: 500 });
  two.tick(500);
  t.same(two.sent.map((s) => [s.worker, s.body, s.attempt]), [['b', 'keeps b busy', 1], ['a', 'y', 1]], 'y waits for b');
  two.lost('b');
  t.same(
    two.sent.slice(2).map((s) => [s.worker, s.body, s.attempt]),
    [['a', 'keeps b busy', 2], ['a', 'y', 2]],
    'alone now, a takes both, oldest first',
  );
  t.end();
});

t.test('retries go to another worker than the one whose handler failed (regression: 27% failed with retries 3)', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('bad', 4);
  h.worker('good', 4);
  const n = 200;
  for (let i = 1; i <= n; i++) h.submit('c1', i, 'sha256', `t${i}`, { retries: 1, backoffMs: 100 });
  let now = 0;
  for (let round = 0; round < 1000 && h.stats().completed + h.stats().failed < n; round++) {
    const running = h.sent.filter((d) => h.w(d.worker).running.get(d.taskId)?.attempt === d.attempt);
    for (const d of running) {
      if (d.worker === 'bad') h.failTask(d, ErrorCode.HANDLER, 'always fails');
      else h.finish(d);
    }
    h.tick((now += 100));
  }
  t.equal(h.stats().completed, n, 'every task succeeded');
  t.equal(h.stats().failed, 0);
  const retried = h.sent.filter((d) => d.attempt === 2);
  t.ok(retried.length > 0, `${retried.length} retries`);
  t.ok(retried.every((d) => d.worker === 'good'), 'every retry ran on the other worker');
  t.end();
});

t.test('byte budgets: maxQueuedBytes (E_QUEUE_FULL) and maxPendingBytesPerClient (E_TOO_MANY_PENDING)', (t) => {
  const h = new Harness({ maxQueuedBytes: 100, maxPendingBytesPerClient: 150 });
  h.client('c1');
  h.client('c2');
  h.submit('c1', 1, 'sha256', 'a'.repeat(60));
  h.submit('c2', 1, 'sha256', 'b'.repeat(40));
  t.match(h.stats(), { queued: 2, queuedBytes: 100 });
  h.submit('c2', 2, 'sha256', 'c');
  t.match(h.settled.at(-1), { client: 'c2', requestId: 2, ok: false, code: ErrorCode.QUEUE_FULL, message: /maxQueuedBytes \(100\)/ });
  h.worker('w1', 1);
  t.match(h.stats(), { queued: 1, queuedBytes: 40, inFlight: 1 });
  h.submit('c1', 2, 'sha256', 'd'.repeat(60));
  t.match(h.stats(), { queued: 2, queuedBytes: 100 }, 'a dispatched body no longer counts as queued');
  h.submit('c1', 3, 'sha256', 'e'.repeat(31));
  t.match(h.settled.at(-1), { client: 'c1', requestId: 3, code: ErrorCode.TOO_MANY_PENDING, message: /maxPendingBytesPerClient \(150\)/ });
  t.equal(h.c('c1').pendingBytes, 120, 'c1: 60 running and 60 queued');
  h.finish(h.sent[0]!);
  t.equal(h.c('c1').pendingBytes, 60);
  h.lost('c2');
  t.match(h.stats(), { queued: 1, queuedBytes: 60 }, "a lost client's queued bytes are given back");
  h.lost('c1');
  t.match(h.stats(), { queued: 0, queuedBytes: 0, inFlight: 0 });
  t.end();
});

t.test('backpressure: a worker whose connection is full is sent nothing more until writable(); its credits stay owed', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('slow', 8);
  h.worker('fast', 8);
  h.saturated.add('slow');
  for (let i = 1; i <= 10; i++) h.submit('c1', i, 'sha256', `t${i}`);
  t.equal(h.bodies('slow').length, 1, 'one task, then slow reported full');
  t.equal(h.bodies('fast').length, 8);
  h.saturated.delete('slow');
  h.core.writable(h.w('slow'));
  t.equal(h.bodies('slow').length, 2, 'the rest go to slow once it drains');
  t.equal(h.stats().queued, 0);
  h.core.writable(h.w('slow'));
  t.equal(h.sent.length, 10, 'writable() on a worker that is not blocked changes nothing');
  t.end();
});

// ---- 18. regressions: timeout order, timer lists -------------------------------------------------------------

t.test('tasks timing out at the same tick are requeued oldest first', (t) => {
  // t0 leaves a 2000 ms deadline list behind whose t2 is scanned before t1's 1000 ms one; tick() used to refill
  // the timed-out worker after each task, so the younger t2 took w1's only spare slot before t1 was requeued.
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 3);
  h.submit('c1', 1, 'sha256', 't0', { timeoutMs: 2000 });
  h.finish(h.find('t0'));
  h.submit('c1', 2, 'sha256', 't1', { timeoutMs: 1000 });
  h.submit('c1', 3, 'sha256', 't2', { timeoutMs: 2000 });
  h.tick(5000);
  t.equal(h.cancels.length, 2, 'both timed out');
  t.equal(h.sent.length, 4, 'one task went back to the one spare slot');
  t.same(h.sent.at(-1)!.body, 't1', 'the spare slot should go to the oldest timed-out task');
  t.same(h.requeued.map((r) => r.body), ['t1', 't2'], 'requeued in submission order');
  t.end();
});

t.test('a tick costs the same however many distinct timeouts are running', (t) => {
  // Timeouts come from clients. One list per distinct duration made every tick visit each of them: 1,000 tasks of
  // 1,000 timeouts cost 1,000 visits a tick. (Reads a private counter: there is no public view of it.)
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 1000);
  for (let i = 1; i <= 1000; i++) h.submit('c1', i, 'sha256', `t${i}`, { timeoutMs: 1000 * i });
  const wheel = (h.core as unknown as { deadlines: { scanned: number; size: number } }).deadlines;
  t.equal(wheel.size, 1000);
  for (let now = 100; now <= 10_000; now += 100) h.tick(now);
  t.equal(h.cancels.length, 10, 'the ten due by 10 s timed out, no other');
  t.ok(wheel.scanned <= 200, `100 ticks looked at ${wheel.scanned} deadlines (one per distinct timeout would be 100,000)`);
  t.end();
});
