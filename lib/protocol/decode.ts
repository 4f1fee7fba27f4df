// Each message's decoder, bounds-checked: a field that runs past its frame is a protocol error naming the command
// and field. Short strings that repeat on nearly every frame are kept in a small cache (see decodeString).

import { isUtf8 } from 'node:buffer';
import { ErrorCode, ProtocolError } from '../errors.js';
import {
  HelloSetting,
  JOBS_VERSION,
  OLDEST_VERSION,
  PROTOCOL_VERSION,
  ResultStatus,
  Role,
  SubmitOption,
  type Accepted,
  type Cancel,
  type ClientProgress,
  type Completed,
  type Failed,
  type Failure,
  type GraphMessage,
  type GraphNodeMessage,
  type Hello,
  type HelloSettings,
  type JobRequest,
  type List,
  type Ready,
  type Reply,
  type ResultMessage,
  type Submit,
  type SubmitOptions,
  type TaskMessage,
  type WorkerProgress,
} from './commands.js';

// Each decodeX(buf, start, end) reads the payload buf[start, end) (the whole of buf by default), as a FrameDecoder
// hands it out.

const EMPTY = Buffer.alloc(0);

/**
 * A bounds-checked cursor over one payload. A field that runs past the end is a protocol error naming the
 * command and field, so a hostile length prefix can never read outside its frame.
 *
 * One instance is reused by every decode (decoding is synchronous and never nested): a cursor object per frame
 * was a measurable share of the scheduler's garbage.
 */
class Reader {
  private buf: Buffer = EMPTY;
  private offset = 0;
  /** Where the payload starts and ends in buf. */
  private start = 0;
  private end = 0;
  private what = '';

  reset(buf: Buffer, start: number, end: number, what: string): this {
    if (start < 0 || end > buf.length || start > end) throw new RangeError(`${what}: payload range ${start}..${end} is outside its buffer`);
    this.buf = buf;
    this.offset = this.start = start;
    this.end = end;
    this.what = what;
    return this;
  }

  private need(n: number, field: string): void {
    if (this.offset + n > this.end) {
      throw new ProtocolError(
        `${this.what} payload too short for ${field}: needs ${this.offset - this.start + n} bytes, has ${this.end - this.start}`,
      );
    }
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.offset++]!;
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.buf.readUInt16BE(this.offset);
    this.offset += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.buf.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }

  f64(field: string): number {
    this.need(8, field);
    const v = this.buf.readDoubleBE(this.offset);
    this.offset += 8;
    return v;
  }

  string(field: string): string {
    const n = this.u16(field);
    this.need(n, field);
    const start = this.offset;
    this.offset += n;
    return decodeString(this.buf, start, n, this.what, field);
  }

  /** The next `n` bytes as a view. */
  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    const at = this.offset;
    this.offset += n;
    return this.buf.subarray(at, at + n);
  }

  /** Where the rest of the payload starts; the read position moves to the end. */
  skipRest(): number {
    const at = this.offset;
    this.offset = this.end;
    return at;
  }

  /** The rest of the payload as a view. */
  rest(): Buffer {
    return this.buf.subarray(this.skipRest(), this.end);
  }

  restString(field: string): string {
    const start = this.skipRest();
    return decodeString(this.buf, start, this.end - start, this.what, field);
  }

  done(): void {
    if (this.offset !== this.end) {
      throw new ProtocolError(`${this.what} payload has ${this.end - this.offset} unexpected trailing bytes`);
    }
  }
}

const reader = new Reader();

/**
 * Short strings (job types, error codes) repeat on nearly every frame, so the last few are kept with their
 * bytes: a repeat is a byte comparison and returns the same string, with no UTF-8 check, no new string and no
 * view. Each new string on every SUBMIT and TASK was measurable garbage in the scheduler and the worker.
 */
const INTERN_MAX_BYTES = 64;
const interned: { bytes: Buffer; text: string }[] = [];
let internNext = 0;

/** Whether `bytes` equals buf[start, start + length): a loop, as buf.compare() is a C++ call for a few bytes. */
function sameBytes(bytes: Buffer, buf: Buffer, start: number, length: number): boolean {
  if (bytes.length !== length) return false;
  for (let i = 0; i < length; i++) if (bytes[i] !== buf[start + i]) return false;
  return true;
}

function decodeString(buf: Buffer, start: number, length: number, what: string, field: string): string {
  if (length === 0) return '';
  const short = length <= INTERN_MAX_BYTES;
  if (short) {
    for (let e = 0; e < interned.length; e++) {
      const entry = interned[e]!;
      if (sameBytes(entry.bytes, buf, start, length)) return entry.text;
    }
  }
  const bytes = buf.subarray(start, start + length);
  if (!isUtf8(bytes)) throw new ProtocolError(`${what} ${field} is not valid UTF-8`);
  const text = bytes.toString('utf8');
  if (short) {
    interned[internNext] = { bytes: Buffer.from(bytes), text };
    internNext = (internNext + 1) % 8;
  }
  return text;
}

