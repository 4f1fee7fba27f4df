// The one interface every transport implements: frames in, frames out, one close. TCP today, WebSocket later.

import type { FrameHandler, FrameWriter } from '../protocol/frame.js';
import type { ByteBudget } from './budget.js';

/** Why a connection ended, as seen by its owner. */
export interface CloseInfo {
  /** Set when this side closed it because of an error (e.g. E_PROTOCOL), or when the socket failed. */
  error?: Error;
}

export interface Connection {
  /** "host:port" of the other side, for logs and events. */
  readonly remote: string;
  /** The transport's name ('tcp', 'ws'...), for status pages; absent: 'tcp'. */
  readonly transport?: string;
  readonly closed: boolean;
  /** Bytes written or sent but not yet handed to the operating system. */
  readonly pendingBytes: number;
  /**
   * True while unsent bytes are above the connection's high-water mark: stop feeding the peer. Reading it true
   * makes the connection call onDrain once they have all gone.
   */
  readonly saturated: boolean;
  /**
   * Largest payload accepted from now on; a larger declared length closes the connection (E_FRAME_TOO_LARGE),
   * unless its command is skippable: then the frame is skipped and reported to onSkipped.
   */
  maxPayload: number;
  /** Commands whose frames over maxPayload are skipped: how many leading bytes to keep (see skippedHead()). */
  set skippable(headOf: (cmd: number) => number);
  /** The error for a frame over maxPayload that is not skipped. */
  set frameTooLarge(describe: (cmd: number, length: number, maxPayload: number) => Error);
  /** The memory that frames arriving over several reads take from; null for no limit. */
  set budget(budget: ByteBudget | null);
  /**
   * Called once per decoded frame, with its payload as buf[start, end) (see FrameHandler). Exceptions thrown
   * here close the connection with E_PROTOCOL.
   */
  onFrame: FrameHandler;
  /** Called for a frame over maxPayload of a command the connection skips: its leading bytes and length. */
  onSkipped: (cmd: number, head: Buffer, length: number) => void;
  /** Called once after `saturated` was seen true, when every unsent byte has been handed to the operating system. */
  onDrain: () => void;
  /** Called once per read, before its frames are decoded: one clock reading serves all of them. */
  onRead: () => void;
  /** Called exactly once, when the connection is gone. */
  onClose: (info: CloseInfo) => void;
  /**
   * The writer for outgoing frames: what is written to it in this event-loop turn leaves in one write at the
   * end of the turn. Once the connection is closing, the writer returned discards what is written to it.
   */
  frames(): FrameWriter;
  /** Queues a prebuilt frame, in order with what is written to frames(). */
  send(frame: Buffer): void;
  /** Stops reading until as many resumeReading() calls; the peer is then held back by the transport. */
  pauseReading(): void;
  resumeReading(): void;
  /** Whether reading is paused (by pauseReading(), or by the transport while it waits for memory). */
  readonly readPaused: boolean;
  /**
   * Ends the connection after queued frames are flushed. With an error, an ERROR frame carrying its code
   * and message is sent first so the peer learns why.
   */
  close(error?: Error & { code?: string }): void;
}
