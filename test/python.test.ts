// The Python client and worker (clients/python/taskwire.py), written from docs/PROTOCOL.md alone, against the real
// scheduler: the standing proof that the document is enough to implement the protocol in another language.

import t, { type Test } from 'tap';
import net from 'node:net';
import path from 'node:path';
import { once } from 'node:events';
import { spawnSync } from 'node:child_process';
import { builtinHandlers, TaskFailedError, type Scheduler, type WorkerInfo } from '../lib/index.js';
import { Cmd, Role, decodeError, encode, encodeKeepalive, writeHello } from '../lib/protocol/index.js';
import { root, sha256, spawnChild, startClient, startScheduler, startWorker, waitFor, within, type Child } from './helpers.js';

const PYTHON = process.env.PYTHON ?? 'python3';
const DIR = path.join(root, 'clients', 'python');
const SCRIPT = path.join(DIR, 'taskwire.py');
const probe = spawnSync(PYTHON, ['--version'], { encoding: 'utf8' });
const skip = probe.error || probe.status !== 0 ? `${PYTHON} is not installed: the Python client and worker are not tested` : false;
// Unbuffered, so that a child's lines arrive as they are printed; no token from the environment unless a test sets one.
const ENV = { PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1', PYTHONUTF8: '1', PYTHONIOENCODING: 'utf-8', TASKWIRE_TOKEN: '', TASKWIRE_HOST: '', TASKWIRE_PORT: '' };

interface Finished {
  code: number | string;
  stdout: string;
  stderr: string;
}

/** Starts the Python CLI; `closed` resolves once its output has been read to the end. */
function py(t: Test, args: string[], env: NodeJS.ProcessEnv = {}): Child & { closed: Promise<unknown> } {
  const child = spawnChild(t, PYTHON, [SCRIPT, ...args], { ...ENV, ...env });
  return { ...child, closed: once(child.proc, 'close') };
}

/** Runs a Python program that imports the module, with `args` as sys.argv[1:]. */
function pyScript(t: Test, code: string, args: string[]): Child & { closed: Promise<unknown> } {
  const child = spawnChild(t, PYTHON, ['-c', `import sys\nsys.path.insert(0, ${JSON.stringify(DIR)})\n${code}`, ...args], ENV);
  return { ...child, closed: once(child.proc, 'close') };
}

async function finish(child: Child & { closed: Promise<unknown> }, what: string, ms = 30_000): Promise<Finished> {
  await within(ms, what, child.closed);
  return { code: await child.exited, stdout: child.stdout(), stderr: child.stderr() };
}

function runPy(t: Test, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Finished> {
  return finish(py(t, args, env), `python3 taskwire.py ${args.join(' ')}`);
}

/** Every workerReady, to wait for a Python worker by name. */
function readyWorkers(scheduler: Scheduler): WorkerInfo[] {
  const ready: WorkerInfo[] = [];
  scheduler.on('workerReady', (w) => ready.push(w));
  return ready;
}

async function pyWorker(t: Test, scheduler: Scheduler, ready: WorkerInfo[], name: string, args: string[] = []): Promise<{ child: Child; info: WorkerInfo }> {
  const before = ready.filter((w) => w.name === name).length;
  const child = py(t, ['worker', '--port', String(scheduler.port), '--name', name, '-q', ...args]);
  await waitFor(`the Python worker ${name} to register (stderr: ${child.stderr()})`, () => ready.filter((w) => w.name === name).length > before || child.proc.exitCode !== null, 15_000);
  t.equal(child.proc.exitCode, null, `${name} is running`);
  return { child, info: ready.filter((w) => w.name === name).at(-1)! };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('the Python CLI submits through a Node worker: the right digest of each input', { skip }, async (t) => {
  const scheduler = await startScheduler(t);
  await startWorker(t, scheduler.port).ready();
  const port = String(scheduler.port);

  let r = await runPy(t, ['submit', '--port', port, '--type', 'sha256', 'Hello']);
  t.same(r, { code: 0, stdout: `${sha256('Hello')}\n`, stderr: '' }, 'one input prints its digest alone');

  const inputs = ['a', 'Hello, World!', 'é€𝄞', ' spaced  out ', 'x'.repeat(100_000)];
  r = await runPy(t, ['submit', '--port', port, ...inputs]);
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr})`);
  t.equal(r.stdout, inputs.map((s) => `${s} = ${sha256(s)}\n`).join(''), 'several print "input = digest" in input order, multibyte UTF-8 included');
  t.equal(scheduler.stats().completed, 1 + inputs.length);
});

t.test('a Python worker serves Python and Node clients: sha256 and echo', { skip }, async (t) => {
  const scheduler = await startScheduler(t);
  const ready = readyWorkers(scheduler);
  const { info } = await pyWorker(t, scheduler, ready, 'py-serve', ['--concurrency', '4']);
  t.same(info.types, ['sha256', 'echo'], 'READY names its job types');
  t.equal(info.concurrency, 4, 'and its concurrency');
  t.equal(info.mayBlock, false, 'its HELLO says its keepalives never wait for a handler (MAY_BLOCK 0): handlers run in threads');

  const r = await runPy(t, ['submit', '--port', String(scheduler.port), '--type', 'echo', 'ping', 'pöng']);
  t.same(r, { code: 0, stdout: 'ping = ping\npöng = pöng\n', stderr: '' }, 'Python client to Python worker');
  const c = startClient(t, scheduler.port);
  const inputs = Array.from({ length: 50 }, (_, i) => `node-${i}-✓`);
  t.same(await within(20_000, 'Node client results', Promise.all(inputs.map((s) => c.submit('sha256', s)))), inputs.map(sha256), 'Node client to Python worker');
  const bytes = Buffer.from([0, 255, 1, 254, 0x80]);
  t.same(await within(10_000, 'bytes echoed', c.submitBuffer('echo', bytes)), bytes, 'bodies are bytes: non-UTF-8 comes back unchanged');
});

t.test('pipelining: 1,000 submissions outstanding at once on one Python connection, each matched to its answer', { skip }, async (t) => {
  const N = 1000;
  const scheduler = await startScheduler(t);
  const clients: string[] = [];
  scheduler.on('clientJoined', (c) => clients.push(c.name));
  // Nothing is answered until all N tasks have arrived: a client that waited for each answer would never finish.
  let arrived = 0;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const w = startWorker(
    t,
    scheduler.port,
    {
      ...builtinHandlers,
      gate: async (payload) => {
        if (++arrived === N) open();
        await gate;
        await sleep(Math.random() * 20); // answers in an order of their own
        return sha256(payload.toString());
      },
    },
    { concurrency: N, prefetch: 0 },
  );
  await w.ready();
  const child = pyScript(
    t,
    `
import json
from taskwire import Client
port, n = int(sys.argv[1]), int(sys.argv[2])
with Client(port=port, name='pipeliner') as client:
    many = client.submit_many([('gate', f'item-{i}') for i in range(n)], wait=60)
    futures = [client.submit_async('sha256', f'future-{i}') for i in range(200)]
    done = [f.result(60) for f in futures]
    one = client.submit('sha256', 'one')
print(json.dumps({'many': [r.decode() for r in many], 'futures': [r.decode() for r in done], 'one': one.decode()}))
`,
    [String(scheduler.port), String(N)],
  );
  const r = await finish(child, 'the pipelining script', 60_000);
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr})`);
  const out = JSON.parse(r.stdout) as { many: string[]; futures: string[]; one: string };
  t.equal(arrived, N, `all ${N} tasks were outstanding at once`);
  t.same(out.many, Array.from({ length: N }, (_, i) => sha256(`item-${i}`)), 'submit_many: every result, in the order submitted');
  t.same(out.futures, Array.from({ length: 200 }, (_, i) => sha256(`future-${i}`)), 'submit_async: 200 futures, each its own result');
  t.equal(out.one, sha256('one'), 'submit');
  t.same(clients, ['pipeliner'], 'all over one connection');
  t.equal(scheduler.stats().completed, N + 201);
});

