// What every transport's connection shares: frames written during a turn leave in one send at its end, a high-water
// mark with its drain, pausing reads, slow consumers dropped, and the close that sends an ERROR frame first. A
// transport says only how bytes leave and how many wait (TcpConnection, WsConnection).

import { ErrorCode, ProtocolError, TaskwireError } from '../errors.js';
import { FrameDecoder, type FrameHandler, FrameWriter, MAX_SLAB } from '../protocol/frame.js';
import { isKnownCommand, writeError } from '../protocol/index.js';
import type { ByteBudget } from './budget.js';
import type { CloseInfo, Connection } from './connection.js';

export interface FramedOptions {
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

const noop = (): void => {};

/** What frames() returns once a connection is closing: cleared on every call, never sent. */
const SINK = new FrameWriter();

export abstract class FramedConnection implements Connection {
  abstract readonly remote: string;
  abstract readonly transport: string | undefined;
  onFrame: FrameHandler = noop;
  onSkipped: (cmd: number, head: Buffer, length: number) => void = noop;
  onClose: (info: CloseInfo) => void = noop;
  onDrain: () => void = noop;
  onRead: () => void = noop;
  protected readonly decoder: FrameDecoder;
  protected readonly out = new FrameWriter();
  protected readonly highWaterBytes: number;
  protected readonly slowConsumerMs: number;
  /** close() has begun, or the transport failed: nothing more is sent. */
  protected ending = false;
  /** The connection is gone (onClose was called). */
  protected done = false;
  protected closeError: Error | undefined;
  /** Bytes handed to the transport in all, as they go on the wire: what the peer took is this minus unsent(). */
  protected sent = 0;
  /** For a transport's send: once every byte has gone, a saturated connection tells its owner. */
  protected readonly afterSend = (): void => this.drained();
  /** Whether this connection is in this turn's flush list. */
  private queued = false;
  /** Reasons to stop reading (see pauseReading()); the transport is paused while there is one. */
  private pauses = 0;
  /** `saturated` was seen true: onDrain is owed once the transport has every byte. */
  private drainOwed = false;
  /** Bytes the peer had taken at the last progress check, and when that last grew. */
  private taken = 0;
  private progressAt = 0;

  constructor(options: FramedOptions) {
    this.highWaterBytes = options.highWaterBytes ?? Infinity;
    this.slowConsumerMs = options.slowConsumerMs ?? Infinity;
    this.decoder = new FrameDecoder((cmd, buf, start, end) => this.onFrame(cmd, buf, start, end), {
      maxPayload: options.maxPayload,
      isKnownCommand,
      skippable: options.skippable,
      onSkipped: (cmd, head, length) => this.onSkipped(cmd, head, length),
      budget: options.budget,
    });
  }

  /** Bytes handed to the transport that the operating system has not taken yet. */
  protected abstract unsent(): number;
  /**
   * Sends whole frames; calls afterSend once they have all been handed over. Returns whether `bytes` were
   * copied, so that the writer's slab may be written over at once.
   */
  protected abstract transmit(bytes: Buffer): boolean;
  /** Ends the transport after `rest`, the last frames (an ERROR frame among them, if closed with an error). */
  protected abstract shut(rest: Buffer | null, error: (Error & { code?: string }) | undefined): void;
  /** Drops the transport at once, for a peer that reads nothing. */
  protected abstract abort(): void;
  protected abstract pauseSource(): void;
  protected abstract resumeSource(): void;

  get closed(): boolean {
    return this.ending || this.done;
  }

  get maxPayload(): number {
    return this.decoder.maxPayload;
  }

  set maxPayload(bytes: number) {
    this.decoder.maxPayload = bytes;
  }

  /** Commands whose oversized frames are skipped (see DecoderOptions.skippable); may be changed between frames. */
  set skippable(headOf: (cmd: number) => number) {
    this.decoder.skippable = headOf;
  }

  /** The error for a frame over maxPayload that is not skipped; may be changed between frames. */
  set frameTooLarge(describe: (cmd: number, length: number, maxPayload: number) => Error) {
    this.decoder.tooLarge = describe;
  }

  abstract set budget(budget: ByteBudget | null);

  get pendingBytes(): number {
    return this.unsent() + this.out.length;
  }

  /**
   * True while more than highWaterBytes wait to be sent. Reading it true obliges the connection to call onDrain
   * once the transport has taken every byte, so an owner that stops feeding a saturated peer learns when to resume.
   */
  get saturated(): boolean {
    if (this.unsent() + this.out.length <= this.highWaterBytes) return false;
    if (!this.ending && !this.done) this.drainOwed = true;
    return true;
  }

  /** Whether reading is paused, by pauseReading() or by the transport while it waits for memory. */
  get readPaused(): boolean {
    return this.pauses > 0;
  }

