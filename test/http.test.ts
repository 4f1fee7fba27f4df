// The HTTP API on real sockets: submit, a job by id with long polling, cancel, the latest jobs, the workers,
// health; its errors (400/404/405/413 with the library's codes); the token and the loopback rule; and the
// command line's --http-port.

import t from 'tap';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode } from '../lib/index.js';
import { runCli, sha256, startScheduler, startServer, waitFor, startWorker as worker } from './helpers.js';

interface Reply {
  status: number;
  body: any;
  headers: Headers;
}

async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const init: RequestInit = { method, headers: { ...headers }, signal: AbortSignal.timeout(15_000) };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] = 'application/json';
  }
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

async function api(t: Parameters<typeof startScheduler>[0], options: Parameters<typeof startScheduler>[1] = {}) {
  const scheduler = await startScheduler(t, { httpPort: 0, ...options });
  return { scheduler, base: `http://127.0.0.1:${scheduler.httpPort}` };
}

t.test('the REST design: submit answers a job id at once, GET /job/{id} gives the answer, ?wait long-polls', async (t) => {
  const { scheduler, base } = await api(t);
  worker(t, scheduler.port);
  await waitFor('a worker', () => scheduler.stats().workers === 1);
  const submitted = await call(base, 'POST', '/submit', { task: '1+(2*3)/4-5' });
  t.equal(submitted.status, 200);
  t.match(submitted.body, { job_id: Number, finished: false });
  const id = submitted.body.job_id as number;
  const done = await call(base, 'GET', `/job/${id}?wait=5`);
  t.match(done, { status: 200, body: { job_id: id, finished: true, answer: -2.5, state: 'completed', type: 'arith', attempts: 1 } });
  const hash = await call(base, 'POST', '/submit', { type: 'sha256', payload: 'Hello', priority: 'high', timeout: 5000, retries: 1 });
  t.match((await call(base, 'GET', `/job/${hash.body.job_id}?wait=5`)).body, { finished: true, answer: sha256('Hello') });
  const bytes = await call(base, 'POST', '/submit', { type: 'sha256', payload_base64: Buffer.from([0xff, 0x00]).toString('base64') });
  t.match((await call(base, 'GET', `/job/${bytes.body.job_id}?wait=5`)).body, { answer: sha256(Buffer.from([0xff, 0x00]) as unknown as string) });
  const failed = await call(base, 'POST', '/submit', { task: '1/0' });
  t.match((await call(base, 'GET', `/job/${failed.body.job_id}?wait=5`)).body, { finished: true, state: 'failed', error: { code: ErrorCode.HANDLER, message: 'division by zero at column 2' } });
  const jobs = await call(base, 'GET', '/jobs');
  t.equal(jobs.status, 200);
  t.same(jobs.body.jobs.map((j: { job_id: number }) => j.job_id).slice(0, 4), [failed.body.job_id, bytes.body.job_id, hash.body.job_id, id], 'newest first');
  t.same((await call(base, 'GET', '/jobs?state=failed')).body.jobs.map((j: { job_id: number }) => j.job_id), [failed.body.job_id]);
});

t.test('a job in progress, a long poll that times out, cancel by DELETE; the workers and health', async (t) => {
  const { scheduler, base } = await api(t);
  const slow = (_p: Buffer, ctx: { signal: AbortSignal }) => new Promise<string>((resolve) => ctx.signal.addEventListener('abort', () => resolve('aborted')));
  worker(t, scheduler.port, { slow }, { name: 'slowpoke', concurrency: 3 });
  await waitFor('a worker', () => scheduler.stats().workers === 1);
  const { body } = await call(base, 'POST', '/submit', { type: 'slow', payload: 'x' });
  const started = Date.now();
  const polled = await call(base, 'GET', `/job/${body.job_id}?wait=0.3`);
  t.ok(Date.now() - started >= 250, 'the poll waited');
  t.match(polled.body, { job_id: body.job_id, finished: false, state: 'running', worker: 'slowpoke' });
  const workers = await call(base, 'GET', '/workers');
  t.match(workers.body.workers, [{ name: 'slowpoke', address: /^127\.0\.0\.1:\d+$/, transport: 'tcp', types: ['slow'], concurrency: 3, in_flight: 1, last_seen: String }]);
  const poll = call(base, 'GET', `/job/${body.job_id}?wait=10`);
  await sleep(50);
  t.match(await call(base, 'DELETE', `/job/${body.job_id}`), { status: 200, body: { job_id: body.job_id, outcome: 'cancelled' } });
  t.match((await poll).body, { finished: true, state: 'cancelled', error: { code: ErrorCode.CANCELLED } }, 'a waiting poll is answered at once');
  t.match(await call(base, 'DELETE', `/job/${body.job_id}`), { status: 200, body: { outcome: 'finished' } });
  t.match(await call(base, 'GET', '/healthz'), { status: 200, body: { status: 'ok', workers: 1 } });
});

