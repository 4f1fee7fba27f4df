// Unknown options: every constructor and options object refuses a key it does not read, with E_INVALID naming the
// key and the known one it most likely misspells; known keys stay accepted, undefined ones too.

import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  builtinJobs,
  createClient,
  createScheduler,
  createWorker,
  defineJob,
  ErrorCode,
  TaskwireError,
  type ClientOptions,
  type SchedulerOptions,
  type WorkerOptions,
} from '../lib/index.js';
import { nearestName } from '../lib/options.js';
import { startClient, startScheduler, startWorker, thrown, within } from './helpers.js';


async function rejected(promise: Promise<unknown>): Promise<TaskwireError> {
  try {
    await within(10_000, 'a rejection', promise);
  } catch (err) {
    return err as TaskwireError;
  }
  throw new Error('did not reject');
}

/** Checks `err` is an E_INVALID with exactly `message`. */
function invalid(t: Test, err: TaskwireError, message: string): void {
  t.ok(err instanceof TaskwireError, `a TaskwireError: ${message}`);
  t.equal(err.code, ErrorCode.INVALID);
  t.equal(err.message, message);
}

/** `keys` all undefined, as a JavaScript caller forwarding its own unset options passes them. */
function allUndefined(keys: readonly string[]): object {
  return Object.fromEntries(keys.map((key) => [key, undefined]));
}

// One self-signed certificate, for the full option sets: it is the scheduler's, the CA peers must chain to, and
// the peers' own.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskwire-options-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'k.pem', '-out', 'c.pem',
  '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
const cert = fs.readFileSync(path.join(dir, 'c.pem'));
const key = fs.readFileSync(path.join(dir, 'k.pem'));

const FULL_SCHEDULER: Required<SchedulerOptions> = {
  host: '127.0.0.1',
  port: 0,
  heartbeatMs: 5000,
  maxPayload: 1 << 20,
  name: 'options-test',
  token: 'secret',
  timeoutMs: 60_000,
  maxAttempts: 3,
  backoffMs: 1000,
  maxQueued: 1000,
  maxQueuedBytes: 1 << 20,
  maxPendingPerClient: 100,
  maxPendingBytesPerClient: 1 << 20,
  maxConcurrency: 64,
  maxConnections: 100,
  maxHandshakes: 10,
  handshakeTimeoutMs: 10_000,
  maxPartialFrameBytes: 1 << 20,
  maxHandshakeBytes: 1 << 20,
  highWaterBytes: 1 << 20,
  slowConsumerMs: 30_000,
  deadLetterLimit: 10,
  strategy: 'least-loaded',
  fair: true,
  noWorkerTimeoutMs: 0,
  maxFinishedJobs: 10,
  finishedTtlMs: 60_000,
  maxFinishedBytes: 1 << 20,
  httpPort: 0,
  httpHost: '127.0.0.1',
  httpOpen: false,
  httpMaxBodyBytes: 1 << 20,
  maxGraphNodes: 100,
  maxGraphEdges: 100,
  maxGraphBytes: 1 << 20,
  tls: { cert, key, ca: cert },
};

t.test('nearestName: case, _ and - ignored; a few edits; nothing for what is far or short', async (t) => {
  const known = ['host', 'port', 'maxPayload', 'concurrency', 'fingerprint256', 'ca'];
  t.equal(nearestName('max_payload', known), 'maxPayload');
  t.equal(nearestName('MAX-PAYLOAD', known), 'maxPayload');
  t.equal(nearestName('concurency', known), 'concurrency', 'one deletion');
  t.equal(nearestName('cnocurrency', known), 'concurrency', 'one swap');
  t.equal(nearestName('fingerprint', known), 'fingerprint256', '3 edits: within a third of a long name');
  t.equal(nearestName('prot', known), 'port');
  t.equal(nearestName('frobnicate', known), null);
  t.equal(nearestName('x', known), null, 'a one-letter name is like no name');
  t.equal(nearestName('', known), null);
  t.equal(nearestName('a'.repeat(100_000), known), null, 'a long key costs no distance computation');
});

