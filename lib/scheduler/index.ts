// The scheduler's I/O shell: accepts connections, runs the handshake, decodes frames into core calls and
// turns the core's answers into frames and public events.

import { EventEmitter } from 'node:events';
import net from 'node:net';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ErrorCode, ProtocolError, TaskwireError } from '../errors.js';
import { checkInteger, checkString, stripUndefined } from '../options.js';
import { DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_LIMIT } from '../protocol/frame.js';
import {
  CMD_NAMES,
  Cmd,
  MAX_HELLO_PAYLOAD,
  PROTOCOL_VERSION,
  Role,
  decodeError,
  decodeHello,
  decodeReady,
  decodeResult,
  decodeSubmit,
  encodeKeepalive,
  writeCancel,
  writeCompleted,
  writeFailed,
  writeHello,
  writeTask,
} from '../protocol/messages.js';
import type { Connection } from '../transport/connection.js';
import { TcpConnection } from '../transport/tcp.js';
import { CORE_DEFAULTS, SchedulerCore, type CoreOutput, type CoreStats, type DeadLetter, type PeerRecord, type Task } from './core.js';

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
  /** Unsettled tasks per client at most; further submissions fail with E_TOO_MANY_PENDING. Default 1,048,576. */
  maxPendingPerClient?: number;
  /** Open connections at most; more are refused with E_TOO_MANY_CONNECTIONS. Default 10000. */
  maxConnections?: number;
  /** A connection that has not completed its hello in this many ms is closed. Default 10000. */
  handshakeTimeoutMs?: number;
  /** Bytes queued for a peer that is not reading before it is dropped with E_SLOW_CONSUMER. Default 64 MiB. */
  maxBufferedBytes?: number;
  /** Failed tasks kept for deadLetters(). Default 1000. */
  deadLetterLimit?: number;
}

export const SCHEDULER_DEFAULTS = {
  host: '127.0.0.1',
  port: 9001,
  heartbeatMs: 5000,
  maxPayload: DEFAULT_MAX_PAYLOAD,
  timeoutMs: CORE_DEFAULTS.timeoutMs,
  maxAttempts: CORE_DEFAULTS.maxAttempts,
  backoffMs: CORE_DEFAULTS.backoffMs,
  maxQueued: CORE_DEFAULTS.maxQueued,
  maxPendingPerClient: CORE_DEFAULTS.maxPendingPerClient,
  maxConnections: 10_000,
  handshakeTimeoutMs: 10_000,
  maxBufferedBytes: 64 * 1024 * 1024,
  deadLetterLimit: CORE_DEFAULTS.deadLetterLimit,
} as const;

/** How often the core's clock advances: the precision of task timeouts and retry delays. */
const TICK_MS = 100;

export interface PeerInfo {
  id: number;
  role: 'client' | 'worker';
  name: string;
  remote: string;
}

export interface WorkerInfo extends PeerInfo {
  concurrency: number;
  types: string[];
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
  taskRequeued: [task: TaskEvent & { fromWorkerId: number; reason: string }];
  close: [];
}

export interface SchedulerStats extends CoreStats {
  connections: number;
}

/** Per-connection state: before the handshake `record` is null. */
interface Peer {
  readonly conn: Connection;
  record: PeerRecord<Peer> | null;
  /** Closes the connection if the hello does not come in time; cleared by the handshake. */
  handshakeTimer: NodeJS.Timeout | null;
}

type Handle = Peer;

export interface CloseOptions {
  /** How long running and queued tasks may take to finish before they are failed with E_SHUTDOWN. Default 0. */
  graceMs?: number;
}

export class Scheduler extends EventEmitter<SchedulerEvents> {
  readonly host: string;
  readonly name: string;
  readonly heartbeatMs: number;
  private readonly requestedPort: number;
  private readonly maxPayload: number;
  private readonly maxConnections: number;
  private readonly handshakeTimeoutMs: number;
  private readonly maxBufferedBytes: number;
  /** SHA-256 of the token: equal-length digests let timingSafeEqual compare tokens of any length. */
  private readonly tokenDigest: Buffer | null;
  private readonly core: SchedulerCore<Handle>;
  private readonly peers = new Set<Peer>();
  private readonly server: net.Server;
  private readonly timers: NodeJS.Timeout[] = [];
  private boundPort = 0;
  private closing: Promise<void> | null = null;

