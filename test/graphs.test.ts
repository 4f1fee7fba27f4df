// Graph jobs on real sockets and processes: a fan-out spread over workers and combined, inputs in order, one
// answer; a failing node with its cause; cancel of a running graph; a worker process killed mid-graph; the byte
// limit; bad shapes; detached graphs read by another client.

import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient, ErrorCode, type GraphNode, type Handlers } from '../lib/index.js';
import { spawnTs, startScheduler, waitFor, within, startClient as client, startWorker as worker } from './helpers.js';

/** `n` parts of type `part`, each `part:<i>`, combined by a `join` root. */
function fan(n: number, part = 'part'): GraphNode[] {
  const nodes: GraphNode[] = Array.from({ length: n }, (_, i) => ({ type: part, payload: `${i}` }));
  nodes.push({ type: 'join', payload: '+', inputs: nodes.map((_, i) => i) });
  return nodes;
}

/** Handlers that record which worker ran what; `join` joins its inputs with its payload. */
function recording(name: string, ran: string[], delayMs = 0): Handlers {
  return {
    part: async (payload) => {
      ran.push(name);
      if (delayMs) await sleep(delayMs);
      return `p${payload.toString()}`;
    },
    join: (payload, context) => context.inputs.map((b) => b.toString()).join(payload.toString()),
  };
}

t.test('a fan-out runs on every worker, and its root gets the results in input order; the graph answers once', async (t) => {
  const scheduler = await startScheduler(t);
  const ran: string[] = [];
  for (const name of ['w1', 'w2', 'w3']) worker(t, scheduler.port, recording(name, ran, 20), { name, concurrency: 2 });
  await waitFor('three workers', () => scheduler.stats().workers === 3);
  const c = client(t, scheduler.port);
  const result = await within(10_000, 'the graph', c.submitGraph(fan(12)));
  t.equal(result, Array.from({ length: 12 }, (_, i) => `p${i}`).join('+'));
  t.same([...new Set(ran)].sort(), ['w1', 'w2', 'w3'], 'every worker ran parts');
  t.match(scheduler.stats(), { submitted: 1, completed: 1, failed: 0, dispatched: 13, queued: 0, inFlight: 0 });
});

t.test('a failing node fails the graph with the node and its cause; the others are cancelled', async (t) => {
  const scheduler = await startScheduler(t);
  const aborted: string[] = [];
  worker(t, scheduler.port, {
    part: async (payload, context) => {
      if (payload.toString() === '1') throw Object.assign(new Error('part 1 broke'), { code: 'E_PART' });
      await new Promise((resolve) => context.signal.addEventListener('abort', resolve, { once: true }));
      aborted.push(payload.toString());
      return 'never used';
    },
    join: () => 'never',
  }, { concurrency: 4 });
  const c = client(t, scheduler.port);
  const error = await within(10_000, 'the failure', c.submitGraph(fan(3)).catch((e: unknown) => e));
  t.match(error, { code: 'E_PART', message: 'node 1 (part) failed: part 1 broke', node: 1 });
  await waitFor('the other parts to see their abort', () => aborted.length === 2);
  t.same(aborted.sort(), ['0', '2']);
  t.match(scheduler.stats(), { failed: 1, completed: 0 });
});

t.test('cancel of a running graph from another client: running nodes see their abort, queued ones never run', async (t) => {
  const scheduler = await startScheduler(t);
  const started: string[] = [];
  const aborted: string[] = [];
  worker(t, scheduler.port, {
    part: async (payload, context) => {
      started.push(payload.toString());
      await new Promise((resolve) => context.signal.addEventListener('abort', resolve, { once: true }));
      aborted.push(`${payload}:${(context.signal.reason as { code?: string }).code}`);
      return 'x';
    },
    join: () => 'never',
  }, { concurrency: 2, prefetch: 0 });
  const owner = client(t, scheduler.port);
  const job = await owner.enqueueGraph(fan(5));
  await waitFor('two parts running', () => started.length === 2);
  const other = client(t, scheduler.port);
  t.match(await other.status(job.id), { type: 'graph', state: 'running', nodes: { total: 6, done: 0 } });
  t.equal(await other.cancel(job.id), 'cancelled');
  await t.rejects(job.result, { code: ErrorCode.CANCELLED });
  await waitFor('both running parts to see their abort', () => aborted.length === 2);
  t.same(aborted.sort(), ['0:E_CANCELLED', '1:E_CANCELLED']);
  await sleep(100);
  t.equal(started.length, 2, 'no other part started');
  t.match(scheduler.stats(), { cancelled: 1, queued: 0 });
});