t.test('createScheduler', async (t) => {
  invalid(t, thrown(() => createScheduler({ maxPayloads: 1 } as never)), 'unknown option options.maxPayloads for createScheduler(); did you mean maxPayload?');
  invalid(t, thrown(() => createScheduler({ heartbeat_ms: 100 } as never)), 'unknown option options.heartbeat_ms for createScheduler(); did you mean heartbeatMs?');
  invalid(t, thrown(() => createScheduler({ frobnicate: true } as never)), 'unknown option options.frobnicate for createScheduler()');
  invalid(t, thrown(() => createScheduler({ port: 0, fiar: undefined } as never)), 'unknown option options.fiar for createScheduler(); did you mean fair?');
  invalid(t, thrown(() => createScheduler({ tls: { cert, key, cetr: cert } } as never)), 'unknown option options.tls.cetr for createScheduler(); did you mean cert?');
  t.match(thrown(() => createScheduler({ maxBufferedBytes: 1 } as never)).message, /^options\.maxBufferedBytes must be replaced by highWaterBytes/, 'a replaced option still says what replaced it');

  const unset = createScheduler({ ...allUndefined(Object.keys(FULL_SCHEDULER)), port: 0 });
  t.equal(unset.heartbeatMs, 5000, 'undefined options take their defaults');
  await unset.close();

  const scheduler = await startScheduler(t);
  invalid(t, await rejected(scheduler.close({ gracems: 10 } as never)), 'unknown option options.gracems for scheduler.close(); did you mean graceMs?');
  invalid(t, await rejected(scheduler.close({ graceMs: -1 })), 'options.graceMs of scheduler.close() must be a whole number of ms from 0, got -1');
  invalid(t, await rejected(scheduler.close({ graceMs: '5' } as never)), 'options.graceMs of scheduler.close() must be a whole number of ms from 0, got 5');
  await within(10_000, 'a client after the refused close()', startClient(t, scheduler.port).connect());
  t.pass('a refused close() leaves the scheduler running');
  await scheduler.close({ graceMs: undefined });
});

t.test('every option at once is accepted, end to end', async (t) => {
  const scheduler = createScheduler(FULL_SCHEDULER);
  t.teardown(() => scheduler.close({ graceMs: 0 }));
  const { port } = await scheduler.listen();
  const peerTls = { ca: cert, cert, key, servername: 'localhost', fingerprint256: (scheduler.localTls() as { fingerprint256: string }).fingerprint256 };
  const echo = defineJob({ type: 'echo', codec: 'text', run: (text: string) => text, split: (text: string) => [text], combine: (parts: string[]) => parts.join('') });
  const worker: Required<Omit<WorkerOptions, 'url'>> = {
    host: '127.0.0.1',
    port,
    tls: peerTls,
    concurrency: 2,
    prefetch: 0,
    handlers: { upper: (payload) => payload.toString().toUpperCase() },
    jobs: [echo],
    threads: 1,
    stopGraceMs: 100,
    inlineMayBlock: false,
    name: 'options-worker',
    maxPayload: 1 << 20,
    reconnectMinMs: 20,
    reconnectMaxMs: 200,
    closeGraceMs: 100,
    token: 'secret',
  };
  const w = startWorker(t, port, undefined, worker);
  const client: Required<Omit<ClientOptions, 'url'>> = { host: '127.0.0.1', port, tls: peerTls, name: 'options-client', maxPayload: 1 << 20, token: 'secret' };
  const c = startClient(t, port, client);
  await within(10_000, 'the worker', w.ready());
  t.equal(await within(10_000, 'submit', c.submit('upper', 'abc', { timeoutMs: 5000, retries: 1, backoffMs: 10, priority: 'high', detach: true, tenant: 'a', onProgress: () => {} })), 'ABC');
  t.equal(await within(10_000, 'run', c.run(echo, 'xyz', { chunks: 1, timeoutMs: undefined })), 'xyz');
  const overWs = createClient({ url: `ws://127.0.0.1:${scheduler.httpPort}/ws`, name: 'options-ws', maxPayload: 1 << 20, token: 'secret' });
  t.teardown(() => overWs.close());
  t.equal(await within(10_000, 'submit over WebSocket', overWs.submit('upper', 'ws', { delayMs: 0 })), 'WS');
});

t.test('createWorker', async (t) => {
  invalid(t, thrown(() => createWorker({ concurency: 2 } as never)), 'unknown option options.concurency for createWorker(); did you mean concurrency?');
  invalid(t, thrown(() => createWorker({ frobnicate: 2 } as never)), 'unknown option options.frobnicate for createWorker()');
  invalid(t, thrown(() => createWorker(null as never)), 'options of createWorker() must be an object, got null');
  invalid(t, thrown(() => createScheduler(null as never)), 'options of createScheduler() must be an object, got null');
  invalid(t, thrown(() => createClient(null as never)), 'options of createClient() must be an object, got null');
  invalid(t, thrown(() => createWorker({ concurency: undefined } as never)), 'unknown option options.concurency for createWorker(); did you mean concurrency?');
  invalid(t, thrown(() => createWorker({ tls: { servrname: 'x' } } as never)), 'unknown option options.tls.servrname for createWorker(); did you mean servername?');
  const handlers = { thread: { module: 'file:///nowhere.js', exprot: 'f' } };
  invalid(t, thrown(() => createWorker({ handlers } as never)), 'unknown option options.handlers.thread.exprot for createWorker(); did you mean export?');

  const scheduler = await startScheduler(t);
  const keys = ['host', 'port', 'url', 'tls', 'concurrency', 'prefetch', 'handlers', 'jobs', 'threads', 'stopGraceMs', 'inlineMayBlock', 'name', 'maxPayload',
    'reconnectMinMs', 'reconnectMaxMs', 'closeGraceMs', 'token'] satisfies (keyof WorkerOptions)[];
  const w = createWorker({ ...allUndefined(keys), port: scheduler.port });
  t.teardown(() => w.close());
  await within(10_000, 'a worker of undefined options', w.ready());
  t.equal(w.concurrency, 16, 'undefined options take their defaults');
});

