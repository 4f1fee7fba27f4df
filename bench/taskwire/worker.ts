// taskwire workers under test: `connections` createWorker() instances in one process, default concurrency and
// the built-in sha256 handler. Usage: worker.ts <port> [connections]

import { createWorker } from '../../lib/index.js';
import { numArg, serve } from '../child.js';

const port = numArg(0, 9001);
const workers = Array.from({ length: numArg(1, 1) }, (_, i) => createWorker({ port, name: `bench-${i}` }));
await Promise.all(workers.map((w) => w.ready()));
serve({}, { concurrency: workers[0]!.concurrency });
