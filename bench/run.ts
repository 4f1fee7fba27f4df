// `npm run bench`: taskwire against a minimal relay baseline measured in the same run, in alternating rounds (in
// W1 and W2 also against the same relay with no window per worker), and BullMQ + Redis with --peers, then taskwire
// alone at size and scale (S1, S2, W4 mixed) and on its thread path (T1: handlers inline against in a worker's pool
// of threads) and with graph jobs (G1: a 1,000-node fan-out and combine against the same parts as plain jobs).
// Options: --quick (smoke run), --peers, --profile (CPU profiles of W1), --only w1,w2,w3,w4,w4m,s1,s2,t1,g1 and
// --rounds N (subsets, for development; w4 includes W4 mixed, w4m is W4 mixed alone). docs/BENCHMARKS.md explains
// the figures. W1 and W2 also run over WebSocket (taskwire only; --only w1ws,w2ws), beside their TCP rows; W1 also over TLS
// (--only w1tls).
// W1 + /metrics (--only w1m) is W1 with the HTTP listener on and a scraper polling GET /metrics once a second.
// H1 (--only h1) is the HTTP API's GET /job/{id} latency while a million tasks wait and W1's load runs over TCP.

import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SCHEDULER_DEFAULTS, type SchedulerStats, WORKER_DEFAULTS } from '../lib/index.js';
import { formatTop } from './cpuprofile.js';
import { type Child, build, killAll, withChildren } from './procs.js';
import { type Redis, startRedis } from './redis.js';
import { installBullmq } from './bullmq/load.js';

/** 'relay-unthrottled' is the relay's broker with no window: W1 and W2 only, beside the windowed 'relay'. */
type System = 'taskwire' | 'relay' | 'relay-unthrottled' | 'bullmq';
type Start = typeof Child.start;
type Probe = { cpu: NodeJS.CpuUsage; mem: NodeJS.MemoryUsage };

const { values: flags } = parseArgs({
  options: { quick: { type: 'boolean' }, peers: { type: 'boolean' }, profile: { type: 'boolean' }, only: { type: 'string' }, rounds: { type: 'string' } },
});
/** --only w1,w3 runs a subset of the workloads. */
const only = new Set((flags.only ?? 'w1,w1m,w2,w1ws,w1tls,w2ws,w3,w4,s1,s2,t1,g1,h1').toLowerCase().split(','));
const quick = flags.quick ?? false;
const RESULTS = fileURLToPath(new URL('results/', import.meta.url));

/**
 * W3's grid. Each entry is one deployment, warmed up, then measured for each size in turn: the size sweep at
 * 1 worker/1 client, workers and clients swept at the middle size. Sizes run largest first: the first ~10,000
 * tasks after the warm-up's pause cost both systems up to twice the steady CPU, which would swamp the 10k point.
 */
interface W3Deployment {
  workers: number;
  clients: number;
  sizes: number[];
}
const W3_GRID: W3Deployment[] = quick
  ? [
      { workers: 1, clients: 1, sizes: [10_000] },
      { workers: 64, clients: 1, sizes: [10_000] },
      { workers: 1, clients: 16, sizes: [10_000] },
    ]
  : [
      { workers: 1, clients: 1, sizes: [1_000_000, 100_000, 10_000] },
      { workers: 8, clients: 1, sizes: [100_000] },
      { workers: 64, clients: 1, sizes: [100_000] },
      { workers: 1, clients: 16, sizes: [100_000] },
      { workers: 64, clients: 16, sizes: [100_000] },
    ];
/** One measured point of W3. */
interface W3Point {
  n: number;
  workers: number;
  clients: number;
}
const W3_POINTS: W3Point[] = W3_GRID.flatMap((d) => d.sizes.map((n) => ({ n, workers: d.workers, clients: d.clients })));
/**
 * W3's core sweep (bench/core.ts): the scheduling core alone, in-process, over sizes, workers and clients well past
 * the end-to-end grid. Sizes largest first, as in W3.
 */
