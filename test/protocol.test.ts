// The wire protocol pinned down: golden bytes per command (the same hex strings appear in docs/PROTOCOL.md),
// stream cutting at every split point, property round trips, rejections, and a light fuzz of the decoders.

import t, { type Test } from 'tap';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { ErrorCode, ProtocolError } from '../lib/errors.js';
import { DEFAULT_MAX_PAYLOAD, FrameDecoder, FrameWriter, HEADER_SIZE, MAX_SLAB, MIN_SLAB, writeHeader } from '../lib/protocol/frame.js';
import {
  CMD_NAMES,
  Cmd,
  HelloSetting,
  MAX_HELLO_PAYLOAD,
  MAX_STRING_BYTES,
  OLDEST_VERSION,
  PROTOCOL_VERSION,
  Role,
  SubmitOption,
  decodeAccepted,
  decodeCancel,
  decodeClientProgress,
  decodeCompleted,
  decodeGraph,
  decodeJobRequest,
  decodeNode,
  decodeList,
  decodeReply,
  decodeWorkerProgress,
  decodeError,
  decodeFailed,
  decodeHello,
  decodeReady,
  decodeResult,
  decodeSubmit,
  decodeTask,
  encode,
  encodeKeepalive,
  isKnownCommand,
  skippedHead,
  writeAbort,
  writeAccepted,
  writeCancel,
  writeClientProgress,
  writeCompleted,
  writeGraph,
  writeList,
  writeNode,
  writeReply,
  writeStatus,
  writeWait,
  writeWorkerProgress,
  writeError,
  writeFailed,
  writeHello,
  writeReady,
  writeResultError,
  writeResultOk,
  writeSubmit,
  writeTask,
  type SubmitOptions,
} from '../lib/protocol/index.js';

const docsPath = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'docs', 'PROTOCOL.md');

// ---- helpers -------------------------------------------------------------------------------------------------

const fromHex = (hex: string): Buffer => Buffer.from(hex, 'hex');

/** A HELLO as decodeHello returns it: version 1 has no `settings` key at all. */
function plainHello<T extends { settings?: unknown }>(hello: T): T {
  const out = { ...hello };
  if (out.settings === undefined) delete out.settings;
  return out;
}

interface Frame {
  cmd: number;
  hex: string;
}

/** A decoder that records every frame it delivers (payload copied out as hex at delivery time). */
function recorder(maxPayload?: number): { decoder: FrameDecoder; frames: Frame[] } {
  const frames: Frame[] = [];
  const decoder = new FrameDecoder(
    (cmd, buf, start, end) => frames.push({ cmd, hex: buf.toString('hex', start, end) }),
    maxPayload === undefined ? { isKnownCommand } : { isKnownCommand, maxPayload },
  );
  return { decoder, frames };
}

/** Feeds `chunks` to a fresh decoder and returns the frames it delivered; the stream must end on a frame boundary. */
function decodeChunks(chunks: readonly Buffer[]): Frame[] {
  const { decoder, frames } = recorder();
  for (const chunk of chunks) decoder.push(chunk);
  if (decoder.midFrame || decoder.bufferedBytes !== 0) throw new Error('decoder left holding a partial frame');
  return frames;
}

/** Cuts `buf` at the given offsets (any order, duplicates and 0/len allowed; empty chunks are kept). */
function cut(buf: Buffer, points: readonly number[]): Buffer[] {
  const sorted = [...points].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const p of sorted) {
    chunks.push(buf.subarray(start, p));
    start = p;
  }
  chunks.push(buf.subarray(start));
  return chunks;
}

/** Turns Buffers and Uint8Arrays into comparable hex strings, recursively, so messages compare by value. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return `hex:${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

/**
 * Runs the decoder matching a command byte on buf[start, end), as the scheduler, worker and client do. A body
 * decoded as a range (SUBMIT, RESULT, COMPLETED) is turned into `body`, a Buffer, to compare with a message.
 */
function decodeFor(cmd: number, buf: Buffer, start = 0, end = buf.length): unknown {
  const decoded = decodeMessage(cmd, buf, start, end);
  if (decoded === null || !('bodyStart' in decoded)) return decoded;
  if (decoded.buf !== buf) throw new Error('a body range must point into the buffer that was decoded');
  // `body` takes the place of `buf`, so keys keep the order of the messages compared with.
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(decoded)) {
    if (key === 'buf') out.body = buf.subarray(decoded.bodyStart, decoded.bodyEnd);
    else if (key !== 'bodyStart' && key !== 'bodyEnd' && key !== 'taskLength') out[key] = value;
  }
  if ('taskLength' in decoded) {
    // A SUBMIT says how long the TASK it becomes will be: task id, attempt, the same type and body.
    const want = 10 + Buffer.byteLength((decoded as unknown as { type: string }).type) + decoded.bodyEnd - decoded.bodyStart;
    if (decoded.taskLength !== want) throw new Error(`SUBMIT taskLength ${decoded.taskLength}, its TASK is ${want}`);
  }
  return out;
}

function decodeMessage(cmd: number, buf: Buffer, start: number, end: number) {
  switch (cmd) {
    case Cmd.TASK:
      return decodeTask(buf, start, end);
    case Cmd.RESULT:
      return decodeResult(buf, start, end);
    case Cmd.HELLO:
      return decodeHello(buf, start, end);
    case Cmd.SUBMIT:
      return decodeSubmit(buf, start, end);
    case Cmd.COMPLETED:
      return decodeCompleted(buf, start, end);
    case Cmd.FAILED:
      return decodeFailed(buf, start, end);
    case Cmd.ERROR:
      return decodeError(buf, start, end);
    case Cmd.READY:
      return decodeReady(buf, start, end);
    case Cmd.CANCEL:
      return decodeCancel(buf, start, end);
    case Cmd.ACCEPTED:
      return decodeAccepted(buf, start, end);
    case Cmd.STATUS:
      return decodeJobRequest('STATUS', buf, start, end);
    case Cmd.WAIT:
      return decodeJobRequest('WAIT', buf, start, end);
    case Cmd.ABORT:
      return decodeJobRequest('ABORT', buf, start, end);
    case Cmd.LIST:
      return decodeList(buf, start, end);
    case Cmd.REPLY:
      return decodeReply(buf, start, end);
    case Cmd.GRAPH:
      return decodeGraph(buf, start, end);
    case Cmd.NODE:
      return decodeNode(buf, start, end);
    case Cmd.PROGRESS:
      // Two layouts, by direction: a worker's names a lease (8 bytes before the value), a client's a job (12).
      return end - start >= 22 && buf.readUInt16BE(start + 20) === end - start - 22
        ? decodeClientProgress(buf, start, end)
        : decodeWorkerProgress(buf, start, end);
    default:
      throw new Error(`no decoder for command ${cmd}`);
  }
}

/** Asserts that fn throws a ProtocolError with the given code (codes are the contract, messages are not). */
function throwsCode(t: Test, fn: () => unknown, code: string, what: string): void {
  try {
    fn();
  } catch (err) {
    t.ok(err instanceof ProtocolError, `${what}: throws a ProtocolError`);
    t.equal((err as ProtocolError).code, code, `${what}: code ${code}`);
    return;
  }
  t.fail(`${what}: did not throw`);
}

/** Runs a fast-check property as one tap assertion; a failure reports fast-check's counterexample and seed. */
function property<Ts>(t: Test, name: string, prop: fc.IProperty<Ts>, numRuns: number): void {
  try {
    fc.assert(prop, { numRuns });
    t.pass(`${name} (${numRuns} runs)`);
  } catch (err) {
    t.fail(`${name}: ${(err as Error).message}`);
  }
}

// ---- golden bytes --------------------------------------------------------------------------------------------
// Every fixture is [cmd u8][payload length u32 BE][payload]. docs/PROTOCOL.md shows the same strings.