t.test('bad requests get 400/404/405/413 with the library codes; the scheduler keeps serving', async (t) => {
  const { scheduler, base } = await api(t, { httpMaxBodyBytes: 2048 });
  worker(t, scheduler.port);
  await waitFor('a worker', () => scheduler.stats().workers === 1);
  const cases: [string, string, unknown, number, string, RegExp][] = [
    ['malformed JSON', 'POST', '{"task": ', 400, ErrorCode.INVALID, /not valid JSON/],
    ['not an object', 'POST', '[1,2]', 400, ErrorCode.INVALID, /JSON object/],
    ['empty body', 'POST', '', 400, ErrorCode.INVALID, /empty/],
    ['missing type', 'POST', { payload: 'x' }, 400, ErrorCode.INVALID, /missing field "type"/],
    ['missing payload', 'POST', { type: 'sha256' }, 400, ErrorCode.INVALID, /missing field "payload"/],
    ['unknown type', 'POST', { type: 'nope', payload: 'x' }, 400, ErrorCode.NO_WORKER, /unknown job type 'nope'/],
    ['unknown field', 'POST', { task: '1', colour: 'red' }, 400, ErrorCode.INVALID, /unknown field "colour"/],
    ['bad option', 'POST', { task: '1', retries: -1 }, 400, ErrorCode.INVALID, /"retries"/],
    ['too large', 'POST', { type: 'sha256', payload: 'x'.repeat(5000) }, 413, ErrorCode.TOO_LARGE, /limit of 2048/],
  ];
  for (const [name, method, body, status, code, message] of cases) {
    const reply = await call(base, method, '/submit', body);
    t.match(reply, { status, body: { error: { code, message } } }, name);
  }
  t.match(await call(base, 'GET', '/job/123'), { status: 404, body: { error: { code: ErrorCode.NO_SUCH_JOB } } });
  t.match(await call(base, 'GET', '/job/abc'), { status: 400, body: { error: { code: ErrorCode.INVALID } } });
  t.match(await call(base, 'DELETE', '/job/123'), { status: 404, body: { error: { code: ErrorCode.NO_SUCH_JOB } } });
  const wrong = await call(base, 'GET', '/submit');
  t.match(wrong, { status: 405, body: { error: { code: 'E_METHOD', message: /use POST/ } } });
  t.equal(wrong.headers.get('allow'), 'POST');
  t.match(await call(base, 'GET', '/nowhere'), { status: 404, body: { error: { code: 'E_NOT_FOUND' } } });
  t.match(await call(base, 'GET', '/jobs?state=lost'), { status: 400, body: { error: { code: ErrorCode.INVALID } } });
  const ok = await call(base, 'POST', '/submit', { task: '2**10' });
  t.match((await call(base, 'GET', `/job/${ok.body.job_id}?wait=5`)).body, { answer: 1024 }, 'and serves the next request');
});

t.test("the scheduler's token guards the HTTP API too; without one, other machines are refused", async (t) => {
  const { scheduler, base } = await api(t, { token: 's3cret' });
  worker(t, scheduler.port, undefined, { token: 's3cret' });
  await waitFor('a worker', () => scheduler.stats().workers === 1);
  t.match(await call(base, 'GET', '/jobs'), { status: 401, body: { error: { code: ErrorCode.AUTH, message: /Bearer/ } } });
  t.match(await call(base, 'GET', '/jobs', undefined, { authorization: 'Bearer nope' }), { status: 401, body: { error: { code: ErrorCode.AUTH, message: 'wrong token' } } });
  const ok = await call(base, 'POST', '/submit', { task: '6*7' }, { authorization: 'Bearer s3cret' });
  t.match((await call(base, 'GET', `/job/${ok.body.job_id}?wait=5`, undefined, { authorization: 'Bearer s3cret' })).body, { answer: 42 });

  // A request from another address of this machine is not a loopback one.
  const external = Object.values(os.networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
  if (!external) return t.comment('no non-loopback IPv4 address here: the loopback rule is not exercised');
  const open = await startScheduler(t, { host: '0.0.0.0', httpPort: 0 });
  t.match(await call(`http://${external}:${open.httpPort}`, 'GET', '/jobs'), { status: 403, body: { error: { code: ErrorCode.AUTH, message: /this machine only|own machine/ } } });
  t.equal((await call(`http://127.0.0.1:${open.httpPort}`, 'GET', '/jobs')).status, 200);
  const wide = await startScheduler(t, { host: '0.0.0.0', httpPort: 0, httpOpen: true });
  t.equal((await call(`http://${external}:${wide.httpPort}`, 'GET', '/jobs')).status, 200, 'unless told otherwise (httpOpen)');
});

t.test('the command line: --http-port serves the API beside the TCP port, and says where', async (t) => {
  const probe = await startScheduler(t, { httpPort: 0 });
  const free = probe.httpPort; // a port known free a moment ago
  await probe.close();
  const { child } = await startServer(t, ['--local-workers', '1', '--http-port', String(free)]);
  await waitFor('the HTTP line', () => child.stderr().includes('HTTP API'));
  t.match(child.stderr(), new RegExp(`HTTP API and dashboard on http://127\\.0\\.0\\.1:${free}/`));
  const base = `http://127.0.0.1:${free}`;
  await waitFor('the local worker', () => true);
  const { body } = await call(base, 'POST', '/submit', { task: '1+(2*3)/4-5' });
  t.match((await call(base, 'GET', `/job/${body.job_id}?wait=5`)).body, { answer: -2.5 });
  const bad = await runCli(t, 'server', ['--port', '0', '--http-port', 'abc']);
  t.match(bad, { code: 2, stderr: /--http-port/ });
});
