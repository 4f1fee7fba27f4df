// Each message's encoder: its frame written in place into a FrameWriter, at its exact size. docs/PROTOCOL.md
// describes every layout byte by byte.

import { Cmd, HelloSetting, MAX_STRING_BYTES, ResultStatus, SubmitOption, type Hello, type SubmitOptions } from './commands.js';
import { FrameWriter, HEADER_SIZE, writeHeader } from './frame.js';

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
  ['priority', SubmitOption.PRIORITY],
  ['delayMs', SubmitOption.DELAY_MS],
  ['detach', SubmitOption.DETACH],
  ['accept', SubmitOption.ACCEPT],
  ['tenant', SubmitOption.TENANT],
] as const;

/**
 * An option's u32 on the wire, or undefined when it is not sent (absent, or a flag that is off). A priority is a
 * signed 32-bit integer and travels as its two's complement; the others are written as they are, and
 * writeUInt32BE refuses what does not fit.
 */
function optionValue(key: (typeof OPTION_FIELDS)[number][0], value: number | boolean | undefined): number | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return 1;
  if (key !== 'priority') return value;
  if (!Number.isInteger(value) || value < -0x8000_0000 || value > 0x7fff_ffff) throw new RangeError(`priority ${value} is not a signed 32-bit integer`);
  return value >>> 0;
}