const GOLDEN = {
  TASK:
    '01' + //                       cmd TASK
    '00000012' + //                 payload length 18
    '00000007' + //                 task id 7
    '00000001' + //                 attempt 1
    '0005' + '6172697468' + //      job type: str16 "arith"
    '322b33', //                    body: "2+3"

  RESULT_OK:
    '02' + //                       cmd RESULT
    '0000000a' + //                 payload length 10
    '00000007' + //                 task id 7
    '00000001' + //                 attempt 1
    '00' + //                       status 0 = ok
    '35', //                        body: "5"

  RESULT_ERROR:
    '02' + //                       cmd RESULT
    '00000030' + //                 payload length 48
    '00000008' + //                 task id 8
    '00000002' + //                 attempt 2
    '01' + //                       status 1 = error
    '0009' + '455f48414e444c4552' + // error code: str16 "E_HANDLER"
    '6469766973696f6e206279207a65726f20617420636f6c756d6e2032', // message: "division by zero at column 2"

  HELLO_WORKER:
    '03' + //                       cmd HELLO
    '00000012' + //                 payload length 18
    '04' + //                       protocol version 4
    '02' + //                       role 2 = worker
    '00000000' + //                 heartbeat 0 ms (clients and workers follow the scheduler's)
    '0002' + '7731' + //            name: str16 "w1"
    '0000' + //                     token: str16 "" (empty)
    '01' + //                       setting count 1
    '02' + '00000000', //           setting tag 2 = mayBlock, value 0: its keepalives never wait for a handler

  HELLO_SCHEDULER:
    '03' + //                       cmd HELLO
    '00000021' + //                 payload length 33
    '04' + //                       protocol version 4
    '03' + //                       role 3 = scheduler
    '00001388' + //                 heartbeat 5000 ms
    '0011' + '7461736b776972652d3061316232633364' + // name: str16 "taskwire-0a1b2c3d"
    '0000' + //                     token: str16 "" (empty)
    '01' + //                       setting count 1
    '01' + '01000000', //           setting tag 1 = maxPayload, value 16777216

  HELLO_WORKER_V1:
    '03' + //                       cmd HELLO
    '0000000c' + //                 payload length 12
    '01' + //                       protocol version 1
    '02' + //                       role 2 = worker
    '00000000' + //                 heartbeat 0 ms
    '0002' + '7731' + //            name: str16 "w1"
    '0000', //                      token: str16 "" (empty); version 1 ends here

  HELLO_SCHEDULER_V1:
    '03' + //                       cmd HELLO
    '0000001b' + //                 payload length 27
    '01' + //                       protocol version 1: the scheduler's answer to a peer of version 1
    '03' + //                       role 3 = scheduler
    '00001388' + //                 heartbeat 5000 ms
    '0011' + '7461736b776972652d3061316232633364' + // name: str16 "taskwire-0a1b2c3d"
    '0000', //                      token: str16 "" (empty)

  KEEPALIVE:
    '03' + //                       cmd HELLO
    '00000000', //                  payload length 0: keepalive

  SUBMIT:
    '04' + //                       cmd SUBMIT
    '00000012' + //                 payload length 18
    '0000002a' + //                 request id 42
    '00' + //                       option count 0
    '0006' + '736861323536' + //    job type: str16 "sha256"
    '48656c6c6f', //                body: "Hello"

  SUBMIT_OPTIONS:
    '04' + //                       cmd SUBMIT
    '0000001c' + //                 payload length 28
    '0000002a' + //                 request id 42
    '02' + //                       option count 2
    '01' + '00007530' + //          option tag 1 = timeoutMs, value 30000
    '02' + '00000002' + //          option tag 2 = retries, value 2
    '0006' + '736861323536' + //    job type: str16 "sha256"
    '48656c6c6f', //                body: "Hello"

  COMPLETED:
    '05' + //                       cmd COMPLETED
    '00000005' + //                 payload length 5
    '0000002b' + //                 request id 43
    '35', //                        body: "5"

  FAILED:
    '06' + //                       cmd FAILED
    '0000002b' + //                 payload length 43
    '0000002c' + //                 request id 44
    '0009' + '455f48414e444c4552' + // error code: str16 "E_HANDLER"
    '6469766973696f6e206279207a65726f20617420636f6c756d6e2032', // message: "division by zero at column 2"

  ERROR:
    '07' + //                       cmd ERROR
    '00000027' + //                 payload length 39
    '000a' + '455f50524f544f434f4c' + // error code: str16 "E_PROTOCOL"
    '6120636c69656e74206d6179206e6f742073656e64205245414459', // message: "a client may not send READY"

  READY:
    '08' + //                       cmd READY
    '00000015' + //                 payload length 21
    '00000010' + //                 concurrency 16
    '0002' + //                     type count 2
    '0006' + '736861323536' + //    type: str16 "sha256"
    '0005' + '6172697468', //       type: str16 "arith"

  READY_DRAIN:
    '08' + //                       cmd READY
    '00000015' + //                 payload length 21
    '00000000' + //                 concurrency 0: send me no more tasks
    '0002' + //                     type count 2
    '0006' + '736861323536' + //    type: str16 "sha256"
    '0005' + '6172697468', //       type: str16 "arith"

  CANCEL:
    '09' + //                       cmd CANCEL
    '0000002b' + //                 payload length 43
    '00000007' + //                 task id 7
    '00000002' + //                 attempt 2
    '0009' + '455f54494d454f5554' + // code: str16 "E_TIMEOUT"
    '74696d6564206f7574206166746572203330303030206d73', // message: "timed out after 30000 ms"

  // Version 3: jobs by id. The job id in each is 1764590000000001 (000644e2a01fcc01), a u64.
  SUBMIT_JOB:
    '04' + //                       cmd SUBMIT
    '00000021' + //                 payload length 33
    '0000002a' + //                 request id 42
    '03' + //                       option count 3
    '04' + 'ffffffff' + //          option: tag 4 = priority, value -1 (two's complement)
    '06' + '00000001' + //          option: tag 6 = detach
    '07' + '00000001' + //          option: tag 7 = accept
    '0006' + '736861323536' + //    job type: str16 "sha256"
    '48656c6c6f', //                body: "Hello"

  ACCEPTED:
    '0a' + '0000000c' + '0000002a' + '000644e2a01fcc01', // cmd, length 12, request id 42, job id

  STATUS:
    '0b' + '0000000c' + '00000007' + '000644e2a01fcc01', // cmd, length 12, request id 7, job id

  WAIT:
    '0c' + '0000000c' + '00000007' + '000644e2a01fcc01', // the same layout as STATUS

  ABORT:
    '0d' + '0000000c' + '00000007' + '000644e2a01fcc01', // the same layout as STATUS

  LIST:
    '0e' + '00000011' + '00000008' + '00000014' + '0007' + '72756e6e696e67', // request 8, limit 20, state "running"

  REPLY:
    '0f' + '00000031' + '00000007' + // cmd, length 49, request id 7
    Buffer.from('{"id":1764590000000001,"outcome":"cancelled"}').toString('hex'),

  PROGRESS_WORKER:
    '10' + '00000016' + '00000007' + '00000001' + // cmd, length 22, task id 7, attempt 1
    '3fe0000000000000' + '0004' + '68616c66', //   value 0.5, message: str16 "half"

  PROGRESS_CLIENT:
    '10' + '0000001a' + '0000002a' + '000644e2a01fcc01' + // cmd, length 26, request id 42, job id
    '3fe0000000000000' + '0004' + '68616c66', //           value 0.5, message: str16 "half"

  GRAPH:
    '11' + '0000003d' + '0000002a' + //                 cmd, length 61, request id 42
    '01' + '0600000001' + '00000003' + //               one option: DETACH 1; 3 nodes
    '000470617274' + '0000' + '00000001' + '61' + //    node 0: type "part", no inputs, body "a"
    '000470617274' + '0000' + '00000001' + '62' + //    node 1: type "part", no inputs, body "b"
    '00046a6f696e' + '0002' + '00000000' + '00000001' + '00000001' + '2b', // node 2 (root): "join", inputs 0 and 1, body "+"

  NODE:
    '12' + '0000001d' + '00000007' + '00000001' + //    cmd, length 29, task id 7, attempt 1
    '00046a6f696e' + '0002' + //                        job type "join", 2 inputs
    '000000027061' + '000000027062' + '2b', //          inputs "pa" and "pb", body "+"

  NODE_AS_TASK:
    '01' + '0000001d' + '00000007' + '00000001' + //    the same, as a TASK for a worker of version 1-3
    '00046a6f696e' + '0002' + '000000027061' + '000000027062' + '2b',
} as const;

interface GoldenCase {
  name: keyof typeof GOLDEN;
  cmd: number;
  encode: () => Buffer;
  /** What decodeX returns for the payload. */
  message: unknown;
}

const divByZero = 'division by zero at column 2';
const JOB_ID = 1_764_590_000_000_001;

