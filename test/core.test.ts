// Unit tests of the pure scheduling core: no sockets, no timers. A recording CoreOutput (test/core-harness.ts)
// stands in for the I/O shell, and every answer of the core is checked by value. Dispatch, credits, routing,
// requeue, client and worker loss, keepalives, concurrency changes and shutdown; timers, limits and the seeded
// simulation have files of their own (core-timers, core-limits, core-sim).

import t from 'tap';
import { mulberry32 } from './helpers.js';
import { ErrorCode, TaskwireError } from '../lib/errors.js';
import { Harness, bytes, range, type H, type Sent } from './core-harness.js';

// ---- 1. FIFO -------------------------------------------------------------------------------------------------

t.test('FIFO: one worker of concurrency 1 runs tasks in submission order; results reach their requester', (t) => {
  const h = new Harness();
  h.client('c1');
  h.client('c2');
  h.worker('w1', 1, ['sha256']);
  // Two clients with overlapping request ids, interleaved, to prove results are routed by (client, request id).
  const plan: [H, number, string][] = [
    ['c1', 1, 't1'],
    ['c2', 1, 't2'],
    ['c1', 2, 't3'],
    ['c2', 2, 't4'],
    ['c1', 3, 't5'],
  ];
  for (const [client, requestId, body] of plan) h.submit(client, requestId, 'sha256', body);
  t.same(h.bodies(), ['t1'], 'only the first task is dispatched');
  t.same(h.queuedEvents, ['t2', 't3', 't4', 't5'], 'the others are queued, in order');
  t.match(h.stats(), { queued: 4, inFlight: 1, submitted: 5, dispatched: 1 });

  for (let i = 0; i < plan.length; i++) {
    const d = h.sent[i]!;
    const [client, requestId, body] = plan[i]!;
    t.same(d, { worker: 'w1', taskId: d.taskId, attempt: 1, type: 'sha256', body, client, requestId, inputs: null }, `dispatch ${i + 1}`);
    t.equal(h.finish(d), null);
    t.same(h.settled[i], { client, requestId, ok: true, body: `done:${body}`, code: '', message: '' }, `result ${i + 1}`);
    t.equal(h.settled.length, i + 1, 'exactly one result per completion');
    t.equal(h.sent.length, Math.min(i + 2, plan.length), 'the next task follows the completion');
  }
  t.same(h.bodies(), ['t1', 't2', 't3', 't4', 't5']);
  t.equal(new Set(h.sent.map((s) => s.taskId)).size, 5, 'task ids are distinct');
  t.same(h.completedEvents, ['t1', 't2', 't3', 't4', 't5']);
  t.match(h.stats(), { queued: 0, inFlight: 0, submitted: 5, dispatched: 5, completed: 5, failed: 0 });
  t.end();
});

// ---- 2. credits ----------------------------------------------------------------------------------------------

t.test('credits: a worker of concurrency 3 never holds more than 3 tasks, over 100 tasks completed at random', (t) => {
  const h = new Harness();
  const rnd = mulberry32(42);
  h.client('c1');
  h.worker('w1', 3, ['sha256']);
  const outstanding: Sent[] = []; // dispatched, not yet answered
  let submitted = 0;
  let answered = 0;
  let maxHeld = 0;
  let badSteps = 0;
  let firstBad = '';
  while (answered < 100) {
    const sentBefore = h.sent.length;
    if (submitted < 100 && (outstanding.length === 0 || rnd() < 0.5)) {
      submitted++;
      h.submit('c1', submitted, 'sha256', `t${submitted}`);
    } else {
      const d = outstanding.splice(Math.floor(rnd() * outstanding.length), 1)[0]!;
      if (h.finish(d) !== null) badSteps++;
      answered++;
    }
    outstanding.push(...h.sent.slice(sentBefore));
    maxHeld = Math.max(maxHeld, outstanding.length);
    const pending = submitted - answered;
    const s = h.stats();
    const expected = { inFlight: Math.min(3, pending), queued: pending - Math.min(3, pending) };
    if (outstanding.length > 3 || s.inFlight !== expected.inFlight || s.queued !== expected.queued || s.inFlight !== outstanding.length) {
      badSteps++;
      firstBad ||= `after ${submitted} submitted / ${answered} answered: held ${outstanding.length}, stats ${JSON.stringify(s)}, expected ${JSON.stringify(expected)}`;
    }
  }
  t.equal(badSteps, 0, firstBad || 'every step within credits with exact stats');
  t.equal(maxHeld, 3, 'the worker was filled up to its concurrency');
  t.equal(h.sent.length, 100);
  t.same(h.bodies(), range(1, 100).map((i) => `t${i}`), 'dispatch order is submission order');
  t.equal(h.settled.length, 100);
  t.same(
    h.settled.map((s) => s.requestId).sort((a, b) => a - b),
    range(1, 100),
    'every request answered once',
  );
  t.ok(h.settled.every((s) => s.ok && s.body === `done:t${s.requestId}`), 'every body matches its request');
  t.match(h.stats(), { queued: 0, inFlight: 0, completed: 100, dispatched: 100 });
  t.end();
});

// ---- 3. type routing -----------------------------------------------------------------------------------------

