// HTTP workers on real sockets: a web service written here registers with POST /worker and is sent tasks as
// POST <url>; its errors are handler failures; an endpoint that refuses, times out or answers garbage is marked
// down, its tasks run elsewhere, and it comes back when it answers; requests reuse keep-alive connections.

import t from 'tap';
import http from 'node:http';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode } from '../lib/index.js';
import { startScheduler, waitFor, within, startClient as client, startWorker as worker } from './helpers.js';

const sha = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');

interface Endpoint {
  url: string;
  port: number;
  received: { job_id: number; type: string; payload?: string; payload_base64?: string; attempt: number }[];
  connections: number;
  mode: 'ok' | 'fail' | 'garbage' | 'hang';
  close(): Promise<void>;
}

/** A worker web service: POST /compute answers sha256 of the payload, or fails, or talks nonsense, or hangs. */
async function endpoint(t: Parameters<typeof startScheduler>[0], port = 0): Promise<Endpoint> {
  const state: Endpoint = { url: '', port: 0, received: [], connections: 0, mode: 'ok', close: async () => {} };
  const server = http.createServer((req, res) => {
    if (req.method !== 'POST') return void res.writeHead(405).end();
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const task = JSON.parse(body) as Endpoint['received'][number];
      state.received.push(task);
      const reply = (status: number, value: unknown): void => void res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
      if (state.mode === 'hang') return;
      if (state.mode === 'garbage') return void res.writeHead(200).end('<html>oops</html>');
      if (state.mode === 'fail') return reply(422, { error: { code: 'E_BAD_INPUT', message: `cannot hash ${task.payload}` } });
      const bytes = task.payload !== undefined ? Buffer.from(task.payload) : Buffer.from(task.payload_base64!, 'base64');
      reply(200, { result: sha(bytes) });
    });
  });
  server.on('connection', () => state.connections++);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  state.port = (server.address() as { port: number }).port;
  state.url = `http://127.0.0.1:${state.port}/compute`;
  state.close = () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  t.teardown(() => state.close());
  return state;
}

/** The dashboard's first event: its snapshot of the scheduler. */
async function dashboardSnapshot(base: string): Promise<{ workers: unknown[] }> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 10_000);
  try {
    const res = await fetch(`${base}/events`, { signal: controller.signal });
    const reader = res.body!.getReader();
    let text = '';
    const event = (): string | undefined => text.split('\n\n').slice(0, -1).flatMap((block) => block.split('\n')).find((line) => line.startsWith('data: '));
    while (event() === undefined) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the event stream ended before its first event: ${text}`);
      text += Buffer.from(value).toString('utf8');
    }
    return JSON.parse(event()!.slice('data: '.length)) as { workers: unknown[] };
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}

async function post(base: string, path: string, body: unknown, method = 'POST'): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${path}`, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.json() };
}

t.test('an HTTP worker registers, runs tasks from TCP clients over keep-alive connections, and deregisters', async (t) => {
  const scheduler = await startScheduler(t, { httpPort: 0 });
  const base = `http://127.0.0.1:${scheduler.httpPort}`;
  const web = await endpoint(t);
  const registered = await post(base, '/worker', { worker_name: 'Worker-1', url: web.url, types: ['sha256'], concurrency: 4 });
  t.match(registered, { status: 200, body: { worker_id: /^http-\d+$/ } });
  const workers = await post(base, '/workers', undefined, 'GET');
  t.match(workers.body.workers, [{ worker_id: registered.body.worker_id, status: 'up', name: 'Worker-1', transport: 'http', address: web.url, types: ['sha256'], concurrency: 4 }]);
  const c = client(t, scheduler.port);
  const inputs = Array.from({ length: 200 }, (_, i) => `task ${i}`);
  const results = await within(20_000, 'the results', Promise.all(inputs.map((input) => c.submit('sha256', input))));
  t.same(results, inputs.map(sha), 'every result is the endpoint\'s, in order');
  t.match(web.received[0], { job_id: Number, type: 'sha256', payload: String, attempt: 1 });
  t.ok(web.connections <= 8, `keep-alive: ${web.connections} connections for 200 tasks`);
  t.equal(await c.submit('sha256', Buffer.from([0xff, 0xfe])), sha(Buffer.from([0xff, 0xfe])), 'bytes that are not UTF-8 go as payload_base64');
  t.match(web.received.at(-1), { payload_base64: '//4=' });

  web.mode = 'fail';
  await t.rejects(c.submit('sha256', 'x'), { code: 'E_BAD_INPUT', message: 'cannot hash x' }, 'a 4xx with an error is the handler failing');
  t.match(await post(base, `/worker/${registered.body.worker_id}`, undefined, 'DELETE'), { status: 200, body: { removed: true } });
  t.equal(scheduler.stats().workers, 0);
  t.match(await post(base, '/worker/http-99', undefined, 'DELETE'), { status: 404 });
  t.match(await post(base, '/worker', { worker_name: 'x', url: 'ftp://nope', types: ['a'] }), { status: 400, body: { error: { code: ErrorCode.INVALID, message: /http/ } } });
  t.match(await post(base, '/worker', { worker_name: 'x', url: web.url, types: [] }), { status: 400, body: { error: { code: ErrorCode.INVALID, message: /types/ } } });
});

