// The scheduling brain: queues, credits, dispatch, result routing, requeue and liveness, with no I/O at all.
//
// The core owns every decision and no socket, timer or clock. The I/O shell feeds it events (a peer joined, a
// task was submitted, a result arrived, a peer was lost, tick(now)) and the core answers through the
// CoreOutput it was given. Calls into an output object rather than returned action arrays keep the hot path
// free of per-task allocations, and a test can record the calls just as easily as it could read actions.
//
// Peer "handles" (H) are opaque to the core: the shell passes its connection objects, tests pass anything.

import { ErrorCode, TaskwireError } from '../errors.js';
import { LinkedList, type Linked } from './queue.js';

export interface Task<H> extends Linked<Task<H>> {
  /** Monotonic submission number; orders tasks across job types. */
  readonly seq: number;
  /** The id on the wire to workers (u32; wraps after 2^32 tasks, far beyond any task's lifetime). */
  readonly id: number;
  readonly type: string;
  readonly body: Buffer;
  readonly requestId: number;
  /** The submitting client; null once that client has gone, so the result is discarded. */
  client: ClientRecord<H> | null;
  /** The worker running the task, or null while it is queued. */
  worker: WorkerRecord<H> | null;
  /** Dispatch count: 1 for the first run, +1 per requeue. A result must name the current attempt. */
  attempt: number;
}

interface PeerBase<H> {
  readonly id: number;
  readonly name: string;
  readonly handle: H;
  /** Set by seen(); cleared by each tick. */
  active: boolean;
  /** Consecutive ticks without any frame from the peer. */
  missedTicks: number;
}

export interface ClientRecord<H> extends PeerBase<H> {
  readonly kind: 'client';
  /** The client's tasks by its request id, queued or running. */
  readonly tasks: Map<number, Task<H>>;
}

/** A worker's place in one job type's list of workers with a free slot. */
interface ReadySlot<H> extends Linked<ReadySlot<H>> {
  readonly worker: WorkerRecord<H>;
  readonly queue: TypeQueue<H>;
}

export interface WorkerRecord<H> extends PeerBase<H> {
  readonly kind: 'worker';
  /** Tasks it may hold at once (its credits); 0 until it sends READY, and again once it is draining. */
  concurrency: number;
  types: string[];
  /** The tasks it runs, by wire id. */
  readonly running: Map<number, Task<H>>;
  slots: ReadySlot<H>[];
}

export type PeerRecord<H> = ClientRecord<H> | WorkerRecord<H>;

/** Tasks waiting for one job type, and the workers of that type that have a free slot. */
interface TypeQueue<H> {
  readonly type: string;
  readonly tasks: LinkedList<Task<H>>;
  readonly ready: LinkedList<ReadySlot<H>>;
  /** Workers announcing this type; the queue is dropped when it is empty and this is 0. */
  workers: number;
}

export interface CoreOutput<H> {
  sendTask(worker: WorkerRecord<H>, task: Task<H>): void;
  sendCompleted(client: ClientRecord<H>, requestId: number, body: Buffer): void;
  sendFailed(client: ClientRecord<H>, requestId: number, code: string, message: string): void;
  sendKeepalive(peer: PeerRecord<H>): void;
  /** Close the peer's connection, telling it why. The core has already forgotten the peer. */
  closePeer(peer: PeerRecord<H>, error: TaskwireError): void;
  // Notifications for observers; the shell turns them into public events.
  taskQueued?(task: Task<H>): void;
  taskDispatched?(task: Task<H>, worker: WorkerRecord<H>): void;
  taskCompleted?(task: Task<H>, worker: WorkerRecord<H>): void;
  taskFailed?(task: Task<H>, code: string, message: string): void;
  taskRequeued?(task: Task<H>, worker: WorkerRecord<H>): void;
  peerLeft?(peer: PeerRecord<H>, reason: string, requeued: number): void;
}