t.test('handler errors in a Python worker reach a Node client as TaskFailedError with their code and message', { skip }, async (t) => {
  const scheduler = await startScheduler(t);
  const ready = readyWorkers(scheduler);
  pyScript(
    t,
    `
from taskwire import Worker
class AccountError(Exception):
    code = 'E_NO_ACCOUNT'
class NotACode(Exception):
    code = 404
def boom(payload):
    raise ValueError('kaboom')
def coded(payload):
    raise AccountError('no such account: ' + payload.decode())
def not_a_code(payload):
    raise NotACode('not found')
def wrong(payload):
    return 42
Worker(port=int(sys.argv[1]), name='py-errors', concurrency=2, handlers={
    'boom': boom, 'coded': coded, 'not-a-code': not_a_code, 'wrong': wrong, 'upper': lambda p: p.decode().upper(),
}).run()
`,
    [String(scheduler.port)],
  );
  await waitFor('the Python worker to register', () => ready.some((w) => w.name === 'py-errors'), 15_000);
  const c = startClient(t, scheduler.port);
  await t.rejects(c.submit('boom', ''), { name: 'TaskFailedError', code: 'E_HANDLER', message: 'kaboom' }, 'an exception: E_HANDLER and its text');
  await t.rejects(c.submit('coded', 'Zoë'), { code: 'E_NO_ACCOUNT', message: 'no such account: Zoë' }, 'its string code passes through');
  await t.rejects(c.submit('not-a-code', ''), { code: 'E_HANDLER', message: 'not found' }, 'a code that is not a string is E_HANDLER');
  await t.rejects(c.submit('wrong', ''), { code: 'E_HANDLER', message: /returned int/ }, 'a result that is not str or bytes');
  const err = await c.submit('boom', '').catch((e: unknown) => e);
  t.ok(err instanceof TaskFailedError, 'a TaskFailedError');
  t.equal(await c.submit('upper', 'straße'), 'STRASSE', 'the worker keeps serving after failures');

  const r = await runPy(t, ['submit', '--port', String(scheduler.port), '--type', 'coded', 'Zoë']);
  t.same(r, { code: 1, stdout: '', stderr: 'taskwire.py: no such account: Zoë (E_NO_ACCOUNT)\n' }, 'the Python CLI: exit 1, one line');
  const script = pyScript(
    t,
    `
from taskwire import Client, TaskFailedError
with Client(port=int(sys.argv[1])) as client:
    try:
        client.submit('coded', 'Ann')
    except TaskFailedError as e:
        print(e.code, e.message, sep='|')
    print(client.submit_many([('upper', 'a'), ('boom', ''), ('upper', 'b')], return_exceptions=True))
`,
    [String(scheduler.port)],
  );
  const s = await finish(script, 'the Python client script');
  t.equal(s.code, 0, `exit 0 (stderr: ${s.stderr})`);
  t.equal(s.stdout, "E_NO_ACCOUNT|no such account: Ann\n[b'A', TaskFailedError('kaboom'), b'B']\n", 'the Python client raises TaskFailedError(code, message)');
});