t.test('an endpoint that goes away is marked down, its tasks run elsewhere, and it comes back when it answers', async (t) => {
  const scheduler = await startScheduler(t, { httpPort: 0 });
  const base = `http://127.0.0.1:${scheduler.httpPort}`;
  const web = await endpoint(t);
  web.mode = 'hang';
  const { body } = await post(base, '/worker', { worker_name: 'flaky', url: web.url, types: ['sha256'], concurrency: 2 });
  const c = client(t, scheduler.port);
  const pending = ['a', 'b'].map((s) => c.submit('sha256', s));
  await waitFor('the endpoint to hold two tasks', () => web.received.length === 2);
  await web.close(); // refuses from now on; the held requests are cut
  await waitFor('marked down', () => scheduler.stats().workers === 0);
  const listed = await post(base, '/workers', undefined, 'GET');
  t.match(listed.body.workers, [{ worker_id: body.worker_id, status: 'down', down_reason: String }]);
  t.match((await dashboardSnapshot(base)).workers, [{ worker_id: body.worker_id, status: 'down', down_reason: String }], 'the dashboard shows it as the API does');
  worker(t, scheduler.port); // a TCP worker takes what the endpoint held
  t.same(await within(10_000, 'the requeued tasks', Promise.all(pending)), [sha('a'), sha('b')]);
  t.ok(scheduler.stats().requeued >= 2, 'requeued as for a lost worker');

  // It answers again on the same port: probed with backoff, it rejoins and gets work.
  const again = await endpoint(t, web.port);
  await waitFor('back up', () => scheduler.workers().some((w) => w.transport === 'http'), 15_000);
  const back = (await post(base, '/workers', undefined, 'GET')).body.workers.find((w: { worker_id: unknown }) => w.worker_id === body.worker_id);
  t.match(back, { status: 'up', name: 'flaky', transport: 'http' }, 'under the id it was registered with');
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => c.submit('sha256', `again ${i}`)));
  t.same(results, Array.from({ length: 40 }, (_, i) => sha(`again ${i}`)));
  t.ok(again.received.length > 0, `the endpoint ran ${again.received.length} of them after coming back`);
});

t.test('an endpoint that times out or answers garbage is marked down; the task runs elsewhere', async (t) => {
  const scheduler = await startScheduler(t, { httpPort: 0 });
  const base = `http://127.0.0.1:${scheduler.httpPort}`;
  const slow = await endpoint(t);
  slow.mode = 'hang';
  await post(base, '/worker', { worker_name: 'slow', url: slow.url, types: ['sha256'] });
  const c = client(t, scheduler.port);
  const timed = c.submit('sha256', 'late', { timeoutMs: 300 });
  await waitFor('the slow endpoint to get it', () => slow.received.length === 1);
  worker(t, scheduler.port, undefined, { name: 'tcp' }); // where the task goes once the endpoint timed out
  await waitFor('the TCP worker', () => scheduler.stats().workers === 2);
  t.equal(await within(10_000, 'the result', timed), sha('late'));
  await waitFor('marked down after the timeout', () => !scheduler.workers().some((w) => w.name === 'slow'), 5000);
  const junk = await endpoint(t);
  junk.mode = 'garbage';
  await post(base, '/worker', { worker_name: 'junk', url: junk.url, types: ['sha256'], concurrency: 4 });
  await waitFor('the junk endpoint', () => scheduler.workers().some((w) => w.name === 'junk'));
  const more = Array.from({ length: 10 }, (_, i) => `more ${i}`);
  t.same(await within(10_000, 'the results', Promise.all(more.map((s) => c.submit('sha256', s)))), more.map(sha), 'all correct, from the TCP worker');
  t.ok(junk.received.length >= 1, `the junk endpoint got ${junk.received.length} of them`);
  await waitFor('junk marked down', () => !scheduler.workers().some((w) => w.name === 'junk'), 5000);
  await sleep(50);
  t.match((await post(base, '/workers', undefined, 'GET')).body.workers.filter((w: { transport: string; status: string }) => w.transport === 'http'), [
    { name: 'slow', status: 'down', down_reason: /timeout/ },
    { name: 'junk', status: 'down', down_reason: /not JSON/ },
  ]);
});
