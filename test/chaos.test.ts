// Chaos and hostile-peer tests on real sockets and processes: workers SIGKILLed mid-run, slow-loris peers,
// connection floods, live protocol fuzzing and hostile churn. Every test reports its figures with t.comment().

import t, { type Test } from 'tap';
import net from 'node:net';
import { builtinHandlers, createClient, createWorker, ErrorCode, type Client, type Scheduler, type Worker } from '../lib/index.js';
import {
  Cmd,
  MAX_HELLO_PAYLOAD,
  PROTOCOL_VERSION,
  Role,
  decodeError,
  decodeTask,
  encode,
  encodeKeepalive,
  writeCompleted,
  writeError,
  writeFailed,
  writeHello,
  writeReady,
  writeResultError,
  writeResultOk,
  writeSubmit,
  writeTask,
} from '../lib/protocol/index.js';
import { getGc, mulberry32 as prng, sha256, spawnTs, startScheduler, waitFor, within, type Child } from './helpers.js';

// ---- plumbing --------------------------------------------------------------------------------------------------

/** Submits `count` sha256 tasks named `<prefix>-<i>` and tracks how often each settled, its result or error. */
function submitAll(c: Client, prefix: string, count: number) {
  const track = {
    settled: new Uint8Array(count),
    results: new Array<string | undefined>(count),
    errors: [] as string[],
    settledCount: 0,
    all: [] as Promise<void>[],
  };
  track.all = Array.from({ length: count }, (_, i) =>
    c.submit('sha256', `${prefix}-${i}`).then(
      (r) => {
        track.settled[i]!++;
        track.settledCount++;
        track.results[i] = r;
      },
      (err: unknown) => {
        track.settled[i]!++;
        track.settledCount++;
        track.errors.push(`${prefix}-${i}: ${(err as { code?: string }).code} ${(err as Error).message}`);
      },
    ),
  );
  return track;
}


const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function hello(role: number, name: string): Buffer {
  return encode(writeHello, { version: PROTOCOL_VERSION, role: role as 1 | 2 | 3, heartbeatMs: 0, name, token: '' });
}

interface Frame {
  cmd: number;
  payload: Buffer;
}

/** Cuts what a raw socket received into whole frames (a trailing partial frame is ignored). */
function parseFrames(bytes: Buffer): Frame[] {
  const frames: Frame[] = [];
  let offset = 0;
  while (offset + 5 <= bytes.length) {
    const length = bytes.readUInt32BE(offset + 1);
    if (offset + 5 + length > bytes.length) break;
    frames.push({ cmd: bytes[offset]!, payload: bytes.subarray(offset + 5, offset + 5 + length) });
    offset += 5 + length;
  }
  return frames;
}

/** A raw TCP peer that records what it receives and when it was closed. */
interface RawPeer {
  socket: net.Socket;
  openedAt: number;
  /** Date.now() at 'close'; 0 while open. */
  closedAt: number;
  closed: Promise<void>;
  received(): Buffer;
  frames(): Frame[];
  /** The ERROR frame received, if any (the scheduler sends it last). */
  error(): { code: string; message: string } | null;
  /** Writes unless the socket can no longer be written. */
  send(bytes: Buffer): void;
}

/** Raw sockets are destroyed at teardown whatever happened to them. */
function rawPeers(t: Test, port: number): (onConnect?: (peer: RawPeer) => void) => RawPeer {
  const all = new Set<net.Socket>();
  t.teardown(() => {
    for (const socket of all) socket.destroy();
  });
  return (onConnect) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    all.add(socket);
    socket.setNoDelay(true);
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    // Hostile peers are cut off mid-write: EPIPE and ECONNRESET are expected, not failures.
    socket.on('error', () => {});
    const peer: RawPeer = {
      socket,
      openedAt: Date.now(),
      closedAt: 0,
      closed: new Promise<void>((resolve) =>
        socket.once('close', () => {
          peer.closedAt = Date.now();
          all.delete(socket);
          resolve();
        }),
      ),
      received: () => Buffer.concat(chunks),
      frames: () => parseFrames(Buffer.concat(chunks)),
      error() {
        const last = peer.frames().at(-1);
        if (!last || last.cmd !== Cmd.ERROR) return null;
        try {
          return decodeError(last.payload);
        } catch {
          return { code: '<undecodable ERROR>', message: last.payload.toString('hex') };
        }
      },
      send(bytes) {
        if (!socket.destroyed && socket.writable) socket.write(bytes);
      },
    };
    if (onConnect) socket.once('connect', () => onConnect(peer));
    return peer;
  };
}

function honestWorker(t: Test, port: number, options: Parameters<typeof createWorker>[0] = {}): Worker {
  const w = createWorker({ port, concurrency: 4, reconnectMinMs: 20, reconnectMaxMs: 200, ...options });
  t.teardown(() => w.close());
  return w;
}

function honestClient(t: Test, port: number, name = 'honest'): Client {
  const c = createClient({ port, name });
  t.teardown(() => c.close());
  return c;
}

/**
 * Submits `type` tasks one after the other until `stop()` says so; each must come back right and within `ms`.
 * Resolves with the count, rejects on the first failure or late answer.
 */
async function keepSubmitting(c: Client, type: string, stop: () => boolean, ms: number, label: string): Promise<number> {
  let done = 0;
  while (!stop()) {
    const input = `${label}-${done}`;
    const result = await within(ms, `${label} task ${done}`, c.submit(type, input));
    if (result !== sha256(input)) throw new Error(`${label} task ${done}: got ${result}, expected ${sha256(input)}`);
    done++;
  }
  return done;
}

/** Fails the test if anything in this process throws or rejects unhandled while `t` runs. */
function guardProcess(t: Test): { uncaught: unknown[] } {
  const state = { uncaught: [] as unknown[] };
  const onError = (err: unknown): void => {
    state.uncaught.push(err);
    t.fail(`uncaught in the test process: ${err instanceof Error ? err.stack : String(err)}`);
  };
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
  t.teardown(() => {
    process.off('uncaughtException', onError);
    process.off('unhandledRejection', onError);
  });
  return state;
}

/** A gc() even without --expose-gc, so heap figures are comparable; null if the runtime refuses. */
function heapAfterGc(gc: (() => void) | null): number {
  if (gc) {
    gc();
    gc();
  }
  return process.memoryUsage().heapUsed;
}