t.test('type routing: tasks go only to workers of their type; unknown types wait without blocking others', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('A', 1, ['sha256']);
  h.worker('B', 10, ['arith']);

  h.submit('c1', 1, 'unknown', 'u1');
  t.same(h.sent, [], 'no worker takes an unknown type');
  t.match(h.stats(), { queued: 1, inFlight: 0 });

  h.submit('c1', 2, 'sha256', 's1');
  h.submit('c1', 3, 'arith', 'a1');
  h.submit('c1', 4, 'sha256', 's2');
  h.submit('c1', 5, 'arith', 'a2');
  h.submit('c1', 6, 'sha256', 's3');
  t.same(h.bodies('A'), ['s1'], 'A (concurrency 1) took the first sha256 task, not the older unknown one');
  t.same(h.bodies('B'), ['a1', 'a2'], 'B took every arith task');
  t.ok(h.sent.every((s) => (s.worker === 'A' ? s.type === 'sha256' : s.type === 'arith')), 'types match workers');
  t.match(h.stats(), { queued: 3, inFlight: 3 });

  // Head of line: the unknown task queued first never blocks the sha256 tasks behind it.
  h.finish(h.find('s1'));
  t.same(h.bodies('A'), ['s1', 's2']);
  h.finish(h.find('s2'));
  t.same(h.bodies('A'), ['s1', 's2', 's3']);
  h.finish(h.find('s3'));
  t.same(h.bodies('A'), ['s1', 's2', 's3'], 'A is idle; the unknown task is still not given to it');
  t.match(h.stats(), { queued: 1, inFlight: 2 });

  // A worker announcing the type picks it up as soon as it sends ready(), not before.
  h.worker('C');
  t.equal(h.sent.length, 5, 'a worker that has not sent ready() gets nothing');
  h.ready('C', 1, ['unknown']);
  t.same(h.sent.at(-1), { worker: 'C', taskId: h.sent.at(-1)!.taskId, attempt: 1, type: 'unknown', body: 'u1', client: 'c1', requestId: 1, inputs: null });
  t.match(h.stats(), { queued: 0, inFlight: 3 });

  // And a worker that re-announces itself with an extra type gets that type's work too.
  h.submit('c1', 7, 'md5', 'm1');
  t.equal(h.stats().queued, 1);
  h.ready('A', 1, ['sha256', 'md5']);
  t.same(h.sent.at(-1)!.worker, 'A');
  t.same(h.sent.at(-1)!.body, 'm1');
  t.end();
});

// ---- 4. multi-type fairness ----------------------------------------------------------------------------------

t.test('multi-type fairness: a worker of two types takes the oldest queued task across both', (t) => {
  t.test('tasks queued before the worker announces itself', (t) => {
    const h = new Harness();
    h.client('c1');
    const order: [string, string][] = [
      ['b', 'b1'],
      ['a', 'a1'],
      ['a', 'a2'],
      ['b', 'b2'],
      ['a', 'a3'],
      ['b', 'b3'],
    ];
    order.forEach(([type, body], i) => h.submit('c1', i + 1, type, body));
    h.worker('w', 1, ['a', 'b']);
    for (let i = 1; i < order.length; i++) h.finish(h.sent.at(-1)!);
    t.same(h.bodies(), order.map(([, body]) => body), 'oldest first across both types');
    t.end();
  });

  t.test('tasks arriving while the worker is busy, types listed in either order', (t) => {
    for (const types of [['a', 'b'], ['b', 'a']]) {
      const h = new Harness();
      h.client('c1');
      h.worker('w', 1, types);
      h.submit('c1', 1, 'a', 'first');
      h.submit('c1', 2, 'b', 'b1');
      h.submit('c1', 3, 'a', 'a1');
      h.submit('c1', 4, 'a', 'a2');
      h.submit('c1', 5, 'b', 'b2');
      for (let i = 0; i < 4; i++) h.finish(h.sent.at(-1)!);
      t.same(h.bodies(), ['first', 'b1', 'a1', 'a2', 'b2'], `types ${types.join(',')}`);
    }
    t.end();
  });
  t.end();
});

// ---- 5. round robin ------------------------------------------------------------------------------------------

t.test('round robin: idle workers with spare credits share a burst', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 5, ['sha256']);
  h.worker('w2', 5, ['sha256']);
  for (let i = 1; i <= 6; i++) h.submit('c1', i, 'sha256', `t${i}`);
  t.same(h.sent.map((s) => s.worker), ['w1', 'w2', 'w1', 'w2', 'w1', 'w2'], 'alternating');
  t.same(h.bodies('w1'), ['t1', 't3', 't5']);
  t.same(h.bodies('w2'), ['t2', 't4', 't6']);
  t.match(h.stats(), { queued: 0, inFlight: 6 });

  // Once w1 is full, the rest of the burst goes to w2 alone, then queues.
  for (let i = 7; i <= 12; i++) h.submit('c1', i, 'sha256', `t${i}`);
  t.equal(h.bodies('w1').length, 5, 'w1 holds its 5 credits');
  t.equal(h.bodies('w2').length, 5, 'w2 holds its 5 credits');
  t.match(h.stats(), { queued: 2, inFlight: 10 });
  t.end();
});

