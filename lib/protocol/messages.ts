// The command table and each message's binary layout: written in place into a FrameWriter, decoded from a payload.
// docs/PROTOCOL.md describes every layout byte by byte; test/protocol.test.ts pins them with golden bytes.

import { isUtf8 } from 'node:buffer';
import { ErrorCode, ProtocolError } from '../errors.js';
import { FrameWriter, HEADER_SIZE, writeHeader } from './frame.js';

/** The version this side speaks. A scheduler also answers peers of every version from OLDEST_VERSION, in theirs. */
export const PROTOCOL_VERSION = 2;
export const OLDEST_VERSION = 1;

/** Command bytes. 1-3 keep their meaning from the original design; the rest were added around them. */
export const Cmd = {
  /** scheduler -> worker: run this task. */
  TASK: 1,
  /** worker -> scheduler: the outcome of a task. */
  RESULT: 2,
  /** any direction: handshake (with a payload) or keepalive (empty payload). */
  HELLO: 3,
  /** client -> scheduler: queue a task. */
  SUBMIT: 4,
  /** scheduler -> client: a task succeeded. */
  COMPLETED: 5,
  /** scheduler -> client: a task failed. */
  FAILED: 6,
  /** any direction: a connection-level error; the sender closes the connection after it. */
  ERROR: 7,
  /** worker -> scheduler: the job types it runs and how many tasks it takes at once (its credits). */
  READY: 8,
  /** scheduler -> worker: abort a task (timed out, or its client left); the worker still answers for it. */
  CANCEL: 9,
} as const;
export type Cmd = (typeof Cmd)[keyof typeof Cmd];

export const CMD_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Cmd).map(([k, v]) => [v, k]));

export function isKnownCommand(cmd: number): boolean {
  return cmd >= Cmd.TASK && cmd <= Cmd.CANCEL;
}

export const Role = { CLIENT: 1, WORKER: 2, SCHEDULER: 3 } as const;
export type Role = (typeof Role)[keyof typeof Role];

export const ResultStatus = { OK: 0, ERROR: 1 } as const;

/** Longest UTF-8 string a u16 length prefix can carry. */
export const MAX_STRING_BYTES = 0xffff;

/**
 * Settings a HELLO of version 2 carries after its token, each a tag u8 and a value u32. Unknown tags are
 * ignored, so a later version can announce more without breaking this one.
 */
export const HelloSetting = {
  /** The largest frame payload the sender accepts: a scheduler's tells its peers what it will take. */
  MAX_PAYLOAD: 1,
  /** A worker's: 1 if its keepalives may wait for a handler (one running on its event loop may compute long), else 0. */
  MAY_BLOCK: 2,
} as const;

export interface HelloSettings {
  maxPayload?: number;
  mayBlock?: boolean;
}

/** The longest HELLO payload: version, role, heartbeat, two u16-prefixed strings and 255 settings. */
export const MAX_HELLO_PAYLOAD = 1 + 1 + 4 + 2 * (2 + MAX_STRING_BYTES) + 1 + 255 * 5;

export interface Hello {
  /** 1 or 2; version 1 has no settings. */
  version: number;
  role: Role;
  /** The sender's keepalive interval in ms; a client or worker sends 0 and follows the scheduler's. */
  heartbeatMs: number;
  /** The sender's name: a worker or client label, or the scheduler's id. */
  name: string;
  /** Shared-secret token; empty when authentication is off. */
  token: string;
  /** Version 2 only. */
  settings?: HelloSettings;
}

/** Option tags of SUBMIT; each value is a u32. Unknown tags are a protocol error. */
export const SubmitOption = {
  /** ms the task may run on a worker before it is taken back; 0 = the scheduler's default. */
  TIMEOUT_MS: 1,
  /** times a handler failure is retried. */
  RETRIES: 2,
  /** first retry delay in ms, doubled per retry; 0 = the scheduler's default. */
  BACKOFF_MS: 3,
} as const;

export interface SubmitOptions {
  timeoutMs?: number;
  retries?: number;
  backoffMs?: number;
}

/**
 * A body that a receiver forwards or converts rather than keeps (SUBMIT, RESULT and COMPLETED): it is
 * buf[bodyStart, bodyEnd) of the buffer that was decoded. No Buffer view is made for it.
 */
export interface BodyRange {
  buf: Buffer;
  bodyStart: number;
  bodyEnd: number;
}

export interface Submit extends BodyRange {
  requestId: number;
  type: string;
  options: SubmitOptions | undefined;
  /** The payload length of the TASK this SUBMIT becomes (which must fit the workers' limit too). */
  taskLength: number;
}