const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** The scheduler core's count of per-type queues, when the build exposes it (a leak check for hostile types). */
function queueCount(scheduler: Scheduler): number | null {
  const core = (scheduler as unknown as { core?: { queueCount?: unknown } }).core;
  return typeof core?.queueCount === 'number' ? core.queueCount : null;
}

/**
 * tap puts its process-tree recorder (@tapjs/processinfo) in NODE_OPTIONS for every child. It only serves
 * coverage, which this project disables, and it adds about a second of start-up CPU to each worker process; with
 * restarts every few hundred ms on 2 cores that adds up. The worker processes go without it.
 */
const CHILD_ENV = {
  NODE_OPTIONS: (process.env.NODE_OPTIONS ?? '')
    .split(/\s+/)
    .filter((arg) => arg && !arg.includes('@tapjs/processinfo'))
    .join(' '),
};

function spawnChaosWorker(t: Test, port: number, name: string, concurrency: number, delayMs: number): Child {
  return spawnTs(t, 'test/fixtures/chaos-worker.ts', [String(port), name, String(concurrency), String(delayMs)], CHILD_ENV);
}

// ---- 1. chaos on real processes --------------------------------------------------------------------------------

t.test('chaos: 20,000 tasks while worker processes are SIGKILLed at random and restarted', async (t) => {
  const TASKS = 20_000;
  const WORKERS = 4;
  const CONCURRENCY = 8;
  // Every kill that catches a task counts as one fault against that task, and a task fails with E_ATTEMPTS at
  // its maxAttempts-th fault. With the default of 3, an unlucky task caught by three kills would fail for a
  // reason that is the scheduler's documented policy, not a loss. A task can be caught at most once per kill,
  // so capping the kills (MAX_KILLS) below maxAttempts makes E_ATTEMPTS impossible: any failure here is a bug.
  const MAX_ATTEMPTS = 20;
  const MAX_KILLS = 8; // also bounds the run time: each restart costs a worker process start-up (1-4 s here)
  const MIN_KILLS = 4;
  // A short per-task wait in the workers keeps the run long enough for kills to land on tasks in flight.
  const TASK_DELAY_MS = 1;
  const seed = Number(process.env.TASKWIRE_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const random = prng(seed);
  t.comment(`chaos seed ${seed} (replay the kill choices with TASKWIRE_CHAOS_SEED=${seed})`);

  const scheduler = await startScheduler(t, { heartbeatMs: 500, maxAttempts: MAX_ATTEMPTS });
  const port = scheduler.port;
  const completions = new Map<number, number>();
  scheduler.on('taskCompleted', (e) => completions.set(e.taskId, (completions.get(e.taskId) ?? 0) + 1));
  const failedEvents: string[] = [];
  scheduler.on('taskFailed', (e) => failedEvents.push(`${e.taskId}: ${e.code} ${e.message}`));
  const live = new Set<string>();
  const left = new Map<string, number>(); // worker name -> tasks requeued when it left
  scheduler.on('workerReady', (w) => live.add(w.name));
  scheduler.on('peerLeft', (p) => {
    if (p.role !== 'worker') return;
    live.delete(p.name);
    left.set(p.name, p.requeued);
  });

  const slots: Array<{ name: string; child: Child }> = [];
  let spawned = 0;
  const spawnedAt = new Map<string, number>();
  const startupMs: number[] = [];
  scheduler.on('workerReady', (w) => {
    const at = spawnedAt.get(w.name);
    if (at !== undefined) startupMs.push(Date.now() - at);
  });
  const spawnSlot = (slot: number): void => {
    const name = `chaos-${slot}-${spawned++}`;
    spawnedAt.set(name, Date.now());
    const child = spawnChaosWorker(t, port, name, CONCURRENCY, TASK_DELAY_MS);
    slots[slot] = { name, child };
  };
  for (let i = 0; i < WORKERS; i++) spawnSlot(i);
  await waitFor(`${WORKERS} worker processes to register`, () => slots.every((s) => live.has(s.name)), 30_000);

  const c = honestClient(t, port, 'chaos-client');
  await within(5000, 'client connects', c.connect());
  const started = Date.now();
  const track = submitAll(c, 'task', TASKS);
  const { settled, results, errors, all } = track;

  // Kills start with the first results, so they land while the bulk of the work is in flight.
  await waitFor('the first results', () => track.settledCount > 0, 20_000);
  const kills: Array<{ name: string; atSettled: number; requeued: number; ms: number }> = [];
  while (track.settledCount < TASKS && kills.length < MAX_KILLS) {
    await pause(100 + Math.floor(random() * 200)); // the moment of the next kill: pacing, not an assertion
    if (track.settledCount >= TASKS) break;
    const candidates = slots.map((_, i) => i).filter((i) => live.has(slots[i]!.name));
    if (candidates.length === 0) continue; // every worker is restarting; try again at the next moment
    const slot = candidates[Math.floor(random() * candidates.length)]!;
    const { name, child } = slots[slot]!;
    const atSettled = track.settledCount;
    child.proc.kill('SIGKILL');
    t.equal(await within(5000, `${name} to die`, child.exited), 'SIGKILL', `${name} killed`, { diagnostic: false });
    await waitFor(`the scheduler to notice ${name} is gone`, () => left.has(name), 5000);
    kills.push({ name, atSettled, requeued: left.get(name)!, ms: Date.now() - started });
    spawnSlot(slot); // a fresh process takes the slot
  }

  await within(45_000, `all ${TASKS} tasks to settle`, Promise.all(all));
  const elapsed = Date.now() - started;

  let wrong = 0;
  let twice = 0;
  for (let i = 0; i < TASKS; i++) {
    if (settled[i]! > 1) twice++;
    if (results[i] !== undefined && results[i] !== sha256(`task-${i}`)) {
      if (wrong++ < 5) t.fail(`task-${i}: wrong digest ${results[i]}`);
    }
  }
  const correct = results.filter((r, i) => r !== undefined && r === sha256(`task-${i}`)).length;
  const lost = TASKS - correct;
  const landed = kills.filter((k) => k.requeued > 0);
  const stats = scheduler.stats();

  t.comment(
    `chaos: ${TASKS} tasks in ${elapsed} ms; ${kills.length} kills survived (${landed.length} caught tasks in flight, ` +
      `${kills.reduce((n, k) => n + k.requeued, 0)} tasks requeued by them); ${spawned} worker processes spawned; ` +
      `${lost} tasks lost; ${errors.length} failed; stats.requeued=${stats.requeued} dispatched=${stats.dispatched}`,
  );
  t.comment(`worker process start to registered: ${startupMs.join(', ')} ms`);
  t.comment(`kills: ${kills.map((k) => `${k.name}@${k.ms}ms/${k.atSettled} done/${k.requeued} requeued`).join(', ')}`);
  if (errors.length > 0) t.comment(`first failures: ${errors.slice(0, 5).join(' | ')}`);
  if (failedEvents.length > 0) t.comment(`scheduler taskFailed: ${failedEvents.slice(0, 5).join(' | ')}`);

  t.equal(settled.filter((n) => n === 0).length, 0, 'every promise settled');
  t.equal(twice, 0, 'no promise settled more than once');
  t.equal(errors.length, 0, 'no task failed');
  t.equal(wrong, 0, 'every result is the right digest');
  t.equal(lost, 0, '0 tasks lost');
  t.equal(completions.size, TASKS, `the scheduler completed ${TASKS} distinct task ids`);
  t.equal([...completions.values()].filter((n) => n !== 1).length, 0, 'each task id completed exactly once');
  t.equal(stats.completed, TASKS, 'stats().completed');
  t.equal(stats.queued + stats.inFlight, 0, 'nothing left queued or running');
  t.ok(stats.requeued > 0, `tasks were requeued (${stats.requeued})`);
  t.ok(kills.length >= MIN_KILLS, `at least ${MIN_KILLS} kills (${kills.length})`);
  t.ok(landed.length >= MIN_KILLS, `at least ${MIN_KILLS} kills caught tasks in flight (${landed.length})`);
  const diedAlone = slots.filter((s) => s.child.proc.exitCode !== null || s.child.proc.signalCode !== null);
  t.same(
    diedAlone.map((s) => `${s.name}: ${s.child.stderr().slice(-500)}`),
    [],
    'no worker process died by itself (only the SIGKILLs ended workers)',
  );
});

t.test('chaos: a worker frozen with SIGSTOP loses its tasks at their timeout, is dropped, and rejoins on SIGCONT', async (t) => {
  // PROTOCOL.md 4.4: a worker holding leases is not dropped for silence (a blocked event loop looks the same);
  // its tasks' timeouts bound the wait, then silence counts again. So a frozen worker costs its tasks
  // timeoutMs, then 3 heartbeat intervals more to be dropped.
  const TASKS = 4000;
  const HEARTBEAT_MS = 300;
  const TIMEOUT_MS = 1500;
  const scheduler = await startScheduler(t, { heartbeatMs: HEARTBEAT_MS, timeoutMs: TIMEOUT_MS, maxAttempts: 20 });
  const port = scheduler.port;
  const completions = new Map<number, number>();
  scheduler.on('taskCompleted', (e) => completions.set(e.taskId, (completions.get(e.taskId) ?? 0) + 1));
  const ids = new Map<string, number[]>(); // name -> worker ids, one per registration
  scheduler.on('workerReady', (w) => {
    const list = ids.get(w.name) ?? [];
    if (!list.includes(w.id)) list.push(w.id);
    ids.set(w.name, list);
  });
  const dispatchedTo = new Map<number, number>();
  scheduler.on('taskDispatched', (e) => dispatchedTo.set(e.workerId!, (dispatchedTo.get(e.workerId!) ?? 0) + 1));
  const takenBack = new Map<number, string[]>(); // worker id -> reasons its tasks were requeued
  scheduler.on('taskRequeued', (e) => takenBack.set(e.fromWorkerId, [...(takenBack.get(e.fromWorkerId) ?? []), e.reason]));
  const left = new Map<string, { reason: string; requeued: number; at: number }>();
  scheduler.on('peerLeft', (p) => {
    if (p.role === 'worker' && !left.has(p.name)) left.set(p.name, { reason: p.reason, requeued: p.requeued, at: Date.now() });
  });

  const frozen = spawnChaosWorker(t, port, 'frozen', 8, 1);
  spawnChaosWorker(t, port, 'steady', 8, 1);
  await waitFor('both worker processes to register', () => ids.has('frozen') && ids.has('steady'), 30_000);
  const frozenId = ids.get('frozen')![0]!;
  const c = honestClient(t, port, 'frozen-client');
  const track = submitAll(c, 'frozen', TASKS);
  const { settled, results, errors, all } = track;
  await waitFor('the worker to be busy', () => (dispatchedTo.get(frozenId) ?? 0) > 100 && track.settledCount > 100, 20_000);
  frozen.proc.kill('SIGSTOP');
  const stoppedAt = Date.now();
  const atStop = track.settledCount;
  const bound = TIMEOUT_MS + 4 * HEARTBEAT_MS + 200; // timeout (+ one 100 ms tick), then up to 4 heartbeat ticks
  await waitFor('the scheduler to drop the frozen worker', () => left.has('frozen'), bound + 5000);
  const dropped = left.get('frozen')!;
  const detectMs = dropped.at - stoppedAt;
  const reasons = takenBack.get(frozenId) ?? [];
  const settledWhileFrozen = track.settledCount - atStop;
  frozen.proc.kill('SIGCONT');
  await waitFor('the thawed worker to register again', () => (ids.get('frozen')?.length ?? 0) >= 2, 20_000);
  await within(30_000, `all ${TASKS} tasks to settle`, Promise.all(all));

  const correct = results.filter((r, i) => r === sha256(`frozen-${i}`)).length;
  t.comment(
    `frozen worker: SIGSTOP at ${atStop}/${TASKS} settled; ${reasons.length} of its tasks taken back (${reasons[0] ?? '-'}); ` +
      `${settledWhileFrozen} settled elsewhere while it was frozen; dropped ${detectMs} ms after the stop (${dropped.reason}); ` +
      `rejoined as worker ${ids.get('frozen')!.at(-1)}; ${correct} correct, ${TASKS - correct} lost, ${errors.length} failed`,
  );
  if (errors.length > 0) t.comment(`first failures: ${errors.slice(0, 5).join(' | ')}`);
  t.ok(reasons.length > 0 && reasons.every((r) => /timed out/.test(r)), `its tasks were taken back at their timeout (${reasons.length})`);
  t.match(dropped.reason, /keepalive/, 'then dropped for silence');
  t.ok(detectMs <= bound + 1500, `dropped within timeoutMs + 3 heartbeat intervals (+ ticks and slack): ${detectMs} ms <= ${bound + 1500} ms`);
  t.ok(settledWhileFrozen > 0, 'the other worker kept completing tasks meanwhile');
  t.equal(settled.filter((n) => n !== 1).length, 0, 'every promise settled exactly once');
  t.equal(errors.length, 0, 'no task failed');
  t.equal(correct, TASKS, 'every result is the right digest: 0 lost');
  t.equal(completions.size, TASKS, 'each task id completed');
  t.equal([...completions.values()].filter((n) => n !== 1).length, 0, 'no task id completed twice');
  await waitFor('both workers registered at the end', () => scheduler.stats().workers === 2, 5000);
});

// ---- 2. slow-loris -----------------------------------------------------------------------------------------------

t.test('slow-loris: silent, trickling and half-frame sockets are cut off; honest peers are served throughout', async (t) => {
  const HANDSHAKE_MS = 300;
  const HEARTBEAT_MS = 100;
  const scheduler = await startScheduler(t, { handshakeTimeoutMs: HANDSHAKE_MS, heartbeatMs: HEARTBEAT_MS });
  const port = scheduler.port;
  const w = honestWorker(t, port);
  await within(5000, 'honest worker', w.ready());
  const c = honestClient(t, port);
  await within(5000, 'honest client', c.connect());
  t.equal(scheduler.stats().connections, 2, 'baseline: the honest worker and client');

  const open = rawPeers(t, port);
  const timers = new Set<NodeJS.Timeout>();
  t.teardown(() => timers.forEach((timer) => clearInterval(timer)));
  /** Writes `bytes` one byte every `everyMs` until done or the socket is gone. */
  const trickle = (peer: RawPeer, bytes: Buffer, everyMs: number): void => {
    let i = 0;
    const timer = setInterval(() => {
      if (i >= bytes.length || peer.closedAt || !peer.socket.writable) {
        clearInterval(timer);
        timers.delete(timer);
        return;
      }
      peer.send(bytes.subarray(i, ++i));
    }, everyMs);
    timers.add(timer);
  };
  const bigSubmit = encode(writeSubmit, 1, 'sha256', Buffer.alloc(4096, 0x61));

  type Kind = 'silent' | 'slow-hello' | 'half-submit' | 'trickle-submit';
  // Before its hello a peer has handshakeTimeoutMs; after it, 3 silent heartbeat intervals (up to 4 ticks, as the
  // interval timer is shared). A frame only counts once complete, so bytes trickling in do not keep a peer alive.
  const bound: Record<Kind, number> = {
    silent: HANDSHAKE_MS,
    'slow-hello': HANDSHAKE_MS,
    'half-submit': 4 * HEARTBEAT_MS,
    'trickle-submit': 4 * HEARTBEAT_MS,
  };
  const SLACK_MS = 1000; // timers on a loaded 2-core machine fire late; this is the tolerance, not the expectation
  const slow: Array<{ kind: Kind; peer: RawPeer }> = [];
  let stopHonest = false;
  const honest = keepSubmitting(c, 'sha256', () => stopHonest, 2000, 'honest');

  const kinds: Kind[] = ['silent', 'slow-hello', 'half-submit', 'trickle-submit'];
  for (let i = 0; i < 50; i++) {
    const kind = kinds[i % kinds.length]!;
    const peer = open((p) => {
      if (kind === 'slow-hello') trickle(p, hello(Role.CLIENT, `slow-hello-${i}`), 60);
      if (kind === 'half-submit') {
        p.send(hello(Role.CLIENT, `half-${i}`));
        p.send(bigSubmit.subarray(0, Math.floor(bigSubmit.length / 2)));
      }
      if (kind === 'trickle-submit') {
        p.send(hello(Role.CLIENT, `trickle-${i}`));
        trickle(p, bigSubmit, 20); // a byte every 20 ms: 4 KiB would take 80 s
      }
    });
    slow.push({ kind, peer });
  }
  await within(10_000, 'every slow socket to be closed', Promise.all(slow.map((s) => s.peer.closed)));
  // Keep the honest traffic going a little past the last cut so "throughout" includes the aftermath.
  const afterCut = Date.now();
  await waitFor('honest traffic after the last cut', () => Date.now() - afterCut > 2 * HEARTBEAT_MS, 5000);
  stopHonest = true;
  const honestDone = await honest;

  const byKind = new Map<Kind, { n: number; maxMs: number; timeouts: number; other: string[] }>();
  for (const { kind, peer } of slow) {
    const entry = byKind.get(kind) ?? { n: 0, maxMs: 0, timeouts: 0, other: [] };
    const ms = peer.closedAt - peer.openedAt;
    entry.n++;
    entry.maxMs = Math.max(entry.maxMs, ms);
    const err = peer.error();
    if (err?.code === ErrorCode.TIMEOUT) entry.timeouts++;
    else entry.other.push(err ? err.code : 'no ERROR frame');
    byKind.set(kind, entry);
  }
  for (const [kind, e] of byKind) {
    t.comment(`slow-loris ${kind}: ${e.n} sockets, closed after at most ${e.maxMs} ms (bound ${bound[kind]} ms), ${e.timeouts} got E_TIMEOUT`);
    t.ok(e.maxMs <= bound[kind] + SLACK_MS, `${kind}: every socket closed within ${bound[kind]} ms + ${SLACK_MS} ms slack (max ${e.maxMs} ms)`);
    t.equal(e.timeouts, e.n, `${kind}: every socket got ERROR E_TIMEOUT${e.other.length ? ` (others: ${e.other.slice(0, 3).join(', ')})` : ''}`);
  }
  t.comment(`slow-loris: ${slow.length} slow sockets; the honest client completed ${honestDone} sequential tasks meanwhile`);
  t.ok(honestDone > 0, `the honest client was served throughout (${honestDone} tasks)`);
  await waitFor('connections back to the honest peers', () => scheduler.stats().connections === 2, 5000);
  const stats = scheduler.stats();
  t.equal(stats.connections, 2, 'stats().connections is the honest worker and client only');
  t.equal(stats.clients, 1, 'one client registered');
  t.equal(stats.workers, 1, 'one worker registered');
});

// ---- 3. connection flood -----------------------------------------------------------------------------------------

t.test('connection flood: silent connections past the limits make room for honest peers (regression: a token holder locked out)', async (t) => {
  // Before, 1,000 sockets that never said hello filled maxConnections, and a worker with the right token was
  // refused until their handshake timeout. Now the oldest connection still in its handshake is closed to make
  // room; only connections that all completed their hello can fill the limit.
  const MAX = 64;
  const FLOOD = 300;
  const scheduler = await startScheduler(t, { maxConnections: MAX });
  const port = scheduler.port;
  const w = honestWorker(t, port);
  await within(5000, 'honest worker', w.ready());
  const c = honestClient(t, port);
  await within(5000, 'honest client', c.connect());
  const baseline = scheduler.stats().connections;
  t.equal(baseline, 2, 'baseline: the honest worker and client');

  let floodOver = false;
  const honest = keepSubmitting(c, 'sha256', () => floodOver, 2000, 'during-flood');
  const open = rawPeers(t, port);
  const started = Date.now();
  const flood: RawPeer[] = [];
  for (let i = 0; i < FLOOD; i++) {
    flood.push(open());
    if (i % 50 === 49) await pause(20); // in waves, so each wave's connections are older than the next's
  }
  const expectedClosed = FLOOD - (MAX - baseline);
  const closed = (): RawPeer[] => flood.filter((p) => p.closedAt > 0);
  await waitFor(`${expectedClosed} silent connections to be closed`, () => closed().length >= expectedClosed, 15_000);
  const closedMs = Date.now() - started;
  await waitFor('the scheduler to hold its limit', () => scheduler.stats().connections === MAX, 5000);
  t.equal(scheduler.stats().handshakes, MAX - baseline, 'the newest silent ones wait in their handshake');
  const early = flood.slice(0, 50);
  t.ok(early.every((p) => p.closedAt > 0), 'the oldest were the ones closed');

  // A newcomer with something to say gets in at once: the oldest silent connection makes room for it.
  const newcomer = honestClient(t, port, 'newcomer-at-limit');
  await within(5000, 'newcomer connects at the limit', newcomer.connect());
  t.equal(await within(5000, 'a task from the newcomer', newcomer.submit('sha256', 'in')), sha256('in'), 'and is served');
  t.equal(scheduler.stats().connections, MAX, 'still at the limit');
  const codes = new Map<string, number>();
  for (const p of closed()) {
    const code = p.error()?.code ?? 'no ERROR frame';
    codes.set(code, (codes.get(code) ?? 0) + 1);
  }
  t.equal(closed().length, expectedClosed + 1, `${expectedClosed + 1} of ${FLOOD} silent connections closed`);
  t.equal(codes.get(ErrorCode.TOO_MANY_CONNECTIONS), expectedClosed + 1, `each with ERROR E_TOO_MANY_CONNECTIONS (${[...codes].map(([k, v]) => `${k}: ${v}`).join(', ')})`);
  const extra = await within(5000, 'a task at the limit', c.submit('sha256', 'at-the-limit'));
  t.equal(extra, sha256('at-the-limit'), 'the connected client is served at the limit');
  floodOver = true;
  const honestDone = await honest;

  // When every connection has said hello, the limit holds: a newcomer is refused with a clear code.
  for (const p of flood) p.socket.destroy();
  await waitFor('connections back to the honest ones', () => scheduler.stats().connections === baseline + 1, 5000);
  const talkers = Array.from({ length: MAX - baseline - 1 }, () => open((p) => p.send(hello(Role.CLIENT, 'talker'))));
  await waitFor('the talkers to be registered', () => scheduler.stats().clients === MAX - 1, 5000);
  t.equal(scheduler.stats().handshakes, 0);
  const refused = createClient({ port, name: 'refused' });
  t.teardown(() => refused.close());
  await t.rejects(within(5000, 'newcomer refused', refused.connect()), { code: ErrorCode.TOO_MANY_CONNECTIONS }, 'refused when nobody is still in a handshake');
  for (const p of talkers) p.socket.destroy();
  await waitFor('connections back to the baseline', () => scheduler.stats().connections === baseline + 1, 5000);
  const after = honestClient(t, port, 'after-flood');
  await within(5000, 'a new client connects after the flood', after.connect());
  t.equal(await within(5000, 'a task after the flood', after.submit('sha256', 'after')), sha256('after'), 'a new client gets results');
  t.equal(await within(5000, 'the old client', c.submit('sha256', 'old')), sha256('old'), 'the first client still does');
  t.comment(
    `flood: ${FLOOD} silent connections opened against maxConnections=${MAX}; ${expectedClosed} closed to make room within ` +
      `${closedMs} ms, oldest first; an honest newcomer got in at the limit; the honest client completed ${honestDone} tasks during the flood`,
  );
});

// ---- 4. live fuzz ------------------------------------------------------------------------------------------------

const FUZZ_TYPES = ['sha256', 'arith', 'fuzz', '', 'é€𝄞', 'x'.repeat(300)];

/** Valid frames of every command, with random fields. */
function validFrames(random: () => number): Array<() => Buffer> {
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
  const u32 = (): number => (random() < 0.5 ? Math.floor(random() * 64) : Math.floor(random() * 0x1_0000_0000));
  const bytes = (max: number): Buffer => Buffer.from(Array.from({ length: Math.floor(random() * max) }, () => Math.floor(random() * 256)));
  return [
    () => hello(pick([Role.CLIENT, Role.WORKER, Role.SCHEDULER, 0, 4, 255]), pick(['fuzz', '', 'é'])),
    () => encode(writeHello, { version: pick([0, 1, 2, 255]), role: Role.CLIENT, heartbeatMs: u32(), name: 'v', token: pick(['', 't']) }),
    () => encodeKeepalive(),
    () => encode(writeSubmit, u32(), pick(FUZZ_TYPES), bytes(64)),
    () => encode(writeReady, u32() % 64, Array.from({ length: Math.floor(random() * 4) }, () => pick(FUZZ_TYPES))),
    () => encode(writeResultOk, u32(), u32(), bytes(32)),
    () => encode(writeResultError, u32(), u32(), pick(['E_HANDLER', 'E_X', '']), 'fuzzed failure'),
    () => encode(writeError, pick(['E_PROTOCOL', 'E_FUZZ']), 'fuzz says bye'),
    () => encode(writeTask, u32(), u32(), pick(FUZZ_TYPES), bytes(16)),
    () => encode(writeCompleted, u32(), bytes(16)),
    () => encode(writeFailed, u32(), 'E_X', 'nope'),
  ];
}

/** One fuzz connection's bytes: an optional valid opening, then a mix of random, valid and mutated frames. */
function fuzzBytes(random: () => number): { bytes: Buffer; parts: number } {
  const int = (n: number): number => Math.floor(random() * n);
  const frames = validFrames(random);
  const parts: Buffer[] = [];
  const opening = random();
  if (opening < 0.35) parts.push(hello(Role.CLIENT, 'fuzz-client'));
  else if (opening < 0.7) parts.push(hello(Role.WORKER, 'fuzz-worker'), encode(writeReady, 1 + int(8), ['fuzz', 'sha256']));
  const count = 1 + int(6);
  for (let i = 0; i < count; i++) {
    const kind = random();
    if (kind < 0.2) {
      parts.push(Buffer.from(Array.from({ length: int(48) }, () => int(256))));
      continue;
    }
    const frame = Buffer.from(frames[int(frames.length)]!());
    if (kind < 0.45) {
      parts.push(frame); // valid as it stands
      continue;
    }
    let mutated: Buffer = frame;
    const mutations = 1 + int(3);
    for (let m = 0; m < mutations; m++) {
      const how = int(6);
      if (how === 0 && mutated.length > 0) mutated[int(mutated.length)] ^= 1 << int(8); // flip a bit
      else if (how === 1 && mutated.length > 0) mutated[int(mutated.length)] = int(256); // overwrite a byte
      else if (how === 2) {
        const at = int(mutated.length + 1); // insert bytes
        mutated = Buffer.concat([mutated.subarray(0, at), Buffer.from(Array.from({ length: 1 + int(4) }, () => int(256))), mutated.subarray(at)]);
      } else if (how === 3 && mutated.length > 1) {
        const at = int(mutated.length); // delete bytes
        mutated = Buffer.concat([mutated.subarray(0, at), mutated.subarray(at + 1 + int(4))]);
      } else if (how === 4 && mutated.length >= 5) {
        // a lying length field: small, off by a little, or huge
        mutated.writeUInt32BE(pick3(random, [int(16), Math.max(0, mutated.readUInt32BE(1) + int(9) - 4), int(0x1_0000_0000)]), 1);
      } else if (mutated.length > 0) {
        mutated = mutated.subarray(0, int(mutated.length)); // truncate
      }
    }
    parts.push(mutated);
  }
  return { bytes: Buffer.concat(parts), parts: parts.length };
}

function pick3(random: () => number, values: [number, number, number]): number {
  return values[Math.floor(random() * 3)]!;
}

/** Cuts `bytes` into 1 to 6 chunks at random places. */
function chunked(random: () => number, bytes: Buffer): Buffer[] {
  const cuts = new Set<number>();
  const n = Math.floor(random() * 6);
  for (let i = 0; i < n; i++) cuts.add(1 + Math.floor(random() * Math.max(1, bytes.length - 1)));
  const sorted = [...cuts].filter((c) => c < bytes.length).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const cut of sorted) {
    out.push(bytes.subarray(from, cut));
    from = cut;
  }
  out.push(bytes.subarray(from));
  return out.filter((b) => b.length > 0);
}