t.test('keepalives: Python peers stay connected across many intervals; a SIGSTOPped one is dropped after 3, with its tasks', { skip }, async (t) => {
  const HEARTBEAT = 200;
  const scheduler = await startScheduler(t, { heartbeatMs: HEARTBEAT });
  const ready = readyWorkers(scheduler);
  const left: { name: string; reason: string; requeued: number; at: number }[] = [];
  scheduler.on('peerLeft', (p) => left.push({ name: p.name, reason: p.reason, requeued: p.requeued, at: Date.now() }));
  const { child: idleWorker, info } = await pyWorker(t, scheduler, ready, 'py-idle');

  // An idle Python client and worker for 8 intervals: what keeps them is keepalives alone.
  const idle = pyScript(
    t,
    `
import time
from taskwire import Client
with Client(port=int(sys.argv[1]), name='py-idle-client') as client:
    time.sleep(1.6)
    print(client.heartbeat_ms, client.submit('echo', 'still here').decode())
`,
    [String(scheduler.port)],
  );
  let worst = 0;
  const deadline = Date.now() + 1600;
  while (Date.now() < deadline) {
    const w = scheduler.workers().find((x) => x.id === info.id);
    if (w) worst = Math.max(worst, Date.now() - w.lastSeenAt);
    await sleep(20);
  }
  const r = await finish(idle, 'the idle client');
  t.same([r.code, r.stdout], [0, `${HEARTBEAT} still here\n`], `the idle client learned the interval and was served after 8 of them (stderr: ${r.stderr})`);
  t.same(left.filter((p) => /keepalive/.test(p.reason)), [], 'nobody was dropped for silence');
  // A missed keepalive shows as close to 2 intervals of silence; up to 150 ms late is left to a loaded machine.
  t.ok(worst < 2 * HEARTBEAT - 50, `the idle worker was heard from every interval (longest silence ${worst} ms)`);
  idleWorker.proc.kill('SIGTERM');
  t.equal(await within(10_000, 'the idle worker to stop', idleWorker.exited), 0, 'SIGTERM stops the worker gracefully: exit 0');
  await waitFor('the idle worker to leave', () => left.some((p) => p.name === 'py-idle'));

  // A frozen worker holding tasks: MAY_BLOCK 0 makes silence death even with leases, so its tasks run elsewhere.
  const { child: frozen } = await pyWorker(t, scheduler, ready, 'py-frozen', ['--concurrency', '3', '--delay', '60000']);
  const c = startClient(t, scheduler.port);
  const inputs = ['f1', 'f2', 'f3'];
  const results = Promise.all(inputs.map((s) => c.submit('sha256', s)));
  await waitFor('the frozen worker to hold 3 tasks', () => scheduler.workers().some((w) => w.name === 'py-frozen' && w.inFlight === 3) && scheduler.stats().inFlight === 3);
  frozen.proc.kill('SIGSTOP');
  const stoppedAt = Date.now();
  t.teardown(() => void frozen.proc.kill('SIGCONT'));
  await waitFor('the frozen worker to be dropped', () => left.some((p) => p.name === 'py-frozen'), 5000);
  const dropped = left.find((p) => p.name === 'py-frozen')!;
  const after = dropped.at - stoppedAt;
  t.match(dropped, { reason: 'no frame for 3 keepalive intervals', requeued: 3 }, 'dropped for silence, its 3 tasks requeued');
  // Its last keepalive went out at most one interval before the stop, so 2 intervals after the stop at the soonest.
  t.ok(after >= 2 * HEARTBEAT - 20 && after <= 3 * HEARTBEAT + 1000, `dropped ${after} ms after SIGSTOP (3 intervals of ${HEARTBEAT} ms after its last frame)`);
  await startWorker(t, scheduler.port).ready();
  t.same(await within(10_000, 'the requeued tasks', results), inputs.map(sha256), 'its tasks completed on a Node worker');

  frozen.proc.kill('SIGCONT');
  await waitFor('the thawed worker to reconnect', () => ready.filter((w) => w.name === 'py-frozen').length === 2, 15_000);
  t.pass('thawed, it found its connection closed and reconnected');
});

