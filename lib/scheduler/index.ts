// The scheduler's I/O shell: accepts connections, runs the handshake, decodes frames into core calls and
// turns the core's answers into frames and public events.

import { isUtf8 } from 'node:buffer';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { X509Certificate, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ErrorCode, ProtocolError, TaskwireError } from '../errors.js';
import { checkBoolean, checkInteger, checkKnown, checkOneOf, checkString, invalidOption, optionKeys, stripUndefined, unknownOption } from '../options.js';
import { DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_LIMIT, frameTooLargeError } from '../protocol/frame.js';
import {
  CMD_NAMES,
  Cmd,
  MAX_HELLO_PAYLOAD,
  Role,
  decodeError,
  decodeHello,
  decodeReady,
  decodeResult,
  decodeGraph,
  decodeSubmit,
  encodeKeepalive,
  skippedHead,
  writeCancel,
  writeCompleted,
  writeFailed,
  writeHello,
  writeNode,
  writeTask,
  PROTOCOL_VERSION,
  nodePayloadLength,
  GRAPH_VERSION,
  JOBS_VERSION,
  decodeJobRequest,
  decodeList,
  decodeWorkerProgress,
  writeAccepted,
  writeClientProgress,
  writeReply,
  type BodyRange,
} from '../protocol/index.js';
import { createClient, type Client } from '../client/index.js';
import { addJobRoutes } from '../http/api.js';
import { addBrowserWorkerRoutes } from '../http/browser-worker.js';
import type { WebSocketAcceptor } from '../transport/ws.js';
import { HttpServer } from '../http/server.js';
import { addDashboardRoutes } from '../http/dashboard.js';
import { addMetricsRoutes } from '../http/metrics.js';
import type { QueueDepth } from './counters.js';
import { snapshotMetrics, type SchedulerMetrics } from './metrics.js';
import { SocketTraffic } from './traffic.js';
import { HttpWorkers, type RemotePeer, type RemoteTasks, type RemoteWorkerHost } from '../http/workers.js';
import { ByteBudget } from '../transport/budget.js';
import type { Connection } from '../transport/connection.js';
import { TcpConnection, type TlsClientOptions } from '../transport/tcp.js';
import {
  CORE_DEFAULTS,
  JOB_STATES,
  RECENT_JOBS,
  STRATEGIES,
  SchedulerCore,
  type ClientRecord,
  type CoreOutput,
  type JobState,
  type JobStatus,
  type JobInfo,
  type Strategy, type CoreStats, type DeadLetter, type PeerRecord, type RequeueCause, type Task } from './core.js';

export type { RequeueCause } from './core.js';

export interface SchedulerOptions {
  /** Interface to listen on. Default '127.0.0.1' (loopback only; use '0.0.0.0' to accept other machines). */
  host?: string;
  /** TCP port; 0 picks a free one (read it from `scheduler.port` after listen()). Default 9001. */
  port?: number;
  /** Keepalive interval in ms, announced to every peer; a peer silent for 3 intervals is dropped. Default 5000. */
  heartbeatMs?: number;
  /** Largest frame payload accepted, in bytes. Default 16 MiB. */
  maxPayload?: number;
  /** This scheduler's name, sent in its hello. Default 'taskwire-' and 8 random hex digits. */
  name?: string;
  /** Shared secret every client and worker must present in its hello; unset: no authentication. */
  token?: string;
  /** Default task timeout in ms (a task may set its own); 0 for none. Default 300000. */
  timeoutMs?: number;
  /** Worker losses or timeouts a task survives before it fails with E_ATTEMPTS. Default 3. */
  maxAttempts?: number;
  /** Default first retry delay in ms for tasks submitted with retries; doubles per retry. Default 1000. */
  backoffMs?: number;
  /** Tasks waiting for a worker at most; further submissions fail with E_QUEUE_FULL. Default 10,000,000. */
  maxQueued?: number;
  /** Bytes of the bodies of tasks waiting for a worker at most; more fail with E_QUEUE_FULL. Default 1 GiB. */
  maxQueuedBytes?: number;
  /** Unsettled tasks per client at most; further submissions fail with E_TOO_MANY_PENDING. Default 1,048,576. */
  maxPendingPerClient?: number;
  /** Bytes of the bodies of a client's unsettled tasks at most; more fail with E_TOO_MANY_PENDING. Default 256 MiB. */
  maxPendingBytesPerClient?: number;
  /** The largest concurrency (credits) a worker may announce; a larger one is capped to it. Default 65,536. */
  maxConcurrency?: number;
  /** Open connections at most; more are refused with E_TOO_MANY_CONNECTIONS. Default 10000. */
  maxConnections?: number;
  /**
   * Connections still in their handshake at most. A new connection past it, or past maxConnections, closes the
   * oldest of them (E_TOO_MANY_CONNECTIONS), so peers that never say hello cannot lock out those that do.
   * Default 1000.
   */
  maxHandshakes?: number;
  /** A connection that has not completed its hello in this many ms is closed. Default 10000. */
  handshakeTimeoutMs?: number;
  /**
   * Bytes held at most, across all connections past their handshake, for frames that arrive over several reads;
   * a connection whose frame does not fit waits, unread, until another frame completes. Default 256 MiB.
   */
  maxPartialFrameBytes?: number;
  /** The same for HELLOs of connections still in their handshake. Default 8 MiB. */
  maxHandshakeBytes?: number;
  /**
   * Unsent bytes for a peer above which the scheduler stops feeding it: a worker gets no more tasks, a client's
   * further frames are not read, until the bytes have gone. Default 1 MiB.
   */
  highWaterBytes?: number;
  /** A peer that has had bytes waiting and read none of them for this many ms is dropped (E_SLOW_CONSUMER). Default 30000. */
  slowConsumerMs?: number;
  /** Failed tasks kept for deadLetters(). Default 1000. */
  deadLetterLimit?: number;
  /**
   * Which worker with a free slot gets a new task while none is queued: 'round-robin' (turns, one task each) or
   * 'least-loaded' (the smallest share of its concurrency in use). Once tasks queue, each worker takes the oldest
   * as soon as it has a free slot, whatever the strategy. Default 'round-robin'.
   */
  strategy?: Strategy;
  /** Within one priority, clients take turns (one job each) instead of the oldest job going first. Default false. */
  fair?: boolean;
  /**
   * A queued job whose type no connected worker runs fails with E_NO_WORKER after this many ms (from its
   * submission, or from when the type's last worker left, whichever is later); 0 waits for ever. Default 300000.
   */
  noWorkerTimeoutMs?: number;
  /** Finished detached jobs whose records (status and result) are kept for status and wait. Default 10000. */
  maxFinishedJobs?: number;
  /** How long such a record is kept after its job finished, in ms. Default 3600000 (an hour). */
  finishedTtlMs?: number;
  /** Bytes of results those records keep, at most (the oldest go first). Default 64 MiB. */
  maxFinishedBytes?: number;
  /**
   * The HTTP API's port (REST endpoints, dashboard, metrics, WebSocket peers at /ws): 0 picks a free one (read it
   * from `scheduler.httpPort`). Default: no HTTP listener. (The command line's --http-port defaults to 9002.)
   */
  httpPort?: number;
  /** Interface the HTTP API listens on. Default: `host`. */
  httpHost?: string;
  /**
   * Without a token, the HTTP API answers requests from loopback addresses only (E_AUTH for others), since
   * anyone who reaches it could submit and cancel jobs; true answers everyone. With a token, every request must
   * carry it (`Authorization: Bearer <token>`) whatever its origin. Default false.
   */
  httpOpen?: boolean;
  /** Largest HTTP request body accepted, in bytes (413 E_TOO_LARGE beyond). Default 1 MiB. */
  httpMaxBodyBytes?: number;
  /** Nodes a graph job may have; a larger one is refused with E_GRAPH. Default 10000. */
  maxGraphNodes?: number;
  /** Edges (node inputs, all nodes together) a graph job may have; more are refused with E_GRAPH. Default 100000. */
  maxGraphEdges?: number;
  /**
   * Bytes of intermediate results one graph may hold at once (a result is held until every node consuming it has
   * completed); past it the graph fails with E_GRAPH_MEMORY. Default 64 MiB.
   */
  maxGraphBytes?: number;
  /**
   * TLS on the TCP listener (PEM contents): clients and workers then connect with their `tls` option. With `ca`,
   * every peer must present a certificate signed by it. The HTTP listener is not affected. Default: plain TCP.
   */
  tls?: SchedulerTlsOptions;
}

