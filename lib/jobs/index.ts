// The job types every worker runs unless told otherwise.

import { arithJob } from './arith.js';
import type { Handlers } from './handler.js';
import { sha256Job } from './sha256.js';

export const builtinHandlers: Handlers = Object.freeze({
  sha256: sha256Job,
  arith: arithJob,
});

export { ArithError, evaluate, evaluateToString } from './arith.js';
export type { Handler, HandlerResult, Handlers, TaskContext } from './handler.js';