export interface CoreOptions {
  /** Ticks a peer may stay silent before it is dropped. Default 3. */
  deadAfterTicks?: number;
}

export interface CoreStats {
  /** Tasks waiting for a worker. */
  queued: number;
  /** Tasks running on a worker. */
  inFlight: number;
  workers: number;
  clients: number;
  submitted: number;
  dispatched: number;
  completed: number;
  failed: number;
  requeued: number;
  /** Results dropped because their client had left. */
  discarded: number;
}

export type OutcomeInput = { ok: true; body: Buffer } | { ok: false; code: string; message: string };

export class SchedulerCore<H> {
  private readonly out: CoreOutput<H>;
  private readonly deadAfterTicks: number;
  private readonly queues = new Map<string, TypeQueue<H>>();
  private readonly clients = new Set<ClientRecord<H>>();
  private readonly workers = new Set<WorkerRecord<H>>();
  private nextPeerId = 1;
  private nextSeq = 1;
  private queued = 0;
  private inFlight = 0;
  private readonly counters = { submitted: 0, dispatched: 0, completed: 0, failed: 0, requeued: 0, discarded: 0 };
  /** The time of the latest tick, for decisions that need one (timeouts, later). */
  now = 0;

  constructor(output: CoreOutput<H>, options: CoreOptions = {}) {
    this.out = output;
    this.deadAfterTicks = options.deadAfterTicks ?? 3;
  }

  stats(): CoreStats {
    return {
      queued: this.queued,
      inFlight: this.inFlight,
      workers: this.workers.size,
      clients: this.clients.size,
      ...this.counters,
    };
  }

  // ---- peers -------------------------------------------------------------------------------------------------

  addClient(handle: H, name: string): ClientRecord<H> {
    const client: ClientRecord<H> = {
      kind: 'client',
      id: this.nextPeerId++,
      name,
      handle,
      active: true,
      missedTicks: 0,
      tasks: new Map(),
    };
    this.clients.add(client);
    return client;
  }

  addWorker(handle: H, name: string): WorkerRecord<H> {
    const worker: WorkerRecord<H> = {
      kind: 'worker',
      id: this.nextPeerId++,
      name,
      handle,
      active: true,
      missedTicks: 0,
      concurrency: 0,
      types: [],
      running: new Map(),
      slots: [],
    };
    this.workers.add(worker);
    return worker;
  }

  /** Any frame from a peer proves it alive. */
  seen(peer: PeerRecord<H>): void {
    peer.active = true;
  }

  /**
   * A worker declares the job types it runs and its concurrency. Sent once after the handshake and again to
   * change either; concurrency 0 means "send me nothing more" (a worker shutting down).
   */
  ready(worker: WorkerRecord<H>, concurrency: number, types: readonly string[]): void {
    if (!this.workers.has(worker)) return;
    if (!sameTypes(worker.types, types)) {
      this.releaseTypes(worker);
      worker.types = [...new Set(types)];
      worker.slots = worker.types.map((type) => {
        const queue = this.queueFor(type);
        queue.workers++;
        return { worker, queue, prev: null, next: null, list: null };
      });
    }
    worker.concurrency = concurrency;
    this.fill(worker);
  }

  /** A peer is gone (connection closed or dropped by the core). Idempotent. */
  lost(peer: PeerRecord<H>, reason: string): void {
    if (peer.kind === 'worker') this.workerLost(peer, reason);
    else this.clientLost(peer, reason);
  }