function optionCount(options: SubmitOptions | undefined): number {
  let count = 0;
  if (options) for (const [key] of OPTION_FIELDS) if (optionValue(key, options[key]) !== undefined) count++;
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

export function writeSubmit(w: FrameWriter, requestId: number, type: string, body: Bytes, options?: SubmitOptions): void {
  const typeLen = stringLength(type, 'job type');
  const bodyLen = byteLength(body);
  const count = optionCount(options);
  const at = begin(w, Cmd.SUBMIT, 7 + count * 5 + typeLen + bodyLen);
  const out = w.buf;
  out.writeUInt32BE(requestId, at + 5);
  out[at + 9] = count;
  const offset = writeOptions(out, at + 10, options, count);
  writeBytes(out, writeString(out, offset, type, typeLen), body, bodyLen);
}

/** The `count` options that are set, in ascending tag order, from `offset`; returns the offset after them. */
function writeOptions(out: Buffer, offset: number, options: SubmitOptions | undefined, count: number): number {
  if (count === 0) return offset;
  for (const [key, tag] of OPTION_FIELDS) {
    const value = optionValue(key, options![key]);
    if (value === undefined) continue;
    out[offset] = tag;
    out.writeUInt32BE(value, offset + 1);
    offset += 5;
  }
  return offset;
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

/** A graph's node as a sender writes it; the root is the last. */
export interface GraphNodeInput {
  type: string;
  body: Bytes;
  inputs: readonly number[];
}

/** The payload size of a GRAPH. */
export function graphPayloadLength(nodes: readonly GraphNodeInput[], options?: SubmitOptions): number {
  let n = 9 + optionCount(options) * 5;
  for (const node of nodes) n += 8 + stringLength(node.type, 'job type') + 4 * node.inputs.length + byteLength(node.body);
  return n;
}

export function writeGraph(w: FrameWriter, requestId: number, nodes: readonly GraphNodeInput[], options?: SubmitOptions): void {
  const count = optionCount(options);
  const at = begin(w, Cmd.GRAPH, graphPayloadLength(nodes, options));
  const out = w.buf;
  out.writeUInt32BE(requestId, at + 5);
  out[at + 9] = count;
  let offset = writeOptions(out, at + 10, options, count);
  out.writeUInt32BE(nodes.length, offset);
  offset += 4;
  for (const node of nodes) {
    offset = writeString(out, offset, node.type, stringLength(node.type, 'job type'));
    out.writeUInt16BE(node.inputs.length, offset);
    offset += 2;
    for (const input of node.inputs) {
      out.writeUInt32BE(input, offset);
      offset += 4;
    }
    const bodyLen = byteLength(node.body);
    out.writeUInt32BE(bodyLen, offset);
    offset = writeBytes(out, offset + 4, node.body, bodyLen);
  }
}

/** The payload size of a NODE, and of the TASK that carries the same inputs in its body (an older worker's). */
export function nodePayloadLength(type: string, inputs: readonly Uint8Array[], body: Bytes): number {
  let n = 12 + stringLength(type, 'job type') + byteLength(body);
  for (const input of inputs) n += 4 + input.length;
  return n;
}

/**
 * A graph's node for a worker: NODE to a worker of version 4; to an older one, a TASK whose body holds the same
 * bytes as NODE's tail (input count, inputs, body), which it may decode itself (PROTOCOL.md 3.17).
 */
export function writeNode(w: FrameWriter, taskId: number, attempt: number, type: string, inputs: readonly Uint8Array[], body: Bytes, asTask = false): void {
  const typeLen = stringLength(type, 'job type');
  const at = begin(w, asTask ? Cmd.TASK : Cmd.NODE, nodePayloadLength(type, inputs, body));
  const out = w.buf;
  out.writeUInt32BE(taskId, at + 5);
  out.writeUInt32BE(attempt, at + 9);
  let offset = writeString(out, at + 13, type, typeLen);
  out.writeUInt16BE(inputs.length, offset);
  offset += 2;
  for (const input of inputs) {
    out.writeUInt32BE(input.length, offset);
    copyBytes(out, offset + 4, input, 0, input.length);
    offset += 4 + input.length;
  }
  writeBytes(out, offset, body, byteLength(body));
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

/** ACCEPTED, STATUS, WAIT and ABORT: a request id and a job id (u64; ids stay below 2^53). */
function writeJobFrame(w: FrameWriter, cmd: Cmd, requestId: number, jobId: number): void {
  const at = begin(w, cmd, 12);
  const out = w.buf;
  out.writeUInt32BE(requestId, at + 5);
  out.writeBigUInt64BE(BigInt(jobId), at + 9);
}

export function writeAccepted(w: FrameWriter, requestId: number, jobId: number): void {
  writeJobFrame(w, Cmd.ACCEPTED, requestId, jobId);
}

export function writeStatus(w: FrameWriter, requestId: number, jobId: number): void {
  writeJobFrame(w, Cmd.STATUS, requestId, jobId);
}

export function writeWait(w: FrameWriter, requestId: number, jobId: number): void {
  writeJobFrame(w, Cmd.WAIT, requestId, jobId);
}

export function writeAbort(w: FrameWriter, requestId: number, jobId: number): void {
  writeJobFrame(w, Cmd.ABORT, requestId, jobId);
}

export function writeList(w: FrameWriter, requestId: number, limit: number, state: string): void {
  const stateLen = Buffer.byteLength(state);
  const at = begin(w, Cmd.LIST, 10 + stateLen);
  const out = w.buf;
  out.writeUInt32BE(requestId, at + 5);
  out.writeUInt32BE(limit, at + 9);
  writeString(out, at + 13, state, stateLen);
}

export function writeReply(w: FrameWriter, requestId: number, json: string): void {
  const jsonLen = Buffer.byteLength(json);
  const at = begin(w, Cmd.REPLY, 4 + jsonLen);
  w.buf.writeUInt32BE(requestId, at + 5);
  w.buf.write(json, at + 9, jsonLen, 'utf8');
}

/** PROGRESS from a worker: [task id u32][attempt u32][value f64][message str16]. */
export function writeWorkerProgress(w: FrameWriter, taskId: number, attempt: number, value: number, message: string): void {
  const messageLen = stringLength(message, 'progress message');
  const at = begin(w, Cmd.PROGRESS, 18 + messageLen);
  const out = w.buf;
  out.writeUInt32BE(taskId, at + 5);
  out.writeUInt32BE(attempt, at + 9);
  out.writeDoubleBE(value, at + 13);
  writeString(out, at + 21, message, messageLen);
}

/** PROGRESS to a client: [request id u32][job id u64][value f64][message str16]. */
export function writeClientProgress(w: FrameWriter, requestId: number, jobId: number, value: number, message: string): void {
  const messageLen = stringLength(message, 'progress message');
  const at = begin(w, Cmd.PROGRESS, 22 + messageLen);
  const out = w.buf;
  out.writeUInt32BE(requestId, at + 5);
  out.writeBigUInt64BE(BigInt(jobId), at + 9);
  out.writeDoubleBE(value, at + 17);
  writeString(out, at + 25, message, messageLen);
}
