// Frames over a TCP socket: a FrameDecoder on the way in, a FrameWriter sent once per event-loop turn on the way out.

import net from 'node:net';
import tls from 'node:tls';
import { ErrorCode, ProtocolError, TaskwireError } from '../errors.js';
import { FrameDecoder, type FrameHandler, FrameWriter, MAX_SLAB } from '../protocol/frame.js';
import { isKnownCommand, writeError } from '../protocol/index.js';
import type { ByteBudget } from './budget.js';
import type { CloseInfo, Connection } from './connection.js';

export interface TcpOptions {
  maxPayload?: number;
  /** Commands whose frames over maxPayload are skipped (see DecoderOptions.skippable); reported to onSkipped. */
  skippable?: (cmd: number) => number;
  /** Where payloads that straddle reads take their memory from. Default: no limit. */
  budget?: ByteBudget | null;
  /**
   * Unsent bytes above which the connection reports itself `saturated`, so its owner stops feeding it until
   * onDrain. Default: no mark (never saturated).
   */
  highWaterBytes?: number;
  /**
   * A peer that has had bytes waiting for it and taken none of them for this long is dropped with
   * E_SLOW_CONSUMER. Default: never.
   */
  slowConsumerMs?: number;
}

/** How long close() waits for queued frames to flush before it destroys the socket. */
const CLOSE_FLUSH_MS = 2000;

const noop = (): void => {};

/** What frames() returns once a connection is closing: cleared on every call, never sent. */
const SINK = new FrameWriter();

export class TcpConnection implements Connection {
  readonly remote: string;
  /** 'tls' over a TLSSocket, for status pages and for the reasons given when a handshake is cut short. */
  readonly transport: string | undefined;
  onFrame: FrameHandler = noop;
  onSkipped: (cmd: number, head: Buffer, length: number) => void = noop;
  onClose: (info: CloseInfo) => void = noop;
  onDrain: () => void = noop;
  onRead: () => void = noop;
  private readonly socket: net.Socket;
  private readonly decoder: FrameDecoder;
  private readBudget: ByteBudget | null;
  private readonly highWaterBytes: number;
  private readonly slowConsumerMs: number;
  private readonly out = new FrameWriter();
  /** Whether this connection is in this turn's flush list. */
  private queued = false;
  private ending = false;
  private done = false;
  private closeError: Error | undefined;
  /** Reasons to stop reading (see pauseReading()); the socket is paused while there is one. */
  private pauses = 0;
  /** `saturated` was seen true: onDrain is owed once the kernel has every byte. */
  private drainOwed = false;
  /** Bytes handed to socket.write() in all; what the kernel took is this minus socket.writableLength. */
  private written = 0;
  /** Bytes the kernel had taken at the last progress check, and when that last grew. */
  private taken = 0;
  private progressAt = 0;
  private readonly afterWrite = (): void => this.drained();
  private readonly budgetGranted = (): void => this.retryBudget();

