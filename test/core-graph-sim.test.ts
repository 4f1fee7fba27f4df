// A seeded simulation of graph jobs in the core: random graphs run on workers that complete, fail, time out and
// are lost at random, while graphs are cancelled and clients leave. Whatever happens, every graph settles
// exactly once; a completed one answers what its nodes compute; every node is fed its inputs' true results;
// and nothing of a graph is left behind in the core.

import t from 'tap';
import { ErrorCode } from '../lib/errors.js';
import { mulberry32 } from './helpers.js';
import { Harness, type Sent } from './core-harness.js';

interface SimGraph {
  readonly client: string;
  readonly requestId: number;
  readonly nodes: { type: string; body: string; inputs: number[] }[];
  id: number;
  cancelled: boolean;
}

/** What a node computes: its body applied to its inputs' values, so a wrong or reordered input shows. */
function value(graph: SimGraph, index: number, memo = new Map<number, string>()): string {
  const known = memo.get(index);
  if (known !== undefined) return known;
  const node = graph.nodes[index]!;
  const out = `${node.body}(${node.inputs.map((i) => value(graph, i, memo)).join(',')})`;
  memo.set(index, out);
  return out;
}

function randomGraph(rnd: () => number, client: string, requestId: number): SimGraph {
  const n = 2 + Math.floor(rnd() * 12);
  const nodes = Array.from({ length: n }, (_, i) => ({ type: 'n', body: `v${i}`, inputs: [] as number[] }));
  for (let i = 1; i < n; i++) {
    const k = Math.floor(rnd() * 3);
    for (let j = 0; j < k; j++) nodes[i]!.inputs.push(Math.floor(rnd() * i));
  }
  // Every node but the root must be consumed: a node nothing consumes feeds the root.
  const consumed = new Set(nodes.flatMap((node) => node.inputs));
  for (let i = 0; i < n - 1; i++) if (!consumed.has(i)) nodes[n - 1]!.inputs.push(i);
  return { client, requestId, nodes, id: 0, cancelled: false };
}

/** What the seeds went through, all together: a simulation that exercised nothing would pass too. */
const totals = { graphs: 0, completed: 0, failed: 0, cancelled: 0, workersLost: 0, clientsLost: 0, timedOut: 0, requeued: 0 };