export interface Cancel extends Failure {
  taskId: number;
  attempt: number;
}

export interface TaskMessage {
  taskId: number;
  attempt: number;
  type: string;
  body: Buffer;
}

export type ResultMessage =
  | ({ taskId: number; attempt: number; ok: true } & BodyRange)
  | { taskId: number; attempt: number; ok: false; code: string; message: string };

export interface Completed extends BodyRange {
  requestId: number;
}

export interface Failure {
  code: string;
  message: string;
}

export interface Failed extends Failure {
  requestId: number;
}

export interface Ready {
  concurrency: number;
  types: string[];
}

// ---- encoding ------------------------------------------------------------------------------------------------

type Bytes = Buffer | Uint8Array | string;

/**
 * ASCII strings up to this many characters (job types, error codes, hex digests) and byte ranges up to this many
 * bytes are measured and copied by a loop in JavaScript: Buffer.byteLength(), buf.write() and a view for set()
 * cost more than copying a few bytes (StringBytes::Write alone was 0.1 us per task in a profile of W1's scheduler).
 */
const SHORT = 64;

/** Whether `value` is short and ASCII-only, so its UTF-8 bytes are its char codes. */
function isShortAscii(value: string): boolean {
  if (value.length > SHORT) return false;
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 0x7f) return false;
  return true;
}

function byteLength(value: Bytes): number {
  if (typeof value !== 'string') return value.length;
  return isShortAscii(value) ? value.length : Buffer.byteLength(value);
}

/** Writes bytes or a UTF-8 string at `offset`, returns the new offset. */
function writeBytes(target: Buffer, offset: number, value: Bytes, length: number): number {
  if (typeof value !== 'string') copyBytes(target, offset, value, 0, length);
  else if (length === value.length && length <= SHORT) {
    // As many UTF-8 bytes as UTF-16 units: every char is ASCII.
    for (let i = 0; i < length; i++) target[offset + i] = value.charCodeAt(i);
  } else target.write(value, offset, length, 'utf8');
  return offset + length;
}

/** Copies src[start, end) to target at `offset`; a few bytes by a loop, which costs less than the view set() needs. */
function copyBytes(target: Buffer, offset: number, src: Uint8Array, start: number, end: number): void {
  if (end - start <= SHORT) {
    for (let i = start; i < end; i++) target[offset++] = src[i]!;
  } else {
    target.set(start === 0 && end === src.length ? src : src.subarray(start, end), offset);
  }
}

function stringLength(value: string, field: string): number {
  if (isShortAscii(value)) return value.length;
  const n = Buffer.byteLength(value);
  if (n > MAX_STRING_BYTES) throw new RangeError(`${field} is ${n} bytes long; the limit is ${MAX_STRING_BYTES}`);
  return n;
}

function writeString(target: Buffer, offset: number, value: string, length: number): number {
  target.writeUInt16BE(length, offset);
  return writeBytes(target, offset + 2, value, length);
}

// Each writeX reserves its frame's exact size in a FrameWriter and fills it in place. Strings are measured (and
// refused when too long) before anything is reserved; numbers are range-checked as they are written, so callers
// pass ids and counts already known to fit, as the library's own always are.

/** Reserves a whole frame in `w` and writes its header; returns the frame's offset in `w.buf`. */
function begin(w: FrameWriter, cmd: Cmd, payloadLength: number): number {
  const at = w.reserve(HEADER_SIZE + payloadLength);
  writeHeader(w.buf, at, cmd, payloadLength);
  return at;
}

/** One message as a standalone Buffer of exactly its size: `encode(writeTask, taskId, attempt, type, body)`. */
export function encode<A extends unknown[]>(write: (w: FrameWriter, ...args: A) => void, ...args: NoInfer<A>): Buffer {
  const w = new FrameWriter({ exact: true });
  write(w, ...args);
  return w.take()!;
}

const KEEPALIVE = Buffer.alloc(HEADER_SIZE);
writeHeader(KEEPALIVE, 0, Cmd.HELLO, 0);

/** The empty HELLO frame used as a keepalive once the handshake is done. Shared; never mutate it. */
export function encodeKeepalive(): Buffer {
  return KEEPALIVE;
}

const SETTING_FIELDS = [
  ['maxPayload', HelloSetting.MAX_PAYLOAD],
  ['mayBlock', HelloSetting.MAY_BLOCK],
] as const;