const goldenCases: GoldenCase[] = [
  {
    name: 'TASK',
    cmd: Cmd.TASK,
    encode: () => encode(writeTask, 7, 1, 'arith', '2+3'),
    message: { taskId: 7, attempt: 1, type: 'arith', body: Buffer.from('2+3') },
  },
  {
    name: 'RESULT_OK',
    cmd: Cmd.RESULT,
    encode: () => encode(writeResultOk, 7, 1, '5'),
    message: { taskId: 7, attempt: 1, ok: true, body: Buffer.from('5') },
  },
  {
    name: 'RESULT_ERROR',
    cmd: Cmd.RESULT,
    encode: () => encode(writeResultError, 8, 2, ErrorCode.HANDLER, divByZero),
    message: { taskId: 8, attempt: 2, ok: false, code: 'E_HANDLER', message: divByZero },
  },
  {
    name: 'HELLO_WORKER',
    cmd: Cmd.HELLO,
    encode: () =>
      encode(writeHello, { version: PROTOCOL_VERSION, role: Role.WORKER, heartbeatMs: 0, name: 'w1', token: '', settings: { mayBlock: false } }),
    message: { version: 4, role: 2, heartbeatMs: 0, name: 'w1', token: '', settings: { mayBlock: false } },
  },
  {
    name: 'HELLO_SCHEDULER',
    cmd: Cmd.HELLO,
    encode: () =>
      encode(writeHello, {
        version: PROTOCOL_VERSION,
        role: Role.SCHEDULER,
        heartbeatMs: 5000,
        name: 'taskwire-0a1b2c3d',
        token: '',
        settings: { maxPayload: 16 * 1024 * 1024 },
      }),
    message: { version: 4, role: 3, heartbeatMs: 5000, name: 'taskwire-0a1b2c3d', token: '', settings: { maxPayload: 16 * 1024 * 1024 } },
  },
  {
    name: 'HELLO_WORKER_V1',
    cmd: Cmd.HELLO,
    encode: () => encode(writeHello, { version: 1, role: Role.WORKER, heartbeatMs: 0, name: 'w1', token: '' }),
    message: { version: 1, role: 2, heartbeatMs: 0, name: 'w1', token: '' },
  },
  {
    name: 'HELLO_SCHEDULER_V1',
    cmd: Cmd.HELLO,
    // Settings given for version 1 are not written: that layout has no room for them.
    encode: () =>
      encode(writeHello, { version: 1, role: Role.SCHEDULER, heartbeatMs: 5000, name: 'taskwire-0a1b2c3d', token: '', settings: { maxPayload: 1 } }),
    message: { version: 1, role: 3, heartbeatMs: 5000, name: 'taskwire-0a1b2c3d', token: '' },
  },
  { name: 'KEEPALIVE', cmd: Cmd.HELLO, encode: () => encodeKeepalive(), message: null },
  {
    name: 'SUBMIT',
    cmd: Cmd.SUBMIT,
    encode: () => encode(writeSubmit, 42, 'sha256', 'Hello'),
    message: { requestId: 42, type: 'sha256', body: Buffer.from('Hello'), options: undefined },
  },
  {
    name: 'SUBMIT_OPTIONS',
    cmd: Cmd.SUBMIT,
    // Keys deliberately out of tag order: the encoder writes tags in ascending order whatever the object's.
    encode: () => encode(writeSubmit, 42, 'sha256', 'Hello', { retries: 2, timeoutMs: 30000 }),
    message: { requestId: 42, type: 'sha256', body: Buffer.from('Hello'), options: { timeoutMs: 30000, retries: 2 } },
  },
  {
    name: 'COMPLETED',
    cmd: Cmd.COMPLETED,
    encode: () => encode(writeCompleted, 43, '5'),
    message: { requestId: 43, body: Buffer.from('5') },
  },
  {
    name: 'FAILED',
    cmd: Cmd.FAILED,
    encode: () => encode(writeFailed, 44, ErrorCode.HANDLER, divByZero),
    message: { requestId: 44, code: 'E_HANDLER', message: divByZero },
  },
  {
    name: 'ERROR',
    cmd: Cmd.ERROR,
    encode: () => encode(writeError, ErrorCode.PROTOCOL, 'a client may not send READY'),
    message: { code: 'E_PROTOCOL', message: 'a client may not send READY' },
  },
  {
    name: 'READY',
    cmd: Cmd.READY,
    encode: () => encode(writeReady, 16, ['sha256', 'arith']),
    message: { concurrency: 16, types: ['sha256', 'arith'] },
  },
  {
    name: 'READY_DRAIN',
    cmd: Cmd.READY,
    encode: () => encode(writeReady, 0, ['sha256', 'arith']),
    message: { concurrency: 0, types: ['sha256', 'arith'] },
  },
  {
    name: 'CANCEL',
    cmd: Cmd.CANCEL,
    encode: () => encode(writeCancel, 7, 2, ErrorCode.TIMEOUT, 'timed out after 30000 ms'),
    message: { taskId: 7, attempt: 2, code: 'E_TIMEOUT', message: 'timed out after 30000 ms' },
  },
  {
    name: 'SUBMIT_JOB',
    cmd: Cmd.SUBMIT,
    encode: () => encode(writeSubmit, 42, 'sha256', 'Hello', { accept: true, detach: true, priority: -1 }),
    message: { requestId: 42, type: 'sha256', body: Buffer.from('Hello'), options: { priority: -1, detach: true, accept: true } },
  },
  { name: 'ACCEPTED', cmd: Cmd.ACCEPTED, encode: () => encode(writeAccepted, 42, JOB_ID), message: { requestId: 42, jobId: JOB_ID } },
  { name: 'STATUS', cmd: Cmd.STATUS, encode: () => encode(writeStatus, 7, JOB_ID), message: { requestId: 7, jobId: JOB_ID } },
  { name: 'WAIT', cmd: Cmd.WAIT, encode: () => encode(writeWait, 7, JOB_ID), message: { requestId: 7, jobId: JOB_ID } },
  { name: 'ABORT', cmd: Cmd.ABORT, encode: () => encode(writeAbort, 7, JOB_ID), message: { requestId: 7, jobId: JOB_ID } },
  { name: 'LIST', cmd: Cmd.LIST, encode: () => encode(writeList, 8, 20, 'running'), message: { requestId: 8, limit: 20, state: 'running' } },
  {
    name: 'REPLY',
    cmd: Cmd.REPLY,
    encode: () => encode(writeReply, 7, JSON.stringify({ id: JOB_ID, outcome: 'cancelled' })),
    message: { requestId: 7, json: '{"id":1764590000000001,"outcome":"cancelled"}' },
  },
  {
    name: 'PROGRESS_WORKER',
    cmd: Cmd.PROGRESS,
    encode: () => encode(writeWorkerProgress, 7, 1, 0.5, 'half'),
    message: { taskId: 7, attempt: 1, value: 0.5, message: 'half' },
  },
  {
    name: 'PROGRESS_CLIENT',
    cmd: Cmd.PROGRESS,
    encode: () => encode(writeClientProgress, 42, JOB_ID, 0.5, 'half'),
    message: { requestId: 42, jobId: JOB_ID, value: 0.5, message: 'half' },
  },
  {
    name: 'GRAPH',
    cmd: Cmd.GRAPH,
    encode: () =>
      encode(writeGraph, 42, [{ type: 'part', body: 'a', inputs: [] }, { type: 'part', body: 'b', inputs: [] }, { type: 'join', body: '+', inputs: [0, 1] }], { detach: true }),
    message: {
      requestId: 42,
      options: { detach: true },
      nodes: [
        { type: 'part', inputs: [], body: Buffer.from('a') },
        { type: 'part', inputs: [], body: Buffer.from('b') },
        { type: 'join', inputs: [0, 1], body: Buffer.from('+') },
      ],
    },
  },
  {
    name: 'NODE',
    cmd: Cmd.NODE,
    encode: () => encode(writeNode, 7, 1, 'join', [Buffer.from('pa'), Buffer.from('pb')], '+'),
    message: { taskId: 7, attempt: 1, type: 'join', inputs: [Buffer.from('pa'), Buffer.from('pb')], body: Buffer.from('+') },
  },
  {
    name: 'NODE_AS_TASK',
    cmd: Cmd.TASK,
    encode: () => encode(writeNode, 7, 1, 'join', [Buffer.from('pa'), Buffer.from('pb')], '+', true),
    message: { taskId: 7, attempt: 1, type: 'join', body: fromHex('0002000000027061000000027062' + '2b') },
  },
];

t.test('constants: command table, roles, version, header size, default maxPayload', async (t) => {
  t.same(
    { ...Cmd },
    { TASK: 1, RESULT: 2, HELLO: 3, SUBMIT: 4, COMPLETED: 5, FAILED: 6, ERROR: 7, READY: 8, CANCEL: 9, ACCEPTED: 10, STATUS: 11, WAIT: 12, ABORT: 13, LIST: 14, REPLY: 15, PROGRESS: 16, GRAPH: 17, NODE: 18 },
  );
  t.same({ ...Role }, { CLIENT: 1, WORKER: 2, SCHEDULER: 3 });
  t.same({ ...SubmitOption }, { TIMEOUT_MS: 1, RETRIES: 2, BACKOFF_MS: 3, PRIORITY: 4, DELAY_MS: 5, DETACH: 6, ACCEPT: 7, TENANT: 8 });
  t.equal(PROTOCOL_VERSION, 4);
  t.equal(OLDEST_VERSION, 1);
  t.same({ ...HelloSetting }, { MAX_PAYLOAD: 1, MAY_BLOCK: 2 });
  t.equal(MAX_HELLO_PAYLOAD, 132_356, 'version, role, heartbeat, two str16 of 65,535 bytes, 255 settings');
  t.equal(HEADER_SIZE, 5);
  t.equal(DEFAULT_MAX_PAYLOAD, 16 * 1024 * 1024);
  t.equal(MAX_STRING_BYTES, 0xffff);
  const known = [];
  for (let cmd = 0; cmd <= 255; cmd++) if (isKnownCommand(cmd)) known.push(cmd);
  t.same(known, Array.from({ length: 18 }, (_, i) => i + 1), 'exactly commands 1-18 are known');
  const header = Buffer.alloc(7, 0xee);
  writeHeader(header, 1, Cmd.SUBMIT, 0x01020304);
  t.equal(header.toString('hex'), 'ee0401020304ee', 'writeHeader: cmd then big-endian length, nothing else touched');
});

t.test('golden bytes: every command encodes to its fixture and decodes back', async (t) => {
  const covered = new Set<number>();
  for (const c of goldenCases) {
    const hex = GOLDEN[c.name];
    t.equal(c.encode().toString('hex'), hex, `${c.name}: encoder output`);
    const bytes = fromHex(hex);
    t.equal(bytes.readUInt32BE(1), bytes.length - HEADER_SIZE, `${c.name}: length field counts the payload only`);
    const payloads: Buffer[] = [];
    const decoder = new FrameDecoder((cmd, buf, start, end) => {
      t.equal(cmd, c.cmd, `${c.name}: command byte`);
      payloads.push(buf.subarray(start, end));
    }, { isKnownCommand });
    decoder.push(bytes);
    t.equal(payloads.length, 1, `${c.name}: exactly one frame`);
    t.same(plain(decodeFor(c.cmd, payloads[0]!)), plain(c.message), `${c.name}: decoded message`);
    t.notOk(decoder.midFrame, `${c.name}: nothing left over`);
    covered.add(c.cmd);
  }
  t.same([...covered].sort((a, b) => a - b), Object.values(Cmd).sort((a, b) => a - b), 'every command has a fixture');
});

t.test('docs/PROTOCOL.md shows every golden fixture verbatim', async (t) => {
  const docs = readFileSync(docsPath, 'utf8');
  for (const [name, hex] of Object.entries(GOLDEN)) t.ok(docs.includes(hex), `${name}: ${hex}`);
  for (const [name, cmd] of Object.entries(Cmd)) {
    t.ok(docs.includes(`| ${cmd} | \`${name}\``), `command table has ${cmd} ${name}`);
  }
  for (const [name, tag] of Object.entries(SubmitOption)) {
    t.ok(docs.includes(`| ${tag} | \`${name}\``), `SUBMIT option table has tag ${tag} ${name}`);
  }
  // Every code of the library is described: wire codes in the codes table, local ones in the note under it.
  for (const code of Object.values(ErrorCode)) t.ok(docs.includes(`\`${code}\``), `error code ${code} is documented`);
});

// ---- streaming -----------------------------------------------------------------------------------------------

t.test('streaming: the same frames whatever the chunking', async (t) => {
  const parts = [
    encode(writeHello, { version: 1, role: Role.CLIENT, heartbeatMs: 0, name: 'clïent-☃', token: '' }),
    encodeKeepalive(),
    encode(writeSubmit, 1, 'ハッシュ', 'héllo wörld €𝄞'), // multi-byte UTF-8 in the type string and the body
    encode(writeReady, 4, ['sha256', 'arith', 'ünïcode']),
    encode(writeTask, 0xffffffff, 3, 'arith', Buffer.from([0, 1, 2, 255])),
    encodeKeepalive(),
    encode(writeResultOk, 9, 1, Buffer.alloc(0)),
    encode(writeResultError, 10, 1, 'E_CUSTOM', 'ça a échoué 💥'),
    encode(writeCompleted, 2, Buffer.alloc(300, 0xab)),
    encode(writeFailed, 3, 'E_HANDLER', ''),
    encode(writeError, 'E_SHUTDOWN', 'bye'),
    encode(writeSubmit, 4, 'arith', '1+1', { timeoutMs: 0xffffffff, retries: 0, backoffMs: 250 }),
    encode(writeCancel, 0xfffffffe, 0xffffffff, 'E_CANCELLED', 'the client left ☃'),
  ];
  const stream = Buffer.concat(parts);
  const expected: Frame[] = parts.map((p) => ({ cmd: p[0]!, hex: p.subarray(HEADER_SIZE).toString('hex') }));
  t.ok(new Set(expected.map((f) => f.cmd)).size >= 5, 'at least 5 different commands');

  t.same(decodeChunks([stream]), expected, 'one chunk');

  let splitFailures = 0;
  for (let i = 0; i <= stream.length; i++) {
    const frames = decodeChunks(cut(stream, [i]));
    if (JSON.stringify(frames) !== JSON.stringify(expected)) {
      splitFailures++;
      t.same(frames, expected, `split at byte ${i}`);
    }
  }
  t.equal(splitFailures, 0, `every one of the ${stream.length + 1} two-chunk splits`);

  const bytes: Buffer[] = [];
  for (let i = 0; i < stream.length; i++) bytes.push(stream.subarray(i, i + 1));
  t.same(decodeChunks(bytes), expected, 'one byte at a time');

  // Each frame decodes to its message, too, after byte-at-a-time delivery (payloads were copied across chunks).
  const messages: unknown[] = [];
  const decoder = new FrameDecoder((cmd, buf, start, end) => messages.push(plain(decodeFor(cmd, buf, start, end))), { isKnownCommand });
  for (const b of bytes) decoder.push(b);
  t.same(messages[2], plain({ requestId: 1, type: 'ハッシュ', body: Buffer.from('héllo wörld €𝄞') }), 'multi-byte SUBMIT');
  t.equal(messages[1], null, 'keepalive decodes as null');
  t.same(
    messages[11],
    plain({ requestId: 4, type: 'arith', body: Buffer.from('1+1'), options: { timeoutMs: 0xffffffff, retries: 0, backoffMs: 250 } }),
    'SUBMIT with all three options',
  );
  t.same(messages[12], { taskId: 0xfffffffe, attempt: 0xffffffff, code: 'E_CANCELLED', message: 'the client left ☃' }, 'CANCEL');

  property(
    t,
    'random chunkings',
    fc.property(fc.array(fc.integer({ min: 0, max: stream.length }), { maxLength: 40 }), (points) => {
      const frames = decodeChunks(cut(stream, points));
      if (JSON.stringify(frames) !== JSON.stringify(expected)) throw new Error(`frames differ for cuts ${points.join(',')}`);
    }),
    300,
  );
});