  /** Stops reading until as many resumeReading() calls: TCP then pushes back on the sender. */
  pauseReading(): void {
    if (this.pauses++ === 0) this.pauseSource();
  }

  resumeReading(): void {
    if (this.pauses === 0) return;
    if (--this.pauses === 0 && !this.done) this.resumeSource();
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
    if (!this.ending) this.push(frame);
  }

  close(error?: Error & { code?: string }): void {
    if (this.ending || this.done) return;
    this.ending = true;
    this.drainOwed = false;
    if (error) {
      this.closeError = error;
      writeError(this.out, error.code ?? ErrorCode.PROTOCOL, error.message); // after every frame already written
    }
    this.shut(this.out.take(), error);
  }

  /** @internal Called once per turn in which frames() was: hands the turn's bytes to the transport at once. */
  flush(): void {
    this.queued = false;
    if (!this.ending && !this.done) this.writePending();
    else this.out.clear();
  }

  /** @internal Called every second for connections with bytes waiting: drops a peer that takes none. */
  checkProgress(now: number): boolean {
    const waiting = this.unsent();
    const taken = this.sent - waiting;
    // Only growth counts: bytes the transport sends on its own (a WebSocket pong) lower `taken` and must not
    // pass for the peer reading.
    const moved = taken > this.taken;
    this.taken = taken;
    if (moved || waiting === 0) {
      this.progressAt = now;
      return waiting > 0;
    }
    if (now - this.progressAt < this.slowConsumerMs) return true;
    this.close(new TaskwireError(ErrorCode.SLOW_CONSUMER, `the peer read none of ${waiting} waiting bytes for ${this.slowConsumerMs} ms`));
    this.abort(); // it does not read: the ERROR frame above would only wait behind the backlog
    return false;
  }

  /** The transport failed: nothing more is sent, what waits is dropped; onClose follows when it is gone. */
  protected failing(): void {
    this.ending = true;
    this.drainOwed = false;
    this.out.clear();
  }

  /** The transport is gone: called once, from its close event. */
  protected finish(): void {
    if (this.done) return;
    this.done = true;
    this.drainOwed = false;
    this.stopReading();
    watched.delete(this);
    this.onClose(this.closeError ? { error: this.closeError } : {});
  }

  protected stopReading(): void {
    this.decoder.stop();
  }

  /** Sends bytes, and watches the peer for taking them if it has a slow-consumer bound. */
  protected push(bytes: Buffer): boolean {
    const copied = this.transmit(bytes);
    if (this.slowConsumerMs !== Infinity && !watched.has(this) && this.unsent() > 0) {
      this.taken = this.sent - this.unsent();
      this.progressAt = Date.now();
      watch(this);
    }
    return copied;
  }

  private writePending(): void {
    const bytes = this.out.take();
    if (!bytes) return;
    const copied = this.push(bytes);
    // Once nothing refers to the slab's bytes any more (they were copied, or the transport took them at once),
    // it is written from its start again. Without this a busy connection takes a new 64 KiB slab every few turns:
    // 305 against 223 ns of CPU per frame at 256 frames a turn over TCP (medians of 8 runs).
    const waiting = this.unsent();
    if (copied || waiting === 0) this.out.rewind();
    if (this.drainOwed && waiting === 0) this.drained();
  }

  private drained(): void {
    if (!this.drainOwed || this.unsent() > 0 || this.out.length > this.highWaterBytes) return;
    this.drainOwed = false;
    if (!this.ending && !this.done) this.onDrain();
  }
}

/** An error thrown while handling a peer's bytes, as the ERROR frame that closes its connection. */
export function asProtocolError(err: unknown): Error & { code: string } {
  if (err instanceof TaskwireError) return err;
  // A bug on this side must not take the process down; the peer gets a reason and the others carry on.
  const message = err instanceof Error ? err.message : String(err);
  return new ProtocolError(`internal error while handling a frame: ${message}`);
}

/** Connections with bytes waiting and a slow-consumer bound, checked once a second while there are any. */
const watched = new Set<FramedConnection>();
let watchTimer: NodeJS.Timeout | null = null;

function watch(conn: FramedConnection): void {
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
 * Connections written to in this turn; one setImmediate flushes them all, with one send each of the turn's
 * bytes. A Buffer and a corked write() per frame cost 393 ns of CPU per frame at 256 TASK frames a turn on one
 * TCP connection and 1,320 ns at 16; this way 223 and 988 (medians of 8 runs of a send-path microbenchmark).
 */
const dirty: FramedConnection[] = [];
function flushAll(): void {
  for (let i = 0; i < dirty.length; i++) dirty[i]!.flush();
  dirty.length = 0;
}
