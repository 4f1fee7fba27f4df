// Workers at full speed without hoarding: the prefetch window, on real sockets.

import t from 'tap';
import { ErrorCode, type Handlers } from '../lib/index.js';
import { sha256, startScheduler, waitFor, within, startClient as client, startWorker as worker } from './helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A 50 ms task that records which worker ran it and when it started. */
function slowTask(name: string, log: { worker: string; at: number }[]): Handlers {
  return {
    slow: async () => {
      log.push({ worker: name, at: Date.now() });
      await sleep(50);
      return name;
    },
  };
}

t.test('the automatic window: trivial tasks get a deep pipeline, 50 ms tasks none', async (t) => {
  const scheduler = await startScheduler(t);
  const fast = worker(t, scheduler.port, { sha256: (p) => sha256(p.toString()) }, { name: 'fast' });
  const slow = worker(t, scheduler.port, slowTask('slow', []), { name: 'slow' });
  await Promise.all([fast.ready(), slow.ready()]);
  t.equal(fast.credits, 16, 'before any measurement, credits are the concurrency');
  const c = client(t, scheduler.port);
  await Promise.all(Array.from({ length: 5000 }, (_, i) => c.submit('sha256', `t${i}`)));
  // Far above the 16 of its concurrency (how far depends on the machine's load, which the measured time includes).
  t.ok(fast.credits > 64, `${fast.credits} credits for tasks of a few microseconds`);
  await Promise.all(Array.from({ length: 64 }, (_, i) => c.submit('slow', `s${i}`)));
  t.equal(slow.credits, 16, 'none held ahead for 50 ms tasks');
  const fixed = worker(t, scheduler.port, { sha256: (p) => sha256(p.toString()) }, { prefetch: 5, concurrency: 2 });
  await fixed.ready();
  t.equal(fixed.credits, 7, 'a fixed window is concurrency + prefetch');
});

t.test('two workers share a stream of 50 ms tasks evenly (within 10%)', async (t) => {
  const scheduler = await startScheduler(t);
  const log: { worker: string; at: number }[] = [];
  const a = worker(t, scheduler.port, slowTask('a', log), { name: 'a' });
  const b = worker(t, scheduler.port, slowTask('b', log), { name: 'b' });
  await Promise.all([a.ready(), b.ready()]);
  const c = client(t, scheduler.port);
  // A stream: 20 tasks every 25 ms, faster than the two can run them (32 at once, 50 ms each), for 1.5 s.
  const all: Promise<string>[] = [];
  for (let wave = 0; wave < 60; wave++) {
    for (let i = 0; i < 20; i++) all.push(c.submit('slow', `${wave}/${i}`));
    await sleep(25);
  }
  const ran = await within(30_000, 'the stream', Promise.all(all));
  const byA = ran.filter((w) => w === 'a').length;
  const byB = ran.length - byA;
  t.ok(Math.abs(byA - byB) <= 0.1 * (ran.length / 2), `a ran ${byA}, b ran ${byB} of ${ran.length}`);
});

t.test('a worker joining a full queue gets tasks within one task duration', async (t) => {
  const scheduler = await startScheduler(t);
  const log: { worker: string; at: number }[] = [];
  const first = worker(t, scheduler.port, slowTask('first', log), { name: 'first' });
  await first.ready();
  const c = client(t, scheduler.port);
  const all = Array.from({ length: 400 }, (_, i) => c.submit('slow', String(i)));
  await waitFor('the queue to fill', () => scheduler.stats().queued > 300);
  await sleep(300); // the first worker has measured its tasks by now
  const joinedAt = Date.now();
  const late = worker(t, scheduler.port, slowTask('late', log), { name: 'late' });
  await late.ready();
  await waitFor('the late worker to start a task', () => log.some((e) => e.worker === 'late'), 5000);
  const waited = log.find((e) => e.worker === 'late')!.at - joinedAt;
  t.ok(waited < 50, `its first task started ${waited} ms after it connected (a task lasts 50 ms)`);
  t.ok(scheduler.stats().queued > 0, 'the queue was not drained into the first worker');
  await c.close();
  await Promise.allSettled(all);
});

t.test('a task held in the window is answered unrun when it is cancelled, and its slot is free again', async (t) => {
  const scheduler = await startScheduler(t, { timeoutMs: 200, maxAttempts: 1 });
  const started: string[] = [];
  const w = worker(t, scheduler.port, {
    job: async (p, { signal }) => {
      started.push(p.toString());
      await new Promise((resolve) => signal.addEventListener('abort', resolve));
      throw signal.reason;
    },
  }, { concurrency: 1, prefetch: 3 });
  await w.ready();
  const c = client(t, scheduler.port);
  const codes = await Promise.all(['a', 'b', 'c', 'd'].map((s) => c.submit('job', s).catch((e: { code: string }) => e.code)));
  t.same(codes, [ErrorCode.ATTEMPTS, ErrorCode.ATTEMPTS, ErrorCode.ATTEMPTS, ErrorCode.ATTEMPTS], 'all four timed out');
  t.same(started, ['a'], 'the three held ones were never run');
  await waitFor('every slot given back', () => scheduler.stats().inFlight === 0 && w.activeTasks === 0);
  t.equal(await c.submit('job', 'e').catch((e: { code: string }) => e.code), ErrorCode.ATTEMPTS, 'and the worker takes work again');
});

