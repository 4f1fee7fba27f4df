// The built CLIs (dist/*.js) as users run them: child processes on a free port, reaped at teardown.

import t from 'tap';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createClient } from '../lib/index.js';
import { root, runCli, sha256, spawnChild, startServer, waitFor, within } from './helpers.js';

const HELLO_SHA = '185f8db32271fe25f561a6fc938b2e264306ec304eda518007d1764826381969';

if (!existsSync(path.join(root, 'dist', 'server.js'))) {
  throw new Error('dist/ is missing: run `npm run build` (npm test does it first)');
}

t.test('--help on every CLI', async (t) => {
  for (const name of ['server', 'worker', 'client'] as const) {
    const { code, stdout } = await runCli(t, name, ['--help']);
    t.equal(code, 0, `${name} --help exits 0`);
    t.match(stdout, new RegExp(`taskwire-${name}`), `${name} --help names the program`);
    t.match(stdout, /--port/, `${name} --help lists --port`);
  }
});

t.test('server with a local worker; client prints results, exit codes and JSON', async (t) => {
  const { child, port } = await startServer(t, ['--local-workers', '1']);
  const p = ['--port', String(port)];

  let r = await runCli(t, 'client', [...p, 'Hello']);
  t.same([r.code, r.stdout], [0, `${HELLO_SHA}\n`], 'client.js "Hello" prints the digest');

  r = await runCli(t, 'client', [...p, '--type', 'arith', '1+(2*3)/4-5']);
  t.same([r.code, r.stdout], [0, '-2.5\n']);

  r = await runCli(t, 'client', [...p, '--type', 'arith', '2+3, 5*6, 10-4']);
  t.same([r.code, r.stdout], [0, '2+3 = 5\n5*6 = 30\n10-4 = 6\n'], 'comma-separated list, one line each in order');

  r = await runCli(t, 'client', [...p, 'a', 'b', 'Hello, World!']);
  t.equal(r.code, 0);
  t.equal(r.stdout, `a = ${sha256('a')}\nb = ${sha256('b')}\nHello, World! = ${sha256('Hello, World!')}\n`, 'sha256 inputs are never split on commas');

  r = await runCli(t, 'client', [...p, '--type', 'arith', '1+1', '2/0']);
  t.equal(r.code, 1, 'a failed task makes the exit status 1');
  t.equal(r.stdout, '1+1 = 2\n2/0 = error: division by zero at column 2 (E_HANDLER)\n');

  r = await runCli(t, 'client', [...p, '--type', 'arith', '(1+']);
  t.equal(r.code, 1);
  t.equal(r.stdout, '');
  t.equal(r.stderr, 'taskwire-client: unexpected end of expression at column 4 (E_HANDLER)\n', 'one line, no stack trace');

  r = await runCli(t, 'client', [...p, '--json', '--type', 'arith', '6*7', '1/0']);
  t.equal(r.code, 1);
  t.same(JSON.parse(r.stdout), [
    { input: '6*7', ok: true, result: '42' },
    { input: '1/0', ok: false, code: 'E_HANDLER', error: 'division by zero at column 2' },
  ]);

  r = await runCli(t, 'client', ['Hello'], { TASKWIRE_PORT: String(port) });
  t.equal(r.stdout, `${HELLO_SHA}\n`, 'TASKWIRE_PORT is honoured');

  child.proc.kill('SIGTERM');
  t.equal(await within(10_000, 'server exit', child.exited), 0, 'the server exits 0 on SIGTERM');
});

t.test('client: unreachable scheduler, timeout and usage errors give one line and exit 2', async (t) => {
  const { child, port } = await startServer(t); // no workers: tasks wait
  let r = await runCli(t, 'client', ['--port', String(port), '--timeout', '300', 'x']);
  t.equal(r.code, 2);
  t.match(r.stderr, /^taskwire-client: timed out after 300 ms with 1 task\(s\) unanswered \(is a worker for 'sha256' running\?\)\n$/);

  child.proc.kill('SIGTERM');
  await child.exited;
  r = await runCli(t, 'client', ['--port', String(port), 'x']);
  t.equal(r.code, 2);
  t.match(r.stderr, /^taskwire-client: cannot reach the scheduler at 127\.0\.0\.1:\d+: ECONNREFUSED \(E_CONNECT\)\n$/);
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');

  r = await runCli(t, 'client', []);
  t.equal(r.code, 2, 'a usage error exits 2');
  t.match(r.stderr, /give at least one input/);
});

