// The core's limits: queue and per-client budgets in tasks and bytes, capped credits, backpressure, drain and
// dead letters.

import t from 'tap';
import { ErrorCode } from '../lib/errors.js';
import { type DeadLetter } from '../lib/scheduler/core.js';
import { Harness } from './core-harness.js';

// ---- 17. limits, drain, dead letters -------------------------------------------------------------------------

t.test('E_QUEUE_FULL: a submission past maxQueued is refused to the client, who is still served', (t) => {
  const h = new Harness({ maxQueued: 2 });
  h.client('c1');
  h.client('c2');
  h.submit('c1', 1, 'sha256', 'q1');
  h.submit('c1', 2, 'sha256', 'q2');
  h.submit('c1', 3, 'sha256', 'refused');
  h.submit('c2', 1, 'sha256', 'refused too');
  t.match(h.settled, [
    { client: 'c1', requestId: 3, ok: false, code: ErrorCode.QUEUE_FULL, message: /queue is full/ },
    { client: 'c2', requestId: 1, ok: false, code: ErrorCode.QUEUE_FULL },
  ]);
  t.equal(h.settled.length, 2);
  t.same(h.failedEvents, [], 'a refusal is not a task failure');
  t.match(h.stats(), { rejected: 2, submitted: 2, queued: 2, failed: 0, deadLetters: 0 });
  t.equal(h.task('c1', 3), undefined, 'the refused request is not held');
  t.equal(h.stats().rejected, 2);
  h.worker('idle', 1, ['other']);
  h.submit('c2', 9, 'other', 'straight to a worker');
  t.same(h.sent.map((s) => [s.worker, s.body]), [['idle', 'straight to a worker']], 'a task that need not wait is accepted when full');
  h.finish(h.find('straight to a worker'));
  h.lost('idle');
  t.match(h.stats(), { rejected: 2, submitted: 3, completed: 1, queued: 2 });

  h.worker('w1', 1);
  t.match(h.stats(), { queued: 1, inFlight: 1 });
  h.submit('c2', 1, 'sha256', 'accepted');
  h.submit('c1', 3, 'sha256', 'retried id');
  t.equal(h.settled.at(-1)!.code, ErrorCode.QUEUE_FULL, 'but the queue is full again');
  while (h.stats().inFlight > 0) h.finish(h.sent.at(-1)!);
  t.same(
    h.settled.slice(4).map((s) => [s.client, s.requestId, s.body]),
    [['c1', 1, 'done:q1'], ['c1', 2, 'done:q2'], ['c2', 1, 'done:accepted']],
  );
  t.match(h.stats(), { rejected: 3, completed: 4, queued: 0 });
  t.end();
});

t.test('E_TOO_MANY_PENDING: per client, counting running, queued and delayed tasks', (t) => {
  const h = new Harness({ maxPendingPerClient: 2 });
  h.client('c1');
  h.client('c2');
  h.worker('w1', 1);
  h.submit('c1', 1, 'sha256', 'a', { retries: 1 }); // running
  h.submit('c1', 2, 'sha256', 'b'); // queued
  h.submit('c1', 3, 'sha256', 'refused');
  t.match(h.settled, [{ client: 'c1', requestId: 3, ok: false, code: ErrorCode.TOO_MANY_PENDING, message: /2 unsettled/ }]);
  h.submit('c2', 1, 'sha256', 'x');
  t.equal(h.settled.length, 1, 'another client is not limited by c1');

  h.failTask(h.find('a'), 'E_HANDLER', 'boom'); // a is delayed, b runs
  h.submit('c1', 4, 'sha256', 'refused again');
  t.equal(h.settled.at(-1)!.code, ErrorCode.TOO_MANY_PENDING, 'a delayed task still counts');
  h.finish(h.find('b'));
  h.submit('c1', 5, 'sha256', 'c');
  t.equal(h.settled.at(-1)!.requestId, 2, 'accepted once a task settled');
  h.finish(h.find('x'));
  h.finish(h.find('c'));
  h.tick(1000);
  h.finish(h.find('a'));
  t.same(
    h.settled.map((s) => [s.client, s.requestId, s.ok ? s.body : s.code]),
    [
      ['c1', 3, ErrorCode.TOO_MANY_PENDING],
      ['c1', 4, ErrorCode.TOO_MANY_PENDING],
      ['c1', 2, 'done:b'],
      ['c2', 1, 'done:x'],
      ['c1', 5, 'done:c'],
      ['c1', 1, 'done:a'],
    ],
  );
  t.match(h.stats(), { rejected: 2, completed: 4, submitted: 4, retried: 1, deadLetters: 0 });
  t.end();
});