t.test('live fuzz: hundreds of connections of random and mutated frames; the scheduler never falls over', async (t) => {
  const SEED = 0x7a5c_f00d;
  const CONNECTIONS = 600;
  const BATCH = 50;
  const random = prng(SEED);
  const guard = guardProcess(t);
  const gc = getGc();
  const scheduler = await startScheduler(t, { heartbeatMs: 1000 });
  const port = scheduler.port;
  const peerErrors = new Map<string, number>();
  const internal: string[] = [];
  scheduler.on('peerError', (e) => {
    peerErrors.set(e.code, (peerErrors.get(e.code) ?? 0) + 1);
    if (/internal error/i.test(e.message)) internal.push(e.message);
  });
  // The honest type is one no fuzz frame names, so fuzz workers can never be handed (or answer for) honest tasks.
  const w = honestWorker(t, port, { handlers: { 'honest-sha256': builtinHandlers.sha256! } });
  await within(5000, 'honest worker', w.ready());
  const c = honestClient(t, port);
  await within(5000, 'honest client', c.connect());
  const baseline = scheduler.stats().connections;

  const open = rawPeers(t, port);
  let frames = 0;
  let bytesSent = 0;
  let withError = 0;
  let honestTasks = 0;
  let heapBefore = 0;
  for (let batch = 0; batch * BATCH < CONNECTIONS; batch++) {
    const peers = Array.from({ length: BATCH }, () => {
      const { bytes, parts } = fuzzBytes(random);
      const pieces = chunked(random, bytes);
      frames += parts;
      bytesSent += bytes.length;
      const peer = open((p) => {
        void (async () => {
          for (const piece of pieces) {
            p.send(piece);
            await new Promise((r) => setImmediate(r)); // separate writes, so the scheduler sees separate reads
          }
          if (!p.socket.destroyed) p.socket.end();
        })();
      });
      return peer;
    });
    await within(10_000, `fuzz batch ${batch}: every connection closed`, Promise.all(peers.map((p) => p.closed)));
    withError += peers.filter((p) => p.error() !== null).length;
    await waitFor(`batch ${batch}: connections back to the baseline`, () => scheduler.stats().connections === baseline, 5000);
    const input = `after-batch-${batch}`;
    t.equal(await within(3000, `honest task after batch ${batch}`, c.submit('honest-sha256', input)), sha256(input), `served after batch ${batch}`, {
      diagnostic: false,
    });
    honestTasks++;
    if (batch === 0) heapBefore = heapAfterGc(gc); // after one batch: lazily built code and caches are warm
  }
  const heapAfter = heapAfterGc(gc);
  const stats = scheduler.stats();
  t.comment(
    `fuzz: seed 0x${SEED.toString(16)}, ${CONNECTIONS} connections, ${frames} frames (or raw blobs), ${bytesSent} bytes sent, ` +
      `${withError} got an ERROR frame; peerError codes: ${[...peerErrors].map(([k, v]) => `${k}=${v}`).join(' ')}; ` +
      `${honestTasks} honest checks passed`,
  );
  t.comment(`fuzz heap: ${mb(heapBefore)} after the first batch, ${mb(heapAfter)} at the end${gc ? ' (after gc)' : ' (no gc available)'}`);
  t.equal(guard.uncaught.length, 0, 'nothing thrown or rejected unhandled in the scheduler process');
  t.same(internal, [], 'no frame hit an internal error in the scheduler (a bug wrapped as E_PROTOCOL)');
  t.equal(stats.connections, baseline, 'no fuzz connection is kept open');
  t.equal(stats.clients, 1, 'only the honest client is registered');
  t.equal(stats.workers, 1, 'only the honest worker is registered');
  t.equal(stats.queued + stats.inFlight, 0, 'no fuzz task is left queued or running');
  t.ok(withError > CONNECTIONS / 4, `many fuzz connections were answered with an ERROR frame (${withError})`);
  if (gc) t.ok(heapAfter - heapBefore < 16 * 1024 * 1024, `heap growth bounded: ${mb(heapAfter - heapBefore)}`);
});

