// taskwire workers under test: `connections` createWorker() instances in one process, with the built-in sha256
// handler. Usage: worker.ts <port, ws:// URL or tls:<port>:<CA file>> [connections] [concurrency [prefetch]]
// An option not given is left out altogether (not filled in from WORKER_DEFAULTS, nor set to undefined), so the
// worker runs as a user's createWorker({ port }) does, with whatever defaults lib/ has then.

import { createWorker } from '../../lib/index.js';
import { numArg, schedulerWhere, serve } from '../child.js';

const where = schedulerWhere(process.argv[2], numArg(0, 9001));
const concurrency = process.argv[4] === undefined ? {} : { concurrency: numArg(2, 0) };
const prefetch = process.argv[5] === undefined ? {} : { prefetch: numArg(3, 0) };
const workers = Array.from({ length: numArg(1, 1) }, (_, i) => createWorker({ ...where, name: `bench-${i}`, ...concurrency, ...prefetch }));
await Promise.all(workers.map((w) => w.ready()));
serve({}, { concurrency: workers[0]!.concurrency });
