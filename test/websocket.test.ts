// The WebSocket transport on real sockets: clients and workers over ws:// are peers like TCP ones (results, mixed
// runs, requeues, tokens, size limits, hostile peers, backpressure), one frame per binary message.

import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import type net from 'node:net';
import WebSocket from 'ws';
import { createClient, createWorker, ErrorCode, type Scheduler, type SchedulerOptions } from '../lib/index.js';
import { FrameDecoder, MAX_PAYLOAD_LIMIT } from '../lib/protocol/frame.js';
import {
  Cmd,
  PROTOCOL_VERSION,
  Role,
  decodeCompleted,
  decodeError,
  decodeFailed,
  decodeTask,
  encode,
  isKnownCommand,
  writeHello,
  writeReady,
  writeResultOk,
  writeSubmit,
} from '../lib/protocol/index.js';
import { acceptWebSockets, messageLimit } from '../lib/transport/ws.js';
import { root, sha256, spawnTs, startScheduler, waitFor, within, startClient as tcpClient, startWorker as tcpWorker } from './helpers.js';

/** A scheduler with its HTTP listener on a free port, and so WebSocket peers at ws://127.0.0.1:<httpPort>/ws. */
async function startWs(t: Test, options: SchedulerOptions = {}): Promise<{ scheduler: Scheduler; url: string }> {
  const scheduler = await startScheduler(t, { httpPort: 0, ...options });
  return { scheduler, url: `ws://127.0.0.1:${scheduler.httpPort}/ws` };
}

/** The same on an HTTP server of the test's own, whose upgrades go to acceptWebSockets(), as an embedder's would. */
async function startOwnHttp(t: Test, options: SchedulerOptions = {}): Promise<{ scheduler: Scheduler; url: string }> {
  const scheduler = await startScheduler(t, options);
  const acceptor = acceptWebSockets(scheduler);
  const server = http.createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    if (new URL(req.url ?? '/', 'http://localhost').pathname !== '/ws') return void socket.destroy();
    acceptor.handleUpgrade(req, socket, head);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    acceptor.close();
    server.close();
  });
  return { scheduler, url: `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}/ws` };
}

function wsClient(t: Test, url: string, options: Parameters<typeof createClient>[0] = {}) {
  const c = createClient({ url, ...options });
  t.teardown(() => c.close());
  return c;
}

function wsWorker(t: Test, url: string, options: Parameters<typeof createWorker>[0] = {}) {
  const w = createWorker({ url, reconnectMinMs: 20, reconnectMaxMs: 200, ...options });
  t.teardown(() => w.close());
  return w;
}

interface Frame {
  cmd: number;
  payload: Buffer;
}

/** A WebSocket peer that speaks frames by hand: each send() is one message; records every frame and message. */
class RawWs {
  readonly frames: Frame[] = [];
  /** Frames per message received, to check that each message carried one. */
  readonly perMessage: number[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private readonly decoder = new FrameDecoder((cmd, buf, start, end) => this.frames.push({ cmd, payload: Buffer.from(buf.subarray(start, end)) }), {
    isKnownCommand,
    maxPayload: MAX_PAYLOAD_LIMIT,
  });

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const before = this.frames.length;
      this.decoder.push(data);
      this.perMessage.push(this.frames.length - before);
    });
    ws.on('error', () => {});
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  static async open(t: Test, url: string, ...first: Buffer[]): Promise<RawWs> {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    t.teardown(() => ws.terminate());
    await within(5000, 'the upgrade', new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)));
    const raw = new RawWs(ws);
    for (const bytes of first) raw.send(bytes);
    return raw;
  }

  send(bytes: Buffer | string): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  of(cmd: number): Frame[] {
    return this.frames.filter((f) => f.cmd === cmd);
  }

  error(): { code: string; message: string } | null {
    const last = this.frames.at(-1);
    return last?.cmd === Cmd.ERROR ? decodeError(last.payload) : null;
  }
}

const hello = (role: typeof Role.CLIENT | typeof Role.WORKER, token = ''): Buffer =>
  encode(writeHello, { version: PROTOCOL_VERSION, role, heartbeatMs: 0, name: 'raw', token });

const inputsOf = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