t.test('a worker process killed mid-graph costs only its running nodes; the graph completes once', async (t) => {
  const scheduler = await startScheduler(t, { heartbeatMs: 200 });
  // The child runs `slow` nodes for 5 s: killed while it holds some, which go to the worker that stays.
  const child = spawnTs(t, 'test/fixtures/slow-worker.ts', [String(scheduler.port), 'doomed', '4', '5000']);
  await waitFor('the child worker', () => child.stdout().includes('connected'));
  const ran: string[] = [];
  const c = client(t, scheduler.port);
  const nodes = fan(8, 'slow');
  const result = c.submitGraph(nodes);
  await waitFor('the child to hold 4 nodes', () => scheduler.stats().inFlight === 4);
  worker(t, scheduler.port, {
    slow: (payload) => (ran.push(payload.toString()), `done:${payload}`),
    join: (payload, context) => context.inputs.map((b) => b.toString()).join(payload.toString()),
  }, { name: 'survivor' });
  await waitFor('the survivor to run the 4 queued nodes', () => ran.length === 4);
  child.proc.kill('SIGKILL');
  const answer = await within(10_000, 'the graph', result);
  t.equal(answer, Array.from({ length: 8 }, (_, i) => `done:${i}`).join('+'));
  t.equal(ran.length, 8, 'the 4 nodes the dead worker held ran again on the survivor, each once');
  t.match(scheduler.stats(), { requeued: 4, completed: 1, failed: 0 });
});

t.test('a graph past maxGraphBytes fails with E_GRAPH_MEMORY; a bad shape is E_GRAPH; the client checks what it can', async (t) => {
  const scheduler = await startScheduler(t, { maxGraphBytes: 64 * 1024 });
  worker(t, scheduler.port, { part: () => 'x'.repeat(40 * 1024), join: () => 'never' });
  const c = client(t, scheduler.port);
  const error = await c.submitGraph(fan(3)).catch((e: unknown) => e);
  t.match(error, { code: ErrorCode.GRAPH_MEMORY, message: /81920 bytes; at most 65536.*maxGraphBytes/ });
  await t.rejects(c.submitGraph([{ type: 'part', payload: 'a', inputs: [1] }, { type: 'join', payload: '', inputs: [0] }]), { code: ErrorCode.GRAPH, message: /root/ });
  await t.rejects(c.submitGraph([{ type: 'part', payload: 'a' }, { type: 'join', payload: '' }]), { code: ErrorCode.GRAPH, message: /no node consumes the result of node 0/ });
  await t.rejects(c.submitGraph([]), { code: ErrorCode.INVALID });
  await t.rejects(c.submitGraph([{ type: 'part', payload: 5 as never }]), { code: ErrorCode.INVALID, message: /node 0: payload/ });
  await t.rejects(c.submitGraph(fan(1), { delayMs: 10 }), { code: ErrorCode.INVALID, message: /no delay/ });
  t.equal(await c.submit('part', 'still served'), 'x'.repeat(40 * 1024), 'the client and scheduler carry on');
});

t.test('a detached graph runs on after its client left; another client follows its nodes and reads its result', async (t) => {
  const scheduler = await startScheduler(t);
  const first = createClient({ port: scheduler.port });
  const job = await first.enqueueGraph(fan(4), { detach: true });
  job.result.catch(() => {});
  await first.close();
  const other = client(t, scheduler.port);
  t.match(await other.status(job.id), { type: 'graph', state: 'queued', detached: true, nodes: { total: 5, done: 0 } });
  const progress: number[] = [];
  const waited = other.wait(job.id, { onProgress: (p) => progress.push(p.value) });
  const ran: string[] = [];
  worker(t, scheduler.port, recording('w', ran, 150), { concurrency: 1, prefetch: 0 });
  t.equal(await within(10_000, 'the result', waited), 'p0+p1+p2+p3');
  t.ok(progress.length >= 2 && progress.every((v, i) => i === 0 || v > progress[i - 1]!), `nodes done, rising: ${progress.join(', ')}`);
  t.match(await other.status(job.id), { state: 'completed', type: 'graph', result: 'p0+p1+p2+p3', nodes: { total: 5, done: 5 }, attempts: 5 });
});