t.test('least-loaded: an idle burst goes to the worker with the smallest share of its concurrency in use', (t) => {
  const h = new Harness({ strategy: 'least-loaded' });
  h.client('c1');
  h.worker('big', 8, ['sha256']);
  h.worker('small', 2, ['sha256']);
  for (let i = 1; i <= 6; i++) h.submit('c1', i, 'sha256', `t${i}`);
  // Shares before each pick: 0 and 0 (a tie: turns, big first); big 1/8, small 0; then big 1/8, 2/8 and 3/8
  // against small's 1/2; then both at 1/2, a tie, and it is small's turn.
  t.same(h.sent.map((s) => s.worker), ['big', 'small', 'big', 'big', 'big', 'small'], 'by share, not by turns');
  t.equal(h.busy('big'), 4);
  t.equal(h.busy('small'), 2);
  // Round-robin, for comparison: turns whatever the shares.
  const rr = new Harness();
  rr.client('c1');
  rr.worker('big', 8, ['sha256']);
  rr.worker('small', 2, ['sha256']);
  for (let i = 1; i <= 6; i++) rr.submit('c1', i, 'sha256', `t${i}`);
  t.same(rr.sent.map((s) => s.worker), ['big', 'small', 'big', 'small', 'big', 'big'], 'round-robin alternates until small is full');
  t.end();
});

// ---- 6. requeue on worker loss -------------------------------------------------------------------------------

t.test('requeue on worker loss: held tasks go back to the head, in order, with the next attempt number', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('W1', 4, ['sha256']);
  for (let i = 1; i <= 8; i++) h.submit('c1', i, 'sha256', `t${i}`);
  t.same(h.bodies('W1'), ['t1', 't2', 't3', 't4']);
  t.match(h.stats(), { queued: 4, inFlight: 4 });
  const ids = new Map(h.sent.map((s) => [s.body, s.taskId]));

  h.lost('W1', 'socket reset');
  t.match(h.stats(), { queued: 8, inFlight: 0, requeued: 4, workers: 0 });
  t.same(
    h.requeued,
    range(1, 4).map((i) => ({
      body: `t${i}`,
      taskId: ids.get(`t${i}`),
      attempt: 1,
      from: 'W1',
      reason: 'worker worker W1 was lost: socket reset',
    })),
    'taskRequeued fired for tasks 1-4, in order, with the reason',
  );
  t.same(h.left, [{ peer: 'W1', reason: 'socket reset', requeued: 4 }]);
  h.lost('W1', 'again');
  t.equal(h.left.length, 1, 'lost() is idempotent');
  t.equal(h.stats().requeued, 4);

  h.worker('W2', 1, ['sha256']);
  for (let i = 1; i < 8; i++) h.finish(h.sent.at(-1)!);
  const second = h.sent.filter((s) => s.worker === 'W2');
  t.same(second.map((s) => s.body), range(1, 8).map((i) => `t${i}`), 'W2 gets 1,2,3,4 then 5..8');
  t.same(second.map((s) => s.attempt), [2, 2, 2, 2, 1, 1, 1, 1], 'attempt 2 for the requeued tasks');
  t.same(second.slice(0, 4).map((s) => s.taskId), range(1, 4).map((i) => ids.get(`t${i}`)), 'task ids are kept');
  h.finish(h.sent.at(-1)!);
  t.same(h.settled.map((s) => s.requestId), range(1, 8));
  t.match(h.stats(), { queued: 0, inFlight: 0, completed: 8, requeued: 4, dispatched: 12 });
  t.end();
});

// ---- 7. requeue straight to a ready worker -------------------------------------------------------------------

t.test('requeue drains straight to another ready worker', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('W1', 3, ['sha256']);
  for (let i = 1; i <= 3; i++) h.submit('c1', i, 'sha256', `t${i}`);
  h.worker('W2', 2, ['sha256']);
  t.same(h.bodies('W2'), [], 'W2 is idle with 2 credits');
  h.lost('W1');
  const w2 = h.sent.filter((s) => s.worker === 'W2');
  t.same(w2.map((s) => [s.body, s.attempt]), [['t1', 2], ['t2', 2]], 'W2 received the oldest two at once');
  t.match(h.stats(), { queued: 1, inFlight: 2, requeued: 3 });
  h.finish(h.find('t2'));
  t.same(h.sent.at(-1)!.body, 't3');
  t.same(h.sent.at(-1)!.attempt, 2);
  t.match(h.stats(), { queued: 0, inFlight: 2 });
  t.end();
});

// ---- 8. stale and foreign results ----------------------------------------------------------------------------

