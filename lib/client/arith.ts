// Distributed evaluation of `arith` expressions: the expression is compiled here, in the client, into a graph of
// single operations that run on the workers, independent ones in parallel. Its answer, and its failure, read
// exactly as the `arith` job's would: the same text, or the same code and message.

import { ErrorCode, TaskFailedError } from '../errors.js';
import { ArithError } from '../jobs/arith.js';
import { compileArith } from '../jobs/arith-graph.js';
import type { Client, SubmitOptions } from './index.js';

/**
 * Evaluates `expression` as a graph of `arith.op` nodes (workers must run that type; the built-in workers do)
 * and resolves with what `client.submit('arith', expression)` would: String(value). A malformed expression is
 * refused here, unsent, with the error a worker would have given (E_HANDLER and the parser's message); a
 * division by zero fails the same way, from the workers.
 */
export async function evaluateDistributed(client: Client, expression: string, options?: SubmitOptions): Promise<string> {
  let nodes;
  try {
    nodes = compileArith(expression);
  } catch (err) {
    // A worker's arith fails with E_HANDLER: the parser's errors carry no code of their own.
    if (err instanceof ArithError) throw new TaskFailedError(ErrorCode.HANDLER, err.message);
    throw err;
  }
  try {
    return await client.submitGraph(nodes, options);
  } catch (err) {
    // The graph names its failing node; local evaluation has no nodes to name.
    if (err instanceof TaskFailedError && err.node !== undefined) throw new TaskFailedError(err.code, err.message.replace(/^node \d+ \([^)]*\) failed: /, ''));
    throw err;
  }
}
