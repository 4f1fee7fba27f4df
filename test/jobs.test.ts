// Jobs with an identity, on real sockets: detached jobs read by another client, cancel from anywhere, progress,
// priorities, fairness, delays, jobs without a worker, and the command line's job commands.

import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient, ErrorCode } from '../lib/index.js';
import path from 'node:path';
import { root, runCli, sha256, spawnChild, startScheduler, startServer, waitFor, within, startClient as client, startWorker as worker } from './helpers.js';

t.test('a detached job finishes after its client left, and another client reads its status and result', async (t) => {
  const scheduler = await startScheduler(t);
  const first = createClient({ port: scheduler.port });
  const job = await first.enqueue('slow', 'payload', { detach: true });
  t.ok(Number.isSafeInteger(job.id) && job.id > Date.now(), `a job id (${job.id}), counted from the scheduler's start`);
  job.result.catch(() => {}); // it goes with the client; the job does not
  await first.close();
  const other = client(t, scheduler.port);
  t.match(await other.status(job.id), { id: job.id, state: 'queued', detached: true, type: 'slow' });
  const waited = other.wait(job.id);
  worker(t, scheduler.port, { slow: async (payload) => (await sleep(50), `done ${payload}`) });
  t.equal(await within(10_000, 'the result', waited), 'done payload');
  t.match(await other.status(job.id), { state: 'completed', result: 'done payload', attempts: 1, finishedAt: Number });
  t.equal(await other.wait(job.id), 'done payload', 'a finished job answers a later wait at once');
  t.equal(await other.cancel(job.id), 'finished', 'and cannot be cancelled');
  const attached = await other.enqueue('slow', 'x');
  t.equal(await attached.result, 'done x');
  await t.rejects(other.status(attached.id), { code: ErrorCode.NO_SUCH_JOB }, 'an attached job leaves no record once answered');
});

t.test('cancel from another client: a queued, a delayed and a running job end cancelled; the handler sees the abort', async (t) => {
  const scheduler = await startScheduler(t);
  const owner = client(t, scheduler.port);
  const other = client(t, scheduler.port);
  const queued = await owner.enqueue('nobody', 'q');
  const delayed = await owner.enqueue('echo', 'd', { delayMs: 60_000 });
  t.equal(await other.cancel(queued.id), 'cancelled');
  await t.rejects(queued.result, { code: ErrorCode.CANCELLED });
  t.equal(await other.cancel(delayed.id), 'cancelled');
  await t.rejects(delayed.result, { code: ErrorCode.CANCELLED });

  let aborted = '';
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  worker(t, scheduler.port, {
    echo: (payload, context) =>
      new Promise((resolve) => {
        started();
        context.signal.addEventListener('abort', () => {
          aborted = (context.signal.reason as { code: string }).code;
          setTimeout(() => resolve(`late ${payload}`), 20); // answers anyway, late
        });
      }),
  });
  const job = await owner.enqueue('echo', 'r');
  await within(10_000, 'the handler to start', running);
  t.equal(await other.cancel(job.id), 'cancelled');
  await t.rejects(job.result, { code: ErrorCode.CANCELLED });
  await waitFor('the late answer', () => scheduler.stats().discarded === 1);
  t.equal(aborted, ErrorCode.CANCELLED, "the handler's signal fired with E_CANCELLED");
  t.match(scheduler.stats(), { cancelled: 3, completed: 0, discarded: 1 }, 'the late result was dropped');
  await t.rejects(other.cancel(12345), { code: ErrorCode.NO_SUCH_JOB });
});