const W3_CORE: W3Point[] = [
  ...(quick ? [100_000, 10_000] : [1_000_000, 100_000, 10_000]).map((n) => ({ n, workers: 1, clients: 1 })),
  ...[8, 64, 1024].map((workers) => ({ n: 100_000, workers, clients: 1 })),
  ...[16, 256].map((clients) => ({ n: 100_000, workers: 1, clients })),
];
const PLAN = {
  rounds: flags.rounds ? Number(flags.rounds) : quick ? 1 : 3,
  /**
   * The warm-ups measure a scheduler that has been running, not one that was just started: a fresh deployment's
   * first tens of thousands of tasks run at about half the steady rate for both systems (code not yet optimised,
   * heaps growing), and W1 after a 2,000-task warm-up measured that, at 37,000 tasks/s for the relay against
   * 66,000 warm. The first 200 round trips of W2 are still reported, as its cold start.
   */
  w1: { n: quick ? 2_000 : 20_000, warmup: quick ? 200 : 50_000 },
  w2: { n: quick ? 200 : 2_000, warmup: quick ? 20 : 2_000, cold: quick ? 20 : 200 },
  /**
   * W3 keeps this many tasks outstanding in total, so the queue stays bounded whatever the task count. The
   * warm-up is long because a fresh process spends ~50,000 tasks optimising hot code, at up to twice the steady
   * per-task CPU, and its heap keeps adapting for longer. With 50,000, the points measured later on the 1-worker
   * deployment (after its 1M tasks) came out up to 1.35x cheaper than the fresh 8-worker and 16-client
   * deployments for reasons of age alone (100k 1w 1c: 3.97-4.25 µs against 4.96-5.01 measured fresh).
   */
  w3: {
    window: 2_048,
    warmup: quick ? 2_000 : 200_000,
    /**
     * The core sweep's warm-up per run. Each run starts after a full collection, which shrinks the young
     * generation; until ~200,000 tasks have regrown it, collections come more often and a 10,000-task run cost
     * 0.83 µs per task against 0.50 after this warm-up (0.38 at 1M).
     */
    coreWarmup: quick ? 20_000 : 200_000,
    grid: W3_GRID,
  },
  w4: { n: quick ? 100_000 : 1_000_000, payloadBytes: 16 },
  /**
   * W4 mixed: n small tasks of a type no worker runs, each written between two large sha256 tasks, after a warm-up
   * of large tasks alone. Every small task costs 60 KB of traffic, so the count is a tenth of W4's.
   */
  w4m: { n: quick ? 10_000 : 100_000, warmup: 2_000, smallType: 'unserved', smallBytes: 16, largeBytes: 30_000, window: 32 },
  /**
   * S1: a raw worker holding every task is lost (or its tasks time out); a heartbeat of 1 s makes a stall of a few
   * seconds cost the peers their connections, as it did before requeues were O(n log n). The tasks are dispatched
   * just after a keepalive and time out two intervals less 100 ms later: a deadline is the core's clock (set every
   * 100 ms tick, so up to 100 ms behind) plus the timeout, and due tasks are taken back at the first tick past it,
   * so the requeue starts in the 200 ms before a keepalive is due and holds it back (see LEAD_MS in scale.ts).
   */
  s1: { n: quick ? 20_000 : 100_000, heartbeatMs: 1_000, timeoutMs: 1_900, concurrency: 256 },
  /** S2: every task of its own job type, none run; bodies as W4's. */
  s2: { n: quick ? 20_000 : 100_000, payloadBytes: 16 },
  /**
   * T1: a worker with its handlers inline, then one with the same handlers in its pool of threads, each through a
   * scheduler: the trivial `len` as W2 (counts and warm-up as W2's) and as W1 (as W1's), then the built-in sha256
   * at each size, `window` outstanding (a worker's default concurrency). A size runs budget / size tasks (within
   * min..max), after a quarter as many as a warm-up.
   */
  t1: {
    sizes: [1, 4, 16, 64, 256, 1024, 4096, 8192].map((k) => k * 1024),
    budget: (quick ? 8 : 128) * 1024 * 1024,
    min: quick ? 8 : 32,
    max: quick ? 1_000 : 10_000,
    window: WORKER_DEFAULTS.concurrency,
  },
  /**
   * G1: one graph of `parts` source nodes and a root consuming them all, one graph at a time, against the same parts
   * as plain jobs submitted at once and combined in the client; `reps` of each per round, after `warmup` of each.
   */
  g1: { parts: 999, reps: quick ? 3 : 30, warmup: quick ? 2 : 20 },
  /**
   * H1: GET /job/{id} polled every `everyMs` while `queued` tasks of a type no worker runs wait and W1's load runs
   * (`n` tasks, 2,048 in flight) on the TCP side.
   */
  /** W1 + /metrics: runs of `n` tasks, long enough for several scrapes a run. */
  w1m: { n: quick ? 20_000 : 300_000 },
  h1: { queued: quick ? 100_000 : 1_000_000, n: quick ? 20_000 : 300_000, window: 2048, everyMs: 5 },
  /** taskwire's default worker concurrency; the relay's fixed window per worker matches it. */
  window: WORKER_DEFAULTS.concurrency,
  /**
   * The unthrottled relay's window: 0, none. Its broker sends a worker every queued task at once, the strongest
   * simple system a user could pick, so taskwire's defaults are also held against one that never waits for credits.
   */
  unthrottledWindow: 0,
};

// ---- systems -------------------------------------------------------------------------------------------------

let redis: Redis | null = null;
let queueSeq = 0;

/**
 * Starts one system's broker (none for BullMQ: redis is shared), `workers` worker connections and the load. With
 * `sameWindow`, taskwire's workers hold what the relay's window lets them (concurrency PLAN.window, prefetch 0), so
 * W3's CPU per task compares the same batching; otherwise they run with createWorker()'s defaults.
 */
async function deploy(start: Start, system: System, workers: number, clients: number, sameWindow = false) {
  if (system === 'bullmq') {
    const queue = `bench-${process.pid}-${++queueSeq}`;
    const [worker, load] = await Promise.all([
      start('bench/bullmq/worker.ts', [redis!.port, queue]),
      start('bench/load.ts', ['bullmq', redis!.port, 1, queue]),
    ]);
    return { broker: null, load, worker };
  }
  const kind = system === 'taskwire' ? 'taskwire' : 'relay';
  const dir = `bench/${kind}`;
  const brokerArgs = system === 'relay' ? [PLAN.window] : system === 'relay-unthrottled' ? [PLAN.unthrottledWindow] : [];
  const broker = await start(`${dir}/${kind === 'taskwire' ? 'scheduler' : 'broker'}.ts`, brokerArgs, ['--expose-gc']);
  const port = broker.info.port as number;
  // Without sameWindow nothing is passed: the taskwire worker runs with createWorker()'s defaults, whatever they are.
  const pinned = sameWindow && kind === 'taskwire' ? [PLAN.window, 0] : [];
  const addWorkers = (count = workers) => start(`${dir}/worker.ts`, [port, count, ...pinned]);
  const [worker, load] = await Promise.all([workers > 0 ? addWorkers() : null, start('bench/load.ts', [kind, port, clients])]);
  return { broker, load, worker, addWorkers };
}

/**
 * W1 and W2 over WebSocket: the scheduler also takes WebSocket peers, and the worker and the client reach it at its
 * ws:// URL; otherwise as deploy() does for taskwire with one worker and one client.
 */
async function deployWs(start: Start) {
  const broker = await start('bench/taskwire/scheduler.ts', ['ws'], ['--expose-gc']);
  const url = broker.info.wsUrl as string;
  const [, load] = await Promise.all([start('bench/taskwire/worker.ts', [url, 1]), start('bench/load.ts', ['taskwire', url, 1])]);
  return load;
}

/** W1 over TLS: the scheduler's TCP listener with a certificate made at its start; otherwise as deployWs(). */
async function deployTls(start: Start) {
  const broker = await start('bench/taskwire/scheduler.ts', ['tls'], ['--expose-gc']);
  const where = broker.info.tlsWhere as string;
  const [, load] = await Promise.all([start('bench/taskwire/worker.ts', [where, 1]), start('bench/load.ts', ['taskwire', where, 1])]);
  return load;
}