/** Writes a HELLO in the layout of `hello.version`: version 1 ends at the token, version 2 adds the settings. */
export function writeHello(w: FrameWriter, hello: Hello): void {
  const nameLen = stringLength(hello.name, 'hello name');
  const tokenLen = stringLength(hello.token, 'hello token');
  const settings = hello.version >= 2 ? SETTING_FIELDS.filter(([key]) => hello.settings?.[key] !== undefined) : null;
  const at = begin(w, Cmd.HELLO, 10 + nameLen + tokenLen + (settings ? 1 + 5 * settings.length : 0));
  const out = w.buf;
  out.writeUInt8(hello.version, at + 5);
  out.writeUInt8(hello.role, at + 6);
  out.writeUInt32BE(hello.heartbeatMs, at + 7);
  let offset = writeString(out, writeString(out, at + 11, hello.name, nameLen), hello.token, tokenLen);
  if (!settings) return;
  out[offset++] = settings.length;
  for (const [key, tag] of settings) {
    const value = hello.settings![key]!;
    out[offset] = tag;
    out.writeUInt32BE(typeof value === 'boolean' ? Number(value) : value, offset + 1);
    offset += 5;
  }
}

const OPTION_FIELDS = [
  ['timeoutMs', SubmitOption.TIMEOUT_MS],
  ['retries', SubmitOption.RETRIES],
  ['backoffMs', SubmitOption.BACKOFF_MS],
] as const;

function optionCount(options: SubmitOptions | undefined): number {
  let count = 0;
  if (options) for (const [key] of OPTION_FIELDS) if (options[key] !== undefined) count++;
  return count;
}

/** The payload size of a SUBMIT, for a sender that must refuse an oversized one before writing anything. */
export function submitPayloadLength(type: string, body: Bytes, options?: SubmitOptions): number {
  return 7 + optionCount(options) * 5 + stringLength(type, 'job type') + byteLength(body);
}

/** The payload size of the TASK a SUBMIT of this type and body becomes. */
export function taskPayloadLength(type: string, body: Bytes): number {
  return 10 + stringLength(type, 'job type') + byteLength(body);
}

/**
 * For a frame over the receiver's maxPayload: how many leading payload bytes identify the task it carries, so the
 * receiver can skip the rest and fail that one task instead of the connection. 0: the frame cannot be skipped.
 * SUBMIT and COMPLETED begin with a request id, TASK and RESULT with a task id and an attempt.
 */
export function skippedHead(cmd: number): number {
  if (cmd === Cmd.SUBMIT || cmd === Cmd.COMPLETED) return 4;
  if (cmd === Cmd.TASK || cmd === Cmd.RESULT) return 8;
  return 0;
}

export function writeSubmit(w: FrameWriter, requestId: number, type: string, body: Bytes, options?: SubmitOptions): void {
  const typeLen = stringLength(type, 'job type');
  const bodyLen = byteLength(body);
  const count = optionCount(options);
  const at = begin(w, Cmd.SUBMIT, 7 + count * 5 + typeLen + bodyLen);
  const out = w.buf;
  out.writeUInt32BE(requestId, at + 5);
  out[at + 9] = count;
  let offset = at + 10;
  if (count > 0) {
    for (const [key, tag] of OPTION_FIELDS) {
      const value = options![key];
      if (value === undefined) continue;
      out[offset] = tag;
      out.writeUInt32BE(value, offset + 1);
      offset += 5;
    }
  }
  writeBytes(out, writeString(out, offset, type, typeLen), body, bodyLen);
}

export function writeCancel(w: FrameWriter, taskId: number, attempt: number, code: string, message: string): void {
  const codeLen = stringLength(code, 'error code');
  const messageLen = Buffer.byteLength(message);
  const at = begin(w, Cmd.CANCEL, 10 + codeLen + messageLen);
  const out = w.buf;
  out.writeUInt32BE(taskId, at + 5);
  out.writeUInt32BE(attempt, at + 9);
  writeBytes(out, writeString(out, at + 13, code, codeLen), message, messageLen);
}

export function writeTask(w: FrameWriter, taskId: number, attempt: number, type: string, body: Bytes): void {
  const typeLen = stringLength(type, 'job type');
  const bodyLen = byteLength(body);
  const at = begin(w, Cmd.TASK, 10 + typeLen + bodyLen);
  const out = w.buf;
  out.writeUInt32BE(taskId, at + 5);
  out.writeUInt32BE(attempt, at + 9);
  writeBytes(out, writeString(out, at + 13, type, typeLen), body, bodyLen);
}

