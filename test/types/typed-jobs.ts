// Compile-time checks of typed jobs, run by `npm test` through `tsc --noEmit` (never executed). Every expected
// error below must occur, or tsc fails on the unused directive: a change that loosens the types breaks the build.

import { builtinJobs, createClient, createWorker, defineJob, type Job, type JobCodec, type TaskContext } from '../../lib/index.js';
import { multiply, stats } from '../fixtures/typed-jobs.js';

/** True when A and B are the same type (not merely assignable to each other). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/** Compiles only when its type argument is `true`. */
function assert<T extends true>(): T | void {}

export async function checks(context: TaskContext): Promise<void> {
  const client = createClient();

  // ---- what the definitions infer ----
  assert<Equal<typeof multiply.run, (payload: [number, number], context: TaskContext) => number | Promise<number>>>();
  assert<Equal<Parameters<typeof stats.run>[0], number[]>>();

  // ---- client.run: the payload is checked, the result typed ----
  const product = client.run(multiply, [5, 10]);
  assert<Equal<typeof product, Promise<number>>>();
  // @ts-expect-error Equal is exact: a Promise<number> is not a Promise<string>
  assert<Equal<typeof product, Promise<string>>>();
  assert<Equal<Awaited<ReturnType<typeof client.run<number[], { count: number; sum: number }>>>, { count: number; sum: number }>>();
  const summary = await client.run(stats, [1, 2, 3], { priority: 'high', timeoutMs: 1000 });
  assert<Equal<typeof summary, { count: number; sum: number }>>();
  assert<Equal<typeof client.run<string, string>, (definition: import('../../lib/index.js').JobDefinition<string, string>, payload: string, options?: import('../../lib/index.js').RunOptions) => Promise<string>>>();

  // @ts-expect-error a string is not a [number, number]
  void client.run(multiply, '5,10');
  // @ts-expect-error one number is not a pair
  void client.run(multiply, [5]);
  // @ts-expect-error nor are three
  void client.run(multiply, [5, 10, 15]);
  // @ts-expect-error nor strings
  void client.run(multiply, ['5', '10']);
  // @ts-expect-error the payload is required
  void client.run(multiply);
  // @ts-expect-error the options are submit()'s
  void client.run(multiply, [5, 10], { retry: 3 });

  const n = await client.run(multiply, [5, 10]);
  // @ts-expect-error the result is a number
  n.toUpperCase();
  // @ts-expect-error and not a string
  const text: string = await client.run(multiply, [5, 10]);
  void text;
  // @ts-expect-error a summary has no mean
  void summary.mean;

  // ---- enqueueJob: the id, and the typed result to come ----
  const job = await client.enqueueJob(multiply, [2, 3], { detach: true });
  assert<Equal<typeof job, Job<number>>>();
  assert<Equal<typeof job.result, Promise<number>>>();
  // @ts-expect-error the payload is checked here too
  void client.enqueueJob(multiply, 'x');
  assert<Equal<Awaited<ReturnType<typeof client.enqueue>>, Job>>(); // untyped enqueue still gives strings
  assert<Equal<Job, Job<string>>>();

  // ---- the built-ins: text in, text out ----
  const digest = client.run(builtinJobs.sha256, 'Hello');
  assert<Equal<typeof digest, Promise<string>>>();
  assert<Equal<typeof builtinJobs.arith.run, (payload: string, context: TaskContext) => string | Promise<string>>>();
  // @ts-expect-error an expression is text
  void client.run(builtinJobs.arith, 2 + 3);

  // ---- defineJob: run's payload is the declared one ----
  defineJob<[number, number], number>({
    type: 'multiply',
    // @ts-expect-error run must take the declared payload
    run: (text: string) => text.length,
  });
  defineJob<[number, number], number>({
    type: 'multiply',
    // @ts-expect-error and return the declared result
    run: ([a, b]) => `${a * b}`,
  });
  const contextual = defineJob<[number, number], number>({ type: 'multiply', run: ([a, b]) => a * b });
  assert<Equal<typeof contextual, typeof multiply>>();
  // @ts-expect-error a definition's run takes its payload type
  void multiply.run('5,10', context);
  // @ts-expect-error a definition is frozen
  multiply.type = 'divide';

  // Inference from run, async runs included: the result is what the promise gives.
  const later = defineJob({ type: 'later', run: async (ms: number, { signal }) => (signal.aborted ? -1 : ms) });
  assert<Equal<Awaited<ReturnType<typeof client.run<number, number>>>, number>>();
  const waited = client.run(later, 5);
  assert<Equal<typeof waited, Promise<number>>>();

  // 'text' is for jobs from string to string only.
  const upper = defineJob({ type: 'upper', codec: 'text', run: (s: string) => s.toUpperCase() });
  assert<Equal<typeof upper, import('../../lib/index.js').JobDefinition<string, string>>>();
  // @ts-expect-error a number payload cannot travel as text
  defineJob({ type: 'double', codec: 'text', run: (x: number) => String(x * 2) });
  // @ts-expect-error nor a number result
  defineJob({ type: 'length', codec: 'text', run: (s: string) => s.length });
  // @ts-expect-error no such codec
  defineJob({ type: 'x', codec: 'xml', run: (s: string) => s });

  // A codec of one's own is checked against the job's types.
  const bytes: JobCodec<Uint8Array, number> = {
    encode: (payload) => payload,
    decode: (body) => body,
    encodeResult: (result) => String(result),
    decodeResult: (body) => Number(body.toString()),
  };
  const size = defineJob({ type: 'size', codec: bytes, run: (payload: Uint8Array) => payload.length });
  assert<Equal<typeof size, import('../../lib/index.js').JobDefinition<Uint8Array, number>>>();
  // @ts-expect-error the codec's payload type is not run's
  defineJob({ type: 'size', codec: bytes, run: (payload: string) => payload.length });

  // ---- workers take definitions beside handlers ----
  createWorker({ jobs: [multiply, stats, later, builtinJobs.arith], handlers: { echo: (payload) => payload } });
  // @ts-expect-error jobs are definitions, not type names
  createWorker({ jobs: ['multiply'] });
  // @ts-expect-error nor handlers
  createWorker({ jobs: [(payload: Buffer) => payload] });
}