  constructor(options: SchedulerOptions = {}) {
    super();
    const o = { ...SCHEDULER_DEFAULTS, ...stripUndefined(options) };
    this.host = checkString('host', o.host);
    this.requestedPort = checkInteger('port', o.port, 0, 65535);
    this.heartbeatMs = checkInteger('heartbeatMs', o.heartbeatMs, 10, 3_600_000);
    this.maxPayload = checkInteger('maxPayload', o.maxPayload, 64, MAX_PAYLOAD_LIMIT);
    this.maxConnections = checkInteger('maxConnections', o.maxConnections, 1, 10_000_000);
    this.handshakeTimeoutMs = checkInteger('handshakeTimeoutMs', o.handshakeTimeoutMs, 1, 3_600_000);
    this.maxBufferedBytes = checkInteger('maxBufferedBytes', o.maxBufferedBytes, 1024, Number.MAX_SAFE_INTEGER);
    this.name = checkString('name', options.name ?? `taskwire-${randomBytes(4).toString('hex')}`);
    this.tokenDigest = options.token === undefined ? null : digest(checkString('token', options.token));
    this.core = new SchedulerCore<Handle>(this.output(), {
      timeoutMs: checkInteger('timeoutMs', o.timeoutMs, 0, 0xffff_ffff),
      maxAttempts: checkInteger('maxAttempts', o.maxAttempts, 1, 1000),
      backoffMs: checkInteger('backoffMs', o.backoffMs, 1, 0xffff_ffff),
      maxQueued: checkInteger('maxQueued', o.maxQueued, 0, Number.MAX_SAFE_INTEGER),
      maxPendingPerClient: checkInteger('maxPendingPerClient', o.maxPendingPerClient, 1, Number.MAX_SAFE_INTEGER),
      deadLetterLimit: checkInteger('deadLetterLimit', o.deadLetterLimit, 0, 1_000_000),
    });
    this.server = net.createServer((socket) => this.accept(socket));
    // Accept failures (EMFILE...) are transient; they must not become an unhandled 'error' event.
    this.server.on('error', (err: NodeJS.ErrnoException) => {
      if (this.boundPort) this.emit('peerError', { remote: '-', code: err.code ?? 'E_ACCEPT', message: err.message });
    });
  }

  /** The bound port: the real one even when the scheduler was created with port 0. */
  get port(): number {
    return this.boundPort || this.requestedPort;
  }