/**
 * Returns null for the empty keepalive form. The version is checked before anything else so that a peer from a
 * later version, whose HELLO may be laid out differently, is told E_VERSION rather than E_PROTOCOL.
 */
export function decodeHello(buf: Buffer, start = 0, end = buf.length): Hello | null {
  if (end === start) return null;
  const r = reader.reset(buf, start, end, 'HELLO');
  const version = r.u8('version');
  if (version < OLDEST_VERSION || version > PROTOCOL_VERSION) {
    throw new ProtocolError(
      `protocol version ${version} is not supported; this side speaks versions ${OLDEST_VERSION} to ${PROTOCOL_VERSION}`,
      ErrorCode.VERSION,
    );
  }
  const role = r.u8('role');
  if (role !== Role.CLIENT && role !== Role.WORKER && role !== Role.SCHEDULER) {
    throw new ProtocolError(`HELLO has unknown role ${role}`);
  }
  const hello: Hello = { version, role, heartbeatMs: r.u32('heartbeat'), name: r.string('name'), token: r.string('token') };
  if (version >= 2) {
    const settings: HelloSettings = {};
    const count = r.u8('setting count');
    for (let i = 0; i < count; i++) {
      const tag = r.u8('setting tag');
      const value = r.u32('setting value');
      if (tag === HelloSetting.MAX_PAYLOAD) settings.maxPayload = value;
      else if (tag === HelloSetting.MAY_BLOCK) settings.mayBlock = value !== 0;
      // other tags: a later version's, ignored
    }
    hello.settings = settings;
  }
  r.done();
  return hello;
}

/** `version` is the sender's: tags 4 to 8 are version 3's, unknown to older peers. */
export function decodeSubmit(buf: Buffer, start = 0, end = buf.length, version = JOBS_VERSION): Submit {
  const r = reader.reset(buf, start, end, 'SUBMIT');
  const requestId = r.u32('request id');
  const count = r.u8('option count');
  const options = readOptions(count, version, 'SUBMIT');
  const type = r.string('job type');
  // TASK = task id, attempt, the same type and body: 3 bytes more than a SUBMIT without its options.
  return { requestId, type, buf, bodyStart: r.skipRest(), bodyEnd: end, options, taskLength: end - start + 3 - 5 * count };
}

/** The options of a SUBMIT or GRAPH: `count` of them at the reader's position. */
function readOptions(count: number, version: number, what: string): SubmitOptions | undefined {
  const r = reader;
  let options: SubmitOptions | undefined;
  let seen = 0;
  for (let i = 0; i < count; i++) {
    const tag = r.u8('option tag');
    const value = r.u32('option value');
    if (tag < 32 && seen & (1 << tag)) throw new ProtocolError(`${what} repeats option tag ${tag}`);
    seen |= 1 << (tag & 31);
    options ??= {};
    if (tag === SubmitOption.TIMEOUT_MS) options.timeoutMs = value;
    else if (tag === SubmitOption.RETRIES) options.retries = value;
    else if (tag === SubmitOption.BACKOFF_MS) options.backoffMs = value;
    else if (version < JOBS_VERSION) throw new ProtocolError(`${what} has unknown option tag ${tag}`);
    else if (tag === SubmitOption.PRIORITY) options.priority = value | 0;
    else if (tag === SubmitOption.DELAY_MS) options.delayMs = value;
    else if (tag === SubmitOption.DETACH) options.detach = flag(value, 'DETACH');
    else if (tag === SubmitOption.ACCEPT) options.accept = flag(value, 'ACCEPT');
    else if (tag === SubmitOption.TENANT) options.tenant = value;
    else throw new ProtocolError(`${what} has unknown option tag ${tag}`);
  }
  return options;
}

/**
 * A GRAPH (version 4). Its shape (references, cycles, limits) is the scheduler's to check; here only that every
 * field fits the frame and that nothing follows the last node. A node count the payload cannot hold is refused
 * before anything is allocated for it.
 */
export function decodeGraph(buf: Buffer, start = 0, end = buf.length): GraphMessage {
  const r = reader.reset(buf, start, end, 'GRAPH');
  const requestId = r.u32('request id');
  const options = readOptions(r.u8('option count'), PROTOCOL_VERSION, 'GRAPH');
  const count = r.u32('node count');
  // The smallest node is 8 bytes (empty type, no inputs, empty body).
  if (count * 8 > end - start) throw new ProtocolError(`GRAPH declares ${count} nodes; its payload of ${end - start} bytes cannot hold them`);
  const nodes: GraphNodeMessage[] = [];
  for (let i = 0; i < count; i++) {
    const type = r.string('job type');
    const n = r.u16('input count');
    const inputs: number[] = [];
    for (let k = 0; k < n; k++) inputs.push(r.u32('input'));
    nodes.push({ type, inputs, body: r.bytes(r.u32('body length'), 'body') });
  }
  r.done();
  return { requestId, options, nodes };
}

