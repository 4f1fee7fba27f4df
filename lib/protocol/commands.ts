// The protocol's vocabulary: versions, command bytes, roles, HELLO settings and SUBMIT options, and the shape of
// each message once decoded. encode.ts writes them and decode.ts reads them; docs/PROTOCOL.md describes every
// layout byte by byte, and test/protocol.test.ts pins them with golden bytes.

/**
 * The version this side speaks. A scheduler also answers peers of every version from OLDEST_VERSION, in theirs.
 * Version 3 added jobs by id (SUBMIT tags 4-8, commands 10-16), version 4 graph jobs (commands 17 and 18); only
 * peers of that version or later may use them.
 */
export const PROTOCOL_VERSION = 4;
/** The first version with jobs by id. */
export const JOBS_VERSION = 3;
/** The first version with graph jobs: GRAPH from clients, NODE to workers. */
export const GRAPH_VERSION = 4;
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
  /** scheduler -> worker: abort a task (timed out, cancelled, or its client left); the worker still answers for it. */
  CANCEL: 9,
  /** scheduler -> client (version 3): a SUBMIT that asked for it was accepted, with its job id. */
  ACCEPTED: 10,
  /** client -> scheduler (version 3): a job's status by id, answered with REPLY. */
  STATUS: 11,
  /** client -> scheduler (version 3): answer this request with the job's outcome, when it has one. */
  WAIT: 12,
  /** client -> scheduler (version 3): cancel a job by id, answered with REPLY. */
  ABORT: 13,
  /** client -> scheduler (version 3): the latest jobs, answered with REPLY. */
  LIST: 14,
  /** scheduler -> client (version 3): the answer to STATUS, ABORT or LIST, as JSON. */
  REPLY: 15,
  /** worker -> scheduler, and scheduler -> client (version 3): a running job's progress. */
  PROGRESS: 16,
  /** client -> scheduler (version 4): a graph job, answered as a SUBMIT is. */
  GRAPH: 17,
  /** scheduler -> worker (version 4): run a graph's node: a TASK with its inputs' results. */
  NODE: 18,
} as const;
export type Cmd = (typeof Cmd)[keyof typeof Cmd];

export const CMD_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Cmd).map(([k, v]) => [v, k]));

export function isKnownCommand(cmd: number): boolean {
  return cmd >= Cmd.TASK && cmd <= Cmd.NODE;
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
  /** (version 3) the priority, a signed 32-bit integer in the u32: higher runs first. */
  PRIORITY: 4,
  /** (version 3) ms to wait before the job is queued. */
  DELAY_MS: 5,
  /** (version 3) 1: the job survives its client's departure. */
  DETACH: 6,
  /** (version 3) 1: answer with ACCEPTED and the job id as soon as the job is accepted. */
  ACCEPT: 7,
  /** (version 3) the fairness key: with a fair scheduler, a tenant's jobs take one turn together. */
  TENANT: 8,
} as const;

export interface SubmitOptions {
  timeoutMs?: number;
  retries?: number;
  backoffMs?: number;
  priority?: number;
  delayMs?: number;
  detach?: boolean;
  accept?: boolean;
  tenant?: number;
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
  /** NODE only: the results of the node's inputs, in order (views of the frame). */
  inputs?: Buffer[];
}

/** One node of a GRAPH: its job type, body (a range of the frame) and the indices of the nodes it consumes. */
export interface GraphNodeMessage {
  type: string;
  body: Buffer;
  inputs: number[];
}

export interface GraphMessage {
  requestId: number;
  options: SubmitOptions | undefined;
  /** The root is the last. */
  nodes: GraphNodeMessage[];
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

/** ACCEPTED: the request's job id. */
export interface Accepted {
  requestId: number;
  jobId: number;
}

/** STATUS, WAIT and ABORT: a request about one job. */
export interface JobRequest {
  requestId: number;
  jobId: number;
}

export interface List {
  requestId: number;
  limit: number;
  /** A job state to keep, or '' for all. */
  state: string;
}

/** REPLY: a request's answer as JSON text. */
export interface Reply {
  requestId: number;
  json: string;
}

/** PROGRESS from a worker: of a lease. */
export interface WorkerProgress {
  taskId: number;
  attempt: number;
  /** NaN for none. */
  value: number;
  message: string;
}

/** PROGRESS to a client: of a job, under the request that submitted or waits for it. */
export interface ClientProgress {
  requestId: number;
  jobId: number;
  value: number;
  message: string;
}

/**
 * For a frame over the receiver's maxPayload: how many leading payload bytes identify the task it carries, so the
 * receiver can skip the rest and fail that one task instead of the connection. 0: the frame cannot be skipped.
 * SUBMIT, GRAPH and COMPLETED begin with a request id, TASK and RESULT with a task id and an attempt.
 */
export function skippedHead(cmd: number): number {
  if (cmd === Cmd.SUBMIT || cmd === Cmd.COMPLETED || cmd === Cmd.GRAPH) return 4;
  if (cmd === Cmd.TASK || cmd === Cmd.RESULT) return 8;
  return 0;
}