export interface SchedulerTlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
  /** CA(s) that peers' certificates must chain to; given, a peer without such a certificate is refused. */
  ca?: string | Buffer;
}

const SCHEDULER_OPTIONS = optionKeys({
  host: true,
  port: true,
  heartbeatMs: true,
  maxPayload: true,
  name: true,
  token: true,
  timeoutMs: true,
  maxAttempts: true,
  backoffMs: true,
  maxQueued: true,
  maxQueuedBytes: true,
  maxPendingPerClient: true,
  maxPendingBytesPerClient: true,
  maxConcurrency: true,
  maxConnections: true,
  maxHandshakes: true,
  handshakeTimeoutMs: true,
  maxPartialFrameBytes: true,
  maxHandshakeBytes: true,
  highWaterBytes: true,
  slowConsumerMs: true,
  deadLetterLimit: true,
  strategy: true,
  fair: true,
  noWorkerTimeoutMs: true,
  maxFinishedJobs: true,
  finishedTtlMs: true,
  maxFinishedBytes: true,
  httpPort: true,
  httpHost: true,
  httpOpen: true,
  httpMaxBodyBytes: true,
  maxGraphNodes: true,
  maxGraphEdges: true,
  maxGraphBytes: true,
  tls: true,
} satisfies Record<keyof SchedulerOptions, true>);

const SCHEDULER_TLS_OPTIONS = optionKeys({ cert: true, key: true, ca: true } satisfies Record<keyof SchedulerTlsOptions, true>);

/** Options that were replaced, with what replaced them: passing one is an error that says so. */
const REPLACED_OPTIONS: Record<string, string> = {
  maxBufferedBytes: 'highWaterBytes (when to stop feeding a peer) and slowConsumerMs (when to drop one that reads nothing)',
};

export const SCHEDULER_DEFAULTS = {
  host: '127.0.0.1',
  port: 9001,
  heartbeatMs: 5000,
  maxPayload: DEFAULT_MAX_PAYLOAD,
  timeoutMs: CORE_DEFAULTS.timeoutMs,
  maxAttempts: CORE_DEFAULTS.maxAttempts,
  backoffMs: CORE_DEFAULTS.backoffMs,
  maxQueued: CORE_DEFAULTS.maxQueued,
  maxQueuedBytes: CORE_DEFAULTS.maxQueuedBytes,
  maxPendingPerClient: CORE_DEFAULTS.maxPendingPerClient,
  maxPendingBytesPerClient: CORE_DEFAULTS.maxPendingBytesPerClient,
  maxConcurrency: CORE_DEFAULTS.maxConcurrency,
  maxConnections: 10_000,
  maxHandshakes: 1000,
  handshakeTimeoutMs: 10_000,
  maxPartialFrameBytes: 256 * 1024 * 1024,
  maxHandshakeBytes: 8 * 1024 * 1024,
  highWaterBytes: 1024 * 1024,
  slowConsumerMs: 30_000,
  deadLetterLimit: CORE_DEFAULTS.deadLetterLimit,
  strategy: CORE_DEFAULTS.strategy,
  fair: CORE_DEFAULTS.fair,
  noWorkerTimeoutMs: CORE_DEFAULTS.noWorkerTimeoutMs,
  maxFinishedJobs: CORE_DEFAULTS.maxFinishedJobs,
  finishedTtlMs: CORE_DEFAULTS.finishedTtlMs,
  maxFinishedBytes: CORE_DEFAULTS.maxFinishedBytes,
  maxGraphNodes: CORE_DEFAULTS.maxGraphNodes,
  maxGraphEdges: CORE_DEFAULTS.maxGraphEdges,
  maxGraphBytes: CORE_DEFAULTS.maxGraphBytes,
} as const;

/** Frames shorter than this never wait for the partial-frame budget: each costs at most one socket read. */
const BUDGET_THRESHOLD = 64 * 1024;

/** How often the core acts on its clock: a timeout or retry delay comes due at most this long after its time. */
const TICK_MS = 100;
/**
 * Silence is checked this many times per keepalive interval, so a silent peer is dropped 3 to 3.1 intervals after
 * its last frame. Checked once per interval, that was up to 4: a frozen worker's tasks waited a whole interval more.
 */
const CHECKS_PER_INTERVAL = 10;

export interface PeerInfo {
  id: number;
  role: 'client' | 'worker';
  name: string;
  remote: string;
}

export interface WorkerInfo extends PeerInfo {
  /** Its credits, capped at maxConcurrency. */
  concurrency: number;
  types: string[];
  /** Whether its keepalives may wait for a handler (its hello said so); if not, 3 intervals of silence drop it. */
  mayBlock: boolean;
}

/** A connected worker, as workers() reports it. */
export interface WorkerStatus {
  id: number;
  name: string;
  /** "address:port" of its connection (or the URL of an HTTP worker). */
  remote: string;
  /** 'tcp', 'ws' or 'http'. */
  transport: string;
  types: string[];
  concurrency: number;
  /** Tasks it runs now. */
  inFlight: number;
  /** Date.now() when it was last heard from. */
  lastSeenAt: number;
}