t.test('role violations: answers for tasks not held, worker frames from clients; E_PROTOCOL and closed', async (t) => {
  const scheduler = await startScheduler(t, { heartbeatMs: 1000 });
  const port = scheduler.port;
  const open = rawPeers(t, port);
  const connected = (): Promise<RawPeer> =>
    new Promise((resolve) => {
      open((p) => resolve(p));
    });
  /** Sends `bytes` on a fresh connection and returns the ERROR it got once closed. */
  const expectClosed = async (name: string, peer: RawPeer, bytes: Buffer): Promise<void> => {
    peer.send(bytes);
    await within(5000, `${name}: closed by the scheduler`, peer.closed);
    const err = peer.error();
    t.equal(err?.code, ErrorCode.PROTOCOL, `${name}: ERROR E_PROTOCOL (${err?.message ?? 'none'})`);
  };

  const cases: Array<[string, Buffer]> = [
    ['worker RESULT for an unknown task', Buffer.concat([hello(Role.WORKER, 'liar'), encode(writeReady, 2, ['sha256']), encode(writeResultOk, 424242, 1, 'forged')])],
    ['worker RESULT before any READY', Buffer.concat([hello(Role.WORKER, 'early'), encode(writeResultError, 1, 1, 'E_HANDLER', 'forged')])],
    ['client sending READY', Buffer.concat([hello(Role.CLIENT, 'c'), encode(writeReady, 4, ['sha256'])])],
    ['client sending RESULT', Buffer.concat([hello(Role.CLIENT, 'c'), encode(writeResultOk, 1, 1, 'x')])],
    ['client sending TASK', Buffer.concat([hello(Role.CLIENT, 'c'), encode(writeTask, 1, 1, 'sha256', 'x')])],
    ['worker sending SUBMIT', Buffer.concat([hello(Role.WORKER, 'w'), encode(writeSubmit, 1, 'sha256', 'x')])],
    ['worker sending COMPLETED', Buffer.concat([hello(Role.WORKER, 'w'), encode(writeCompleted, 1, 'x')])],
    ['a second HELLO handshake', Buffer.concat([hello(Role.CLIENT, 'c'), hello(Role.CLIENT, 'again')])],
  ];
  for (const [name, bytes] of cases) await expectClosed(name, await connected(), bytes);

  // A worker answering for a task another worker holds: refused, and the holder's answer is the one that counts.
  const c = honestClient(t, port);
  await within(5000, 'client', c.connect());
  const holder = await connected();
  holder.send(Buffer.concat([hello(Role.WORKER, 'holder'), encode(writeReady, 1, ['steal'])]));
  const thief = await connected();
  thief.send(Buffer.concat([hello(Role.WORKER, 'thief'), encode(writeReady, 1, ['other'])]));
  await waitFor('both raw workers registered', () => scheduler.stats().workers === 2, 5000);
  const result = c.submit('steal', 'precious');
  await waitFor('the holder to receive the TASK', () => holder.frames().some((f) => f.cmd === Cmd.TASK), 5000);
  const task = decodeTask(holder.frames().find((f) => f.cmd === Cmd.TASK)!.payload);
  await expectClosed('worker RESULT for a task another worker holds', thief, encode(writeResultOk, task.taskId, task.attempt, 'stolen'));
  holder.send(encode(writeResultOk, task.taskId, task.attempt + 1, 'wrong attempt')); // its own task, but not its lease
  await within(5000, 'holder with a wrong attempt: closed', holder.closed);
  t.equal(holder.error()?.code, ErrorCode.PROTOCOL, 'RESULT naming the wrong attempt: E_PROTOCOL');
  // The task went back to the queue when the holder was dropped; an honest worker finishes it.
  honestWorker(t, port, { handlers: { steal: (p) => `kept ${p.toString()}` } });
  t.equal(await within(5000, 'the stolen task', result), 'kept precious', 'the client gets the real result, never the thief\'s');
  await waitFor('only the honest peers remain', () => scheduler.stats().connections === 2, 5000);
  t.comment(`role violations: ${cases.length + 2} hostile connections, each answered E_PROTOCOL and closed`);
});