t.test('a client and a worker over WebSocket: results both ways, every size of message, jobs by id', async (t) => {
  const { scheduler, url } = await startWs(t);
  const joined: { role: string; remote: string }[] = [];
  scheduler.on('workerJoined', (p) => joined.push(p));
  scheduler.on('clientJoined', (p) => joined.push(p));
  const w = wsWorker(t, url, { handlers: { sha256: (p) => sha256(p.toString()), reverse: (p) => Buffer.from(p).reverse() } });
  await within(5000, 'the worker', w.ready());
  const c = wsClient(t, url);
  await within(5000, 'the client', c.connect());
  t.match(joined, [{ role: 'worker', remote: /^127\.0\.0\.1:\d+$/ }, { role: 'client', remote: /^127\.0\.0\.1:\d+$/ }]);

  const inputs = inputsOf('ws-', 500);
  t.same(await within(10_000, '500 digests', Promise.all(inputs.map((s) => c.submit('sha256', s)))), inputs.map(sha256));
  // Payloads across WebSocket's three header sizes (under 126, under 64 KiB, above), and past the first frame's limit.
  for (const size of [0, 1, 125, 126, 65_535, 65_536, 300_000, 2 * 1024 * 1024]) {
    const bytes = Buffer.alloc(size);
    for (let i = 0; i < size; i++) bytes[i] = (i * 31) & 0xff;
    const back = await within(10_000, `${size} bytes`, c.submitBuffer('reverse', bytes));
    t.ok(back.equals(Buffer.from(bytes).reverse()), `${size} bytes there and back`);
  }
  const job = await c.enqueue('sha256', 'by id', { detach: true });
  t.equal(await within(5000, 'wait', c.wait(job.id)), sha256('by id'));
  t.equal((await c.status(job.id)).state, 'completed');
  t.equal(scheduler.stats().completed, 500 + 8 + 1);
});

t.test('each frame travels in a binary message of its own, in turns of many frames and with large ones among them', async (t) => {
  const { url } = await startWs(t);
  const w = wsWorker(t, url, { handlers: { sha256: (p) => sha256(p.toString()), big: () => Buffer.alloc(100 * 1024, 7) } });
  await w.ready();
  const N = 3000; // 3,000 results of 74 bytes: turns of well over 64 KiB
  const submits = inputsOf('m-', N).map((s, i) => encode(writeSubmit, i + 1, i % 500 === 0 ? 'big' : 'sha256', s));
  const raw = await RawWs.open(t, url, hello(Role.CLIENT), Buffer.concat(submits));
  await waitFor(`${N} results`, () => raw.of(Cmd.COMPLETED).length === N);
  const results = raw.of(Cmd.COMPLETED).map((f) => decodeCompleted(f.payload)).sort((a, b) => a.requestId - b.requestId);
  t.same(
    results.map((d) => d.buf.toString(d.requestId % 500 === 1 ? 'hex' : 'utf8', d.bodyStart, d.bodyEnd)),
    inputsOf('m-', N).map((s, i) => (i % 500 === 0 ? Buffer.alloc(100 * 1024, 7).toString('hex') : sha256(s))),
  );
  t.ok(raw.perMessage.every((n) => n === 1), `one frame per message (${raw.perMessage.length} messages)`);
  // Several whole frames in one message are read in order, as a receiver must accept them (the SUBMITs above).
  t.equal(raw.error(), null);
});

t.test('acceptWebSockets() on an HTTP server of ones own: the same peers', async (t) => {
  const { scheduler, url } = await startOwnHttp(t, { token: 'k' });
  const w = wsWorker(t, url, { token: 'k' });
  await within(5000, 'the worker', w.ready());
  const c = wsClient(t, url, { token: 'k' });
  t.same(await within(5000, 'results', Promise.all(inputsOf('own-', 50).map((s) => c.submit('sha256', s)))), inputsOf('own-', 50).map(sha256));
  await t.rejects(within(5000, 'refusal', createClient({ url }).connect()), { code: ErrorCode.AUTH });
  t.equal(scheduler.stats().workers, 1);
});

t.test('mixed: a TCP client with a WebSocket worker, a WebSocket client with a TCP worker', async (t) => {
  const { scheduler, url } = await startWs(t);
  const wsW = wsWorker(t, url, { handlers: { viaWs: (p) => `ws:${p.toString()}` } });
  const tcpW = tcpWorker(t, scheduler.port, { viaTcp: (p) => `tcp:${p.toString()}` });
  await Promise.all([wsW.ready(), tcpW.ready()]);
  const overTcp = tcpClient(t, scheduler.port);
  const overWs = wsClient(t, url);
  const [a, b] = await within(10_000, 'both directions', Promise.all([
    Promise.all(inputsOf('x', 200).map((s) => overTcp.submit('viaWs', s))),
    Promise.all(inputsOf('y', 200).map((s) => overWs.submit('viaTcp', s))),
  ]));
  t.same(a, inputsOf('x', 200).map((s) => `ws:${s}`), 'TCP client, WebSocket worker');
  t.same(b, inputsOf('y', 200).map((s) => `tcp:${s}`), 'WebSocket client, TCP worker');
});