// ---- properties ----------------------------------------------------------------------------------------------

const u32 = fc.integer({ min: 0, max: 0xffffffff });
// Well-formed Unicode (any code point, no lone surrogates), kept short; byte length stays far below the u16 limit.
const text = fc.string({ unit: 'binary', maxLength: 24 });
const body = fc.uint8Array({ maxLength: 64 });

interface Generated {
  frame: Buffer;
  cmd: number;
  message: unknown;
  /** Writes the same frame in place into a writer. */
  write: (w: FrameWriter) => void;
}

function generated<A extends unknown[]>(
  cmd: number,
  message: unknown,
  write: (w: FrameWriter, ...args: A) => void,
  ...args: NoInfer<A>
): Generated {
  return { frame: encode(write, ...args), cmd, message, write: (w) => write(w, ...args) };
}

const genHello = fc
  .record({
    version: fc.constantFrom(OLDEST_VERSION, PROTOCOL_VERSION),
    role: fc.constantFrom(Role.CLIENT, Role.WORKER, Role.SCHEDULER),
    heartbeatMs: u32,
    name: text,
    token: text,
    settings: fc.record({ maxPayload: u32 }, { requiredKeys: [] }),
  })
  .map((m) => {
    const message = m.version === 1 ? { ...m, settings: undefined } : m;
    return generated(Cmd.HELLO, plainHello(message), writeHello, m);
  });
const genKeepalive = fc.constant<Generated>({
  frame: encodeKeepalive(),
  cmd: Cmd.HELLO,
  message: null,
  write: (w) => w.append(encodeKeepalive()),
});
/** Any subset of the SUBMIT options (keys in random order, absent keys sometimes present as undefined), or none. */
const submitOptions = fc.option(
  fc
    .tuple(
      fc.record({ timeoutMs: u32, retries: u32, backoffMs: u32 }, { requiredKeys: [] }),
      fc.shuffledSubarray(['timeoutMs', 'retries', 'backoffMs'] as const),
      fc.boolean(),
    )
    .map(([values, order, explicitUndefined]) => {
      const options: SubmitOptions = {};
      for (const key of order) if (key in values || explicitUndefined) options[key] = values[key];
      return options;
    }),
  { nil: undefined },
);

/** What decodeSubmit returns for the options given to writeSubmit: keys in tag order, undefined when none. */
function decodedOptions(options: SubmitOptions | undefined): SubmitOptions | undefined {
  const out: SubmitOptions = {};
  for (const key of ['timeoutMs', 'retries', 'backoffMs'] as const) if (options?.[key] !== undefined) out[key] = options[key];
  return Object.keys(out).length > 0 ? out : undefined;
}

const genSubmit = fc.record({ requestId: u32, type: text, body, options: submitOptions }).map((m) => {
  const message = { requestId: m.requestId, type: m.type, body: m.body, options: decodedOptions(m.options) };
  return generated(Cmd.SUBMIT, message, writeSubmit, m.requestId, m.type, m.body, m.options);
});
const genTask = fc
  .record({ taskId: u32, attempt: u32, type: text, body })
  .map((m) => generated(Cmd.TASK, m, writeTask, m.taskId, m.attempt, m.type, m.body));
const genResultOk = fc
  .record({ taskId: u32, attempt: u32, body })
  .map((m) =>
    generated(Cmd.RESULT, { taskId: m.taskId, attempt: m.attempt, ok: true, body: m.body }, writeResultOk, m.taskId, m.attempt, m.body),
  );
const genResultError = fc.record({ taskId: u32, attempt: u32, code: text, message: text }).map((m) => {
  const message = { taskId: m.taskId, attempt: m.attempt, ok: false, code: m.code, message: m.message };
  return generated(Cmd.RESULT, message, writeResultError, m.taskId, m.attempt, m.code, m.message);
});
const genCompleted = fc
  .record({ requestId: u32, body })
  .map((m) => generated(Cmd.COMPLETED, m, writeCompleted, m.requestId, m.body));
const genFailed = fc
  .record({ requestId: u32, code: text, message: text })
  .map((m) => generated(Cmd.FAILED, m, writeFailed, m.requestId, m.code, m.message));
const genError = fc.record({ code: text, message: text }).map((m) => generated(Cmd.ERROR, m, writeError, m.code, m.message));
const genReady = fc
  .record({ concurrency: u32, types: fc.array(text, { maxLength: 6 }) })
  .map((m) => generated(Cmd.READY, m, writeReady, m.concurrency, m.types));
const genCancel = fc
  .record({ taskId: u32, attempt: u32, code: text, message: text })
  .map((m) => generated(Cmd.CANCEL, m, writeCancel, m.taskId, m.attempt, m.code, m.message));

const generators = {
  HELLO: genHello,
  keepalive: genKeepalive,
  SUBMIT: genSubmit,
  TASK: genTask,
  'RESULT ok': genResultOk,
  'RESULT error': genResultError,
  COMPLETED: genCompleted,
  FAILED: genFailed,
  ERROR: genError,
  READY: genReady,
  CANCEL: genCancel,
};
const anyFrame = fc.oneof(...Object.values(generators));

/** Decodes a single encoded frame through a FrameDecoder and the matching decodeX. */
function roundTrip(g: Generated): void {
  if (g.frame[0] !== g.cmd) throw new Error(`command byte ${g.frame[0]}, expected ${g.cmd}`);
  if (g.frame.readUInt32BE(1) !== g.frame.length - HEADER_SIZE) throw new Error('length field does not match the payload');
  const payloads: Buffer[] = [];
  new FrameDecoder((_cmd, buf, start, end) => payloads.push(buf.subarray(start, end)), { isKnownCommand }).push(g.frame);
  if (payloads.length !== 1) throw new Error(`${payloads.length} frames`);
  const got = JSON.stringify(plain(decodeFor(g.cmd, payloads[0]!)));
  const want = JSON.stringify(plain(g.message));
  if (got !== want) throw new Error(`decoded ${got}, expected ${want}`);
}

t.test('properties: every encoder -> decoder round trip returns its input', async (t) => {
  for (const [name, gen] of Object.entries(generators)) {
    property(t, name, fc.property(gen, roundTrip), name === 'keepalive' ? 1 : 300);
  }
});

t.test('properties: a stream of arbitrary frames, re-chunked arbitrarily, decodes to the same sequence', async (t) => {
  property(
    t,
    'arbitrary frame streams',
    fc.property(
      fc.array(anyFrame, { maxLength: 25 }),
      fc.array(fc.integer({ min: 0, max: 1 << 16 }), { maxLength: 30 }),
      (generated, rawPoints) => {
        const stream = Buffer.concat(generated.map((g) => g.frame));
        const points = rawPoints.map((p) => p % (stream.length + 1));
        const frames = decodeChunks(cut(stream, points));
        if (frames.length !== generated.length) throw new Error(`${frames.length} frames, expected ${generated.length}`);
        frames.forEach((f, i) => {
          const g = generated[i]!;
          if (f.cmd !== g.cmd) throw new Error(`frame ${i}: command ${f.cmd}, expected ${g.cmd}`);
          const got = JSON.stringify(plain(decodeFor(f.cmd, fromHex(f.hex))));
          const want = JSON.stringify(plain(g.message));
          if (got !== want) throw new Error(`frame ${i}: decoded ${got}, expected ${want}`);
        });
      },
    ),
    300,
  );
});