  constructor(socket: net.Socket, options: TcpOptions = {}) {
    this.socket = socket;
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.transport = socket instanceof tls.TLSSocket ? 'tls' : undefined;
    // Frames are small and latency matters more than packet count; batching is done per turn by the writer instead.
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    this.highWaterBytes = options.highWaterBytes ?? Infinity;
    this.slowConsumerMs = options.slowConsumerMs ?? Infinity;
    this.readBudget = options.budget ?? null;
    this.decoder = new FrameDecoder((cmd, buf, start, end) => this.onFrame(cmd, buf, start, end), {
      maxPayload: options.maxPayload,
      isKnownCommand,
      skippable: options.skippable,
      onSkipped: (cmd, head, length) => this.onSkipped(cmd, head, length),
      budget: options.budget,
    });
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (err) => {
      this.closeError ??= err;
    });
    socket.on('close', () => this.finish());
  }

  get closed(): boolean {
    return this.ending || this.done;
  }

  get maxPayload(): number {
    return this.decoder.maxPayload;
  }

  set maxPayload(bytes: number) {
    this.decoder.maxPayload = bytes;
  }

  /** The budget for payloads that straddle reads; may be swapped between frames (e.g. after a handshake). */
  set budget(budget: ByteBudget | null) {
    this.readBudget = budget;
    this.decoder.budget = budget;
  }

  /** Commands whose oversized frames are skipped (see DecoderOptions.skippable); may be changed between frames. */
  set skippable(headOf: (cmd: number) => number) {
    this.decoder.skippable = headOf;
  }

  /** The error for a frame over maxPayload that is not skipped; may be changed between frames. */
  set frameTooLarge(describe: (cmd: number, length: number, maxPayload: number) => Error) {
    this.decoder.tooLarge = describe;
  }

  get pendingBytes(): number {
    return this.socket.writableLength + this.out.length;
  }

  /**
   * True while more than highWaterBytes wait to be sent. Reading it true obliges the connection to call onDrain
   * once the kernel has taken every byte, so an owner that stops feeding a saturated peer learns when to resume.
   */
  get saturated(): boolean {
    if (this.socket.writableLength + this.out.length <= this.highWaterBytes) return false;
    if (!this.ending && !this.done) this.drainOwed = true;
    return true;
  }

  /** Whether reading is paused, by pauseReading() or while waiting for the read budget. */
  get readPaused(): boolean {
    return this.pauses > 0;
  }

  /** Stops reading until as many resumeReading() calls: TCP then pushes back on the sender. */
  pauseReading(): void {
    if (this.pauses++ === 0) this.socket.pause();
  }

  resumeReading(): void {
    if (this.pauses === 0) return;
    if (--this.pauses === 0 && !this.done) this.socket.resume();
  }

  frames(): FrameWriter {
    if (this.ending || this.done) {
      SINK.clear();
      return SINK;
    }
    if (!this.queued) {
      this.queued = true;
      if (dirty.length === 0) setImmediate(flushAll);
      dirty.push(this);
    }
    return this.out;
  }

  send(frame: Buffer): void {
    if (frame.length < MAX_SLAB) return this.frames().append(frame);
    // A large prebuilt frame is not worth copying: what is pending goes first, then the frame as it is.
    if (this.ending || this.done) return;
    this.writePending();
    if (!this.ending) this.write(frame);
  }

  close(error?: Error & { code?: string }): void {
    if (this.ending || this.done) return;
    this.ending = true;
    this.drainOwed = false;
    if (error) {
      this.closeError = error;
      writeError(this.out, error.code ?? ErrorCode.PROTOCOL, error.message); // after every frame already written
    }
    const rest = this.out.take();
    if (rest) this.socket.write(rest);
    this.stopReading();
    this.socket.end();
    // A peer that never reads could keep the socket half-closed forever; don't wait on it.
    setTimeout(() => this.socket.destroy(), CLOSE_FLUSH_MS).unref();
  }

  /** @internal Called once per turn in which frames() was: hands the turn's bytes to the socket in one write. */
  flush(): void {
    this.queued = false;
    if (!this.ending && !this.done) this.writePending();
    else this.out.clear();
  }

  /** @internal Called every second for connections with bytes waiting: drops a peer that takes none. */
  checkProgress(now: number): boolean {
    const taken = this.written - this.socket.writableLength;
    if (taken !== this.taken || this.socket.writableLength === 0) {
      this.taken = taken;
      this.progressAt = now;
      return this.socket.writableLength > 0;
    }
    if (now - this.progressAt < this.slowConsumerMs) return true;
    const waiting = this.socket.writableLength;
    this.close(new TaskwireError(ErrorCode.SLOW_CONSUMER, `the peer read none of ${waiting} waiting bytes for ${this.slowConsumerMs} ms`));
    this.socket.destroy(); // it does not read: the ERROR frame above would only wait behind the backlog
    return false;
  }

  private writePending(): void {
    const bytes = this.out.take();
    if (!bytes) return;
    this.write(bytes);
    // Nothing left unwritten: the write completed at once and the kernel has the bytes, so the slab can be
    // written from its start again. Without this a busy connection takes a new 64 KiB slab every few turns:
    // 305 against 223 ns of CPU per frame at 256 frames a turn (medians of 8 runs).
    if (this.socket.writableLength === 0) {
      this.out.rewind();
      if (this.drainOwed) this.drained();
    }
  }

  private write(bytes: Buffer): void {
    this.written += bytes.length;
    this.socket.write(bytes, this.afterWrite);
    if (this.socket.writableLength > 0 && this.slowConsumerMs !== Infinity && !watched.has(this)) {
      this.taken = this.written - this.socket.writableLength;
      this.progressAt = Date.now();
      watch(this);
    }
  }

  /** A write completed; once the kernel has every byte, a saturated connection tells its owner. */
  private drained(): void {
    if (!this.drainOwed || this.socket.writableLength > 0 || this.out.length > this.highWaterBytes) return;
    this.drainOwed = false;
    if (!this.ending && !this.done) this.onDrain();
  }

  private receive(chunk: Buffer): void {
    this.onRead();
    try {
      this.decoder.push(chunk);
      if (this.decoder.waiting) this.waitForBudget();
    } catch (err) {
      // The bytes that were no frame, for a client to say what it reached instead of a scheduler.
      this.close(Object.assign(asProtocolError(err), { received: Buffer.from(chunk.subarray(0, 64)) }));
    }
  }

  /** The decoder needs budget it was refused: stop reading until some is given back. */
  private waitForBudget(): void {
    this.pauseReading();
    this.readBudget!.wait(this.budgetGranted);
  }

  private retryBudget(): void {
    if (this.ending || this.done) return;
    try {
      this.decoder.retry();
    } catch (err) {
      this.close(asProtocolError(err));
      return;
    }
    if (this.decoder.waiting) this.readBudget!.wait(this.budgetGranted);
    else this.resumeReading();
  }

  private stopReading(): void {
    if (this.decoder.waiting) this.readBudget?.cancel(this.budgetGranted);
    this.decoder.stop();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.drainOwed = false;
    this.stopReading();
    watched.delete(this);
    this.onClose(this.closeError ? { error: this.closeError } : {});
  }
}

