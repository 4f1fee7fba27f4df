// Unit tests of the pure scheduling core: no sockets, no timers. A recording CoreOutput stands in for the I/O
// shell, peer handles are plain strings ('w1', 'c1'), and every answer of the core is checked by value.

import t from 'tap';
import { ErrorCode, TaskwireError } from '../lib/errors.js';
import {
  SchedulerCore,
  type ClientRecord,
  type CoreOptions,
  type CoreOutput,
  type CoreStats,
  type OutcomeInput,
  type PeerRecord,
  type WorkerRecord,
} from '../lib/scheduler/core.js';

type H = string;

// ---- recording harness ---------------------------------------------------------------------------------------

interface Sent {
  worker: H;
  taskId: number;
  attempt: number;
  type: string;
  body: string;
  client: H | null;
  requestId: number;
}

interface Settled {
  client: H;
  requestId: number;
  ok: boolean;
  body: string;
  code: string;
  message: string;
}

interface Closed {
  peer: H;
  error: TaskwireError;
}

interface Requeued {
  body: string;
  taskId: number;
  attempt: number;
  from: H;
}

interface Left {
  peer: H;
  reason: string;
  requeued: number;
}

class Harness {
  readonly core: SchedulerCore<H>;
  /** sendTask calls, in order. */
  readonly sent: Sent[] = [];
  /** sendCompleted and sendFailed calls, in order. */
  readonly settled: Settled[] = [];
  readonly keepalives: H[] = [];
  readonly closed: Closed[] = [];
  readonly requeued: Requeued[] = [];
  readonly left: Left[] = [];
  /** Bodies of taskQueued notifications. */
  readonly queuedEvents: string[] = [];
  readonly dispatchedEvents: string[] = [];
  readonly completedEvents: string[] = [];
  readonly failedEvents: { body: string; code: string }[] = [];
  private readonly clients = new Map<H, ClientRecord<H>>();
  private readonly workers = new Map<H, WorkerRecord<H>>();

  constructor(options?: CoreOptions) {
    const output: CoreOutput<H> = {
      sendTask: (worker, task) => {
        this.sent.push({
          worker: worker.handle,
          taskId: task.id,
          attempt: task.attempt,
          type: task.type,
          body: task.body.toString(),
          client: task.client?.handle ?? null,
          requestId: task.requestId,
        });
      },
      sendCompleted: (client, requestId, body) => {
        this.settled.push({ client: client.handle, requestId, ok: true, body: body.toString(), code: '', message: '' });
      },
      sendFailed: (client, requestId, code, message) => {
        this.settled.push({ client: client.handle, requestId, ok: false, body: '', code, message });
      },
      sendKeepalive: (peer) => {
        this.keepalives.push(peer.handle);
      },
      closePeer: (peer, error) => {
        this.closed.push({ peer: peer.handle, error });
      },
      taskQueued: (task) => {
        this.queuedEvents.push(task.body.toString());
      },
      taskDispatched: (task) => {
        this.dispatchedEvents.push(task.body.toString());
      },
      taskCompleted: (task) => {
        this.completedEvents.push(task.body.toString());
      },
      taskFailed: (task, code) => {
        this.failedEvents.push({ body: task.body.toString(), code });
      },
      taskRequeued: (task, worker) => {
        this.requeued.push({ body: task.body.toString(), taskId: task.id, attempt: task.attempt, from: worker.handle });
      },
      peerLeft: (peer, reason, requeued) => {
        this.left.push({ peer: peer.handle, reason, requeued });
      },
    };
    this.core = new SchedulerCore<H>(output, options);
  }

  client(handle: H): ClientRecord<H> {
    const record = this.core.addClient(handle, `client ${handle}`);
    this.clients.set(handle, record);
    return record;
  }

  /** Adds a worker; announces it with ready() when a concurrency is given. */
  worker(handle: H, concurrency?: number, types: readonly string[] = ['sha256']): WorkerRecord<H> {
    const record = this.core.addWorker(handle, `worker ${handle}`);
    this.workers.set(handle, record);
    if (concurrency !== undefined) this.core.ready(record, concurrency, types);
    return record;
  }

  c(handle: H): ClientRecord<H> {
    const record = this.clients.get(handle);
    if (!record) throw new Error(`no client ${handle}`);
    return record;
  }

  w(handle: H): WorkerRecord<H> {
    const record = this.workers.get(handle);
    if (!record) throw new Error(`no worker ${handle}`);
    return record;
  }

  ready(worker: H, concurrency: number, types: readonly string[] = ['sha256']): void {
    this.core.ready(this.w(worker), concurrency, types);
  }

