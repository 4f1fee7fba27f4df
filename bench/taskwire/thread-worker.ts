// The worker for T1: one createWorker() running `len` (bench/taskwire/handlers.ts) and the built-in sha256, all
// inline or all in its pool of threads. Usage: thread-worker.ts <port> <inline|thread>
// Only the handlers are given: concurrency, prefetch and the pool's size are createWorker()'s defaults.

import { builtinHandlers, createWorker, type Handlers, type ThreadHandler } from '../../lib/index.js';
import { numArg, serve } from '../child.js';
import { length } from './handlers.js';

const port = numArg(0, 9001);
const where = process.argv[3];
if (where !== 'inline' && where !== 'thread') throw new Error(`usage: thread-worker.ts <port> <inline|thread>, not ${where}`);
const sha256 = builtinHandlers.sha256 as Required<ThreadHandler>;
const handlers: Handlers =
  where === 'thread'
    ? { len: { module: new URL('./handlers.js', import.meta.url), export: 'length' }, sha256: { module: sha256.module, export: sha256.export } }
    : { len: length, sha256: sha256.inline };
const worker = createWorker({ port, name: `bench-${where}`, handlers });
await worker.ready();
serve({ threadsStopped: () => worker.threadsStopped }, { concurrency: worker.concurrency });