t.test('progress reaches the submitter and a waiter, and the status keeps the latest', async (t) => {
  const scheduler = await startScheduler(t);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  worker(t, scheduler.port, {
    long: async (_payload, context) => {
      context.progress(0.25, 'a quarter');
      await sleep(150);
      context.progress(0.75, 'three quarters');
      await gate;
      return 'done';
    },
  });
  const owner = client(t, scheduler.port);
  const watcher = client(t, scheduler.port);
  const seen: string[] = [];
  const job = await owner.enqueue('long', '', { onProgress: (p) => seen.push(`owner ${p.value} ${p.message}`) });
  const waited = watcher.wait(job.id, { onProgress: (p) => seen.push(`waiter ${p.value} ${p.message}`) });
  await waitFor('three quarters', () => seen.some((s) => s.startsWith('owner 0.75')), 5_000);
  t.match(await watcher.status(job.id), { state: 'running', progress: { value: 0.75, message: 'three quarters' } });
  release();
  t.equal(await job.result, 'done');
  t.equal(await waited, 'done');
  t.ok(seen.includes('owner 0.25 a quarter') && seen.includes('owner 0.75 three quarters'), seen.join('; '));
  t.ok(seen.includes('waiter 0.75 three quarters'), 'the waiter got what came after it asked');
});

t.test('a handler in a thread reports progress too', async (t) => {
  const scheduler = await startScheduler(t);
  const module = new URL('./fixtures/thread-handlers.ts', import.meta.url);
  worker(t, scheduler.port, { reports: { module, export: 'reports' } });
  const c = client(t, scheduler.port);
  const seen: string[] = [];
  t.equal(await c.submit('reports', '', { onProgress: (p) => seen.push(`${p.value} ${p.message}`) }), 'reported');
  t.same(seen, ['0.5 from a thread', '1 done soon']);
});

t.test('priorities: a busy worker takes high, then normal, then low, FIFO within each', async (t) => {
  const scheduler = await startScheduler(t);
  const order: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  worker(t, scheduler.port, { job: async (payload) => (await gate, order.push(String(payload)), 'ok') }, { concurrency: 1, prefetch: 0 });
  const c = client(t, scheduler.port);
  const first = c.submit('job', 'first');
  await waitFor('the first to run', () => scheduler.stats().inFlight === 1);
  const rest = [
    c.submit('job', 'low-1', { priority: 'low' }),
    c.submit('job', 'normal-1'),
    c.submit('job', 'high-1', { priority: 'high' }),
    c.submit('job', 'low-2', { priority: -10 }),
    c.submit('job', 'high-2', { priority: 10 }),
    c.submit('job', 'urgent', { priority: 1000 }),
  ];
  await waitFor('all queued', () => scheduler.stats().queued === 6);
  release();
  await Promise.all([first, ...rest]);
  t.same(order, ['first', 'urgent', 'high-1', 'high-2', 'normal-1', 'low-1', 'low-2']);
});

t.test('fair: a single job from one client waits for one job of another client’s burst, not the whole burst', async (t) => {
  for (const fair of [true, false]) {
    const scheduler = await startScheduler(t, { fair });
    worker(t, scheduler.port, { job: async () => (await sleep(1), 'ok') }, { concurrency: 1, prefetch: 0 });
    const ids = new Map<string, number>();
    scheduler.on('clientJoined', (c) => ids.set(c.name, c.id));
    // The order of dispatch as the scheduler makes it (a handler's start lags behind by a round trip).
    const dispatched: string[] = [];
    let dispatchedWhenQueued = -1;
    scheduler.on('taskDispatched', (e) => dispatched.push(e.clientId === ids.get('single') ? 'single' : 'burst'));
    scheduler.on('taskQueued', (e) => {
      if (e.clientId === ids.get('single')) dispatchedWhenQueued = dispatched.length;
    });
    const burst = createClient({ port: scheduler.port, name: 'burst' });
    const single = createClient({ port: scheduler.port, name: 'single' });
    t.teardown(() => Promise.all([burst.close(), single.close()]));
    await Promise.all([burst.connect(), single.connect()]);
    const all = Array.from({ length: 200 }, (_, i) => burst.submit('job', `b${i}`));
    await waitFor('the burst queued', () => scheduler.stats().queued >= 150);
    await single.submit('job', 'single');
    const ahead = dispatched.indexOf('single') - dispatchedWhenQueued;
    await Promise.all(all);
    if (fair) t.ok(ahead <= 1, `fair: ${ahead} burst job(s) dispatched between the single job's queueing and its dispatch`);
    else t.ok(ahead > 100, `FIFO, for comparison: ${ahead} burst jobs went first`);
  }
});