t.test('a Python client keeps a heartbeat of the scheduler\'s interval and gives up on a silent scheduler after 3 intervals', { skip }, async (t) => {
  const HEARTBEAT = 100;
  const LIVELY_MS = 1000;
  let buf = Buffer.alloc(0);
  const frames: { cmd: number; payload: Buffer; at: number }[] = [];
  let lastSent = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
        const length = buf.readUInt32BE(1);
        frames.push({ cmd: buf[0]!, payload: buf.subarray(5, 5 + length), at: Date.now() });
        buf = buf.subarray(5 + length);
        if (frames.length === 1) {
          // A scheduler that answers the HELLO, keeps alive for a while, then falls silent without closing.
          socket.write(encode(writeHello, { version: 4, role: Role.SCHEDULER, heartbeatMs: HEARTBEAT, name: 'mute', token: '', settings: { maxPayload: 1 << 20 } }));
          const helloAt = (lastSent = Date.now());
          const timer = setInterval(() => {
            if (Date.now() - helloAt >= LIVELY_MS) return clearInterval(timer);
            socket.write(encodeKeepalive());
            lastSent = Date.now();
          }, HEARTBEAT);
          t.teardown(() => clearInterval(timer));
        }
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const port = (server.address() as net.AddressInfo).port;
  const child = pyScript(
    t,
    `
from taskwire import Client, TaskwireError
client = Client(port=int(sys.argv[1]))
try:
    client.submit('sha256', 'never answered', wait=10)
except TaskwireError as e:
    print(e.code)
`,
    [String(port)],
  );
  const r = await finish(child, 'the Python client against a mute scheduler');
  t.same([r.code, r.stdout], [0, 'E_TIMEOUT\n'], `the pending submission failed with E_TIMEOUT (stderr: ${r.stderr})`);
  const [hello, ...rest] = frames;
  t.same([hello!.cmd, hello!.payload[0], hello!.payload[1]], [Cmd.HELLO, 4, Role.CLIENT], 'its HELLO: version 4, role client');
  t.equal(rest[0]!.cmd, Cmd.SUBMIT, 'then its SUBMIT');
  const keepalives = rest.filter((f) => f.cmd === Cmd.HELLO && f.payload.length === 0);
  const lively = keepalives.filter((f) => f.at - hello!.at <= LIVELY_MS);
  t.ok(lively.length >= 7 && lively.length <= 12, `${lively.length} keepalives in ${LIVELY_MS} ms at an interval of ${HEARTBEAT} ms`);
  const error = rest.at(-1)!;
  t.equal(error.cmd, Cmd.ERROR, 'its last frame is an ERROR');
  t.equal(decodeError(error.payload).code, 'E_TIMEOUT', 'E_TIMEOUT');
  const silent = error.at - lastSent;
  t.ok(silent >= 3 * HEARTBEAT - 10 && silent <= 3 * HEARTBEAT + 700, `sent ${silent} ms after the scheduler's last frame (3 intervals: ${3 * HEARTBEAT} ms)`);
});

