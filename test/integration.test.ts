// End to end on real sockets: scheduler, workers and clients in this process and in child processes.

import t, { type Test } from 'tap';
import net from 'node:net';
import {
  builtinHandlers,
  createClient,
  createWorker,
  ErrorCode,
  evaluateToString,
  TaskFailedError,
  TaskwireError,
  type Worker,
} from '../lib/index.js';
import { encode, writeHello, decodeError, Cmd, Role, PROTOCOL_VERSION } from '../lib/protocol/index.js';
import { sha256, spawnTs, startScheduler, waitFor, within, startClient as client } from './helpers.js';

function worker(t: Test, port: number, options: Parameters<typeof createWorker>[0] = {}): Worker {
  const w = createWorker({ port, reconnectMinMs: 20, reconnectMaxMs: 200, ...options });
  t.teardown(() => w.close());
  return w;
}

t.test('one client, two workers, 1,000 tasks: every result correct, both workers used', async (t) => {
  const scheduler = await startScheduler(t);
  const dispatchedTo = new Map<number, number>();
  scheduler.on('taskDispatched', (e) => dispatchedTo.set(e.workerId!, (dispatchedTo.get(e.workerId!) ?? 0) + 1));
  const w1 = worker(t, scheduler.port, { concurrency: 4 });
  const w2 = worker(t, scheduler.port, { concurrency: 4 });
  await Promise.all([w1.ready(), w2.ready()]);
  const c = client(t, scheduler.port);

  const inputs = Array.from({ length: 1000 }, (_, i) => (i % 2 ? `task-${i}` : `${i} * 3 - (${i} / 7) ** 2`));
  const results = await within(30_000, '1,000 results', Promise.all(inputs.map((s, i) => c.submit(i % 2 ? 'sha256' : 'arith', s))));
  inputs.forEach((s, i) => {
    const expected = i % 2 ? sha256(s) : evaluateToString(s);
    if (results[i] !== expected) t.fail(`task ${i} (${s}): got ${results[i]}, expected ${expected}`);
  });
  t.equal(results.length, 1000);
  t.equal(dispatchedTo.size, 2, 'both workers received tasks');
  const stats = scheduler.stats();
  t.equal(stats.completed, 1000);
  t.equal(stats.queued, 0);
  t.equal(stats.inFlight, 0);
});

t.test('a worker process SIGKILLed mid-task: every task completes on the other worker, exactly once', async (t) => {
  const scheduler = await startScheduler(t);
  const completions = new Map<number, number>();
  scheduler.on('taskCompleted', (e) => completions.set(e.taskId, (completions.get(e.taskId) ?? 0) + 1));
  let victimId = -1;
  scheduler.on('workerReady', (w) => {
    if (w.name === 'victim') victimId = w.id;
  });
  let victimRunning = 0;
  scheduler.on('taskDispatched', (e) => {
    if (e.workerId === victimId) victimRunning++;
  });

  const victim = spawnTs(t, 'test/fixtures/slow-worker.ts', [String(scheduler.port), 'victim', '8', '200']);
  await waitFor('the victim worker to register', () => victimId !== -1);
  const survivor = worker(t, scheduler.port, {
    concurrency: 8,
    handlers: { slow: async (p) => (await new Promise((r) => setTimeout(r, 5)), `done:${p.toString()}`) },
  });
  await survivor.ready();

  const c = client(t, scheduler.port);
  const settled = new Map<number, number>();
  const tasks = Array.from({ length: 200 }, (_, i) =>
    c.submit('slow', `job-${i}`).then((r) => {
      settled.set(i, (settled.get(i) ?? 0) + 1);
      return r;
    }),
  );
  await waitFor('the victim to hold tasks', () => victimRunning > 0);
  victim.proc.kill('SIGKILL');
  t.equal(await victim.exited, 'SIGKILL');

  const results = await within(30_000, 'all 200 results', Promise.all(tasks));
  results.forEach((r, i) => {
    if (r !== `done:job-${i}`) t.fail(`task ${i}: ${r}`);
  });
  t.equal(settled.size, 200, 'every promise settled');
  t.ok([...settled.values()].every((n) => n === 1), 'no promise settled twice');
  t.equal(completions.size, 200, 'the scheduler completed 200 distinct tasks');
  t.ok([...completions.values()].every((n) => n === 1), 'no task completed twice');
  t.ok(scheduler.stats().requeued >= 1, `tasks were requeued (${scheduler.stats().requeued})`);
  t.equal(scheduler.stats().workers, 1);
});