function check(what: string, result: { bad: number }): void {
  if (result.bad > 0) throw new Error(`${what}: ${result.bad} wrong result(s)`);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function cpuMicros(before: Probe, after: Probe): number {
  return after.cpu.user - before.cpu.user + (after.cpu.system - before.cpu.system);
}

const heapAndBuffers = (p: Probe): number => p.mem.heapUsed + p.mem.external;

/** A memory reading after a full collection (the child runs with --expose-gc). */
async function gcProbe(child: Child): Promise<Probe> {
  await child.request('gc');
  return child.request<Probe>('probe');
}

/** Polls a scheduler's stats until `done` holds. */
async function waitFor(child: Child, done: (stats: SchedulerStats) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 300_000;
  while (!done(await child.request<SchedulerStats>('stats'))) {
    if (Date.now() > deadline) throw new Error(`${what} never happened`);
    await sleep(100);
  }
}

// ---- workloads -----------------------------------------------------------------------------------------------

type Figures = Record<string, number>;

/** With `ws`, taskwire over WebSocket (figures under w1ws.*); with `tls`, over TLS (w1tls.*). */
async function w1(system: System, over: false | 'ws' | 'tls' = false): Promise<Figures> {
  return withChildren(async (start) => {
    const load = over === 'ws' ? await deployWs(start) : over === 'tls' ? await deployTls(start) : (await deploy(start, system, 1, 1)).load;
    const r = await load.request<{ ms: number; bad: number }>('all', PLAN.w1);
    check(`W1 ${system}${over ? ` ${over}` : ''}`, r);
    return { [over ? `w1${over}.tps` : 'w1.tps']: PLAN.w1.n / (r.ms / 1000) };
  });
}

/** With `ws`, taskwire over WebSocket (figures under w2ws.*). */
async function w2(system: System, ws = false): Promise<Figures> {
  return withChildren(async (start) => {
    const load = ws ? await deployWs(start) : (await deploy(start, system, 1, 1)).load;
    const r = await load.request<{ latencies: number[]; bad: number }>('sequential', PLAN.w2);
    check(`W2 ${system}${ws ? ' ws' : ''}`, r);
    const sorted = r.latencies.slice(PLAN.w2.warmup).sort((a, b) => a - b);
    const cold = r.latencies.slice(0, PLAN.w2.cold).sort((a, b) => a - b);
    const key = ws ? 'w2ws' : 'w2';
    return { [`${key}.p50`]: percentile(sorted, 50), [`${key}.p99`]: percentile(sorted, 99), [`${key}.coldP50`]: percentile(cold, 50) };
  });
}

/** How often W1 + /metrics scrapes, as a Prometheus scrape_interval of 1 s would. */
const SCRAPE_MS = 1000;

/**
 * W1 + /metrics: one deployment (the HTTP listener on, its in-process client connected, the dashboard's sampler
 * running), two timed runs of W1's load long enough to span several scrapes (PLAN.w1m.n tasks, 2,048 in flight),
 * taking turns: one while this process scrapes GET /metrics once a second, as Prometheus would, one without. The
 * ratio is the first to the second, in the same deployment, so only the scraping differs.
 */
async function w1m(): Promise<Figures> {
  return withChildren(async (start) => {
    const broker = await start('bench/taskwire/scheduler.ts', ['http'], ['--expose-gc']);
    const port = broker.info.port as number;
    const url = `http://127.0.0.1:${broker.info.httpPort as number}/metrics`;
    const [, load] = await Promise.all([start('bench/taskwire/worker.ts', [port, 1]), start('bench/load.ts', ['taskwire', port, 1])]);
    const run = async (prefix: string): Promise<number> => {
      const r = await load.request<{ ms: number; bad: number }>('windowed', { n: PLAN.w1m.n, window: 2048, prefix });
      check('W1 + /metrics', r);
      return PLAN.w1m.n / (r.ms / 1000);
    };
    await run('warm-'); // the first run of a fresh deployment pays for its warm-up
    const scrapes: { from: number; to: number; bytes: number }[] = [];
    let stop = false;
    const scraper = async (): Promise<void> => {
      while (!stop) {
        const from = Date.now();
        const res = await fetch(url);
        const text = await res.text();
        if (res.status !== 200 || !text.includes('taskwire_tasks_completed_total')) throw new Error(`W1 + /metrics: scrape answered ${res.status}`);
        scrapes.push({ from, to: Date.now(), bytes: text.length });
        await sleep(Math.max(0, SCRAPE_MS - (Date.now() - from)));
      }
    };
    const scraped: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < 2; i++) {
      // Taking turns, so neither always runs on the other's leftovers.
      if (i % 2 === 1) plain.push(await run(`plain-${i}-`));
      stop = false;
      const scraping = scraper();
      scraped.push(await run(`scraped-${i}-`));
      stop = true;
      await scraping;
      if (i % 2 === 0) plain.push(await run(`plain-${i}-`));
    }
    const scrapeMs = scrapes.map((x) => x.to - x.from).sort((a, b) => a - b);
    return {
      'w1m.tps': median(scraped)!,
      'w1m.base': median(plain)!,
      'w1m.scrapes': scrapes.length,
      'w1m.scrapeMs': percentile(scrapeMs, 50),
      'w1m.scrapeBytes': scrapes.at(-1)?.bytes ?? 0,
    };
  });
}

const w3Key = (p: W3Point): string => `w3.${p.n}.${p.workers}w.${p.clients}c`;
const coreKey = (p: W3Point): string => `w3core.${p.n}.${p.workers}w.${p.clients}c`;

/** The core sweep, in a fresh process; taskwire only, as the relay has no core to take apart. */
async function w3core(): Promise<Figures> {
  return withChildren(async (start) => {
    const core = await start('bench/core.ts', [], ['--expose-gc']);
    const figures: Figures = {};
    for (const p of W3_CORE) {
      figures[coreKey(p)] = await core.request<number>('run', { ...p, window: PLAN.w3.window, warmup: PLAN.w3.coreWarmup });
    }
    return figures;
  });
}

async function w3(system: System, deployment: W3Deployment): Promise<Figures> {
  return withChildren(async (start) => {
    const { broker, load } = await deploy(start, system, deployment.workers, deployment.clients, true);
    const { window, warmup } = PLAN.w3;
    check(`W3 ${system} warm-up`, await load.request('windowed', { n: warmup, window, prefix: 'warm-' }));
    const figures: Figures = {};
    for (const n of deployment.sizes) {
      const before = await broker!.request<Probe>('probe');
      const r = await load.request<{ ms: number; bad: number }>('windowed', { n, window, prefix: `${n}-` });
      const after = await broker!.request<Probe>('probe');
      check(`W3 ${system}`, r);
      const key = w3Key({ n, ...deployment });
      figures[`${key}.cpu`] = cpuMicros(before, after) / n;
      figures[`${key}.tps`] = n / (r.ms / 1000);
    }
    return figures;
  });
}

