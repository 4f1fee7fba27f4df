// taskwire workers under test: `connections` createWorker() instances in one process, with the built-in sha256
// handler and the default concurrency unless one is given. Usage: worker.ts <port> [connections] [concurrency]

import { WORKER_DEFAULTS, createWorker } from '../../lib/index.js';
import { numArg, serve } from '../child.js';

const port = numArg(0, 9001);
const concurrency = numArg(2, WORKER_DEFAULTS.concurrency);
const workers = Array.from({ length: numArg(1, 1) }, (_, i) => createWorker({ port, concurrency, name: `bench-${i}` }));
await Promise.all(workers.map((w) => w.ready()));
serve({}, { concurrency: workers[0]!.concurrency });
