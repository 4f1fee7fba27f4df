// One connection from a client or worker to the scheduler: connect, exchange hellos, keep alive, report why
// it ended. The client and the worker build on it so the handshake and liveness rules live in one place.

import { ErrorCode, ProtocolError, TaskwireError } from '../errors.js';
import {
  CMD_NAMES,
  Cmd,
  PROTOCOL_VERSION,
  Role,
  decodeError,
  decodeHello,
  encodeKeepalive,
  skippedHead,
  writeHello,
} from '../protocol/index.js';
import type { FrameHandler, FrameWriter } from '../protocol/frame.js';
import type { Hello, HelloSettings } from '../protocol/index.js';
import type { Connection } from './connection.js';
import { connectTcp } from './tcp.js';

export interface SessionOptions {
  host: string;
  port: number;
  role: typeof Role.CLIENT | typeof Role.WORKER;
  name: string;
  maxPayload?: number;
  /** Shared secret for a scheduler that requires one. */
  token?: string;
  /** How long to wait for the scheduler's hello. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Settings for this side's hello (a worker says whether its handlers may block it). */
  settings?: HelloSettings;
  /**
   * Opens the connection, for a transport other than TCP to host:port (a WebSocket URL, an in-process pair);
   * `where` names the scheduler in messages. It rejects with E_CONNECT when the scheduler cannot be reached.
   */
  dial?: { where: string; open: (options: DialOptions) => Promise<Connection> };
}

/** What a transport needs to know to open a connection for a session. */
export interface DialOptions {
  maxPayload?: number;
  skippable: (cmd: number) => number;
}

/** Keepalive intervals the scheduler may stay silent before this side gives up on it. */
const DEAD_AFTER_INTERVALS = 3;

export class Session {
  /** The scheduler's name, from its hello. */
  readonly schedulerName: string;
  readonly heartbeatMs: number;
  /** The largest payload the scheduler accepts, from its hello; undefined for a scheduler of version 1. */
  readonly schedulerMaxPayload: number | undefined;
  /** The protocol version the scheduler answered in: this side's, or older. */
  readonly schedulerVersion: number;
  /** Frames other than HELLO and ERROR, after the handshake. */
  onFrame: FrameHandler = () => {};
  /** A frame over this side's maxPayload that was skipped, with its leading bytes (see skippedHead()). */
  onSkipped: (cmd: number, head: Buffer, length: number) => void = () => {};
  /** Called once when the session ends; `error` says why, absent after a clean close(). */
  onClose: (error: TaskwireError | null) => void = () => {};
  private readonly conn: Connection;
  private readonly timer: NodeJS.Timeout;
  private active = true;
  private missed = 0;
  private ended = false;
  private closedByUs = false;

  private constructor(conn: Connection, hello: Hello) {
    this.conn = conn;
    this.schedulerName = hello.name;
    this.heartbeatMs = hello.heartbeatMs || 5000;
    this.schedulerMaxPayload = hello.settings?.maxPayload;
    this.schedulerVersion = hello.version;
    conn.onFrame = (cmd, buf, start, end) => this.frame(cmd, buf, start, end);
    conn.onSkipped = (cmd, head, length) => {
      this.active = true;
      this.onSkipped(cmd, head, length);
    };
    conn.onClose = (info) => this.end(info.error);
    // Unref'd: liveness checks alone must not keep a process alive; the socket itself does.
    this.timer = setInterval(() => this.tick(), this.heartbeatMs);
    this.timer.unref();
  }

  get remote(): string {
    return this.conn.remote;
  }

  get closed(): boolean {
    return this.ended || this.conn.closed;
  }

  /** Connects and completes the handshake. Rejects with E_CONNECT, E_VERSION, E_TIMEOUT or the scheduler's code. */
  static async open(options: SessionOptions): Promise<Session> {
    const dial = { maxPayload: options.maxPayload, skippable: skippedHead };
    const conn = options.dial ? await options.dial.open(dial) : await connectTcp(options.host, options.port, dial);
    const where = options.dial?.where ?? `${options.host}:${options.port}`;
    return new Promise<Session>((resolve, reject) => {
      const timeout = setTimeout(() => {
        conn.close(new TaskwireError(ErrorCode.TIMEOUT, 'no HELLO from the scheduler in time'));
      }, options.handshakeTimeoutMs ?? 10_000);
      let failure: TaskwireError | null = null;
      conn.onFrame = (cmd, buf, start, end) => {
        try {
          if (cmd === Cmd.ERROR) {
            const { code, message } = decodeError(buf, start, end);
            failure = new TaskwireError(code, `the scheduler at ${where} refused the connection: ${message}`);
            return conn.close();
          }
          if (cmd !== Cmd.HELLO || end === start) {
            throw new ProtocolError(`expected the scheduler's HELLO, got ${CMD_NAMES[cmd] ?? cmd}`);
          }
          const hello = decodeHello(buf, start, end)!; // throws E_VERSION for another protocol version
          if (hello.role !== Role.SCHEDULER) throw new ProtocolError('the peer is not a scheduler');
          clearTimeout(timeout);
          resolve(new Session(conn, hello));
        } catch (err) {
          failure = err as TaskwireError;
          conn.close(failure);
        }
      };
      conn.onClose = (info) => {
        clearTimeout(timeout);
        reject(
          failure ??
            notAScheduler(where, info.error) ??
            (info.error instanceof TaskwireError
              ? info.error
              : handshakeLost(where, info.error, conn.transport === 'tls')),
        );
      };
      writeHello(conn.frames(), {
        version: PROTOCOL_VERSION,
        role: options.role,
        heartbeatMs: 0,
        name: options.name,
        token: options.token ?? '',
        settings: options.settings ?? {},
      });
    });
  }