// ---- 5. memory under hostile churn ------------------------------------------------------------------------------

t.test('scheduler memory does not grow with hostile peers coming and going', async (t) => {
  const ROUNDS = 8;
  const PER_ROUND = 60;
  const gc = getGc();
  const guard = guardProcess(t);
  const scheduler = await startScheduler(t, { heartbeatMs: 1000, handshakeTimeoutMs: 2000 });
  const port = scheduler.port;
  const w = honestWorker(t, port);
  await within(5000, 'honest worker', w.ready());
  const c = honestClient(t, port);
  await within(5000, 'honest client', c.connect());
  const baseline = scheduler.stats().connections;
  const queuesBefore = queueCount(scheduler);
  const open = rawPeers(t, port);
  const heaps: number[] = [];
  let hostile = 0;
  let typesAnnounced = 0;
  let tasksAbandoned = 0;

  for (let round = 0; round < ROUNDS; round++) {
    const peers: RawPeer[] = [];
    for (let i = 0; i < PER_ROUND; i++) {
      const tag = `${round}-${i}`;
      const kind = i % 4;
      peers.push(
        open((p) => {
          if (kind === 0) {
            // a client that queues tasks of a type nobody runs, then vanishes
            const submits = Array.from({ length: 50 }, (_, k) => encode(writeSubmit, k + 1, `orphan-${tag}`, Buffer.alloc(256, k)));
            tasksAbandoned += submits.length;
            p.send(Buffer.concat([hello(Role.CLIENT, `orphans-${tag}`), ...submits]));
          } else if (kind === 1) {
            // a worker announcing hundreds of job types, then vanishing
            const types = Array.from({ length: 200 }, (_, k) => `type-${tag}-${k}`);
            typesAnnounced += types.length;
            p.send(Buffer.concat([hello(Role.WORKER, `types-${tag}`), encode(writeReady, 16, types)]));
          } else if (kind === 2) {
            p.send(hello(Role.CLIENT, `half-${tag}`).subarray(0, 7)); // a hello cut short
          } else {
            p.send(Buffer.concat([hello(Role.CLIENT, `bad-${tag}`), Buffer.from([0xee, 0, 0, 0, 1, 0])])); // unknown command
          }
        }),
      );
    }
    hostile += peers.length;
    // Hostile peers that the scheduler has not closed by itself are dropped by their side.
    // Each has been handled once it got an answer (a HELLO, or an ERROR); the cut-short hello gets none yet.
    await waitFor(
      `round ${round}: every hostile peer answered`,
      () => peers.every((p, i) => (i % 4 === 2 ? !p.socket.connecting : p.received().length > 0 || p.closedAt > 0)),
      5000,
    );
    for (const p of peers) p.socket.destroy();
    await within(5000, `round ${round}: hostile sockets closed`, Promise.all(peers.map((p) => p.closed)));
    await waitFor(`round ${round}: connections back to the baseline`, () => scheduler.stats().connections === baseline, 5000);
    t.equal(await within(3000, `honest task in round ${round}`, c.submit('sha256', `round-${round}`)), sha256(`round-${round}`), `served in round ${round}`, {
      diagnostic: false,
    });
    heaps.push(heapAfterGc(gc));
  }
  const stats = scheduler.stats();
  const queuesAfter = queueCount(scheduler);
  t.comment(
    `hostile churn: ${hostile} hostile connections over ${ROUNDS} rounds, ${typesAnnounced} job types announced, ` +
      `${tasksAbandoned} tasks abandoned; per-type queues ${queuesBefore ?? '?'} -> ${queuesAfter ?? '?'}; ` +
      `heap per round: ${heaps.map(mb).join(', ')}${gc ? ' (after gc)' : ' (no gc available)'}`,
  );
  t.equal(guard.uncaught.length, 0, 'nothing thrown in the scheduler process');
  t.equal(stats.connections, baseline, 'connections back to the baseline');
  t.equal(stats.clients, 1, 'only the honest client is registered');
  t.equal(stats.workers, 1, 'only the honest worker is registered');
  t.equal(stats.queued, 0, 'abandoned tasks are not kept');
  if (queuesBefore !== null) t.equal(queuesAfter, queuesBefore, 'no per-type queue outlives its hostile peer');
  if (gc && heaps.length > 2) {
    // Compare the last round with the second (the first warms code and caches up).
    const growth = heaps.at(-1)! - heaps[1]!;
    t.ok(growth < 8 * 1024 * 1024, `heap growth from round 2 to round ${ROUNDS} bounded: ${mb(growth)}`);
  }
});