async function w4(system: System): Promise<Figures> {
  return withChildren(async (start) => {
    const { broker, load, addWorkers } = await deploy(start, system, 0, 1);
    const { n, payloadBytes } = PLAN.w4;
    const base = await gcProbe(broker!);
    await load.request('fill', { n });
    const deadline = Date.now() + 300_000;
    while ((await broker!.request<number>('queued')) < n) {
      if (Date.now() > deadline) throw new Error(`W4 ${system}: the ${n} tasks never all got queued`);
      await sleep(100);
    }
    const full = await gcProbe(broker!);
    await addWorkers!(1);
    check(`W4 ${system}`, await load.request('drain'));
    const drained = await gcProbe(broker!);
    const MB = 1024 * 1024;
    const grown = heapAndBuffers(full) - heapAndBuffers(base);
    return {
      'w4.heap': grown / n - payloadBytes,
      'w4.rss': (full.mem.rss - base.mem.rss) / n - payloadBytes,
      'w4.jsheap': (full.mem.heapUsed - base.mem.heapUsed) / n,
      'w4.peakMB': grown / MB,
      'w4.heapAfterMB': (heapAndBuffers(drained) - heapAndBuffers(base)) / MB,
      'w4.heapAfterPct': (100 * (heapAndBuffers(drained) - heapAndBuffers(base))) / grown,
      'w4.rssAfterMB': (drained.mem.rss - base.mem.rss) / MB,
      'w4.rssAfterPct': (100 * (drained.mem.rss - base.mem.rss)) / (full.mem.rss - base.mem.rss),
    };
  });
}

/**
 * W4 mixed: small tasks that arrive in the same socket reads as large ones, queued, once the large ones have gone.
 * A row pointing into its read kept the whole read alive (~61 KB per 16-byte task); each must cost what W4's do.
 */
async function w4mixed(): Promise<Figures> {
  return withChildren(async (start) => {
    const broker = await start('bench/taskwire/scheduler.ts', [], ['--expose-gc']);
    const port = broker.info.port as number;
    const [, raw] = await Promise.all([start('bench/taskwire/worker.ts', [port, 1]), start('bench/rawload.ts', [port])]);
    const spec = PLAN.w4m;
    check('W4 mixed warm-up', await raw.request('mixed', { ...spec, phase: 'warmup' }));
    const base = await gcProbe(broker);
    check('W4 mixed', await raw.request('mixed', { ...spec, phase: 'mixed' }));
    await waitFor(broker, (s) => s.queued === spec.n && s.inFlight === 0, `W4 mixed: ${spec.n} small tasks queued`);
    const full = await gcProbe(broker);
    return {
      'w4m.heap': (heapAndBuffers(full) - heapAndBuffers(base)) / spec.n - spec.smallBytes,
      'w4m.jsheap': (full.mem.heapUsed - base.mem.heapUsed) / spec.n,
    };
  });
}

/**
 * S1: n tasks queued, then all dispatched to a raw worker (in the scheduler's process) that never answers; it is
 * lost ('lost') or they time out ('timeout'). The scheduler times the requeue and its own event-loop delay, a
 * watcher connection in another process the keepalives; then a real worker must return every digest.
 */
async function s1(variant: 'lost' | 'timeout'): Promise<Figures> {
  return withChildren(async (start) => {
    const { n, heartbeatMs, timeoutMs, concurrency } = PLAN.s1;
    const scale = await start('bench/scale.ts', [heartbeatMs, n, variant === 'timeout' ? timeoutMs : SCHEDULER_DEFAULTS.timeoutMs]);
    const port = scale.info.port as number;
    const [raw, load] = await Promise.all([start('bench/rawload.ts', [port]), start('bench/load.ts', ['taskwire', port, 1])]);
    await raw.request('watch');
    await load.request('fill', { n });
    await waitFor(scale, (s) => s.queued === n, `S1: ${n} tasks queued`);
    await scale.request('hold', { credits: n, type: 'sha256' });
    const r = await scale.request<{ requeueMs: number; lostAt: number; maxDelayMs: number }>(variant === 'lost' ? 'lose' : 'timeouts', { n });
    const gap = await raw.request<{ maxGapMs: number; keepalives: number }>('maxGap', { from: r.lostAt - heartbeatMs, to: r.lostAt + 2 * heartbeatMs });
    if (gap.keepalives === 0) throw new Error(`S1 ${variant}: the keepalive watcher never saw a keepalive`);
    await start('bench/taskwire/worker.ts', [port, 1, concurrency]);
    check(`S1 ${variant}`, await load.request('drain'));
    return { [`s1.${variant}.requeueMs`]: r.requeueMs, [`s1.${variant}.maxGapMs`]: gap.maxGapMs, [`s1.${variant}.maxDelayMs`]: r.maxDelayMs };
  });
}

/**
 * S2: n tasks, each of its own job type, none run: how long they take to queue, the scheduler's longest stall
 * meanwhile, the memory per task, and what is left once their client has gone (the queues must go with it).
 */
async function s2(): Promise<Figures> {
  return withChildren(async (start) => {
    const { n, payloadBytes } = PLAN.s2;
    const defaults = [SCHEDULER_DEFAULTS.heartbeatMs, SCHEDULER_DEFAULTS.maxConcurrency, SCHEDULER_DEFAULTS.timeoutMs];
    const scale = await start('bench/scale.ts', defaults, ['--expose-gc']);
    const load = await start('bench/load.ts', ['taskwire', scale.info.port as number, 1]);
    const base = await gcProbe(scale);
    await scale.request('armQueueing', { n });
    await load.request('fill', { n, distinctTypes: true });
    const r = await scale.request<{ ms: number; maxDelayMs: number }>('queueing');
    const full = await gcProbe(scale);
    await load.request('close');
    await waitFor(scale, (s) => s.clients === 0 && s.queued === 0, 'S2: the client gone and its tasks with it');
    const drained = await gcProbe(scale);
    const grown = heapAndBuffers(full) - heapAndBuffers(base);
    return {
      's2.queueMs': r.ms,
      's2.maxDelayMs': r.maxDelayMs,
      's2.heap': grown / n - payloadBytes,
      's2.jsheap': (full.mem.heapUsed - base.mem.heapUsed) / n,
      's2.heapAfterPct': (100 * (heapAndBuffers(drained) - heapAndBuffers(base))) / grown,
    };
  });
}

