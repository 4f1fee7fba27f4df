// taskwire's public API: the only module users import.

export { createScheduler, Scheduler, SCHEDULER_DEFAULTS } from './scheduler/index.js';
export type { SchedulerOptions, SchedulerTlsOptions, SchedulerEvents, SchedulerStats, CloseOptions, PeerInfo, WorkerInfo, TaskEvent, RequeueCause } from './scheduler/index.js';
export { STRATEGIES } from './scheduler/core.js';
export type { DeadLetter, Strategy } from './scheduler/core.js';
export type { QueueDepth } from './scheduler/counters.js';
export type { SchedulerMetrics, TypeMetrics } from './scheduler/metrics.js';
export { createWorker, Worker, WORKER_DEFAULTS } from './worker/index.js';
export type { WorkerOptions, WorkerEvents } from './worker/index.js';
export { createClient, Client, CLIENT_DEFAULTS, PRIORITIES } from './client/index.js';
export { evaluateDistributed } from './client/arith.js';
export type { ClientOptions, ClientEvents, GraphNode, Job, JobsOptions, RunOptions, JobInfo, JobState, Payload, Progress, SubmitOptions, WaitOptions } from './client/index.js';
export { builtinHandlers, SHA256_INLINE_BELOW, ArithError, evaluate, evaluateToString, compileArith, parse as parseArith, evaluateTree, MAX_SUMSQ_RANGE } from './jobs/index.js';
export type { Handler, HandlerResult, Handlers, TaskContext, ThreadHandler, ArithNode, ArithGraphNode } from './jobs/index.js';
export { defineJob, builtinJobs } from './jobs/define.js';
export type { JobCodec, JobDefinition, JobSpec } from './jobs/define.js';
export { ErrorCode, TaskwireError, TaskFailedError, ProtocolError } from './errors.js';
export { PROTOCOL_VERSION } from './protocol/index.js';
export type { TlsClientOptions } from './transport/tcp.js';
