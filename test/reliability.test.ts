// Faults, limits, hostile peers and shutdown on real sockets: each guarantee in the README's list, proven here.

import t from 'tap';
import net from 'node:net';
import { createClient, ErrorCode, type Handler } from '../lib/index.js';
import { Cmd, PROTOCOL_VERSION, Role, decodeError, encode, writeHello } from '../lib/protocol/index.js';
import { sha256, spawnTs, startScheduler, waitFor, within, startClient as client, startWorker as worker } from './helpers.js';

/** A handler that never answers until its signal aborts; records the abort reasons it saw. */
function hang(aborts: string[]): Handler {
  return (_payload, { signal }) =>
    new Promise((_, reject) => {
      signal.addEventListener('abort', () => {
        aborts.push((signal.reason as { code?: string }).code ?? 'unknown');
        reject(signal.reason);
      });
    });
}

/** Opens a raw socket and collects everything the scheduler sends until it closes the connection. */
async function rawExchange(port: number, bytes: Buffer[], ms = 5000): Promise<{ frames: { cmd: number; payload: Buffer }[] }> {
  const socket = net.connect(port, '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (d) => chunks.push(d));
  socket.on('error', () => {});
  await new Promise((r) => socket.once('connect', r));
  for (const b of bytes) socket.write(b);
  await within(ms, 'the scheduler to close the connection', new Promise((r) => socket.once('close', r)));
  const all = Buffer.concat(chunks);
  const frames: { cmd: number; payload: Buffer }[] = [];
  for (let o = 0; o + 5 <= all.length; ) {
    const len = all.readUInt32BE(o + 1);
    frames.push({ cmd: all[o]!, payload: all.subarray(o + 5, o + 5 + len) });
    o += 5 + len;
  }
  return { frames };
}

function lastErrorCode(frames: { cmd: number; payload: Buffer }[]): string | undefined {
  const last = frames.at(-1);
  return last?.cmd === Cmd.ERROR ? decodeError(last.payload).code : undefined;
}

const hello = (role: typeof Role.CLIENT | typeof Role.WORKER, token = ''): Buffer =>
  encode(writeHello, { version: PROTOCOL_VERSION, role, heartbeatMs: 0, name: 'raw', token });

t.test('timeout: the task is taken back, the handler aborted, and it runs elsewhere; the late answer is dropped', async (t) => {
  const scheduler = await startScheduler(t);
  const aborts: string[] = [];
  const stuck = worker(t, scheduler.port, { job: hang(aborts) }, { concurrency: 1 });
  await stuck.ready();
  const c = client(t, scheduler.port);
  const result = c.submit('job', 'x', { timeoutMs: 200 });
  await waitFor('the task to reach the stuck worker', () => scheduler.stats().inFlight === 1);
  const requeued: string[] = [];
  scheduler.on('taskRequeued', (e) => requeued.push(e.reason));
  // The healthy worker joins while the stuck one holds the task; on the timeout it gets the task, because the
  // stuck worker's slot stays busy until its handler answers.
  await worker(t, scheduler.port, { job: (p) => `ok ${p.toString()}` }).ready();
  t.equal(await within(5000, 'the result from the healthy worker', result), 'ok x');
  t.equal(requeued.length, 1);
  t.match(requeued[0], /timed out after 200 ms/);
  await waitFor('the stuck worker to answer its revoked lease', () => scheduler.stats().late === 1);
  t.same(aborts, [ErrorCode.TIMEOUT], 'the handler saw its signal abort with E_TIMEOUT');
  t.equal(scheduler.stats().timedOut, 1);
  t.equal(scheduler.stats().completed, 1, 'completed once');
});

t.test('attempts: a task that times out on every try fails with E_ATTEMPTS and lands in the dead letters', async (t) => {
  const scheduler = await startScheduler(t, { maxAttempts: 2 });
  const aborts: string[] = [];
  worker(t, scheduler.port, { job: hang(aborts) }, { concurrency: 4 });
  const c = client(t, scheduler.port);
  const error = await within(5000, 'E_ATTEMPTS', c.submit('job', 'poison', { timeoutMs: 100 }).catch((e: unknown) => e));
  t.match(error, { code: ErrorCode.ATTEMPTS, message: /gave up after 2 attempts; last: timed out after 100 ms/ });
  const [dead] = scheduler.deadLetters();
  t.match(dead, { code: ErrorCode.ATTEMPTS, type: 'job', attempts: 2, payloadBytes: 6 });
  t.equal(scheduler.stats().deadLetters, 1);
});

t.test('attempts: a task that crashes every worker process stops after maxAttempts', async (t) => {
  const scheduler = await startScheduler(t, { maxAttempts: 2 });
  const c = client(t, scheduler.port);
  const outcome = c.submit('crash', 'boom').catch((e: unknown) => e);
  for (let i = 0; i < 2; i++) {
    const child = spawnTs(t, 'test/fixtures/crash-worker.ts', [String(scheduler.port)]);
    t.equal(await within(10_000, 'the worker to crash', child.exited), 1, `worker ${i + 1} crashed on the task`);
  }
  t.match(await within(5000, 'E_ATTEMPTS', outcome), { code: ErrorCode.ATTEMPTS, message: /gave up after 2 attempts; last: worker .* was lost/ });
});

t.test('retries: handler failures are retried with backoff when asked, and fail at once otherwise', async (t) => {
  const scheduler = await startScheduler(t);
  const calls = new Map<string, number[]>();
  worker(t, scheduler.port, {
    flaky: (p) => {
      const key = p.toString();
      const times = calls.get(key) ?? [];
      times.push(Date.now());
      calls.set(key, times);
      if (times.length < 3) throw Object.assign(new Error(`failure ${times.length}`), { code: 'E_FLAKY' });
      return `ok after ${times.length}`;
    },
  });
  const c = client(t, scheduler.port);
  t.equal(await within(5000, 'retried task', c.submit('flaky', 'a', { retries: 2, backoffMs: 300 })), 'ok after 3');
  const [t1, t2, t3] = calls.get('a')!;
  // Delays are enforced on the scheduler's 100 ms tick, so each may be up to one tick early or late.
  t.ok(t2! - t1! >= 200 && t3! - t2! >= 500 && t3! - t2! > t2! - t1!, `backoff doubles: ${t2! - t1!} ms then ${t3! - t2!} ms`);
  await t.rejects(c.submit('flaky', 'b', { retries: 1, backoffMs: 10 }), { code: 'E_FLAKY', message: 'failure 2' });
  await t.rejects(c.submit('flaky', 'c'), { code: 'E_FLAKY', message: 'failure 1' }, 'no retries unless asked');
  t.equal(scheduler.stats().retried, 3);
  t.same(scheduler.deadLetters().map((d) => d.code), ['E_FLAKY', 'E_FLAKY']);
  await t.rejects(c.submit('flaky', 'd', { retries: 256 }), { code: ErrorCode.INVALID });
});

t.test('a client that disconnects takes its tasks with it: queued never run, running ones cancelled', async (t) => {
  const scheduler = await startScheduler(t);
  const started: string[] = [];
  const aborts: string[] = [];
  const first = worker(t, scheduler.port, {
    job: (p, ctx) => {
      started.push(p.toString());
      return hang(aborts)(p, ctx);
    },
  }, { concurrency: 2 });
  const leaving = createClient({ port: scheduler.port });
  const pending = Array.from({ length: 20 }, (_, i) => leaving.submit('job', `t${i}`).catch((e: { code: string }) => e.code));
  await waitFor('two running, eighteen queued', () => scheduler.stats().inFlight === 2 && scheduler.stats().queued === 18);
  await leaving.close();
  t.same(new Set(await Promise.all(pending)), new Set([ErrorCode.CLOSED]));
  await waitFor('the scheduler to forget the client', () => scheduler.stats().clients === 0 && scheduler.stats().queued === 0);
  await waitFor('both handlers aborted', () => aborts.length === 2);
  t.same(aborts, [ErrorCode.CANCELLED, ErrorCode.CANCELLED]);
  await waitFor('the revoked leases answered', () => scheduler.stats().discarded === 2);
  t.same(started, ['t0', 't1'], 'queued tasks never ran');

  t.equal(scheduler.stats().inFlight, 0);
  await first.close();
  const c = client(t, scheduler.port);
  worker(t, scheduler.port, { job: (p) => p.toString().toUpperCase() });
  t.equal(await within(5000, 'a new task', c.submit('job', 'next')), 'NEXT');
  t.equal(scheduler.stats().inFlight, 0);
});

t.test('limits: queue length, pending per client and connections answer with codes, never silence', async (t) => {
  const scheduler = await startScheduler(t, { maxQueued: 3, maxPendingPerClient: 5, maxConnections: 3 });
  const c = client(t, scheduler.port);
  const queued = [1, 2, 3].map((i) => c.submit('nobody', String(i)).catch((e: { code: string }) => e.code));
  await t.rejects(c.submit('nobody', '4'), { code: ErrorCode.QUEUE_FULL });
  const other = client(t, scheduler.port);
  await other.connect();
  await t.rejects(other.submit('nobody', 'x'), { code: ErrorCode.QUEUE_FULL }, 'the queue limit is global');

  const w = worker(t, scheduler.port, { slow: (p) => new Promise((r) => setTimeout(() => r(p.toString()), 200)) }, { concurrency: 10 });
  await w.ready();
  const running = [1, 2].map((i) => c.submit('slow', String(i)));
  await t.rejects(c.submit('slow', '3'), { code: ErrorCode.TOO_MANY_PENDING }, 'three queued and two running: five unsettled');
  t.equal(scheduler.stats().rejected, 3);

  // Three connections are open (two clients, one worker): the fourth is refused.
  const { frames } = await rawExchange(scheduler.port, []);
  t.equal(lastErrorCode(frames), ErrorCode.TOO_MANY_CONNECTIONS);
  t.same(await Promise.all(running), ['1', '2'], 'everyone else is still served');
  await c.close();
  t.same(await Promise.all(queued), [ErrorCode.CLOSED, ErrorCode.CLOSED, ErrorCode.CLOSED]);
});

t.test('handshake timeout, truncated frames and silence: the peer is closed with E_TIMEOUT', async (t) => {
  const scheduler = await startScheduler(t, { handshakeTimeoutMs: 200, heartbeatMs: 50 });
  let r = await rawExchange(scheduler.port, []);
  t.equal(lastErrorCode(r.frames), ErrorCode.TIMEOUT, 'silent before hello');
  r = await rawExchange(scheduler.port, [hello(Role.CLIENT).subarray(0, 7)]);
  t.equal(lastErrorCode(r.frames), ErrorCode.TIMEOUT, 'hello cut short');
  r = await rawExchange(scheduler.port, [hello(Role.CLIENT), Buffer.from([Cmd.SUBMIT, 0, 0, 0, 50, 0, 0])]);
  t.equal(r.frames[0]?.cmd, Cmd.HELLO, 'handshake answered');
  t.equal(lastErrorCode(r.frames), ErrorCode.TIMEOUT, 'truncated frame then silence: dropped after 3 keepalive intervals');
  await waitFor('no connection left', () => scheduler.stats().connections === 0);
});

t.test('auth: without the right token a peer is refused with E_AUTH before it can submit or take work', async (t) => {
  const scheduler = await startScheduler(t, { token: 's3cret' });
  await t.rejects(createClient({ port: scheduler.port }).connect(), { code: ErrorCode.AUTH });
  await t.rejects(createClient({ port: scheduler.port, token: 'guess' }).connect(), { code: ErrorCode.AUTH });
  const noToken = createClient({ port: scheduler.port });
  await t.rejects(noToken.submit('sha256', 'x'), { code: ErrorCode.AUTH }, 'submissions made before the refusal fail too');

  const { frames } = await rawExchange(scheduler.port, [hello(Role.WORKER, 'wrong'), Buffer.from([Cmd.READY, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0])]);
  t.equal(frames.length, 1, 'only the ERROR frame: no hello, no task');
  t.equal(lastErrorCode(frames), ErrorCode.AUTH);

  const bad = worker(t, scheduler.port, { sha256: (p) => p }, { token: 'nope' });
  const refusals: string[] = [];
  bad.on('reconnecting', (e) => refusals.push(e.code));
  await waitFor('the bad worker to be refused', () => refusals.length > 0);
  t.equal(refusals[0], ErrorCode.AUTH);

  worker(t, scheduler.port, { sha256: (p) => sha256(p.toString()) }, { token: 's3cret' });
  const good = client(t, scheduler.port, { token: 's3cret' });
  t.equal(await good.submit('sha256', 'in'), sha256('in'));
  t.equal(scheduler.stats().workers, 1, 'only the worker with the token registered');
});

t.test('graceful close: running and queued work finishes within the grace period, new work is refused', async (t) => {
  const scheduler = await startScheduler(t);
  const w = worker(t, scheduler.port, { slow: (p) => new Promise((r) => setTimeout(() => r(`done ${p.toString()}`), 150)) }, { concurrency: 1 });
  await w.ready();
  const c = client(t, scheduler.port);
  const work = ['a', 'b'].map((s) => c.submit('slow', s));
  await waitFor('one running, one queued', () => scheduler.stats().inFlight === 1 && scheduler.stats().queued === 1);
  const closing = scheduler.close({ graceMs: 2000 });
  await t.rejects(c.submit('slow', 'late'), { code: ErrorCode.SHUTDOWN }, 'new submissions refused while draining');
  t.same(await Promise.all(work), ['done a', 'done b'], 'drained within the grace period');
  await closing;
});

t.test('graceful close: what is left after the grace period fails with E_SHUTDOWN', async (t) => {
  const scheduler = await startScheduler(t);
  const aborts: string[] = [];
  worker(t, scheduler.port, { job: hang(aborts) });
  const c = client(t, scheduler.port);
  const stuck = c.submit('job', 'x').catch((e: unknown) => e);
  await waitFor('running', () => scheduler.stats().inFlight === 1);
  const started = Date.now();
  await scheduler.close({ graceMs: 200 });
  t.ok(Date.now() - started >= 190, 'waited for the grace period');
  t.match(await stuck, { code: ErrorCode.SHUTDOWN });
});

t.test('a worker process stopped with SIGTERM finishes its running task and exits 0', async (t) => {
  const scheduler = await startScheduler(t);
  const child = spawnTs(t, 'test/fixtures/slow-worker.ts', [String(scheduler.port), 'graceful', '2', '400']);
  await waitFor('the worker to register', () => scheduler.stats().workers === 1);
  const c = client(t, scheduler.port);
  const result = c.submit('slow', 'in-flight');
  await waitFor('running', () => scheduler.stats().inFlight === 1);
  child.proc.kill('SIGTERM');
  t.equal(await within(5000, 'the result', result), 'done:in-flight');
  t.equal(await within(5000, 'exit', child.exited), 0);
  t.equal(scheduler.stats().requeued, 0, 'nothing had to be requeued');
});

t.test('a client that reads none of its results for slowConsumerMs is dropped with E_SLOW_CONSUMER', async (t) => {
  const scheduler = await startScheduler(t, { slowConsumerMs: 500 });
  worker(t, scheduler.port, { big: () => Buffer.alloc(64 * 1024) });
  const socket = net.connect(scheduler.port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  socket.on('error', () => {});
  await new Promise((r) => socket.once('connect', r));
  socket.pause(); // never read
  const { writeSubmit } = await import('../lib/protocol/index.js');
  socket.write(hello(Role.CLIENT));
  for (let i = 1; i <= 400; i++) socket.write(encode(writeSubmit, i, 'big', ''));
  const errors: string[] = [];
  scheduler.on('peerError', (e) => errors.push(e.code));
  await waitFor('the slow consumer to be dropped', () => errors.includes(ErrorCode.SLOW_CONSUMER), 10_000);
  await waitFor('its connection to go', () => scheduler.stats().clients === 0);
  const c = client(t, scheduler.port);
  t.equal((await c.submitBuffer('big', '')).length, 64 * 1024, 'others are still served');
});

t.test('a CPU-bound handler that blocks its worker past the dead-peer timeout is not taken for dead', async (t) => {
  const scheduler = await startScheduler(t, { heartbeatMs: 50 });
  // 600 ms of busy loop in another process: 12 heartbeat intervals without a keepalive from that worker.
  spawnTs(t, 'test/fixtures/slow-worker.ts', [String(scheduler.port), 'spinner', '1', '600']);
  await waitFor('the worker to register', () => scheduler.stats().workers === 1);
  const c = client(t, scheduler.port);
  const left: string[] = [];
  scheduler.on('peerLeft', (p) => left.push(p.reason));
  t.equal(await within(5000, 'the result', c.submit('spin', 'once')), 'done:once');
  t.same(left, [], 'the worker was never dropped');
  t.equal(scheduler.stats().requeued, 0, 'the task ran once');
  t.equal(scheduler.stats().workers, 1);
});

// ---- timer bounds: never before the deadline, at most one tick after -------------------------------------------

/** The slack allowed past a deadline's last tick for a loaded test machine; the lower bounds get none. */
const SLACK_MS = 150;
const TICK_MS = 100;

t.test('a task timeout never fires before its time, and at most one tick after (regression: 204-301 ms for 300 ms)', async (t) => {
  const scheduler = await startScheduler(t, { maxAttempts: 1 });
  const w = worker(t, scheduler.port, { job: hang([]) }, { concurrency: 64 });
  await w.ready();
  const c = client(t, scheduler.port);
  await c.connect();
  // Twenty tasks started at different phases of the scheduler's 100 ms tick.
  const elapsed = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      new Promise<void>((resolve) => setTimeout(resolve, i * 7)).then(async () => {
        const started = Date.now();
        const err = await c.submit('job', String(i), { timeoutMs: 300 }).catch((e: { code: string }) => e);
        t.equal((err as { code: string }).code, ErrorCode.ATTEMPTS);
        return Date.now() - started;
      }),
    ),
  );
  t.ok(elapsed.every((ms) => ms >= 300), `never early: ${Math.min(...elapsed)} ms at the soonest`);
  t.ok(elapsed.every((ms) => ms <= 300 + TICK_MS + SLACK_MS), `${Math.max(...elapsed)} ms at the latest (one tick is ${TICK_MS})`);
});

