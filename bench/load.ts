// The load generator: one process holding the benchmark's client connections (taskwire, relay or BullMQ) that
// runs each workload's submission pattern on request and checks every digest it gets back.
// Usage: load.ts <taskwire|relay|bullmq> <port> [connections] [bullmq queue name]; taskwire's <port> may be a ws:// URL,
// or tls:<port>:<CA file> for its TLS listener.

import { createHash, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type Client, createClient } from '../lib/index.js';
import { BullmqClient } from './bullmq/client.js';
import { numArg, schedulerWhere, serve } from './child.js';
import { RelayClient } from './relay/client.js';

/** Submits one task, of type sha256 unless told otherwise. */
type Submit = (input: string, type?: string) => Promise<string>;

const system = process.argv[2];
const port = numArg(1, 9001);
const connections = numArg(2, 1);

const sha256 = (input: string | Uint8Array): string => createHash('sha256').update(input).digest('hex');
/** The answer a task of each job type must come back with: sha256, or T1's `len` (bench/taskwire/handlers.ts). */
const answer = (type: string): ((input: string) => string) => (type === 'len' ? (input) => String(Buffer.byteLength(input)) : sha256);
const inputs = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
const countBad = (results: string[], want: string[]): number => results.filter((r, i) => r !== want[i]).length;

let bullmq: BullmqClient | null = null;
let submitters: Submit[] = [];
let taskwire: Client[] = [];
let close: () => Promise<void>;
if (system === 'bullmq') {
  bullmq = await BullmqClient.open(port, process.argv[5]!);
  close = () => bullmq!.close();
} else if (system === 'relay') {
  const clients = await Promise.all(Array.from({ length: connections }, () => RelayClient.connect(port)));
  submitters = clients.map((c) => (input: string, type = 'sha256') => c.submit(type, input));
  close = async () => clients.forEach((c) => c.close());
} else {
  const where = schedulerWhere(process.argv[3], port);
  taskwire = Array.from({ length: connections }, (_, i) => createClient({ ...where, name: `bench-${i}` }));
  await Promise.all(taskwire.map((c) => c.connect()));
  submitters = taskwire.map((c) => (input: string, type = 'sha256') => c.submit(type, input));
  close = async () => void (await Promise.all(taskwire.map((c) => c.close())));
}

/** Every task submitted at once, spread over the connections; resolves with the results in input order. */
function burst(list: string[], type?: string): Promise<string[]> {
  if (bullmq) return bullmq.all(list, `${list[0]}_`);
  return Promise.all(list.map((input, i) => submitters[i % submitters.length]!(input, type)));
}

/** W1 (and T1, of `type`): a warm-up burst, then a timed one. The expected answers are computed before the clock starts. */
async function all({ n, warmup, type = 'sha256' }: { n: number; warmup: number; type?: string }): Promise<{ ms: number; bad: number; startedAt: number }> {
  const expect = answer(type);
  const warm = inputs('warm-', warmup);
  let bad = countBad(await burst(warm, type), warm.map(expect));
  const list = inputs('task-', n);
  const want = list.map(expect);
  // Wall-clock time of the timed burst's start, for the runner to place other activity (W1 + /metrics) against it.
  const startedAt = Date.now();
  const start = performance.now();
  const results = await burst(list, type);
  const ms = performance.now() - start;
  bad += countBad(results, want);
  return { ms, bad, startedAt };
}

/** W2 (and T1): one task at a time on the first connection; every round trip's latency in microseconds, warm-up first. */
async function sequential({ n, warmup, type = 'sha256' }: { n: number; warmup: number; type?: string }): Promise<{ latencies: number[]; bad: number }> {
  const one: Submit = bullmq ? (input) => bullmq!.one(input) : submitters[0]!;
  const expect = answer(type);
  const latencies: number[] = [];
  let bad = 0;
  for (let i = 0; i < warmup + n; i++) {
    const input = `task-${i}`;
    const start = performance.now();
    const result = await one(input, type);
    latencies.push((performance.now() - start) * 1000);
    if (result !== expect(input)) bad++;
  }
  return { latencies, bad };
}

/** W3: keeps `window` tasks outstanding across the connections until n are done (steady state, bounded queue). */
function windowed({ n, window, prefix }: { n: number; window: number; prefix: string }): Promise<{ ms: number; bad: number }> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let done = 0;
    let bad = 0;
    const start = performance.now();
    const next = (submit: Submit): void => {
      const input = `${prefix}${sent++}`;
      submit(input).then((result) => {
        if (result !== sha256(input)) bad++;
        if (++done === n) resolve({ ms: performance.now() - start, bad });
        else if (sent < n) next(submit);
      }, reject);
    };
    for (let i = 0; i < Math.min(window, n); i++) next(submitters[i % submitters.length]!);
  });
}