t.test('stale or foreign results are protocol errors and change nothing', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('W1', 2, ['sha256']);
  h.worker('W2', 2, ['sha256']);
  h.submit('c1', 1, 'sha256', 't1');
  const d = h.find('t1');
  t.equal(d.worker, 'W1');
  const before = h.stats();
  const calls = h.calls;

  const attempts: [string, () => TaskwireError | null][] = [
    ['from a worker that does not hold it', () => h.core.result(h.w('W2'), d.taskId, 1, { ok: true, ...bytes('x') })],
    ['with a later attempt number', () => h.core.result(h.w('W1'), d.taskId, 2, { ok: true, ...bytes('x') })],
    ['with attempt 0', () => h.core.result(h.w('W1'), d.taskId, 0, { ok: false, code: 'E_HANDLER', message: 'x' })],
    ['for an unknown task id', () => h.core.result(h.w('W1'), d.taskId + 1000, 1, { ok: true, ...bytes('x') })],
  ];
  for (const [what, call] of attempts) {
    const err = call();
    t.type(err, TaskwireError, what);
    t.equal(err?.code, ErrorCode.PROTOCOL, what);
  }
  t.same(h.stats(), before, 'stats unchanged');
  t.equal(h.calls, calls, 'no output at all');

  t.equal(h.finish(d), null, 'the real holder can still complete it');
  t.same(h.settled, [{ client: 'c1', requestId: 1, ok: true, body: 'done:t1', code: '', message: '' }]);
  const dup = h.finish(d);
  t.equal(dup?.code, ErrorCode.PROTOCOL, 'a second result for the same task is refused');
  t.equal(h.settled.length, 1, 'the client receives exactly one completion');

  // After a requeue the old attempt number is stale, even from the new holder.
  h.submit('c1', 2, 'sha256', 't2');
  const first = h.find('t2');
  h.lost(first.worker);
  const second = h.find('t2');
  t.not(second.worker, first.worker);
  t.equal(second.attempt, 2);
  t.equal(h.core.result(h.w(second.worker), second.taskId, 1, { ok: true, ...bytes('x') })?.code, ErrorCode.PROTOCOL);
  t.equal(h.core.result(h.w(first.worker), first.taskId, 1, { ok: true, ...bytes('x') }), null, 'a departed worker is ignored');
  t.equal(h.settled.length, 1, 'neither stale result reached the client');
  t.equal(h.finish(second), null);
  t.same(h.settled.at(-1), { client: 'c1', requestId: 2, ok: true, body: 'done:t2', code: '', message: '' });
  t.equal(h.settled.length, 2);
  t.end();
});

// ---- 9. client loss ------------------------------------------------------------------------------------------

t.test('client loss: queued tasks dropped, running results discarded, credits returned', (t) => {
  const h = new Harness();
  h.client('c1');
  h.client('c2');
  h.worker('W1', 2, ['sha256']);
  for (let i = 1; i <= 5; i++) h.submit('c1', i, 'sha256', `t${i}`);
  t.match(h.stats(), { queued: 3, inFlight: 2 });
  t.equal(h.core.queueCount, 1);

  h.lost('c1', 'bye');
  // Changed with leases: the running tasks of a departed client are revoked at once (sendCancel E_CANCELLED), so
  // they leave inFlight now; their slots stay busy until W1 answers for them.
  t.match(h.stats(), { queued: 0, inFlight: 0, clients: 1 });
  t.same(
    h.cancels.map((c) => [c.worker, c.taskId, c.attempt, c.code]),
    [['W1', h.find('t1').taskId, 1, ErrorCode.CANCELLED], ['W1', h.find('t2').taskId, 1, ErrorCode.CANCELLED]],
    'both running tasks are cancelled on W1',
  );
  t.equal(h.busy('W1'), 2, 'their slots stay busy');
  t.same(h.left, [{ peer: 'c1', reason: 'bye', requeued: 0 }]);

  h.worker('W2', 10, ['sha256']);
  t.same(h.bodies('W2'), [], 'the dropped tasks are never dispatched to a worker that connects later');
  h.lost('W2');

  t.equal(h.finish(h.find('t1')), null);
  t.equal(h.failTask(h.find('t2'), ErrorCode.HANDLER, 'boom'), null);
  t.same(h.settled, [], 'nothing is sent to the departed client');
  t.same(h.completedEvents, []);
  t.same(h.failedEvents, []);
  // Changed: dropped results are counted in discarded only, no longer also in completed/failed.
  t.match(h.stats(), { inFlight: 0, queued: 0, discarded: 2, late: 0, completed: 0, failed: 0 });
  t.equal(h.busy('W1'), 0, 'the answers freed the slots');
  t.same(h.bodies('W1'), ['t1', 't2'], 'W1 never received the queued tasks of c1');

  // W1 got both credits back: c2's two tasks both go to it at once.
  h.submit('c2', 1, 'sha256', 'x1');
  h.submit('c2', 2, 'sha256', 'x2');
  t.same(h.bodies('W1'), ['t1', 't2', 'x1', 'x2']);
  t.match(h.stats(), { queued: 0, inFlight: 2 });
  h.finish(h.find('x1'));
  h.finish(h.find('x2'));
  t.same(h.settled.map((s) => [s.client, s.requestId]), [['c2', 1], ['c2', 2]]);

  // Tasks of a type no worker runs keep a queue alive only while they wait.
  h.submit('c2', 3, 'orphan-type', 'o1');
  t.equal(h.core.queueCount, 2);
  h.lost('W1');
  h.lost('c2');
  t.match(h.stats(), { queued: 0, inFlight: 0, workers: 0, clients: 0 });
  t.equal(h.core.queueCount, 0, 'no queue outlives its peers');
  t.end();
});

