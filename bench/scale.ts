// The scheduler for S1 and S2, taskwire's behaviour at scale: a createScheduler() with credits capped high enough for
// one worker to hold every task, plus what those points measure in this process, so the figures are the
// scheduler's own: how long a mass requeue takes, how long its event loop is blocked meanwhile, how long a queue of
// distinct job types takes to build. S1's worker that is lost is a raw one in this process, so the moment of the
// loss is the moment this process destroys its socket. Usage: scale.ts <heartbeatMs> <maxConcurrency> <timeoutMs>

import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { createScheduler } from '../lib/index.js';
import { Cmd, Role, encode, writeReady } from '../lib/protocol/index.js';
import { numArg, serve } from './child.js';
import { RawPeer } from './raw.js';

const heartbeatMs = numArg(0, 1000);
const scheduler = createScheduler({ port: 0, heartbeatMs, maxConcurrency: numArg(1, 100_000), timeoutMs: numArg(2, 300_000) });
const { port } = await scheduler.listen();

/** Resolves with performance.now() once `done()` holds, checked every millisecond (the figures' resolution). */
async function until(done: () => boolean, what: string, timeoutMs = 300_000): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`scale: ${what} not reached after ${timeoutMs} ms: ${JSON.stringify(scheduler.stats())}`);
    await sleep(1);
  }
  return performance.now();
}

/**
 * The longest the event loop was kept from running a 1 ms timer, in ms, while `fn` runs: a synchronous stretch of
 * the scheduler's (a requeue, a burst of reads) shows as a delay of its length, give or take the 1 ms.
 */
async function stall<T>(fn: () => Promise<T>): Promise<T & { maxDelayMs: number }> {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  try {
    return { ...(await fn()), maxDelayMs: delay.max / 1e6 };
  } finally {
    delay.disable();
  }
}

/** The first emission of a scheduler event; only that one pays for it, as the listener goes with it. */
function first(event: 'taskQueued' | 'taskRequeued'): { at: number | null } {
  const seen: { at: number | null } = { at: null };
  scheduler.once(event, () => (seen.at = performance.now()));
  return seen;
}

/** Performance time to wall-clock ms, for the keepalive watcher in another process. */
const wall = (t: number): number => performance.timeOrigin + t;

/**
 * A stall delays a keepalive only if one falls due during it, so the loss is timed to come this long before one is
 * due: the requeue then holds that keepalive back, and the watcher's longest gap is one interval plus what is left
 * of the stall, not one interval whatever the stall.
 */
const LEAD_MS = 50;

/** The raw worker: takes every TASK it is sent and never answers; it does answer keepalives. */
let held: RawPeer | null = null;

/**
 * Connects the raw worker with `credits` credits for `type` and waits until the scheduler has them all in flight.
 * Its READY goes out just after a keepalive, so the dispatch does not delay the next one and the tasks' deadlines
 * fall at a known distance from the keepalives (see PLAN.s1.timeoutMs in run.ts).
 */
async function hold({ credits, type }: { credits: number; type: string }): Promise<number> {
  held = await RawPeer.open(port, Role.WORKER, 'held');
  let tasks = 0;
  held.onFrame = (cmd) => void (cmd === Cmd.TASK && tasks++);
  await held.keepalive();
  held.socket.write(encode(writeReady, credits, [type]));
  await until(() => scheduler.stats().inFlight === credits && tasks === credits, `${credits} tasks in flight`);
  return tasks;
}

/**
 * S1: destroys the raw worker's socket LEAD_MS before a keepalive is due and times the requeue of its `n` tasks.
 * The window starts about a heartbeat before the loss and ends two after it, so the delays of the keepalives due
 * after it are inside.
 */
function lose({ n }: { n: number }): Promise<{ requeueMs: number; lostAt: number; maxDelayMs: number }> {
  return stall(async () => {
    const beat = await held!.keepalive();
    await sleep(Math.max(0, beat + heartbeatMs - LEAD_MS - performance.now()));
    const lost = performance.now();
    held!.socket.destroy();
    const requeued = await until(() => scheduler.stats().queued === n, `${n} tasks requeued`);
    await sleep(Math.max(0, lost + 2 * heartbeatMs - performance.now()));
    return { requeueMs: requeued - lost, lostAt: wall(lost) };
  });
}

/**
 * S1, mass timeout: the raw worker stays connected and its `n` tasks time out (timeoutMs). Timed from the first
 * task requeued to all of them queued; the sweep of due tasks before that first requeue is in the delay figure.
 */
function timeouts({ n }: { n: number }): Promise<{ requeueMs: number; lostAt: number; maxDelayMs: number }> {
  return stall(async () => {
    const seen = first('taskRequeued');
    const requeued = await until(() => scheduler.stats().queued === n, `${n} tasks timed out and requeued`);
    const started = seen.at!;
    await sleep(Math.max(0, started + 2 * heartbeatMs - performance.now()));
    return { requeueMs: requeued - started, lostAt: wall(started) };
  });
}

/**
 * S2: from the first task queued to `n` queued, while a client submits them. Armed before the client starts (so
 * the first task cannot come before the listener), read with queueing() once it has sent them all.
 */
let queued: Promise<{ ms: number; maxDelayMs: number }> | null = null;
function armQueueing({ n }: { n: number }): boolean {
  const seen = first('taskQueued');
  queued = stall(async () => ({ ms: (await until(() => scheduler.stats().queued >= n, `${n} tasks queued`)) - seen.at! }));
  queued.catch(() => {}); // reported by queueing()
  return true;
}

serve({ stats: () => scheduler.stats(), hold, lose, timeouts, armQueueing, queueing: () => queued! }, { port });
