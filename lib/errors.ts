// Every failure taskwire reports carries a stable `code`; programs branch on the code, people read the message.

/** Stable error codes. They are part of the public API: never renamed, only added to. */
export const ErrorCode = {
  /** A peer broke the wire protocol: malformed frame, unknown command, wrong command for its role. */
  PROTOCOL: 'E_PROTOCOL',
  /** A frame declared a payload longer than the receiver's maxPayload; the connection was closed. */
  FRAME_TOO_LARGE: 'E_FRAME_TOO_LARGE',
  /** One task's payload or result does not fit a maxPayload on its way; that task alone failed. */
  TOO_LARGE: 'E_TOO_LARGE',
  /** The peer speaks a protocol version this side does not. */
  VERSION: 'E_VERSION',
  /** The task's handler threw or rejected on the worker. */
  HANDLER: 'E_HANDLER',
  /** The worker that took the task has no handler for its type. */
  NO_HANDLER: 'E_NO_HANDLER',
  /** The connection to the scheduler was lost before the task settled. */
  DISCONNECTED: 'E_DISCONNECTED',
  /** The scheduler could not be reached. */
  CONNECT: 'E_CONNECT',
  /** The client or worker was closed by its owner. */
  CLOSED: 'E_CLOSED',
  /** A caller passed an invalid argument or option. */
  INVALID: 'E_INVALID',
  /** The scheduler is shutting down. */
  SHUTDOWN: 'E_SHUTDOWN',
  /** A peer stopped answering keepalives, or a task was not answered within its timeout. */
  TIMEOUT: 'E_TIMEOUT',
  /** A task failed on maxAttempts dispatches in a row (worker lost, timed out); the message gives the last reason. */
  ATTEMPTS: 'E_ATTEMPTS',
  /**
   * The job was cancelled by id, or withdrawn from its worker (its client left, or it timed out): given to its
   * owner and waiters, and sent to the worker's handler.
   */
  CANCELLED: 'E_CANCELLED',
  /** No job has that id: it never existed, or it finished and its record is gone. */
  NO_SUCH_JOB: 'E_NO_SUCH_JOB',
  /** No worker for the job's type connected within noWorkerTimeoutMs. */
  NO_WORKER: 'E_NO_WORKER',
  /** The scheduler's queue is at maxQueued; the submission was refused. */
  QUEUE_FULL: 'E_QUEUE_FULL',
  /** The client already has maxPendingPerClient tasks pending; the submission was refused. */
  TOO_MANY_PENDING: 'E_TOO_MANY_PENDING',
  /** The scheduler already has maxConnections connections. */
  TOO_MANY_CONNECTIONS: 'E_TOO_MANY_CONNECTIONS',
  /** The peer did not present the scheduler's shared-secret token. */
  AUTH: 'E_AUTH',
  /** The peer had bytes waiting for it and read none of them for slowConsumerMs. */
  SLOW_CONSUMER: 'E_SLOW_CONSUMER',
  /**
   * A graph job was refused for its shape (a cycle, an input naming no node, a node nothing consumes, more nodes
   * or edges than maxGraphNodes or maxGraphEdges).
   */
  GRAPH: 'E_GRAPH',
  /** A graph job's intermediate results would hold more than maxGraphBytes at once; the graph failed. */
  GRAPH_MEMORY: 'E_GRAPH_MEMORY',
  /**
   * A typed job's payload (on the worker) or result (on the client) is not what its definition's codec reads:
   * malformed JSON, or a client and a worker with different definitions of the type.
   */
  DECODE: 'E_DECODE',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of every error taskwire throws or rejects with. */
export class TaskwireError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TaskwireError';
    this.code = code;
  }
}

/** A task ended in failure; `code` says why (E_HANDLER, E_DISCONNECTED...). */
export class TaskFailedError extends TaskwireError {
  /** For a graph job that failed on one of its nodes: that node's index. */
  node?: number;

  constructor(code: string, message: string) {
    super(code, message);
    this.name = 'TaskFailedError';
  }
}

/** The bytes on the wire do not follow the protocol. The connection that produced them is closed. */
export class ProtocolError extends TaskwireError {
  constructor(message: string, code: string = ErrorCode.PROTOCOL) {
    super(code, message);
    this.name = 'ProtocolError';
  }
}
