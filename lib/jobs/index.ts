// The job types every worker runs unless told otherwise.

import { arithJob } from './arith.js';
import type { Handler, Handlers } from './handler.js';
import { sha256Job } from './sha256.js';

/**
 * Payloads from this size are hashed in the worker's pool of threads, smaller ones inline: below it, a hash costs
 * less than a round trip to a thread (see docs/BENCHMARKS.md), and it never blocks the worker long enough to
 * matter for its keepalives.
 */
export const SHA256_INLINE_BELOW = 64 * 1024;

export const builtinHandlers: Handlers = Object.freeze({
  sha256: {
    module: new URL(import.meta.url.endsWith('.ts') ? './sha256.ts' : './sha256.js', import.meta.url),
    export: 'sha256Job',
    inline: sha256Job,
    inlineBelow: SHA256_INLINE_BELOW,
  },
  // Expressions are capped at 10,000 characters and 200 levels of nesting: an evaluation is bounded, so inline.
  arith: arithJob,
});

const BOUNDED = new Set<Handler>([sha256Job, arithJob]);

/** Whether an inline handler is one of the built-ins, whose running time is bounded by their input limits. */
export function isBoundedHandler(handler: Handler): boolean {
  return BOUNDED.has(handler);
}

export { ArithError, evaluate, evaluateToString } from './arith.js';
export type { Handler, HandlerResult, Handlers, TaskContext, ThreadHandler } from './handler.js';
