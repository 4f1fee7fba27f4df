// The scheduler's I/O shell: accepts connections, runs the handshake, decodes frames into core calls and
// turns the core's answers into frames and public events.

import { EventEmitter } from 'node:events';
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { ErrorCode, ProtocolError, TaskwireError } from '../errors.js';
import { checkInteger, checkString, stripUndefined } from '../options.js';
import { DEFAULT_MAX_PAYLOAD, MAX_PAYLOAD_LIMIT } from '../protocol/frame.js';
import {
  CMD_NAMES,
  Cmd,
  PROTOCOL_VERSION,
  Role,
  decodeError,
  decodeHello,
  decodeReady,
  decodeResult,
  decodeSubmit,
  encodeCompleted,
  encodeFailed,
  encodeHello,
  encodeKeepalive,
  encodeTask,
} from '../protocol/messages.js';
import type { Connection } from '../transport/connection.js';
import { TcpConnection } from '../transport/tcp.js';
import { SchedulerCore, type CoreOutput, type CoreStats, type PeerRecord, type Task } from './core.js';

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
}

export const SCHEDULER_DEFAULTS = {
  host: '127.0.0.1',
  port: 9001,
  heartbeatMs: 5000,
  maxPayload: DEFAULT_MAX_PAYLOAD,
} as const;

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
  taskRequeued: [task: TaskEvent & { fromWorkerId: number }];
  close: [];
}

export interface SchedulerStats extends CoreStats {
  connections: number;
}

/** Per-connection state: before the handshake `record` is null. */
interface Peer {
  readonly conn: Connection;
  record: PeerRecord<Peer> | null;
}

type Handle = Peer;

export class Scheduler extends EventEmitter<SchedulerEvents> {
  readonly host: string;
  readonly name: string;
  readonly heartbeatMs: number;
  private readonly requestedPort: number;
  private readonly maxPayload: number;
  private readonly core: SchedulerCore<Handle>;
  private readonly peers = new Set<Peer>();
  private readonly server: net.Server;
  private timer: NodeJS.Timeout | null = null;
  private boundPort = 0;
  private closing: Promise<void> | null = null;