t.test('client loss: its tasks running on a worker that is then lost are not requeued', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('W1', 2, ['sha256']);
  h.submit('c1', 1, 'sha256', 't1');
  h.submit('c1', 2, 'sha256', 't2');
  h.lost('c1');
  h.worker('W2', 2, ['sha256']);
  h.lost('W1');
  t.same(h.bodies('W2'), [], 'nothing reaches W2');
  t.same(h.requeued, [], 'no taskRequeued notification');
  t.match(h.stats(), { queued: 0, inFlight: 0 });
  h.lost('W2');
  t.equal(h.core.queueCount, 0);
  t.end();
});

// ---- 10. duplicate request id --------------------------------------------------------------------------------

t.test('a request id reused while pending is not checked: both tasks run and both answers carry the id', (t) => {
  const h = new Harness();
  h.client('c1');
  h.client('c2');
  h.worker('W1', 1, ['sha256']);
  h.submit('c1', 7, 'sha256', 'running');
  h.submit('c1', 7, 'sha256', 'queued under the same id');
  h.submit('c2', 7, 'sha256', 'other client');
  t.match(h.stats(), { submitted: 3, queued: 2, inFlight: 1, rejected: 0 });
  h.finish(h.find('running'));
  h.finish(h.find('queued under the same id'));
  h.finish(h.find('other client'));
  t.same(
    h.settled.map((s) => [s.client, s.requestId, s.body]),
    [
      ['c1', 7, 'done:running'],
      ['c1', 7, 'done:queued under the same id'],
      ['c2', 7, 'done:other client'],
    ],
    'each task is answered once, to its own client, under the id it was sent with',
  );
  t.match(h.stats(), { completed: 3, queued: 0, inFlight: 0 });
  t.end();
});

// ---- 11. keepalive -------------------------------------------------------------------------------------------

