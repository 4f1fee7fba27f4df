// A worker's pool of threads for handlers given as modules (ThreadHandler), one task per thread at a time.
//
// One task per thread, so that a task which will not stop can be stopped: after its AbortSignal fired and
// stopGraceMs passed, its thread is terminated and a new one takes its place, and no other task is lost with it.
// Threads are started on first use, up to `size`; tasks beyond that wait here, in order.

import { Worker as Thread } from 'node:worker_threads';
import { ErrorCode, TaskwireError } from '../errors.js';
import type { HandlerResult } from '../jobs/handler.js';
import type { AbortMessage, ProgressMessage, Reply, RunMessage } from './thread.js';

export interface ThreadJob {
  /** The module's URL (as a string) and the name of its handler export. */
  module: string;
  export: string;
  payload: Buffer;
  /** A graph node's inputs (copied to the thread). */
  inputs: readonly Buffer[];
  taskId: number;
  attempt: number;
  type: string;
}

interface Job {
  readonly id: number;
  readonly job: ThreadJob;
  readonly signal: AbortSignal;
  readonly resolve: (result: HandlerResult) => void;
  readonly reject: (error: Error) => void;
  readonly onAbort: () => void;
  /** Its handler reported progress (see TaskContext.progress). */
  readonly onProgress: (value: number, message: string) => void;
  /** Set once its abort was sent to its thread: the thread goes if the task has not stopped by then. */
  stopTimer: NodeJS.Timeout | null;
}

interface Slot {
  thread: Thread;
  job: Job | null;
}

/** The thread script next to this module: .js once built, .ts when running from source (under tsx). */
const FROM_SOURCE = import.meta.url.endsWith('.ts');
const THREAD_URL = new URL(FROM_SOURCE ? './thread.ts' : './thread.js', import.meta.url);

/**
 * Starts a thread. From source, the thread registers tsx before it loads its script: Node 20 does not carry the
 * parent's --import loader hooks over to a thread's entry point, so a .ts entry would not load.
 */