/** T1's figures of one path: `len` one at a time (p50, and the first round trip) and in a burst, sha256 by size. */
async function t1path(where: 'inline' | 'thread'): Promise<Figures> {
  return withChildren(async (start) => {
    const broker = await start('bench/taskwire/scheduler.ts', []);
    const port = broker.info.port as number;
    const [worker, load] = await Promise.all([start('bench/taskwire/thread-worker.ts', [port, where]), start('bench/load.ts', ['taskwire', port, 1])]);
    const seq = await load.request<{ latencies: number[]; bad: number }>('sequential', { ...PLAN.w2, type: 'len' });
    check(`T1 ${where} one at a time`, seq);
    const burst = await load.request<{ ms: number; bad: number }>('all', { ...PLAN.w1, type: 'len' });
    check(`T1 ${where} burst`, burst);
    const figures: Figures = {
      [`t1.${where}.p50`]: percentile(seq.latencies.slice(PLAN.w2.warmup).sort((a, b) => a - b), 50),
      [`t1.${where}.first`]: seq.latencies[0]!,
      [`t1.${where}.tps`]: PLAN.w1.n / (burst.ms / 1000),
    };
    const { budget, min, max, window } = PLAN.t1;
    for (const bytes of PLAN.t1.sizes) {
      const n = Math.max(min, Math.min(max, Math.round(budget / bytes)));
      const before = await worker.request<Probe>('probe');
      const r = await load.request<{ ms: number; bad: number }>('sized', { bytes, n, warmup: Math.ceil(n / 4), window });
      const after = await worker.request<Probe>('probe');
      check(`T1 ${where} sha256 ${bytes} B`, r);
      figures[`t1.${where}.sha.${bytes}`] = (r.ms * 1000) / n;
      // The worker process's CPU (all its threads) per task, warm-up included.
      figures[`t1.${where}.shaCpu.${bytes}`] = cpuMicros(before, after) / (n + Math.ceil(n / 4));
    }
    const stopped = await worker.request<number>('threadsStopped');
    if (stopped > 0) throw new Error(`T1 ${where}: ${stopped} thread(s) terminated`);
    return figures;
  });
}

/** T1: both paths in turn, and what the thread path adds: µs per round trip, per task in a burst. */
async function t1(): Promise<Figures> {
  const f = { ...(await t1path('inline')), ...(await t1path('thread')) };
  f['t1.extraP50'] = f['t1.thread.p50']! - f['t1.inline.p50']!;
  f['t1.extraUs'] = 1e6 / f['t1.thread.tps']! - 1e6 / f['t1.inline.tps']!;
  return f;
}

/**
 * G1: a plain scheduler, one worker process with G1's trivial handlers (createWorker()'s defaults otherwise) and one
 * client process. Per round, the median ms of one 1,000-node graph and of its 999 parts as plain jobs.
 */
async function g1(): Promise<Figures> {
  return withChildren(async (start) => {
    const broker = await start('bench/taskwire/scheduler.ts', []);
    const port = broker.info.port as number;
    const [, load] = await Promise.all([start('bench/taskwire/graph-worker.ts', [port]), start('bench/load.ts', ['taskwire', port, 1])]);
    const r = await load.request<{ graphMs: number[]; plainMs: number[]; bad: number }>('graph', PLAN.g1);
    check('G1', r);
    return { 'g1.graphMs': median(r.graphMs)!, 'g1.plainMs': median(r.plainMs)! };
  });
}

/**
 * H1: the HTTP API under load. A scheduler with its HTTP listener, a million tasks of a type no worker runs queued
 * first (a client of its own), then W1's kind of load on the TCP side (one worker process, one client process,
 * 2,048 tasks in flight) while this process asks GET /job/{id} for a finished job every few ms, as a dashboard or
 * poller would, over a keep-alive connection. The latency of each request, from here.
 */
async function h1(): Promise<Figures> {
  return withChildren(async (start) => {
    const broker = await start('bench/taskwire/scheduler.ts', ['http'], ['--expose-gc']);
    const port = broker.info.port as number;
    const base = `http://127.0.0.1:${broker.info.httpPort as number}`;
    const filler = await start('bench/load.ts', ['taskwire', port, 1]);
    await filler.request('fill', { n: PLAN.h1.queued, type: 'h1.idle' });
    await waitFor(broker, (s) => s.queued >= PLAN.h1.queued, 'H1 queue');
    const [, load] = await Promise.all([start('bench/taskwire/worker.ts', [port, 1]), start('bench/load.ts', ['taskwire', port, 1])]);
    const submitted = (await (await fetch(`${base}/submit`, { method: 'POST', body: JSON.stringify({ type: 'sha256', payload: 'h1' }) })).json()) as { job_id: number };
    const url = `${base}/job/${submitted.job_id}`;
    const first = (await (await fetch(`${url}?wait=10`)).json()) as { finished: boolean };
    if (!first.finished) throw new Error('H1: the job to look up did not finish');
    const latencies: number[] = [];
    let stop = false;
    const poller = (async () => {
      while (!stop) {
        const t0 = performance.now();
        const res = await fetch(url);
        const body = (await res.json()) as { finished?: boolean };
        if (res.status !== 200 || body.finished !== true) throw new Error(`H1: GET /job answered ${res.status}`);
        latencies.push(performance.now() - t0);
        await sleep(PLAN.h1.everyMs);
      }
    })();
    const r = await load.request<{ ms: number; bad: number }>('windowed', { n: PLAN.h1.n, window: PLAN.h1.window, prefix: 'h1-' });
    stop = true;
    await poller;
    check('H1', r);
    const queued = (await broker.request<SchedulerStats>('stats')).queued;
    const sorted = latencies.sort((a, b) => a - b);
    return {
      'h1.p50': percentile(sorted, 50),
      'h1.p99': percentile(sorted, 99),
      'h1.max': sorted.at(-1)!,
      'h1.requests': sorted.length,
      'h1.queued': queued,
      'h1.tps': PLAN.h1.n / (r.ms / 1000),
    };
  });
}

/** The smallest size from which sha256 in the pool is no slower than inline at every larger size (medians). */
function t1Crossing(): number | null {
  let from: number | null = null;
  for (const bytes of [...PLAN.t1.sizes].reverse()) {
    const inline = med(`t1.inline.sha.${bytes}`, 'taskwire');
    const thread = med(`t1.thread.sha.${bytes}`, 'taskwire');
    if (inline === undefined || thread === undefined || thread > inline) break;
    from = bytes;
  }
  return from;
}

const kib = (bytes: number): string => (bytes >= 1024 * 1024 ? `${bytes / 1024 / 1024} MiB` : `${bytes / 1024} KiB`);

// ---- report --------------------------------------------------------------------------------------------------

const samples: Record<string, Partial<Record<System, number[]>>> = {};

function record(system: System, figures: Figures): void {
  for (const [key, value] of Object.entries(figures)) ((samples[key] ??= {})[system] ??= []).push(value);
}

function median(values: number[] | undefined): number | undefined {
  if (!values?.length) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1]! + s[mid]!) / 2;
}

const med = (key: string, system: System): number | undefined => median(samples[key]?.[system]);