t.test('keepalive: ticks ping every peer and drop the silent ones', (t) => {
  t.test('a silent idle worker is closed with E_TIMEOUT after deadAfterTicks heartbeats', (t) => {
    const h = new Harness();
    const c1 = h.client('c1');
    h.worker('w1', 2, ['sha256']);
    const w2 = h.worker('w2', 2, ['sha256']);
    h.core.heartbeat();
    // Changed: heartbeat() has no clock any more (it was tick(now)); only tick(now) moves core.now.
    t.equal(h.core.now, 0, 'heartbeat() leaves the clock alone');
    t.same(h.keepalives.sort(), ['c1', 'w1', 'w2'], 'one keepalive per peer');
    for (let beat = 2; beat <= 3; beat++) {
      h.core.seen(c1);
      h.core.seen(w2);
      h.core.heartbeat();
      t.equal(h.closed.length, 0, `still alive after heartbeat ${beat}`);
    }
    h.core.seen(c1);
    h.core.seen(w2);
    h.core.heartbeat();
    t.same(h.closed.map((c) => [c.peer, c.error instanceof TaskwireError && c.error.code]), [['w1', ErrorCode.TIMEOUT]]);
    t.equal(h.keepalives.filter((p) => p === 'w1').length, 3, 'no keepalive to the dropped peer');
    t.same(h.left, [{ peer: 'w1', reason: 'no frame for 3 keepalive intervals', requeued: 0 }], 'treated as lost');
    h.submit('c1', 1, 'sha256', 't1');
    t.same(h.bodies(), ['t1']);
    t.equal(h.find('t1').worker, 'w2', 'the dropped worker gets nothing');
    t.end();
  });

  // Changed (commit "Liveness: a worker running tasks is not dropped for silence"): a worker whose handler blocks
  // its event loop stays registered while it runs tasks; the task timeouts bound the wait instead. This used to be
  // "a silent worker is closed with E_TIMEOUT and its tasks are requeued" at the third silent heartbeat.
  t.test('a silent worker running tasks is kept until their timeouts take them back, then closed', (t) => {
    const h = new Harness({ timeoutMs: 10_000 });
    const c1 = h.client('c1');
    h.worker('w1', 2, ['sha256']);
    const w2 = h.worker('w2', 2, ['sha256']);
    h.submit('c1', 1, 'sha256', 't1');
    h.submit('c1', 2, 'sha256', 't2');
    h.submit('c1', 3, 'sha256', 't3');
    t.same(h.bodies('w1'), ['t1', 't3']);
    t.same(h.bodies('w2'), ['t2']);
    h.finish(h.find('t2'));

    for (let beat = 1; beat <= 6; beat++) {
      h.core.seen(c1);
      h.core.seen(w2);
      h.core.heartbeat();
    }
    t.same(h.closed, [], 'w1 is silent for 6 heartbeats but runs tasks: not dropped');
    t.equal(h.keepalives.filter((p) => p === 'w1').length, 6, 'and still pinged');
    t.match(h.stats(), { workers: 2, inFlight: 2, requeued: 0 });

    h.tick(10_000);
    const reason = 'timed out after 10000 ms on worker worker w1';
    t.same(
      h.cancels.map((c) => [c.worker, c.taskId, c.attempt, c.code, c.message]),
      [['w1', h.find('t1').taskId, 1, ErrorCode.TIMEOUT, reason], ['w1', h.find('t3').taskId, 1, ErrorCode.TIMEOUT, reason]],
      'both tasks are taken back from w1',
    );
    t.same(h.requeued.map((r) => [r.body, r.from, r.reason]), [['t1', 'w1', reason], ['t3', 'w1', reason]]);
    t.same(h.bodies('w2'), ['t2', 't1', 't3'], 'w2 took both with its free credits');
    t.equal(h.find('t1').attempt, 2);
    t.equal(h.busy('w1'), 2, 'the revoked leases keep the slots of w1 busy');

    // Revoked leases are not running tasks: silence counts again.
    for (let beat = 1; beat <= 2; beat++) {
      h.core.seen(c1);
      h.core.seen(w2);
      h.core.heartbeat();
    }
    t.same(h.closed, [], 'two silent heartbeats are fine');
    h.core.seen(c1);
    h.core.seen(w2);
    h.core.heartbeat();
    t.equal(h.closed.length, 1, 'w1 dropped at the third silent heartbeat after its tasks were taken back');
    t.equal(h.closed[0]!.peer, 'w1');
    t.type(h.closed[0]!.error, TaskwireError);
    t.equal(h.closed[0]!.error.code, ErrorCode.TIMEOUT);
    t.same(h.left, [{ peer: 'w1', reason: 'no frame for 3 keepalive intervals', requeued: 0 }], 'nothing left to requeue');
    t.equal(h.keepalives.filter((p) => p === 'w1').length, 8, 'no keepalive to the dropped peer');
    t.match(h.stats(), { workers: 1, queued: 0, inFlight: 2, requeued: 2, timedOut: 2, late: 0 });
    const keepalives = h.keepalives.length;
    h.core.seen(c1);
    h.core.seen(w2);
    h.core.heartbeat();
    t.same(h.keepalives.slice(keepalives).sort(), ['c1', 'w2'], 'the dropped worker is gone for good');
    t.equal(h.answer('w1', h.sent[0]!.taskId, 1), null, 'its late result is ignored');
    t.equal(h.stats().late, 0, 'and not even counted: the worker is gone');
    t.same(h.settled.map((s) => s.requestId), [2]);
    t.end();
  });

  t.test('a silent client is closed and its tasks dropped', (t) => {
    const h = new Harness();
    h.client('c1');
    const w1 = h.worker('w1', 1, ['sha256']);
    h.submit('c1', 1, 'sha256', 't1');
    h.submit('c1', 2, 'sha256', 't2');
    for (let tick = 1; tick <= 4; tick++) {
      h.core.seen(w1);
      h.core.heartbeat();
    }
    t.same(h.closed.map((c) => [c.peer, c.error.code]), [['c1', ErrorCode.TIMEOUT]]);
    // Changed with leases: t1 is revoked from w1 (E_CANCELLED) and leaves inFlight at once; its slot stays busy.
    t.match(h.stats(), { clients: 0, queued: 0, inFlight: 0 });
    t.same(h.cancels.map((c) => [c.worker, c.taskId, c.code]), [['w1', h.find('t1').taskId, ErrorCode.CANCELLED]]);
    t.equal(h.busy('w1'), 1);
    h.finish(h.find('t1'));
    t.same(h.settled, []);
    t.same(h.bodies(), ['t1'], 't2 was dropped');
    t.equal(h.stats().discarded, 1);
    t.equal(h.busy('w1'), 0);
    t.end();
  });

  t.test('a peer that calls seen() between ticks is never dropped', (t) => {
    const h = new Harness();
    const c1 = h.client('c1');
    const w1 = h.worker('w1', 1);
    for (let tick = 1; tick <= 50; tick++) {
      h.core.seen(c1);
      if (tick % 3 !== 0) h.core.seen(w1); // w1 is silent for 1 of every 3 intervals; that never adds up
      h.core.heartbeat();
    }
    t.same(h.closed, []);
    t.equal(h.keepalives.length, 100);
    t.match(h.stats(), { clients: 1, workers: 1 });
    // Two silent intervals in a row are still fine, the third drops it.
    h.core.heartbeat();
    h.core.heartbeat();
    t.same(h.closed, []);
    h.core.heartbeat();
    t.same(h.closed.map((c) => c.peer).sort(), ['c1', 'w1']);
    t.end();
  });

  t.test('deadAfterTicks is respected', (t) => {
    for (const deadAfterTicks of [1, 2, 5]) {
      const h = new Harness({ deadAfterTicks });
      h.client('c1');
      // The first tick consumes the "seen" of the connection itself; then deadAfterTicks silent ticks drop it.
      for (let tick = 1; tick <= deadAfterTicks; tick++) h.core.heartbeat();
      t.same(h.closed, [], `deadAfterTicks ${deadAfterTicks}: alive after ${deadAfterTicks} ticks`);
      h.core.heartbeat();
      t.same(h.closed.map((c) => [c.peer, c.error.code]), [['c1', ErrorCode.TIMEOUT]], `deadAfterTicks ${deadAfterTicks}: dropped on the next`);
      t.equal(h.keepalives.length, deadAfterTicks);
    }
    t.end();
  });
  t.end();
});

// ---- 12. concurrency changes ---------------------------------------------------------------------------------