function startThread(): Thread {
  if (!FROM_SOURCE) return new Thread(THREAD_URL);
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(THREAD_URL.href)}); })`;
  return new Thread(boot, { eval: true });
}

export class ThreadPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;
  /** Threads terminated because a task would not stop; for tests and stats. */
  stopped = 0;

  constructor(
    readonly size: number,
    readonly stopGraceMs: number,
  ) {}

  /** Runs a task in a thread; rejects with the signal's reason once the task was stopped after an abort. */
  run(job: ThreadJob, signal: AbortSignal, onProgress: (value: number, message: string) => void): Promise<HandlerResult> {
    if (this.closed) return Promise.reject(new TaskwireError(ErrorCode.CLOSED, 'the worker is closing'));
    if (signal.aborted) return Promise.reject(reason(signal));
    return new Promise((resolve, reject) => {
      const entry: Job = { id: this.nextId++, job, signal, resolve, reject, onAbort: () => this.abort(entry), stopTimer: null, onProgress };
      signal.addEventListener('abort', entry.onAbort, { once: true });
      const slot = this.slots.find((s) => s.job === null) ?? this.spawn();
      if (slot) this.start(slot, entry);
      else this.queue.push(entry);
    });
  }

  /** Terminates every thread; tasks still running or waiting fail with E_CLOSED. */
  async close(): Promise<void> {
    this.closed = true;
    const error = new TaskwireError(ErrorCode.CLOSED, 'the worker is closing');
    for (const entry of this.queue.splice(0)) this.finish(entry, error);
    const threads = this.slots.splice(0);
    for (const slot of threads) if (slot.job) this.finish(slot.job, error);
    await Promise.all(threads.map((slot) => slot.thread.terminate()));
  }

  private spawn(): Slot | null {
    if (this.slots.length >= this.size) return null;
    const slot: Slot = { thread: startThread(), job: null };
    this.watch(slot);
    this.slots.push(slot);
    return slot;
  }

  private watch(slot: Slot): void {
    const thread = slot.thread;
    thread.unref(); // an idle pool must not keep the process alive: the connection does that
    thread.on('message', (reply: Reply | ProgressMessage) => {
      const entry = slot.job;
      if (!entry || entry.id !== reply.id) return; // a reply from a task that was stopped
      if ('kind' in reply) return entry.onProgress(reply.value, reply.message);
      slot.job = null;
      if (reply.ok) this.finish(entry, null, reply.result);
      else this.finish(entry, new TaskwireError(reply.code, reply.message));
      this.next(slot);
    });
    // An uncaught error or a crash in the thread ends it: its task fails, and a new thread takes its place.
    thread.on('error', (err) => this.replace(slot, new TaskwireError(ErrorCode.HANDLER, `the handler's thread failed: ${err.message}`)));
    thread.on('exit', (code) => {
      if (this.slots.includes(slot) && slot.thread === thread) {
        this.replace(slot, new TaskwireError(ErrorCode.HANDLER, `the handler's thread exited with code ${code}`));
      }
    });
  }

  private start(slot: Slot, entry: Job): void {
    slot.job = entry;
    const { job } = entry;
    // One copy of the payload at most. A large TASK arrives in a buffer the frame decoder assembled for it alone
    // (its payload: the body after a header of 10 + type bytes), which moves to the thread as it is; a view of a
    // socket read shared with other frames is copied out (posting the view would copy the whole read).
    const buffer = job.payload.buffer;
    const header = 10 + Buffer.byteLength(job.type);
    const owns = buffer.byteLength >= 4096 && buffer.byteLength - job.payload.length <= header && !(buffer instanceof SharedArrayBuffer);
    const payload = owns ? job.payload : new Uint8Array(job.payload);
    const message: RunMessage = { kind: 'run', id: entry.id, ...job, payload };
    slot.thread.postMessage(message, owns ? [payload.buffer as ArrayBuffer] : []);
  }

  private next(slot: Slot): void {
    const entry = this.queue.shift();
    if (entry) this.start(slot, entry);
  }

  /** The task's signal fired: tell its thread; if it has not stopped after the grace period, stop the thread. */
  private abort(entry: Job): void {
    const queued = this.queue.indexOf(entry);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      return this.finish(entry, reason(entry.signal));
    }
    const slot = this.slots.find((s) => s.job === entry);
    if (!slot) return;
    const why = reason(entry.signal);
    const message: AbortMessage = { kind: 'abort', id: entry.id, code: why.code, message: why.message };
    slot.thread.postMessage(message);
    entry.stopTimer = setTimeout(() => {
      if (slot.job !== entry) return;
      this.stopped++;
      this.replace(slot, new TaskwireError(why.code, `${why.message}; its handler did not stop within ${this.stopGraceMs} ms and its thread was terminated`));
    }, this.stopGraceMs);
    entry.stopTimer.unref();
  }

  /** Fails the slot's task, terminates its thread and starts a new one in its place. */
  private replace(slot: Slot, error: Error): void {
    const entry = slot.job;
    slot.job = null;
    const old = slot.thread;
    const index = this.slots.indexOf(slot);
    if (index >= 0) this.slots.splice(index, 1);
    void old.terminate();
    if (entry) this.finish(entry, error);
    if (this.closed) return;
    const fresh = this.spawn();
    if (fresh) this.next(fresh);
  }

  private finish(entry: Job, error: Error | null, result?: HandlerResult): void {
    if (entry.stopTimer) clearTimeout(entry.stopTimer);
    entry.signal.removeEventListener('abort', entry.onAbort);
    if (error) entry.reject(error);
    else entry.resolve(result!);
  }
}

function reason(signal: AbortSignal): TaskwireError {
  const r = signal.reason as { code?: unknown; message?: unknown } | undefined;
  const code = typeof r?.code === 'string' ? r.code : ErrorCode.CANCELLED;
  const message = typeof r?.message === 'string' ? r.message : 'the task was aborted';
  return new TaskwireError(code, message);
}