  submit(client: H, requestId: number, type: string, body: string): TaskwireError | null {
    return this.core.submit(this.c(client), requestId, type, Buffer.from(body));
  }

  /** Reports success for a dispatched task, with body 'done:<task body>' unless told otherwise. */
  finish(d: Sent, body = `done:${d.body}`): TaskwireError | null {
    return this.core.result(this.w(d.worker), d.taskId, d.attempt, { ok: true, body: Buffer.from(body) });
  }

  failTask(d: Sent, code: string, message: string): TaskwireError | null {
    return this.core.result(this.w(d.worker), d.taskId, d.attempt, { ok: false, code, message });
  }

  lost(handle: H, reason = 'connection closed'): void {
    const peer: PeerRecord<H> | undefined = this.clients.get(handle) ?? this.workers.get(handle);
    if (!peer) throw new Error(`no peer ${handle}`);
    this.core.lost(peer, reason);
  }

  /** The last dispatch of the task with this body. */
  find(body: string): Sent {
    for (let i = this.sent.length - 1; i >= 0; i--) if (this.sent[i]!.body === body) return this.sent[i]!;
    throw new Error(`task ${body} was never dispatched`);
  }

  bodies(worker?: H): string[] {
    return this.sent.filter((s) => worker === undefined || s.worker === worker).map((s) => s.body);
  }

  stats(): CoreStats {
    return this.core.stats();
  }

  /** Total number of recorded output calls, to prove that an operation did nothing. */
  get calls(): number {
    return (
      this.sent.length +
      this.settled.length +
      this.keepalives.length +
      this.closed.length +
      this.requeued.length +
      this.left.length +
      this.queuedEvents.length +
      this.dispatchedEvents.length +
      this.completedEvents.length +
      this.failedEvents.length
    );
  }
}