t.test('SUBMIT options: tag order, count, type offset, value range', async (t) => {
  const keys = ['timeoutMs', 'retries', 'backoffMs'] as const;
  const tagOf = { timeoutMs: SubmitOption.TIMEOUT_MS, retries: SubmitOption.RETRIES, backoffMs: SubmitOption.BACKOFF_MS };
  const plainSubmit = encode(writeSubmit, 5, 'sha256', 'x').toString('hex');
  t.equal(encode(writeSubmit, 5, 'sha256', 'x', {}).toString('hex'), plainSubmit, '{} encodes as no options (count 0)');
  t.equal(
    encode(writeSubmit, 5, 'sha256', 'x', { timeoutMs: undefined, retries: undefined }).toString('hex'),
    plainSubmit,
    'options that are all undefined encode as no options',
  );
  t.equal(decodeSubmit(fromHex(plainSubmit).subarray(HEADER_SIZE)).options, undefined, 'count 0 decodes as options undefined');
  t.equal(
    encode(writeSubmit, 42, 'sha256', 'Hello', { timeoutMs: 30000, retries: 2, backoffMs: undefined }).toString('hex'),
    GOLDEN.SUBMIT_OPTIONS,
    'an undefined option is left out',
  );
  t.same(
    decodeSubmit(fromHex('00000001' + '03' + '0100000000' + '02ffffffff' + '0300000000' + '0000')).options,
    { timeoutMs: 0, retries: 0xffffffff, backoffMs: 0 },
    'values 0 and 0xffffffff are carried as they are (0 means "the scheduler\'s default" to the scheduler, not to the codec)',
  );
  for (const bad of [-1, 2 ** 32]) {
    t.throws(() => encode(writeSubmit, 1, 't', '', { retries: bad }), RangeError, `option value ${bad}: RangeError`);
  }
  for (const bad of [-(2 ** 31) - 1, 2 ** 31]) {
    t.throws(() => encode(writeSubmit, 1, 't', '', { priority: bad }), RangeError, `priority ${bad}: RangeError (a signed 32-bit integer)`);
  }

  property(
    t,
    'the encoder writes count = present options, tags ascending, and the type right after them',
    fc.property(fc.record({ requestId: u32, type: text, body, options: submitOptions }), (m) => {
      const payload = encode(writeSubmit, m.requestId, m.type, m.body, m.options).subarray(HEADER_SIZE);
      const present = keys.filter((k) => m.options?.[k] !== undefined);
      if (payload[4] !== present.length) throw new Error(`count ${payload[4]}, expected ${present.length}`);
      present.forEach((key, i) => {
        const at = 5 + 5 * i;
        if (payload[at] !== tagOf[key]) throw new Error(`option ${i}: tag ${payload[at]}, expected ${tagOf[key]}`);
        if (payload.readUInt32BE(at + 1) !== m.options![key]) throw new Error(`option ${i}: wrong value`);
      });
      const typeAt = 5 + 5 * present.length;
      const typeLen = Buffer.byteLength(m.type);
      if (payload.readUInt16BE(typeAt) !== typeLen) throw new Error(`type length not at offset ${typeAt}`);
      if (payload.subarray(typeAt + 2, typeAt + 2 + typeLen).toString('utf8') !== m.type) throw new Error('type bytes');
      if (payload.length !== 7 + 5 * present.length + typeLen + m.body.length) throw new Error('payload length');
    }),
    300,
  );

  property(
    t,
    'the decoder accepts the options in any order',
    fc.property(
      fc.shuffledSubarray([...keys], { minLength: 1 }),
      fc.tuple(u32, u32, u32),
      (order, [a, b, c]) => {
        const values = { timeoutMs: a, retries: b, backoffMs: c };
        const options = order.map((key) => {
          const o = Buffer.alloc(5);
          o[0] = tagOf[key];
          o.writeUInt32BE(values[key], 1);
          return o;
        });
        const payload = Buffer.concat([fromHex('00000009'), Buffer.from([order.length]), ...options, fromHex('0001' + '74' + 'beef')]);
        const got = decodeSubmit(payload);
        const want = decodedOptions(Object.fromEntries(order.map((k) => [k, values[k]])));
        // decodedOptions() puts the keys in tag order, so the comparison ignores the order they were decoded in.
        const gotOptions = JSON.stringify(decodedOptions(got.options));
        if (got.options === undefined || gotOptions !== JSON.stringify(want)) throw new Error(`${gotOptions} != ${JSON.stringify(want)}`);
        if (got.type !== 't' || payload.toString('hex', got.bodyStart, got.bodyEnd) !== 'beef' || got.requestId !== 9) {
          throw new Error('other fields');
        }
      },
    ),
    200,
  );
});

t.test('truncation at every byte: fixed fields and str16 are E_PROTOCOL, a shorter rest field still decodes', async (t) => {
  const cases = [
    // [golden, decoder, offset where the last (rest) field starts]
    ['SUBMIT', decodeSubmit, 4 + 1 + 2 + 6],
    ['SUBMIT_OPTIONS', decodeSubmit, 4 + 1 + 10 + 2 + 6],
    ['CANCEL', decodeCancel, 4 + 4 + 2 + 9],
    ['TASK', decodeTask, 4 + 4 + 2 + 5],
  ] as const;
  for (const [name, decode, restAt] of cases) {
    const payload = fromHex(GOLDEN[name]).subarray(HEADER_SIZE);
    let rejected = 0;
    let decoded = 0;
    for (let n = 0; n < payload.length; n++) {
      const short = payload.subarray(0, n);
      if (n < restAt) {
        try {
          (decode as (p: Buffer) => unknown)(short);
          t.fail(`${name} cut to ${n} bytes decoded`);
        } catch (err) {
          if ((err as ProtocolError).code === ErrorCode.PROTOCOL) rejected++;
          else t.fail(`${name} cut to ${n} bytes: ${String(err)}`);
        }
      } else {
        (decode as (p: Buffer) => unknown)(short);
        decoded++;
      }
    }
    t.equal(rejected, restAt, `${name}: all ${restAt} cuts before the last field are E_PROTOCOL`);
    t.equal(decoded, payload.length - restAt, `${name}: the ${payload.length - restAt} cuts inside the last field decode`);
  }
});

t.test('strings: up to 65535 UTF-8 bytes fit a str16; more is refused by the encoder', async (t) => {
  const longest = 'é'.repeat(32767) + 'x'; // 65535 bytes
  const frame = encode(writeSubmit, 1, longest, 'b');
  const payloads: Buffer[] = [];
  new FrameDecoder((_cmd, buf, start, end) => payloads.push(buf.subarray(start, end)), { isKnownCommand }).push(frame);
  t.equal(decodeSubmit(payloads[0]!).type, longest, '65535-byte type round trips');
  t.throws(() => encode(writeSubmit, 1, longest + 'x', 'b'), RangeError, '65536 bytes: RangeError before anything is sent');
  t.throws(() => encode(writeReady, 1, [longest + 'x']), RangeError, 'READY type over the limit: RangeError');
  t.throws(() => encode(writeCancel, 1, 1, longest + 'x', ''), RangeError, 'CANCEL code over the limit: RangeError');
  const withOptions = encode(writeSubmit, 1, longest, 'b', { timeoutMs: 1, retries: 2, backoffMs: 3 });
  t.same(decodeSubmit(withOptions.subarray(HEADER_SIZE)).options, { timeoutMs: 1, retries: 2, backoffMs: 3 }, 'and with options');
});

// ---- FrameWriter ---------------------------------------------------------------------------------------------

/** A COMPLETED frame with an n-byte body: a frame of n + 9 bytes whose bytes tell where it came from. */
function completed(requestId: number, n: number): Generated {
  const bytes = Buffer.alloc(n, requestId % 251);
  return generated(Cmd.COMPLETED, { requestId, body: bytes }, writeCompleted, requestId, bytes);
}

t.test('FrameWriter: turns of frames written in place come out byte-identical, in order, and never change', async (t) => {
  // Mostly small frames of every kind (dozens per turn make the slab grow), now and then one past the cap.
  const large = fc.integer({ min: MAX_SLAB - 64, max: 2 * MAX_SLAB }).map((n) => completed(n, n));
  const turns = fc.array(fc.array(fc.oneof({ weight: 60, arbitrary: anyFrame }, { weight: 1, arbitrary: large }), { maxLength: 80 }), {
    minLength: 1,
    maxLength: 30,
  });
  const seen = { replacedWithPending: 0, overCap: 0, sharedSlab: 0 };
  property(
    t,
    'every turn',
    fc.property(turns, (turns) => {
      const w = new FrameWriter();
      const taken: { view: Buffer; copy: Buffer }[] = [];
      for (const turn of turns) {
        for (const g of turn) {
          const before = w.buf;
          const pending = w.length;
          g.write(w);
          if (w.buf !== before && pending > 0) seen.replacedWithPending++;
          if (w.buf.length > MAX_SLAB) seen.overCap++;
        }
        const expected = Buffer.concat(turn.map((g) => g.frame));
        if (w.length !== expected.length) throw new Error(`length ${w.length}, expected ${expected.length}`);
        const view = w.take();
        if (turn.length === 0) {
          if (view !== null) throw new Error('an empty turn took bytes');
          continue;
        }
        if (!view || !view.equals(expected)) throw new Error('a turn came out different from its frames');
        if (taken.length > 0 && taken.at(-1)!.view.buffer === view.buffer) seen.sharedSlab++;
        taken.push({ view, copy: Buffer.from(view) });
        if (w.length !== 0 || w.take() !== null) throw new Error('take() left bytes behind');
      }
      taken.forEach(({ view, copy }, i) => {
        if (!view.equals(copy)) throw new Error(`turn ${i} was written over after it was taken`);
      });
    }),
    150,
  );
  t.ok(seen.replacedWithPending > 0, `slabs were replaced with bytes pending: ${seen.replacedWithPending}`);
  t.ok(seen.overCap > 0, `frames past the cap were written: ${seen.overCap}`);
  t.ok(seen.sharedSlab > 0, `turns followed each other in one slab: ${seen.sharedSlab}`);
});

t.test('FrameWriter: a taken view survives later writes into its slab and the slab being replaced', async (t) => {
  const w = new FrameWriter();
  const first = completed(1, 200);
  first.write(w);
  const slab = w.buf;
  const view = w.take()!;
  t.ok(view.equals(first.frame), 'the first turn');
  t.equal(w.buf, slab, 'a 209-byte turn keeps its 1 KiB slab for the next turns');
  const next: Generated[] = [];
  let inSameSlab = 0;
  while (w.buf === slab) {
    const g = completed(next.length + 2, 100);
    g.write(w);
    next.push(g);
    if (w.buf === slab) inSameSlab++;
    t.ok(view.equals(first.frame), `unchanged after frame ${next.length}`);
  }
  t.ok(inSameSlab >= 5, `${inSameSlab} frames were written after the view in its own slab`);
  t.not(w.buf, slab, 'then the slab was replaced');
  t.ok(w.take()!.equals(Buffer.concat(next.map((g) => g.frame))), 'the second turn: every frame, the pending ones copied over');
  t.ok(view.equals(first.frame), 'the first view is unchanged');
});

t.test('FrameWriter: frames larger than the cap', async (t) => {
  const small = completed(1, 10);
  const big = completed(2, 3 * MAX_SLAB);
  const w = new FrameWriter();
  small.write(w);
  big.write(w);
  t.equal(w.buf.length, small.frame.length + big.frame.length, 'one slab of exactly the pending bytes and the large frame');
  t.ok(w.take()!.equals(Buffer.concat([small.frame, big.frame])), 'both frames, in order');
  t.equal(w.buf.length, 0, 'the oversized slab is let go once taken');
  small.write(w);
  t.equal(w.buf.length, MAX_SLAB, 'the next turn gets a slab at the cap, not an oversized one');
  w.take();
  small.write(w);
  t.equal(w.buf.length, MIN_SLAB, 'and after that small turn, the smallest');
  w.take();

  // Large frames piling up in one turn: each new slab at least doubles, so the copies stay linear.
  const frames = Array.from({ length: 10 }, (_, i) => completed(i, 100_000));
  const slabs = new Set<Buffer>();
  for (const g of frames) {
    g.write(w);
    slabs.add(w.buf);
  }
  t.ok(slabs.size <= 5, `10 frames of 100 kB in one turn took ${slabs.size} slabs`);
  t.ok(w.take()!.equals(Buffer.concat(frames.map((g) => g.frame))), 'all ten, in order');

  const exact = encode(writeCompleted, 7, Buffer.alloc(3 * MAX_SLAB, 1));
  t.equal(exact.length, 3 * MAX_SLAB + 9, 'encode() of a large frame: exactly its size');
  t.equal(exact.buffer.byteLength, exact.length, 'in memory of its own');
});