  /** Starts listening; resolves with the bound address. */
  listen(): Promise<{ host: string; port: number }> {
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
          setInterval(() => this.core.heartbeat(), this.heartbeatMs),
        );
        for (const timer of this.timers) timer.unref();
        const address = { host: this.host, port: this.boundPort };
        this.emit('listening', address);
        resolve(address);
      });
    });
  }

  stats(): SchedulerStats {
    return { ...this.core.stats(), connections: this.peers.size };
  }

  /** The most recent failed tasks (bounded by deadLetterLimit), oldest first. */
  deadLetters(): DeadLetter[] {
    return this.core.deadLetters();
  }

  /**
   * Shuts down: stops accepting connections and submissions (refused with E_SHUTDOWN), lets queued and running
   * tasks finish for up to `graceMs`, then fails whatever is left with E_SHUTDOWN, closes every connection with
   * an ERROR E_SHUTDOWN frame and resolves when the server is fully closed.
   */
  close(options: CloseOptions = {}): Promise<void> {
    this.closing ??= this.shutdown(options.graceMs ?? 0);
    return this.closing;
  }

  private async shutdown(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
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
    await closed;
    this.emit('close');
  }

  // ---- connections ---------------------------------------------------------------------------------------------

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    // Until it has said hello, a peer may only send a HELLO: anything longer than the longest HELLO is refused
    // at its header, so unauthenticated peers cannot make the scheduler buffer maxPayload bytes each.
    const conn = new TcpConnection(socket, {
      maxPayload: Math.min(MAX_HELLO_PAYLOAD, this.maxPayload),
      maxBufferedBytes: this.maxBufferedBytes,
    });
    if (this.peers.size >= this.maxConnections) {
      conn.close(new TaskwireError(ErrorCode.TOO_MANY_CONNECTIONS, `the scheduler is at its limit of ${this.maxConnections} connections`));
      return;
    }
    const peer: Peer = { conn, record: null, handshakeTimer: null };
    // A peer that connects and never says hello (or stalls mid-frame) must not hold a connection forever.
    peer.handshakeTimer = setTimeout(() => {
      conn.close(new TaskwireError(ErrorCode.TIMEOUT, `no HELLO within ${this.handshakeTimeoutMs} ms`));
    }, this.handshakeTimeoutMs);
    peer.handshakeTimer.unref();
    this.peers.add(peer);
    conn.onFrame = (cmd, buf, start, end) => this.frame(peer, cmd, buf, start, end);
    conn.onClose = (info) => {
      this.peers.delete(peer);
      if (peer.handshakeTimer) clearTimeout(peer.handshakeTimer);
      const code = (info.error as { code?: unknown } | undefined)?.code;
      if (info.error && typeof code === 'string' && code.startsWith('E_') && code !== ErrorCode.SHUTDOWN) {
        this.emit('peerError', { remote: conn.remote, code, message: info.error.message });
      }
      if (peer.record) this.core.lost(peer.record, info.error ? info.error.message : 'connection closed');
    };
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
      if (cmd !== Cmd.SUBMIT) throw wrongCommand(cmd, 'client');
      const submit = decodeSubmit(buf, start, end);
      return this.core.submit(record, submit.requestId, submit.type, submit, submit.options);
    }
    if (cmd === Cmd.RESULT) {
      const result = decodeResult(buf, start, end);
      const error = this.core.result(record, result.taskId, result.attempt, result);
      if (error) this.reject(peer, error);
      return;
    }
    if (cmd === Cmd.READY) {
      const ready = decodeReady(buf, start, end);
      this.core.ready(record, ready.concurrency, ready.types);
      if (this.listenerCount('workerReady') > 0) {
        this.emit('workerReady', { ...info(peer), concurrency: ready.concurrency, types: record.types });
      }
      return;
    }
    throw wrongCommand(cmd, 'worker');
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
    peer.conn.maxPayload = this.maxPayload;
    const name = hello.name || peer.conn.remote;
    peer.record = hello.role === Role.CLIENT ? this.core.addClient(peer, name) : this.core.addWorker(peer, name);
    writeHello(peer.conn.frames(), {
      version: PROTOCOL_VERSION,
      role: Role.SCHEDULER,
      heartbeatMs: this.heartbeatMs,
      name: this.name,
      token: '',
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
  private output(): CoreOutput<Handle> {
    const has = (event: keyof SchedulerEvents): boolean => this.listenerCount(event) > 0;
    return {
      sendTask: (worker, task) => {
        writeTask(worker.handle.conn.frames(), task.id, task.attempt, task.type, task.body);
        return true;
      },
      sendCancel: (worker, taskId, attempt, code, message) =>
        writeCancel(worker.handle.conn.frames(), taskId, attempt, code, message),
      sendCompleted: (client, requestId, { buf, bodyStart, bodyEnd }) =>
        writeCompleted(client.handle.conn.frames(), requestId, buf, bodyStart, bodyEnd),
      sendFailed: (client, requestId, code, message) =>
        writeFailed(client.handle.conn.frames(), requestId, code, message),
      sendKeepalive: (peer) => peer.handle.conn.send(encodeKeepalive()),
      closePeer: (peer, error) => peer.handle.conn.close(error),
      taskQueued: (taskId, type, client) =>
        has('taskQueued') && this.emit('taskQueued', { taskId, type, attempt: 0, clientId: client.id, workerId: null }),
      taskDispatched: (task) => has('taskDispatched') && this.emit('taskDispatched', taskEvent(task)),
      taskCompleted: (task, worker) =>
        has('taskCompleted') && this.emit('taskCompleted', { ...taskEvent(task), workerId: worker.id }),
      taskFailed: (task, code, message) =>
        has('taskFailed') && this.emit('taskFailed', { ...taskEvent(task), code, message }),
      taskRequeued: (task, worker, reason) =>
        has('taskRequeued') && this.emit('taskRequeued', { ...taskEvent(task), fromWorkerId: worker.id, reason }),
      peerLeft: (peer, reason, requeued) =>
        has('peerLeft') && this.emit('peerLeft', { ...info(peer.handle), reason, requeued }),
    };
  }
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
    clientId: task.client?.id ?? null,
    workerId: task.worker?.id ?? null,
  };
}

function wrongCommand(cmd: number, role: string): ProtocolError {
  return new ProtocolError(`a ${role} may not send ${CMD_NAMES[cmd] ?? cmd}`);
}

/** Creates a scheduler; call listen() to start it. */
export function createScheduler(options?: SchedulerOptions): Scheduler {
  return new Scheduler(options);
}