t.test('a WebSocket worker process killed mid-task has its tasks requeued to another worker', async (t) => {
  const { scheduler, url } = await startWs(t);
  let victimId = -1;
  scheduler.on('workerJoined', (w) => {
    if (w.name === 'victim') victimId = w.id;
  });
  let victimRunning = 0;
  scheduler.on('taskDispatched', (e) => {
    if (e.workerId === victimId) victimRunning++;
  });
  const left: { name: string; requeued: number }[] = [];
  scheduler.on('peerLeft', (p) => left.push(p));
  const victim = spawnTs(t, 'test/fixtures/slow-worker.ts', [url, 'victim', '8', '60000']);
  await waitFor('the victim worker to register over WebSocket', () => victimId !== -1, 20_000);
  const c = wsClient(t, url);
  const tasks = inputsOf('job-', 40).map((s) => c.submit('slow', s));
  await waitFor('the victim to hold tasks', () => victimRunning >= 8);
  victim.proc.kill('SIGKILL');
  t.equal(await within(10_000, 'the victim to die', victim.exited), 'SIGKILL');
  await waitFor('the victim to be dropped', () => left.some((p) => p.name === 'victim'));
  t.ok(left.find((p) => p.name === 'victim')!.requeued >= 8, 'what it held went back to the queue');
  wsWorker(t, url, { concurrency: 8, handlers: { slow: (p) => `done:${p.toString()}` } });
  t.same(await within(20_000, 'all 40 results', Promise.all(tasks)), inputsOf('job-', 40).map((s) => `done:${s}`));
  t.ok(scheduler.stats().requeued >= 8);

  // A socket dropped without a closing handshake, in this process: the same.
  const raw = await RawWs.open(t, url, hello(Role.WORKER), encode(writeReady, 4, ['held']));
  await waitFor('the raw worker to register', () => scheduler.stats().workers === 2);
  const held = c.submit('held', 'h');
  await waitFor('the task at the raw worker', () => raw.of(Cmd.TASK).length === 1);
  raw.ws.terminate();
  wsWorker(t, url, { handlers: { held: (p) => `again:${p.toString()}` } });
  t.equal(await within(10_000, 'the requeued task', held), 'again:h');
});

t.test('token over WebSocket: without the right one, E_AUTH before anything else', async (t) => {
  const { url } = await startWs(t, { token: 's3cret' });
  await t.rejects(within(5000, 'refusal', createClient({ url }).connect()), { code: ErrorCode.AUTH });
  await t.rejects(within(5000, 'refusal', createClient({ url, token: 'guess' }).connect()), { code: ErrorCode.AUTH });
  const raw = await RawWs.open(t, url, hello(Role.WORKER, 'wrong'), encode(writeReady, 1, ['sha256']));
  const closed = await within(5000, 'the close', raw.closed);
  t.equal(raw.frames.length, 1, 'only the ERROR frame: no hello, no task');
  t.equal(raw.error()?.code, ErrorCode.AUTH);
  t.same(closed, { code: 1008, reason: ErrorCode.AUTH }, 'the close says why too');

  const bad = wsWorker(t, url, { token: 'nope' });
  const refusals: string[] = [];
  bad.on('reconnecting', (e) => refusals.push(e.code));
  await waitFor('the bad worker to be refused', () => refusals.length > 0);
  t.equal(refusals[0], ErrorCode.AUTH);
  wsWorker(t, url, { token: 's3cret' });
  t.equal(await within(5000, 'a result', wsClient(t, url, { token: 's3cret' }).submit('sha256', 'in')), sha256('in'));
});