t.test('client interrupted with SIGINT prints what it has and exits 1', async (t) => {
  const { child: server, port } = await startServer(t, ['-v']); // no workers: the tasks wait; -v logs clients
  const client = spawnChild(t, process.execPath, [path.join(root, 'dist', 'client.js'), '--port', String(port), 'a', 'b']);
  await waitFor('the client to connect', () => /client .* connected/.test(server.stderr()));
  client.proc.kill('SIGINT');
  t.equal(await within(10_000, 'client exit', client.exited), 1);
  t.equal(client.stdout(), 'a = error: the client was closed (E_CLOSED)\nb = error: the client was closed (E_CLOSED)\n');
});

t.test('separate worker process: 20,000 sha256 tasks from one client all return the correct digest', async (t) => {
  const { port } = await startServer(t);
  const worker = spawnChild(t, process.execPath, [path.join(root, 'dist', 'worker.js'), '--port', String(port)]);
  await waitFor('the worker to connect', () => /connected to scheduler/.test(worker.stderr()));

  const client = createClient({ port });
  t.teardown(() => client.close());
  const inputs = Array.from({ length: 20_000 }, (_, i) => `task-${i}`);
  const results = await within(60_000, '20,000 results', Promise.all(inputs.map((s) => client.submit('sha256', s))));
  const wrong = results.filter((r, i) => r !== sha256(inputs[i]!)).length;
  t.equal(results.length, 20_000);
  t.equal(wrong, 0, 'every digest is correct');

  worker.proc.kill('SIGTERM');
  t.equal(await within(15_000, 'worker exit', worker.exited), 0, 'the worker exits 0 on SIGTERM');
  t.match(worker.stderr(), /SIGTERM received, shutting down/);
});

t.test('invalid option values are reported in one line', async (t) => {
  const r = await runCli(t, 'worker', ['--concurrency', '0']);
  t.equal(r.code, 2);
  t.equal(r.stderr, 'taskwire-worker: --concurrency must be a whole number from 1 to 1000000, got "0" (see --help)\n');
});

t.test('peer-supplied names, job types and messages are escaped in the logs (regression: a worker name forged log lines)', async (t) => {
  const { child, port } = await startServer(t, ['-v']);
  const { createWorker } = await import('../lib/index.js');
  const evil = 'evil\n[taskwire-server] worker admin ready\u001b[31m\u202e';
  const w = createWorker({ port, name: evil, handlers: { [`type\r\nforged`]: () => 'x' }, reconnectMinMs: 20 });
  t.teardown(() => w.close());
  await w.ready();
  const c = createClient({ port, name: 'client\u0007bell' });
  t.teardown(() => c.close());
  await c.connect();
  await waitFor('both logged', () => child.stderr().includes('bell') && child.stderr().includes('ready'));
  const out = child.stderr();
  t.notOk(/[\u0000-\u0009\u000b-\u001f\u007f\u202e]/.test(out), 'no control character reaches the log but its newlines');
  t.match(out, 'worker evil\\n[taskwire-server] worker admin ready\\u{001b}[31m\\u{202e}', 'the name is shown, escaped');
  t.match(out, 'type\\r\\nforged', 'so is the job type');
  t.match(out, 'client client\\u{0007}bell', 'and the client name');
  t.ok(
    out.split('\n').some((line) => line.startsWith('taskwire-server: worker evil\\n') && line.includes(') ready: type\\r\\nforged x16')),
    'one line, from the name to its job types and concurrency',
  );
  child.proc.kill('SIGTERM');
  await within(10_000, 'server exit', child.exited);
});
