// Frames on the wire are [cmd u8][payload length u32 BE][payload]; this module cuts a byte stream into them.

import { ErrorCode, ProtocolError } from '../errors.js';

export const HEADER_SIZE = 5;
/** The largest payload a receiver accepts unless configured otherwise: 16 MiB. */
export const DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024;
/** The u32 length field's ceiling; also the largest maxPayload that can be configured. */
export const MAX_PAYLOAD_LIMIT = 0xffff_ffff;

const EMPTY = Buffer.alloc(0);

/**
 * Receives one frame. Its payload is buf[start, end): a range of the chunk it arrived in, or of a copy when it
 * straddled chunks. The range is not a Buffer of its own: a view per frame (and another per body inside it) was
 * a visible share of the scheduler's CPU and garbage, so decoders read fields in place and a handler makes a
 * view only of what it keeps. The bytes stay valid after the call.
 */
export type FrameHandler = (cmd: number, buf: Buffer, start: number, end: number) => void;

export interface DecoderOptions {
  /** Declared payload lengths above this are refused before anything is allocated. */
  maxPayload?: number;
  /** Returns whether a command byte is known; an unknown one is a protocol error. */
  isKnownCommand: (cmd: number) => boolean;
}

/**
 * A streaming frame decoder: feed it chunks cut anywhere, it calls `onFrame` once per complete frame.
 *
 * It keeps the unread chunks in a list and an offset into the first one, so a payload that lies inside a
 * single chunk is handed out as a range of that chunk; only a payload that straddles chunks is copied, once.
 * Errors are thrown from push() as ProtocolError (or whatever onFrame threw); after one, the decoder ignores all
 * further input.
 */
export class FrameDecoder {
  private readonly onFrame: FrameHandler;
  /** May be changed between frames, e.g. kept small until a handshake is done. */
  maxPayload: number;
  private readonly isKnownCommand: (cmd: number) => boolean;
  private readonly chunks: Buffer[] = [];
  private offset = 0; // read position inside chunks[0]
  private buffered = 0; // unread bytes across all chunks
  private cmd = 0;
  private length = -1; // payload length of the frame being read; -1 while waiting for a header
  private stopped = false;
  private readonly header = Buffer.allocUnsafe(HEADER_SIZE);

  constructor(onFrame: FrameHandler, options: DecoderOptions) {
    this.onFrame = onFrame;
    this.maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.isKnownCommand = options.isKnownCommand;
  }

  /** Bytes received but not yet part of a delivered frame. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** True while a frame has been started but not finished (a peer that stops here is truncating). */
  get midFrame(): boolean {
    return this.buffered > 0 || this.length >= 0;
  }

  /** Stops decoding: frames still buffered are dropped. Used when the connection is closing. */
  stop(): void {
    this.stopped = true;
    this.chunks.length = 0;
    this.buffered = 0;
  }

  push(chunk: Buffer): void {
    if (this.stopped || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (!this.stopped) {
      if (this.length < 0) {
        if (this.buffered < HEADER_SIZE) return;
        this.readHeader();
      }
      const n = this.length;
      if (this.buffered < n) return;
      this.length = -1;
      let buf: Buffer = EMPTY;
      let start = 0;
      if (n === 0) {
        // an empty payload (a keepalive) may end the buffered bytes: there is no chunk to point into
      } else if (this.chunks[0]!.length - this.offset >= n) {
        buf = this.chunks[0]!;
        start = this.offset;
        this.skip(n);
      } else {
        buf = Buffer.allocUnsafe(n);
        start = 0;
        this.copyInto(buf, n);
      }
      try {
        this.onFrame(this.cmd, buf, start, start + n);
      } catch (err) {
        this.stop(); // the connection is going down; frames behind the bad one must not be delivered
        throw err;
      }
    }
  }

  private readHeader(): void {
    const first = this.chunks[0]!;
    let cmd: number;
    let length: number;
    if (first.length - this.offset >= HEADER_SIZE) {
      cmd = first[this.offset]!;
      length = first.readUInt32BE(this.offset + 1);
      this.skip(HEADER_SIZE);
    } else {
      this.copyInto(this.header, HEADER_SIZE);
      cmd = this.header[0]!;
      length = this.header.readUInt32BE(1);
    }
    if (!this.isKnownCommand(cmd)) {
      this.stop();
      throw new ProtocolError(`unknown command ${cmd} (0x${cmd.toString(16).padStart(2, '0')})`);
    }
    if (length > this.maxPayload) {
      this.stop();
      throw new ProtocolError(
        `frame payload of ${length} bytes exceeds maxPayload (${this.maxPayload})`,
        ErrorCode.FRAME_TOO_LARGE,
      );
    }
    this.cmd = cmd;
    this.length = length;
  }

  private skip(n: number): void {
    this.offset += n;
    this.buffered -= n;
    if (this.offset === this.chunks[0]!.length) {
      this.chunks.shift(); // the list holds a handful of chunks at most, so shift() is cheap here
      this.offset = 0;
    }
  }

  private copyInto(target: Buffer, n: number): void {
    let written = 0;
    while (written < n) {
      const first = this.chunks[0]!;
      const count = Math.min(n - written, first.length - this.offset);
      first.copy(target, written, this.offset, this.offset + count);
      written += count;
      this.skip(count);
    }
  }
}

/** Writes a frame header into `target` at `offset`. */
export function writeHeader(target: Buffer, offset: number, cmd: number, payloadLength: number): void {
  target[offset] = cmd;
  target.writeUInt32BE(payloadLength, offset + 1);
}

/** Slab sizes of a FrameWriter; see FrameWriter for the policy. */
export const MIN_SLAB = 1024;
export const MAX_SLAB = 64 * 1024;

/** The smallest power-of-two slab size from MIN_SLAB that holds n bytes. */
function fitSlab(n: number): number {
  let size = MIN_SLAB;
  while (size < n) size *= 2;
  return size;
}

/**
 * The outgoing counterpart of FrameDecoder: frames are encoded in place, one after another, into one buffer
 * (the slab), and take() hands out everything written since the last take as one view. A connection writes a
 * whole event-loop turn of frames here and gives the socket one write, instead of a Buffer object and a
 * write() per frame.
 *
 * Bytes handed out by take() are not written over, since the socket may still be sending them: when the slab
 * is full a new one is allocated and only the bytes not yet taken are copied over; the old slab is freed by the
 * garbage collector once the socket is done with it. Only rewind(), called when the socket says every byte has
 * gone, lets the next frames start at the slab's start again.
 *
 * Writers reserve the exact size of a frame, then fill it: `const at = w.reserve(n); w.buf[at] = ...`. Read
 * `w.buf` after reserve(), which may have replaced it.
 */
export class FrameWriter {
  /** The current slab; frames are written at offsets returned by reserve(). */
  buf: Buffer = EMPTY;
  private start = 0; // first byte not yet taken
  private end = 0; // first free byte
  /** The size of the next slab, adapted to the connection's turns (see take()). */
  private slabSize = MIN_SLAB;
  private readonly exact: boolean;

