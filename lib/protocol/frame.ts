// Frames on the wire are [cmd u8][payload length u32 BE][payload]; this module cuts a byte stream into them.

import { ErrorCode, ProtocolError } from '../errors.js';

export const HEADER_SIZE = 5;
/** The largest payload a receiver accepts unless configured otherwise: 16 MiB. */
export const DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024;
/** The u32 length field's ceiling; also the largest maxPayload that can be configured. */
export const MAX_PAYLOAD_LIMIT = 0xffff_ffff;

const EMPTY = Buffer.alloc(0);

/**
 * Receives one frame. Its payload is buf[start, end): a range of the chunk it arrived in, or of a buffer of its
 * own when it straddled chunks. The range is not a Buffer of its own: a view per frame (and another per body
 * inside it) was a visible share of the scheduler's CPU and garbage, so decoders read fields in place and a
 * handler makes a view only of what it keeps. The bytes stay valid after the call.
 */
export type FrameHandler = (cmd: number, buf: Buffer, start: number, end: number) => void;

/**
 * Memory for payloads that straddle reads, shared by many decoders. A decoder asks for a frame's whole length when
 * it starts assembling it and gives it back once the frame is delivered; while it is refused, the decoder holds
 * what it has and waits (see FrameDecoder.waiting), so the total stays bounded however many peers send at once.
 */
export interface FrameBudget {
  /** Frames shorter than this are assembled without asking. */
  readonly threshold: number;
  /** Takes `bytes` from the budget; false when they are not available now. */
  reserve(bytes: number): boolean;
  release(bytes: number): void;
}

export interface DecoderOptions {
  /** Declared payload lengths above this are refused (or skipped) before anything is allocated. */
  maxPayload?: number;
  /** Returns whether a command byte is known; an unknown one is a protocol error. */
  isKnownCommand: (cmd: number) => boolean;
  /**
   * Commands whose frames over maxPayload are skipped rather than fatal: the number of leading payload bytes to
   * keep (the ids at fixed offsets that say which task it was), or 0 for commands that cannot be skipped.
   */
  skippable?: (cmd: number) => number;
  /** Receives a skipped frame once its last byte has been read past: its command, kept bytes and declared length. */
  onSkipped?: (cmd: number, head: Buffer, length: number) => void;
  /** Where straddling payloads take their memory from; without one, they take what they need. */
  budget?: FrameBudget | null;
  /** The error for a frame over maxPayload that is not skipped. Default: E_FRAME_TOO_LARGE naming maxPayload. */
  tooLarge?: (cmd: number, length: number, maxPayload: number) => Error;
}

/** The default error for a frame over maxPayload: E_FRAME_TOO_LARGE. */
export const frameTooLargeError = (_cmd: number, length: number, maxPayload: number): Error =>
  new ProtocolError(`frame payload of ${length} bytes exceeds maxPayload (${maxPayload})`, ErrorCode.FRAME_TOO_LARGE);

/**
 * A streaming frame decoder: feed it chunks cut anywhere, it calls `onFrame` once per complete frame.
 *
 * A payload that lies inside one chunk is handed out as a range of that chunk. One that straddles chunks is
 * copied, as it arrives, into a buffer of exactly its length (taken from the budget, if any): no chunk is kept
 * once push() returns, so a small frame read together with large ones never keeps their read alive. The only
 * exception is a decoder waiting for its budget, which keeps the rest of the chunk it could not take in yet.
 *
 * Errors are thrown from push() as ProtocolError (or whatever onFrame threw); after one, the decoder ignores all
 * further input.
 */
export class FrameDecoder {
  private readonly onFrame: FrameHandler;
  /** May be changed between frames, e.g. kept small until a handshake is done. */
  maxPayload: number;
  /** May be changed between frames, e.g. a separate budget until a handshake is done. */
  budget: FrameBudget | null;
  /** May be changed between frames. */
  tooLarge: (cmd: number, length: number, maxPayload: number) => Error;
  private readonly isKnownCommand: (cmd: number) => boolean;
  /** May be changed between frames. */
  skippable: (cmd: number) => number;
  private readonly onSkipped: (cmd: number, head: Buffer, length: number) => void;
  private readonly header = Buffer.allocUnsafe(HEADER_SIZE);
  private headerHave = 0;
  private cmd = 0;
  /** Payload length of the frame being read; -1 while reading a header. */
  private length = -1;
  /** The straddling payload being assembled, how much of it has arrived, and whether it is on the budget. */
  private partial: Buffer | null = null;
  private partialHave = 0;
  /** Bytes of the partial frame taken from a budget, and which one (the budget may be swapped meanwhile). */
  private reserved = 0;
  private reservedFrom: FrameBudget | null = null;
  /** Skipping an oversized frame: bytes still to pass, and its leading bytes, kept. */
  private skipLeft = 0;
  private skipHead: Buffer = EMPTY;
  private skipHave = 0;
  /** Input not yet taken in while waiting for the budget. */
  private held: Buffer | null = null;
  private stopped = false;

  constructor(onFrame: FrameHandler, options: DecoderOptions) {
    this.onFrame = onFrame;
    this.maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.isKnownCommand = options.isKnownCommand;
    this.skippable = options.skippable ?? (() => 0);
    this.onSkipped = options.onSkipped ?? (() => {});
    this.budget = options.budget ?? null;
    this.tooLarge = options.tooLarge ?? frameTooLargeError;
  }