t.test('ready() with a new concurrency: draining, resuming, lowering below the running count', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 2, ['sha256']);
  for (let i = 1; i <= 8; i++) h.submit('c1', i, 'sha256', `t${i}`);
  t.same(h.bodies(), ['t1', 't2']);

  h.ready('w1', 0);
  t.same(h.bodies(), ['t1', 't2'], 'draining: nothing more is sent');
  t.equal(h.finish(h.find('t1')), null, 'a running task can still complete');
  t.same(h.settled.map((s) => s.body), ['done:t1']);
  t.same(h.bodies(), ['t1', 't2'], 'the freed credit is not used while draining');
  t.match(h.stats(), { queued: 6, inFlight: 1 });

  h.ready('w1', 3);
  t.same(h.bodies(), ['t1', 't2', 't3', 't4'], 'raising the concurrency resumes dispatch up to it');
  t.match(h.stats(), { queued: 4, inFlight: 3 });

  h.ready('w1', 1);
  t.equal(h.sent.length, 4);
  h.finish(h.find('t2'));
  t.equal(h.sent.length, 4, '2 running, concurrency 1: nothing');
  h.finish(h.find('t3'));
  t.equal(h.sent.length, 4, '1 running, concurrency 1: nothing');
  h.finish(h.find('t4'));
  t.same(h.bodies(), ['t1', 't2', 't3', 't4', 't5'], 'dispatch resumes once below the concurrency');
  t.match(h.stats(), { queued: 3, inFlight: 1 });

  // A draining worker is not picked for new submissions either.
  h.finish(h.find('t5'));
  h.ready('w1', 0);
  h.finish(h.find('t6'));
  h.worker('w2', 5, ['sha256']);
  t.same(h.bodies('w2'), ['t7', 't8'], 'the queue moves to another worker');
  h.submit('c1', 9, 'sha256', 't9');
  t.equal(h.find('t9').worker, 'w2');
  t.same(h.bodies('w1'), ['t1', 't2', 't3', 't4', 't5', 't6']);
  t.end();
});

// ---- 13. handler failure -------------------------------------------------------------------------------------

t.test('a failed result reaches the client with its code and message', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 1, ['sha256']);
  h.submit('c1', 3, 'sha256', 't1');
  h.submit('c1', 4, 'sha256', 't2');
  t.equal(h.failTask(h.find('t1'), ErrorCode.HANDLER, 'handler threw: boom'), null);
  t.same(h.settled, [{ client: 'c1', requestId: 3, ok: false, body: '', code: 'E_HANDLER', message: 'handler threw: boom' }]);
  t.same(h.failedEvents, [{ body: 't1', code: 'E_HANDLER' }]);
  t.same(h.bodies(), ['t1', 't2'], 'the credit came back');
  t.equal(h.failTask(h.find('t2'), 'E_NO_HANDLER', 'no handler for sha256'), null);
  t.same(h.settled.at(-1), { client: 'c1', requestId: 4, ok: false, body: '', code: 'E_NO_HANDLER', message: 'no handler for sha256' });
  t.match(h.stats(), { failed: 2, completed: 0, queued: 0, inFlight: 0 });
  t.end();
});

// ---- 14. shutdown --------------------------------------------------------------------------------------------

t.test('shutdown fails every pending task once with E_SHUTDOWN and forgets every peer', (t) => {
  const h = new Harness();
  h.client('c1');
  h.client('c2');
  h.client('c3');
  h.worker('w1', 3, ['sha256']);
  h.worker('w2', 1, ['other']);
  h.submit('c1', 1, 'sha256', 'c1-run-1');
  h.submit('c2', 1, 'sha256', 'c2-run-1');
  h.submit('c1', 2, 'sha256', 'c1-run-2');
  h.submit('c1', 3, 'sha256', 'c1-queued-3');
  h.submit('c1', 4, 'sha256', 'c1-queued-4');
  h.submit('c2', 2, 'sha256', 'c2-queued-2');
  h.submit('c2', 3, 'nobody', 'c2-queued-3');
  h.submit('c1', 5, 'sha256', 'done');
  t.match(h.stats(), { queued: 5, inFlight: 3 });
  h.finish(h.find('c1-run-1'));
  t.equal(h.find('c1-queued-3').worker, 'w1');
  t.match(h.stats(), { queued: 4, inFlight: 3 });
  const settledBefore = h.settled.length;

  h.core.shutdown('the scheduler is shutting down');
  const failed = h.settled.slice(settledBefore);
  t.ok(failed.every((s) => !s.ok && s.code === ErrorCode.SHUTDOWN && s.message === 'the scheduler is shutting down'));
  t.same(
    failed.map((s) => `${s.client}:${s.requestId}`).sort(),
    ['c1:2', 'c1:3', 'c1:4', 'c1:5', 'c2:1', 'c2:2', 'c2:3'],
    'every pending task, running or queued, failed exactly once',
  );
  t.match(h.stats(), { workers: 0, clients: 0, queued: 0, inFlight: 0 });
  t.equal(h.core.queueCount, 0);
  t.equal(h.sent.length, 4, 'nothing was dispatched during the shutdown');

  // Late events after the shutdown are ignored.
  const calls = h.calls;
  t.equal(h.finish(h.find('c1-run-2')), null);
  h.submit('c1', 9, 'sha256', 'late');
  h.core.heartbeat();
  h.core.shutdown('twice');
  t.equal(h.calls, calls, 'no output after shutdown');
  t.end();
});