  /** With `exact`, every slab is allocated at exactly the size needed: for one-off frames that are kept. */
  constructor(options: { exact?: boolean } = {}) {
    this.exact = options.exact ?? false;
  }

  /** Bytes written and not yet taken. */
  get length(): number {
    return this.end - this.start;
  }

  /** Makes room for n bytes and returns the offset in `buf` where they go. */
  reserve(n: number): number {
    if (this.end + n > this.buf.length) this.grow(n);
    const at = this.end;
    this.end += n;
    return at;
  }

  /** Copies a prebuilt frame in. */
  append(frame: Uint8Array): void {
    const at = this.reserve(frame.length);
    this.buf.set(frame, at);
  }

  /** Everything written since the last take, as one view; null when nothing was. The next bytes go after it. */
  take(): Buffer | null {
    const used = this.end - this.start;
    if (used === 0) return null;
    const bytes = this.buf.subarray(this.start, this.end);
    this.start = this.end;
    // Sizing, once per turn. A turn that used over a quarter of the slab size doubles it, so a busy connection
    // fills a slab in several turns; one that used under a sixteenth drops it straight to about four times the
    // turn, so a burst does not leave large slabs allocated for the small turns after it.
    if (used * 4 > this.slabSize) this.slabSize = Math.min(this.slabSize * 2, MAX_SLAB);
    else if (used * 16 < this.slabSize) this.slabSize = fitSlab(used * 4);
    // The slab is let go when it has no room left, is over the cap, or the turn used a small part of it: an
    // idle connection (a 5-byte keepalive per heartbeat) then holds no slab at all.
    if (this.end === this.buf.length || this.buf.length > MAX_SLAB || used * 16 < this.buf.length) this.release();
    return bytes;
  }

  /**
   * Tells the writer that every byte taken so far has been consumed (a socket handed it all to the kernel):
   * with nothing pending, the next frames go at the start of the same slab again instead of after those bytes.
   */
  rewind(): void {
    if (this.start === this.end) this.start = this.end = 0;
  }

  /** Drops the bytes written and not yet taken. */
  clear(): void {
    this.end = this.start;
    if (this.buf.length > MAX_SLAB) this.release();
  }

  private release(): void {
    this.buf = EMPTY;
    this.start = this.end = 0;
  }

  private grow(n: number): void {
    const pending = this.end - this.start;
    const need = pending + n;
    let size: number;
    if (this.exact) {
      size = need;
    } else {
      // A turn that overflows the slab doubles the size at once, up to the cap.
      while (this.slabSize < need && this.slabSize < MAX_SLAB) this.slabSize *= 2;
      // Past the cap a slab fits what is needed exactly: one large frame costs its own size. A turn that keeps
      // adding to large pending bytes gets at least twice them, so the copies stay linear in the bytes written.
      size = need <= this.slabSize ? this.slabSize : Math.max(need, 2 * pending);
    }
    // Buffer.allocUnsafe takes sizes under 4 KiB from Node's shared 8 KiB pool, larger ones get their own memory.
    const slab = Buffer.allocUnsafe(size);
    if (pending > 0) this.buf.copy(slab, 0, this.start, this.end);
    this.buf = slab;
    this.start = 0;
    this.end = pending;
  }
}