  /** Bytes received but not yet part of a delivered frame (a skipped frame's bytes are not kept). */
  get bufferedBytes(): number {
    return this.headerHave + this.partialHave + (this.held?.length ?? 0);
  }

  /** True while a frame has been started but not finished (a peer that stops here is truncating). */
  get midFrame(): boolean {
    return this.headerHave > 0 || this.length >= 0 || this.skipLeft > 0 || this.held !== null;
  }

  /**
   * True when a straddling frame is waiting for its budget: the decoder takes no input in until retry() gets it
   * one, so its owner should stop reading (the bytes it already has are kept).
   */
  get waiting(): boolean {
    return this.held !== null;
  }

  /** Stops decoding: frames still buffered are dropped, their budget given back. Used when the connection is closing. */
  stop(): void {
    this.stopped = true;
    this.held = null;
    this.partial = null;
    this.partialHave = this.headerHave = 0;
    this.giveBack();
  }

  push(chunk: Buffer): void {
    if (this.stopped || chunk.length === 0) return;
    if (this.held !== null) {
      // More input while waiting (the owner should have stopped reading): keep it behind what is held.
      this.held = Buffer.concat([this.held, chunk]);
      return;
    }
    this.run(chunk, 0);
  }

  /** After waiting: tries the budget again and, if it grants the frame, takes in what was held. */
  retry(): void {
    const held = this.held;
    if (this.stopped || held === null) return;
    this.held = null;
    this.run(held, 0);
  }

  private run(buf: Buffer, offset: number): void {
    const end = buf.length;
    while (offset < end && !this.stopped) {
      if (this.skipLeft > 0) {
        offset = this.skip(buf, offset);
        continue;
      }
      if (this.partial !== null) {
        offset = this.fill(buf, offset);
        continue;
      }
      if (this.length < 0) {
        if (this.headerHave === 0 && end - offset >= HEADER_SIZE) {
          this.begin(buf[offset]!, buf.readUInt32BE(offset + 1));
          offset += HEADER_SIZE;
        } else {
          const n = Math.min(HEADER_SIZE - this.headerHave, end - offset);
          buf.copy(this.header, this.headerHave, offset, offset + n);
          this.headerHave += n;
          offset += n;
          if (this.headerHave < HEADER_SIZE) return;
          this.headerHave = 0;
          this.begin(this.header[0]!, this.header.readUInt32BE(1));
        }
        if (this.length !== 0 || this.skipLeft > 0) continue;
        this.deliver(EMPTY, 0, 0); // an empty payload (a keepalive) may end the chunk: nothing to point into
        continue;
      }
      const n = this.length;
      if (end - offset >= n) {
        this.deliver(buf, offset, offset + n);
        offset += n;
        continue;
      }
      const budget = this.budget;
      if (budget !== null && n >= budget.threshold) {
        if (!budget.reserve(n)) {
          this.held = offset === 0 ? buf : buf.subarray(offset);
          return;
        }
        this.reserved = n;
        this.reservedFrom = budget;
      }
      this.partial = Buffer.allocUnsafe(n);
      this.partialHave = 0;
    }
  }

  /** A header has been read: checks it and sets up the payload, or the skip of an oversized one. */
  private begin(cmd: number, length: number): void {
    if (!this.isKnownCommand(cmd)) {
      this.stop();
      throw new ProtocolError(`unknown command ${cmd} (0x${cmd.toString(16).padStart(2, '0')})`);
    }
    this.cmd = cmd;
    if (length <= this.maxPayload) {
      this.length = length;
      return;
    }
    const keep = this.skippable(cmd);
    if (keep === 0 || length < keep) {
      this.stop();
      throw this.tooLarge(cmd, length, this.maxPayload);
    }
    this.skipLeft = length;
    this.skipHead = Buffer.allocUnsafe(keep);
    this.skipHave = 0;
    this.length = length;
  }

  private skip(buf: Buffer, offset: number): number {
    const want = this.skipHead.length - this.skipHave;
    if (want > 0) {
      const n = Math.min(want, buf.length - offset);
      buf.copy(this.skipHead, this.skipHave, offset, offset + n);
      this.skipHave += n;
      this.skipLeft -= n;
      offset += n;
    }
    const n = Math.min(this.skipLeft, buf.length - offset);
    this.skipLeft -= n;
    offset += n;
    if (this.skipLeft === 0 && this.skipHave === this.skipHead.length) {
      const { cmd, length, skipHead } = this;
      this.length = -1;
      this.skipHead = EMPTY;
      try {
        this.onSkipped(cmd, skipHead, length);
      } catch (err) {
        this.stop();
        throw err;
      }
    }
    return offset;
  }

  private fill(buf: Buffer, offset: number): number {
    const partial = this.partial!;
    const n = Math.min(partial.length - this.partialHave, buf.length - offset);
    buf.copy(partial, this.partialHave, offset, offset + n);
    this.partialHave += n;
    if (this.partialHave === partial.length) {
      this.partial = null;
      this.partialHave = 0;
      try {
        this.deliver(partial, 0, partial.length);
      } finally {
        this.giveBack();
      }
    }
    return offset + n;
  }

  private deliver(buf: Buffer, start: number, end: number): void {
    this.length = -1;
    try {
      this.onFrame(this.cmd, buf, start, end);
    } catch (err) {
      this.stop(); // the connection is going down; frames behind the bad one must not be delivered
      throw err;
    }
  }

  private giveBack(): void {
    const from = this.reservedFrom;
    if (from === null) return;
    const n = this.reserved;
    this.reserved = 0;
    this.reservedFrom = null;
    from.release(n);
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
