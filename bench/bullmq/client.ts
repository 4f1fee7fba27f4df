// The BullMQ peer's client side: throughput with addBulk plus QueueEvents, latency with add plus
// waitUntilFinished; every result is checked like taskwire's.

import { loadBullmq, type Queue, type QueueEvents } from './load.js';

export class BullmqClient {
  private constructor(
    private readonly queue: Queue,
    private readonly events: QueueEvents,
  ) {}

  static async open(port: number, name: string): Promise<BullmqClient> {
    const { Queue, QueueEvents } = await loadBullmq();
    const connection = { host: '127.0.0.1', port };
    const queue = new Queue(name, {
      connection,
      // The default 10,000-event stream could be trimmed before QueueEvents reads a 20,000-job burst.
      streams: { events: { maxLen: 200_000 } },
    });
    const events = new QueueEvents(name, { connection });
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
    return new BullmqClient(queue, events);
  }

  /** Adds every input in one addBulk and resolves with the results, in input order, as they complete. */
  async all(inputs: string[], prefix: string): Promise<string[]> {
    const results: string[] = new Array(inputs.length);
    let left = inputs.length;
    const done = new Promise<void>((resolve, reject) => {
      const onCompleted = ({ jobId, returnvalue }: { jobId: string; returnvalue: unknown }): void => {
        if (!jobId.startsWith(prefix)) return;
        results[Number(jobId.slice(prefix.length))] = String(returnvalue);
        if (--left === 0) finish(null);
      };
      const onFailed = ({ jobId, failedReason }: { jobId: string; failedReason: string }): void =>
        finish(new Error(`job ${jobId} failed: ${failedReason}`));
      const finish = (err: Error | null): void => {
        this.events.off('completed', onCompleted).off('failed', onFailed);
        if (err) reject(err);
        else resolve();
      };
      this.events.on('completed', onCompleted).on('failed', onFailed);
    });
    // Job ids are known in advance so that a completion seen before addBulk returns is still matched.
    await this.queue.addBulk(inputs.map((input, i) => ({ name: 'sha256', data: { input }, opts: { jobId: `${prefix}${i}` } })));
    await done;
    return results;
  }

  async one(input: string): Promise<string> {
    const job = await this.queue.add('sha256', { input });
    return String(await job.waitUntilFinished(this.events));
  }

  async close(): Promise<void> {
    await Promise.all([this.events.close(), this.queue.close()]);
  }
}