t.test('maxPayload over WebSocket: a frame over it fails its task alone, as over TCP; a message past all bounds closes', async (t) => {
  const LIMIT = 4096;
  const { scheduler, url } = await startWs(t, { maxPayload: LIMIT });
  const errors: string[] = [];
  scheduler.on('peerError', (e) => errors.push(e.code));
  const w = wsWorker(t, url, { maxPayload: LIMIT, handlers: { echo: (p) => p } });
  let reconnects = 0;
  w.on('reconnecting', () => reconnects++);
  await w.ready();
  const raw = await RawWs.open(t, url, hello(Role.CLIENT));
  await waitFor('the handshake', () => raw.of(Cmd.HELLO).length === 1);
  const small = inputsOf('innocent ', 10).map((s, i) => encode(writeSubmit, i + 1, 'echo', s));
  for (const m of small.slice(0, 5)) raw.send(m);
  raw.send(encode(writeSubmit, 98, 'echo', Buffer.alloc(3 * LIMIT, 0x62)));
  for (const m of small.slice(5)) raw.send(m);
  await waitFor('every request answered', () => raw.of(Cmd.COMPLETED).length + raw.of(Cmd.FAILED).length === 11);
  const failed = raw.of(Cmd.FAILED).map((f) => decodeFailed(f.payload));
  t.same(failed.map((f) => [f.requestId, f.code]), [[98, ErrorCode.TOO_LARGE]], 'the oversized one, and only it');
  t.match(failed[0]?.message, /a SUBMIT of 12\d\d\d bytes exceeds maxPayload \(4096\)/);
  t.equal(raw.error(), null, 'the connection is open');

  // A worker's oversized RESULT: skipped, its task failed alone, the worker kept.
  const rogue = await RawWs.open(t, url, hello(Role.WORKER), encode(writeReady, 4, ['rogue']));
  const c = wsClient(t, url);
  const big = c.submit('rogue', 'a').catch((e: { code: string }) => e.code);
  const fine = c.submit('rogue', 'b');
  await waitFor('both tasks at the rogue worker', () => rogue.of(Cmd.TASK).length === 2);
  const [ta, tb] = rogue.of(Cmd.TASK).map((f) => decodeTask(f.payload));
  rogue.send(encode(writeResultOk, ta!.taskId, ta!.attempt, Buffer.alloc(3 * LIMIT)));
  rogue.send(encode(writeResultOk, tb!.taskId, tb!.attempt, 'B'));
  t.equal(await within(5000, 'the refusal', big), ErrorCode.TOO_LARGE);
  t.equal(await within(5000, 'the next result', fine), 'B');
  t.equal(rogue.error(), null, 'the rogue worker is still connected');

  // Past what a message may hold at all, ws refuses it at its header, before holding it: the peer learns by the
  // close code (1009), the scheduler reports E_FRAME_TOO_LARGE.
  const huge = await RawWs.open(t, url, hello(Role.CLIENT));
  await waitFor('the handshake', () => huge.of(Cmd.HELLO).length === 1);
  huge.send(encode(writeSubmit, 1, 'echo', Buffer.alloc(messageLimit(LIMIT, true))));
  t.equal((await within(5000, 'the close', huge.closed)).code, 1009);
  await waitFor('the scheduler to report it', () => errors.includes(ErrorCode.FRAME_TOO_LARGE));

  // Before the hello, a message is held to the first frame's bound: larger is refused the same way.
  const early = await RawWs.open(t, url);
  early.send(Buffer.alloc(400 * 1024));
  t.equal((await within(5000, 'the close', early.closed)).code, 1009, 'refused before the handshake');
  // And a frame over the limit declared in a short message: E_PROTOCOL as over TCP (PROTOCOL.md 4.1).
  const declared = await RawWs.open(t, url, Buffer.from([Cmd.SUBMIT, 0xff, 0xff, 0xff, 0xff]));
  await within(5000, 'the close', declared.closed);
  t.equal(declared.error()?.code, ErrorCode.PROTOCOL);

  t.equal(await within(5000, 'a later task', c.submit('echo', 'still')), 'still', 'others keep being served');
  t.equal(reconnects, 0, 'the echo worker was never dropped');
});

