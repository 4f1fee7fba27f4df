// Unit tests of the pure scheduling core: no sockets, no timers. A recording CoreOutput stands in for the I/O
// shell, peer handles are plain strings ('w1', 'c1'), and every answer of the core is checked by value.

import t from 'tap';
import { mulberry32 } from './helpers.js';
import type { BodyRange } from '../lib/protocol/index.js';
import { ErrorCode, TaskwireError } from '../lib/errors.js';
import {
  CORE_DEFAULTS,
  SchedulerCore,
  TaskState,
  type ClientRecord,
  type CoreOptions,
  type CoreOutput,
  type CoreStats,
  type DeadLetter,
  type OutcomeInput,
  type PeerRecord,
  type Strategy,
  type SubmitOptions,
  type Task,
  type WorkerRecord,
} from '../lib/scheduler/core.js';

/**
 * A task's body as the core receives it: a view of the bytes it arrived in, here between other bytes as in a
 * socket read, so a queue that lost track of the view's offset would send the wrong bytes.
 */
function view(body: string | Buffer): Buffer {
  const inner = Buffer.from(body);
  return Buffer.concat([Buffer.from('<<<'), inner, Buffer.from('>>')]).subarray(3, 3 + inner.length);
}

/** A result as the shell passes it through the core (opaque to it): here a range of a RESULT frame's buffer. */
function bytes(body: string | Buffer): BodyRange {
  const inner = Buffer.from(body);
  const buf = Buffer.concat([Buffer.from('<<<'), inner, Buffer.from('>>')]);
  return { buf, bodyStart: 3, bodyEnd: 3 + inner.length };
}

/** The bytes of a body range, as a Buffer. */
function bodyOf(range: BodyRange): Buffer {
  return range.buf.subarray(range.bodyStart, range.bodyEnd);
}

/** The core as the tests drive it: results are ranges, as in the scheduler. */
type Outcome = OutcomeInput<BodyRange>;

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
  reason: string;
}

interface Cancel {
  worker: H;
  taskId: number;
  attempt: number;
  code: string;
  message: string;
}

interface Left {
  peer: H;
  reason: string;
  requeued: number;
}

class Harness {
  readonly core: SchedulerCore<H, BodyRange>;
  /** sendTask calls, in order. */
  readonly sent: Sent[] = [];
  /** sendCompleted and sendFailed calls, in order. */
  readonly settled: Settled[] = [];
  readonly keepalives: H[] = [];
  readonly closed: Closed[] = [];
  readonly requeued: Requeued[] = [];
  /** sendCancel calls, in order. */
  readonly cancels: Cancel[] = [];
  readonly left: Left[] = [];
  /** Bodies of taskQueued notifications. */
  readonly queuedEvents: string[] = [];
  readonly dispatchedEvents: string[] = [];
  readonly completedEvents: string[] = [];
  readonly failedEvents: { body: string; code: string }[] = [];
  /** Workers whose connection is taken to be full: sendTask answers false for them. */
  readonly saturated = new Set<H>();
  private readonly clients = new Map<H, ClientRecord<H>>();
  private readonly workers = new Map<H, WorkerRecord<H>>();