  /** The connection's frame writer; see Connection.frames(). */
  frames(): FrameWriter {
    return this.conn.frames();
  }

  send(frame: Buffer): void {
    this.conn.send(frame);
  }

  /** Ends the session; with an error, the scheduler is told why. */
  close(error?: TaskwireError): void {
    this.closedByUs = true;
    this.conn.close(error);
  }

  private frame(cmd: number, buf: Buffer, start: number, end: number): void {
    this.active = true;
    if (cmd === Cmd.HELLO) {
      if (end !== start) throw new ProtocolError('HELLO with a payload after the handshake');
      return; // keepalive
    }
    if (cmd === Cmd.ERROR) {
      const { code, message } = decodeError(buf, start, end);
      this.end(new TaskwireError(code, `the scheduler closed the connection: ${message}`));
      this.conn.close();
      return;
    }
    this.onFrame(cmd, buf, start, end);
  }

  private tick(): void {
    if (this.active) {
      this.active = false;
      this.missed = 0;
    } else if (++this.missed >= DEAD_AFTER_INTERVALS) {
      const error = new TaskwireError(ErrorCode.TIMEOUT, `the scheduler sent nothing for ${this.missed} keepalive intervals`);
      this.end(error);
      this.conn.close(error);
      return;
    }
    this.conn.send(encodeKeepalive());
  }

  private end(error: Error | undefined | null): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.timer);
    let reason: TaskwireError | null = null;
    if (error instanceof TaskwireError) reason = error;
    else if (error) reason = new TaskwireError(ErrorCode.DISCONNECTED, `connection to the scheduler lost: ${error.message}`, { cause: error });
    else if (!this.closedByUs) reason = new TaskwireError(ErrorCode.DISCONNECTED, 'the scheduler closed the connection');
    this.onClose(reason);
  }
}

/**
 * Under TLS 1.3 the server checks a client's certificate after the client's side of the handshake has completed,
 * so a refused certificate shows up here rather than in connectTls(): as an alert when there was none (named,
 * E_CONNECT like other TLS failures), or as a bare close when Node's server found it untrusted.
 */
function handshakeLost(where: string, error: Error | undefined, overTls: boolean): TaskwireError {
  const message = `the scheduler at ${where} closed the connection during the handshake`;
  if (!error) {
    // A TLS listener drops a plain HELLO without a word (no alert), so that is the likeliest cause to name.
    if (!overTls) return new TaskwireError(ErrorCode.DISCONNECTED, `${message} (if it listens with TLS, connect with the tls option, --tls)`);
    return new TaskwireError(ErrorCode.CONNECT, `${message}: over TLS this is how it refuses a client certificate it does not trust (or a missing one)`);
  }
  const code = (error as NodeJS.ErrnoException).code ?? '';
  const tlsAlert = code.startsWith('ERR_SSL_');
  return new TaskwireError(tlsAlert ? ErrorCode.CONNECT : ErrorCode.DISCONNECTED, `${message}: ${error.message}`, { cause: error });
}

/** The peer answered with bytes that are no frame (see TcpConnection's `received`): say what it is instead. */
function notAScheduler(where: string, error: Error | undefined): TaskwireError | undefined {
  const received = (error as { received?: unknown } | undefined)?.received;
  if (!Buffer.isBuffer(received) || received.length === 0) return undefined;
  const line = received.toString('latin1').split(/\r?\n/)[0]!.replace(/[^\x20-\x7e]/g, '?');
  return new TaskwireError(ErrorCode.CONNECT, `the server at ${where} is not a taskwire scheduler (it answered ${JSON.stringify(line)})`, { cause: error });
}