t.test('fair with a tenant: two clients of one tenant share a turn, so a third client waits one job, not two', async (t) => {
  const scheduler = await startScheduler(t, { fair: true });
  worker(t, scheduler.port, { job: async () => (await sleep(1), 'ok') }, { concurrency: 1, prefetch: 0 });
  const ids = new Map<string, number>();
  scheduler.on('clientJoined', (c) => ids.set(c.name, c.id));
  const dispatched: string[] = [];
  let queuedAt = -1;
  scheduler.on('taskDispatched', (e) => dispatched.push(e.clientId === ids.get('single') ? 'single' : 'acme'));
  scheduler.on('taskQueued', (e) => {
    if (e.clientId === ids.get('single')) queuedAt = dispatched.length;
  });
  const acme = [createClient({ port: scheduler.port, name: 'acme-1' }), createClient({ port: scheduler.port, name: 'acme-2' })];
  const single = createClient({ port: scheduler.port, name: 'single' });
  t.teardown(() => Promise.all([...acme, single].map((c) => c.close())));
  await Promise.all([...acme, single].map((c) => c.connect()));
  const all = acme.flatMap((c, n) => Array.from({ length: 100 }, (_, i) => c.submit('job', `${n}-${i}`, { tenant: 'acme' })));
  await waitFor('the bursts queued', () => scheduler.stats().queued >= 150);
  await single.submit('job', 'single');
  const ahead = dispatched.indexOf('single') - queuedAt;
  t.ok(ahead <= 1, `${ahead} of acme's jobs were dispatched between the single job's queueing and its dispatch`);
  await Promise.all(all);
  await t.rejects(single.submit('job', 'x', { tenant: '' }), { code: ErrorCode.INVALID });
});

t.test('a delayed job does not start before its delay', async (t) => {
  const scheduler = await startScheduler(t);
  const startedAt: number[] = [];
  worker(t, scheduler.port, { job: () => (startedAt.push(Date.now()), 'ok') });
  const c = client(t, scheduler.port);
  await c.connect();
  const submitted = Date.now();
  const job = await c.enqueue('job', '', { delayMs: 300 });
  t.match(await c.status(job.id), { state: 'delayed', runAt: Number });
  await job.result;
  const waited = startedAt[0]! - submitted;
  t.ok(waited >= 300, `started ${waited} ms after the submission (delay 300)`);
  t.ok(waited < 300 + 1000, 'and not long after');
  const at = await c.enqueue('job', '', { runAt: new Date(Date.now() + 200) });
  await at.result;
  t.ok(startedAt[1]! - submitted >= 200, 'runAt too');
});

t.test('E_NO_WORKER: a job for a type no worker runs fails after noWorkerTimeoutMs', async (t) => {
  const scheduler = await startScheduler(t, { noWorkerTimeoutMs: 300 });
  const c = client(t, scheduler.port);
  const began = Date.now();
  await t.rejects(c.submit('nobody', 'x'), { code: ErrorCode.NO_WORKER, message: /no worker for job type 'nobody' connected within 300 ms/ });
  t.ok(Date.now() - began >= 300, 'not before the wait');
  worker(t, scheduler.port, { some: () => 'ok' });
  t.equal(await c.submit('some', 'y'), 'ok', 'other types are served meanwhile');
});

