// The one interface every transport implements: frames in, frames out, one close. TCP today, WebSocket later.

import type { FrameHandler, FrameWriter } from '../protocol/frame.js';

/** Why a connection ended, as seen by its owner. */
export interface CloseInfo {
  /** Set when this side closed it because of an error (e.g. E_PROTOCOL), or when the socket failed. */
  error?: Error;
}

export interface Connection {
  /** "host:port" of the other side, for logs and events. */
  readonly remote: string;
  readonly closed: boolean;
  /** Bytes written or sent but not yet handed to the operating system. */
  readonly pendingBytes: number;
  /** Largest payload accepted from now on; a larger declared length closes the connection (E_FRAME_TOO_LARGE). */
  maxPayload: number;
  /**
   * Called once per decoded frame, with its payload as buf[start, end) (see FrameHandler). Exceptions thrown
   * here close the connection with E_PROTOCOL.
   */
  onFrame: FrameHandler;
  /** Called exactly once, when the connection is gone. */
  onClose: (info: CloseInfo) => void;
  /**
   * The writer for outgoing frames: what is written to it in this event-loop turn leaves in one write at the
   * end of the turn. Once the connection is closing, the writer returned discards what is written to it.
   */
  frames(): FrameWriter;
  /** Queues a prebuilt frame, in order with what is written to frames(). */
  send(frame: Buffer): void;
  /**
   * Ends the connection after queued frames are flushed. With an error, an ERROR frame carrying its code
   * and message is sent first so the peer learns why.
   */
  close(error?: Error & { code?: string }): void;
}