t.test('a retry backoff never ends before its time, and at most one tick after', async (t) => {
  const scheduler = await startScheduler(t);
  const calls = new Map<string, number[]>();
  worker(t, scheduler.port, {
    job: (p) => {
      const key = p.toString();
      const times = calls.get(key) ?? [];
      times.push(Date.now());
      calls.set(key, times);
      if (times.length === 1) throw new Error('first attempt fails');
      return 'ok';
    },
  }, { concurrency: 64 });
  const c = client(t, scheduler.port);
  await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      new Promise((resolve) => setTimeout(resolve, i * 7)).then(() => c.submit('job', String(i), { retries: 1, backoffMs: 300 })),
    ),
  );
  const waits = [...calls.values()].map(([first, second]) => second! - first!);
  t.equal(waits.length, 20);
  t.ok(waits.every((ms) => ms >= 300), `never early: ${Math.min(...waits)} ms at the soonest`);
  t.ok(waits.every((ms) => ms <= 300 + TICK_MS + SLACK_MS), `${Math.max(...waits)} ms at the latest`);
});

t.test('a silent peer is dropped after 3 keepalive intervals of silence, never sooner, and within a tenth of one more', async (t) => {
  const HEARTBEAT = 200;
  const scheduler = await startScheduler(t, { heartbeatMs: HEARTBEAT });
  const silences = await Promise.all(
    Array.from({ length: 5 }, async (_, i) => {
      await new Promise((r) => setTimeout(r, i * 37));
      const socket = net.connect(scheduler.port, '127.0.0.1');
      t.teardown(() => socket.destroy());
      socket.on('error', () => {});
      await new Promise((r) => socket.once('connect', r));
      const lastSent = await new Promise<number>((resolve) => socket.write(hello(Role.WORKER), () => resolve(Date.now())));
      socket.resume();
      await within(5000, 'the drop', new Promise((r) => socket.once('close', r)));
      return Date.now() - lastSent;
    }),
  );
  t.ok(silences.every((ms) => ms >= 3 * HEARTBEAT), `never early: dropped after ${Math.min(...silences)} ms of silence at the soonest`);
  // Silence is checked ten times per interval (before, once: up to 4 intervals).
  t.ok(silences.every((ms) => ms <= 3.1 * HEARTBEAT + SLACK_MS), `${Math.max(...silences)} ms at the latest`);
});