t.test('a Python worker SIGKILLed mid-task: its tasks are requeued and completed by a Node worker, each once', { skip }, async (t) => {
  const scheduler = await startScheduler(t);
  const ready = readyWorkers(scheduler);
  const requeued: { fromWorkerId: number; reason: string }[] = [];
  scheduler.on('taskRequeued', (e) => requeued.push(e));
  const completed = new Map<number, number>();
  scheduler.on('taskCompleted', (e) => completed.set(e.taskId, (completed.get(e.taskId) ?? 0) + 1));
  const { child: victim, info } = await pyWorker(t, scheduler, ready, 'py-victim', ['--concurrency', '4', '--delay', '60000']);
  const c = startClient(t, scheduler.port);
  const inputs = Array.from({ length: 12 }, (_, i) => `victim-${i}`);
  const results = Promise.all(inputs.map((s) => c.submit('sha256', s)));
  await waitFor('the Python worker to hold 4 tasks', () => scheduler.stats().inFlight === 4);
  victim.proc.kill('SIGKILL');
  t.equal(await within(5000, 'the victim to die', victim.exited), 'SIGKILL');
  await startWorker(t, scheduler.port).ready();
  t.same(await within(20_000, 'every result', results), inputs.map(sha256), 'every task completed with the right digest');
  t.equal(requeued.length, 4, 'the 4 tasks it held were requeued');
  t.ok(requeued.every((e) => e.fromWorkerId === info.id), 'all from the Python worker');
  t.equal(completed.size, 12, '12 distinct tasks completed');
  t.ok([...completed.values()].every((n) => n === 1), 'none twice');
});