/** Seeded PRNG (mulberry32): the same seed always gives the same sequence. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}

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
  for (const [client, requestId, body] of plan) t.equal(h.submit(client, requestId, 'sha256', body), null);
  t.same(h.bodies(), ['t1'], 'only the first task is dispatched');
  t.same(h.queuedEvents, ['t2', 't3', 't4', 't5'], 'the others are queued, in order');
  t.match(h.stats(), { queued: 4, inFlight: 1, submitted: 5, dispatched: 1 });

  for (let i = 0; i < plan.length; i++) {
    const d = h.sent[i]!;
    const [client, requestId, body] = plan[i]!;
    t.same(d, { worker: 'w1', taskId: d.taskId, attempt: 1, type: 'sha256', body, client, requestId }, `dispatch ${i + 1}`);
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
      if (h.submit('c1', submitted, 'sha256', `t${submitted}`) !== null) badSteps++;
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

  t.equal(h.submit('c1', 1, 'unknown', 'u1'), null);
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
  t.same(h.sent.at(-1), { worker: 'C', taskId: h.sent.at(-1)!.taskId, attempt: 1, type: 'unknown', body: 'u1', client: 'c1', requestId: 1 });
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
    range(1, 4).map((i) => ({ body: `t${i}`, taskId: ids.get(`t${i}`), attempt: 1, from: 'W1' })),
    'taskRequeued fired for tasks 1-4, in order',
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
    ['from a worker that does not hold it', () => h.core.result(h.w('W2'), d.taskId, 1, { ok: true, body: Buffer.from('x') })],
    ['with a later attempt number', () => h.core.result(h.w('W1'), d.taskId, 2, { ok: true, body: Buffer.from('x') })],
    ['with attempt 0', () => h.core.result(h.w('W1'), d.taskId, 0, { ok: false, code: 'E_HANDLER', message: 'x' })],
    ['for an unknown task id', () => h.core.result(h.w('W1'), d.taskId + 1000, 1, { ok: true, body: Buffer.from('x') })],
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
  t.equal(h.core.result(h.w(second.worker), second.taskId, 1, { ok: true, body: Buffer.from('x') })?.code, ErrorCode.PROTOCOL);
  t.equal(h.core.result(h.w(first.worker), first.taskId, 1, { ok: true, body: Buffer.from('x') }), null, 'a departed worker is ignored');
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
  t.match(h.stats(), { queued: 0, inFlight: 2, clients: 1 });
  t.same(h.left, [{ peer: 'c1', reason: 'bye', requeued: 0 }]);

  h.worker('W2', 10, ['sha256']);
  t.same(h.bodies('W2'), [], 'the dropped tasks are never dispatched to a worker that connects later');
  h.lost('W2');

  t.equal(h.finish(h.find('t1')), null);
  t.equal(h.failTask(h.find('t2'), ErrorCode.HANDLER, 'boom'), null);
  t.same(h.settled, [], 'nothing is sent to the departed client');
  t.same(h.completedEvents, []);
  t.same(h.failedEvents, []);
  t.match(h.stats(), { inFlight: 0, queued: 0, discarded: 2 });
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

t.test('duplicate request id while pending is a protocol error; reusing it after it settled is fine', (t) => {
  const h = new Harness();
  h.client('c1');
  h.client('c2');
  h.worker('W1', 1, ['sha256']);
  t.equal(h.submit('c1', 7, 'sha256', 'running'), null);
  t.equal(h.submit('c1', 8, 'sha256', 'queued'), null);
  const before = h.stats();
  const calls = h.calls;
  for (const id of [7, 8]) {
    const err = h.submit('c1', id, 'sha256', 'dup');
    t.type(err, TaskwireError);
    t.equal(err?.code, ErrorCode.PROTOCOL, `request id ${id}`);
  }
  t.same(h.stats(), before, 'nothing submitted');
  t.equal(h.calls, calls, 'no output');
  t.equal(h.submit('c2', 7, 'sha256', 'other client'), null, 'another client may use the same id');

  h.finish(h.find('running'));
  t.equal(h.submit('c1', 7, 'sha256', 'again'), null, 'the id is free again once settled');
  h.finish(h.find('queued'));
  h.finish(h.find('other client'));
  h.finish(h.find('again'));
  t.same(
    h.settled.map((s) => [s.client, s.requestId, s.body]),
    [
      ['c1', 7, 'done:running'],
      ['c1', 8, 'done:queued'],
      ['c2', 7, 'done:other client'],
      ['c1', 7, 'done:again'],
    ],
  );
  t.equal(h.stats().submitted, 4);
  t.end();
});

// ---- 11. keepalive -------------------------------------------------------------------------------------------

t.test('keepalive: ticks ping every peer and drop the silent ones', (t) => {
  t.test('a silent worker is closed with E_TIMEOUT and its tasks are requeued', (t) => {
    const h = new Harness();
    const c1 = h.client('c1');
    h.worker('w1', 2, ['sha256']);
    const w2 = h.worker('w2', 2, ['sha256']);
    h.submit('c1', 1, 'sha256', 't1');
    h.submit('c1', 2, 'sha256', 't2');
    h.submit('c1', 3, 'sha256', 't3');
    t.same(h.bodies('w1'), ['t1', 't3']);
    t.same(h.bodies('w2'), ['t2']);

    h.core.tick(1000);
    t.equal(h.core.now, 1000);
    t.same(h.keepalives.sort(), ['c1', 'w1', 'w2'], 'one keepalive per peer');
    for (let tick = 2; tick <= 3; tick++) {
      h.core.seen(c1);
      h.core.seen(w2);
      h.core.tick(tick * 1000);
      t.equal(h.closed.length, 0, `still alive after tick ${tick}`);
    }
    t.equal(h.keepalives.filter((p) => p === 'w1').length, 3);
    h.core.seen(c1);
    h.core.seen(w2);
    h.core.tick(4000);
    t.equal(h.closed.length, 1, 'w1 dropped after 3 ticks without a frame');
    t.equal(h.closed[0]!.peer, 'w1');
    t.type(h.closed[0]!.error, TaskwireError);
    t.equal(h.closed[0]!.error.code, ErrorCode.TIMEOUT);
    t.equal(h.keepalives.filter((p) => p === 'w1').length, 3, 'no keepalive to the dropped peer');
    t.equal(h.left[0]?.peer, 'w1', 'treated as lost');
    t.same(h.requeued.map((r) => r.body), ['t1', 't3']);
    t.same(h.bodies('w2'), ['t2', 't1'], 'w2 took one requeued task with its spare credit');
    t.equal(h.find('t1').attempt, 2);
    t.match(h.stats(), { workers: 1, queued: 1, inFlight: 2, requeued: 2 });
    const keepalives = h.keepalives.length;
    h.core.seen(c1);
    h.core.seen(w2);
    h.core.tick(5000);
    t.same(h.keepalives.slice(keepalives).sort(), ['c1', 'w2'], 'the dropped worker is gone for good');
    t.equal(h.core.result(h.w('w1'), h.sent[0]!.taskId, 1, { ok: true, body: Buffer.from('late') }), null);
    t.equal(h.settled.length, 0, 'its late result is ignored');
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
      h.core.tick(tick);
    }
    t.same(h.closed.map((c) => [c.peer, c.error.code]), [['c1', ErrorCode.TIMEOUT]]);
    t.match(h.stats(), { clients: 0, queued: 0, inFlight: 1 });
    h.finish(h.find('t1'));
    t.same(h.settled, []);
    t.same(h.bodies(), ['t1'], 't2 was dropped');
    t.equal(h.stats().discarded, 1);
    t.end();
  });

  t.test('a peer that calls seen() between ticks is never dropped', (t) => {
    const h = new Harness();
    const c1 = h.client('c1');
    const w1 = h.worker('w1', 1);
    for (let tick = 1; tick <= 50; tick++) {
      h.core.seen(c1);
      if (tick % 3 !== 0) h.core.seen(w1); // w1 is silent for 1 of every 3 intervals; that never adds up
      h.core.tick(tick);
    }
    t.same(h.closed, []);
    t.equal(h.keepalives.length, 100);
    t.match(h.stats(), { clients: 1, workers: 1 });
    // Two silent intervals in a row are still fine, the third drops it.
    h.core.tick(51);
    h.core.tick(52);
    t.same(h.closed, []);
    h.core.tick(53);
    t.same(h.closed.map((c) => c.peer).sort(), ['c1', 'w1']);
    t.end();
  });

  t.test('deadAfterTicks is respected', (t) => {
    for (const deadAfterTicks of [1, 2, 5]) {
      const h = new Harness({ deadAfterTicks });
      h.client('c1');
      // The first tick consumes the "seen" of the connection itself; then deadAfterTicks silent ticks drop it.
      for (let tick = 1; tick <= deadAfterTicks; tick++) h.core.tick(tick);
      t.same(h.closed, [], `deadAfterTicks ${deadAfterTicks}: alive after ${deadAfterTicks} ticks`);
      h.core.tick(deadAfterTicks + 1);
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
  t.equal(h.submit('c1', 9, 'sha256', 'late'), null);
  h.core.tick(1);
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

// ---- 15. seeded simulation -----------------------------------------------------------------------------------

type TaskState = 'queued' | 'running' | 'orphan' | 'settled' | 'dropped';

interface MTask {
  readonly client: MClient;
  readonly requestId: number;
  readonly type: string;
  /** Submission order within the simulation. */
  readonly order: number;
  state: TaskState;
  worker: MWorker | null;
  id: number;
  attempt: number;
}