export interface TaskEvent {
  taskId: number;
  type: string;
  attempt: number;
  clientId: number | null;
  workerId: number | null;
}

export interface SchedulerEvents {
  listening: [address: { host: string; port: number }];
  clientJoined: [client: PeerInfo];
  workerJoined: [worker: PeerInfo];
  /** A worker announced (or changed) its job types and concurrency. */
  workerReady: [worker: WorkerInfo];
  peerLeft: [peer: PeerInfo & { reason: string; requeued: number }];
  /** A peer broke the protocol or a limit; it was sent an ERROR frame and disconnected. */
  peerError: [peer: { remote: string; code: string; message: string }];
  taskQueued: [task: TaskEvent];
  taskDispatched: [task: TaskEvent];
  taskCompleted: [task: TaskEvent];
  taskFailed: [task: TaskEvent & { code: string; message: string }];
  taskRequeued: [task: TaskEvent & { fromWorkerId: number; reason: string; cause: RequeueCause }];
  close: [];
}

export interface SchedulerStats extends CoreStats {
  connections: number;
  /** Connections still in their handshake. */
  handshakes: number;
  /** Bytes held for frames arriving over several reads, past the handshake and before it. */
  partialFrameBytes: number;
  handshakeBytes: number;
}

/** Per-connection state: before the handshake `record` is null. */
interface Peer {
  readonly conn: Connection;
  /** Date.now() at its last read. */
  lastSeen: number;
  record: PeerRecord<Peer> | null;
  /** Closes the connection if the hello does not come in time; cleared by the handshake. */
  handshakeTimer: NodeJS.Timeout | null;
  /** A client whose frames are not read because the answers to it are not draining. */
  outputPaused: boolean;
  /** The protocol version of its HELLO; 0 before it. Jobs by id are for peers of version 3 only. */
  version: number;
  /** A worker that is not a connection (an HTTP worker): its tasks go here instead of its connection. */
  remote?: RemoteTasks;
}

type Handle = Peer;

export interface CloseOptions {
  /** How long running and queued tasks may take to finish before they are failed with E_SHUTDOWN. Default 0. */
  graceMs?: number;
}

const CLOSE_OPTIONS = optionKeys({ graceMs: true } satisfies Record<keyof CloseOptions, true>);

export class Scheduler extends EventEmitter<SchedulerEvents> implements RemoteWorkerHost {
  readonly host: string;
  readonly name: string;
  readonly heartbeatMs: number;
  private readonly requestedPort: number;
  private readonly maxPayload: number;
  private readonly maxConnections: number;
  private readonly maxConcurrency: number;
  private readonly maxHandshakes: number;
  private readonly handshakeTimeoutMs: number;
  private readonly highWaterBytes: number;
  private readonly slowConsumerMs: number;
  private readonly partialFrames: ByteBudget;
  private readonly handshakeFrames: ByteBudget;
  /** SHA-256 of the token: equal-length digests let timingSafeEqual compare tokens of any length. */
  private readonly tokenDigest: Buffer | null;
  private readonly core: SchedulerCore<Handle, BodyRange>;
  private readonly peers = new Set<Peer>();
  /** Connections still in their handshake, oldest first. */
  private readonly handshaking = new Set<Peer>();
  private readonly server: net.Server;
  private readonly tls: SchedulerTlsOptions | null;
  /** The HTTP API, if httpPort was given. */
  readonly http: HttpServer | null;
  /** The client the HTTP API submits and waits with, connected once the scheduler listens. */
  private httpClient: Client | null = null;
  /** Workers registered over HTTP (POST /worker). */
  private httpWorkers: HttpWorkers | null = null;
  private webSockets: WebSocketAcceptor | null = null;
  private readonly token: string | null;
  private readonly timers: NodeJS.Timeout[] = [];
  /** Bytes through the TCP and HTTP listeners' sockets, for metrics (Node counts them; see traffic.ts). */
  private readonly traffic = { tcp: new SocketTraffic(), http: new SocketTraffic() };
  private boundPort = 0;
  private closing: Promise<void> | null = null;
  /** Silence checks made, for sending keepalives on one in CHECKS_PER_INTERVAL. */
  private checks = 0;
  /**
   * Tells the core the time before it acts on what a peer sent: a dispatch then counts its timeout from that
   * read, not from the last 100 ms tick, so no deadline comes early. Once per read, as a clock costs ~50 ns.
   */
  private readonly readClock = (): void => this.core.clock(Date.now());