t.test('CANCEL: a Python worker still answers a lease taken back, so its slot serves again', { skip }, async (t) => {
  const scheduler = await startScheduler(t);
  const ready = readyWorkers(scheduler);
  const left: string[] = [];
  scheduler.on('peerLeft', (p) => left.push(p.name));
  // One slot, and a handler that gives up when its task is taken back: a lease never answered would hold the slot.
  await pyWorker(t, scheduler, ready, 'py-cancel', ['--concurrency', '1', '--delay', '3000']);
  const c = startClient(t, scheduler.port);
  const started = Date.now();
  await t.rejects(within(10_000, 'the timed-out task', c.submit('echo', 'slow', { timeoutMs: 200 })), { code: 'E_ATTEMPTS' }, 'times out on each of 3 attempts');
  const took = Date.now() - started;
  t.ok(took < 3000, `3 attempts on one slot in ${took} ms: each revoked lease was answered at once, not after the 3 s delay`);
  await waitFor('the third late answer', () => scheduler.stats().late === 3, 5000);
  t.match(scheduler.stats(), { timedOut: 3, late: 3 }, 'the 3 late answers were dropped');
  t.equal(await within(10_000, 'a task after', c.submit('echo', 'after')), 'after', 'the slot serves again');
  t.same(left, [], 'the worker was never disconnected');
});

t.test('a wrong or missing token: E_AUTH in Python, exit status 2 and one line on stderr', { skip }, async (t) => {
  const scheduler = await startScheduler(t, { token: 'sesame' });
  const joined: string[] = [];
  scheduler.on('clientJoined', (c) => joined.push(c.name));
  await startWorker(t, scheduler.port, undefined, { token: 'sesame' }).ready();
  const port = String(scheduler.port);
  for (const token of [['--token', 'wrong'], []]) {
    const r = await runPy(t, ['submit', '--port', port, ...token, 'Hello']);
    t.equal(r.code, 2, `submit ${token.join(' ') || 'without a token'}: exit 2`);
    t.equal(r.stdout, '');
    t.match(r.stderr, /^taskwire\.py: [^\n]*\(E_AUTH\)\n$/, `one line naming E_AUTH: ${r.stderr.trim()}`);
  }
  let r = await runPy(t, ['worker', '--port', port, '--token', 'nope']);
  t.equal(r.code, 2, 'a worker with a wrong token: exit 2');
  t.match(r.stderr, /^taskwire\.py: [^\n]*\(E_AUTH\)\n$/, 'one line naming E_AUTH');
  r = await runPy(t, ['submit', '--port', port, '--token', 'sesame', 'Hello']);
  t.same([r.code, r.stdout], [0, `${sha256('Hello')}\n`], 'the right token is served');
  r = await runPy(t, ['submit', '--port', port, 'Hello'], { TASKWIRE_TOKEN: 'sesame' });
  t.same([r.code, r.stdout], [0, `${sha256('Hello')}\n`], 'TASKWIRE_TOKEN works too');
  const s = await finish(
    pyScript(
      t,
      `
from taskwire import Client, TaskwireError
try:
    Client(port=int(sys.argv[1]), token='wrong')
except TaskwireError as e:
    print(e.code)
`,
      [port],
    ),
    'the library with a wrong token',
  );
  t.same([s.code, s.stdout], [0, 'E_AUTH\n'], 'the library raises TaskwireError with code E_AUTH');
  t.equal(joined.length, 2, 'only the two with the right token were ever registered');
});

t.test('an unreachable scheduler: exit status 2, one line', { skip }, async (t) => {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  const r = await runPy(t, ['submit', '--port', String(port), 'Hello']);
  t.equal(r.code, 2);
  t.match(r.stderr, /^taskwire\.py: cannot reach the scheduler at 127\.0\.0\.1:\d+: [^\n]*\(E_CONNECT\)\n$/, r.stderr.trim());
});