t.test('drain(): new submissions are refused with E_SHUTDOWN while accepted work runs to the end', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 1);
  h.submit('c1', 1, 'sha256', 'running');
  h.submit('c1', 2, 'sha256', 'queued');
  h.submit('c1', 3, 'sha256', 'retrying', { retries: 1 });
  const calls = h.calls;
  h.core.drain();
  t.equal(h.calls, calls, 'drain() itself sends nothing');
  h.submit('c1', 4, 'sha256', 'late');
  h.client('c2');
  h.submit('c2', 1, 'sha256', 'new client');
  t.match(h.settled, [
    { client: 'c1', requestId: 4, ok: false, code: ErrorCode.SHUTDOWN },
    { client: 'c2', requestId: 1, ok: false, code: ErrorCode.SHUTDOWN },
  ]);
  t.match(h.stats(), { rejected: 2, submitted: 3, deadLetters: 0 });

  h.finish(h.find('running'));
  h.finish(h.find('queued'));
  h.failTask(h.find('retrying'), 'E_HANDLER', 'boom');
  t.equal(h.stats().delayed, 1, 'retries go on while draining');
  h.tick(1000);
  h.finish(h.find('retrying'));
  t.same(h.settled.slice(2).map((s) => [s.requestId, s.body]), [[1, 'done:running'], [2, 'done:queued'], [3, 'done:retrying']]);
  t.match(h.stats(), { completed: 3, rejected: 2, failed: 0, deadLetters: 0 });
  t.equal(h.core.unsettled, 0);
  t.end();
});

t.test('client lost with running tasks: sendCancel E_CANCELLED, slots busy until the worker answers, answers discarded', (t) => {
  const h = new Harness({ timeoutMs: 1000 });
  h.client('c1');
  h.client('c2');
  h.worker('w1', 2);
  h.submit('c1', 1, 'sha256', 'a');
  h.submit('c1', 2, 'sha256', 'b');
  h.submit('c2', 1, 'sha256', 'x');
  const [a, b] = [h.find('a'), h.find('b')];
  h.lost('c1', 'gone');
  const message = 'the task was cancelled: its client disconnected';
  t.same(h.cancels, [
    { worker: 'w1', taskId: a.taskId, attempt: 1, code: ErrorCode.CANCELLED, message },
    { worker: 'w1', taskId: b.taskId, attempt: 1, code: ErrorCode.CANCELLED, message },
  ]);
  t.match(h.stats(), { inFlight: 0, queued: 1, clients: 1 });
  t.equal(h.core.unsettled, 1);
  t.same([...h.w('w1').revoked], [[`${a.taskId}:1`, true], [`${b.taskId}:1`, true]], 'revoked, client gone');
  t.same(h.bodies(), ['a', 'b'], 'x waits: both slots are still busy');

  h.tick(5000);
  t.equal(h.cancels.length, 2, 'a revoked lease never times out');
  t.equal(h.stats().timedOut, 0);
  t.equal(h.finish(a), null);
  t.match(h.stats(), { discarded: 1, late: 0, completed: 0 });
  t.same(h.bodies(), ['a', 'b', 'x'], 'the answer freed a slot for x');
  t.equal(h.failTask(b, ErrorCode.HANDLER, 'boom'), null);
  t.match(h.stats(), { discarded: 2, failed: 0, retried: 0, deadLetters: 0 });
  t.equal(h.finish(a)?.code, ErrorCode.PROTOCOL, 'answering twice is a protocol error');
  h.finish(h.find('x'));
  t.same(h.settled, [{ client: 'c2', requestId: 1, ok: true, body: 'done:x', code: '', message: '' }], 'nothing to c1');

  // A lease revoked for a timeout stays "late" even if its client leaves afterwards.
  h.submit('c2', 2, 'sha256', 'slow');
  const slow = h.find('slow');
  h.tick(6000);
  t.equal(h.cancels.at(-1)!.code, ErrorCode.TIMEOUT);
  h.lost('c2');
  t.equal(h.finish(slow), null);
  t.match(h.stats(), { late: 1, discarded: 2 });
  t.end();
});

t.test('deadLetters(): failed tasks, bounded by deadLetterLimit (oldest dropped); not refusals or shutdown', (t) => {
  const h = new Harness({ deadLetterLimit: 3, maxPendingPerClient: 1 });
  h.client('c1');
  h.worker('w1', 1);
  for (let i = 1; i <= 5; i++) {
    h.tick(i * 100);
    h.submit('c1', i, 'sha256', `f${i}`);
    h.failTask(h.find(`f${i}`), `E_${i}`, `boom ${i}`);
    t.equal(h.stats().deadLetters, Math.min(i, 3));
  }
  const letters = h.core.deadLetters();
  t.same(
    letters,
    [3, 4, 5].map((i) => ({
      taskId: h.find(`f${i}`).taskId,
      jobId: h.find(`f${i}`).taskId,
      type: 'sha256',
      code: `E_${i}`,
      message: `boom ${i}`,
      attempts: 1,
      priority: 0,
      payloadBytes: 2,
      payload: Buffer.from(`f${i}`),
      graphNode: false,
      submittedAt: i * 100,
      failedAt: i * 100,
    })),
    'the three latest, oldest first',
  );
  letters.pop();
  t.equal(h.core.deadLetters().length, 3, 'deadLetters() returns a copy');
  t.equal(h.stats().failed, 5);

  h.worker('w2', 1, ['other']);
  h.submit('c1', 6, 'nobody-runs-this', 'stuck');
  h.submit('c1', 7, 'sha256', 'refused'); // E_TOO_MANY_PENDING
  t.equal(h.settled.at(-1)!.code, ErrorCode.TOO_MANY_PENDING);
  h.core.shutdown('bye');
  t.equal(h.settled.at(-1)!.code, ErrorCode.SHUTDOWN);
  t.same(h.core.deadLetters().map((d: DeadLetter) => d.code), ['E_3', 'E_4', 'E_5'], 'neither a refusal nor E_SHUTDOWN is a dead letter');
  t.end();
});