interface Row {
  key: string;
  label: string;
  /** The system in the relay column and under the ratio; 'relay' (PLAN.window in flight per worker) unless told. */
  versus?: System;
  /** The target on the taskwire/relay ratio, if there is one. */
  target?: { max?: number; min?: number };
  /** The target on taskwire's own figure instead (W4's bytes per task, S1's times). */
  absolute?: { max: number };
  /** T1: the ratio is to this key's taskwire figure (the same measurement inline), and the relay column is empty. */
  per?: string;
}

function rows(): Row[] {
  const out: Row[] = [
    { key: 'w1.tps', label: 'W1 throughput, tasks/s', target: { min: 0.8 } },
    { key: 'w2.p50', label: 'W2 latency p50, µs', target: { max: 1.25 } },
    { key: 'w2.p99', label: 'W2 latency p99, µs' },
    { key: 'w2.coldP50', label: `W2 cold start p50 (first ${PLAN.w2.cold}), µs` },
    // The same figures against the unthrottled relay, with targets of their own: it should be the stronger one.
    { key: 'w1.tps', label: 'W1 vs unthrottled relay, tasks/s', versus: 'relay-unthrottled', target: { min: 0.9 } },
    { key: 'w2.p50', label: 'W2 p50 vs unthrottled relay, µs', versus: 'relay-unthrottled', target: { max: 1.25 } },
    { key: 'w2.p99', label: 'W2 p99 vs unthrottled relay, µs', versus: 'relay-unthrottled' },
    { key: 'w2.coldP50', label: 'W2 cold p50 vs unthrottled relay, µs', versus: 'relay-unthrottled' },
    // taskwire over WebSocket, against itself over TCP (the W1 and W2 rows above).
    { key: 'w1ws.tps', label: 'W1 over WebSocket, tasks/s', per: 'w1.tps' },
    { key: 'w1tls.tps', label: 'W1 over TLS, tasks/s', per: 'w1.tps' },
    { key: 'w2ws.p50', label: 'W2 p50 over WebSocket, µs', per: 'w2.p50' },
    { key: 'w2ws.p99', label: 'W2 p99 over WebSocket, µs', per: 'w2.p99' },
    { key: 'w2ws.coldP50', label: 'W2 cold p50 over WebSocket, µs', per: 'w2.coldP50' },
    // The same W1 with the HTTP listener on and GET /metrics scraped once a second, against W1 without.
    { key: 'w1m.base', label: 'W1 load, HTTP listener on, not scraped, tasks/s' },
    { key: 'w1m.tps', label: 'W1 load scraped once a second, tasks/s', per: 'w1m.base', target: { min: 0.95 } },
    { key: 'w1m.scrapeMs', label: 'W1 + /metrics: scrape round trip p50, ms' },
    { key: 'w1m.scrapes', label: 'W1 + /metrics: scrapes per round (over the scraped runs)' },
    // The HTTP API while a million tasks wait and W1's load runs on the TCP side.
    { key: 'h1.p50', label: 'H1 GET /job/{id} p50 under load, ms' },
    { key: 'h1.p99', label: 'H1 GET /job/{id} p99 under load, ms', absolute: { max: 50 } },
    { key: 'h1.max', label: 'H1 GET /job/{id} slowest, ms' },
    { key: 'h1.requests', label: 'H1 requests answered during the load' },
    { key: 'h1.queued', label: 'H1 tasks queued meanwhile' },
    { key: 'h1.tps', label: 'H1 TCP load meanwhile, tasks/s' },
  ];
  const size = (n: number): string => (n >= 1e6 ? `${n / 1e6}M` : `${n / 1e3}k`);
  for (const c of W3_POINTS) {
    out.push({ key: `${w3Key(c)}.cpu`, label: `W3 sched CPU/task µs ${size(c.n)} ${c.workers}w ${c.clients}c`, target: { max: 1.5 } });
  }
  for (const c of W3_CORE) {
    out.push({ key: coreKey(c), label: `W3 core only CPU/task µs ${size(c.n)} ${c.workers}w ${c.clients}c` });
  }
  out.push(
    { key: 'w4.heap', label: 'W4 heap+buffers B/task - 16', absolute: { max: 150 } },
    { key: 'w4.rss', label: 'W4 RSS B/task - 16', absolute: { max: 150 } },
    { key: 'w4.jsheap', label: 'W4 JS heap only B/task' },
    { key: 'w4.heapAfterPct', label: 'W4 heap+buffers kept after drain, %', absolute: { max: 5 } },
    { key: 'w4.rssAfterPct', label: 'W4 RSS kept after drain, %' },
    { key: 'w4m.heap', label: 'W4 mixed heap+buffers B/task - 16', absolute: { max: 150 } },
    { key: 'w4m.jsheap', label: 'W4 mixed JS heap only B/task' },
  );
  const { n, heartbeatMs } = PLAN.s1;
  for (const [variant, what] of [['lost', 'worker lost'], ['timeout', 'mass timeout']] as const) {
    out.push(
      { key: `s1.${variant}.requeueMs`, label: `S1 ${what}, ${size(n)} tasks: requeue ms`, absolute: { max: 1000 } },
      { key: `s1.${variant}.maxGapMs`, label: `S1 ${what}: max keepalive gap ms`, absolute: { max: 3 * heartbeatMs } },
      { key: `s1.${variant}.maxDelayMs`, label: `S1 ${what}: max event-loop delay ms` },
    );
  }
  out.push(
    { key: 's2.queueMs', label: `S2 ${size(PLAN.s2.n)} job types: ms to queue` },
    { key: 's2.maxDelayMs', label: 'S2 job types: max event-loop delay ms' },
    { key: 's2.heap', label: 'S2 job types: heap+buffers B/task - 16' },
    { key: 's2.jsheap', label: 'S2 job types: JS heap only B/task' },
    { key: 's2.heapAfterPct', label: 'S2 job types: heap+buffers kept after close, %', absolute: { max: 5 } },
    { key: 't1.inline.p50', label: 'T1 len inline: round trip p50, µs' },
    { key: 't1.thread.p50', label: 'T1 len in a thread: round trip p50, µs', per: 't1.inline.p50' },
    { key: 't1.extraP50', label: 'T1 thread path: extra µs per round trip' },
    { key: 't1.inline.first', label: 'T1 len inline: first round trip, µs' },
    { key: 't1.thread.first', label: 'T1 len in a thread: first round trip, µs', per: 't1.inline.first' },
    { key: 't1.inline.tps', label: `T1 len inline: burst of ${size(PLAN.w1.n)}, tasks/s` },
    { key: 't1.thread.tps', label: `T1 len in a thread: burst of ${size(PLAN.w1.n)}, tasks/s`, per: 't1.inline.tps' },
    { key: 't1.extraUs', label: 'T1 thread path: extra µs per task in a burst' },
    { key: 'g1.plainMs', label: `G1 ${PLAN.g1.parts} parts as plain jobs (Promise.all) + client combine, ms` },
    { key: 'g1.graphMs', label: `G1 graph of ${(PLAN.g1.parts + 1).toLocaleString('en-US')} nodes, one at a time, ms`, per: 'g1.plainMs' },
  );
  for (const bytes of PLAN.t1.sizes) {
    out.push(
      { key: `t1.inline.sha.${bytes}`, label: `T1 sha256 ${kib(bytes)} inline: µs/task` },
      { key: `t1.thread.sha.${bytes}`, label: `T1 sha256 ${kib(bytes)} in the pool: µs/task`, per: `t1.inline.sha.${bytes}` },
      { key: `t1.inline.shaCpu.${bytes}`, label: `T1 sha256 ${kib(bytes)} inline: worker CPU µs/task` },
      { key: `t1.thread.shaCpu.${bytes}`, label: `T1 sha256 ${kib(bytes)} in the pool: worker CPU µs/task`, per: `t1.inline.shaCpu.${bytes}` },
    );
  }
  return out;
}

