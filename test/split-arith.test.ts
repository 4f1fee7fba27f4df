// Split/combine and distributed arithmetic on real processes: sumsq exact over three worker processes, and the
// arithmetic of the parser's whole table (and seeded random expressions) evaluated as graphs, equal to local
// evaluation, result for result and error for error; and both from the command line.

import t from 'tap';
import path from 'node:path';
import { builtinJobs, evaluateDistributed, ErrorCode, type Client } from '../lib/index.js';
import { generator, mulberry32, tableSources } from './arith-cases.js';
import { root, runCli, spawnChild, startScheduler, waitFor, within, startClient as client } from './helpers.js';

const SUM_1_TO_1M = '333333833333500000';

/** `n` dist/worker.js processes of the built-in job types, connected. */
async function workers(t: Parameters<typeof spawnChild>[0], port: number, n: number, connected: () => number): Promise<void> {
  for (let i = 0; i < n; i++) spawnChild(t, process.execPath, [path.join(root, 'dist', 'worker.js'), '--port', String(port), '--name', `proc-${i}`]);
  await waitFor(`${n} worker processes`, () => connected() === n, 20_000);
}

t.test('sumsq over 1..1,000,000 in 16 chunks is exact, and its chunks run on all three worker processes', async (t) => {
  const scheduler = await startScheduler(t);
  const byWorker = new Map<number, number>();
  scheduler.on('taskDispatched', (e) => e.type === 'sumsq' && byWorker.set(e.workerId!, (byWorker.get(e.workerId!) ?? 0) + 1));
  await workers(t, scheduler.port, 3, () => scheduler.stats().workers);
  const c = client(t, scheduler.port);
  t.equal(await within(20_000, 'sumsq', c.run(builtinJobs.sumsq, '1 1000000', { chunks: 16 })), SUM_1_TO_1M);
  t.equal([...byWorker.values()].reduce((a, b) => a + b, 0), 16, '16 parts');
  t.equal(byWorker.size, 3, `every worker process ran parts: ${[...byWorker.values()].join(', ')}`);
  t.equal(await c.run(builtinJobs.sumsq, '1 1000000'), SUM_1_TO_1M, 'unsplit, the same');
  t.equal(await c.run(builtinJobs.sumsq, '-3 3', { chunks: 5 }), '28', 'negative ranges, and fewer parts than chunks asked');
  const upTo = (n: bigint): bigint => (n * (n + 1n) * (2n * n + 1n)) / 6n;
  t.equal(await c.run(builtinJobs.sumsq, '1 90000000', { chunks: 16 }), upTo(90_000_000n).toString(), 'past 2^53, exactly');
  t.equal(await c.run(builtinJobs.sumsq, '-70000000 70000000', { chunks: 4 }), (2n * upTo(70_000_000n)).toString(), 'squares past 2^52 too');
  await t.rejects(c.run(builtinJobs.sumsq, '5 1', { chunks: 2 }), { code: 'E_SUMSQ', message: /empty/ });
  await t.rejects(c.run(builtinJobs.sumsq, '1 1000000000'), { code: 'E_SUMSQ', message: /split it into chunks/ });
  await t.rejects(c.run(builtinJobs.arith, '1+1', { chunks: 2 }), { code: ErrorCode.INVALID, message: /does not split/ });

  const cli = await runCli(t, 'client', ['--port', String(scheduler.port), '--type', 'sumsq', '1', '1000000', '--chunks', '16']);
  t.same([cli.code, cli.stdout, cli.stderr], [0, `${SUM_1_TO_1M}\n`, ''], 'the command line prints the same');
});

/** What the arith job gives for `src`, the local way (one task) or as a graph: a result, or a code and message. */
async function outcome(c: Client, src: string, distributed: boolean): Promise<string> {
  try {
    return `= ${distributed ? await evaluateDistributed(c, src) : await c.submit('arith', src)}`;
  } catch (err) {
    const { code, message } = err as { code: string; message: string };
    return `error ${code}: ${message}`;
  }
}

t.test("distributed arith equals local for the parser's whole table and 300 seeded random expressions", async (t) => {
  const scheduler = await startScheduler(t);
  await workers(t, scheduler.port, 2, () => scheduler.stats().workers);
  const c = client(t, scheduler.port);
  const next = generator(mulberry32(0x5eed));
  const sources = [...tableSources, ...Array.from({ length: 300 }, next)];
  let errors = 0;
  let mismatches = 0;
  for (const src of sources) {
    const [local, graph] = await within(30_000, JSON.stringify(src.slice(0, 40)), Promise.all([outcome(c, src, false), outcome(c, src, true)]));
    if (local.startsWith('error')) errors++;
    if (local !== graph && ++mismatches <= 10) t.equal(graph, local, JSON.stringify(src.slice(0, 60)));
  }
  t.equal(mismatches, 0, `${sources.length} expressions, ${errors} of them errors, all alike`);
  t.ok(errors > 40, 'errors of every kind are among them');
  t.ok(scheduler.stats().completed > sources.length, 'the graphs ran on the workers');
});

t.test('the command line: --distributed prints what local evaluation prints, and exits alike', async (t) => {
  const scheduler = await startScheduler(t);
  await workers(t, scheduler.port, 1, () => scheduler.stats().workers);
  const port = ['--port', String(scheduler.port), '--type', 'arith'];
  for (const input of ['1+(2*3)/4-5', '1/(2-2)', '(1+2', '1e308*10, -2**2, 0x10, (-8)**(1/3)']) {
    const local = await runCli(t, 'client', [...port, input]);
    const distributed = await runCli(t, 'client', [...port, '--distributed', input]);
    t.same(distributed, local, `${input}: ${local.stdout.trim() || local.stderr.trim()}`);
  }
  const wrong = await runCli(t, 'client', ['--port', String(scheduler.port), '--distributed', 'x']);
  t.match(wrong, { code: 2, stderr: /--distributed is for --type arith/ });
});