// ---- regressions: requeue order and counts -------------------------------------------------------------------

t.test('requeue of several types to a multi-type worker keeps oldest-first', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('W1', 2, ['a', 'b']);
  h.submit('c1', 1, 'a', 'a1');
  h.submit('c1', 2, 'b', 'b1');
  h.worker('W2', 1, ['a', 'b']);
  t.same(h.bodies('W1'), ['a1', 'b1']);
  h.lost('W1');
  t.equal(h.bodies('W2').length, 1, 'W2 took one task at once');
  t.same(h.bodies('W2'), ['a1'], 'W2 should get a1, the oldest requeued task');
  t.end();
});

t.test('tasks requeued by successive worker losses are served oldest first', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('W1', 1, ['sha256']);
  h.worker('W2', 1, ['sha256']);
  h.submit('c1', 1, 'sha256', 't1');
  h.submit('c1', 2, 'sha256', 't2');
  h.submit('c1', 3, 'sha256', 't3');
  t.same(h.sent.map((s) => [s.worker, s.body]), [['W1', 't1'], ['W2', 't2']]);
  h.lost('W1');
  h.lost('W2');
  h.worker('W3', 1, ['sha256']);
  for (let i = 0; i < 2; i++) h.finish(h.sent.at(-1)!);
  t.equal(h.bodies('W3').length, 3, 'W3 ran all three');
  t.same(h.bodies('W3'), ['t1', 't2', 't3'], 'oldest first');
  t.end();
});

t.test('stats().requeued and peerLeft count only tasks actually put back in a queue', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('W1', 2, ['sha256']);
  h.submit('c1', 1, 'sha256', 't1');
  h.lost('c1');
  h.lost('W1');
  t.same(h.requeued, [], 'no taskRequeued notification');
  t.match(h.stats(), { queued: 0, inFlight: 0 });
  t.equal(h.stats().requeued, 0, 'stats().requeued');
  t.same(h.left.at(-1), { peer: 'W1', reason: 'connection closed', requeued: 0 }, 'peerLeft requeued count');

  const s = new Harness();
  s.client('c1');
  s.worker('W1', 1, ['sha256']);
  s.submit('c1', 1, 'sha256', 't1');
  s.core.shutdown('bye');
  t.equal(s.stats().requeued, 0, 'shutdown requeues nothing');
  t.end();
});


t.test('checksPerInterval: silence checked N times an interval, keepalives sent once, a silent peer dropped after deadAfterTicks intervals', (t) => {
  const h = new Harness({ checksPerInterval: 10 });
  h.client('c1');
  // The first check consumes the "seen" of joining; then 29 checks without a frame, one short of 3 intervals.
  for (let i = 0; i < 30; i++) h.core.heartbeat(i % 10 === 0);
  t.same(h.keepalives, ['c1', 'c1', 'c1'], 'a keepalive on the calls that send them');
  t.equal(h.closed.length, 0, 'still there');
  h.core.heartbeat(false);
  t.equal(h.closed.length, 1, 'the 30th check without a frame drops it');
  t.match(h.closed[0]!.error, { code: ErrorCode.TIMEOUT, message: 'no frame for 3 keepalive intervals' });
  t.end();
});

t.test('a worker whose keepalives never wait for a handler (mayBlock false) is dropped for silence even while it runs tasks', (t) => {
  const h = new Harness();
  h.client('c1');
  const strict = h.core.addWorker('strict', 'strict', false);
  h.core.ready(strict, 1, ['sha256']);
  const lenient = h.core.addWorker('lenient', 'lenient');
  h.core.ready(lenient, 1, ['sha256']);
  h.submit('c1', 1, 'sha256', 'a');
  h.submit('c1', 2, 'sha256', 'b');
  t.same(h.sent.map((s) => s.worker).sort(), ['lenient', 'strict'], 'each runs a task, both with a timeout');
  for (let i = 0; i < 4; i++) {
    h.core.seen(h.c('c1'));
    h.core.heartbeat();
  }
  t.same(h.closed.map((c) => c.peer), ['strict'], 'the strict one is dropped; the one that may block is excused');
  t.equal(h.stats().requeued, 1);
  t.end();
});

t.test('a silent worker running a task without a timeout is not excused: dropped after deadAfterTicks', (t) => {
  const h = new Harness({ timeoutMs: 0 });
  h.client('c1');
  h.worker('w1', 1);
  h.submit('c1', 1, 'sha256', 't1');
  t.equal(h.sent.length, 1);
  for (let i = 0; i < 4; i++) {
    h.core.seen(h.c('c1')); // the client stays alive; only the worker is silent
    h.core.heartbeat(); // the first consumes the handshake's "seen"
  }
  t.equal(h.closed.length, 1, 'closed: nothing bounds the wait for a task without a timeout');
  t.equal(h.closed[0]!.error.code, ErrorCode.TIMEOUT);
  t.equal(h.stats().requeued, 1, 'its task went back to the queue');
  t.end();
});