  constructor(options?: CoreOptions) {
    const output: CoreOutput<H, BodyRange> = {
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
        return !this.saturated.has(worker.handle);
      },
      sendCancel: (worker, taskId, attempt, code, message) => {
        this.cancels.push({ worker: worker.handle, taskId, attempt, code, message });
      },
      sendCompleted: (client, requestId, body) => {
        this.settled.push({ client: client.handle, requestId, ok: true, body: bodyOf(body).toString(), code: '', message: '' });
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
      taskQueued: (_taskId, _type, _client, _requestId, body) => {
        this.queuedEvents.push(body.toString());
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
      taskRequeued: (task, worker, reason) => {
        this.requeued.push({ body: task.body.toString(), taskId: task.id, attempt: task.attempt, from: worker.handle, reason });
      },
      peerLeft: (peer, reason, requeued) => {
        this.left.push({ peer: peer.handle, reason, requeued });
      },
    };
    this.core = new SchedulerCore<H, BodyRange>(output, options);
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

  submit(client: H, requestId: number, type: string, body: string, options?: SubmitOptions): void {
    this.core.submit(this.c(client), requestId, type, view(body), options);
  }

  /** Advances the core's clock. */
  tick(now: number): void {
    this.core.tick(now);
  }

  /** The core's record of the client's unsettled request. */
  task(client: H, requestId: number): Task<H> | undefined {
    return this.core.tasksOf(this.c(client)).find((task) => task.requestId === requestId);
  }

  /** Reports success for a dispatched task, with body 'done:<task body>' unless told otherwise. */
  finish(d: Sent, body = `done:${d.body}`): TaskwireError | null {
    return this.core.result(this.w(d.worker), d.taskId, d.attempt, { ok: true, ...bytes(body) });
  }

  failTask(d: Sent, code: string, message: string): TaskwireError | null {
    return this.core.result(this.w(d.worker), d.taskId, d.attempt, { ok: false, code, message });
  }

  lost(handle: H, reason = 'connection closed'): void {
    const peer: PeerRecord<H> | undefined = this.clients.get(handle) ?? this.workers.get(handle);
    if (!peer) throw new Error(`no peer ${handle}`);
    this.core.lost(peer, reason);
  }

  /** A result for a lease (task id, attempt) the worker may no longer hold. */
  answer(worker: H, taskId: number, attempt: number, outcome: Outcome = { ok: true, ...bytes('late') }): TaskwireError | null {
    return this.core.result(this.w(worker), taskId, attempt, outcome);
  }

  /** Slots of a worker taken (running tasks plus revoked leases not yet answered). */
  busy(worker: H): number {
    const w = this.w(worker);
    return w.running.size + w.revoked.size;
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
      this.cancels.length +
      this.left.length +
      this.queuedEvents.length +
      this.dispatchedEvents.length +
      this.completedEvents.length +
      this.failedEvents.length
    );
  }
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
  for (const [client, requestId, body] of plan) h.submit(client, requestId, 'sha256', body);
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
  t.same(h.sent.at(-1), { worker: 'w1', taskId: d1.taskId, attempt: 2, type: 'sha256', body: 't1', client: 'c1', requestId: 1 },
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
    { taskId: h.sent[0]!.taskId, type: 'sha256', code: ErrorCode.ATTEMPTS, message, attempts: 3, payloadBytes: 7, failedAt: 3000 },
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
    { taskId: h.sent[0]!.taskId, type: 'sha256', code: 'E_LAST', message: 'third', attempts: 3, payloadBytes: 6, failedAt: 350 },
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

t.test("a lost client's queued rows are skipped in place, swept once they outnumber the live ones", (t) => {
  const h = new Harness();
  h.client('stay');
  h.client('go');
  h.worker('W1', 1, ['sha256']);
  h.submit('stay', 1, 'sha256', 'running');
  for (let i = 1; i <= 6; i++) {
    h.submit('go', i, 'sha256', `go-${i}`);
    h.submit('stay', 10 + i, 'sha256', `stay-${i}`);
  }
  const rows = (): number => (h.core as unknown as { queues: Map<string, { rows: { size: number } }> }).queues.get('sha256')!.rows.size;
  t.equal(rows(), 12);
  h.lost('go');
  t.match(h.stats(), { queued: 6, inFlight: 1 }, 'the departed client\'s six are no longer counted');
  t.equal(rows(), 12, 'six dead rows against six live ones: left in place, skipped when they reach the head');
  for (let i = 0; i < 7; i++) h.finish(h.sent[h.sent.length - 1]!);
  t.same(h.bodies(), ['running', 'stay-1', 'stay-2', 'stay-3', 'stay-4', 'stay-5', 'stay-6'], 'only the live rows ran, in order');
  t.equal(rows(), 0);

  h.lost('W1');
  h.client('go2');
  for (let i = 1; i <= 5; i++) h.submit('go2', i, 'sha256', `g${i}`);
  h.submit('stay', 30, 'sha256', 'live');
  h.lost('go2');
  t.equal(rows(), 1, 'five dead rows against one live one: swept at once');
  t.match(h.stats(), { queued: 1 });
  h.worker('W2', 4, ['sha256']);
  t.same(h.bodies('W2'), ['live']);
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
  t.equal(h.c('c1').lanes.size, 0, 'no lane left: nothing of c1 is queued');
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
      type: 'sha256',
      code: `E_${i}`,
      message: `boom ${i}`,
      attempts: 1,
      payloadBytes: 2,
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

// ---- 19. seeded simulation -----------------------------------------------------------------------------------
//
// A model of the core's contract, run against the real core through random operations. Deterministic parts
// (settlements, cancels, requeues, peer losses, counters) are predicted as expectations before or at the first
// output of each event and must all be met by the end of each call; which worker gets a task is the core's
// choice, checked against credits, types, order and lease rules when sendTask arrives.

type MState =
  | 'queued' // waiting in its type's queue
  | 'running' // held by `worker` under lease `attempt`
  | 'delayed' // waiting out a retry backoff until `dueAt`
  | 'due' // (inside tick()) backoff over: being put back in the queue
  | 'requeuing' // (inside a call) taken back by a fault, taskRequeued expected
  | 'settling' // (inside a call) its answer to the client is expected
  | 'settled'
  | 'dropped';

interface MTask {
  readonly client: MClient;
  readonly requestId: number;
  readonly type: string;
  /** Submission order within the simulation. */
  readonly order: number;
  readonly bytes: number;
  /** Effective timeout (0: none) and backoff, after the defaults. */
  readonly timeoutMs: number;
  readonly backoffMs: number;
  readonly retries: number;
  state: MState;
  worker: MWorker | null;
  id: number;
  attempt: number;
  faults: number;
  retried: number;
  deadline: number;
  dueAt: number;
  /** The worker it timed out or failed on last, which other workers take it from first. */
  avoid: MWorker | null;
}

interface Lease {
  readonly id: number;
  readonly attempt: number;
  readonly clientGone: boolean;
}

interface MPeerBase {
  readonly name: H;
  alive: boolean;
  /** Its loss has begun inside the current call. */
  leaving: boolean;
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
  /** Slots it may have busy: its concurrency, or more if ready() lowered it below what it held. */
  allowance: number;
  types: string[];
  readonly running: Map<number, MTask>;
  /** Revoked leases by "id:attempt". */
  readonly revoked: Map<string, Lease>;
  /** Revoked leases already answered (answering again is a protocol error). */
  answered: Lease[];
  /** What it held (running and revoked) when it left, to replay stale results. */
  heldAtDeath: { id: number; attempt: number }[];
  /** Whether its hello said its keepalives may wait for a handler. */
  readonly mayBlock: boolean;
  /** Its connection is full: the next sendTask answers false. */
  saturated: boolean;
  /** sendTask answered false: the core must send it nothing until writable(). */
  blocked: boolean;
}

type MPeer = MClient | MWorker;

interface SimConfig {
  deadAfterTicks: number;
  timeoutMs: number;
  maxAttempts: number;
  backoffMs: number;
  maxQueued: number;
  maxPendingPerClient: number;
  maxQueuedBytes: number;
  maxPendingBytesPerClient: number;
  maxConcurrency: number;
  deadLetterLimit: number;
  strategy: Strategy;
}

interface Totals {
  steps: number;
  submitted: number;
  dispatched: number;
  completed: number;
  failed: number;
  requeued: number;
  retried: number;
  timedOut: number;
  attemptsExhausted: number;
  late: number;
  discarded: number;
  cancelled: number;
  rejected: number;
  heartbeatDrops: number;
  protocolErrors: number;
  workersLost: number;
  clientsLost: number;
  drainedSeeds: number;
  shutdowns: number;
  deadLettersDropped: number;
  maxQueued: number;
  /** Queued tasks seen waiting while avoiding the worker they last failed on, summed over checks. */
  avoidedWaits: number;
  /** Dispatches of a task to another worker than the one it last timed out or failed on. */
  avoidedDispatches: number;
  byteRefusals: number;
  cappedCredits: number;
  blockedWorkers: number;
  tooLarge: number;
  /** Known core issue: a younger timed-out task re-dispatched while an older one of the same tick waits. */
  timeoutOrderInversions: number;
  firstInversion: string;
}

class Violation extends Error {}

const SIM_TYPES: readonly (readonly string[])[] = [['x'], ['y'], ['x', 'y'], ['y', 'x']];

function simulate(seed: number, steps: number, totals: Totals): string | null {
  const rnd = mulberry32(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const pick = <T>(items: readonly T[]): T | undefined => (items.length ? items[int(items.length)] : undefined);
  const cfg: SimConfig = {
    deadAfterTicks: 2 + (seed % 2),
    timeoutMs: [0, 1500, 4000, 300_000][int(4)]!,
    maxAttempts: 1 + int(4),
    backoffMs: [200, 1000][int(2)]!,
    maxQueued: rnd() < 0.5 ? CORE_DEFAULTS.maxQueued : 6 + int(15),
    maxPendingPerClient: rnd() < 0.5 ? CORE_DEFAULTS.maxPendingPerClient : 3 + int(8),
    maxQueuedBytes: rnd() < 0.6 ? CORE_DEFAULTS.maxQueuedBytes : 60 + int(200),
    maxPendingBytesPerClient: rnd() < 0.6 ? CORE_DEFAULTS.maxPendingBytesPerClient : 40 + int(120),
    maxConcurrency: rnd() < 0.7 ? CORE_DEFAULTS.maxConcurrency : 1 + int(3),
    deadLetterLimit: [1, 5, 1000][int(3)]!,
    // Odd seeds one strategy, even the other: no draw from rnd, so the seeds' other choices stay as they were.
    strategy: seed % 2 === 1 ? 'round-robin' : 'least-loaded',
  };
  const drainAt = rnd() < 0.2 ? 250 + int(150) : Infinity;
  let step = 0;
  let phase = 'setup';
  const violate = (message: string): never => {
    throw new Violation(`seed ${seed} step ${step} [${phase}] ${JSON.stringify(cfg)}: ${message}`);
  };

  const clients: MClient[] = [];
  const workers: MWorker[] = [];
  const peers = new Map<H, MPeer>();
  const settleCount = new Map<string, number>();
  const lastFirstDispatch = new Map<string, number>();
  const model = {
    submitted: 0, dispatched: 0, completed: 0, failed: 0, requeued: 0, retried: 0,
    timedOut: 0, rejected: 0, late: 0, discarded: 0,
  };
  const dead: DeadLetter[] = [];
  let draining = false;
  let order = 0;
  let now = 0;
  let calls = 0;

  // ---- expectations, met by the outputs of the current call ----
  interface ExpectedSettle { ok: boolean; code: string; message: string; body: Buffer | null; then: () => void }
  const expSettle = new Map<string, ExpectedSettle>();
  const expRequeue = new Map<MTask, { from: MWorker; reason: string; then: () => void }>();
  const expCancel = new Map<string, { code: string; message: string; then: () => void }>();
  /** Peers the current call is expected to lose, with the reason. */
  const pendingLoss = new Map<MPeer, string>();
  /** The loss in progress: it starts with the first output about the peer and ends with peerLeft. */
  let loss: { peer: MPeer; reason: string; open: number; requeued: number; lastOrder: number } | null = null;
  /** Inside heartbeat(): peers in the order the core visits them, decided one by one as their output arrives. */
  let beat: { order: MPeer[]; cursor: number; decided: Map<MPeer, 'keepalive' | 'close'>; closed: Set<MPeer> } | null = null;
  /** Inside tick(): running tasks due to time out, and the timed-out tasks requeued / re-dispatched. */
  let dueTimeouts: Set<MTask> | null = null;
  /** What a worker is told when a task is withdrawn because its client left. */
  let cancelMessage = 'the task was cancelled: its client disconnected';
  let tickRequeued: MTask[] = [];
  let tickRedispatched: MTask[] = [];

  const peerOf = (handle: H): MPeer => peers.get(handle) ?? violate(`unknown peer ${handle}`);
  const clientOf = (handle: H): MClient => {
    const p = peerOf(handle);
    return p.kind === 'client' ? p : violate(`${handle} is not a client`);
  };
  const workerOf = (handle: H): MWorker => {
    const p = peerOf(handle);
    return p.kind === 'worker' ? p : violate(`${handle} is not a worker`);
  };
  const keyOf = (m: MTask): string => `${m.client.name}:${m.requestId}`;
  const alive = <T extends MPeerBase>(list: T[]): T[] => list.filter((p) => p.alive);
  const busy = (w: MWorker): number => w.running.size + w.revoked.size;
  const queuedCount = (): number => {
    let n = 0;
    for (const c of clients) if (c.alive) for (const m of c.pending.values()) if (m.state === 'queued') n++;
    return n;
  };
  const queuedBytes = (): number => {
    let n = 0;
    for (const c of clients) if (c.alive) for (const m of c.pending.values()) if (m.state === 'queued') n += m.bytes;
    return n;
  };
  /**
   * Whether worker x may take task o now: not if o timed out or failed on x last while another worker with
   * credits to give runs its type (that one gets it first).
   */
  const mayTake = (x: MWorker, o: MTask): boolean =>
    o.avoid !== x || !workers.some((y) => y !== x && y.alive && !y.leaving && y.concurrency > 0 && y.types.includes(o.type));
  /** A worker stopped announcing its types (or left): tasks that avoided it are open to all again. */
  const forgetAvoidance = (w: MWorker): void => {
    for (const c of clients) for (const m of c.pending.values()) if (m.state === 'queued' && m.avoid === w) m.avoid = null;
  };

  /** Every expectation of the call was met. */
  const done = (what: string): void => {
    const missing = [
      ...[...expSettle.keys()].map((k) => `answer to ${k}`),
      ...[...expRequeue.keys()].map((m) => `taskRequeued ${keyOf(m)}`),
      ...[...expCancel.keys()].map((k) => `cancel ${k}`),
      ...[...pendingLoss.keys()].map((p) => `loss of ${p.name}`),
      ...(loss ? [`end of the loss of ${loss.peer.name}`] : []),
    ];
    if (missing.length) violate(`${what}: expected output missing: ${missing.join(', ')}`);
  };

  const settleTask = (m: MTask): void => {
    m.state = 'settled';
    m.worker = null;
    m.client.pending.delete(m.requestId);
  };

  const deadLetter = (m: MTask, code: string, message: string): void => {
    if (dead.length >= cfg.deadLetterLimit) {
      dead.shift();
      totals.deadLettersDropped++;
    }
    dead.push({ taskId: m.id, type: m.type, code, message, attempts: m.attempt, payloadBytes: m.bytes, failedAt: now });
  };

  /** The task's final failure to its client (handler failure without retries left, or E_ATTEMPTS). */
  const expectFailure = (m: MTask, code: string, message: string, then?: () => void): void => {
    m.state = 'settling';
    expSettle.set(keyOf(m), {
      ok: false, code, message, body: null,
      then: () => {
        model.failed++;
        deadLetter(m, code, message);
        settleTask(m);
        then?.();
      },
    });
  };

  /** A fault ended the task's lease (m.faults already counted): requeue, or E_ATTEMPTS at maxAttempts. */
  const fault = (m: MTask, from: MWorker, reason: string, then: () => void): void => {
    m.worker = null;
    if (m.faults >= cfg.maxAttempts) {
      expectFailure(m, ErrorCode.ATTEMPTS, `gave up after ${m.faults} attempts; last: ${reason}`, () => {
        totals.attemptsExhausted++;
        then();
      });
    } else {
      m.state = 'requeuing';
      expRequeue.set(m, {
        from, reason,
        then: () => {
          m.state = 'queued';
          model.requeued++;
          then();
        },
      });
    }
  };

  /** Inside heartbeat(), the core reached peer p: decide as it does, from the state at this moment. */
  const decide = (p: MPeer): void => {
    if (!beat || beat.decided.has(p)) return;
    const at = beat.order.indexOf(p);
    if (at < beat.cursor) violate(`heartbeat: output for ${p.name} after it was passed`);
    if (at > beat.cursor) violate(`heartbeat: no keepalive or close for ${beat.order[beat.cursor]!.name}`);
    beat.cursor++;
    // A silent worker is excused while it runs tasks that all have a timeout (which bounds the wait).
    const excused = p.kind === 'worker' && p.mayBlock && p.running.size > 0 && [...p.running.values()].every((m) => m.timeoutMs > 0);
    if (p.active || excused) {
      p.active = false;
      p.missed = 0;
      beat.decided.set(p, 'keepalive');
    } else if (++p.missed >= cfg.deadAfterTicks) {
      beat.decided.set(p, 'close');
      pendingLoss.set(p, `no frame for ${p.missed} keepalive intervals`);
    } else {
      beat.decided.set(p, 'keepalive');
    }
  };

  /** An output about peer p arrived: if the call is to lose p, its loss begins now, from the current state. */
  const touch = (p: MPeer): void => {
    decide(p);
    if (loss?.peer === p) return;
    const reason = pendingLoss.get(p);
    if (reason === undefined) return;
    if (loss) violate(`the loss of ${p.name} began inside the loss of ${loss.peer.name}`);
    pendingLoss.delete(p);
    const current = { peer: p, reason, open: 0, requeued: 0, lastOrder: -1 };
    loss = current;
    p.leaving = true;
    if (p.kind === 'worker') {
      totals.workersLost++;
      forgetAvoidance(p);
      const held = [...p.running.values()].sort((a, b) => a.order - b.order);
      p.heldAtDeath = [...held.map((m) => ({ id: m.id, attempt: m.attempt })), ...p.revoked.values()];
      p.running.clear();
      p.revoked.clear();
      for (const m of held) {
        m.faults++;
        current.open++;
        fault(m, p, `worker ${p.name} was lost: ${reason}`, () => {
          // The held tasks are requeued or failed in submission order, all before peerLeft.
          if (m.order < current.lastOrder) violate(`${p.name} lost: ${keyOf(m)} handled out of submission order`);
          current.lastOrder = m.order;
          current.open--;
          if (m.state === 'queued') current.requeued++;
        });
      }
    } else {
      totals.clientsLost++;
      for (const m of p.pending.values()) {
        if (m.state === 'running') {
          const w = m.worker!;
          w.running.delete(m.id);
          const lease = `${m.id}:${m.attempt}`;
          w.revoked.set(lease, { id: m.id, attempt: m.attempt, clientGone: true });
          current.open++;
          expCancel.set(`${w.name}:${lease}`, {
            code: ErrorCode.CANCELLED,
            message: cancelMessage,
            then: () => {
              current.open--;
              totals.cancelled++;
            },
          });
        } else if (m.state !== 'queued' && m.state !== 'delayed') {
          violate(`${p.name} lost with ${keyOf(m)} ${m.state}`);
        }
        m.state = 'dropped';
        m.worker = null;
      }
      p.pending.clear();
    }
  };

  const answer = (client: ClientRecord<H>, requestId: number, ok: boolean, code: string, message: string, body: Buffer | null): void => {
    calls++;
    const c = clientOf(client.handle);
    const key = `${c.name}:${requestId}`;
    const m = c.pending.get(requestId);
    if (code === ErrorCode.ATTEMPTS && m?.state === 'running' && m.worker) touch(m.worker); // may begin a worker's loss
    if (!c.alive || c.leaving) violate(`answer to departed client ${c.name}`);
    const count = (settleCount.get(key) ?? 0) + 1;
    settleCount.set(key, count);
    if (count > 1) violate(`request ${key} settled ${count} times`);
    const e = expSettle.get(key) ?? violate(`unexpected ${ok ? 'completion' : `failure ${code} (${message})`} of ${key}`);
    expSettle.delete(key);
    if (e.ok !== ok || (ok ? !body!.equals(e.body!) : e.code !== code || e.message !== message)) {
      violate(`${key} answered ${ok ? 'ok' : `${code} (${message})`}, expected ${e.ok ? 'ok' : `${e.code} (${e.message})`}`);
    }
    e.then();
  };

  const output: CoreOutput<H, BodyRange> = {
    sendTask(worker, task) {
      calls++;
      const w = workerOf(worker.handle);
      if (!w.alive || w.leaving) violate(`task sent to departed worker ${w.name}`);
      if (w.blocked) violate(`task sent to ${w.name}, whose connection is full`);
      if (busy(w) >= w.concurrency) {
        violate(`${w.name} over its credits: dispatch with ${w.running.size} running + ${w.revoked.size} revoked, concurrency ${w.concurrency}`);
      }
      if (!w.types.includes(task.type)) violate(`${w.name} (${w.types.join(',')}) got a ${task.type} task`);
      if (!task.client) violate('dispatched a task whose client has left');
      const c = clientOf(task.client!.handle);
      if (!c.alive || c.leaving) violate(`dispatched a task of departed client ${c.name}`);
      const m = c.pending.get(task.requestId) ?? violate(`dispatched unknown request ${c.name}:${task.requestId}`);
      if (m.state !== 'queued' && m.state !== 'due') violate(`dispatched ${keyOf(m)} while ${m.state}`);
      if (task.attempt !== m.attempt + 1) violate(`attempt ${task.attempt} after ${m.attempt}`);
      if (task.attempt > cfg.maxAttempts + m.retries) violate(`${keyOf(m)} dispatched ${task.attempt} times (retries ${m.retries})`);
      if (m.attempt === 0) {
        const last = lastFirstDispatch.get(m.type) ?? -1;
        if (m.order < last) violate(`first attempts of ${m.type} out of submission order (${m.order} after ${last})`);
        lastFirstDispatch.set(m.type, m.order);
      } else if (task.id !== m.id) {
        violate(`task id changed from ${m.id} to ${task.id} on requeue`);
      }
      if (!mayTake(w, m)) violate(`${keyOf(m)} went back to ${w.name}, where it last failed, while another worker runs ${m.type}`);
      // Queues are FIFO by submission: nothing older of its type is waiting that this worker may take.
      for (const other of clients) {
        if (!other.alive) continue;
        for (const o of other.pending.values()) {
          if (o.state === 'queued' && o.type === m.type && o.order < m.order && mayTake(w, o)) {
            violate(`${keyOf(m)} dispatched to ${w.name} before the older ${keyOf(o)}`);
          }
        }
      }
      if (w.running.has(task.id)) violate(`task id ${task.id} already running on ${w.name}`);
      if (w.revoked.has(`${task.id}:${task.attempt}`)) violate(`lease ${task.id}:${task.attempt} reused on ${w.name}`);
      m.id = task.id;
      m.attempt = task.attempt;
      if (m.avoid && m.avoid !== w) totals.avoidedDispatches++;
      m.avoid = null;
      m.state = 'running';
      m.worker = w;
      m.deadline = m.timeoutMs > 0 ? now + m.timeoutMs : Infinity;
      w.running.set(task.id, m);
      model.dispatched++;
      if (tickRequeued.includes(m)) tickRedispatched.push(m);
      if (!w.saturated) return true;
      w.blocked = true;
      totals.blockedWorkers++;
      return false;
    },
    sendCancel(worker, taskId, attempt, code, message) {
      calls++;
      const w = workerOf(worker.handle);
      const lease = `${taskId}:${attempt}`;
      const m = w.running.get(taskId);
      if (code === ErrorCode.CANCELLED && m) touch(m.client);
      if (code === ErrorCode.TIMEOUT) {
        // tick(): a running task whose deadline passed is taken back, then requeued or failed.
        if (!dueTimeouts) violate(`cancel E_TIMEOUT of ${w.name}:${lease} outside tick()`);
        if (!m || m.attempt !== attempt || !dueTimeouts!.delete(m)) {
          violate(`cancel E_TIMEOUT of ${w.name}:${lease}, which is not due (deadline ${m?.deadline}, now ${now})`);
        }
        const t = m!;
        const reason = `timed out after ${t.timeoutMs} ms on worker ${w.name}`;
        w.running.delete(taskId);
        w.revoked.set(lease, { id: taskId, attempt, clientGone: false });
        t.faults++;
        model.timedOut++;
        expCancel.set(`${w.name}:${lease}`, { code, message: reason, then: () => {} });
        fault(t, w, reason, () => {
          t.avoid = w;
          if (t.state === 'queued') tickRequeued.push(t);
        });
      }
      if (!w.alive || w.leaving) violate(`cancel sent to departed worker ${w.name}`);
      const e = expCancel.get(`${w.name}:${lease}`) ?? violate(`unexpected cancel ${code} of ${w.name}:${lease} (${message})`);
      expCancel.delete(`${w.name}:${lease}`);
      if (e.code !== code || e.message !== message) {
        violate(`cancel of ${w.name}:${lease}: ${code} (${message}), expected ${e.code} (${e.message})`);
      }
      e.then();
    },
    sendCompleted(client, requestId, body) {
      answer(client, requestId, true, '', '', bodyOf(body));
    },
    sendFailed(client, requestId, code, message) {
      answer(client, requestId, false, code, message, null);
    },
    sendKeepalive(peer) {
      calls++;
      const p = peerOf(peer.handle);
      if (!beat) violate(`keepalive to ${p.name} outside heartbeat()`);
      decide(p);
      if (beat!.decided.get(p) !== 'keepalive') violate(`keepalive to ${p.name}, which should have been dropped`);
      if (!p.alive || p.leaving) violate(`keepalive to departed ${p.name}`);
    },
    closePeer(peer, error) {
      calls++;
      const p = peerOf(peer.handle);
      if (!beat) violate(`closePeer(${p.name}) outside heartbeat()`);
      if (!(error instanceof TaskwireError) || error.code !== ErrorCode.TIMEOUT) violate(`closePeer(${p.name}) without E_TIMEOUT`);
      if (beat!.decided.get(p) !== 'close') violate(`unexpected close of ${p.name}`);
      if (p.alive) violate(`closePeer(${p.name}) before the core forgot it`);
      if (beat!.closed.has(p)) violate(`${p.name} closed twice`);
      beat!.closed.add(p);
      totals.heartbeatDrops++;
    },
    taskQueued(_taskId, _type, client, requestId) {
      calls++;
      const m = clientOf(client.handle).pending.get(requestId);
      if (!m || m.state !== 'queued' || m.attempt !== 0) violate('taskQueued for a task that is not newly queued');
    },
    taskRequeued(task, worker, reason) {
      calls++;
      const w = workerOf(worker.handle);
      touch(w);
      const c = task.client ? clientOf(task.client.handle) : violate(`taskRequeued without a client (${reason})`);
      const m = c.pending.get(task.requestId) ?? violate(`taskRequeued for unknown request ${c.name}:${task.requestId}`);
      const e = expRequeue.get(m) ?? violate(`unexpected taskRequeued of ${keyOf(m)} from ${w.name}: ${reason}`);
      expRequeue.delete(m);
      if (e.from !== w || e.reason !== reason) {
        violate(`taskRequeued of ${keyOf(m)} from ${w.name} (${reason}), expected from ${e.from.name} (${e.reason})`);
      }
      if (task.attempt !== m.attempt) violate(`taskRequeued of ${keyOf(m)} with attempt ${task.attempt}, model ${m.attempt}`);
      e.then();
    },
    taskDispatched() {
      calls++;
    },
    taskCompleted() {
      calls++;
    },
    taskFailed() {
      calls++;
    },
    peerLeft(peer, reason, requeued) {
      calls++;
      const p = peerOf(peer.handle);
      touch(p);
      if (!loss || loss.peer !== p) violate(`peerLeft for ${p.name}, which was not to be lost`);
      if (reason !== loss!.reason) violate(`peerLeft for ${p.name}: reason ${reason}, expected ${loss!.reason}`);
      if (loss!.open !== 0) violate(`peerLeft for ${p.name} before ${loss!.open} of its tasks were handled`);
      if (requeued !== loss!.requeued) violate(`peerLeft for ${p.name}: requeued ${requeued}, model ${loss!.requeued}`);
      p.alive = false;
      p.leaving = false;
      loss = null;
    },
  };

  const core = new SchedulerCore<H, BodyRange>(output, cfg);

  const seen = (p: MPeer): void => {
    core.seen(p.rec);
    p.active = true;
  };

  const ready = (w: MWorker, concurrency: number, types: readonly string[]): void => {
    seen(w);
    const capped = Math.min(concurrency, cfg.maxConcurrency);
    if (capped < concurrency) totals.cappedCredits++;
    w.concurrency = capped;
    w.allowance = Math.max(capped, busy(w));
    const same = w.types.length === types.length && w.types.every((type, i) => type === types[i]);
    if (!same) forgetAvoidance(w);
    w.types = [...new Set(types)];
    core.ready(w.rec, concurrency, types);
    done('ready');
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

  const stateOf: Partial<Record<MState, TaskState>> = { queued: TaskState.QUEUED, running: TaskState.RUNNING, delayed: TaskState.DELAYED };

  const check = (): void => {
    const s = core.stats();
    let queued = 0;
    let running = 0;
    let delayed = 0;
    const queuedTasks: MTask[] = [];
    let queuedBytesTotal = 0;
    const held = new Set<MTask>();
    const liveTypes = new Set<string>();
    for (const w of workers) {
      if (!w.alive) continue;
      for (const type of w.types) liveTypes.add(type);
      const b = busy(w);
      if (b > w.allowance) violate(`${w.name} has ${b} busy slots, concurrency ${w.concurrency}`);
      if (w.rec.running.size !== w.running.size) violate(`${w.name} runs ${w.rec.running.size} tasks, model ${w.running.size}`);
      if (w.rec.revoked.size !== w.revoked.size) violate(`${w.name} has ${w.rec.revoked.size} revoked leases, model ${w.revoked.size}`);
      for (const [key, lease] of w.revoked) {
        const clientGone = w.rec.revoked.get(key);
        if (clientGone !== lease.clientGone) violate(`${w.name} revoked lease ${key}: ${clientGone}, model ${lease.clientGone}`);
      }
      for (const m of w.running.values()) {
        if (held.has(m)) violate(`task ${keyOf(m)} held twice`);
        held.add(m);
        if (m.worker !== w || m.state !== 'running') violate(`bad running task ${keyOf(m)} on ${w.name}`);
        if (!m.client.alive) violate(`${w.name} runs ${keyOf(m)} of a departed client`);
        running++;
      }
    }
    for (const c of clients) {
      if (!c.alive) {
        if (c.pending.size) violate(`departed ${c.name} has pending tasks`);
        continue;
      }
      const tasks = new Map(core.tasksOf(c.rec).map((task) => [task.requestId, task]));
      if (c.rec.pending !== c.pending.size || tasks.size !== c.pending.size) {
        violate(`${c.name} has ${c.rec.pending} unsettled tasks in the core (${tasks.size} found), model ${c.pending.size}`);
      }
      for (const m of c.pending.values()) {
        // Exactly one place: the model's state, the core's record of it, and where it is held all agree.
        const task = tasks.get(m.requestId);
        const expected = stateOf[m.state];
        if (!task || expected === undefined || task.state !== expected) {
          violate(`${keyOf(m)}: core state ${task?.state}, model ${m.state}`);
        }
        const dispatches = m.faults + m.retried + (m.state === 'running' ? 1 : 0);
        if (task!.attempt !== m.attempt || m.attempt !== dispatches) {
          violate(`${keyOf(m)}: attempt ${task!.attempt}, model ${m.attempt}, faults ${m.faults} + retries ${m.retried}`);
        }
        if (m.faults >= cfg.maxAttempts || m.retried > m.retries) violate(`${keyOf(m)} alive after ${m.faults} faults and ${m.retried} retries`);
        if (m.state === 'queued') {
          queued++;
          queuedBytesTotal += m.bytes;
          queuedTasks.push(m);
          if (m.avoid) totals.avoidedWaits++;
          liveTypes.add(m.type);
          if (task!.worker !== null) violate(`queued ${keyOf(m)} has a worker`);
        } else if (m.state === 'running') {
          if (!m.worker?.alive || !held.has(m)) violate(`task ${keyOf(m)} running on no live worker`);
          if (task!.worker !== m.worker!.rec || m.worker!.rec.running.get(m.id) !== task) {
            violate(`${keyOf(m)} is not on ${m.worker!.name} in the core`);
          }
          if (m.timeoutMs > 0 && task!.deadline !== m.deadline) violate(`${keyOf(m)} deadline ${task!.deadline}, model ${m.deadline}`);
        } else {
          delayed++;
          if (m.dueAt <= now) violate(`${keyOf(m)} still delayed at ${now}, due at ${m.dueAt}`);
        }
      }
    }
    if (held.size !== running) violate('a running task belongs to no live client');
    const counts: [keyof CoreStats, number][] = [
      ['queued', queued], ['queuedBytes', queuedBytesTotal], ['inFlight', running], ['delayed', delayed],
      ['workers', alive(workers).length], ['clients', alive(clients).length], ['deadLetters', dead.length],
      ...(Object.entries(model) as [keyof CoreStats, number][]),
    ];
    for (const [k, v] of counts) if (s[k] !== v) violate(`stats().${k} ${s[k]}, model ${v}`);
    if (core.unsettled !== queued + running + delayed) violate(`unsettled ${core.unsettled}`);
    if (core.now !== now) violate(`core.now ${core.now}, model ${now}`);
    if (core.queueCount !== liveTypes.size) violate(`queueCount ${core.queueCount}, expected ${liveTypes.size} (${[...liveTypes].join(',')})`);
    // Work conservation: no worker has a free slot while a task of one of its types waits.
    for (const w of workers) {
      if (!w.alive || w.blocked || busy(w) >= w.concurrency) continue;
      for (const o of queuedTasks) {
        if (w.types.includes(o.type) && mayTake(w, o)) violate(`${w.name} has ${w.concurrency - busy(w)} free slots while ${keyOf(o)} (${o.type}) waits`);
      }
    }
    totals.maxQueued = Math.max(totals.maxQueued, queued);
  };

  const checkDeadLetters = (): void => {
    const got = JSON.stringify(core.deadLetters());
    if (got !== JSON.stringify(dead)) violate(`deadLetters() ${got}, model ${JSON.stringify(dead)}`);
  };

  const lose = (p: MPeer): void => {
    pendingLoss.set(p, 'simulated loss');
    core.lost(p.rec, 'simulated loss');
    done(`lost(${p.name})`);
    if (p.alive) violate(`lost(${p.name}) did not report peerLeft`);
    const after = calls;
    core.lost(p.rec, 'again');
    if (calls !== after) violate(`second lost(${p.name}) produced output`);
  };

  type Action = [weight: number, name: string, run: () => void];
  const actions: Action[] = [
    [5, 'addClient', () => {
      if (alive(clients).length >= 4) return;
      const name = `c${clients.length + 1}`;
      const c: MClient = {
        kind: 'client', name, rec: core.addClient(name, name), alive: true, leaving: false, active: true, missed: 0,
        nextRequest: 1, pending: new Map(),
      };
      clients.push(c);
      peers.set(name, c);
    }],
    [5, 'addWorker', () => {
      if (alive(workers).length >= 4) return;
      const name = `w${workers.length + 1}`;
      const mayBlock = rnd() < 0.7; // its keepalives may wait for a handler: silence while it runs tasks is excused
      const w: MWorker = {
        kind: 'worker', name, rec: core.addWorker(name, name, mayBlock), mayBlock, alive: true, leaving: false, active: true, missed: 0,
        concurrency: 0, allowance: 0, types: [], running: new Map(), revoked: new Map(), answered: [], heldAtDeath: [],
        saturated: false, blocked: false,
      };
      workers.push(w);
      peers.set(name, w);
      if (rnd() < 0.8) ready(w, 1 + int(4), pick(SIM_TYPES)!);
    }],
    [28, 'submit', () => {
      const c = pick(alive(clients));
      if (!c) return;
      seen(c);
      const requestId = c.nextRequest;
      c.nextRequest += 1 + int(3);
      const r = rnd();
      const type = r < 0.45 ? 'x' : r < 0.9 ? 'y' : 'z'; // nobody ever runs z
      const body = Buffer.from(`${c.name}/${requestId}${'.'.repeat(rnd() < 0.3 ? int(60) : 0)}`);
      let options: SubmitOptions | undefined;
      if (rnd() < 0.8) {
        options = {};
        const t = rnd();
        if (t < 0.45) options.timeoutMs = [300, 800, 1500, 3000, 6000][int(5)]!;
        else if (t < 0.6) options.timeoutMs = 0;
        if (rnd() < 0.45) options.retries = 1 + int(3); // 3 tells an exponential backoff from a linear one
        if (rnd() < 0.3) options.backoffMs = [100, 500, 2500][int(3)]!;
      }
      const key = `${c.name}:${requestId}`;
      const refuse = (code: string, message: string): void => {
        expSettle.set(key, { ok: false, code, message, body: null, then: () => model.rejected++ });
      };
      const queuedNow = queuedCount();
      const queuedBytesNow = queuedBytes();
      const pendingBytes = [...c.pending.values()].reduce((sum, m) => sum + m.bytes, 0);
      // maxQueued only refuses a task that would have to wait: one a worker can take at once is accepted.
      const mustQueue = !workers.some((w) => w.alive && !w.blocked && w.types.includes(type) && busy(w) < w.concurrency);
      if (draining) refuse(ErrorCode.SHUTDOWN, 'the scheduler is shutting down');
      else if (c.pending.size >= cfg.maxPendingPerClient) {
        refuse(ErrorCode.TOO_MANY_PENDING, `this client already has ${c.pending.size} unsettled tasks (maxPendingPerClient)`);
      } else if (pendingBytes + body.length > cfg.maxPendingBytesPerClient) {
        refuse(
          ErrorCode.TOO_MANY_PENDING,
          `this client's unsettled tasks hold ${pendingBytes} bytes; ${body.length} more would pass maxPendingBytesPerClient (${cfg.maxPendingBytesPerClient})`,
        );
      } else if (mustQueue && queuedNow >= cfg.maxQueued) {
        refuse(ErrorCode.QUEUE_FULL, `the queue is full: ${queuedNow} tasks waiting (maxQueued)`);
      } else if (mustQueue && queuedBytesNow + body.length > cfg.maxQueuedBytes) {
        refuse(
          ErrorCode.QUEUE_FULL,
          `the queue is full: its tasks hold ${queuedBytesNow} bytes; ${body.length} more would pass maxQueuedBytes (${cfg.maxQueuedBytes})`,
        );
        totals.byteRefusals++;
      } else {
        const m: MTask = {
          client: c, requestId, type, order: order++, bytes: body.length,
          timeoutMs: options?.timeoutMs || cfg.timeoutMs, backoffMs: options?.backoffMs || cfg.backoffMs,
          retries: options?.retries ?? 0, state: 'queued', worker: null, id: -1, attempt: 0, faults: 0, retried: 0,
          deadline: Infinity, dueAt: Infinity, avoid: null,
        };
        c.pending.set(requestId, m);
        model.submitted++;
      }
      core.submit(c.rec, requestId, type, view(body), options);
      done('submit');
    }],
    [26, 'result', () => {
      const candidates: MTask[] = [];
      for (const w of workers) if (w.alive) candidates.push(...w.running.values());
      const m = pick(candidates);
      if (!m) return;
      const w = m.worker!;
      seen(w);
      const r = rnd();
      if (r < 0.12) {
        const other = pick(alive(workers).filter((x) => x !== w));
        const ok: Outcome = { ok: true, ...bytes('stale') };
        if (r < 0.04) {
          let attempt = m.attempt > 1 && rnd() < 0.5 ? m.attempt - 1 : m.attempt + 1 + int(2);
          if (w.revoked.has(`${m.id}:${attempt}`)) attempt = m.attempt + 1; // that one would be a late result
          inert('result with a wrong attempt', true, () => core.result(w.rec, m.id, attempt, ok));
        } else if (r < 0.07 && other) {
          inert('result from a worker that does not hold the task', true, () => core.result(other.rec, m.id, m.attempt, ok));
        } else if (r < 0.1 && w.answered.length) {
          const lease = pick(w.answered)!;
          inert('second result for a revoked lease', true, () => core.result(w.rec, lease.id, lease.attempt, ok));
        } else {
          inert('result for an unknown task id', true, () => core.result(w.rec, 0x7fff0000 + int(1000), 1, ok));
        }
        return;
      }
      const success = rnd() < 0.75;
      const outcome: Outcome = success
        ? { ok: true, ...bytes(`ok ${keyOf(m)}/${m.attempt}`) }
        : { ok: false, code: rnd() < 0.5 ? ErrorCode.HANDLER : 'E_CUSTOM', message: `boom ${keyOf(m)}/${m.attempt}` };
      w.running.delete(m.id); // the slot is free before the core refills the worker
      m.worker = null;
      if (outcome.ok) {
        m.state = 'settling';
        expSettle.set(keyOf(m), { ok: true, code: '', message: '', body: bodyOf(outcome), then: () => { model.completed++; settleTask(m); } });
      } else if (m.retried < m.retries) {
        m.retried++;
        const delay = m.backoffMs * 2 ** (m.retried - 1);
        m.state = 'delayed';
        m.avoid = w;
        m.dueAt = now + delay;
        model.retried++;
        expRequeue.set(m, { from: w, reason: `handler failed (${outcome.message}); retry ${m.retried} in ${delay} ms`, then: () => {} });
      } else {
        expectFailure(m, outcome.code, outcome.message);
      }
      const err = core.result(w.rec, m.id, m.attempt, outcome);
      if (err) violate(`valid result refused: ${err.message}`);
      done('result');
    }],
    [10, 'lateResult', () => {
      const w = pick(alive(workers).filter((x) => x.revoked.size > 0));
      if (!w) return;
      seen(w);
      const [key, lease] = pick([...w.revoked])!;
      w.revoked.delete(key);
      w.answered.push(lease);
      if (w.answered.length > 8) w.answered.shift();
      if (lease.clientGone) model.discarded++;
      else model.late++;
      const outcome: Outcome =
        rnd() < 0.7 ? { ok: true, ...bytes('late') } : { ok: false, code: ErrorCode.HANDLER, message: 'late boom' };
      const err = core.result(w.rec, lease.id, lease.attempt, outcome);
      if (err) violate(`result for revoked lease ${key} refused: ${err.message}`);
      done('late result');
    }],
    [2, 'staleResultFromDepartedWorker', () => {
      const w = pick(workers.filter((x) => !x.alive && x.heldAtDeath.length > 0));
      if (!w) return;
      const held = pick(w.heldAtDeath)!;
      inert('result from a departed worker', false, () => core.result(w.rec, held.id, held.attempt, { ok: true, ...bytes('late') }));
    }],
    [1, 'submitFromDepartedClient', () => {
      const c = pick(clients.filter((x) => !x.alive));
      if (!c) return;
      inert('submit from a departed client', false, () => (core.submit(c.rec, 1, 'x', view('late')), null));
    }],
    [4, 'workerLost', () => {
      const w = pick(alive(workers));
      if (w) lose(w);
    }],
    [3, 'clientLost', () => {
      const c = pick(alive(clients));
      if (c) lose(c);
    }],
    [6, 'ready', () => {
      const w = pick(alive(workers));
      if (!w) return;
      const types = w.types.length === 0 || rnd() < 0.3 ? pick(SIM_TYPES)! : w.types;
      ready(w, int(5), types);
    }],
    [7, 'heartbeat', () => {
      const order = [...alive(clients), ...alive(workers)]; // the core visits clients, then workers, oldest first
      for (const p of order) if (rnd() < 0.7) seen(p);
      beat = { order, cursor: 0, decided: new Map(), closed: new Set() };
      core.heartbeat();
      const b = beat;
      beat = null;
      if (b.cursor !== order.length) violate(`heartbeat: no keepalive or close for ${order[b.cursor]!.name}`);
      for (const [p, what] of b.decided) if (what === 'close' && !b.closed.has(p)) violate(`heartbeat: ${p.name} lost but not closed`);
      done('heartbeat');
    }],
    [12, 'tick', () => {
      const r = rnd();
      now += r < 0.7 ? int(700) : r < 0.95 ? 700 + int(2500) : 3000 + int(8000);
      dueTimeouts = new Set();
      for (const w of workers) if (w.alive) for (const m of w.running.values()) if (m.deadline <= now) dueTimeouts.add(m);
      for (const c of clients) {
        if (!c.alive) continue;
        for (const m of c.pending.values()) {
          if (m.state !== 'delayed' || m.dueAt > now) continue;
          m.state = 'due';
          const w = m.avoid;
          if (w && !(w.alive && !w.leaving && w.types.includes(m.type))) m.avoid = null;
        }
      }
      tickRequeued = [];
      tickRedispatched = [];
      core.tick(now);
      const missed = dueTimeouts;
      dueTimeouts = null;
      if (missed.size) violate(`tick(${now}): ${[...missed].map(keyOf).join(', ')} not timed out`);
      done(`tick(${now})`);
      for (const c of clients) for (const m of c.pending.values()) if (m.state === 'due') m.state = 'queued';
      // Regression check: a task requeued by this tick's timeouts must not be re-dispatched while an older one
      // of the same type requeued by the same tick still waits.
      for (const d of tickRedispatched) {
        const older = tickRequeued.find((q) => q.state === 'queued' && q.type === d.type && q.order < d.order && mayTake(d.worker!, q));
        if (older) {
          totals.timeoutOrderInversions++;
          totals.firstInversion ||= `seed ${seed} step ${step}: ${keyOf(d)} re-dispatched while the older ${keyOf(older)} waits`;
        }
      }
      tickRequeued = [];
      tickRedispatched = [];
    }],
    [2, 'refuse', () => {
      // The shell refuses a request it could not take (a SUBMIT too large to read or to send on): that request
      // alone is answered, nothing else changes.
      const c = pick(alive(clients));
      if (!c) return;
      const requestId = c.nextRequest++;
      const message = `a SUBMIT of ${1000 + requestId} bytes exceeds maxPayload (1000)`;
      expSettle.set(`${c.name}:${requestId}`, { ok: false, code: ErrorCode.TOO_LARGE, message, body: null, then: () => model.rejected++ });
      core.refuse(c.rec, requestId, ErrorCode.TOO_LARGE, message);
      done('refuse');
      totals.tooLarge++;
    }],
    [4, 'saturate', () => {
      const w = pick(alive(workers));
      if (w) w.saturated = true; // its next task will be the last until it drains
    }],
    [4, 'writable', () => {
      const w = pick(alive(workers).filter((x) => x.saturated || rnd() < 0.2));
      if (!w) return;
      w.saturated = false;
      if (!w.blocked) {
        inert('writable() on a worker that is not blocked', false, () => (core.writable(w.rec), null));
        return;
      }
      w.blocked = false;
      core.writable(w.rec);
      done('writable');
    }],
    [0, 'drain', () => {
      inert('drain()', false, () => {
        core.drain();
        return null;
      });
      draining = true;
      totals.drainedSeeds++;
    }],
  ];
  const totalWeight = actions.reduce((sum, [weight]) => sum + weight, 0);
  const drainAction = actions.find(([, name]) => name === 'drain')!;

  try {
    for (step = 1; step <= steps; step++) {
      let r = rnd() * totalWeight;
      const action = step === drainAt ? drainAction : (actions.find(([weight]) => (r -= weight) < 0) ?? actions.at(-1)!);
      phase = action[1];
      action[2]();
      check();
      if (dead.length && core.stats().deadLetters && (step % 20 === 0 || phase === 'tick')) checkDeadLetters();
    }
    totals.steps += steps;
    checkDeadLetters();
    phase = 'teardown';
    const everyone = [...clients, ...workers].filter((p) => p.alive);
    if (rnd() < 0.3) {
      // shutdown(): every unsettled task fails once with E_SHUTDOWN (not a dead letter), then every peer is lost;
      // the running tasks are withdrawn from their workers on the way.
      phase = 'shutdown';
      for (const c of alive(clients)) {
        for (const m of c.pending.values()) {
          expSettle.set(keyOf(m), { ok: false, code: ErrorCode.SHUTDOWN, message: 'bye', body: null, then: () => model.failed++ });
        }
      }
      for (const p of everyone) pendingLoss.set(p, 'bye');
      cancelMessage = 'the task was cancelled: bye';
      core.shutdown('bye');
      done('shutdown');
      for (const p of everyone) if (p.alive) violate(`${p.name} survived shutdown()`);
      totals.shutdowns++;
      check();
    } else {
      for (let i = everyone.length - 1; i > 0; i--) {
        const j = int(i + 1);
        [everyone[i], everyone[j]] = [everyone[j]!, everyone[i]!];
      }
      for (const p of everyone) {
        lose(p);
        check();
      }
    }
    const callsBefore = calls;
    for (let i = 1; i <= 3; i++) {
      now += 1e7;
      core.tick(now);
      core.heartbeat();
      for (const c of clients) core.submit(c.rec, c.nextRequest++, 'x', view('after the end'));
    }
    if (calls !== callsBefore) violate('output after every peer left');
    check();
    const s = core.stats();
    if (s.queued || s.inFlight || s.delayed || s.workers || s.clients) violate(`after teardown: ${JSON.stringify(s)}`);
    if (core.unsettled !== 0) violate(`unsettled ${core.unsettled} after teardown`);
    if (core.queueCount !== 0) violate(`queueCount ${core.queueCount} after teardown`);
    for (const k of Object.keys(model) as (keyof typeof model)[]) totals[k] += model[k];
  } catch (err) {
    if (err instanceof Violation) return err.message;
    return `seed ${seed} step ${step} [${phase}] ${JSON.stringify(cfg)}: the core threw ${err instanceof Error ? err.stack : String(err)}`;
  }
  return null;
}

t.test('seeded simulation: 300 seeds x 400 random steps keep every invariant', (t) => {
  const totals: Totals = {
    steps: 0, submitted: 0, dispatched: 0, completed: 0, failed: 0, requeued: 0, retried: 0, timedOut: 0, attemptsExhausted: 0,
    late: 0, discarded: 0, cancelled: 0, rejected: 0, heartbeatDrops: 0, protocolErrors: 0, workersLost: 0,
    clientsLost: 0, drainedSeeds: 0, shutdowns: 0, deadLettersDropped: 0, maxQueued: 0, avoidedWaits: 0, avoidedDispatches: 0,
    byteRefusals: 0, cappedCredits: 0, blockedWorkers: 0, tooLarge: 0, timeoutOrderInversions: 0, firstInversion: '',
  };
  const start = performance.now();
  const cpu = process.cpuUsage();
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
  const least: [keyof Totals, number][] = [
    ['dispatched', 10_000], ['completed', 5_000], ['failed', 1_000], ['requeued', 1_000], ['retried', 800],
    ['timedOut', 1_000], ['attemptsExhausted', 200], ['late', 1_000], ['discarded', 100], ['cancelled', 100],
    ['rejected', 200], ['heartbeatDrops', 150], ['protocolErrors', 1_000], ['workersLost', 1_000], ['clientsLost', 1_000],
    ['drainedSeeds', 20], ['shutdowns', 40], ['deadLettersDropped', 100], ['maxQueued', 5],
    ['avoidedWaits', 100], ['avoidedDispatches', 500], ['byteRefusals', 50], ['cappedCredits', 100], ['blockedWorkers', 500], ['tooLarge', 100],
  ];
  for (const [k, n] of least) t.ok((totals[k] as number) >= n, `${k} ${totals[k]} (at least ${n})`);
  const inversions = `timed-out tasks re-dispatched ahead of older ones timed out at the same tick: ${totals.firstInversion || 'none'}`;
  t.equal(totals.timeoutOrderInversions, 0, inversions);
  const wall = Math.round(performance.now() - start);
  const cpuMs = Math.round(process.cpuUsage(cpu).user / 1000);
  t.comment(`simulation: ${JSON.stringify({ ...totals, firstInversion: undefined })} in ${wall} ms (cpu ${cpuMs} ms)`);
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
