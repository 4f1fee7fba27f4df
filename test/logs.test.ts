// The programs' logs, on real processes: everything on stderr, the levels (--quiet, default, -v, -vv) with a line
// per requeue, timeout, retry and dead letter at -v, and --log-format json for log collectors.

import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { root, runCli, sha256, spawnChild, startServer, waitFor, within } from './helpers.js';

const jobs = path.join(root, 'test', 'fixtures', 'log-jobs.mjs');
const worker = (t: Parameters<typeof spawnChild>[0], port: number, name: string, args: string[] = []) =>
  spawnChild(t, process.execPath, [path.join(root, 'dist', 'worker.js'), '--port', String(port), '--name', name, '--jobs', jobs, ...args]);
const lines = (text: string): string[] => text.split('\n').filter(Boolean);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
    probe.on('error', reject);
  });
}

t.test('-v logs each retry, timeout, requeue and dead letter; -vv each dispatch; all on stderr', async (t) => {
  const { child: server, port } = await startServer(t, ['-vv', '--task-timeout', '400', '--max-attempts', '2']);
  const wa = worker(t, port, 'wa', ['-v']);
  await waitFor('the worker to be ready', () => /worker wa .* ready/.test(server.stderr()));

  // A handler that throws, with a retry: a retry line, then a dead letter.
  let r = await runCli(t, 'client', ['--port', String(port), '--type', 'boom', '--retries', '1', 'x']);
  t.equal(r.code, 1);
  t.equal(r.stderr, 'taskwire-client: boom (E_HANDLER)\n', "the client's failure is its one line");
  await waitFor('the dead letter', () => /\(boom\) failed for good/.test(server.stderr()));
  t.match(server.stderr(), /taskwire-server: task \d+ \(boom\) will be retried: handler failed \(boom\); retry 1 in \d+ ms\n/);
  t.match(server.stderr(), /taskwire-server: task \d+ \(boom\) failed for good \(dead letter\) after 2 attempt\(s\): boom \(E_HANDLER\)\n/);
  t.match(server.stderr(), /taskwire-server: task \d+ \(boom\) attempt 1 -> worker wa\n/, '-vv: the dispatch');
  t.match(wa.stderr(), /taskwire-worker: task \d+ \(boom\) attempt 1 failed: boom \(E_HANDLER\)\n/, 'the worker at -v: the failure');

  // A task slower than --task-timeout: two timeouts, the second one past --max-attempts.
  r = await runCli(t, 'client', ['--port', String(port), '--type', 'slow', '5000']);
  t.equal(r.code, 1);
  t.match(r.stderr, /gave up after 2 attempts; last: timed out after 400 ms on worker wa \(E_ATTEMPTS\)/);
  await waitFor('the timeout lines', () => /\(slow\) failed for good/.test(server.stderr()));
  t.match(server.stderr(), /taskwire-server: task \d+ \(slow\) timed out after 400 ms on worker wa; requeued\n/);
  t.match(server.stderr(), /\(slow\) failed for good \(dead letter\) after 2 attempt\(s\): gave up after 2 attempts; last: timed out after 400 ms on worker wa \(E_ATTEMPTS\)/);
  await waitFor('the worker to log the abort', () => /\(slow\) attempt 2 taken back/.test(wa.stderr()));
  t.match(wa.stderr(), /taskwire-worker: task \d+ \(slow\) attempt 1 taken back: timed out after 400 ms on worker wa \(E_TIMEOUT\)\n/);

  // A worker lost while it runs a task: the requeue, naming the worker.
  const dispatches = (): number => (server.stderr().match(/\(slow\) attempt \d+ -> worker wa\n/g) ?? []).length;
  const before = dispatches();
  const client = spawnChild(t, process.execPath, [path.join(root, 'dist', 'client.js'), '--port', String(port), '--type', 'slow', '--task-timeout', '0', '60000']);
  await waitFor('the dispatch', () => dispatches() > before);
  wa.proc.kill('SIGKILL');
  await waitFor('the requeue and the departure', () => /requeued from worker wa[^]*worker wa left/.test(server.stderr()));
  t.match(server.stderr(), /taskwire-server: task \d+ \(slow\) requeued from worker wa: worker wa was lost: [^\n]+\n/);
  t.match(server.stderr(), /taskwire-server: worker wa left: [^\n]+, 1 task\(s\) requeued\n/);
  client.proc.kill('SIGKILL');

  t.equal(server.stdout(), '', 'the scheduler writes nothing on stdout');
  t.equal(wa.stdout(), '', 'nor does the worker');
});

