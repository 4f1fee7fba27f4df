// The built CLIs' edges: help wrapping, each program's own environment variables, one-line usage errors, numeric
// flags, a closed stdout, --timeout over the handshake, a refused worker and a port that is not a scheduler.

import t from 'tap';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { root, runCli, sha256, spawnChild, startScheduler, startServer, startWorker, waitFor, within } from './helpers.js';

const PROGRAMS = ['server', 'worker', 'client'] as const;

/** A listener on a free port that the test closes at teardown. */
async function listen(t: { teardown(fn: () => unknown): void }, server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => void server.close());
  return (server.address() as net.AddressInfo).port;
}

t.test('--help wraps on word boundaries at the width asked for, 80 through a pipe', async (t) => {
  // cliui butts "[string]" against a description that fills its column: not a cut word, so split there too.
  const words = (text: string): string[] => [...new Set(text.replace(/\[/g, ' [').split(/\s+/).filter(Boolean))].sort();
  for (const name of PROGRAMS) {
    const wide = await runCli(t, name, ['--help'], { COLUMNS: '120' });
    for (const [columns, width] of [['60', 60], ['', 80]] as const) {
      const { code, stdout } = await runCli(t, name, ['--help'], { COLUMNS: columns });
      t.equal(code, 0);
      t.ok(stdout.split('\n').every((line) => line.length <= width), `${name}: every line fits ${width} columns`);
      // A word cut at the margin ("conn" + "ect") leaves fragments that the wider layout does not have.
      t.same(words(stdout), words(wide.stdout), `${name} at ${width} columns: the same words as at 120, none cut`);
    }
  }
});

t.test("each program reads only its own TASKWIRE_* variables, and they take effect", async (t) => {
  const foreign = { TASKWIRE_LOCAL_WORKERS: '1', TASKWIRE_TYPE: 'arith', TASKWIRE_LIMIT: '1', TASKWIRE_JOBS: 'none.js', TASKWIRE_PREFETCH: 'x' };
  // The server with the client's and worker's variables set starts; its own TASKWIRE_LOCAL_WORKERS is not foreign.
  const server = spawnChild(t, process.execPath, [path.join(root, 'dist', 'server.js'), '--port', '0', '--http-port', '0'], {
    ...foreign,
    TASKWIRE_LOCAL_WORKERS: '1',
  });
  let port = 0;
  await waitFor('the server to listen', () => {
    port = Number(/listening on [^:\s]+:(\d+)/.exec(server.stderr())?.[1] ?? 0);
    return port > 0 || server.proc.exitCode !== null;
  });
  t.match(server.stderr(), /with 1 local worker/, "the server's own TASKWIRE_LOCAL_WORKERS takes effect");

  // The client ignores TASKWIRE_LOCAL_WORKERS, TASKWIRE_JOBS and TASKWIRE_PREFETCH, and takes TASKWIRE_PORT and TASKWIRE_TYPE.
  let r = await runCli(t, 'client', ['6*7'], { ...foreign, TASKWIRE_PORT: String(port) });
  t.same([r.code, r.stdout, r.stderr], [0, '42\n', ''], 'client: TASKWIRE_TYPE=arith applies, the others are ignored');
  r = await runCli(t, 'client', ['--type', 'sha256', 'a'], { ...foreign, TASKWIRE_PORT: String(port) });
  t.match(r.stdout, /^ca978112/, 'the command line wins over the variable');
  r = await runCli(t, 'client', ['jobs'], { ...foreign, TASKWIRE_PORT: String(port) });
  t.equal(r.code, 0, 'a command that takes no --type is not refused for TASKWIRE_TYPE');
  t.equal(r.stdout.trim().split('\n').length, 1, "the jobs command's own TASKWIRE_LIMIT=1 applies (2 jobs so far)");

  // The worker with the server's and client's variables set connects (its own TASKWIRE_PREFETCH is left out here).
  const { TASKWIRE_PREFETCH: _, TASKWIRE_JOBS: __, ...forWorker } = foreign;
  const worker = spawnChild(t, process.execPath, [path.join(root, 'dist', 'worker.js')], { ...forWorker, TASKWIRE_PORT: String(port), TASKWIRE_NAME: 'env-named' });
  // The scheduler logs the worker once its READY is read, which may come after the worker says it connected.
  await waitFor('the scheduler to log the worker', () => /worker env-named/.test(server.stderr()) || worker.proc.exitCode !== null);
  t.match(server.stderr(), /worker env-named/, "the worker's TASKWIRE_NAME takes effect");
  worker.proc.kill('SIGTERM');
  await within(10_000, 'worker exit', worker.exited);

  // A program's own variable is validated like its flag.
  r = await runCli(t, 'worker', [], { TASKWIRE_GRACE: 'abc' });
  t.same([r.code, r.stderr], [2, 'taskwire-worker: --grace must be a whole number of ms from 0 to 86400000, got "abc" (see --help)\n']);

  for (const name of PROGRAMS) {
    const help = await runCli(t, name, ['--help']);
    t.match(help.stdout, /Environment: TASKWIRE_HOST, TASKWIRE_PORT/, `${name} --help lists its variables`);
  }
  const serverHelp = await runCli(t, 'server', ['--help']);
  t.match(serverHelp.stdout.replace(/\s+/g, ' '), /TASKWIRE_LOCAL_WORKERS/);
  const clientHelp = await runCli(t, 'client', ['--help']);
  t.notMatch(clientHelp.stdout, /TASKWIRE_LOCAL_WORKERS/, "the client's help does not list the server's");
  server.proc.kill('SIGTERM');
  await within(10_000, 'server exit', server.exited);
});

t.test('usage errors: one line pointing at --help, exit 2; inputs beginning with "-"', async (t) => {
  for (const name of PROGRAMS) {
    const r = await runCli(t, name, ['--bogus']);
    t.same([r.code, r.stdout], [2, ''], `${name}: exit 2, nothing on stdout`);
    t.equal(r.stderr, `taskwire-${name}: Unknown argument: bogus (see --help)\n`, `${name}: one line`);
  }
  let r = await runCli(t, 'client', ['--type', 'arith', '-5+2']);
  t.equal(r.code, 2);
  t.equal(r.stderr.split('\n').length, 2, 'one line');
  t.match(r.stderr, /an input that begins with "-" goes after --, as in: taskwire-client \[options\] -- -5\+2 \(see --help\)/);

  const { port } = await startServer(t, ['--local-workers', '1']);
  r = await runCli(t, 'client', ['--port', String(port), '--type', 'arith', '--', '-5+2']);
  t.same([r.code, r.stdout], [0, '-3\n'], 'after --, it is an input');
});

t.test('numeric options are validated and their errors name the flag', async (t) => {
  const cases: [(typeof PROGRAMS)[number], string[], string][] = [
    ['worker', ['--grace', 'abc'], '--grace must be a whole number of ms from 0 to 86400000, got "abc"'],
    ['worker', ['--port', 'abc'], '--port must be a whole number from 1 to 65535, got "abc"'],
    ['worker', ['--prefetch', '1.5'], '--prefetch must be a whole number from 0, got "1.5"'],
    ['server', ['--port', 'abc'], '--port must be a whole number from 0 to 65535, got "abc"'],
    ['server', ['--max-queued', '-1'], '--max-queued must be a whole number from 0, got "-1"'],
    ['server', ['--heartbeat', '5'], '--heartbeat must be a whole number of ms from 10 to 3600000, got "5"'],
    ['client', ['--timeout', '-5', 'x'], '--timeout must be a whole number of ms from 0, got "-5"'],
    ['client', ['--port', '70000', 'x'], '--port must be a whole number from 1 to 65535, got "70000"'],
    ['client', ['--retries', 'two', 'x'], '--retries must be a whole number from 0, got "two"'],
    ['client', ['jobs', '--limit', '0'], '--limit must be a whole number from 1, got "0"'],
  ];
  for (const [name, args, message] of cases) {
    const r = await runCli(t, name, args);
    t.same([r.code, r.stderr], [2, `taskwire-${name}: ${message} (see --help)\n`], `${name} ${args.join(' ')}`);
  }
  const r = await runCli(t, 'client', ['--port']);
  t.same([r.code, r.stderr.split('\n').length], [2, 2], 'a flag without its value: one line, exit 2');
});

t.test('a closed stdout ends the client quietly', async (t) => {
  const { port } = await startServer(t, ['--local-workers', '1']);
  const inputs = Array.from({ length: 2000 }, (_, i) => `input ${i}`);
  const child = spawn(process.execPath, [path.join(root, 'dist', 'client.js'), '--port', String(port), ...inputs], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  // Like `| head -1`: read the first chunk, then close the pipe.
  child.stdout.once('data', () => child.stdout.destroy());
  const [code] = (await within(30_000, 'client exit', once(child, 'exit'))) as [number | null];
  t.equal(code, 0);
  t.equal(err, '', 'no EPIPE stack trace');
});

t.test('--timeout covers connecting and the handshake', async (t) => {
  const sockets: net.Socket[] = [];
  const silent = net.createServer((s) => void sockets.push(s));
  t.teardown(() => void sockets.forEach((s) => s.destroy()));
  const port = await listen(t, silent);
  const started = Date.now();
  const r = await runCli(t, 'client', ['--port', String(port), '--timeout', '3000', 'x']);
  const took = Date.now() - started;
  t.equal(r.code, 2);
  t.equal(r.stderr, `taskwire-client: timed out after 3000 ms waiting for the scheduler at 127.0.0.1:${port} to answer\n`);
  t.ok(took < 3500 + 1000, `exits within ~3.5 s (took ${took} ms, including node's start)`);
  t.ok(took >= 3000, 'not before the timeout');
});

t.test('a worker refused for its token exits 2 with one line', async (t) => {
  const { port } = await startServer(t, ['--token', 'right']);
  const r = await runCli(t, 'worker', ['--port', String(port), '--token', 'wrong']);
  t.equal(r.code, 2);
  t.equal(r.stderr, `taskwire-worker: the scheduler at 127.0.0.1:${port} refused the connection: wrong token (E_AUTH)\n`);
});

t.test('a port that is not a taskwire scheduler is named as such', async (t) => {
  const web = http.createServer((_req, res) => res.end('hello'));
  const port = await listen(t, web);
  const r = await runCli(t, 'client', ['--port', String(port), '--timeout', '5000', 'x']);
  t.equal(r.code, 2);
  t.equal(r.stderr, `taskwire-client: the server at 127.0.0.1:${port} is not a taskwire scheduler (it answered "HTTP/1.1 400 Bad Request") (E_CONNECT)\n`);
});

t.test('inputs streamed from stdin and --file: in order, as they arrive, a bounded window outstanding', async (t) => {
  const scheduler = await startScheduler(t, { noWorkerTimeoutMs: 0 });
  const port = scheduler.port;
  const lines = Array.from({ length: 100_000 }, (_, i) => `line ${i}`);

  // No worker yet: the client submits a window's worth and stops reading, however much stdin has.
  const child = spawn(process.execPath, [path.join(root, 'dist', 'client.js'), '--port', String(port), '--timeout', '0', '-'], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin.on('error', () => {});
  child.stdin.write(lines.slice(0, 5000).join('\n') + '\n');
  await waitFor('the window to fill', () => scheduler.stats().queued >= 1000);
  await new Promise((r) => setTimeout(r, 300));
  t.ok(scheduler.stats().queued <= 1024, `at most a window outstanding (${scheduler.stats().queued})`);

  startWorker(t, port);
  // Results print while stdin is still open.
  await waitFor('the first results', () => out.split('\n').length > 5000, 20_000);
  t.ok(child.stdin.writable, 'results came before the end of the input');
  child.stdin.end(lines.slice(5000).join('\n') + '\n');
  const [code] = (await within(60_000, 'client exit', once(child, 'exit'))) as [number | null];
  t.equal(code, 0);
  t.equal(err, '');
  const got = out.split('\n');
  t.equal(got.length, 100_001, '100,000 lines and the final newline');
  t.equal(got[0], `line 0 = ${sha256('line 0')}`);
  t.equal(got[99_999], `line 99999 = ${sha256('line 99999')}`);
  t.ok(got.slice(0, -1).every((line, i) => line.startsWith(`line ${i} = `)), 'in input order');

  const file = path.join(await mkdtemp(path.join(tmpdir(), 'taskwire-')), 'inputs.txt');
  t.teardown(() => rm(path.dirname(file), { recursive: true, force: true }));
  await writeFile(file, '2+3\n\n1/0\n6*7\n');
  const r = await runCli(t, 'client', ['--port', String(port), '--type', 'arith', '--file', file]);
  t.same([r.code, r.stdout], [1, '2+3 = 5\n1/0 = error: division by zero at column 2 (E_HANDLER)\n6*7 = 42\n'], 'blank lines skipped; a failure makes it 1');
  const missing = await runCli(t, 'client', ['--port', String(port), '--file', `${file}.missing`]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /^taskwire-client: cannot read --file: ENOENT[^\n]*\n$/);
});
