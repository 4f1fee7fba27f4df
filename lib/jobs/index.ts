// The job types every worker runs unless told otherwise.

import { arithJob } from './arith.js';
import { arithOpJob } from './arith-graph.js';
import type { Handler, Handlers } from './handler.js';
import { sha256Job } from './sha256.js';
import { addDecimals, sumsqJob } from './sumsq.js';

/**
 * Payloads from this size are hashed in the worker's pool of threads, smaller ones inline. Measured end to end
 * (`npm run bench -- --only t1 --rounds 3`, twice, and three single rounds; 2 shared cores; docs/BENCHMARKS.md,
 * "Thread path"), the pool was no faster than inline at any size up to 8 MiB, the largest measured: per task,
 * medians of 9 rounds, 95 against 29 µs at 1 KiB, 249 against 179 at 64 KiB, 2,153 against 2,048 at 1 MiB
 * (the closest: 0.90-1.35x over the rounds), 16.2 against 11.5 ms at 4 MiB, 33.8 against 20.3 ms at 8 MiB;
 * and a task in a thread costs the worker ~100 µs more CPU. So this is the next power of two, which is also the
 * default maxPayload: with default limits sha256 always runs inline, where even an 8 MiB hash holds the event
 * loop only ~7 ms, far below a keepalive interval.
 */
export const SHA256_INLINE_BELOW = 16 * 1024 * 1024;

export const builtinHandlers: Handlers = Object.freeze({
  sha256: {
    module: new URL(import.meta.url.endsWith('.ts') ? './sha256.ts' : './sha256.js', import.meta.url),
    export: 'sha256Job',
    inline: sha256Job,
    inlineBelow: SHA256_INLINE_BELOW,
  },
  // Expressions are capped at 10,000 characters and 200 levels of nesting: an evaluation is bounded, so inline.
  arith: arithJob,
  // One node of a compiled `arith` graph: a single operation on at most two numbers.
  'arith.op': arithOpJob,
  // A range of at most MAX_SUMSQ_RANGE integers (about 0.1-0.3 s), and the sum of the parts' sums.
  sumsq: sumsqJob,
  'sumsq.combine': sumsqCombineJob,
});

/** `sumsq.combine`: its inputs are the parts' sums, as decimal text. */
function sumsqCombineJob(_payload: Uint8Array, context: { readonly inputs: readonly Uint8Array[] }): string {
  return addDecimals(context.inputs.map((bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString()));
}

const BOUNDED = new Set<Handler>([sha256Job, arithJob, arithOpJob, sumsqJob, sumsqCombineJob]);

/** Whether an inline handler is one of the built-ins, whose running time is bounded by their input limits. */
export function isBoundedHandler(handler: Handler): boolean {
  return BOUNDED.has(handler);
}

export { ArithError, evaluate, evaluateToString } from './arith.js';
export { evaluateTree, parse, type ArithNode } from './arith.js';
export { arithOpJob, compileArith, type ArithGraphNode } from './arith-graph.js';
export { MAX_SUMSQ_RANGE, sumOfSquares } from './sumsq.js';
export type { Handler, HandlerResult, Handlers, TaskContext, ThreadHandler } from './handler.js';