t.test('garbage over WebSocket: a text message, a cut frame, an unknown command; each peer dropped with E_PROTOCOL', async (t) => {
  const { scheduler, url } = await startWs(t);
  const w = wsWorker(t, url);
  await w.ready();
  const c = wsClient(t, url);
  await c.connect();
  const open = scheduler.stats().connections; // with the HTTP API's own client
  const errors: string[] = [];
  scheduler.on('peerError', (e) => errors.push(e.code));
  const cases: Array<[string, (raw: RawWs) => void]> = [
    ['a text message before the hello', (raw) => raw.send('GET / HTTP/1.1')],
    ['a text message after the hello', (raw) => (raw.send(hello(Role.CLIENT)), raw.send('{"submit":"x"}'))],
    ['a message that ends inside a frame', (raw) => (raw.send(hello(Role.CLIENT)), raw.send(encode(writeSubmit, 1, 'sha256', 'cut').subarray(0, 9)))],
    ['an unknown command', (raw) => raw.send(Buffer.from([0xee, 0, 0, 0, 0]))],
    ['an empty message', (raw) => raw.send(Buffer.alloc(0))],
  ];
  for (const [what, act] of cases) {
    const raw = await RawWs.open(t, url);
    act(raw);
    await within(5000, `the close after ${what}`, raw.closed);
    t.equal(raw.error()?.code, ErrorCode.PROTOCOL, what);
    t.equal(await within(5000, 'a task beside it', c.submit('sha256', what)), sha256(what), `others served after ${what}`);
  }
  t.equal(errors.filter((e) => e === ErrorCode.PROTOCOL).length, cases.length);
  await waitFor('only the worker and the clients left', () => scheduler.stats().connections === open);
});

t.test('backpressure: a WebSocket client that does not read is not fed past the high-water mark, then catches up', async (t) => {
  const RESULT = 64 * 1024;
  const { scheduler, url } = await startWs(t, { highWaterBytes: 256 * 1024 });
  const w = wsWorker(t, url, { handlers: { big: () => Buffer.alloc(RESULT) } });
  await w.ready();
  const raw = await RawWs.open(t, url, hello(Role.CLIENT));
  await waitFor('the handshake', () => raw.of(Cmd.HELLO).length === 1);
  raw.ws.pause(); // reads nothing from here on
  const before = process.memoryUsage();
  // Submissions keep coming while results pile up unread: a scheduler that kept reading them would hold every
  // result (190 MiB); one that stops feeding the client leaves the rest unread in the socket.
  const N = 3000;
  for (let i = 1; i <= N; i++) {
    raw.send(encode(writeSubmit, i, 'big', ''));
    if (i % 25 === 0) await new Promise((r) => setTimeout(r, 2));
  }
  await new Promise((r) => setTimeout(r, 1000));
  const settled = scheduler.stats();
  await new Promise((r) => setTimeout(r, 500));
  const later = scheduler.stats();
  t.ok(later.submitted < N / 4, `the scheduler stopped taking submissions at ${later.submitted} of ${N}`);
  t.equal(later.submitted, settled.submitted, 'and takes no more while the client does not read');
  const grown = process.memoryUsage().arrayBuffers - before.arrayBuffers;
  t.ok(grown < 64 * 1024 * 1024, `buffers grew by ${(grown / 1024 / 1024).toFixed(1)} MiB, not by the ${(N * RESULT) / 1024 / 1024} MiB of every result`);
  // Others are still served meanwhile.
  const c = wsClient(t, url);
  t.equal((await within(5000, 'a result beside it', c.submitBuffer('big', ''))).length, RESULT);
  raw.ws.resume();
  await waitFor('every result, once it reads', () => raw.of(Cmd.COMPLETED).length === N, 60_000);
  t.equal(raw.error(), null);
});

t.test('a WebSocket client that reads nothing for slowConsumerMs is dropped with E_SLOW_CONSUMER', async (t) => {
  const { scheduler, url } = await startWs(t, { slowConsumerMs: 500 });
  const w = wsWorker(t, url, { handlers: { big: () => Buffer.alloc(64 * 1024) } });
  await w.ready();
  const clients = scheduler.stats().clients;
  const raw = await RawWs.open(t, url, hello(Role.CLIENT));
  await waitFor('the handshake', () => raw.of(Cmd.HELLO).length === 1);
  raw.ws.pause();
  for (let i = 1; i <= 400; i++) raw.send(encode(writeSubmit, i, 'big', ''));
  const errors: string[] = [];
  scheduler.on('peerError', (e) => errors.push(e.code));
  await waitFor('the slow consumer to be dropped', () => errors.includes(ErrorCode.SLOW_CONSUMER), 10_000);
  await waitFor('its connection to go', () => scheduler.stats().clients === clients);
  t.equal((await within(5000, 'others served', wsClient(t, url).submitBuffer('big', ''))).length, 64 * 1024);
});