/**
 * T1: sha256 tasks of `bytes` random bytes (four bodies in turn, digests known before the clock starts) on the
 * first taskwire connection, `window` outstanding, after `warmup` of them; the time for the n after it.
 */
async function sized({ bytes, n, warmup, window }: { bytes: number; n: number; warmup: number; window: number }): Promise<{ ms: number; bad: number }> {
  const bodies = Array.from({ length: 4 }, () => randomBytes(bytes));
  const want = bodies.map(sha256);
  const run = (count: number): Promise<{ ms: number; bad: number }> =>
    new Promise((resolve, reject) => {
      let sent = 0;
      let done = 0;
      let bad = 0;
      const start = performance.now();
      const next = (): void => {
        const i = sent++ % 4;
        taskwire[0]!.submit('sha256', bodies[i]!).then((result) => {
          if (result !== want[i]) bad++;
          if (++done === count) resolve({ ms: performance.now() - start, bad });
          else if (sent < count) next();
        }, reject);
      };
      for (let i = 0; i < Math.min(window, count); i++) next();
    });
  const warm = await run(warmup);
  const r = await run(n);
  return { ms: r.ms, bad: warm.bad + r.bad };
}

/**
 * W4 (and S1, S2): queues n tasks with 16-byte bodies, 10,000 per event-loop turn; drain() awaits their results
 * later. With `distinctTypes` (S2) task i has job type `type-<i>`, which no worker runs.
 */
let filled: { list: string[]; results: Promise<string[]> } | null = null;
async function fill({ n, distinctTypes = false, type }: { n: number; distinctTypes?: boolean; type?: string }): Promise<number> {
  const list = Array.from({ length: n }, (_, i) => String(i).padStart(16, '0'));
  const promises: Promise<string>[] = [];
  for (let i = 0; i < n; i++) {
    promises.push(submitters[i % submitters.length]!(list[i]!, distinctTypes ? `type-${i}` : type));
    if (i % 10_000 === 9_999) await new Promise((resolve) => setImmediate(resolve));
  }
  filled = { list, results: Promise.all(promises) };
  filled.results.catch(() => {}); // reported by drain()
  return n;
}

async function drain(): Promise<{ bad: number }> {
  const { list, results } = filled!;
  filled = null;
  return { bad: countBad(await results, list.map(sha256)) };
}

/**
 * G1: `parts` source nodes and one root consuming them all, as one graph job (submitGraph), one graph at a time;
 * against the same parts submitted as plain jobs at once (Promise.all) and combined here. Each rep runs one graph
 * and the plain jobs once each, which first alternating; both must come back with the total length of the parts' results. Milliseconds per rep,
 * after `warmup` reps of each.
 */
async function graph({ parts, reps, warmup }: { parts: number; reps: number; warmup: number }): Promise<{ graphMs: number[]; plainMs: number[]; bad: number }> {
  const client = taskwire[0]!;
  const payloads = inputs('p-', parts);
  const want = String(payloads.reduce((sum, p) => sum + Buffer.byteLength(p), 0));
  const nodes = [...payloads.map((payload) => ({ type: 'g1.part', payload })), { type: 'g1.root', payload: '', inputs: payloads.map((_, i) => i) }];
  const graphMs: number[] = [];
  const plainMs: number[] = [];
  let bad = 0;
  const timed = async (run: () => Promise<string>): Promise<number> => {
    const start = performance.now();
    const result = await run();
    const ms = performance.now() - start;
    if (result !== want) bad++;
    return ms;
  };
  const viaGraph = (): Promise<string> => client.submitGraph(nodes);
  const viaPlain = async (): Promise<string> => {
    const results = await Promise.all(payloads.map((payload) => client.submit('g1.part', payload)));
    return String(results.reduce((sum, r) => sum + Buffer.byteLength(r), 0));
  };
  for (let i = 0; i < warmup + reps; i++) {
    // The two take turns going first, so neither always runs on the other's leftovers (collections, caches).
    const g = i % 2 === 0 ? await timed(viaGraph) : 0;
    const p = await timed(viaPlain);
    const g2 = i % 2 === 1 ? await timed(viaGraph) : g;
    if (i >= warmup) {
      graphMs.push(g2);
      plainMs.push(p);
    }
  }
  return { graphMs, plainMs, bad };
}

serve({ all, sequential, windowed, sized, fill, drain, graph, close: () => close() });
