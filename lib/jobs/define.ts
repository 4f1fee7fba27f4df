// Typed jobs: a job type defined once, with its payload and result types and how both travel as bytes, so that
// the worker that runs it and the client that calls it cannot disagree.

import { ErrorCode, TaskFailedError, TaskwireError } from '../errors.js';
import { nearestName, optionKeys, unknownOptionMessage } from '../options.js';
import type { Handler, HandlerResult, Handlers, TaskContext, ThreadHandler } from './handler.js';
import { builtinHandlers } from './index.js';
import { evaluateToString } from './arith.js';
import { sha256Job } from './sha256.js';
import { addDecimals, splitRange, sumsqJob } from './sumsq.js';

/** How a job's payload and result become bytes on the wire and back. */
export interface JobCodec<P, R> {
  encode(payload: P): Uint8Array | string;
  /** Throw to fail the task (with E_DECODE): the payload is not what the job takes. */
  decode(bytes: Buffer): P;
  encodeResult(result: R): Uint8Array | string;
  /** Throw to fail the call (with E_DECODE): the result is not what the job gives. */
  decodeResult(bytes: Buffer): R;
}

/**
 * What defineJob() takes. `codec` is 'json' (the default: UTF-8 JSON text both ways; `undefined` travels as an
 * empty body), 'text' (raw UTF-8, for jobs from string to string) or a JobCodec of your own.
 */
export interface JobSpec<P, R> {
  /** The job type name, 1 to 255 bytes of UTF-8. */
  type: string;
  run: (payload: P, context: TaskContext) => R | Promise<R>;
  // 'text' is offered only when both types are string, so a text job that claims a number does not compile.
  codec?: 'json' | ([P, R] extends [string, string] ? 'text' : never) | JobCodec<P, R>;
  /**
   * With combine, makes the job splittable: `client.run(definition, payload, { chunks })` splits the payload here,
   * in the client, into at most `chunks` payloads of the same type, which run as tasks in parallel (on any
   * workers); their results, in split order, go to combine.
   */
  split?: (payload: P, chunks: number) => P[];
  /**
   * Combines the results of the split payloads, in split order, into the job's result. It runs on a worker, as
   * the job type `<type>.combine` (a worker given the definition runs both), fed the parts' results as its
   * inputs, once all of them are done.
   */
  combine?: (results: R[], payload: P, context: TaskContext) => R | Promise<R>;
}

/** A job type, its handler and its codec: give it to createWorker({ jobs }) and to client.run(). Frozen. */
export interface JobDefinition<P, R> {
  readonly type: string;
  /** The handler logic, as a worker runs it once the payload is decoded. */
  readonly run: (payload: P, context: TaskContext) => R | Promise<R>;
  readonly codec: JobCodec<P, R>;
  readonly split?: (payload: P, chunks: number) => P[];
  readonly combine?: (results: R[], payload: P, context: TaskContext) => R | Promise<R>;
}

/** The job type that combines the parts of a split job of `type`. */
export function combineType(type: string): string {
  return `${type}.combine`;
}

// Symbol.for, not a module symbol: a job module may import another copy of taskwire than the worker that loads it.
const MARK = Symbol.for('taskwire.jobDefinition');

const utf8 = new TextDecoder('utf-8', { fatal: true });

function utf8Text(bytes: Buffer): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new TaskwireError(ErrorCode.DECODE, 'not valid UTF-8');
  }
}

function jsonText(value: unknown): string {
  if (value === undefined) return '';
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new TaskwireError(ErrorCode.INVALID, `not JSON-serialisable (${err instanceof Error ? err.message : String(err)})`);
  }
  if (text === undefined) throw new TaskwireError(ErrorCode.INVALID, `not JSON-serialisable (a ${typeof value})`);
  return text;
}