t.test('url option: ws: or wss: only, never beside host or port; an unreachable URL is E_CONNECT naming it', async (t) => {
  for (const url of ['http://127.0.0.1:9002/ws', 'tcp://x', 'not a url', '', 42]) {
    t.throws(() => createClient({ url: url as string }), { code: ErrorCode.INVALID, message: /options\.url must be a ws: or wss: URL/ }, `client ${String(url)}`);
    t.throws(() => createWorker({ url: url as string }), { code: ErrorCode.INVALID, message: /options\.url/ }, `worker ${String(url)}`);
  }
  t.throws(() => createClient({ url: 'ws://127.0.0.1:1/ws', port: 9001 }), { code: ErrorCode.INVALID, message: /options\.url .*options\.host and options\.port/ });
  t.throws(() => createWorker({ url: 'ws://127.0.0.1:1/ws', host: 'h' }), { code: ErrorCode.INVALID, message: /options\.url/ });

  // A port nothing listens on: take one, then free it.
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  const gone = `ws://127.0.0.1:${port}/ws`;
  const c = createClient({ url: gone });
  await t.rejects(within(5000, 'the failure', c.connect()), { code: ErrorCode.CONNECT, message: new RegExp(`cannot reach the scheduler at ${gone.replace(/[/.]/g, '\\$&')}: ECONNREFUSED`) });
  t.equal(c.host, '127.0.0.1');
  t.equal(c.port, port);

  // An HTTP server that does not upgrade at that path.
  const { url } = await startWs(t);
  const wrongPath = url.replace(/\/ws$/, '/nope');
  await t.rejects(within(5000, 'the failure', createClient({ url: wrongPath }).connect()), { code: ErrorCode.CONNECT, message: /cannot reach the scheduler at ws:\/\/127\.0\.0\.1:\d+\/nope/ });
});

t.test('--url on the CLIs: a worker and a client over WebSocket', async (t) => {
  const { url } = await startWs(t);
  const worker = spawnTs(t, 'worker.ts', ['--url', url, '--name', 'cli-ws', '-q']);
  const client = spawnTs(t, 'client.ts', ['--url', url, 'Hello']);
  t.equal(await within(30_000, 'the client', client.exited), 0, client.stderr());
  t.equal(client.stdout().trim(), sha256('Hello'));
  const both = spawnTs(t, 'client.ts', ['--url', url, '--port', '9001', 'x']);
  t.equal(await within(30_000, 'the refusal', both.exited), 2);
  t.match(both.stderr(), /options\.url .*E_INVALID/);
  worker.proc.kill('SIGTERM');
  t.equal(await within(15_000, 'the worker to stop', worker.exited), 0);
});

t.test('wss: the same over TLS (a self-signed certificate for localhost, trusted by the client process)', async (t) => {
  const scheduler = await startScheduler(t);
  const acceptor = acceptWebSockets(scheduler);
  const tls = path.join(root, 'test/fixtures/tls'); // cert.pem: CN and SAN localhost, 127.0.0.1; valid until 2126
  const server = https.createServer({ key: readFileSync(path.join(tls, 'key.pem')), cert: readFileSync(path.join(tls, 'cert.pem')) });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => acceptor.handleUpgrade(req, socket, head));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    acceptor.close();
    server.close();
  });
  const url = `wss://localhost:${(server.address() as net.AddressInfo).port}/ws`;
  tcpWorker(t, scheduler.port);
  const trusted = spawnTs(t, 'client.ts', ['--url', url, 'Hello'], { NODE_EXTRA_CA_CERTS: path.join(tls, 'cert.pem') });
  t.equal(await within(30_000, 'the client', trusted.exited), 0, trusted.stderr());
  t.equal(trusted.stdout().trim(), sha256('Hello'));
  // Without trusting the certificate, the connection is refused as unreachable, naming the URL and why.
  await t.rejects(within(5000, 'the refusal', createClient({ url }).connect()), { code: ErrorCode.CONNECT, message: /cannot reach the scheduler at wss:.*(SELF_SIGNED|self.signed)/i });
});

t.test('shutdown: WebSocket peers are told E_SHUTDOWN like TCP ones, and new upgrades are refused', async (t) => {
  const { scheduler, url } = await startWs(t);
  const c = wsClient(t, url);
  await c.connect();
  const stuck = c.submit('nobody-runs-this', 'x');
  await waitFor('the task to be queued', () => scheduler.stats().queued === 1);
  const fails = t.rejects(stuck, { code: ErrorCode.SHUTDOWN });
  await within(10_000, 'the close', scheduler.close());
  await fails;
  await t.rejects(within(5000, 'a later client', createClient({ url }).connect()), { code: ErrorCode.CONNECT });
});