  private workerLost(worker: WorkerRecord<H>, reason: string): void {
    if (!this.workers.delete(worker)) return;
    const held = [...worker.running.values()].sort((a, b) => a.seq - b.seq);
    worker.running.clear();
    this.inFlight -= held.length;
    this.releaseTypes(worker);
    const requeued = held.filter((task) => {
      task.worker = null;
      return task.client !== null; // a task whose client has gone is dropped, not run again
    });
    const touched = new Set<TypeQueue<H>>();
    for (const task of requeued) touched.add(this.requeue(task));
    this.counters.requeued += requeued.length;
    for (const task of requeued) this.out.taskRequeued?.(task, worker);
    this.out.peerLeft?.(worker, reason, requeued.length);
    // Ready workers take the requeued tasks now; fill() picks the oldest across each worker's types.
    const ready = new Set<WorkerRecord<H>>();
    for (const queue of touched) for (let slot = queue.ready.head; slot; slot = slot.next) ready.add(slot.worker);
    for (const other of ready) this.fill(other);
  }

  /**
   * Puts a task back in its queue at the place its submission order gives it. Requeued tasks are older than
   * nearly everything queued, so the walk from the head stops after the few other requeued tasks.
   */
  private requeue(task: Task<H>): TypeQueue<H> {
    const queue = this.queueFor(task.type);
    let after = queue.tasks.head;
    while (after && after.seq < task.seq) after = after.next;
    queue.tasks.insertBefore(task, after);
    this.queued++;
    return queue;
  }

  private clientLost(client: ClientRecord<H>, reason: string): void {
    if (!this.clients.delete(client)) return;
    for (const task of client.tasks.values()) {
      task.client = null;
      if (task.list) {
        // Still queued: it will never run, so it goes now rather than when it reaches the head.
        task.list.remove(task);
        this.queued--;
        this.dropQueueIfIdle(task.type);
      }
      // Running tasks finish on their worker; their results are discarded when they arrive.
    }
    client.tasks.clear();
    this.out.peerLeft?.(client, reason, 0);
  }

  /** Drops peers that stayed silent for deadAfterTicks ticks and sends every peer a keepalive. */
  tick(now: number): void {
    this.now = now;
    for (const peers of [this.clients, this.workers] as Set<PeerRecord<H>>[]) {
      for (const peer of peers) {
        if (peer.active) {
          peer.active = false;
          peer.missedTicks = 0;
        } else if (++peer.missedTicks >= this.deadAfterTicks) {
          const reason = `no frame for ${peer.missedTicks} keepalive intervals`;
          this.lost(peer, reason);
          this.out.closePeer(peer, new TaskwireError(ErrorCode.TIMEOUT, reason));
          continue;
        }
        this.out.sendKeepalive(peer);
      }
    }
  }

  /** Fails every client's tasks with E_SHUTDOWN and forgets all peers; used by the scheduler's close(). */
  shutdown(message: string): void {
    for (const client of [...this.clients]) {
      for (const task of client.tasks.values()) {
        this.counters.failed++;
        this.out.sendFailed(client, task.requestId, ErrorCode.SHUTDOWN, message);
        this.out.taskFailed?.(task, ErrorCode.SHUTDOWN, message);
      }
      this.clientLost(client, message);
    }
    for (const worker of [...this.workers]) this.workerLost(worker, message);
  }

  // ---- tasks -------------------------------------------------------------------------------------------------

  /** Returns an error for a request the client must not make; the shell then closes the client. */
  submit(client: ClientRecord<H>, requestId: number, type: string, body: Buffer): TaskwireError | null {
    if (!this.clients.has(client)) return null;
    if (client.tasks.has(requestId)) {
      return new TaskwireError(ErrorCode.PROTOCOL, `request id ${requestId} is already in use on this connection`);
    }
    const seq = this.nextSeq++;
    const task: Task<H> = {
      seq,
      id: seq >>> 0,
      type,
      body,
      requestId,
      client,
      worker: null,
      attempt: 0,
      prev: null,
      next: null,
      list: null,
    };
    client.tasks.set(requestId, task);
    this.counters.submitted++;
    const queue = this.queueFor(type);
    const slot = queue.ready.head;
    if (slot) {
      this.assign(slot.worker, task);
      queue.ready.moveToBack(slot); // round-robin among workers with room
      return null;
    }
    queue.tasks.pushBack(task);
    this.queued++;
    this.out.taskQueued?.(task);
    return null;
  }