t.test('FrameWriter: slabs grow with busy turns, stay under the cap, and are let go after small turns', async (t) => {
  const w = new FrameWriter();
  const keepalive = encodeKeepalive();
  w.append(keepalive);
  t.equal(w.buf.length, MIN_SLAB, 'the first slab is the smallest');
  w.take();
  t.equal(w.buf.length, 0, 'a 5-byte turn holds no slab afterwards');

  // Busy turns of about 20 kB each (200 frames of 109 bytes).
  const frame = completed(1, 100);
  let peak = 0;
  for (let turn = 0; turn < 20; turn++) {
    for (let i = 0; i < 200; i++) frame.write(w);
    peak = Math.max(peak, w.buf.length);
    w.take();
  }
  t.equal(peak, MAX_SLAB, 'busy turns grow the slab to the cap and not past it');
  t.ok(w.buf.length > 0, 'and a busy connection keeps its slab between turns');

  w.append(keepalive);
  w.take();
  t.equal(w.buf.length, 0, 'one keepalive turn lets the 64 KiB slab go');
  w.append(keepalive);
  t.equal(w.buf.length, MIN_SLAB, 'and the next small turn gets the smallest slab, not a large one');
  w.take();

  // Steady 3 kB turns settle on a slab that holds a few of them.
  const sizes: number[] = [];
  for (let turn = 0; turn < 20; turn++) {
    for (let i = 0; i < 30; i++) frame.write(w);
    sizes.push(w.buf.length);
    w.take();
  }
  t.same(sizes.slice(-5), [16384, 16384, 16384, 16384, 16384], `3 kB turns settle on 16 KiB slabs: ${sizes.join(' ')}`);

  // Many connections that were busy once and then only kept alive hold nothing.
  const writers = Array.from({ length: 10_000 }, () => new FrameWriter());
  for (const c of writers) {
    for (let i = 0; i < 40; i++) frame.write(c);
    c.take();
  }
  const busy = writers.reduce((sum, c) => sum + c.buf.length, 0);
  for (const c of writers) {
    c.append(keepalive);
    c.take();
  }
  const idle = writers.reduce((sum, c) => sum + c.buf.length, 0);
  t.ok(busy >= 10_000 * 4096, `after a 4 kB turn each: ${busy} bytes of slabs`);
  t.equal(idle, 0, 'after a keepalive turn each: none');
});

t.test('FrameWriter: rewind() starts the slab over only when nothing is pending', async (t) => {
  const w = new FrameWriter();
  const a = completed(1, 300);
  a.write(w);
  const slab = w.buf;
  t.ok(w.take()!.equals(a.frame), 'the first turn');
  const b = completed(2, 300);
  b.write(w);
  w.rewind();
  t.equal(w.length, b.frame.length, 'with bytes pending, rewind() changes nothing');
  const second = w.take()!;
  t.equal(second.byteOffset - slab.byteOffset, a.frame.length, 'the second turn went after the first');
  t.ok(second.equals(b.frame), 'and is intact');
  w.rewind();
  const c = completed(3, 300);
  c.write(w);
  t.equal(w.buf, slab, 'same slab');
  const third = w.take()!;
  t.equal(third.byteOffset, slab.byteOffset, 'after rewind() with nothing pending, the next turn starts at the slab\'s start');
  t.ok(third.equals(c.frame), 'and is intact');
});

t.test('FrameWriter: clear() drops what was not taken, nothing else', async (t) => {
  const w = new FrameWriter();
  const a = completed(1, 300);
  const b = completed(2, 20);
  a.write(w);
  const view = w.take()!;
  completed(3, 50).write(w);
  w.clear();
  t.equal(w.length, 0, 'nothing pending after clear()');
  t.equal(w.take(), null, 'and nothing to take');
  b.write(w);
  t.ok(w.take()!.equals(b.frame), 'the next frame comes out alone');
  t.ok(view.equals(a.frame), 'the view taken before is intact');
});

// ---- rejections ----------------------------------------------------------------------------------------------

function header(cmd: number, length: number): Buffer {
  const out = Buffer.alloc(HEADER_SIZE);
  writeHeader(out, 0, cmd, length);
  return out;
}

t.test('frame rejections', async (t) => {
  t.test('a length above maxPayload is refused as soon as the header is complete', async (t) => {
    const { decoder, frames } = recorder(1024);
    throwsCode(t, () => decoder.push(header(Cmd.SUBMIT, 1025)), ErrorCode.FRAME_TOO_LARGE, 'header alone (1025 > 1024)');
    t.equal(frames.length, 0);
    t.equal(decoder.bufferedBytes, 0, 'nothing kept');

    const split = recorder(1024);
    const h = header(Cmd.SUBMIT, 0x7fffffff);
    split.decoder.push(h.subarray(0, 4));
    t.equal(split.decoder.bufferedBytes, 4, 'four header bytes: still waiting, no verdict');
    throwsCode(t, () => split.decoder.push(h.subarray(4)), ErrorCode.FRAME_TOO_LARGE, 'fifth header byte');

    const edge = recorder(1024);
    edge.decoder.push(header(Cmd.COMPLETED, 1024));
    t.ok(edge.decoder.midFrame, 'a length equal to maxPayload is accepted');
  });

  t.test('default maxPayload: 16 MiB accepted, 16 MiB + 1 refused', async (t) => {
    const mib16 = 16 * 1024 * 1024;
    const ok = recorder();
    ok.decoder.push(header(Cmd.SUBMIT, mib16));
    t.ok(ok.decoder.midFrame, '16 MiB header accepted; waiting for the payload');
    t.equal(ok.frames.length, 0);
    ok.decoder.push(Buffer.alloc(mib16));
    t.equal(ok.frames.length, 1, 'the 16 MiB payload is delivered');
    t.equal(ok.frames[0]!.hex.length, mib16 * 2);

    const big = recorder();
    throwsCode(t, () => big.decoder.push(header(Cmd.SUBMIT, mib16 + 1)), ErrorCode.FRAME_TOO_LARGE, '16 MiB + 1');
    const max = recorder();
    throwsCode(t, () => max.decoder.push(header(Cmd.SUBMIT, 0xffffffff)), ErrorCode.FRAME_TOO_LARGE, '0xffffffff');
  });

  t.test('unknown command bytes are protocol errors', async (t) => {
    for (const cmd of [0, 19, 255]) {
      const { decoder, frames } = recorder();
      throwsCode(t, () => decoder.push(header(cmd, 0)), ErrorCode.PROTOCOL, `command ${cmd}`);
      t.equal(frames.length, 0);
    }
    // The command is checked before the length: an unknown command with a huge length is E_PROTOCOL.
    throwsCode(t, () => recorder().decoder.push(header(19, 0xffffffff)), ErrorCode.PROTOCOL, 'unknown command, huge length');
  });

  t.test('after an error the decoder ignores all further input', async (t) => {
    const { decoder, frames } = recorder();
    const good = encode(writeSubmit, 1, 'sha256', 'x');
    // One good frame, then a bad header, then another good frame, all in one chunk.
    throwsCode(t, () => decoder.push(Buffer.concat([good, header(0, 0), good])), ErrorCode.PROTOCOL, 'bad frame mid-chunk');
    t.equal(frames.length, 1, 'the frame before the error was delivered');
    t.doesNotThrow(() => decoder.push(Buffer.concat([good, good, header(255, 0)])), 'later input neither throws');
    t.equal(frames.length, 1, '... nor delivers anything');
    t.equal(decoder.bufferedBytes, 0);

    const tooLarge = recorder(16);
    throwsCode(t, () => tooLarge.decoder.push(header(Cmd.TASK, 17)), ErrorCode.FRAME_TOO_LARGE, 'oversized');
    tooLarge.decoder.push(Buffer.concat([Buffer.alloc(17), good]));
    t.equal(tooLarge.frames.length, 0, 'nothing delivered after E_FRAME_TOO_LARGE');
  });

  t.test('stop() drops buffered frames and ignores later input', async (t) => {
    const { decoder, frames } = recorder();
    const good = encode(writeCompleted, 1, 'x');
    decoder.push(good.subarray(0, 7));
    decoder.stop();
    decoder.push(good.subarray(7));
    decoder.push(good);
    t.equal(frames.length, 0);
    t.equal(decoder.bufferedBytes, 0);
  });
});