function jsonValue(bytes: Buffer): never {
  if (bytes.length === 0) return undefined as never;
  const text = utf8Text(bytes);
  try {
    return JSON.parse(text) as never;
  } catch (err) {
    throw new TaskwireError(ErrorCode.DECODE, `not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
}

const JSON_CODEC: JobCodec<never, never> = Object.freeze({ encode: jsonText, decode: jsonValue, encodeResult: jsonText, decodeResult: jsonValue });

const same = (text: string): string => text;
const TEXT_CODEC: JobCodec<string, string> = Object.freeze({ encode: same, decode: utf8Text, encodeResult: same, decodeResult: utf8Text });

const CODEC_METHODS = ['encode', 'decode', 'encodeResult', 'decodeResult'] as const;

const SPEC_FIELDS = optionKeys({ type: true, run: true, codec: true, split: true, combine: true } satisfies Record<keyof JobSpec<unknown, unknown>, true>);

function invalid(message: string): never {
  throw new TaskwireError(ErrorCode.INVALID, `defineJob: ${message}`);
}

/**
 * Defines a job type once, for workers and clients alike. A wrong payload for it is then a compile error at
 * `client.run(definition, payload)`, and the result comes back typed. Throws E_INVALID naming what is wrong.
 */
export function defineJob<P, R>(spec: JobSpec<P, R>): JobDefinition<P, R> {
  if (typeof spec !== 'object' || spec === null) invalid('the definition must be an object of { type, run, codec? }');
  // Fields it does not read are kept (see below), but one close to a field it reads is a misspelling: the job
  // would run without the split or codec it was given.
  for (const key of Object.keys(spec)) {
    if (SPEC_FIELDS.has(key) || nearestName(key, SPEC_FIELDS) === null) continue;
    throw new TaskwireError(ErrorCode.INVALID, unknownOptionMessage('defineJob()', key, SPEC_FIELDS));
  }
  const { type, run, codec = 'json' } = spec as JobSpec<P, R>;
  // A UTF-16 unit is at most 3 UTF-8 bytes, so only a type over 85 units needs measuring.
  if (typeof type !== 'string' || type.length === 0 || (type.length > 85 && Buffer.byteLength(type) > 255)) {
    invalid(`type must be a job type name of 1 to 255 bytes, got ${typeof type === 'string' ? `${Buffer.byteLength(type)} bytes` : typeof type}`);
  }
  if (typeof run !== 'function') invalid(`run of job type '${type}' must be a function, got ${typeof run}`);
  const { split, combine } = spec;
  if ((split === undefined) !== (combine === undefined)) invalid(`job type '${type}' needs both split and combine, or neither`);
  if (split !== undefined && (typeof split !== 'function' || typeof combine !== 'function')) invalid(`split and combine of job type '${type}' must be functions`);
  if (split !== undefined && Buffer.byteLength(combineType(type)) > 255) invalid(`type '${type}' is too long for its combine type '${combineType(type)}' (255 bytes)`);
  let resolved: JobCodec<P, R>;
  if (codec === 'json') resolved = JSON_CODEC as JobCodec<P, R>;
  else if (codec === 'text') resolved = TEXT_CODEC as unknown as JobCodec<P, R>;
  else if (typeof codec === 'object' && codec !== null) {
    const missing = CODEC_METHODS.filter((name) => typeof codec[name] !== 'function');
    if (missing.length > 0) invalid(`the codec of job type '${type}' lacks ${missing.join(', ')} (each a function)`);
    resolved = codec;
  } else invalid(`codec of job type '${type}' must be 'json', 'text' or { encode, decode, encodeResult, decodeResult }, got ${JSON.stringify(codec) ?? typeof codec}`);
  // The spec's other fields are kept: a definition may carry more than the worker and client look at.
  const definition = { ...spec, type, run, codec: resolved };
  Object.defineProperty(definition, MARK, { value: true });
  return Object.freeze(definition);
}

/** Whether `value` came from defineJob(), from this copy of taskwire or another. */
export function isJobDefinition(value: unknown): value is JobDefinition<unknown, unknown> {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[MARK] === true;
}

/** A codec's failure as the caller sees it: E_DECODE for bytes that are not what the job takes or gives. */
function codecError(type: string, what: 'payload' | 'result', decoding: boolean, err: unknown): TaskwireError {
  const message = err instanceof Error ? err.message : String(err);
  if (decoding) return new TaskFailedError(ErrorCode.DECODE, `cannot decode the ${what} of job type '${type}': ${message}`);
  const code = what === 'payload' ? ErrorCode.INVALID : ErrorCode.HANDLER;
  return new TaskwireError(code, `cannot encode the ${what} of job type '${type}': ${message}`, { cause: err });
}

/** The payload as a client sends it; throws E_INVALID when the codec cannot encode it. */
export function encodePayload<P, R>(definition: JobDefinition<P, R>, payload: P): Uint8Array | string {
  try {
    return definition.codec.encode(payload);
  } catch (err) {
    throw codecError(definition.type, 'payload', false, err);
  }
}

/** The result as a client hands it back; throws E_DECODE when the bytes are not a result of this job. */
export function decodeResult<P, R>(definition: JobDefinition<P, R>, bytes: Buffer): R {
  try {
    return definition.codec.decodeResult(bytes);
  } catch (err) {
    throw codecError(definition.type, 'result', true, err);
  }
}

/** The built-in job types as typed definitions: text in, text out. */
export const builtinJobs = Object.freeze({
  /** The lowercase hex SHA-256 digest of the text's UTF-8. */
  sha256: defineJob<string, string>({ type: 'sha256', codec: 'text', run: (text) => sha256Job(Buffer.from(text)) }),
  /** An arithmetic expression evaluated with JavaScript's double semantics, as String(value). */
  arith: defineJob<string, string>({ type: 'arith', codec: 'text', run: (expression) => evaluateToString(expression) }),
  /**
   * The sum of the squares of the integers from A to B ("A B"), exact, as decimal text; splits into sub-ranges
   * whose sums `sumsq.combine` adds.
   */
  sumsq: defineJob<string, string>({
    type: 'sumsq',
    codec: 'text',
    run: (range) => sumsqJob(Buffer.from(range)),
    split: splitRange,
    combine: (sums) => addDecimals(sums),
  }),
});

// A worker runs the built-ins with their own handlers, so they keep their routing (sha256's thread path for large
// payloads) and count as bounded for liveness.
const BUILTIN_ROUTES = new Map<unknown, Handlers[string]>([
  [builtinJobs.sha256, builtinHandlers.sha256!],
  [builtinJobs.arith, builtinHandlers.arith!],
  [builtinJobs.sumsq, builtinHandlers.sumsq!],
]);

/**
 * The handler of a split job's `<type>.combine`: decodes the job's payload and each part's result (its inputs),
 * combines them, encodes the result.
 */
export function combineHandler(definition: JobDefinition<unknown, unknown>): Handler | ThreadHandler {
  if (definition === builtinJobs.sumsq) return builtinHandlers[combineType('sumsq')]!;
  const { type, combine, codec } = definition;
  return (body: Buffer, context: TaskContext) => {
    let payload: unknown;
    let results: unknown[];
    try {
      payload = codec.decode(body);
    } catch (err) {
      throw codecError(type, 'payload', true, err);
    }
    try {
      results = context.inputs.map((bytes) => codec.decodeResult(bytes));
    } catch (err) {
      throw codecError(type, 'result', true, err);
    }
    const result = combine!(results, payload, context);
    const encode = (value: unknown): HandlerResult => {
      try {
        return codec.encodeResult(value);
      } catch (err) {
        throw codecError(type, 'result', false, err);
      }
    };
    return isPromiseLike(result) ? Promise.resolve(result).then(encode) : encode(result);
  };
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | null)?.then === 'function';
}

/**
 * The handler a worker registers for a definition: decodes the payload (a payload the codec refuses fails the
 * task with E_DECODE), runs it, encodes the result. Synchronous runs stay synchronous, as the worker's fast path
 * wants.
 */
export function definitionHandler(definition: JobDefinition<unknown, unknown>): Handler | ThreadHandler {
  const builtin = BUILTIN_ROUTES.get(definition);
  if (builtin) return builtin;
  const { type, run, codec } = definition;
  const encode = (result: unknown): HandlerResult => {
    try {
      return codec.encodeResult(result);
    } catch (err) {
      throw codecError(type, 'result', false, err);
    }
  };
  return (body: Buffer, context: TaskContext) => {
    let payload: unknown;
    try {
      payload = codec.decode(body);
    } catch (err) {
      throw codecError(type, 'payload', true, err);
    }
    const result = run(payload, context);
    return isPromiseLike(result) ? Promise.resolve(result).then(encode) : encode(result);
  };
}
