// The core's graph jobs: shape checks, inputs fed from results, parallel branches, one answer, failure, cancel,
// lost workers, retries and timeouts per node, the bytes a graph may hold, detached graphs.

import t from 'tap';
import { ErrorCode } from '../lib/errors.js';
import { Harness, bodyOf } from './core-harness.js';

/** Three sources whose results the root sums: the fan-out and combine of split jobs. */
const FAN = [
  { type: 'part', body: 'a' },
  { type: 'part', body: 'b' },
  { type: 'part', body: 'c' },
  { type: 'sum', body: '+', inputs: [0, 1, 2] },
];

t.test('a fan-out runs its sources in parallel and feeds the root their results, in input order; one answer', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 2, ['part', 'sum']);
  h.worker('w2', 2, ['part', 'sum']);
  const id = h.graph('c1', 7, FAN);
  t.ok(id > 0);
  t.same(h.sent.map((s) => [s.worker, s.body]).sort(), [['w1', 'a'], ['w1', 'c'], ['w2', 'b']], 'sources go out at once, over both workers');
  t.match(h.core.status(id), { type: 'graph', state: 'running', nodes: { total: 4, done: 0 } });
  // Results come back out of order; the root's inputs still follow its inputs' order.
  h.finish(h.find('c'), 'C');
  h.finish(h.find('a'), 'A');
  t.equal(h.sent.length, 3, 'the root waits for all its inputs');
  t.match(h.core.status(id), { nodes: { done: 2, bytes: 2 } });
  h.finish(h.find('b'), 'B');
  const root = h.find('+');
  t.same(root.inputs, ['A', 'B', 'C']);
  t.equal(root.client, null, 'a node has no owner of its own');
  t.match(h.core.status(id), { nodes: { done: 3, bytes: 3 } }, 'the root\'s inputs are held while it runs');
  h.finish(root, 'ABC');
  t.same(h.settled, [{ client: 'c1', requestId: 7, ok: true, body: 'ABC', code: '', message: '' }]);
  t.equal(h.core.status(id), null, 'an attached graph leaves no record');
  t.match(h.stats(), { submitted: 1, completed: 1, failed: 0, dispatched: 4, queued: 0, inFlight: 0 });
  t.equal(h.core.indexedJobs, 0);
  t.equal(h.c('c1').pending, 0);
  t.equal(h.c('c1').pendingBytes, 0);
  t.end();
});

t.test("a result is held only until every node consuming it has completed", (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 8, ['x']);
  // a -> b -> d, a -> c -> d: a's result is wanted by b and c.
  const id = h.graph('c1', 1, [
    { type: 'x', body: 'a' },
    { type: 'x', body: 'b', inputs: [0] },
    { type: 'x', body: 'c', inputs: [0] },
    { type: 'x', body: 'd', inputs: [1, 2] },
  ]);
  h.finish(h.find('a'), '1234');
  t.match(h.core.status(id), { nodes: { bytes: 4 } });
  h.finish(h.find('b'), 'bb');
  t.match(h.core.status(id), { nodes: { bytes: 6 } }, "c still wants a's result");
  h.finish(h.find('c'), 'cc');
  t.match(h.core.status(id), { nodes: { bytes: 4 } }, "a's result went with its last consumer");
  t.same(h.find('d').inputs, ['bb', 'cc']);
  h.finish(h.find('d'), 'end');
  t.match(h.settled, [{ requestId: 1, ok: true, body: 'end' }]);
  t.end();
});