t.test('handler errors reach the client with a stable code and message; the worker keeps serving', async (t) => {
  const scheduler = await startScheduler(t);
  const w = worker(t, scheduler.port, {
    handlers: {
      ...builtinHandlers,
      boom: () => {
        throw new Error('kaboom');
      },
      coded: async () => {
        throw Object.assign(new Error('no such account'), { code: 'E_NO_ACCOUNT' });
      },
      wrong: () => 42 as unknown as string,
    },
  });
  await w.ready();
  const c = client(t, scheduler.port);
  await t.rejects(c.submit('boom', ''), { name: 'TaskFailedError', code: ErrorCode.HANDLER, message: 'kaboom' });
  await t.rejects(c.submit('coded', ''), { code: 'E_NO_ACCOUNT', message: 'no such account' });
  await t.rejects(c.submit('wrong', ''), { code: ErrorCode.HANDLER });
  await t.rejects(c.submit('arith', '1+(2*3'), { code: ErrorCode.HANDLER, message: "missing ')' for '(' at column 3" });
  const err = await c.submit('arith', '1/0').catch((e: unknown) => e);
  t.ok(err instanceof TaskFailedError && err instanceof TaskwireError, 'TaskFailedError extends TaskwireError');
  t.equal(await c.submit('arith', '2**10'), '1024', 'still serving after failures');
  t.equal(scheduler.stats().failed, 5);
});

t.test('tasks wait for a worker of their type; other types are not blocked behind them', async (t) => {
  const scheduler = await startScheduler(t);
  const c = client(t, scheduler.port);
  const pending = c.submit('later', 'x');
  const w1 = worker(t, scheduler.port);
  await w1.ready();
  t.equal(await c.submit('sha256', 'abc'), sha256('abc'));
  t.equal(scheduler.stats().queued, 1, 'the task for the missing type is still queued');
  worker(t, scheduler.port, { handlers: { later: (p) => `late ${p.toString()}` } });
  t.equal(await within(5000, 'the late task', pending), 'late x');
});

t.test('submitBuffer returns raw bytes; binary payloads pass through untouched', async (t) => {
  const scheduler = await startScheduler(t);
  const w = worker(t, scheduler.port, { handlers: { reverse: (p) => Buffer.from(p).reverse() } });
  await w.ready();
  const c = client(t, scheduler.port);
  const bytes = Uint8Array.from([0, 255, 1, 254, 0x80]);
  t.same([...(await c.submitBuffer('reverse', bytes))], [0x80, 254, 1, 255, 0]);
});

t.test('submissions made before the handshake go out after it, in order; an oversized one is refused unsent', async (t) => {
  const scheduler = await startScheduler(t);
  const ran: string[] = [];
  const echo = (p: Buffer): Buffer => {
    ran.push(p.toString());
    return p;
  };
  const w = worker(t, scheduler.port, { concurrency: 1, handlers: { echo } });
  await w.ready();
  const c = createClient({ port: scheduler.port, maxPayload: 1024 });
  t.teardown(() => c.close());
  // Before connect() resolves, so these are written to the client's outbox. Multi-byte text near the limit
  // takes the exact size check: 300 x '€' is 900 bytes (accepted), 400 x '€' is 1200 (refused).
  const inputs = Array.from({ length: 200 }, (_, i) => `early ${i}`);
  const early = inputs.map((s) => c.submit('echo', s));
  const near = c.submit('echo', '€'.repeat(300));
  await t.rejects(c.submit('echo', '€'.repeat(400)), { code: ErrorCode.TOO_LARGE, message: /a task of 1214 bytes exceeds maxPayload \(1024\)/ });
  await t.rejects(c.submit('echo', Buffer.alloc(1100)), { code: ErrorCode.TOO_LARGE, message: /a task of 1114 bytes exceeds maxPayload/ });
  t.same(await within(10_000, 'the early results', Promise.all(early)), inputs, 'every early submission, answered');
  t.equal(await near, '€'.repeat(300), 'the 900-byte one went through');
  t.equal(await c.submit('echo', 'after'), 'after', 'the connection is intact after the refusals');
  t.same(ran, [...inputs, '€'.repeat(300), 'after'], 'run in submission order, and nothing refused was sent');
});

