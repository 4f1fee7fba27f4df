// Liveness that no handler can starve, on real processes: a frozen worker's tasks run elsewhere within 3 keepalive
// intervals, while a worker whose handler blocks a thread for a minute keeps its task.

import t from 'tap';
import path from 'node:path';
import { createClient, createWorker } from '../lib/index.js';
import { root, sha256, spawnChild, startScheduler, waitFor, within } from './helpers.js';

t.test('a SIGSTOPped dist/worker.js holding tasks: they run elsewhere within 3 intervals plus a second (regression: 5 minutes)', async (t) => {
  const HEARTBEAT = 500;
  const scheduler = await startScheduler(t, { heartbeatMs: HEARTBEAT }); // the default 300 s task timeout
  const child = spawnChild(t, process.execPath, [path.join(root, 'dist', 'worker.js'), '--port', String(scheduler.port), '--name', 'frozen', '-q']);
  const ready: boolean[] = [];
  scheduler.on('workerReady', (w) => ready.push(w.mayBlock));
  await waitFor('the worker to register', () => ready.length > 0);
  t.same(ready, [false], 'dist/worker.js says its keepalives never wait for a handler');
  const left: { name: string; reason: string; requeued: number }[] = [];
  scheduler.on('peerLeft', (p) => left.push(p));
  const c = createClient({ port: scheduler.port });
  t.teardown(() => c.close());
  child.proc.kill('SIGSTOP');
  const stoppedAt = Date.now();
  t.teardown(() => void child.proc.kill('SIGCONT'));
  const inputs = Array.from({ length: 10 }, (_, i) => `frozen-${i}`);
  const results = Promise.all(inputs.map((s) => c.submit('sha256', s)));
  await waitFor('the frozen worker to hold them', () => scheduler.stats().inFlight === 10);
  const other = createWorker({ port: scheduler.port, name: 'other' });
  t.teardown(() => other.close());
  t.same(await within(10_000, 'the results', results), inputs.map(sha256), 'every task completed, on the other worker');
  const took = Date.now() - stoppedAt;
  t.ok(took <= 3 * HEARTBEAT + 1000, `done ${took} ms after the SIGSTOP (bound: 3 intervals of ${HEARTBEAT} ms plus a second)`);
  t.match(left, [{ name: 'frozen', reason: 'no frame for 3 keepalive intervals', requeued: 10 }]);
});

t.test('a handler in a thread that computes synchronously for 60 s: its worker is not taken for dead, one result', async (t) => {
  const scheduler = await startScheduler(t); // keepalives every 5 s: the handler blocks for 12 intervals
  const w = createWorker({
    port: scheduler.port,
    handlers: { block: { module: new URL('./fixtures/thread-handlers.ts', import.meta.url), export: 'block' } },
  });
  t.teardown(() => w.close());
  const left: string[] = [];
  scheduler.on('peerLeft', (p) => left.push(`${p.name}: ${p.reason}`));
  const c = createClient({ port: scheduler.port });
  t.teardown(() => c.close());
  t.equal(await within(90_000, 'the minute-long task', c.submit('block', '60000')), 'blocked 60000 ms');
  t.same(left, [], 'the worker was never dropped');
  t.match(scheduler.stats(), { completed: 1, requeued: 0, timedOut: 0, late: 0 }, 'it ran once and was answered once');
});