/** Flatness of W3's CPU/task: max/min over each sweep, end to end (both systems) or of the core alone. */
function flatness(system: System, core = false): Record<string, number | undefined> {
  const spread = (configs: W3Point[]): number | undefined => {
    const values = configs.map((c) => med(core ? coreKey(c) : `${w3Key(c)}.cpu`, system));
    if (values.length < 2 || values.some((v) => v === undefined)) return undefined;
    return Math.max(...(values as number[])) / Math.min(...(values as number[]));
  };
  const grid = core ? W3_CORE : W3_POINTS;
  const mid = quick && !core ? 10_000 : 100_000;
  return {
    'sizes (1w 1c)': spread(grid.filter((c) => c.workers === 1 && c.clients === 1)),
    [`workers (${mid / 1000}k, 1c)`]: spread(grid.filter((c) => c.n === mid && c.clients === 1)),
    [`clients (${mid / 1000}k, 1w)`]: spread(grid.filter((c) => c.n === mid && c.workers === 1)),
  };
}

function fmt(value: number | undefined): string {
  if (value === undefined) return '-';
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString('en-US');
  return value.toFixed(Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2);
}

function table(systems: System[], machine: Record<string, unknown>, bullmqNote: string | null): string {
  const lines: string[] = [];
  const head = ['figure', 'taskwire', 'relay', 'ratio', ...(systems.includes('bullmq') ? ['bullmq'] : []), 'target', 'met'];
  const body: string[][] = [];
  const verdicts: Record<string, boolean> = {};
  for (const row of rows()) {
    const versus = row.versus ?? 'relay';
    const tw = med(row.key, 'taskwire');
    const relay = row.per ? undefined : med(row.key, versus);
    if (tw === undefined && relay === undefined) continue;
    const base = row.per ? med(row.per, 'taskwire') : relay;
    const ratio = tw !== undefined && base ? tw / base : undefined;
    let target = '';
    let met: boolean | undefined;
    if (row.target && ratio !== undefined) {
      target = row.target.min !== undefined ? `>= ${row.target.min}x` : `<= ${row.target.max}x`;
      met = row.target.min !== undefined ? ratio >= row.target.min : ratio <= row.target.max!;
    } else if (row.absolute && tw !== undefined) {
      target = `<= ${row.absolute.max}`;
      met = tw <= row.absolute.max;
    }
    if (met !== undefined) verdicts[`${row.key} vs ${versus}`] = met;
    body.push([
      row.label,
      fmt(tw),
      fmt(relay),
      ratio === undefined ? '-' : `${ratio.toFixed(2)}x`,
      // BullMQ's figure once per key, on the row against the windowed relay.
      ...(systems.includes('bullmq') ? [row.versus ? '' : fmt(med(row.key, 'bullmq'))] : []),
      target,
      met === undefined ? '' : met ? 'yes' : 'NO',
    ]);
  }
  const twFlat = flatness('taskwire');
  const relayFlat = flatness('relay');
  for (const [sweep, value] of Object.entries(twFlat)) {
    if (value === undefined) continue;
    const met = value <= 1.25;
    verdicts[`flat ${sweep}`] = met;
    body.push([`W3 flatness max/min, ${sweep}`, fmt(value), fmt(relayFlat[sweep]), '', ...(systems.includes('bullmq') ? [''] : []), '<= 1.25', met ? 'yes' : 'NO']);
  }
  for (const [sweep, value] of Object.entries(flatness('taskwire', true))) {
    if (value === undefined) continue;
    body.push([`W3 core only flatness, ${sweep}`, fmt(value), '-', '', ...(systems.includes('bullmq') ? [''] : []), '<= 1.25', value <= 1.25 ? 'yes' : 'NO']);
  }
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  lines.push(`taskwire bench, ${machine.date}; ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; load average ${machine.loadavg} at start, ${machine.loadavgEnd} at end; ${machine.rounds} round(s), medians${quick ? ' (--quick)' : ''}`);
  lines.push(line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line));
  lines.push(`ratio = taskwire / relay (at most ${PLAN.window} tasks in flight per worker); on the "vs unthrottled relay" rows, taskwire / the same broker with no window (every queued task sent to the worker at once).`);
  if (samples['w1tls.tps']) lines.push('"over TLS" row: taskwire\'s client and worker over the scheduler\'s TLS listener (TLS 1.3, a P-256 certificate); ratio = over TLS / taskwire over TCP.');
  if (samples['w1ws.tps'] || samples['w2ws.p50']) lines.push('"over WebSocket" rows: taskwire\'s client and worker at ws://.../ws, one frame per message; ratio = over WebSocket / taskwire over TCP.');
  if (samples['w1m.tps']) lines.push(`W1 + /metrics: ratio = ${PLAN.w1m.n.toLocaleString('en-US')} tasks with GET /metrics scraped every ${SCRAPE_MS} ms / the same without scraping, one deployment, taking turns (target: within 5%).`);
  lines.push('W4 "kept after drain": growth still held after the drain and a forced GC, as % of the growth when all were queued.');
  lines.push('W4 mixed, S1 and S2: taskwire only (the relay has no requeue, keepalives, timeouts or queues per job type).');
  if (samples['t1.thread.p50']) {
    const from = t1Crossing();
    lines.push(`T1: ratio = in a thread (the pool) / inline. ${from === null ? 'sha256 in the pool was slower than inline at every size measured' : `sha256 in the pool is no slower than inline from ${kib(from)} up`} (medians).`);
  }
  if (samples['g1.graphMs']) lines.push(`G1: ratio = the graph / the same ${PLAN.g1.parts} parts as plain jobs combined in the client (medians of ${PLAN.g1.reps} reps a round).`);
  if (bullmqNote) lines.push(`bullmq: ${bullmqNote}`);
  return lines.join('\n');
}