t.test('finished records stay bounded over many detached jobs', async (t) => {
  const scheduler = await startScheduler(t, { maxFinishedJobs: 500 });
  worker(t, scheduler.port, { job: (payload) => payload });
  const c = client(t, scheduler.port);
  const ids: number[] = [];
  for (let round = 0; round < 10; round++) {
    const jobs = await Promise.all(Array.from({ length: 2_000 }, (_, i) => c.enqueue('job', `r${round}-${i}`, { detach: true })));
    await Promise.all(jobs.map((j) => j.result));
    ids.push(jobs[0]!.id, jobs.at(-1)!.id);
    t.ok(scheduler.stats().finishedJobs <= 500, `after ${(round + 1) * 2000} jobs: ${scheduler.stats().finishedJobs} records`);
  }
  await t.rejects(c.status(ids[0]!), { code: ErrorCode.NO_SUCH_JOB }, 'the oldest records went');
  t.match(await c.status(ids.at(-1)!), { state: 'completed', result: 'r9-1999' }, 'the newest are kept');
  const latest = await c.jobs({ limit: 5 });
  t.same(latest.map((j) => j.id), Array.from({ length: 5 }, (_, i) => ids.at(-1)! - i), 'jobs() lists the newest first');
  t.ok(latest.every((j) => j.result === undefined && j.resultBytes !== undefined), 'without their results, only their sizes');
  t.same((await c.jobs({ state: 'running' })).length, 0);
});

t.test('the command line: --detach prints ids; status, wait, cancel and jobs find them by id', async (t) => {
  const { port } = await startServer(t, ['--local-workers', '1']);
  const p = ['--port', String(port)];
  let r = await runCli(t, 'client', [...p, '--detach', 'Hello', 'World']);
  t.equal(r.code, 0, r.stderr);
  const ids = r.stdout.trim().split('\n').map(Number);
  t.equal(ids.length, 2);
  r = await runCli(t, 'client', [...p, 'wait', String(ids[0]), String(ids[1])]);
  t.same([r.code, r.stdout], [0, `${ids[0]} = ${sha256('Hello')}\n${ids[1]} = ${sha256('World')}\n`]);
  r = await runCli(t, 'client', [...p, 'status', '--json', String(ids[0])]);
  t.match(JSON.parse(r.stdout), [{ id: ids[0], ok: true, state: 'completed', result: sha256('Hello') }]);
  r = await runCli(t, 'client', [...p, '--detach', '--delay', '60000', '--type', 'arith', '1+1']);
  const delayed = Number(r.stdout.trim());
  r = await runCli(t, 'client', [...p, 'jobs', '--state', 'delayed']);
  t.match(r.stdout, new RegExp(`^${delayed}  delayed  arith`), 'jobs lists it');
  r = await runCli(t, 'client', [...p, 'cancel', String(delayed), '7']);
  t.equal(r.code, 1, 'an unknown id makes the exit status 1');
  t.equal(r.stdout, `${delayed} cancelled\n7: error: no job 7: it never existed, or it finished and its record is gone (E_NO_SUCH_JOB)\n`);
  r = await runCli(t, 'client', [...p, 'wait', String(delayed)]);
  t.equal(r.code, 1);
  t.match(r.stdout, /E_CANCELLED/);
  r = await runCli(t, 'client', [...p, '--priority', 'urgent', 'x']);
  t.equal(r.code, 2);
  t.match(r.stderr, /--priority must be high, normal, low or an integer/);
});

t.test('on a terminal the client draws a bar of inputs done on stderr, and clears it; not otherwise', async (t) => {
  const { port } = await startServer(t, ['--local-workers', '1']);
  const client = `${JSON.stringify(process.execPath)} ${JSON.stringify(path.join(root, 'dist', 'client.js'))} --port ${port} a b c`;
  // script(1) (util-linux, in every Debian) runs the client on a pseudo-terminal: stdout and stderr are a TTY.
  const tty = spawnChild(t, 'script', ['-qec', client, '/dev/null']);
  t.equal(await within(20_000, 'the client on a terminal', tty.exited), 0);
  const out = tty.stdout();
  t.match(out, /\[#{30}\] 3\/3/, 'a full bar for 3 of 3 inputs');
  t.match(out, /\r\x1b\[2K/, 'redrawn in place and cleared');
  t.match(out, new RegExp(`a = ${sha256('a')}`), 'and the results');
  const piped = await runCli(t, 'client', ['--port', String(port), 'a', 'b', 'c']);
  t.notMatch(piped.stderr + piped.stdout, /\x1b|\//, 'nothing of it when the output is not a terminal');
});