function simulate(seed: number): string | null {
  const rnd = mulberry32(seed);
  const h = new Harness({ maxAttempts: 3, backoffMs: 5, noWorkerTimeoutMs: 0, timeoutMs: 0 });
  const clients = ['c1', 'c2'];
  for (const c of clients) h.client(c);
  let workers = 0;
  const alive = new Set<string>();
  const addWorker = (): void => {
    const name = `w${++workers}`;
    h.worker(name, 1 + Math.floor(rnd() * 3), ['n']);
    alive.add(name);
  };
  for (let i = 0; i < 3; i++) addWorker();
  const graphs: SimGraph[] = [];
  const gone = new Set<string>();
  let now = 0;
  let nextRequest = 1;
  /** Dispatches the workers still hold under that lease. */
  const live = (): Sent[] =>
    h.sent.filter((d) => alive.has(d.worker) && h.w(d.worker).running.get(d.taskId)?.attempt === d.attempt);
  const graphOf = (d: Sent): { graph: SimGraph; index: number } | null => {
    for (const graph of graphs) {
      const index = graph.nodes.findIndex((node) => node.body === d.body);
      if (index >= 0 && d.body.startsWith(`g${graph.requestId}.`)) return { graph, index };
    }
    return null;
  };
  /** A worker answers, late, the leases taken back from it (timed out, cancelled): that frees their slots. */
  const answerRevoked = (): void => {
    for (const w of alive) for (const key of [...h.w(w).revoked.keys()]) {
      const [taskId, attempt] = key.split(':').map(Number);
      h.answer(w, taskId!, attempt!);
    }
  };
  try {
    for (let step = 0; step < 300; step++) {
      const r = rnd();
      const running = live();
      if (r < 0.15 && graphs.length < 25) {
        const present = clients.filter((c) => !gone.has(c));
        const client = present[Math.floor(rnd() * present.length)]!;
        const graph = randomGraph(rnd, client, nextRequest++);
        graph.nodes.forEach((node) => (node.body = `g${graph.requestId}.${node.body}`));
        const options = { retries: rnd() < 0.3 ? 1 : 0, timeoutMs: rnd() < 0.3 ? 50 : 0, detach: rnd() < 0.3 };
        graph.id = h.graph(client, graph.requestId, graph.nodes, options);
        if (graph.id === 0) return `seed ${seed}: a valid graph was refused: ${JSON.stringify(h.settled.at(-1))}`;
        graphs.push(graph);
      } else if (r < 0.6 && running.length > 0) {
        const d = running[Math.floor(rnd() * running.length)]!;
        const at = graphOf(d);
        if (!at) return `seed ${seed}: a dispatch of no graph: ${d.body}`;
        // Every node is fed the true values of its inputs, in order.
        const want = at.graph.nodes[at.index]!.inputs.map((i) => value(at.graph, i));
        const got = d.inputs ?? [];
        if (JSON.stringify(got) !== JSON.stringify(want)) return `seed ${seed}: node ${d.body} got inputs ${JSON.stringify(got)}, not ${JSON.stringify(want)}`;
        const error = rnd() < 0.1 ? h.failTask(d, ErrorCode.HANDLER, `${d.body} broke`) : h.finish(d, value(at.graph, at.index));
        if (error) return `seed ${seed}: result refused: ${error.message}`;
      } else if (r < 0.62 && alive.size > 1) {
        const name = [...alive][Math.floor(rnd() * alive.size)]!;
        alive.delete(name);
        h.lost(name);
      } else if (r < 0.7 && alive.size < 4) {
        addWorker();
      } else if (r < 0.73 && graphs.length > 0) {
        const graph = graphs[Math.floor(rnd() * graphs.length)]!;
        const outcome = h.core.cancel(graph.id);
        if (outcome === 'cancelled') graph.cancelled = true;
      } else if (r < 0.76) {
        answerRevoked();
      } else if (r < 0.775) {
        // A client leaves (its attached graphs go with it, its detached ones run on); a new one takes its place.
        const present = clients.filter((c) => !gone.has(c));
        const client = present[Math.floor(rnd() * present.length)]!;
        gone.add(client);
        h.lost(client);
        const next = `c${clients.length + 1}`;
        clients.push(next);
        h.client(next);
      } else {
        now += Math.floor(rnd() * 40);
        h.tick(now);
      }
    }
    // The end: every live worker answers everything it holds, time moves on, until nothing is left.
    if (alive.size === 0) addWorker();
    answerRevoked();
    for (let round = 0; round < 200; round++) {
      now += 100;
      h.tick(now);
      const running = live();
      if (running.length === 0 && h.stats().queued === 0 && h.stats().delayed === 0) break;
      for (const d of running) {
        const at = graphOf(d)!;
        h.finish(d, value(at.graph, at.index));
      }
      answerRevoked();
    }
    answerRevoked();
    const s = h.stats();
    if (s.queued || s.inFlight || s.delayed) return `seed ${seed}: left behind: ${JSON.stringify(s)}`;
    if (h.core.indexedJobs !== 0) return `seed ${seed}: ${h.core.indexedJobs} jobs still indexed`;
    for (const w of alive) if (h.busy(w) !== 0) return `seed ${seed}: ${w} still has ${h.busy(w)} slots taken`;
    totals.graphs += graphs.length;
    totals.workersLost += h.left.filter((l) => l.peer.startsWith('w')).length;
    totals.clientsLost += gone.size;
    totals.timedOut += s.timedOut;
    totals.requeued += s.requeued;
    totals.cancelled += s.cancelled;
    for (const graph of graphs) {
      const answers = h.settled.filter((a) => a.client === graph.client && a.requestId === graph.requestId);
      if (gone.has(graph.client)) {
        if (answers.length > 1) return `seed ${seed}: graph ${graph.requestId} answered ${answers.length} times`;
        const record = h.core.status(graph.id);
        if (record && record.state !== 'completed' && record.state !== 'failed' && record.state !== 'cancelled') return `seed ${seed}: graph ${graph.requestId} left ${record.state}`;
        if (record?.state === 'completed' && Buffer.from(record.result!.buf.subarray(record.result!.bodyStart, record.result!.bodyEnd)).toString() !== value(graph, graph.nodes.length - 1)) {
          return `seed ${seed}: detached graph ${graph.requestId} recorded a wrong answer`;
        }
        continue;
      }
      if (answers.length !== 1) return `seed ${seed}: graph ${graph.requestId} answered ${answers.length} times`;
      const [answer] = answers;
      if (answer!.ok) totals.completed++;
      else if (answer!.code !== ErrorCode.CANCELLED) totals.failed++;
      if (answer!.ok) {
        if (graph.cancelled) return `seed ${seed}: cancelled graph ${graph.requestId} completed`;
        if (answer!.body !== value(graph, graph.nodes.length - 1)) return `seed ${seed}: graph ${graph.requestId} answered ${answer!.body}`;
      } else if (![ErrorCode.HANDLER, ErrorCode.ATTEMPTS, ErrorCode.CANCELLED].includes(answer!.code as never)) {
        return `seed ${seed}: graph ${graph.requestId} failed with ${answer!.code}: ${answer!.message}`;
      } else if (answer!.code !== ErrorCode.CANCELLED && !/^node \d+ \(n\) failed: /.test(answer!.message)) {
        return `seed ${seed}: a failure that names no node: ${answer!.message}`;
      }
    }
    return null;
  } catch (err) {
    return `seed ${seed}: the core threw ${err instanceof Error ? err.stack : String(err)}`;
  }
}

t.test('seeded graph simulation: 300 seeds of random graphs, faults and cancels keep every invariant', (t) => {
  const failures: string[] = [];
  for (let seed = 1; seed <= 300; seed++) {
    const failure = simulate(seed);
    if (failure) failures.push(failure);
  }
  for (const failure of failures.slice(0, 5)) t.fail(failure);
  t.equal(failures.length, 0, `failing seeds: ${failures.length}`);
  const least: [keyof typeof totals, number][] = [['graphs', 3000], ['completed', 500], ['failed', 300], ['cancelled', 200], ['workersLost', 300], ['clientsLost', 100], ['timedOut', 300], ['requeued', 500]];
  for (const [k, n] of least) t.ok(totals[k] >= n, `${k} ${totals[k]} (at least ${n})`);
  t.end();
});