// ---- main ----------------------------------------------------------------------------------------------------

async function profile(): Promise<void> {
  const dir = path.join(RESULTS, 'profiles');
  rmSync(dir, { recursive: true, force: true });
  const n = quick ? 20_000 : 200_000;
  // One directory per process, as --cpu-prof names its files after the pid.
  const prof = (name: string): string[] => ['--cpu-prof', '--cpu-prof-dir', path.join(dir, name)];
  // Against the unthrottled relay: the strongest of the two, the one W1's target is set against.
  for (const system of ['taskwire', 'relay'] as const) {
    const dirName = `bench/${system}`;
    await withChildren(async (start) => {
      const broker = await start(`${dirName}/${system === 'taskwire' ? 'scheduler' : 'broker'}.ts`, system === 'relay' ? [PLAN.unthrottledWindow] : [], prof(`${system}-scheduler`));
      const port = broker.info.port as number;
      const [, load] = await Promise.all([
        start(`${dirName}/worker.ts`, [port, 1], prof(`${system}-worker`)),
        start('bench/load.ts', [system, port, 1], prof(`${system}-client`)),
      ]);
      const r = await load.request<{ ms: number; bad: number }>('all', { n, warmup: 2_000 });
      check(`profile ${system}`, r);
      process.stdout.write(`${system === 'relay' ? 'relay-unthrottled' : system}: W1 with ${n} tasks under --cpu-prof: ${Math.round(n / (r.ms / 1000))} tasks/s\n`);
    });
  }
  for (const name of ['taskwire-scheduler', 'taskwire-worker', 'taskwire-client', 'relay-scheduler', 'relay-worker', 'relay-client']) {
    const file = readdirSync(path.join(dir, name)).find((f) => f.endsWith('.cpuprofile'));
    if (file) process.stdout.write(`\n${formatTop(name, path.join(dir, name, file), 12)}\n`);
  }
  process.stdout.write(`\nprofiles: ${dir}\n`);
}

async function main(): Promise<void> {
  const began = performance.now();
  build();
  if (flags.profile) return profile();
  const systems: System[] = ['taskwire', 'relay', 'relay-unthrottled'];
  let bullmqNote: string | null = 'skipped (run with --peers to include BullMQ + Redis)';
  const peerProblem = flags.peers ? installBullmq() : null;
  if (peerProblem) bullmqNote = `skipped: ${peerProblem}`;
  else if (flags.peers) {
    const started = await startRedis();
    if ('port' in started) {
      redis = started;
      systems.push('bullmq');
      bullmqNote = 'W1 and W2 only (addBulk + QueueEvents; add + waitUntilFinished), worker concurrency 50, private redis-server';
    } else {
      bullmqNote = `skipped: ${started.skip}`;
    }
  }
  const cpus = os.cpus();
  const machine = {
    date: new Date().toISOString(),
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    /** Other work on the machine skews every figure; the 1-minute load average at the start tells. */
    loadavg: os.loadavg()[0]!.toFixed(2),
    rounds: PLAN.rounds,
  };
  const step = async (label: string, fn: () => Promise<Figures>, system: System): Promise<void> => {
    const t = performance.now();
    record(system, await fn());
    process.stderr.write(`bench: ${label} ${system} ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  };
  for (let round = 1; round <= PLAN.rounds; round++) {
    process.stderr.write(`bench: round ${round}/${PLAN.rounds}\n`);
    if (only.has('w1')) for (const system of systems) await step('W1', () => w1(system), system);
    if (only.has('w1m')) await step('W1 + /metrics', w1m, 'taskwire');
    if (only.has('w2')) for (const system of systems) await step('W2', () => w2(system), system);
    if (only.has('w1ws')) await step('W1 ws', () => w1('taskwire', 'ws'), 'taskwire');
    if (only.has('w1tls')) await step('W1 tls', () => w1('taskwire', 'tls'), 'taskwire');
    if (only.has('w2ws')) await step('W2 ws', () => w2('taskwire', true), 'taskwire');
    if (only.has('w3')) await step('W3 core only', w3core, 'taskwire');
    for (const d of only.has('w3') ? W3_GRID : []) {
      const label = `W3 ${d.workers}w ${d.clients}c ${d.sizes.join('+')}`;
      for (const system of ['taskwire', 'relay'] as const) await step(label, () => w3(system, d), system);
    }
    if (only.has('w4')) for (const system of ['taskwire', 'relay'] as const) await step('W4', () => w4(system), system);
    if (only.has('w4') || only.has('w4m')) await step('W4 mixed', w4mixed, 'taskwire');
    if (only.has('s1')) for (const variant of ['lost', 'timeout'] as const) await step(`S1 ${variant}`, () => s1(variant), 'taskwire');
    if (only.has('s2')) await step('S2', s2, 'taskwire');
    if (only.has('t1')) await step('T1', t1, 'taskwire');
    if (only.has('g1')) await step('G1', g1, 'taskwire');
    if (only.has('h1')) await step('H1', h1, 'taskwire');
  }
  await redis?.stop();
  Object.assign(machine, { loadavgEnd: os.loadavg()[0]!.toFixed(2) });
  const seconds = (performance.now() - began) / 1000;
  const text = table(systems, machine, flags.peers ? bullmqNote : null);
  process.stdout.write(`${text}\n(run took ${seconds.toFixed(0)} s)\n`);
  const medians = Object.fromEntries(
    Object.keys(samples).map((key) => [key, Object.fromEntries(systems.map((s) => [s, med(key, s)]))]),
  );
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(
    path.join(RESULTS, 'latest.json'),
    `${JSON.stringify({ machine, quick, plan: PLAN, seconds, bullmq: bullmqNote, flatness: { taskwire: flatness('taskwire'), relay: flatness('relay'), core: flatness('taskwire', true) }, t1CrossingBytes: t1Crossing(), medians, samples, table: text }, null, 2)}\n`,
  );
}

// Children die with the runner, whatever ends it.
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}
main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