  constructor(options: SchedulerOptions = {}) {
    super();
    // A replaced option says what replaced it, before the check of names that would only call it unknown.
    for (const [name, replacement] of Object.entries(REPLACED_OPTIONS)) {
      if (typeof options === 'object' && options !== null && name in options) {
        invalidOption(name, `replaced by ${replacement}; it is no longer read`, (options as Record<string, unknown>)[name]);
      }
    }
    checkKnown('createScheduler()', options, SCHEDULER_OPTIONS);
    const o = { ...SCHEDULER_DEFAULTS, ...stripUndefined(options) };
    this.host = checkString('host', o.host);
    this.requestedPort = checkInteger('port', o.port, 0, 65535);
    this.heartbeatMs = checkInteger('heartbeatMs', o.heartbeatMs, 10, 3_600_000);
    this.maxPayload = checkInteger('maxPayload', o.maxPayload, 64, MAX_PAYLOAD_LIMIT);
    this.maxConnections = checkInteger('maxConnections', o.maxConnections, 1, 10_000_000);
    this.maxHandshakes = checkInteger('maxHandshakes', o.maxHandshakes, 1, 10_000_000);
    this.handshakeTimeoutMs = checkInteger('handshakeTimeoutMs', o.handshakeTimeoutMs, 1, 3_600_000);
    this.highWaterBytes = checkInteger('highWaterBytes', o.highWaterBytes, 1024, Number.MAX_SAFE_INTEGER);
    this.slowConsumerMs = checkInteger('slowConsumerMs', o.slowConsumerMs, 100, 86_400_000);
    const partial = checkInteger('maxPartialFrameBytes', o.maxPartialFrameBytes, 1024, Number.MAX_SAFE_INTEGER);
    this.partialFrames = new ByteBudget(partial, BUDGET_THRESHOLD);
    // Before the handshake every straddling frame asks: an honest HELLO is tens of bytes and arrives whole.
    this.handshakeFrames = new ByteBudget(checkInteger('maxHandshakeBytes', o.maxHandshakeBytes, 1024, Number.MAX_SAFE_INTEGER), 0);
    this.name = checkString('name', options.name ?? `taskwire-${randomBytes(4).toString('hex')}`);
    this.tokenDigest = options.token === undefined ? null : digest(checkString('token', options.token));
    this.token = options.token ?? null;
    const httpPort = options.httpPort === undefined ? null : checkInteger('httpPort', options.httpPort, 0, 65535);
    this.http =
      httpPort === null
        ? null
        : new HttpServer({
            host: checkString('httpHost', options.httpHost ?? this.host),
            port: httpPort,
            token: this.token,
            open: checkBoolean('httpOpen', options.httpOpen ?? false),
            maxBodyBytes: checkInteger('httpMaxBodyBytes', options.httpMaxBodyBytes ?? 1024 * 1024, 1024, 1024 * 1024 * 1024),
          });
    this.core = new SchedulerCore<Handle, BodyRange>(this.output(), {
      checksPerInterval: CHECKS_PER_INTERVAL,
      timeoutMs: checkInteger('timeoutMs', o.timeoutMs, 0, 0xffff_ffff),
      maxAttempts: checkInteger('maxAttempts', o.maxAttempts, 1, 1000),
      backoffMs: checkInteger('backoffMs', o.backoffMs, 1, 0xffff_ffff),
      maxQueued: checkInteger('maxQueued', o.maxQueued, 0, Number.MAX_SAFE_INTEGER),
      maxQueuedBytes: checkInteger('maxQueuedBytes', o.maxQueuedBytes, 0, Number.MAX_SAFE_INTEGER),
      maxPendingPerClient: checkInteger('maxPendingPerClient', o.maxPendingPerClient, 1, Number.MAX_SAFE_INTEGER),
      maxPendingBytesPerClient: checkInteger('maxPendingBytesPerClient', o.maxPendingBytesPerClient, 0, Number.MAX_SAFE_INTEGER),
      maxConcurrency: (this.maxConcurrency = checkInteger('maxConcurrency', o.maxConcurrency, 1, 0xffff_ffff)),
      deadLetterLimit: checkInteger('deadLetterLimit', o.deadLetterLimit, 0, 1_000_000),
      strategy: checkOneOf('strategy', o.strategy, STRATEGIES),
      fair: checkBoolean('fair', o.fair),
      noWorkerTimeoutMs: checkInteger('noWorkerTimeoutMs', o.noWorkerTimeoutMs, 0, 0xffff_ffff),
      maxFinishedJobs: checkInteger('maxFinishedJobs', o.maxFinishedJobs, 0, 10_000_000),
      finishedTtlMs: checkInteger('finishedTtlMs', o.finishedTtlMs, 0, 0xffff_ffff),
      maxFinishedBytes: checkInteger('maxFinishedBytes', o.maxFinishedBytes, 0, Number.MAX_SAFE_INTEGER),
      maxGraphNodes: checkInteger('maxGraphNodes', o.maxGraphNodes, 1, 0xffff_ffff),
      maxGraphEdges: checkInteger('maxGraphEdges', o.maxGraphEdges, 0, 0xffff_ffff),
      maxGraphBytes: checkInteger('maxGraphBytes', o.maxGraphBytes, 0, Number.MAX_SAFE_INTEGER),
      // Ids count up from the start time in microseconds: a restarted scheduler does not hand out an id again
      // unless it ran more than a million jobs a second on average.
      firstJobId: Date.now() * 1000,
    });
    this.tls = options.tls === undefined ? null : checkTls(options.tls);
    if (this.tls) {
      const { cert, key, ca } = this.tls;
      // The TLS handshake comes before the HELLO's timer starts, so it gets the same bound of its own.
      this.server = tls.createServer(
        { cert, key, handshakeTimeout: this.handshakeTimeoutMs, ...(ca === undefined ? {} : { ca, requestCert: true, rejectUnauthorized: true }) },
        (socket) => this.accept(socket),
      );
      // A peer that fails the TLS handshake (plain TCP, an untrusted certificate, none) never reaches accept().
      this.server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
        // With a listener Node leaves the socket open (a timed-out handshake would hold it for ever): close it here.
        socket.destroy();
        const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
        this.emit('peerError', { remote, code: ErrorCode.CONNECT, message: `TLS handshake failed: ${err.message}` });
      });
    } else {
      this.server = net.createServer((socket) => this.accept(socket));
    }
    // Accept failures (EMFILE...) are transient; they must not become an unhandled 'error' event.
    this.server.on('error', (err: NodeJS.ErrnoException) => {
      if (this.boundPort) this.emit('peerError', { remote: '-', code: err.code ?? 'E_ACCEPT', message: err.message });
    });
    this.server.on('connection', (socket) => this.traffic.tcp.track(socket));
    this.http?.server.on('connection', (socket) => this.traffic.http.track(socket));
  }

  /** The bound port: the real one even when the scheduler was created with port 0. */
  get port(): number {
    return this.boundPort || this.requestedPort;
  }

  /**
   * How a client or worker in this process reaches this scheduler over its TLS listener: its own certificate,
   * pinned, so no CA or host name is needed; and, when peers must present one, the same certificate (which then
   * has to be signed by `tls.ca`). Undefined without TLS.
   */
  localTls(): TlsClientOptions | undefined {
    if (this.tls === null) return undefined;
    const { cert, key, ca } = this.tls;
    const fingerprint256 = new X509Certificate(cert).fingerprint256;
    return { fingerprint256, ...(ca === undefined ? {} : { cert, key }) };
  }

  /** The HTTP API's bound port; 0 without one (or before listen()). */
  get httpPort(): number {
    return this.http?.port ?? 0;
  }

  /** Starts listening (TCP, then HTTP if configured); resolves with the TCP address. */
  async listen(): Promise<{ host: string; port: number }> {
    const address = await this.listenTcp();
    if (this.http) {
      const http = this.http;
      const startedAt = Date.now();
      addJobRoutes(http, {
        scheduler: this,
        client: () => this.httpClient!,
        maxBodyBytes: http.maxBodyBytes,
        startedAt,
        httpWorkers: () => this.httpWorkers?.list() ?? [],
      });
      this.httpWorkers = new HttpWorkers(this, this.maxConcurrency);
      this.httpWorkers.addRoutes(http, http.maxBodyBytes);
      addBrowserWorkerRoutes(http);
      // WebSocket peers (GET /ws) are peers like TCP ones: the same attach(), limits and token.
      // Loaded here: a scheduler without HTTP (and every client or worker) never loads the ws package.
      const { acceptWebSockets } = await import('../transport/ws.js');
      const ws = acceptWebSockets(this);
      this.webSockets = ws;
      http.onUpgrade = (req, socket, head) => ws.handleUpgrade(req, socket, head);
      addMetricsRoutes(http, { scheduler: this });
      addDashboardRoutes(http, { scheduler: this, client: () => this.httpClient!, httpWorkers: () => this.httpWorkers?.list() ?? [] });
      await http.listen();
      // The HTTP API's jobs go in as any client's do: over the scheduler's own TCP listener.
      const host = this.host === '0.0.0.0' ? '127.0.0.1' : this.host === '::' ? '::1' : this.host;
      this.httpClient = createClient({
        host,
        port: this.boundPort,
        name: 'http-api',
        ...(this.token === null ? {} : { token: this.token }),
        ...(this.tls === null ? {} : { tls: this.localTls()! }),
      });
      await this.httpClient.connect();
    }
    return address;
  }

  private listenTcp(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new TaskwireError(ErrorCode.CONNECT, `cannot listen on ${this.host}:${this.requestedPort}: ${err.code ?? err.message}`, { cause: err }));
      };
      this.server.once('error', onError);
      this.server.listen(this.requestedPort, this.host, () => {
        this.server.off('error', onError);
        this.boundPort = (this.server.address() as net.AddressInfo).port;
        this.core.tick(Date.now()); // deadlines are computed from the core's clock: it must be set before work arrives
        this.timers.push(
          setInterval(() => this.core.tick(Date.now()), TICK_MS),
          setInterval(() => this.heartbeat(), this.heartbeatMs / CHECKS_PER_INTERVAL),
        );
        for (const timer of this.timers) timer.unref();
        const address = { host: this.host, port: this.boundPort };
        this.emit('listening', address);
        resolve(address);
      });
    });
  }

  stats(): SchedulerStats {
    return {
      ...this.core.stats(),
      connections: this.peers.size,
      handshakes: this.handshaking.size,
      partialFrameBytes: this.partialFrames.used,
      handshakeBytes: this.handshakeFrames.used,
    };
  }

  /** The most recent failed tasks (bounded by deadLetterLimit), oldest first. */
  deadLetters(): DeadLetter[] {
    return this.core.deadLetters();
  }

  /** The figures GET /metrics reports, read now: counters per job type, latencies, queue depths, traffic. */
  metrics(): SchedulerMetrics {
    return snapshotMetrics(this.core.metrics(), this.core.queueDepths(), this.stats(), this.workers(), this.traffic);
  }

  /** What waits per job type and priority: how many tasks, and when the oldest was submitted. O(types + priorities). */
  queueDepths(): QueueDepth[] {
    return this.core.queueDepths();
  }

  /** A job's status by id, as a client's status() gives it; null for an id it does not know (any more). */
  status(id: number): JobInfo | null {
    const status = this.core.status(id);
    return status === null ? null : jobInfo(status);
  }

  /** Cancels a job by id, as a client's cancel() does: 'cancelled', 'finished', or 'unknown'. */
  cancel(id: number): 'cancelled' | 'finished' | 'unknown' {
    return this.core.cancel(id);
  }

  /**
   * Adds a worker that is not a connection (an HTTP worker): its tasks go to `tasks`, its results come back
   * through the returned peer. For lib/http/workers.ts.
   */
  addRemoteWorker(name: string, conn: Connection, tasks: RemoteTasks, types: readonly string[], concurrency: number): RemotePeer {
    const peer: Peer = { conn, lastSeen: Date.now(), record: null, handshakeTimer: null, outputPaused: false, version: PROTOCOL_VERSION, remote: tasks };
    const record = this.core.addWorker(peer, name, false);
    peer.record = record;
    this.peers.add(peer);
    conn.onClose = (info) => {
      this.peers.delete(peer);
      this.core.lost(record, info.error ? info.error.message : 'closed');
    };
    this.emit('workerJoined', info(peer));
    this.core.ready(record, concurrency, types);
    if (this.listenerCount('workerReady') > 0) this.emit('workerReady', { ...info(peer), concurrency: record.concurrency, types: record.types, mayBlock: false });
    return {
      id: record.id,
      result: (taskId, attempt, outcome) => {
        peer.lastSeen = Date.now();
        this.core.clock(peer.lastSeen);
        const error = this.core.result(record, taskId, attempt, outcome);
        if (error) this.reject(peer, error);
      },
      lost: (reason) => {
        this.peers.delete(peer);
        this.core.lost(record, reason);
      },
    };
  }

  /** The connected workers, as the HTTP API's GET /workers shows them. */
  workers(): WorkerStatus[] {
    const out: WorkerStatus[] = [];
    for (const peer of this.peers) {
      const record = peer.record;
      if (record?.kind !== 'worker') continue;
      out.push({
        id: record.id,
        name: record.name,
        remote: peer.conn.remote,
        transport: peer.conn.transport ?? 'tcp',
        types: [...record.types],
        concurrency: record.concurrency,
        inFlight: record.running.size,
        lastSeenAt: peer.lastSeen,
      });
    }
    return out;
  }

  /** The latest jobs, newest first, as a client's jobs() gives them (without results). */
  jobs(options: { state?: JobState; limit?: number } = {}): JobInfo[] {
    return this.core.recentJobs(Math.min(options.limit ?? 100, RECENT_JOBS), options.state).map((s) => jobInfo(s, false));
  }

  /**
   * Shuts down: stops accepting connections and submissions (refused with E_SHUTDOWN), lets queued and running
   * tasks finish for up to `graceMs`, then fails whatever is left with E_SHUTDOWN, closes every connection with
   * an ERROR E_SHUTDOWN frame and resolves when the server is fully closed.
   */
  close(options: CloseOptions = {}): Promise<void> {
    const graceMs = options?.graceMs ?? 0;
    const problem =
      unknownOption('scheduler.close()', options, CLOSE_OPTIONS) ??
      (Number.isSafeInteger(graceMs) && graceMs >= 0 ? null : `options.graceMs of scheduler.close() must be a whole number of ms from 0, got ${String(graceMs)}`);
    if (problem !== null) return Promise.reject(new TaskwireError(ErrorCode.INVALID, problem));
    this.closing ??= this.shutdown(graceMs);
    return this.closing;
  }

  private async shutdown(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const httpClosed = this.http?.close() ?? Promise.resolve();
    this.httpWorkers?.close();
    this.webSockets?.close();
    this.core.drain();
    const deadline = Date.now() + graceMs;
    while (this.core.unsettled > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const timer of this.timers) clearInterval(timer);
    const reason = 'the scheduler is shutting down';
    this.core.shutdown(reason);
    for (const peer of this.peers) {
      if (peer.handshakeTimer) clearTimeout(peer.handshakeTimer);
      peer.conn.close(new TaskwireError(ErrorCode.SHUTDOWN, reason));
    }
    await this.httpClient?.close();
    await Promise.all([closed, httpClosed]);
    this.emit('close');
  }

  // ---- connections ---------------------------------------------------------------------------------------------

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    this.attach(new TcpConnection(socket, this.transportOptions()));
  }

  /**
   * What every accepted connection starts with, whatever its transport. Until it has said hello, a peer may only
   * send a HELLO: a longer first frame is refused at its header, and the HELLOs being read take their memory
   * from a small budget of their own.
   */
  transportOptions(): { maxPayload: number; budget: ByteBudget; highWaterBytes: number; slowConsumerMs: number } {
    return {
      maxPayload: Math.min(MAX_HELLO_PAYLOAD, this.maxPayload),
      budget: this.handshakeFrames,
      highWaterBytes: this.highWaterBytes,
      slowConsumerMs: this.slowConsumerMs,
    };
  }

  /**
   * Takes an accepted connection of any transport (TCP, WebSocket, in-process): the same handshake, limits,
   * credits and keepalives for every peer; the core never learns which transport a peer uses. The connection
   * must have been made with transportOptions().
   */
  attach(conn: Connection): void {
    if (this.closing) {
      conn.close(new TaskwireError(ErrorCode.SHUTDOWN, 'the scheduler is shutting down'));
      return;
    }
    const firstFrameCap = Math.min(MAX_HELLO_PAYLOAD, this.maxPayload);
    conn.frameTooLarge = (cmd, length) =>
      new ProtocolError(`the first frame must be a HELLO of at most ${firstFrameCap} bytes; got ${CMD_NAMES[cmd] ?? cmd} of ${length}`);
    if (!this.makeRoom()) {
      conn.close(new TaskwireError(ErrorCode.TOO_MANY_CONNECTIONS, `the scheduler is at its limit of ${this.maxConnections} connections`));
      return;
    }
    const peer: Peer = { conn, lastSeen: Date.now(), record: null, handshakeTimer: null, outputPaused: false, version: 0 };
    // A peer that connects and never says hello (or stalls mid-frame) must not hold a connection forever.
    peer.handshakeTimer = setTimeout(() => {
      conn.close(new TaskwireError(ErrorCode.TIMEOUT, `no HELLO within ${this.handshakeTimeoutMs} ms`));
    }, this.handshakeTimeoutMs);
    peer.handshakeTimer.unref();
    this.peers.add(peer);
    this.handshaking.add(peer);
    conn.onFrame = (cmd, buf, start, end) => this.frame(peer, cmd, buf, start, end);
    conn.onSkipped = (cmd, head, length) => this.skipped(peer, cmd, head, length);
    conn.onRead = () => {
      const now = Date.now();
      peer.lastSeen = now;
      this.core.clock(now);
    };
    conn.onClose = (info) => {
      this.readClock();
      this.peers.delete(peer);
      this.handshaking.delete(peer);
      if (peer.handshakeTimer) clearTimeout(peer.handshakeTimer);
      const code = (info.error as { code?: unknown } | undefined)?.code;
      if (info.error && typeof code === 'string' && code.startsWith('E_') && code !== ErrorCode.SHUTDOWN) {
        this.emit('peerError', { remote: conn.remote, code, message: info.error.message });
      }
      if (peer.record) this.core.lost(peer.record, info.error ? info.error.message : 'connection closed');
    };
  }

  /**
   * Makes room for a new connection: past maxHandshakes, or at maxConnections, the connection that has waited
   * longest in its handshake is closed (an honest peer says hello within a round trip, so the oldest are the
   * ones that never will). Returns false when every connection is past its handshake and the limit is reached.
   */
  private makeRoom(): boolean {
    const full = (): boolean => this.peers.size >= this.maxConnections || this.handshaking.size >= this.maxHandshakes;
    while (full()) {
      const oldest: Peer | undefined = this.handshaking.values().next().value;
      if (oldest === undefined) return false;
      this.handshaking.delete(oldest);
      this.peers.delete(oldest); // its onClose comes later; the slot is free now
      oldest.conn.close(
        new TaskwireError(ErrorCode.TOO_MANY_CONNECTIONS, 'closed to make room: too many connections had not completed their handshake'),
      );
    }
    return true;
  }

  /**
   * A tenth of a keepalive interval passed: the core checks silence, and sends keepalives on every tenth call. A
   * peer whose frames this side is not reading cannot prove it is alive: excused.
   */
  private heartbeat(): void {
    // A peer whose reading is paused cannot be heard; an HTTP worker has no keepalives: it is up while it answers.
    for (const peer of this.peers) if (peer.record && (peer.conn.readPaused || peer.remote)) this.core.seen(peer.record);
    this.core.heartbeat(this.checks++ % CHECKS_PER_INTERVAL === 0);
  }

  /**
   * A frame over maxPayload that was skipped unread, but for the ids that say which task it carried: that task
   * fails alone (E_TOO_LARGE), and the connection and its other tasks carry on.
   */
  private skipped(peer: Peer, cmd: number, head: Buffer, length: number): void {
    const record = peer.record;
    if (!record) throw new ProtocolError(`expected HELLO as the first frame, got ${CMD_NAMES[cmd] ?? cmd}`);
    this.core.seen(record);
    const limit = `maxPayload (${this.maxPayload})`;
    if (record.kind === 'client') {
      if (cmd !== Cmd.SUBMIT && !(cmd === Cmd.GRAPH && peer.version >= GRAPH_VERSION)) throw wrongCommand(cmd, 'client');
      return this.core.refuse(record, head.readUInt32BE(0), ErrorCode.TOO_LARGE, `a ${CMD_NAMES[cmd]} of ${length} bytes exceeds ${limit}`);
    }
    if (cmd !== Cmd.RESULT) throw wrongCommand(cmd, 'worker');
    const message = `the worker's RESULT of ${length} bytes exceeds the scheduler's ${limit}`;
    const outcome = { ok: false as const, code: ErrorCode.TOO_LARGE, message };
    const error = this.core.result(record, head.readUInt32BE(0), head.readUInt32BE(4), outcome);
    if (error) this.reject(peer, error);
  }

  /** One frame from a peer; its payload is buf[start, end) (see FrameHandler). */
  private frame(peer: Peer, cmd: number, buf: Buffer, start: number, end: number): void {
    const record = peer.record;
    if (!record) return this.handshake(peer, cmd, buf.subarray(start, end));
    this.core.seen(record);
    if (cmd === Cmd.HELLO) {
      if (end !== start) throw new ProtocolError('HELLO with a payload after the handshake');
      return; // keepalive
    }
    if (cmd === Cmd.ERROR) {
      // The peer is leaving and says why; answering with an ERROR of our own would be noise.
      const { code, message } = decodeError(buf, start, end);
      this.emit('peerError', { remote: peer.conn.remote, code, message: `peer reported: ${message}` });
      return peer.conn.close();
    }
    if (record.kind === 'client') {
      if (cmd === Cmd.GRAPH && peer.version >= GRAPH_VERSION) return this.graph(peer, record, buf, start, end);
      if (cmd !== Cmd.SUBMIT) return this.clientRequest(peer, record, cmd, buf, start, end);
      const submit = decodeSubmit(buf, start, end, peer.version);
      // Answers to this client are piling up unread: read nothing more from it until they have gone.
      if (!peer.outputPaused && peer.conn.saturated) {
        peer.outputPaused = true;
        peer.conn.pauseReading();
      }
      if (submit.taskLength > this.maxPayload) {
        const message = `the TASK for this SUBMIT would be ${submit.taskLength} bytes, over maxPayload (${this.maxPayload})`;
        return this.core.refuse(record, submit.requestId, ErrorCode.TOO_LARGE, message);
      }
      const jobId = this.core.submit(record, submit.requestId, submit.type, submit.buf.subarray(submit.bodyStart, submit.bodyEnd), submit.options);
      if (jobId > 0 && submit.options?.accept) writeAccepted(peer.conn.frames(), submit.requestId, jobId);
      return;
    }
    if (cmd === Cmd.RESULT) {
      const result = decodeResult(buf, start, end);
      const error = this.core.result(record, result.taskId, result.attempt, result);
      if (error) this.reject(peer, error);
      return;
    }
    if (cmd === Cmd.PROGRESS && peer.version >= JOBS_VERSION) {
      const p = decodeWorkerProgress(buf, start, end);
      return this.core.progress(record, p.taskId, p.attempt, p.value, p.message);
    }
    if (cmd === Cmd.READY) {
      const ready = decodeReady(buf, start, end);
      this.core.ready(record, ready.concurrency, ready.types);
      if (this.listenerCount('workerReady') > 0) {
        this.emit('workerReady', { ...info(peer), concurrency: record.concurrency, types: record.types, mayBlock: record.mayBlock });
      }
      return;
    }
    throw wrongCommand(cmd, 'worker');
  }

  /** A graph job from a client of version 4; its nodes' bodies stay views of the frame until the core copies them. */
  private graph(peer: Peer, client: ClientRecord<Peer>, buf: Buffer, start: number, end: number): void {
    const { requestId, options, nodes } = decodeGraph(buf, start, end);
    const jobId = this.core.submitGraph(client, requestId, nodes, options);
    if (jobId > 0 && options?.accept) writeAccepted(peer.conn.frames(), requestId, jobId);
  }

  /** A client's request about jobs by id (version 3): STATUS, WAIT, ABORT or LIST. */
  private clientRequest(peer: Peer, client: ClientRecord<Peer>, cmd: number, buf: Buffer, start: number, end: number): void {
    if (peer.version < JOBS_VERSION) throw wrongCommand(cmd, 'client');
    const frames = peer.conn.frames();
    if (cmd === Cmd.LIST) {
      const { requestId, limit, state } = decodeList(buf, start, end);
      if (state !== '' && !JOB_STATES.includes(state as JobState)) {
        return writeFailed(frames, requestId, ErrorCode.INVALID, `unknown job state '${state}'; one of ${JOB_STATES.join(', ')}`);
      }
      const jobs = this.core.recentJobs(Math.min(limit, RECENT_JOBS), state === '' ? undefined : (state as JobState));
      // Without results: a hundred of them could pass any maxPayload. STATUS or WAIT fetches one.
      return writeReply(frames, requestId, `{"jobs":[${jobs.map((job) => statusJson(job, false)).join(',')}]}`);
    }
    const what = cmd === Cmd.STATUS ? 'STATUS' : cmd === Cmd.WAIT ? 'WAIT' : cmd === Cmd.ABORT ? 'ABORT' : null;
    if (what === null) throw wrongCommand(cmd, 'client');
    const { requestId, jobId } = decodeJobRequest(what, buf, start, end);
    if (cmd === Cmd.WAIT) return this.core.wait(client, requestId, jobId);
    const unknown = `no job ${jobId}: it never existed, or it finished and its record is gone`;
    if (cmd === Cmd.STATUS) {
      const status = this.core.status(jobId);
      if (status === null) return writeFailed(frames, requestId, ErrorCode.NO_SUCH_JOB, unknown);
      return writeReply(frames, requestId, statusJson(status));
    }
    const outcome = this.core.cancel(jobId);
    if (outcome === 'unknown') return writeFailed(frames, requestId, ErrorCode.NO_SUCH_JOB, unknown);
    writeReply(frames, requestId, JSON.stringify({ id: jobId, outcome }));
  }

  private handshake(peer: Peer, cmd: number, payload: Buffer): void {
    if (cmd !== Cmd.HELLO || payload.length === 0) {
      throw new ProtocolError(`expected HELLO as the first frame, got ${CMD_NAMES[cmd] ?? cmd}`);
    }
    const hello = decodeHello(payload)!; // throws E_VERSION for another protocol version
    if (hello.role === Role.SCHEDULER) throw new ProtocolError('a scheduler cannot connect to a scheduler');
    if (this.tokenDigest && !timingSafeEqual(digest(hello.token), this.tokenDigest)) {
      throw new TaskwireError(ErrorCode.AUTH, hello.token ? 'wrong token' : 'this scheduler requires a token');
    }
    clearTimeout(peer.handshakeTimer!);
    peer.handshakeTimer = null;
    peer.version = hello.version;
    this.handshaking.delete(peer);
    const conn = peer.conn;
    conn.maxPayload = this.maxPayload;
    conn.frameTooLarge = frameTooLargeError;
    conn.skippable = skippedHead;
    conn.budget = this.partialFrames;
    const name = hello.name || conn.remote;
    if (hello.role === Role.CLIENT) {
      const client = this.core.addClient(peer, name);
      peer.record = client;
      conn.onDrain = () => {
        if (!peer.outputPaused) return;
        peer.outputPaused = false;
        conn.resumeReading();
      };
    } else {
      // Version-1 workers, and those that do not say, may block: the lenient rule of version 1 (PROTOCOL.md 4.4).
      const worker = this.core.addWorker(peer, name, hello.version < 2 || hello.settings?.mayBlock !== false);
      peer.record = worker;
      conn.onDrain = () => {
        this.readClock();
        this.core.writable(worker);
      };
    }
    // Each peer is answered in its own version: one of version 1 gets no settings it could not read.
    writeHello(conn.frames(), {
      version: hello.version,
      role: Role.SCHEDULER,
      heartbeatMs: this.heartbeatMs,
      name: this.name,
      token: '',
      settings: { maxPayload: this.maxPayload },
    });
    this.emit(peer.record.kind === 'client' ? 'clientJoined' : 'workerJoined', info(peer));
  }

  private reject(peer: Peer, error: TaskwireError): void {
    if (peer.record) this.core.lost(peer.record, error.message);
    peer.conn.close(error);
  }

  /**
   * The core's outputs, bound to this shell's connections and events. Frames are written in place into each
   * connection's writer, which sends a whole turn of them in one write.
   */
  private output(): CoreOutput<Handle, BodyRange> {
    const has = (event: keyof SchedulerEvents): boolean => this.listenerCount(event) > 0;
    return {
      sendTask: (worker, task) => {
        const remote = worker.handle.remote;
        if (remote) {
          remote.send(task);
          return true;
        }
        const conn = worker.handle.conn;
        if (task.inputs === null) writeTask(conn.frames(), task.id, task.attempt, task.type, task.body);
        else writeNode(conn.frames(), task.id, task.attempt, task.type, inputBytes(task), task.body, worker.handle.version < GRAPH_VERSION);
        return !conn.saturated;
      },
      nodeTooLarge: (task) => {
        const length = nodePayloadLength(task.type, inputBytes(task), task.body);
        return length > this.maxPayload ? `with its inputs, node ${task.node} would be a frame of ${length} bytes, over maxPayload (${this.maxPayload})` : null;
      },
      sendCancel: (worker, taskId, attempt, code, message) =>
        worker.handle.remote ? worker.handle.remote.cancel(taskId, attempt, code) : writeCancel(worker.handle.conn.frames(), taskId, attempt, code, message),
      sendCompleted: (client, requestId, { buf, bodyStart, bodyEnd }) =>
        writeCompleted(client.handle.conn.frames(), requestId, buf, bodyStart, bodyEnd),
      sendFailed: (client, requestId, code, message) =>
        writeFailed(client.handle.conn.frames(), requestId, code, message),
      // Only a client of version 3 can read PROGRESS; an older one's job may still run on a newer worker.
      sendProgress: (client, requestId, jobId, value, message) =>
        client.handle.version >= JOBS_VERSION && writeClientProgress(client.handle.conn.frames(), requestId, jobId, value, message),
      retainResult: ({ buf, bodyStart, bodyEnd }) => {
        const copy = Buffer.copyBytesFrom(buf, bodyStart, bodyEnd - bodyStart);
        return { result: { buf: copy, bodyStart: 0, bodyEnd: copy.length }, bytes: copy.length };
      },
      sendKeepalive: (peer) => peer.handle.conn.send(encodeKeepalive()),
      closePeer: (peer, error) => peer.handle.conn.close(error),
      taskQueued: (taskId, type, client) =>
        has('taskQueued') && this.emit('taskQueued', { taskId, type, attempt: 0, clientId: client.id, workerId: null }),
      taskDispatched: (task) => has('taskDispatched') && this.emit('taskDispatched', taskEvent(task)),
      taskCompleted: (task, worker) =>
        has('taskCompleted') && this.emit('taskCompleted', { ...taskEvent(task), workerId: worker.id }),
      taskFailed: (task, code, message) =>
        has('taskFailed') && this.emit('taskFailed', { ...taskEvent(task), code, message }),
      taskRequeued: (task, worker, reason, cause) =>
        has('taskRequeued') && this.emit('taskRequeued', { ...taskEvent(task), fromWorkerId: worker.id, reason, cause }),
      peerLeft: (peer, reason, requeued) =>
        has('peerLeft') && this.emit('peerLeft', { ...info(peer.handle), reason, requeued }),
    };
  }
}