  /** Returns an error when the worker reports on a task it does not hold; the shell then closes the worker. */
  result(worker: WorkerRecord<H>, taskId: number, attempt: number, outcome: OutcomeInput): TaskwireError | null {
    if (!this.workers.has(worker)) return null;
    const task = worker.running.get(taskId);
    if (!task || task.attempt !== attempt) {
      return new TaskwireError(ErrorCode.PROTOCOL, `result for task ${taskId} attempt ${attempt}, which this worker does not hold`);
    }
    worker.running.delete(taskId);
    this.inFlight--;
    task.worker = null;
    if (outcome.ok) this.complete(task, worker, outcome.body);
    else this.fail(task, outcome.code, outcome.message);
    this.fill(worker);
    return null;
  }

  private complete(task: Task<H>, worker: WorkerRecord<H>, body: Buffer): void {
    const client = task.client;
    this.counters.completed++;
    if (!client) {
      this.counters.discarded++;
      return;
    }
    client.tasks.delete(task.requestId);
    this.out.sendCompleted(client, task.requestId, body);
    this.out.taskCompleted?.(task, worker);
  }

  private fail(task: Task<H>, code: string, message: string): void {
    const client = task.client;
    this.counters.failed++;
    if (!client) {
      this.counters.discarded++;
      return;
    }
    client.tasks.delete(task.requestId);
    this.out.sendFailed(client, task.requestId, code, message);
    this.out.taskFailed?.(task, code, message);
  }

  // ---- dispatch ----------------------------------------------------------------------------------------------

  private assign(worker: WorkerRecord<H>, task: Task<H>): void {
    task.worker = worker;
    task.attempt++;
    worker.running.set(task.id, task);
    this.inFlight++;
    this.counters.dispatched++;
    this.out.sendTask(worker, task);
    this.out.taskDispatched?.(task, worker);
    if (worker.running.size >= worker.concurrency) this.unready(worker);
  }

  /**
   * Gives a worker queued tasks until it is full; if its queues run dry first, it waits in the ready list of
   * each of its types. Picking the oldest head among its types costs O(types it runs), never O(workers).
   */
  private fill(worker: WorkerRecord<H>): void {
    while (worker.running.size < worker.concurrency) {
      let best: TypeQueue<H> | null = null;
      for (const slot of worker.slots) {
        const head = slot.queue.tasks.head;
        if (head && (!best || head.seq < best.tasks.head!.seq)) best = slot.queue;
      }
      if (!best) {
        for (const slot of worker.slots) if (!slot.list) slot.queue.ready.pushBack(slot);
        return;
      }
      this.queued--;
      this.assign(worker, best.tasks.popFront()!);
    }
    this.unready(worker);
  }

  private unready(worker: WorkerRecord<H>): void {
    for (const slot of worker.slots) slot.list?.remove(slot);
  }

  private releaseTypes(worker: WorkerRecord<H>): void {
    this.unready(worker);
    for (const slot of worker.slots) {
      slot.queue.workers--;
      this.dropQueueIfIdle(slot.queue.type);
    }
    worker.slots = [];
  }

  private queueFor(type: string): TypeQueue<H> {
    let queue = this.queues.get(type);
    if (!queue) {
      queue = { type, tasks: new LinkedList(), ready: new LinkedList(), workers: 0 };
      this.queues.set(type, queue);
    }
    return queue;
  }

  /** Job types come from peers, so their queues must not outlive their tasks and workers. */
  private dropQueueIfIdle(type: string): void {
    const queue = this.queues.get(type);
    if (queue && queue.workers === 0 && queue.tasks.length === 0) this.queues.delete(type);
  }

  /** Number of per-type queues alive; exposed for leak checks in tests. */
  get queueCount(): number {
    return this.queues.size;
  }
}

function sameTypes(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((type, i) => type === b[i]);
}