  constructor(options: SchedulerOptions = {}) {
    super();
    const o = { ...SCHEDULER_DEFAULTS, ...stripUndefined(options) };
    this.host = checkString('host', o.host);
    this.requestedPort = checkInteger('port', o.port, 0, 65535);
    this.heartbeatMs = checkInteger('heartbeatMs', o.heartbeatMs, 10, 3_600_000);
    this.maxPayload = checkInteger('maxPayload', o.maxPayload, 64, MAX_PAYLOAD_LIMIT);
    this.name = checkString('name', options.name ?? `taskwire-${randomBytes(4).toString('hex')}`);
    this.core = new SchedulerCore<Handle>(this.output());
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
        this.timer = setInterval(() => this.core.tick(Date.now()), this.heartbeatMs);
        this.timer.unref();
        const address = { host: this.host, port: this.boundPort };
        this.emit('listening', address);
        resolve(address);
      });
    });
  }

  stats(): SchedulerStats {
    return { ...this.core.stats(), connections: this.peers.size };
  }

  /**
   * Stops accepting, fails the tasks still owed to clients with E_SHUTDOWN, closes every connection and
   * resolves when the server is fully closed.
   */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      if (this.timer) clearInterval(this.timer);
      this.server.close(() => {
        this.emit('close');
        resolve();
      });
      this.core.shutdown('the scheduler is shutting down');
      for (const peer of this.peers) peer.conn.close();
    });
    return this.closing;
  }

  // ---- connections ---------------------------------------------------------------------------------------------

  private accept(socket: net.Socket): void {
    if (this.closing) {
      socket.destroy();
      return;
    }
    const conn = new TcpConnection(socket, { maxPayload: this.maxPayload });
    const peer: Peer = { conn, record: null };
    this.peers.add(peer);
    conn.onFrame = (cmd, payload) => this.frame(peer, cmd, payload);
    conn.onClose = (info) => {
      this.peers.delete(peer);
      if (info.error && 'code' in info.error && typeof info.error.code === 'string' && info.error.code.startsWith('E_')) {
        this.emit('peerError', { remote: conn.remote, code: info.error.code, message: info.error.message });
      }
      if (peer.record) this.core.lost(peer.record, info.error ? info.error.message : 'connection closed');
    };
  }

  private frame(peer: Peer, cmd: number, payload: Buffer): void {
    const record = peer.record;
    if (!record) return this.handshake(peer, cmd, payload);
    this.core.seen(record);
    if (cmd === Cmd.HELLO) {
      if (payload.length !== 0) throw new ProtocolError('HELLO with a payload after the handshake');
      return; // keepalive
    }
    if (cmd === Cmd.ERROR) {
      // The peer is leaving and says why; answering with an ERROR of our own would be noise.
      const { code, message } = decodeError(payload);
      this.emit('peerError', { remote: peer.conn.remote, code, message: `peer reported: ${message}` });
      return peer.conn.close();
    }
    if (record.kind === 'client') {
      if (cmd !== Cmd.SUBMIT) throw wrongCommand(cmd, 'client');
      const submit = decodeSubmit(payload);
      const error = this.core.submit(record, submit.requestId, submit.type, submit.body);
      if (error) this.reject(peer, error);
      return;
    }
    if (cmd === Cmd.RESULT) {
      const result = decodeResult(payload);
      const error = this.core.result(record, result.taskId, result.attempt, result);
      if (error) this.reject(peer, error);
      return;
    }
    if (cmd === Cmd.READY) {
      const ready = decodeReady(payload);
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
    const name = hello.name || peer.conn.remote;
    peer.record = hello.role === Role.CLIENT ? this.core.addClient(peer, name) : this.core.addWorker(peer, name);
    peer.conn.send(
      encodeHello({ version: PROTOCOL_VERSION, role: Role.SCHEDULER, heartbeatMs: this.heartbeatMs, name: this.name, token: '' }),
    );
    this.emit(peer.record.kind === 'client' ? 'clientJoined' : 'workerJoined', info(peer));
  }

  private reject(peer: Peer, error: TaskwireError): void {
    if (peer.record) this.core.lost(peer.record, error.message);
    peer.conn.close(error);
  }

  /** The core's outputs, bound to this shell's connections and events. */
  private output(): CoreOutput<Handle> {
    const has = (event: keyof SchedulerEvents): boolean => this.listenerCount(event) > 0;
    return {
      sendTask: (worker, task) => worker.handle.conn.send(encodeTask(task.id, task.attempt, task.type, task.body)),
      sendCompleted: (client, requestId, body) => client.handle.conn.send(encodeCompleted(requestId, body)),
      sendFailed: (client, requestId, code, message) =>
        client.handle.conn.send(encodeFailed(requestId, code, message)),
      sendKeepalive: (peer) => peer.handle.conn.send(encodeKeepalive()),
      closePeer: (peer, error) => peer.handle.conn.close(error),
      taskQueued: (task) => has('taskQueued') && this.emit('taskQueued', taskEvent(task)),
      taskDispatched: (task) => has('taskDispatched') && this.emit('taskDispatched', taskEvent(task)),
      taskCompleted: (task, worker) =>
        has('taskCompleted') && this.emit('taskCompleted', { ...taskEvent(task), workerId: worker.id }),
      taskFailed: (task, code, message) =>
        has('taskFailed') && this.emit('taskFailed', { ...taskEvent(task), code, message }),
      taskRequeued: (task, worker) =>
        has('taskRequeued') && this.emit('taskRequeued', { ...taskEvent(task), fromWorkerId: worker.id }),
      peerLeft: (peer, reason, requeued) =>
        has('peerLeft') && this.emit('peerLeft', { ...info(peer.handle), reason, requeued }),
    };
  }
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
