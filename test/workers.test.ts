// Workers at full speed without hoarding: the prefetch window, on real sockets.

import t, { type Test } from 'tap';
import { createClient, createWorker, ErrorCode, type Handlers, type Worker } from '../lib/index.js';
import { sha256, startScheduler, waitFor, within } from './helpers.js';

function worker(t: Test, port: number, handlers: Handlers, options: Parameters<typeof createWorker>[0] = {}): Worker {
  const w = createWorker({ port, handlers, reconnectMinMs: 20, reconnectMaxMs: 200, ...options });
  t.teardown(() => w.close());
  return w;
}

function client(t: Test, port: number): ReturnType<typeof createClient> {
  const c = createClient({ port });
  t.teardown(() => c.close());
  return c;
}

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
  t.ok(fast.credits > 200, `${fast.credits} credits for tasks of a few microseconds`);
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
