// The BullMQ peer's worker process: concurrency 50, each job the sha256 hex of its input.
// Usage: worker.ts <redis port> <queue name>

import { createHash } from 'node:crypto';
import { loadBullmq } from './load.js';
import { numArg, serve } from '../child.js';

const connection = { host: '127.0.0.1', port: numArg(0, 6379), maxRetriesPerRequest: null };
const { Worker } = await loadBullmq();
const worker = new Worker(
  process.argv[3]!,
  async (job) => createHash('sha256').update(job.data.input).digest('hex'),
  { connection, concurrency: 50 },
);
await worker.waitUntilReady();
serve({});
