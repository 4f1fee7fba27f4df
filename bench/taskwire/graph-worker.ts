// The worker for G1 (graph jobs): one createWorker() with two trivial handlers, so the figure is the scheduler's
// graph overhead. `g1.part` returns its payload; `g1.root` returns the total length of its inputs (context.inputs),
// as text. Usage: graph-worker.ts <port>
// Only the handlers are given: concurrency and prefetch are createWorker()'s defaults.

import { createWorker } from '../../lib/index.js';
import { numArg, serve } from '../child.js';

const port = numArg(0, 9001);
const worker = createWorker({
  port,
  name: 'bench-graph',
  handlers: {
    'g1.part': (payload) => payload,
    'g1.root': (_payload, context) => String(context.inputs.reduce((sum, input) => sum + input.length, 0)),
  },
});
await worker.ready();
serve({}, { concurrency: worker.concurrency });