/** Connections with bytes waiting and a slow-consumer bound, checked once a second while there are any. */
const watched = new Set<TcpConnection>();
let watchTimer: NodeJS.Timeout | null = null;

function watch(conn: TcpConnection): void {
  watched.add(conn);
  if (watchTimer) return;
  watchTimer = setInterval(() => {
    const now = Date.now();
    for (const c of watched) if (!c.checkProgress(now)) watched.delete(c);
    if (watched.size === 0) {
      clearInterval(watchTimer!);
      watchTimer = null;
    }
  }, 1000);
  watchTimer.unref();
}

/**
 * Connections written to in this turn; one setImmediate flushes them all, with one write() each of the turn's
 * bytes. A Buffer and a corked write() per frame cost 393 ns of CPU per frame at 256 TASK frames a turn on one
 * connection and 1,320 ns at 16; this way 223 and 988 (medians of 8 runs of a send-path microbenchmark).
 */
const dirty: TcpConnection[] = [];
function flushAll(): void {
  for (let i = 0; i < dirty.length; i++) dirty[i]!.flush();
  dirty.length = 0;
}

function asProtocolError(err: unknown): Error & { code: string } {
  if (err instanceof TaskwireError) return err;
  // A bug on this side must not take the process down; the peer gets a reason and the others carry on.
  const message = err instanceof Error ? err.message : String(err);
  return new ProtocolError(`internal error while handling a frame: ${message}`);
}

/** Opens a TCP connection; rejects with E_CONNECT when the other side cannot be reached. */
export function connectTcp(host: string, port: number, options: TcpOptions = {}): Promise<TcpConnection> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    const onError = (err: NodeJS.ErrnoException): void => {
      socket.destroy();
      reject(
        new TaskwireError(
          ErrorCode.CONNECT,
          `cannot reach the scheduler at ${host}:${port}: ${err.code ?? err.message}`,
          { cause: err },
        ),
      );
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolve(new TcpConnection(socket, options));
    });
  });
}

/** TLS for a client or worker: true trusts the system's CAs; `ca` replaces them, `cert` and `key` identify this side. */
export type TlsClientOptions =
  | true
  | {
      ca?: string | Buffer;
      cert?: string | Buffer;
      key?: string | Buffer;
      servername?: string;
      /** Trust exactly the certificate with this SHA-256 fingerprint ('AB:CD:...'), whoever signed it, instead of a CA. */
      fingerprint256?: string;
    };

/**
 * Opens a TLS connection and resolves once the handshake is done, so a certificate the server presents and this side
 * rejects is an E_CONNECT naming the reason, not a connection lost later.
 */
export function connectTls(host: string, port: number, tlsOptions: TlsClientOptions, options: TcpOptions = {}): Promise<TcpConnection> {
  const o = tlsOptions === true ? {} : tlsOptions;
  // An IP address is not a valid SNI name (RFC 6066); the certificate is still checked against it.
  const servername = o.servername ?? (net.isIP(host) ? undefined : host);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      ...(servername === undefined ? {} : { servername }),
      ...(o.ca === undefined ? {} : { ca: o.ca }),
      ...(o.cert === undefined ? {} : { cert: o.cert }),
      ...(o.key === undefined ? {} : { key: o.key }),
      // A pinned certificate is checked below instead; it needs no CA and no name.
      ...(o.fingerprint256 === undefined ? {} : { rejectUnauthorized: false }),
    });
    const onError = (err: NodeJS.ErrnoException): void => {
      socket.destroy();
      const reason = err.code && !err.message.includes(err.code) ? `${err.message} (${err.code})` : err.message;
      reject(new TaskwireError(ErrorCode.CONNECT, `cannot reach the scheduler at ${host}:${port} over TLS: ${reason}`, { cause: err }));
    };
    socket.once('error', onError);
    socket.once('secureConnect', () => {
      if (o.fingerprint256 !== undefined) {
        const actual = socket.getPeerCertificate().fingerprint256;
        if (actual?.toUpperCase() !== o.fingerprint256.toUpperCase()) {
          return onError(Object.assign(new Error(`the certificate's fingerprint ${actual ?? '(none)'} is not the pinned one`), { code: 'ERR_TLS_PIN' }));
        }
      }
      socket.off('error', onError);
      resolve(new TcpConnection(socket, options));
    });
  });
}