t.test('a graph of a bad shape is refused with E_GRAPH, and nothing runs', (t) => {
  const h = new Harness({ maxGraphNodes: 4, maxGraphEdges: 3 });
  h.client('c1');
  h.worker('w1', 8, ['x']);
  const cases: [string, { type: string; body: string; inputs?: number[] }[], RegExp][] = [
    ['empty', [], /at least one node/],
    ['cycle', [{ type: 'x', body: 'a', inputs: [2] }, { type: 'x', body: 'b' }, { type: 'x', body: 'c', inputs: [0] }, { type: 'x', body: 'r', inputs: [1] }], /no node consumes|cycle/],
    ['pure cycle', [{ type: 'x', body: 'a', inputs: [1] }, { type: 'x', body: 'r', inputs: [0] }], /root/],
    ['no such node', [{ type: 'x', body: 'a' }, { type: 'x', body: 'r', inputs: [0, 5] }], /node 5, which does not exist/],
    ['self', [{ type: 'x', body: 'a' }, { type: 'x', body: 'r', inputs: [0, 1] }], /its own result|root/],
    ['unconsumed', [{ type: 'x', body: 'a' }, { type: 'x', body: 'r' }], /no node consumes the result of node 0/],
    ['root consumed', [{ type: 'x', body: 'a', inputs: [1] }, { type: 'x', body: 'r' }], /root/],
    ['too many nodes', Array.from({ length: 5 }, (_, i) => ({ type: 'x', body: `${i}`, inputs: i === 4 ? [0, 1, 2, 3] : [] })), /5 nodes; at most 4.*maxGraphNodes/],
    ['too many edges', [{ type: 'x', body: 'a' }, { type: 'x', body: 'r', inputs: [0, 0, 0, 0] }], /4 edges; at most 3.*maxGraphEdges/],
    ['empty type', [{ type: '', body: 'a' }, { type: 'x', body: 'r', inputs: [0] }], /empty job type/],
  ];
  cases.forEach(([name, nodes, message], i) => {
    t.equal(h.graph('c1', i, nodes), 0, name);
    t.match(h.settled.at(-1), { requestId: i, ok: false, code: ErrorCode.GRAPH, message }, name);
  });
  // A real cycle behind a source, among nodes that all have consumers: s -> 1 <-> 2, feeding the root.
  const wide = new Harness();
  wide.client('c1');
  const cycle = [{ type: 'x', body: 's' }, { type: 'x', body: 'a', inputs: [0, 2] }, { type: 'x', body: 'b', inputs: [1] }, { type: 'x', body: 'r', inputs: [2] }];
  t.equal(wide.graph('c1', 99, cycle), 0);
  t.match(wide.settled.at(-1), { code: ErrorCode.GRAPH, message: 'the graph has a cycle: node 1 waits for itself through its inputs' });
  t.equal(h.graph('c1', 100, [{ type: 'x', body: 'a' }, { type: 'x', body: 'r', inputs: [0] }], { delayMs: 5 }), 0);
  t.match(h.settled.at(-1), { code: ErrorCode.INVALID, message: /no delay/ });
  t.same(h.sent, []);
  t.match(h.stats(), { submitted: 0, rejected: cases.length + 1 });
  t.end();
});

t.test('a failing node fails the graph with its cause; the nodes still running or queued are withdrawn', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 2, ['x']);
  // Root r consumes a, b and c; a and b run, c waits in the queue (2 slots).
  const id = h.graph('c1', 1, [{ type: 'x', body: 'a' }, { type: 'x', body: 'b' }, { type: 'x', body: 'c' }, { type: 'x', body: 'r', inputs: [0, 1, 2] }]);
  t.equal(h.stats().queued, 1);
  h.failTask(h.find('b'), ErrorCode.HANDLER, 'b broke');
  t.same(h.settled, [{ client: 'c1', requestId: 1, ok: false, body: '', code: ErrorCode.HANDLER, message: 'node 1 (x) failed: b broke' }]);
  t.match(h.cancels, [{ taskId: h.find('a').taskId, code: ErrorCode.CANCELLED }], 'the running node a is told to abort');
  t.match(h.stats(), { queued: 0, failed: 1, deadLetters: 1 });
  t.same(h.bodies(), ['a', 'b'], 'c never ran');
  t.equal(h.finish(h.find('a')), null, "a's late answer is dropped quietly");
  t.match(h.stats(), { discarded: 1 });
  t.equal(h.busy('w1'), 0);
  t.equal(h.core.status(id), null);
  t.equal(h.settled.length, 1, 'one answer');
  t.end();
});

t.test('cancel by id ends a running graph: running nodes see their abort, queued ones go', (t) => {
  const h = new Harness();
  h.client('c1');
  h.client('c2');
  h.worker('w1', 1, ['x']);
  const id = h.graph('c1', 3, FAN.map((n) => ({ ...n, type: 'x' })));
  t.equal(h.core.cancel(id), 'cancelled');
  t.match(h.settled, [{ client: 'c1', requestId: 3, ok: false, code: ErrorCode.CANCELLED }]);
  t.equal(h.cancels.length, 1);
  t.match(h.stats(), { queued: 0, cancelled: 1 });
  t.equal(h.core.cancel(id), 'unknown', 'an attached graph leaves no record');
  h.finish(h.find('a'));
  t.equal(h.sent.length, 1, 'nothing more of it runs');
  t.end();
});

t.test('a worker lost mid-graph costs only its running nodes, which are requeued; the graph completes once', (t) => {
  const h = new Harness();
  h.client('c1');
  h.worker('w1', 1, ['x']);
  h.worker('w2', 1, ['x']);
  const id = h.graph('c1', 1, FAN.map((n) => ({ ...n, type: 'x' })));
  h.finish(h.find('a'), 'A');
  // w1 now runs c; b runs on w2.
  const onW1 = h.sent.at(-1)!;
  t.equal(onW1.worker, 'w1');
  h.lost('w1');
  t.match(h.left, [{ peer: 'w1', requeued: 1 }]);
  h.worker('w3', 1, ['x']);
  t.equal(h.sent.at(-1)!.worker, 'w3');
  t.equal(h.sent.at(-1)!.body, onW1.body);
  t.equal(h.sent.at(-1)!.attempt, 2);
  for (const d of h.sent.filter((s) => s.worker !== 'w1' && s.body !== '+')) if (h.busy(d.worker) > 0) h.finish(d, d.body.toUpperCase());
  h.finish(h.find('+'), 'done');
  t.same(h.find('+').inputs, ['A', 'B', 'C']);
  t.same(h.settled, [{ client: 'c1', requestId: 1, ok: true, body: 'done', code: '', message: '' }]);
  t.equal(h.core.status(id), null);
  t.end();
});