/** A NODE (version 4): a TASK with its inputs' results before the body. */
export function decodeNode(buf: Buffer, start = 0, end = buf.length): TaskMessage {
  const r = reader.reset(buf, start, end, 'NODE');
  const taskId = r.u32('task id');
  const attempt = r.u32('attempt');
  const type = r.string('job type');
  const n = r.u16('input count');
  const inputs: Buffer[] = [];
  for (let k = 0; k < n; k++) inputs.push(r.bytes(r.u32('input length'), 'input'));
  return { taskId, attempt, type, inputs, body: r.rest() };
}

export function decodeCancel(buf: Buffer, start = 0, end = buf.length): Cancel {
  const r = reader.reset(buf, start, end, 'CANCEL');
  return {
    taskId: r.u32('task id'),
    attempt: r.u32('attempt'),
    code: r.string('error code'),
    message: r.restString('message'),
  };
}

export function decodeTask(buf: Buffer, start = 0, end = buf.length): TaskMessage {
  const r = reader.reset(buf, start, end, 'TASK');
  return { taskId: r.u32('task id'), attempt: r.u32('attempt'), type: r.string('job type'), body: r.rest() };
}

export function decodeResult(buf: Buffer, start = 0, end = buf.length): ResultMessage {
  const r = reader.reset(buf, start, end, 'RESULT');
  const taskId = r.u32('task id');
  const attempt = r.u32('attempt');
  const status = r.u8('status');
  if (status === ResultStatus.OK) return { taskId, attempt, ok: true, buf, bodyStart: r.skipRest(), bodyEnd: end };
  if (status === ResultStatus.ERROR) {
    return { taskId, attempt, ok: false, code: r.string('error code'), message: r.restString('message') };
  }
  throw new ProtocolError(`RESULT has unknown status ${status}`);
}

export function decodeCompleted(buf: Buffer, start = 0, end = buf.length): Completed {
  const r = reader.reset(buf, start, end, 'COMPLETED');
  const requestId = r.u32('request id');
  return { requestId, buf, bodyStart: r.skipRest(), bodyEnd: end };
}

export function decodeFailed(buf: Buffer, start = 0, end = buf.length): Failed {
  const r = reader.reset(buf, start, end, 'FAILED');
  return { requestId: r.u32('request id'), code: r.string('error code'), message: r.restString('message') };
}

export function decodeError(buf: Buffer, start = 0, end = buf.length): Failure {
  const r = reader.reset(buf, start, end, 'ERROR');
  return { code: r.string('error code'), message: r.restString('message') };
}

export function decodeReady(buf: Buffer, start = 0, end = buf.length): Ready {
  const r = reader.reset(buf, start, end, 'READY');
  const concurrency = r.u32('concurrency');
  const count = r.u16('type count');
  const types: string[] = [];
  for (let i = 0; i < count; i++) types.push(r.string('job type'));
  r.done();
  return { concurrency, types };
}

function flag(value: number, name: string): boolean {
  if (value > 1) throw new ProtocolError(`SUBMIT option ${name} must be 0 or 1, got ${value}`);
  return value === 1;
}

/** A job id: a u64 on the wire, below 2^53 so that it is exact as a number. */
function jobId(r: Reader): number {
  const high = r.u32('job id');
  const low = r.u32('job id');
  if (high >= 0x20_0000) throw new ProtocolError(`job id ${(BigInt(high) << 32n) | BigInt(low)} is beyond 2^53`);
  return high * 0x1_0000_0000 + low;
}

function decodeJobFrame(what: string, buf: Buffer, start: number, end: number): JobRequest {
  const r = reader.reset(buf, start, end, what);
  const out = { requestId: r.u32('request id'), jobId: jobId(r) };
  r.done();
  return out;
}

export function decodeAccepted(buf: Buffer, start = 0, end = buf.length): Accepted {
  return decodeJobFrame('ACCEPTED', buf, start, end);
}

/** STATUS, WAIT or ABORT, named by `what`. */
export function decodeJobRequest(what: 'STATUS' | 'WAIT' | 'ABORT', buf: Buffer, start = 0, end = buf.length): JobRequest {
  return decodeJobFrame(what, buf, start, end);
}

export function decodeList(buf: Buffer, start = 0, end = buf.length): List {
  const r = reader.reset(buf, start, end, 'LIST');
  const out = { requestId: r.u32('request id'), limit: r.u32('limit'), state: r.string('state') };
  r.done();
  return out;
}

export function decodeReply(buf: Buffer, start = 0, end = buf.length): Reply {
  const r = reader.reset(buf, start, end, 'REPLY');
  return { requestId: r.u32('request id'), json: r.restString('JSON') };
}

export function decodeWorkerProgress(buf: Buffer, start = 0, end = buf.length): WorkerProgress {
  const r = reader.reset(buf, start, end, 'PROGRESS');
  const out = { taskId: r.u32('task id'), attempt: r.u32('attempt'), value: r.f64('value'), message: r.string('message') };
  r.done();
  return out;
}

export function decodeClientProgress(buf: Buffer, start = 0, end = buf.length): ClientProgress {
  const r = reader.reset(buf, start, end, 'PROGRESS');
  const out = { requestId: r.u32('request id'), jobId: jobId(r), value: r.f64('value'), message: r.string('message') };
  r.done();
  return out;
}