t.test('the default level logs peers but no task events; --quiet logs neither', async (t) => {
  const { child: server, port } = await startServer(t, ['--local-workers', '1']);
  let r = await runCli(t, 'client', ['--port', String(port), '--type', 'arith', '1/0']);
  t.equal(r.code, 1);
  await new Promise((resolve) => setTimeout(resolve, 200)); // for a line the client's visit would have left
  t.match(server.stderr(), /taskwire-server: listening on 127\.0\.0\.1:\d+ with 1 local worker\(s\)\n/);
  t.match(server.stderr(), /taskwire-server: worker local-1 \(127\.0\.0\.1:\d+\) ready: sha256, arith/);
  t.notMatch(server.stderr(), /dead letter|->|client/, 'no task or client lines without -v');
  // Tasks move the worker's prefetch window, which it announces again: not news at the default level.
  r = await runCli(t, 'client', ['--port', String(port), ...Array.from({ length: 300 }, (_, i) => `x${i}`)]);
  t.equal(r.code, 0);
  t.equal((server.stderr().match(/worker local-1 .* ready:/g) ?? []).length, 1, 'one line for the worker, whatever its window does');

  // A quiet scheduler says nothing, not even where it listens: it gets a port known to be free.
  const free = await freePort();
  const q = spawnChild(t, process.execPath, [path.join(root, 'dist', 'server.js'), '--port', String(free), '--http-port', '0', '-q', '-w', '1']);
  for (let i = 0; i < 100; i++) {
    r = await runCli(t, 'client', ['--port', String(free), 'Hello', '--timeout', '2000']);
    if (r.code === 0 || q.proc.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.equal(r.stdout, `${sha256('Hello')}\n`, 'the quiet scheduler serves');
  q.proc.kill('SIGTERM');
  await within(10_000, 'quiet exit', q.exited);
  t.equal(q.stderr(), '', '--quiet: not a line, shutdown included');
  t.equal(q.stdout(), '');
});

t.test('--log-format json: one JSON object per line, with the event and its fields', async (t) => {
  const { child: server, port } = await startServer(t, ['-v', '--log-format', 'json']);
  const w = worker(t, port, 'jw', ['--log-format', 'json', '-v']);
  await waitFor('the worker to be ready', () => server.stderr().includes('"event":"workerReady"'));
  let r = await runCli(t, 'client', ['--port', String(port), '--type', 'boom', 'x', '--log-format', 'json']);
  t.equal(r.code, 1);
  const failed = JSON.parse(r.stderr) as Record<string, unknown>;
  t.match(failed, { level: 'error', program: 'taskwire-client', msg: 'boom (E_HANDLER)', event: 'jobFailed', code: 'E_HANDLER' });
  await waitFor('the dead letter', () => server.stderr().includes('"event":"deadLetter"'));
  const records = lines(server.stderr()).map((line) => JSON.parse(line) as Record<string, unknown>);
  for (const record of records) {
    t.type(record.time, 'string');
    t.ok(!Number.isNaN(Date.parse(record.time as string)), 'an ISO time');
    t.equal(record.program, 'taskwire-server');
  }
  t.match(records[0], { level: 'info', event: 'listening', host: '127.0.0.1', port });
  t.match(records.find((x) => x.event === 'workerReady'), { level: 'info', worker: 'jw', types: /boom/ });
  t.match(records.find((x) => x.event === 'deadLetter'), { level: 'verbose', type: 'boom', code: 'E_HANDLER', message: 'boom', attempt: 1, taskId: Number });
  await waitFor('the worker line', () => w.stderr().includes('"event":"taskFailed"'));
  const workerRecords = lines(w.stderr()).map((line) => JSON.parse(line) as Record<string, unknown>);
  t.match(workerRecords.find((x) => x.event === 'connected'), { level: 'info', program: 'taskwire-worker', remote: `127.0.0.1:${port}` });
  t.match(workerRecords.find((x) => x.event === 'taskFailed'), { level: 'verbose', type: 'boom', code: 'E_HANDLER', message: 'boom' });

  // A fatal error is a JSON line too: a port already taken.
  r = await runCli(t, 'server', ['--port', String(port), '--http-port', '0', '--log-format', 'json']);
  t.equal(r.code, 2);
  t.match(JSON.parse(r.stderr), { level: 'error', event: 'fatal', exitCode: 2, msg: /EADDRINUSE|in use/ });
  // The client's connection lines at -v, its result alone on stdout.
  r = await runCli(t, 'client', ['--port', String(port), '-v', '--type', 'slow', '10']);
  t.equal(r.stdout, 'slept 10\n');
  t.match(r.stderr, new RegExp(`^taskwire-client: connected to scheduler \\S+ at 127\\.0\\.0\\.1:${port}\\n$`));
});