t.test('retries and timeouts apply per node', (t) => {
  const h = new Harness({ backoffMs: 10 });
  h.client('c1');
  h.worker('w1', 4, ['x']);
  h.worker('w2', 4, ['x']);
  h.graph('c1', 1, [{ type: 'x', body: 'flaky' }, { type: 'x', body: 'slow' }, { type: 'x', body: 'r', inputs: [0, 1] }], { retries: 1, timeoutMs: 1000 });
  h.failTask(h.find('flaky'), ErrorCode.HANDLER, 'once');
  t.equal(h.settled.length, 0, 'a node with a retry left is retried, not failed');
  h.tick(10);
  t.equal(h.find('flaky').attempt, 2);
  h.finish(h.find('flaky'), 'F');
  h.tick(2000);
  t.match(h.cancels, [{ code: ErrorCode.TIMEOUT }], 'the slow node timed out');
  t.equal(h.find('slow').attempt, 2, 'and was dispatched again');
  h.finish(h.find('slow'), 'S');
  t.same(h.find('r').inputs, ['F', 'S']);
  h.finish(h.find('r'), 'FS');
  t.match(h.settled, [{ ok: true, body: 'FS' }]);
  t.match(h.stats(), { retried: 1, timedOut: 1, completed: 1 });
  t.end();
});

t.test('a graph whose results would hold more than maxGraphBytes fails with E_GRAPH_MEMORY', (t) => {
  const h = new Harness({ maxGraphBytes: 10 });
  h.client('c1');
  h.worker('w1', 4, ['x']);
  h.graph('c1', 1, FAN.map((n) => ({ ...n, type: 'x' })));
  h.finish(h.find('a'), '123456');
  t.equal(h.settled.length, 0);
  h.finish(h.find('b'), '123456');
  t.match(h.settled, [{ ok: false, code: ErrorCode.GRAPH_MEMORY, message: /12 bytes; at most 10.*maxGraphBytes/ }]);
  t.match(h.cancels, [{ taskId: h.find('c').taskId }]);
  t.end();
});

t.test('a detached graph outlives its client, reports nodes done, and leaves a record; an attached one goes with it', (t) => {
  const h = new Harness();
  h.client('gone');
  h.client('other');
  h.worker('w1', 1, ['x']);
  const detached = h.graph('gone', 1, FAN.map((n) => ({ ...n, type: 'x' })), { detach: true });
  const attached = h.graph('gone', 2, [{ type: 'x', body: 'q' }, { type: 'x', body: 'qr', inputs: [0] }]);
  h.lost('gone');
  t.equal(h.core.status(attached), null);
  t.match(h.core.status(detached), { state: 'running', detached: true, nodes: { total: 4 } });
  h.core.wait(h.c('other'), 9, detached);
  for (let i = 0; i < 3; i++) h.finish(h.sent.at(-1)!, `r${i}`);
  t.match(h.core.status(detached), { nodes: { done: 3 }, progress: { value: 3, message: '3/4 nodes done' } });
  h.finish(h.find('+'), 'total');
  t.match(h.settled, [{ client: 'other', requestId: 9, ok: true, body: 'total' }]);
  const record = h.core.status(detached)!;
  t.match(record, { state: 'completed', type: 'graph', attempts: 4, nodes: { total: 4, done: 4 } });
  t.equal(bodyOf(record.result!).toString(), 'total');
  t.equal(h.bodies().includes('q'), false, "the attached graph's node never ran");
  t.match(h.stats(), { queued: 0, inFlight: 0, completed: 1 });
  t.end();
});

t.test("a node of a type nobody runs fails the graph with E_NO_WORKER; shutdown answers a graph's owner", (t) => {
  const h = new Harness({ noWorkerTimeoutMs: 100 });
  h.client('c1');
  h.worker('w1', 1, ['x']);
  h.graph('c1', 1, [{ type: 'x', body: 'a' }, { type: 'nobody', body: 'b' }, { type: 'x', body: 'r', inputs: [0, 1] }]);
  h.tick(200);
  t.match(h.settled, [{ requestId: 1, code: ErrorCode.NO_WORKER, message: /^node 1 \(nobody\) failed: no worker/ }]);
  h.graph('c1', 2, [{ type: 'x', body: 'a2' }, { type: 'x', body: 'r2', inputs: [0] }]);
  h.core.shutdown('closing');
  t.match(h.settled.at(-1), { requestId: 2, code: ErrorCode.SHUTDOWN });
  t.equal(h.core.indexedJobs, 0);
  t.end();
});
