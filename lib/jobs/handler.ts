// The contract between a worker and the code that runs its tasks.

import { ErrorCode } from '../errors.js';

/** What a handler may return: text (sent as UTF-8) or bytes. */
export type HandlerResult = string | Uint8Array;

export interface TaskContext {
  /** The scheduler's id for the task. */
  readonly taskId: number;
  /** 1 for the first run; higher when the task was requeued after a worker was lost. */
  readonly attempt: number;
  readonly type: string;
  /**
   * Aborted when the task's result is no longer wanted: it timed out (reason code E_TIMEOUT), its client left or
   * the scheduler is shutting down (E_CANCELLED), or the connection to the scheduler dropped.
   */
  readonly signal: AbortSignal;
  /**
   * A graph node's inputs: the results of the nodes it consumes, in the order the graph lists them; empty for a
   * task that is not a graph's node.
   */
  readonly inputs: readonly Buffer[];
  /**
   * Reports progress: a number (a fraction done, a count: yours to define) and/or a short message. The submitter
   * and anyone waiting for the job get it, at most every 100 ms (reports in between are dropped, the latest
   * becomes part of the job's status); it does nothing against a scheduler older than protocol version 3.
   */
  progress(value?: number, message?: string): void;
}

/**
 * Runs one task. `payload` is the task body as submitted. Throw (or reject) to fail the task: the client
 * receives the error's message, and its `code` when it is a string (otherwise E_HANDLER).
 */
export type Handler = (payload: Buffer, context: TaskContext) => HandlerResult | Promise<HandlerResult>;

/**
 * A handler run in the worker's pool of threads, so that however long it computes, the worker's own event loop
 * (which speaks to the scheduler) stays free, and a handler that will not stop can be stopped.
 */
export interface ThreadHandler {
  /** The module exporting the handler: a file URL, or a path (relative to the current directory). */
  module: string | URL;
  /** The name it is exported under. Default 'default'. */
  export?: string;
  /**
   * Payloads shorter than this many bytes run inline instead, with `inline`: below some size a task costs less
   * than a round trip to a thread. Default 0 (always in a thread).
   */
  inlineBelow?: number;
  /** The same handler, to run inline; required with inlineBelow. */
  inline?: Handler;
}

/** Job type -> handler: a function runs on the worker's own thread (inline), a ThreadHandler in its pool. */
export type Handlers = Record<string, Handler | ThreadHandler>;

/** A handler error's own string `code` (up to 64 characters) reaches the client; anything else is E_HANDLER. */
export function handlerErrorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.length > 0 && code.length <= 64 ? code : ErrorCode.HANDLER;
}

export function handlerErrorMessage(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message || 'handler failed without a message';
}

/** What is wrong with a handler's return value, or null when it is text or bytes. */
export function badResult(value: unknown): string | null {
  if (typeof value === 'string' || value instanceof Uint8Array) return null;
  return `handler returned ${value === null ? 'null' : typeof value}; return a string or bytes`;
}
