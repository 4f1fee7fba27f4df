// W3's core sweep: the scheduling core alone, in one process, with no sockets. End-to-end CPU per task moves with
// how many frames each read and write carries, which depends on the number of connections; here nothing but the
// core's own work per task is measured, so a cost that grew with workers, clients or tasks would show plainly.

import { SchedulerCore, type Task, type WorkerRecord } from '../lib/scheduler/core.js';
import { serve } from './child.js';

interface Sweep {
  workers: number;
  clients: number;
  n: number;
  window: number;
  warmup: number;
}

// A body as the shell hands it over (a view of the read it arrived in), and a result as the scheduler passes one
// through the core (a range of its RESULT frame).
const READ = Buffer.from('0123456789abcdef'.repeat(4));
const OUTCOME = { ok: true as const, buf: Buffer.from('0'.repeat(64)), bodyStart: 0, bodyEnd: 64 };

/** CPU µs per task with `window` tasks outstanding, completed in dispatch order, submitted round-robin by client. */
function run({ workers, clients, n, window, warmup }: Sweep): number {
  // Dispatched tasks wait here to be answered, oldest first: a ring, so the harness itself does O(1) per task.
  const ring: { worker: WorkerRecord<number>; task: Task<number> }[] = [];
  let head = 0;
  const core = new SchedulerCore<number>({
    sendTask: (worker, task) => ring.push({ worker, task }) > 0,
    sendCompleted: () => {},
    sendFailed: () => {},
    sendKeepalive: () => {},
    closePeer: () => {},
  });
  core.tick(0);
  const clientRecords = Array.from({ length: clients }, (_, i) => core.addClient(i, `c${i}`));
  for (let i = 0; i < workers; i++) core.ready(core.addWorker(i, `w${i}`), 16, ['sha256']);
  let requestId = 0;
  const submit = (): void => {
    requestId++;
    core.submit(clientRecords[requestId % clients]!, requestId, 'sha256', READ.subarray(16, 32));
  };
  const complete = (count: number): void => {
    for (let i = 0; i < count; i++) {
      const { worker, task } = ring[head]!;
      ring[head++] = undefined!;
      core.result(worker, task.id, task.attempt, OUTCOME);
      submit();
      if (head > 65_536) {
        ring.splice(0, head);
        head = 0;
      }
    }
  };
  for (let i = 0; i < window; i++) submit();
  complete(warmup);
  const before = process.cpuUsage();
  complete(n);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / n;
}

/**
 * The median of five runs, each on a fresh core after a full collection: at well under a microsecond per task, a
 * 10,000-task run lasts a few milliseconds, and one collection of the previous run's garbage would decide it.
 */
function median5(sweep: Sweep): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) {
    gc?.();
    runs.push(run(sweep));
  }
  return runs.sort((a, b) => a - b)[2]!;
}

serve({ run: median5 });