t.test('a peer that has not said HELLO cannot make the scheduler buffer a large first frame (regression)', async (t) => {
  // Before its handshake a peer is nobody: with a token configured it has not even authenticated. The first
  // frame must be a HELLO, and no valid HELLO is longer than MAX_HELLO_PAYLOAD, so a first frame declaring
  // megabytes is refused at its 5-byte header as not a HELLO (E_PROTOCOL, naming the cap; PROTOCOL.md 4.1).
  const PEERS = 12;
  const DECLARED = 4 * 1024 * 1024;
  const MAX_HELLO = MAX_HELLO_PAYLOAD;
  const gc = getGc();
  const scheduler = await startScheduler(t, { token: 'secret', handshakeTimeoutMs: 10_000 });
  const open = rawPeers(t, scheduler.port);
  const chunk = Buffer.alloc(1024 * 1024, 0x41); // one shared buffer: the senders themselves hold ~1 MiB
  if (gc) gc();
  const before = process.memoryUsage().arrayBuffers;
  let flushed = 0;
  const peers = Array.from({ length: PEERS }, (_, i) =>
    open((p) => {
      const header = Buffer.alloc(5);
      header[0] = i % 2 === 0 ? Cmd.HELLO : Cmd.SUBMIT;
      header.writeUInt32BE(DECLARED, 1);
      p.send(header);
      for (let k = 0; k < 3; k++) p.send(chunk);
      // Everything but the last byte: the frame never completes, so only the header can condemn it.
      if (p.socket.writable) p.socket.write(chunk.subarray(0, chunk.length - 1), () => flushed++);
      else flushed++;
    }),
  );
  const buffered = (): number => process.memoryUsage().arrayBuffers - before;
  await waitFor(
    'each first frame refused, or its bytes taken in by the scheduler',
    () => peers.every((p) => p.closedAt > 0) || (flushed === PEERS && buffered() >= (PEERS * DECLARED) / 2),
    10_000,
  );
  if (!peers.every((p) => p.closedAt > 0)) {
    // Only for the figure: let the rest of the bytes arrive (best effort, bounded).
    await waitFor('the rest of the bytes', () => buffered() >= 0.95 * PEERS * DECLARED, 3000).catch(() => {});
  }
  const held = buffered();
  const refused = peers.filter((p) => p.closedAt > 0 && p.error() !== null);
  const stillOpen = peers.filter((p) => p.closedAt === 0).length;
  t.comment(
    `pre-handshake: ${PEERS} unauthenticated connections each declared a ${mb(DECLARED)} first frame and sent all but ` +
      `its last byte; ${refused.length} refused (${refused.map((p) => p.error()!.code).join(', ') || 'none'}), ${stillOpen} still open; ` +
      `the scheduler process holds ${mb(held)} more array-buffer memory (${mb(held / PEERS)} per connection)`,
  );
  t.equal(refused.length, PEERS, 'every oversized first frame is refused with an ERROR at its header');
  // The refusal is raised from the 5-byte header alone, before any payload byte is buffered. (The array-buffer
  // figure above also counts the senders' own unsent bytes, which live in this same process.)
  t.ok(refused.every((p) => p.error()!.code === ErrorCode.PROTOCOL), 'refused at the header: E_PROTOCOL');
  t.ok(
    refused.every((p) => p.error()!.message.includes(`HELLO of at most ${MAX_HELLO} bytes`)),
    `the message names the cap: "${refused[0]?.error()?.message}"`,
  );
  t.ok(MAX_HELLO < DECLARED);
  for (const p of peers) p.socket.destroy();
  await within(5000, 'hostile sockets closed', Promise.all(peers.map((p) => p.closed)));
  await waitFor('connections back to 0', () => scheduler.stats().connections === 0, 5000);
  if (gc) {
    // Backing stores are freed after the collection proper, so poll (with a deadline) rather than read once.
    await waitFor('the buffered bytes to be released', () => (gc(), buffered() < 8 * 1024 * 1024), 5000).catch(() => {});
    t.comment(`pre-handshake: after the peers left, ${mb(buffered())} more than before (after gc)`);
    t.ok(buffered() < 8 * 1024 * 1024, `the buffered bytes are released when the peers leave (${mb(buffered())} left)`);
  }
});