interface MPeerBase {
  readonly name: H;
  alive: boolean;
  active: boolean;
  missed: number;
}

interface MClient extends MPeerBase {
  readonly kind: 'client';
  readonly rec: ClientRecord<H>;
  nextRequest: number;
  readonly pending: Map<number, MTask>;
}

interface MWorker extends MPeerBase {
  readonly kind: 'worker';
  readonly rec: WorkerRecord<H>;
  concurrency: number;
  types: string[];
  readonly running: Map<number, MTask>;
  /** What it held when it left, to replay stale results. */
  heldAtDeath: { id: number; attempt: number }[];
}

interface Totals {
  steps: number;
  dispatched: number;
  completed: number;
  failed: number;
  requeued: number;
  timeouts: number;
  protocolErrors: number;
  discarded: number;
  workersLost: number;
  clientsLost: number;
  maxQueued: number;
}

class Violation extends Error {}

const SIM_TYPES: readonly (readonly string[])[] = [['x'], ['y'], ['x', 'y'], ['y', 'x']];

function simulate(seed: number, steps: number, totals: Totals): string | null {
  const rnd = mulberry32(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const pick = <T>(items: readonly T[]): T | undefined => (items.length ? items[int(items.length)] : undefined);
  const deadAfterTicks = 2 + (seed % 2);
  let step = 0;
  let phase = 'setup';
  const violate = (message: string): never => {
    throw new Violation(`seed ${seed} (deadAfterTicks ${deadAfterTicks}) step ${step} [${phase}]: ${message}`);
  };

  const clients: MClient[] = [];
  const workers: MWorker[] = [];
  const peers = new Map<H, MClient | MWorker>();
  const settleCount = new Map<string, number>();
  const lastFirstDispatch = new Map<string, number>();
  const model = { submitted: 0, dispatched: 0, completed: 0, failed: 0, discarded: 0 };
  let order = 0;
  let now = 0;
  let calls = 0;
  let sends = 0;
  let expectedTick: { keepalive: Set<H>; close: Set<H> } | null = null;
  let resulting: { task: MTask; outcome: OutcomeInput } | null = null;

  const peerOf = (handle: H): MClient | MWorker => peers.get(handle) ?? violate(`unknown peer ${handle}`);
  const clientOf = (handle: H): MClient => {
    const p = peerOf(handle);
    return p.kind === 'client' ? p : violate(`${handle} is not a client`);
  };
  const workerOf = (handle: H): MWorker => {
    const p = peerOf(handle);
    return p.kind === 'worker' ? p : violate(`${handle} is not a worker`);
  };

  const settle = (client: ClientRecord<H>, requestId: number, ok: boolean, check: (o: OutcomeInput) => boolean): void => {
    calls++;
    sends++;
    const c = clientOf(client.handle);
    if (!c.alive) violate(`result sent to departed client ${c.name}`);
    const key = `${c.name}:${requestId}`;
    const count = (settleCount.get(key) ?? 0) + 1;
    settleCount.set(key, count);
    if (count > 1) violate(`request ${key} settled ${count} times`);
    if (!resulting) violate(`request ${key} settled outside result()`);
    const m = c.pending.get(requestId);
    if (m !== resulting!.task) violate(`request ${key} settled, but the result was for another task`);
    if (resulting!.outcome.ok !== ok || !check(resulting!.outcome)) violate(`request ${key} settled with the wrong outcome`);
    m!.state = 'settled';
    m!.worker = null;
    c.pending.delete(requestId);
  };

  const output: CoreOutput<H> = {
    sendTask(worker, task) {
      calls++;
      const w = workerOf(worker.handle);
      if (!w.alive) violate(`task sent to departed worker ${w.name}`);
      if (w.running.size >= w.concurrency) {
        violate(`${w.name} over its credits: dispatch with ${w.running.size} running, concurrency ${w.concurrency}`);
      }
      if (!w.types.includes(task.type)) violate(`${w.name} (${w.types.join(',')}) got a ${task.type} task`);
      if (!task.client) return violate('dispatched a task whose client has left');
      const c = clientOf(task.client.handle);
      if (!c.alive) violate(`dispatched a task of departed client ${c.name}`);
      const m = c.pending.get(task.requestId) ?? violate(`dispatched unknown request ${c.name}:${task.requestId}`);
      if (m.state !== 'queued') violate(`dispatched ${c.name}:${m.requestId} while ${m.state}`);
      if (task.attempt !== m.attempt + 1) violate(`attempt ${task.attempt} after ${m.attempt}`);
      if (m.attempt === 0) {
        const last = lastFirstDispatch.get(m.type) ?? -1;
        if (m.order < last) violate(`first attempts of ${m.type} out of submission order (${m.order} after ${last})`);
        lastFirstDispatch.set(m.type, m.order);
      } else if (task.id !== m.id) {
        violate(`task id changed from ${m.id} to ${task.id} on requeue`);
      }
      if (w.running.has(task.id)) violate(`task id ${task.id} already running on ${w.name}`);
      m.id = task.id;
      m.attempt = task.attempt;
      m.state = 'running';
      m.worker = w;
      w.running.set(task.id, m);
      model.dispatched++;
    },
    sendCompleted(client, requestId, body) {
      settle(client, requestId, true, (o) => o.ok && o.body.equals(body));
    },
    sendFailed(client, requestId, code, message) {
      settle(client, requestId, false, (o) => !o.ok && o.code === code && o.message === message);
    },
    sendKeepalive(peer) {
      calls++;
      if (!expectedTick) violate(`keepalive to ${peer.handle} outside tick()`);
      if (!peerOf(peer.handle).alive) violate(`keepalive to departed ${peer.handle}`);
      if (!expectedTick!.keepalive.delete(peer.handle)) violate(`unexpected keepalive to ${peer.handle}`);
    },
    closePeer(peer, error) {
      calls++;
      if (!expectedTick) violate(`closePeer(${peer.handle}) outside tick()`);
      if (!(error instanceof TaskwireError) || error.code !== ErrorCode.TIMEOUT) violate(`closePeer(${peer.handle}) without E_TIMEOUT`);
      if (peerOf(peer.handle).alive) violate(`closePeer(${peer.handle}) before the core forgot it`);
      if (!expectedTick!.close.delete(peer.handle)) violate(`unexpected close of ${peer.handle}`);
      totals.timeouts++;
    },
    taskQueued(task) {
      calls++;
      const m = task.client && clientOf(task.client.handle).pending.get(task.requestId);
      if (!m || m.state !== 'queued' || m.attempt !== 0) violate('taskQueued for a task that is not newly queued');
    },
    taskRequeued(task, worker) {
      calls++;
      const w = workerOf(worker.handle);
      const m = w.running.get(task.id);
      if (!m || m.state !== 'running' || m.attempt !== task.attempt) violate(`taskRequeued for a task ${w.name} did not run`);
      totals.requeued++;
    },
    peerLeft(peer) {
      calls++;
      const p = peerOf(peer.handle);
      if (!p.alive) violate(`peerLeft twice for ${p.name}`);
      p.alive = false;
      if (p.kind === 'worker') {
        totals.workersLost++;
        p.heldAtDeath = [...p.running.values()].map((m) => ({ id: m.id, attempt: m.attempt }));
        for (const m of p.running.values()) {
          m.worker = null;
          m.state = m.state === 'orphan' ? 'dropped' : 'queued';
        }
        p.running.clear();
      } else {
        totals.clientsLost++;
        for (const m of p.pending.values()) {
          if (m.state === 'queued') m.state = 'dropped';
          else if (m.state === 'running') m.state = 'orphan';
          else violate(`pending task in state ${m.state}`);
        }
        p.pending.clear();
      }
    },
  };

  const core = new SchedulerCore<H>(output, { deadAfterTicks });

  const seen = (p: MClient | MWorker): void => {
    core.seen(p.rec);
    p.active = true;
  };

  const ready = (w: MWorker, concurrency: number, types: readonly string[]): void => {
    seen(w);
    w.concurrency = concurrency;
    w.types = [...new Set(types)];
    core.ready(w.rec, concurrency, types);
  };

  /** Runs an operation that must not change anything. */
  const inert = (what: string, expectError: boolean, op: () => TaskwireError | null): void => {
    const before = JSON.stringify(core.stats());
    const callsBefore = calls;
    const err = op();
    if (expectError) {
      if (!(err instanceof TaskwireError) || err.code !== ErrorCode.PROTOCOL) violate(`${what}: expected E_PROTOCOL, got ${String(err?.code)}`);
      totals.protocolErrors++;
    } else if (err !== null) {
      violate(`${what}: unexpected error ${err.code}`);
    }
    if (calls !== callsBefore) violate(`${what}: produced output`);
    if (JSON.stringify(core.stats()) !== before) violate(`${what}: changed the stats`);
  };

  const check = (): void => {
    const s = core.stats();
    let queued = 0;
    let running = 0;
    const queuedTypes = new Set<string>();
    const held = new Set<MTask>();
    const liveTypes = new Set<string>();
    for (const w of workers) {
      if (!w.alive) continue;
      for (const type of w.types) liveTypes.add(type);
      for (const m of w.running.values()) {
        if (held.has(m)) violate(`task ${m.client.name}:${m.requestId} held twice`);
        held.add(m);
        if (m.worker !== w || (m.state !== 'running' && m.state !== 'orphan')) violate(`bad running task on ${w.name}`);
        running++;
      }
    }
    for (const c of clients) {
      if (!c.alive) continue;
      for (const m of c.pending.values()) {
        if (m.state === 'queued') {
          queued++;
          queuedTypes.add(m.type);
          liveTypes.add(m.type);
        } else if (m.state === 'running') {
          if (!m.worker?.alive || !held.has(m)) violate(`task ${c.name}:${m.requestId} running on no live worker`);
        } else {
          violate(`pending task ${c.name}:${m.requestId} in state ${m.state}`);
        }
      }
    }
    if (s.queued !== queued) violate(`stats().queued ${s.queued}, model ${queued}`);
    if (s.inFlight !== running) violate(`stats().inFlight ${s.inFlight}, model ${running}`);
    if (s.workers !== workers.filter((w) => w.alive).length) violate(`stats().workers ${s.workers}`);
    if (s.clients !== clients.filter((c) => c.alive).length) violate(`stats().clients ${s.clients}`);
    for (const k of ['submitted', 'dispatched', 'completed', 'failed', 'discarded'] as const) {
      if (s[k] !== model[k]) violate(`stats().${k} ${s[k]}, model ${model[k]}`);
    }
    if (core.queueCount !== liveTypes.size) violate(`queueCount ${core.queueCount}, expected ${liveTypes.size} (${[...liveTypes].join(',')})`);
    // Work conservation: no worker has a free credit while a task of one of its types waits.
    for (const w of workers) {
      if (!w.alive || w.running.size >= w.concurrency) continue;
      for (const type of w.types) {
        if (queuedTypes.has(type)) violate(`${w.name} has ${w.concurrency - w.running.size} free credits while ${type} tasks wait`);
      }
    }
    totals.maxQueued = Math.max(totals.maxQueued, queued);
  };

  const lose = (p: MClient | MWorker): void => {
    core.lost(p.rec, 'simulated loss');
    if (p.alive) violate(`lost(${p.name}) did not report peerLeft`);
    const after = calls;
    core.lost(p.rec, 'again');
    if (calls !== after) violate(`second lost(${p.name}) produced output`);
  };

  type Action = [weight: number, name: string, run: () => void];
  const alive = <T extends MPeerBase>(list: T[]): T[] => list.filter((p) => p.alive);
  const actions: Action[] = [
    [6, 'addClient', () => {
      if (alive(clients).length >= 4) return;
      const name = `c${clients.length + 1}`;
      const c: MClient = { kind: 'client', name, rec: core.addClient(name, name), alive: true, active: true, missed: 0, nextRequest: 1, pending: new Map() };
      clients.push(c);
      peers.set(name, c);
    }],
    [6, 'addWorker', () => {
      if (alive(workers).length >= 4) return;
      const name = `w${workers.length + 1}`;
      const w: MWorker = {
        kind: 'worker', name, rec: core.addWorker(name, name), alive: true, active: true, missed: 0,
        concurrency: 0, types: [], running: new Map(), heldAtDeath: [],
      };
      workers.push(w);
      peers.set(name, w);
      if (rnd() < 0.8) ready(w, 1 + int(4), pick(SIM_TYPES)!);
    }],
    [30, 'submit', () => {
      const c = pick(alive(clients));
      if (!c) return;
      seen(c);
      const requestId = c.nextRequest;
      c.nextRequest += 1 + int(3);
      const r = rnd();
      const type = r < 0.45 ? 'x' : r < 0.9 ? 'y' : 'z'; // nobody ever runs z
      const m: MTask = { client: c, requestId, type, order: order++, state: 'queued', worker: null, id: -1, attempt: 0 };
      c.pending.set(requestId, m);
      model.submitted++;
      const err = core.submit(c.rec, requestId, type, Buffer.from(`${c.name}/${requestId}`));
      if (err) violate(`submit refused: ${err.message}`);
    }],
    [4, 'duplicateSubmit', () => {
      const c = pick(alive(clients).filter((x) => x.pending.size > 0));
      if (!c) return;
      const m = pick([...c.pending.values()])!;
      inert('duplicate request id', true, () => core.submit(c.rec, m.requestId, 'x', Buffer.from('dup')));
    }],
    [28, 'result', () => {
      const candidates: MTask[] = [];
      for (const w of workers) if (w.alive) candidates.push(...w.running.values());
      const m = pick(candidates);
      if (!m) return;
      const w = m.worker!;
      seen(w);
      const r = rnd();
      if (r < 0.12) {
        const other = pick(alive(workers).filter((x) => x !== w));
        const ok: OutcomeInput = { ok: true, body: Buffer.from('stale') };
        if (r < 0.05) {
          const attempt = m.attempt > 1 && rnd() < 0.5 ? m.attempt - 1 : m.attempt + 1 + int(2);
          inert('result with a wrong attempt', true, () => core.result(w.rec, m.id, attempt, ok));
        } else if (r < 0.09 && other) {
          inert('result from a worker that does not hold the task', true, () => core.result(other.rec, m.id, m.attempt, ok));
        } else {
          inert('result for an unknown task id', true, () => core.result(w.rec, 0x7fff0000 + int(1000), 1, ok));
        }
        return;
      }
      const outcome: OutcomeInput =
        rnd() < 0.8
          ? { ok: true, body: Buffer.from(`ok ${m.client.name}/${m.requestId}/${m.attempt}`) }
          : { ok: false, code: ErrorCode.HANDLER, message: `boom ${m.client.name}/${m.requestId}` };
      const orphan = m.state === 'orphan';
      w.running.delete(m.id); // the credit is free before the core refills the worker
      sends = 0;
      resulting = { task: m, outcome };
      const err = core.result(w.rec, m.id, m.attempt, outcome);
      resulting = null;
      if (err) violate(`valid result refused: ${err.message}`);
      if (outcome.ok) model.completed++;
      else model.failed++;
      if (orphan) {
        if (sends !== 0) violate('result of a departed client was forwarded');
        m.state = 'dropped';
        m.worker = null;
        model.discarded++;
        totals.discarded++;
      } else if (sends !== 1 || m.state !== 'settled') {
        violate(`valid result settled ${sends} times`);
      }
      if (outcome.ok) totals.completed++;
      else totals.failed++;
    }],
    [2, 'staleResultFromDepartedWorker', () => {
      const w = pick(workers.filter((x) => !x.alive && x.heldAtDeath.length > 0));
      if (!w) return;
      const held = pick(w.heldAtDeath)!;
      inert('result from a departed worker', false, () => core.result(w.rec, held.id, held.attempt, { ok: true, body: Buffer.from('late') }));
    }],
    [1, 'submitFromDepartedClient', () => {
      const c = pick(clients.filter((x) => !x.alive));
      if (!c) return;
      inert('submit from a departed client', false, () => core.submit(c.rec, 1, 'x', Buffer.from('late')));
    }],
    [4, 'workerLost', () => {
      const w = pick(alive(workers));
      if (w) lose(w);
    }],
    [3, 'clientLost', () => {
      const c = pick(alive(clients));
      if (c) lose(c);
    }],
    [7, 'ready', () => {
      const w = pick(alive(workers));
      if (!w) return;
      const types = w.types.length === 0 || rnd() < 0.3 ? pick(SIM_TYPES)! : w.types;
      ready(w, int(5), types);
    }],
    [9, 'tick', () => {
      const keepalive = new Set<H>();
      const close = new Set<H>();
      for (const p of [...clients, ...workers]) {
        if (!p.alive) continue;
        if (rnd() < 0.7) seen(p);
        if (p.active) {
          p.active = false;
          p.missed = 0;
          keepalive.add(p.name);
        } else if (++p.missed >= deadAfterTicks) {
          close.add(p.name);
        } else {
          keepalive.add(p.name);
        }
      }
      expectedTick = { keepalive, close };
      now += 1000;
      core.tick(now);
      expectedTick = null;
      if (keepalive.size || close.size) violate(`tick: missing keepalives [${[...keepalive]}] or closes [${[...close]}]`);
      if (core.now !== now) violate('tick did not record now');
      for (const name of close) if (peerOf(name).alive) violate(`${name} closed but not lost`);
    }],
  ];
  const totalWeight = actions.reduce((sum, [weight]) => sum + weight, 0);

  try {
    for (step = 1; step <= steps; step++) {
      let r = rnd() * totalWeight;
      const action = actions.find(([weight]) => (r -= weight) < 0) ?? actions.at(-1)!;
      phase = action[1];
      action[2]();
      check();
    }
    totals.steps += steps;
    phase = 'teardown';
    const everyone = [...clients, ...workers].filter((p) => p.alive);
    for (let i = everyone.length - 1; i > 0; i--) {
      const j = int(i + 1);
      [everyone[i], everyone[j]] = [everyone[j]!, everyone[i]!];
    }
    for (const p of everyone) {
      lose(p);
      check();
    }
    const s = core.stats();
    if (s.queued !== 0 || s.inFlight !== 0 || s.workers !== 0 || s.clients !== 0) violate(`after teardown: ${JSON.stringify(s)}`);
    if (core.queueCount !== 0) violate(`queueCount ${core.queueCount} after teardown`);
    totals.dispatched += model.dispatched;
  } catch (err) {
    if (err instanceof Violation) return err.message;
    return `seed ${seed} step ${step} [${phase}]: the core threw ${err instanceof Error ? err.stack : String(err)}`;
  }
  return null;
}

t.test('seeded simulation: 300 seeds x 400 random steps keep every invariant', (t) => {
  const totals: Totals = {
    steps: 0, dispatched: 0, completed: 0, failed: 0, requeued: 0, timeouts: 0,
    protocolErrors: 0, discarded: 0, workersLost: 0, clientsLost: 0, maxQueued: 0,
  };
  const start = performance.now();
  const failures: string[] = [];
  for (let seed = 1; seed <= 300; seed++) {
    const failure = simulate(seed, 400, totals);
    if (failure) failures.push(failure);
  }
  // One assertion per failing seed (replay with simulate(seed, 400, ...)), and one for the whole run.
  for (const failure of failures.slice(0, 10)) t.fail(failure);
  t.equal(failures.length, 0, `seeds failing: ${failures.map((f) => f.split(' ')[1]).join(', ') || 'none'}`);
  t.equal(totals.steps, 300 * 400, 'every seed ran all its steps');
  // The simulation really went through the interesting paths.
  t.ok(totals.dispatched > 10_000, `dispatched ${totals.dispatched}`);
  t.ok(totals.completed > 5_000, `completed ${totals.completed}`);
  t.ok(totals.failed > 1_000, `failed ${totals.failed}`);
  t.ok(totals.requeued > 1_000, `requeued ${totals.requeued}`);
  t.ok(totals.timeouts > 200, `timeouts ${totals.timeouts}`);
  t.ok(totals.protocolErrors > 1_000, `protocol errors ${totals.protocolErrors}`);
  t.ok(totals.discarded > 100, `discarded ${totals.discarded}`);
  t.ok(totals.workersLost > 1_000 && totals.clientsLost > 1_000, `lost ${totals.workersLost} workers, ${totals.clientsLost} clients`);
  t.ok(totals.maxQueued >= 5, `max queued ${totals.maxQueued}`);
  t.comment(`simulation: ${JSON.stringify(totals)} in ${Math.round(performance.now() - start)} ms`);
  t.end();
});
