// The contract between a worker and the code that runs its tasks.

/** What a handler may return: text (sent as UTF-8) or bytes. */
export type HandlerResult = string | Uint8Array;

export interface TaskContext {
  /** The scheduler's id for the task. */
  readonly taskId: number;
  /** 1 for the first run; higher when the task was requeued after a worker was lost. */
  readonly attempt: number;
  readonly type: string;
  /** Aborted when the task's result can no longer be delivered (the connection to the scheduler dropped). */
  readonly signal: AbortSignal;
}

/**
 * Runs one task. `payload` is the task body as submitted. Throw (or reject) to fail the task: the client
 * receives the error's message, and its `code` when it is a string (otherwise E_HANDLER).
 */
export type Handler = (payload: Buffer, context: TaskContext) => HandlerResult | Promise<HandlerResult>;

export type Handlers = Record<string, Handler>;