/** A node's inputs as the core holds them (results kept by retainResult: whole buffers), as bytes. */
function inputBytes(task: Task<Handle>): Buffer[] {
  return (task.inputs as readonly BodyRange[]).map((r) => r.buf.subarray(r.bodyStart, r.bodyEnd));
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

function info(peer: Peer): PeerInfo {
  const record = peer.record!;
  return { id: record.id, role: record.kind, name: record.name, remote: peer.conn.remote };
}

function taskEvent(task: Task<Handle>): TaskEvent {
  return {
    taskId: task.id,
    type: task.type,
    attempt: task.attempt,
    clientId: task.owner?.id ?? null,
    workerId: task.worker?.id ?? null,
  };
}

/** The largest result a STATUS reply carries; past it, `resultBytes` says how large it is (WAIT returns any). */
const STATUS_RESULT_MAX = 64 * 1024;

/**
 * A job's status as clients see it: a result as text when it is UTF-8, else as base64, when `withResult` and it
 * is small enough to keep a reply well under any maxPayload; otherwise only its size.
 */
function jobInfo(status: JobStatus<BodyRange>, withResult = true): JobInfo {
  const { result, ...rest } = status;
  if (result === undefined) return rest;
  const bytes = result.buf.subarray(result.bodyStart, result.bodyEnd);
  if (!withResult || bytes.length > STATUS_RESULT_MAX) return { ...rest, resultBytes: bytes.length };
  return isUtf8(bytes) ? { ...rest, result: bytes.toString('utf8') } : { ...rest, resultBase64: bytes.toString('base64') };
}

function statusJson(status: JobStatus<BodyRange>, withResult = true): string {
  return JSON.stringify(jobInfo(status, withResult));
}

function wrongCommand(cmd: number, role: string): ProtocolError {
  return new ProtocolError(`a ${role} may not send ${CMD_NAMES[cmd] ?? cmd}`);
}

/** Creates a scheduler; call listen() to start it. */
export function createScheduler(options?: SchedulerOptions): Scheduler {
  return new Scheduler(options);
}

/** options.tls, checked: a certificate and its key, and maybe a CA for peers' certificates. */
function checkTls(value: unknown): SchedulerTlsOptions {
  const pem = (v: unknown): boolean => (typeof v === 'string' && v.length > 0) || (Buffer.isBuffer(v) && v.length > 0);
  if (typeof value !== 'object' || value === null) invalidOption('tls', '{ cert, key, ca? } with PEM contents', value);
  checkKnown('createScheduler()', value, SCHEDULER_TLS_OPTIONS, 'tls');
  const o = value as Record<string, unknown>;
  for (const name of ['cert', 'key'] as const) if (!pem(o[name])) invalidOption(`tls.${name}`, 'PEM contents, as a string or a Buffer', o[name]);
  if (o.ca !== undefined && !pem(o.ca)) invalidOption('tls.ca', 'PEM contents, as a string or a Buffer', o.ca);
  try {
    tls.createSecureContext({ cert: o.cert as string, key: o.key as string, ...(o.ca === undefined ? {} : { ca: o.ca as string }) });
  } catch (err) {
    throw new TaskwireError(ErrorCode.INVALID, `options.tls is not usable: ${(err as Error).message}`, { cause: err });
  }
  return { cert: o.cert as string | Buffer, key: o.key as string | Buffer, ...(o.ca === undefined ? {} : { ca: o.ca as string | Buffer }) };
}