t.test('message rejections: inner lengths and values that do not fit are E_PROTOCOL', async (t) => {
  const P = ErrorCode.PROTOCOL;
  const cases: Array<[string, () => unknown]> = [
    // SUBMIT: request id 1, no options, type length 300 (0x012c) but only "abc" follows
    ['SUBMIT type length 300, 3 bytes follow', () => decodeSubmit(fromHex('00000001' + '00' + '012c' + '616263'))],
    ['SUBMIT shorter than its request id', () => decodeSubmit(fromHex('000000'))],
    ['SUBMIT without an option count', () => decodeSubmit(fromHex('00000001'))],
    ['SUBMIT without a type length', () => decodeSubmit(fromHex('00000001' + '00'))],
    ['SUBMIT half a type length', () => decodeSubmit(fromHex('00000001' + '00' + '00'))],
    ['SUBMIT type not valid UTF-8', () => decodeSubmit(fromHex('00000001' + '00' + '0002' + 'fffe' + '78'))],
    ['SUBMIT type overlong UTF-8', () => decodeSubmit(fromHex('00000001' + '00' + '0002' + 'c0af'))],
    ['SUBMIT type UTF-8-encoded surrogate', () => decodeSubmit(fromHex('00000001' + '00' + '0003' + 'eda080'))],
    ['SUBMIT type truncated multi-byte sequence', () => decodeSubmit(fromHex('00000001' + '00' + '0002' + 'e282'))],
    ['SUBMIT type not valid UTF-8 after options', () => decodeSubmit(fromHex('00000001' + '01' + '0200000001' + '0001' + '80'))],
    // Option tags: 1-3 are defined; any other is E_PROTOCOL even when the rest of the payload is well formed.
    ['SUBMIT unknown option tag 0', () => decodeSubmit(fromHex('00000001' + '01' + '0000000001' + '0001' + '74'))],
    ['SUBMIT option tag 4 from a peer of version 2', () => decodeSubmit(fromHex('00000001' + '01' + '0400000001' + '0001' + '74'), 0, 13, 2)],
    ['SUBMIT unknown option tag 9', () => decodeSubmit(fromHex('00000001' + '01' + '0900000001' + '0001' + '74'))],
    ['SUBMIT DETACH of 2', () => decodeSubmit(fromHex('00000001' + '01' + '0600000002' + '0001' + '74'))],
    ['SUBMIT unknown option tag 255', () => decodeSubmit(fromHex('00000001' + '01' + 'ff00000001' + '0001' + '74'))],
    ['SUBMIT unknown tag after a valid one', () => decodeSubmit(fromHex('00000001' + '02' + '0100007530' + '0900000000' + '0001' + '74'))],
    // Option counts larger than the options present: the decoder runs into the type field or the end.
    ['SUBMIT option count 1, nothing follows', () => decodeSubmit(fromHex('00000001' + '01'))],
    ['SUBMIT option count 1, value cut short', () => decodeSubmit(fromHex('00000001' + '01' + '01000075'))],
    ['SUBMIT option count 2, 1 option, nothing else', () => decodeSubmit(fromHex('00000001' + '02' + '0100007530'))],
    ['SUBMIT option count 3, golden with 2 options', () => decodeSubmit(fromHex('0000002a' + '03' + GOLDEN.SUBMIT_OPTIONS.slice(20)))],
    ['SUBMIT option count 255, golden with 2 options', () => decodeSubmit(fromHex('0000002a' + 'ff' + GOLDEN.SUBMIT_OPTIONS.slice(20)))],
    ['SUBMIT option count 1, no-option golden', () => decodeSubmit(fromHex('0000002a' + '01' + GOLDEN.SUBMIT.slice(20)))],
    // ... and one smaller: the second option's tag byte is read as the first byte of the type length (0x0200).
    ['SUBMIT option count 1, golden with 2 options', () => decodeSubmit(fromHex('0000002a' + '01' + GOLDEN.SUBMIT_OPTIONS.slice(20)))],
    // An old-layout SUBMIT (no option count): "sha256"'s length 0x0006 reads as count 0, then length 0x0673.
    ['SUBMIT in the layout without options', () => decodeSubmit(fromHex('0000002a' + '0006' + '736861323536' + '48656c6c6f'))],
    // CANCEL: task id, attempt, code str16, then the message (rest).
    ['CANCEL empty payload', () => decodeCancel(Buffer.alloc(0))],
    ['CANCEL shorter than its task id', () => decodeCancel(fromHex('000007'))],
    ['CANCEL without an attempt', () => decodeCancel(fromHex('00000007'))],
    ['CANCEL attempt cut short', () => decodeCancel(fromHex('00000007' + '000002'))],
    ['CANCEL without a code length', () => decodeCancel(fromHex('00000007' + '00000002'))],
    ['CANCEL code length past the end', () => decodeCancel(fromHex('00000007' + '00000002' + '0009' + '455f54'))],
    ['CANCEL code not valid UTF-8', () => decodeCancel(fromHex('00000007' + '00000002' + '0002' + 'c328'))],
    ['CANCEL message not valid UTF-8', () => decodeCancel(fromHex('00000007' + '00000002' + '0001' + '45' + 'e28228'))],
    ['TASK empty payload', () => decodeTask(Buffer.alloc(0))],
    ['TASK type length past the end', () => decodeTask(fromHex('00000001' + '00000001' + '0005' + '6172'))],
    ['TASK type not valid UTF-8', () => decodeTask(fromHex('00000001' + '00000001' + '0001' + '80'))],
    // READY: concurrency 1, count 5, one type "a"
    ['READY count 5, 1 type present', () => decodeReady(fromHex('00000001' + '0005' + '0001' + '61'))],
    ['READY trailing byte', () => decodeReady(fromHex('00000001' + '0001' + '0001' + '61' + '00'))],
    ['READY type not valid UTF-8', () => decodeReady(fromHex('00000001' + '0001' + '0001' + 'ff'))],
    ['READY without a count', () => decodeReady(fromHex('00000001'))],
    ['HELLO role 0', () => decodeHello(fromHex('01' + '00' + '00000000' + '0000' + '0000'))],
    ['HELLO role 4', () => decodeHello(fromHex('01' + '04' + '00000000' + '0000' + '0000'))],
    ['HELLO trailing byte', () => decodeHello(fromHex(GOLDEN.HELLO_WORKER.slice(10) + '00'))],
    ['HELLO missing token', () => decodeHello(fromHex('01' + '02' + '00000000' + '0002' + '7731'))],
    ['HELLO one byte', () => decodeHello(fromHex('01'))],
    ['HELLO name not valid UTF-8', () => decodeHello(fromHex('01' + '02' + '00000000' + '0001' + 'c3' + '0000'))],
    ['RESULT status 7', () => decodeResult(fromHex('00000007' + '00000001' + '07' + '35'))],
    ['RESULT without a status', () => decodeResult(fromHex('00000007' + '00000001'))],
    ['RESULT error, code length past the end', () => decodeResult(fromHex('00000007' + '00000001' + '01' + '0009' + '455f'))],
    ['RESULT error, message not valid UTF-8', () => decodeResult(fromHex('00000007' + '00000001' + '01' + '0001' + '45' + 'ff'))],
    ['COMPLETED shorter than its request id', () => decodeCompleted(fromHex('0000'))],
    ['FAILED code length past the end', () => decodeFailed(fromHex('0000002c' + '0010' + '45'))],
    ['FAILED message not valid UTF-8', () => decodeFailed(fromHex('0000002c' + '0001' + '45' + 'c328'))],
    ['ERROR empty payload', () => decodeError(Buffer.alloc(0))],
    ['ERROR code not valid UTF-8', () => decodeError(fromHex('0001' + 'fe'))],
    ['ERROR message not valid UTF-8', () => decodeError(fromHex('0001' + '45' + 'f0288c28'))],
  ];
  for (const [what, fn] of cases) throwsCode(t, fn, P, what);

  // The goldens' payloads minus their last byte are all too short, except where the last field is opaque or free text.
  for (const name of ['HELLO_WORKER', 'HELLO_SCHEDULER', 'READY'] as const) {
    const payload = fromHex(GOLDEN[name]).subarray(HEADER_SIZE);
    const decode = name === 'READY' ? decodeReady : decodeHello;
    throwsCode(t, () => decode(payload.subarray(0, payload.length - 1)), P, `${name} missing its last byte`);
  }
});

// ---- fuzz-lite -----------------------------------------------------------------------------------------------

/** Byte soup that often looks like frames: noise, well-framed random payloads, and valid frames with one byte changed. */
const soup = fc
  .array(
    fc.oneof(
      fc.uint8Array({ maxLength: 12 }),
      fc
        .record({ cmd: fc.integer({ min: 0, max: 10 }), payload: fc.uint8Array({ maxLength: 40 }) })
        .map(({ cmd, payload }) => Buffer.concat([header(cmd, payload.length), payload])),
      fc.tuple(anyFrame, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([g, at, value]) => {
        const copy = Buffer.from(g.frame);
        copy[at % copy.length] = value;
        return copy;
      }),
      anyFrame.map((g) => g.frame),
    ),
    { maxLength: 10 },
  )
  .map((parts) => Buffer.concat(parts));

t.test('fuzz-lite: random bytes only ever raise ProtocolError, and nothing is delivered after one', async (t) => {
  const seen = { frames: 0, decoderErrors: 0, handlerErrors: 0, clean: 0 };
  property(
    t,
    'random byte streams',
    fc.property(
      soup,
      fc.array(fc.integer({ min: 0, max: 1 << 12 }), { maxLength: 12 }),
      fc.constantFrom<number | undefined>(undefined, 64),
      (bytes, rawPoints, maxPayload) => {
        let delivered = 0;
        let failed = false;
        let fromHandler = false;
        const decoder = new FrameDecoder(
          (cmd, buf, start, end) => {
            if (failed) throw new Error('a frame was delivered after an error');
            delivered++;
            try {
              decodeFor(cmd, buf, start, end);
            } catch (err) {
              fromHandler = true;
              throw err;
            }
          },
          maxPayload === undefined ? { isKnownCommand } : { isKnownCommand, maxPayload },
        );
        for (const chunk of cut(bytes, rawPoints.map((p) => p % (bytes.length + 1)))) {
          const before = delivered;
          try {
            decoder.push(chunk);
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw new Error(`non-ProtocolError thrown: ${String(err)}`);
            if (![ErrorCode.PROTOCOL, ErrorCode.FRAME_TOO_LARGE, ErrorCode.VERSION].includes(err.code as 'E_PROTOCOL')) {
              throw new Error(`unexpected code ${err.code}`);
            }
            if (failed) throw new Error('a second error after the first');
            failed = true;
            // The decoder stops itself on any error, its own or one thrown by the frame handler.
            if (fromHandler) {
              seen.handlerErrors++;
            } else {
              seen.decoderErrors++;
            }
            continue;
          }
          if (failed && delivered !== before) throw new Error('frames delivered after an error');
        }
        if (!failed) seen.clean++;
        seen.frames += delivered;
      },
    ),
    2000,
  );
  t.ok(seen.decoderErrors > 0 && seen.handlerErrors > 0 && seen.clean > 0 && seen.frames > 0, `coverage: ${JSON.stringify(seen)}`);
});

t.test('a HELLO of another version is E_VERSION whatever its layout', async (t) => {
  const future = Buffer.concat([fromHex('05' + '02' + '00000000' + '0000' + '0000'), Buffer.from('extra fields')]);
  t.throws(() => decodeHello(future), { code: ErrorCode.VERSION, message: /version 5 is not supported; this side speaks versions 1 to 4/ });
  t.throws(() => decodeHello(fromHex('00')), { code: ErrorCode.VERSION }, 'version 0');
  t.throws(() => encode(writeHello, { version: 256, role: Role.CLIENT, heartbeatMs: 0, name: '', token: '' }), RangeError);
});