t.test('client errors: unreachable scheduler, closed client, lost connection', async (t) => {
  const scheduler = await startScheduler(t);
  const port = scheduler.port;

  const closed = createClient({ port });
  await closed.connect();
  await closed.close();
  await t.rejects(closed.submit('sha256', 'x'), { code: ErrorCode.CLOSED });

  const c = createClient({ port });
  await c.connect();
  const stuck = c.submit('nobody-runs-this', 'x');
  await waitFor('the task to be queued', () => scheduler.stats().queued === 1);
  const stuckFails = t.rejects(stuck, { code: ErrorCode.SHUTDOWN }, 'a task queued at shutdown fails with E_SHUTDOWN');
  await scheduler.close();
  await stuckFails;
  await t.rejects(c.submit('sha256', 'y'), { code: ErrorCode.DISCONNECTED }, 'later submits say the connection is gone');

  const unreachable = createClient({ port });
  await t.rejects(unreachable.connect(), { code: ErrorCode.CONNECT });
  await t.rejects(unreachable.submit('sha256', 'x'), { code: ErrorCode.CONNECT });
});

t.test('a client that drops its connection loses pending tasks with E_DISCONNECTED', async (t) => {
  // A fake scheduler that completes the handshake and then resets the connection.
  const server = net.createServer((socket) => {
    socket.once('data', () => {
      socket.write(encode(writeHello, { version: PROTOCOL_VERSION, role: Role.SCHEDULER, heartbeatMs: 5000, name: 'fake', token: '' }));
      setTimeout(() => socket.destroy(), 50);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const c = createClient({ port: (server.address() as net.AddressInfo).port });
  await t.rejects(within(5000, 'rejection', c.submit('sha256', 'x')), { code: ErrorCode.DISCONNECTED });
});

t.test('a worker started before the scheduler connects once it is up, and reconnects after a restart', async (t) => {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise((r) => probe.close(r));

  const w = worker(t, port);
  const reconnects: number[] = [];
  w.on('reconnecting', (r) => reconnects.push(r.delayMs));
  await waitFor('a few failed attempts', () => reconnects.length >= 3);
  t.ok(reconnects.every((d) => d >= 10 && d <= 200), `backoff delays within bounds: ${reconnects.join(', ')}`);

  const first = await startScheduler(t, { port });
  await within(5000, 'worker connects', w.ready());
  const c1 = client(t, port);
  t.equal(await c1.submit('sha256', 'one'), sha256('one'));
  await first.close();

  const second = await startScheduler(t, { port });
  await waitFor('worker re-registers', () => second.stats().workers === 1);
  const c2 = client(t, port);
  t.equal(await c2.submit('sha256', 'two'), sha256('two'));
});

t.test('worker close() finishes running tasks before disconnecting', async (t) => {
  const scheduler = await startScheduler(t);
  const w = createWorker({
    port: scheduler.port,
    concurrency: 4,
    handlers: { slow: async (p) => (await new Promise((r) => setTimeout(r, 100)), `ok ${p.toString()}`) },
  });
  await w.ready();
  const c = client(t, scheduler.port);
  const tasks = [1, 2, 3, 4].map((i) => c.submit('slow', String(i)));
  await waitFor('all four running', () => w.activeTasks === 4);
  const queuedLater = c.submit('slow', 'after-close');
  await w.close();
  t.same(await Promise.all(tasks), ['ok 1', 'ok 2', 'ok 3', 'ok 4']);
  t.equal(w.connected, false);
  await waitFor('the scheduler to see the worker leave', () => scheduler.stats().workers === 0);
  t.equal(scheduler.stats().queued, 1, 'the task submitted after close() waits for another worker');
  worker(t, scheduler.port, { handlers: { slow: (p) => `late ${p.toString()}` } });
  t.equal(await within(5000, 'requeued task', queuedLater), 'late after-close');
});

t.test('keepalive: a worker that goes silent loses its task at the timeout, then is dropped', async (t) => {
  // A worker holding tasks is not dropped for silence alone (it may be computing); the task timeout takes the
  // task back, and from then on the silence counts.
  const scheduler = await startScheduler(t, { heartbeatMs: 50, timeoutMs: 300 });
  const left: string[] = [];
  scheduler.on('peerLeft', (p) => left.push(p.reason));
  // A raw "worker" that registers, takes a task, then says nothing more.
  const socket = net.connect(scheduler.port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  await new Promise((r) => socket.once('connect', r));
  const { writeReady } = await import('../lib/protocol/index.js');
  socket.write(encode(writeHello, { version: PROTOCOL_VERSION, role: Role.WORKER, heartbeatMs: 0, name: 'mute', token: '' }));
  socket.write(encode(writeReady, 1, ['sha256']));
  await waitFor('the mute worker to register', () => scheduler.stats().workers === 1);

  const c = client(t, scheduler.port);
  const task = c.submit('sha256', 'survives');
  await waitFor('the task to reach the mute worker', () => scheduler.stats().inFlight === 1);
  await waitFor('the mute worker to be dropped', () => scheduler.stats().workers === 0, 2000);
  t.match(left.join(';'), /no frame for 3 keepalive intervals/);
  t.equal(scheduler.stats().requeued, 1);
  worker(t, scheduler.port);
  t.equal(await within(5000, 'requeued result', task), sha256('survives'));
});

t.test('a peer sending garbage gets an ERROR frame and is closed; others keep being served', async (t) => {
  const scheduler = await startScheduler(t);
  const w = worker(t, scheduler.port);
  await w.ready();
  const c = client(t, scheduler.port);

  const cases: Array<[string, Buffer, string]> = [
    ['garbage first frame', Buffer.from('GET / HTTP/1.1\r\n\r\n'), ErrorCode.PROTOCOL],
    // Before the handshake only a HELLO is expected, so an oversized first frame is "not a HELLO" (PROTOCOL.md 4.1).
    ['oversized first frame', Buffer.from([Cmd.SUBMIT, 0xff, 0xff, 0xff, 0xff]), ErrorCode.PROTOCOL],
    [
      'oversized frame that cannot be skipped, after the handshake',
      Buffer.concat([
        encode(writeHello, { version: PROTOCOL_VERSION, role: Role.CLIENT, heartbeatMs: 0, name: 'x', token: '', settings: {} }),
        Buffer.from([Cmd.HELLO, 0xff, 0xff, 0xff, 0xff]),
      ]),
      ErrorCode.FRAME_TOO_LARGE,
    ],
    [
      'wrong protocol version',
      encode(writeHello, { version: 99, role: Role.CLIENT, heartbeatMs: 0, name: 'x', token: '' }),
      ErrorCode.VERSION,
    ],
    [
      'client sending a worker frame',
      Buffer.concat([
        encode(writeHello, { version: PROTOCOL_VERSION, role: Role.CLIENT, heartbeatMs: 0, name: 'x', token: '' }),
        Buffer.from([Cmd.READY, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0]),
      ]),
      ErrorCode.PROTOCOL,
    ],
  ];
  for (const [name, bytes, code] of cases) {
    const socket = net.connect(scheduler.port, '127.0.0.1');
    t.teardown(() => socket.destroy());
    const chunks: Buffer[] = [];
    socket.on('data', (d) => chunks.push(d));
    socket.write(bytes);
    await within(5000, `${name}: connection closed`, new Promise((r) => socket.once('close', r)));
    const all = Buffer.concat(chunks);
    // The scheduler may have answered a valid HELLO first; the ERROR frame is the last frame.
    let offset = 0;
    let last: { cmd: number; payload: Buffer } | null = null;
    while (offset + 5 <= all.length) {
      const len = all.readUInt32BE(offset + 1);
      last = { cmd: all[offset]!, payload: all.subarray(offset + 5, offset + 5 + len) };
      offset += 5 + len;
    }
    t.equal(last?.cmd, Cmd.ERROR, `${name}: ERROR frame received`);
    if (last) t.equal(decodeError(last.payload).code, code, `${name}: code ${code}`);
  }
  t.equal(await c.submit('sha256', 'still here'), sha256('still here'), 'the well-behaved client is still served');
  t.equal(scheduler.stats().connections, 2);
});

t.test('options are validated at construction with E_INVALID naming the option', async (t) => {
  t.throws(() => createWorker({ concurrency: 0 }), { code: ErrorCode.INVALID, message: /options\.concurrency/ });
  t.throws(() => createWorker({ handlers: {} }), { code: ErrorCode.INVALID, message: /options\.handlers/ });
  t.throws(() => createClient({ port: 70000 }), { code: ErrorCode.INVALID, message: /options\.port/ });
  const { createScheduler } = await import('../lib/index.js');
  t.throws(() => createScheduler({ heartbeatMs: -1 }), { code: ErrorCode.INVALID, message: /options\.heartbeatMs/ });
});