t.test('createClient, submit options and run options', async (t) => {
  invalid(t, thrown(() => createClient({ maxpayload: 64 } as never)), 'unknown option options.maxpayload for createClient(); did you mean maxPayload?');
  invalid(t, thrown(() => createClient({ frobnicate: 1 } as never)), 'unknown option options.frobnicate for createClient()');
  invalid(t, thrown(() => createClient({ tls: { fingerprint: 'AB' } } as never)), 'unknown option options.tls.fingerprint for createClient(); did you mean fingerprint256?');

  const scheduler = await startScheduler(t);
  startWorker(t, scheduler.port);
  const keys = ['host', 'port', 'url', 'tls', 'name', 'maxPayload', 'token'] satisfies (keyof ClientOptions)[];
  const c = createClient({ ...allUndefined(keys), port: scheduler.port });
  t.teardown(() => c.close());
  await within(10_000, 'a client of undefined options', c.connect());

  invalid(t, await rejected(c.submit('sha256', 'x', { retires: 1 } as never)), 'unknown option options.retires for submit(); did you mean retries?');
  invalid(t, await rejected(c.enqueue('sha256', 'x', { detached: true } as never)), 'unknown option options.detached for submit(); did you mean detach?');
  // Another ending of the same word is more edits away than a typo: the shared stem finds it.
  invalid(t, await rejected(c.submit('sha256', 'x', { retry: 3 } as never)), 'unknown option options.retry for submit(); did you mean retries?');
  invalid(t, await rejected(c.submit('sha256', 'x', { frobnicate: 1 } as never)), 'unknown option options.frobnicate for submit()');
  invalid(t, await rejected(c.submitGraph([{ type: 'sha256', payload: 'x' }], { tenat: 'a' } as never)), 'unknown option options.tenat for submit(); did you mean tenant?');
  const sumsq = builtinJobs.sumsq;
  invalid(t, await rejected(c.run(sumsq, '1 10', { chunk: 2 } as never)), 'unknown option options.chunk for submit(); did you mean chunks?');
  t.equal(await within(10_000, 'submit', c.submit('arith', '1+2', { timeoutMs: undefined, retries: undefined, priority: undefined, tenant: undefined })), '3');
  t.equal(await within(10_000, 'run', c.run(sumsq, '1 10', { chunks: 2, detach: undefined })), '385');
  invalid(t, await rejected(c.wait(1, { onprogress: () => {} } as never)), 'unknown option options.onprogress for wait(); did you mean onProgress?');
  invalid(t, await rejected(c.jobs({ limt: 5 } as never)), 'unknown option options.limt for jobs(); did you mean limit?');
  invalid(t, await rejected(c.jobs({ state: 'done' } as never)), 'options.state must be one of queued, delayed, running, completed, failed, cancelled, got "done"');
  t.ok(Array.isArray(await within(10_000, 'jobs', c.jobs({ state: 'completed', limit: undefined }))), 'known options are accepted');
  t.equal(c.pendingCount, 0);
});

t.test('defineJob: a field close to one it reads is a misspelling; others are kept', async (t) => {
  const run = (text: string) => text;
  invalid(t, thrown(() => defineJob({ type: 'x', run, spilt: run } as never)), 'unknown option options.spilt for defineJob(); did you mean split?');
  invalid(t, thrown(() => defineJob({ type: 'x', run, Codec: 'text' } as never)), 'unknown option options.Codec for defineJob(); did you mean codec?');
  const kept = defineJob({ type: 'x', run, description: 'kept' } as never) as unknown as Record<string, unknown>;
  t.equal(kept.description, 'kept', 'a field far from any it reads is the caller\'s own');
  t.equal(defineJob({ type: 'x', run, codec: undefined, split: undefined, combine: undefined }).codec.decode(Buffer.from('"a"')), 'a', 'undefined fields take their defaults');
});