// ---- handlers in threads ---------------------------------------------------------------------------------------

const THREADED = new URL('./fixtures/thread-handlers.ts', import.meta.url);
// The same checksum the thread computes, computed here.
const { sum } = await import('./fixtures/thread-handlers.js');
const inThread = (name: string) => ({ module: THREADED, export: name });

t.test('thread handlers: results in text and bytes, payloads small and large, errors with their codes', async (t) => {
  const scheduler = await startScheduler(t);
  const w = worker(t, scheduler.port, { upper: inThread('upper'), bytes: inThread('bytes'), sum: inThread('sum'), fails: inThread('fails') }, { threads: 2 });
  await w.ready();
  t.equal(w.inlineMayBlock, false, 'threads only: its keepalives never wait for a handler');
  const c = client(t, scheduler.port);
  t.equal(await c.submit('upper', 'hello'), 'HELLO@1');
  const big = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 256;
  t.equal(await c.submit('sum', big), sum(big), 'a 3 MiB payload crosses intact');
  const small = ['a', 'bb', 'ccc'].map((p) => Buffer.from(p));
  t.same(await Promise.all(small.map((p) => c.submit('sum', p))), small.map(sum), 'small ones too');
  const out = await c.submitBuffer('bytes', '100000');
  t.ok(out.length === 100_000 && out.every((b, i) => b === i % 251), 'bytes come back intact');
  await t.rejects(c.submit('fails', ''), { code: 'E_CUSTOM', message: 'failed in a thread' });
  const missing = worker(t, scheduler.port, { nothing: { module: THREADED, export: 'nope' } });
  await missing.ready();
  await t.rejects(c.submit('nothing', ''), { code: ErrorCode.NO_HANDLER, message: /has no function export 'nope'/ });
  t.ok(worker(t, scheduler.port, { sha256: (p) => p }).inlineMayBlock, 'an inline handler of its own: it may block');
});

t.test('a handler stuck in for (;;) {} is stopped: its thread replaced, its slot reused, the task run elsewhere, the worker serving throughout', async (t) => {
  const scheduler = await startScheduler(t, { timeoutMs: 400 });
  const stuck = worker(t, scheduler.port, { spin: inThread('spin'), upper: inThread('upper') }, { threads: 2, concurrency: 2, stopGraceMs: 200, name: 'stuck' });
  let reconnects = 0;
  stuck.on('reconnecting', () => reconnects++);
  await stuck.ready();
  const c = client(t, scheduler.port);
  const spun = c.submit('spin', 'x');
  await waitFor('the spin task to run', () => scheduler.stats().inFlight === 1);
  const other = worker(t, scheduler.port, { spin: () => 'done elsewhere' }, { name: 'other' });
  await other.ready();
  // While one thread spins, the other serves. (Their own timeout: the scheduler's 400 ms is for the stuck task, and
  // a fresh thread loading its module on a loaded machine can take that long before it starts.)
  const upper = (p: string): Promise<string> => c.submit('upper', p, { timeoutMs: 30_000 });
  t.same(await Promise.all(['a', 'b', 'c'].map(upper)), ['A@1', 'B@1', 'C@1'], 'served during the spin');
  t.equal(await within(10_000, 'the spin task', spun), 'done elsewhere', 'timed out, then run on the other worker');
  await waitFor('the thread to be stopped', () => stuck.threadsStopped === 1, 5000);
  await waitFor('its slot back', () => stuck.activeTasks === 0 && scheduler.stats().inFlight === 0, 5000);
  t.same(await Promise.all(['d', 'e'].map(upper)), ['D@1', 'E@1'], 'both slots and both threads serve again');
  t.equal(reconnects, 0, 'the stuck worker never lost its connection');
});

t.test('a task that gets stuck on every try fails with E_ATTEMPTS; its threads are stopped each time', async (t) => {
  const scheduler = await startScheduler(t, { timeoutMs: 300, maxAttempts: 2 });
  const w = worker(t, scheduler.port, { spin: inThread('spin'), upper: inThread('upper') }, { threads: 1, stopGraceMs: 100 });
  await w.ready();
  const c = client(t, scheduler.port);
  await t.rejects(within(10_000, 'the stuck task', c.submit('spin', 'x')), { code: ErrorCode.ATTEMPTS });
  await waitFor('both threads stopped', () => w.threadsStopped === 2, 5000);
  // Its own timeout: the scheduler's 300 ms is for the stuck task, and a fresh thread loading its module under
  // load can take that long before it starts.
  t.equal(await c.submit('upper', 'after', { timeoutMs: 30_000 }), 'AFTER@1', 'a fresh thread serves the next task');
});