export function writeResultOk(w: FrameWriter, taskId: number, attempt: number, body: Bytes): void {
  const bodyLen = byteLength(body);
  const at = begin(w, Cmd.RESULT, 9 + bodyLen);
  const out = w.buf;
  out.writeUInt32BE(taskId, at + 5);
  out.writeUInt32BE(attempt, at + 9);
  out[at + 13] = ResultStatus.OK;
  writeBytes(out, at + 14, body, bodyLen);
}

export function writeResultError(w: FrameWriter, taskId: number, attempt: number, code: string, message: string): void {
  const codeLen = stringLength(code, 'error code');
  const messageLen = Buffer.byteLength(message);
  const at = begin(w, Cmd.RESULT, 11 + codeLen + messageLen);
  const out = w.buf;
  out.writeUInt32BE(taskId, at + 5);
  out.writeUInt32BE(attempt, at + 9);
  out[at + 13] = ResultStatus.ERROR;
  writeBytes(out, writeString(out, at + 14, code, codeLen), message, messageLen);
}

/** Bytes given with `start` and `end` are sent as body[start, end): a result forwarded from its RESULT frame. */
export function writeCompleted(w: FrameWriter, requestId: number, body: Bytes, start = 0, end = byteLength(body)): void {
  const at = begin(w, Cmd.COMPLETED, 4 + end - start);
  const out = w.buf;
  out.writeUInt32BE(requestId, at + 5);
  if (typeof body === 'string') writeBytes(out, at + 9, body, end);
  else copyBytes(out, at + 9, body, start, end);
}

export function writeFailed(w: FrameWriter, requestId: number, code: string, message: string): void {
  const codeLen = stringLength(code, 'error code');
  const messageLen = Buffer.byteLength(message);
  const at = begin(w, Cmd.FAILED, 6 + codeLen + messageLen);
  const out = w.buf;
  out.writeUInt32BE(requestId, at + 5);
  writeBytes(out, writeString(out, at + 9, code, codeLen), message, messageLen);
}

export function writeError(w: FrameWriter, code: string, message: string): void {
  const codeLen = stringLength(code, 'error code');
  const messageLen = Buffer.byteLength(message);
  const at = begin(w, Cmd.ERROR, 2 + codeLen + messageLen);
  writeBytes(w.buf, writeString(w.buf, at + 5, code, codeLen), message, messageLen);
}

export function writeReady(w: FrameWriter, concurrency: number, types: readonly string[]): void {
  if (types.length > 0xffff) throw new RangeError(`a worker can announce at most ${0xffff} job types`);
  const lengths = types.map((type) => stringLength(type, 'job type'));
  const at = begin(w, Cmd.READY, 6 + lengths.reduce((sum, n) => sum + 2 + n, 0));
  const out = w.buf;
  out.writeUInt32BE(concurrency, at + 5);
  out.writeUInt16BE(types.length, at + 9);
  let offset = at + 11;
  types.forEach((type, i) => (offset = writeString(out, offset, type, lengths[i]!)));
}

// ---- decoding ------------------------------------------------------------------------------------------------
//
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

  string(field: string): string {
    const n = this.u16(field);
    this.need(n, field);
    const start = this.offset;
    this.offset += n;
    return decodeString(this.buf, start, n, this.what, field);
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

export function decodeSubmit(buf: Buffer, start = 0, end = buf.length): Submit {
  const r = reader.reset(buf, start, end, 'SUBMIT');
  const requestId = r.u32('request id');
  const count = r.u8('option count');
  let options: SubmitOptions | undefined;
  let seen = 0;
  for (let i = 0; i < count; i++) {
    const tag = r.u8('option tag');
    const value = r.u32('option value');
    if (tag < 32 && seen & (1 << tag)) throw new ProtocolError(`SUBMIT repeats option tag ${tag}`);
    seen |= 1 << (tag & 31);
    options ??= {};
    if (tag === SubmitOption.TIMEOUT_MS) options.timeoutMs = value;
    else if (tag === SubmitOption.RETRIES) options.retries = value;
    else if (tag === SubmitOption.BACKOFF_MS) options.backoffMs = value;
    else throw new ProtocolError(`SUBMIT has unknown option tag ${tag}`);
  }
  const type = r.string('job type');
  // TASK = task id, attempt, the same type and body: 3 bytes more than a SUBMIT without its options.
  return { requestId, type, buf, bodyStart: r.skipRest(), bodyEnd: end, options, taskLength: end - start + 3 - 5 * count };
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