t.test('an error thrown by the frame handler stops the decoder (regression: later frames were delivered)', async (t) => {
  const frames = Buffer.concat([encodeKeepalive(), encodeKeepalive(), encodeKeepalive()]);
  let delivered = 0;
  const decoder = new FrameDecoder(() => {
    delivered++;
    throw new Error('handler failed');
  }, { isKnownCommand });
  t.throws(() => decoder.push(frames), { message: 'handler failed' });
  decoder.push(encodeKeepalive());
  t.equal(delivered, 1, 'nothing delivered after the handler threw');
  t.equal(decoder.bufferedBytes, 0, 'the rest of the chunk was dropped');
});

t.test('SUBMIT with a repeated option tag is E_PROTOCOL', async (t) => {
  // request id 1, two options, both tag 1 (timeoutMs), type "a", no body
  const payload = fromHex('00000001' + '02' + '0100000064' + '01000000c8' + '0001' + '61');
  t.throws(() => decodeSubmit(payload), { code: ErrorCode.PROTOCOL });
});

t.test('a payload is handed out as a range of the chunk it arrived in; only one that straddles chunks is copied', async (t) => {
  const one = encode(writeSubmit, 1, 'sha256', 'first');
  const frames = Buffer.concat([one, encode(writeSubmit, 2, 'sha256', 'second')]);
  const got: { buf: Buffer; start: number; end: number }[] = [];
  const decoder = new FrameDecoder((_cmd, buf, start, end) => got.push({ buf, start, end }), { isKnownCommand });
  decoder.push(frames);
  t.equal(got.length, 2);
  t.ok(got.every((g) => g.buf === frames), 'both frames point into the chunk itself: no view, no copy');
  t.same(got.map((g) => [g.start, g.end]), [[HEADER_SIZE, one.length], [one.length + HEADER_SIZE, frames.length]]);
  t.same(got.map((g) => decodeSubmit(g.buf, g.start, g.end).requestId), [1, 2], 'each range decodes to its own frame');

  got.length = 0;
  const cut = one.length + HEADER_SIZE + 3; // inside the second payload
  const [head, tail] = [frames.subarray(0, cut), frames.subarray(cut)];
  decoder.push(head);
  decoder.push(tail);
  t.equal(got[0]!.buf, head, 'the first still points into its chunk');
  t.ok(got[1]!.buf !== head && got[1]!.buf !== tail && got[1]!.start === 0, 'the straddling one is a copy of its own');
  const second = decodeSubmit(got[1]!.buf, got[1]!.start, got[1]!.end);
  t.equal(second.buf.toString('utf8', second.bodyStart, second.bodyEnd), 'second');
});

t.test('decoders read buf[start, end) only: bytes around the payload are neither read nor allowed to fill it', async (t) => {
  const payload = encode(writeResultOk, 7, 1, 'digest').subarray(HEADER_SIZE);
  const framed = Buffer.concat([Buffer.from('junk!'), payload, Buffer.from('more junk')]);
  const result = decodeResult(framed, 5, 5 + payload.length);
  t.ok(result.ok && framed.toString('utf8', result.bodyStart, result.bodyEnd) === 'digest', 'the body range stops at the end given');
  t.same([result.taskId, result.attempt], [7, 1]);
  // A SUBMIT cut short inside a larger buffer is too short, though the buffer has bytes after its end.
  const submit = encode(writeSubmit, 3, 'sha256', 'x').subarray(HEADER_SIZE);
  const inside = Buffer.concat([submit, Buffer.alloc(64, 0x61)]);
  throwsCode(t, () => decodeSubmit(inside, 0, 8), ErrorCode.PROTOCOL, 'SUBMIT cut inside its job type');
  t.equal(decodeSubmit(inside, 0, submit.length).type, 'sha256', 'and whole, it decodes');
  t.throws(() => decodeSubmit(inside, 4, inside.length + 1), RangeError, 'a range outside the buffer is a bug: RangeError');
});

// ---- skipping, assembly and the read budget --------------------------------------------------------------------

t.test('an oversized SUBMIT, TASK, RESULT or COMPLETED is skipped, keeping only its ids; the stream goes on', async (t) => {
  const delivered: string[] = [];
  const skipped: { cmd: number; head: string; length: number }[] = [];
  const decoder = new FrameDecoder((cmd, buf, start, end) => delivered.push(`${cmd}:${buf.toString('hex', start, end)}`), {
    isKnownCommand,
    maxPayload: 64,
    skippable: skippedHead,
    onSkipped: (cmd, head, length) => skipped.push({ cmd, head: head.toString('hex'), length }),
  });
  const big = encode(writeSubmit, 0x01020304, 'sha256', Buffer.alloc(1000, 7));
  const next = encode(writeSubmit, 9, 'sha256', 'small');
  const stream = Buffer.concat([big, next]);
  // One byte at a time: the kept head and the skipped rest straddle every boundary there is.
  for (let i = 0; i < stream.length; i++) decoder.push(stream.subarray(i, i + 1));
  t.same(skipped, [{ cmd: Cmd.SUBMIT, head: '01020304', length: big.length - HEADER_SIZE }], 'reported once, after its last byte');
  t.equal(delivered.length, 1, 'the frame after it is delivered');
  t.equal(decoder.bufferedBytes, 0, 'nothing of it kept');
  t.same([skippedHead(Cmd.SUBMIT), skippedHead(Cmd.COMPLETED), skippedHead(Cmd.TASK), skippedHead(Cmd.RESULT)], [4, 4, 8, 8]);
  for (const cmd of [Cmd.HELLO, Cmd.READY, Cmd.ERROR, Cmd.FAILED, Cmd.CANCEL]) t.equal(skippedHead(cmd), 0, `${CMD_NAMES[cmd]} is never skipped`);

  const strict = recorder(64);
  throwsCode(t, () => strict.decoder.push(big), ErrorCode.FRAME_TOO_LARGE, 'without skippable, still fatal');
  const tooShort = new FrameDecoder(() => {}, { isKnownCommand, maxPayload: 2, skippable: skippedHead });
  throwsCode(t, () => tooShort.push(header(Cmd.SUBMIT, 3)), ErrorCode.FRAME_TOO_LARGE, 'shorter than the ids it should keep: fatal');
});

t.test('a payload that straddles reads is assembled in a buffer of its own, so no read is kept', async (t) => {
  const one = encode(writeSubmit, 1, 'x', 'a');
  const two = encode(writeSubmit, 2, 'x', Buffer.alloc(300, 1));
  const frames = Buffer.concat([one, two]);
  const got: Buffer[] = [];
  const decoder = new FrameDecoder((_cmd, buf) => got.push(buf), { isKnownCommand });
  const first = frames.subarray(0, 40);
  decoder.push(first);
  t.equal(got[0], first, 'the whole frame points into its chunk');
  t.equal(decoder.bufferedBytes, 40 - one.length - HEADER_SIZE, 'the straddling bytes so far are copied out');
  decoder.push(frames.subarray(40));
  t.equal(got.length, 2);
  t.equal(got[1]!.length, two.length - HEADER_SIZE, 'a buffer of exactly the payload, not a read');
});

t.test('the read budget: a straddling frame waits for its bytes, takes in what it holds once granted, gives them back', async (t) => {
  const { ByteBudget } = await import('../lib/transport/budget.js');
  const budget = new ByteBudget(1000, 100);
  const frame = encode(writeSubmit, 1, 'x', Buffer.alloc(700, 2)); // payload 708 bytes
  const delivered: number[] = [];
  const a = new FrameDecoder((_c, _buf, start, end) => delivered.push(end - start), { isKnownCommand, budget });
  const b = new FrameDecoder((_c, _buf, start, end) => delivered.push(end - start), { isKnownCommand, budget });
  a.push(frame.subarray(0, 200));
  t.equal(budget.used, 708, 'a reserved its whole frame');
  b.push(frame.subarray(0, 300));
  t.ok(b.waiting, 'b does not fit: it waits');
  t.equal(b.bufferedBytes, 300 - HEADER_SIZE, 'holding what it read past the header');
  b.push(frame.subarray(300, 400)); // an owner should have stopped reading; the bytes are kept anyway
  a.push(frame.subarray(200));
  t.same(delivered, [708], "a's frame delivered");
  t.equal(budget.used, 0, 'and its bytes given back');
  b.retry();
  t.notOk(b.waiting);
  t.equal(budget.used, 708, 'b has its reservation now');
  b.push(frame.subarray(400));
  t.same(delivered, [708, 708]);
  t.equal(budget.used, 0);

  const small = new FrameDecoder(() => {}, { isKnownCommand, budget });
  budget.reserve(1000);
  small.push(encode(writeSubmit, 1, 'x', Buffer.alloc(50)).subarray(0, 20));
  t.notOk(small.waiting, 'a frame under the threshold never waits');
  budget.release(1000);

  const lone = new ByteBudget(100, 0);
  const huge = new FrameDecoder(() => {}, { isKnownCommand, budget: lone });
  huge.push(frame.subarray(0, 10));
  t.notOk(huge.waiting, 'a frame larger than the whole budget is granted when nothing else is held');
  huge.stop();
  t.equal(lone.used, 0, 'stop() gives the reservation back');
});

t.test('HELLO version 2: settings after the token, unknown tags ignored', async (t) => {
  const hex =
    '02' + '01' + '00000000' + '0001' + '63' + '0000' + // version 2, client, name "c", no token
    '03' + '01' + '00001000' + '07' + 'deadbeef' + '01' + '00002000'; // 3 settings: maxPayload, unknown 7, maxPayload again
  t.same(decodeHello(fromHex(hex)), { version: 2, role: 1, heartbeatMs: 0, name: 'c', token: '', settings: { maxPayload: 0x2000 } });
  throwsCode(t, () => decodeHello(fromHex(hex + '00')), ErrorCode.PROTOCOL, 'trailing bytes after the settings');
  throwsCode(t, () => decodeHello(fromHex(hex.slice(0, -2))), ErrorCode.PROTOCOL, 'a setting cut short');
  t.equal(
    encode(writeHello, { version: 2, role: Role.CLIENT, heartbeatMs: 0, name: 'x'.repeat(0xffff), token: 'y'.repeat(0xffff) }).length - HEADER_SIZE,
    MAX_HELLO_PAYLOAD - 255 * 5,
    'the longest names and no settings stay under MAX_HELLO_PAYLOAD',
  );
});
