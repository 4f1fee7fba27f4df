// Frames over WebSocket (the `ws` package): the same frames as over TCP, each in a binary message of its own, at
// ws://host:http-port/ws. A peer on it is a peer like any other: the scheduler attaches the connection as it does a
// TCP one, and a client or worker dials it through SessionOptions.dial.
//
// Why one frame per message: message boundaries then are frame boundaries, so a receiver never assembles a frame
// from several messages, a browser peer reads one frame per message event, and it costs little on the wire (a
// WebSocket header is 2-10 bytes, 6-14 from a client). A turn's frames still leave in one write: the server side
// frames its messages itself into one buffer, a client corks its socket while ws sends them. A receiver accepts a
// message holding several whole frames, in order, but never part of one, and never a text message.

import type http from 'node:http';
import type { Duplex } from 'node:stream';
import WebSocket, { WebSocketServer } from 'ws';
import { ErrorCode, ProtocolError, TaskwireError } from '../errors.js';
import { DEFAULT_MAX_PAYLOAD, HEADER_SIZE, MAX_SLAB } from '../protocol/frame.js';
import type { ByteBudget } from './budget.js';
import type { Connection } from './connection.js';
import { asProtocolError, FramedConnection } from './framed.js';
import type { DialOptions } from './session.js';
import type { TcpOptions } from './tcp.js';

/** The same settings as a TCP connection's (see TcpOptions); `budget` is accepted and not needed (see WsConnection). */
export type WsOptions = TcpOptions;

/** How long close() waits for the closing handshake before it drops the socket. */
const CLOSE_FLUSH_MS = 2000;
/** How long a client waits for the HTTP upgrade to be answered. */
const UPGRADE_TIMEOUT_MS = 10_000;
/**
 * What a message may carry beyond maxPayload and a header when some commands are skippable, so that a frame over
 * maxPayload is skipped, as over TCP, rather than fatal. Over TCP skipping costs no memory; here the message is
 * held whole before it is read, so the slack is bounded: twice maxPayload, or maxPayload and 1 MiB if that is more.
 */
const MIN_SKIP_SLACK = 1024 * 1024;
/** ws reads its message limit as a 32-bit signed integer: larger values would turn the limit off. */
const WS_LIMIT_CEILING = 0x7fff_ffff;
/** The close code sent with an ERROR frame (policy violation); the reason is the error's code. */
const CLOSE_WITH_ERROR = 1008;

const noop = (): void => {};

/** The largest message the connection accepts, for a maxPayload and whether any command is skippable. */
export function messageLimit(maxPayload: number, skips: boolean): number {
  const slack = skips ? Math.max(maxPayload, MIN_SKIP_SLACK) : 0;
  return Math.min(WS_LIMIT_CEILING, HEADER_SIZE + maxPayload + slack);
}

function anySkippable(headOf: (cmd: number) => number): boolean {
  for (let cmd = 0; cmd < 256; cmd++) if (headOf(cmd) > 0) return true;
  return false;
}

/** The header of an unmasked message of `length` bytes (RFC 6455 5.2): 2, 4 or 10 bytes. */
function messageHeaderLength(length: number): number {
  return length < 126 ? 2 : length < 65536 ? 4 : 10;
}

/** Bytes a message of `length` takes on the wire: its header, and a client's 4-byte mask. */
function wireBytes(length: number, masked: boolean): number {
  return length + messageHeaderLength(length) + (masked ? 4 : 0);
}

/** Writes the header of a final, unmasked binary message of `length` bytes at `at`; returns where its payload goes. */
function writeMessageHeader(out: Buffer, at: number, length: number): number {
  out[at] = 0x82; // FIN, opcode 2 (binary)
  if (length < 126) {
    out[at + 1] = length;
    return at + 2;
  }
  if (length < 65536) {
    out[at + 1] = 126;
    out.writeUInt16BE(length, at + 2);
    return at + 4;
  }
  out[at + 1] = 127;
  out.writeUInt32BE(Math.floor(length / 0x1_0000_0000), at + 2);
  out.writeUInt32BE(length >>> 0, at + 6);
  return at + 10;
}

/** The frames in bytes[start, end), each made a final unmasked binary message, in one buffer of `size` bytes. */
function asMessages(bytes: Buffer, start: number, end: number, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  for (let at = start; at < end; ) {
    const length = HEADER_SIZE + bytes.readUInt32BE(at + 1);
    o = writeMessageHeader(out, o, length);
    o += bytes.copy(out, o, at, at + length);
    at += length;
  }
  return out;
}

/** ws's message parser, which holds the limit it checks each message against as its header arrives. */
interface Receiver {
  _maxPayload: number;
}

export class WsConnection extends FramedConnection {
  readonly remote: string;
  readonly transport = 'ws';
  private readonly ws: WebSocket;
  /** The socket under the WebSocket: a server's messages are written to it, a client's corked in it; null: neither. */
  private readonly socket: Duplex | null;
  private readonly masked: boolean;
  private readonly receiver: Receiver;
  private skips: boolean;
  /** onRead has been called for the messages of the read being handled. */
  private inRead = false;
  private readonly endRead = (): void => {
    this.inRead = false;
  };

  /**
   * @param ws an open WebSocket
   * @param side which end of it this is: a client masks every message it sends (RFC 6455 5.3), four more header
   *   bytes a message, which the count of bytes the peer took must include
   * @param socket the socket it runs on (the one its upgrade went over), for the peer's address and to send a
   *   turn's messages in one write; null to do without
   */
  constructor(ws: WebSocket, side: 'server' | 'client', socket: Duplex | null, options: WsOptions = {}) {
    // No budget: ws hands over each message whole, so no frame straddles reads here (see `budget`).
    super({ ...options, budget: null });
    this.ws = ws;
    this.socket = socket;
    const s = socket as { remoteAddress?: string; remotePort?: number } | null;
    this.remote = `${s?.remoteAddress ?? '?'}:${s?.remotePort ?? '?'}`;
    this.masked = side === 'client';
    // ws takes one message limit per server, set before any connection; this connection's must follow its
    // maxPayload, which the handshake raises. Its parser's field is the only way to (ws 8; the tests prove the
    // limit holds before and after a handshake).
    const receiver = (ws as unknown as { _receiver?: Receiver })._receiver;
    if (typeof receiver?._maxPayload !== 'number') throw new Error('this version of ws does not let a connection set its message limit');
    this.receiver = receiver;
    this.skips = anySkippable(options.skippable ?? (() => 0));
    this.limitMessages();
    ws.on('message', (data: Buffer, isBinary: boolean) => this.receive(data, isBinary));
    ws.on('error', (err: Error & { code?: string }) => this.failed(err));
    ws.on('close', (code: number, reason: Buffer) => this.ended(code, reason));
  }

  override get maxPayload(): number {
    return this.decoder.maxPayload;
  }

  /** Also bounds the messages ws takes in, so an oversized one is refused at its header, before it is held. */
  override set maxPayload(bytes: number) {
    this.decoder.maxPayload = bytes;
    this.limitMessages();
  }

  override set skippable(headOf: (cmd: number) => number) {
    this.decoder.skippable = headOf;
    this.skips = anySkippable(headOf);
    this.limitMessages();
  }

  /**
   * Not used. Over TCP the budget bounds the memory of frames assembled from several reads, across connections.
   * Here ws assembles each message before handing it over and no frame spans messages, so there is nothing to
   * assemble; what a connection holds is bounded instead by its message limit (see messageLimit()), checked at
   * each message's header before its bytes are kept. The bound is per connection, not shared: a message being
   * received holds at most that limit on each connection at once.
   */
  set budget(_budget: ByteBudget | null) {}

  protected unsent(): number {
    return this.ws.bufferedAmount;
  }

  /** Whole frames, one message each (see writeMessages and sendMessages). */
  protected transmit(bytes: Buffer): boolean {
    return !this.masked && this.socket !== null ? this.writeMessages(this.socket, bytes) : this.sendMessages(bytes);
  }

  protected shut(rest: Buffer | null, error: (Error & { code?: string }) | undefined): void {
    if (rest) this.push(rest);
    this.decoder.stop();
    // The closing handshake needs the peer's close frame read, even from a peer this side had stopped reading.
    if (this.readPaused) this.ws.resume();
    this.ws.close(error ? CLOSE_WITH_ERROR : 1000, error ? (error.code ?? ErrorCode.PROTOCOL).slice(0, 123) : undefined);
    // A peer that never reads would hold the closing handshake for ws's 30 s; don't wait on it.
    setTimeout(() => this.ws.terminate(), CLOSE_FLUSH_MS).unref();
  }

  protected abort(): void {
    this.ws.terminate();
  }

  protected pauseSource(): void {
    this.ws.pause();
  }

  protected resumeSource(): void {
    this.ws.resume();
  }

  private limitMessages(): void {
    this.receiver._maxPayload = messageLimit(this.decoder.maxPayload, this.skips);
  }

  /**
   * The server side: the turn's messages framed here, into one buffer, and written to the socket in one write, as
   * over TCP. Through ws.send() each message costs an options object, a header buffer and two socket writes: 970
   * against 369 ns of wall time per TASK frame at 256 frames a turn (16: 3,669 against 2,325), interleaved in one
   * process on a loaded 2-core machine. Writing beside ws is sound because a server's messages are not masked,
   * and ws itself only ever writes whole frames to the socket, in order, never holding one back (it would only
   * for compression, which is off). After a close frame, nothing more may follow.
   */
  private writeMessages(socket: Duplex, bytes: Buffer): boolean {
    if (this.ws.readyState !== WebSocket.OPEN) return true;
    // Runs of small frames are copied into one buffer with their headers; a large frame is not copied: its header,
    // then the frame as it lies.
    const chunks: Buffer[] = [];
    let copied = true;
    let runStart = 0;
    let runBytes = 0;
    for (let at = 0; at < bytes.length; ) {
      const length = HEADER_SIZE + bytes.readUInt32BE(at + 1);
      if (length >= MAX_SLAB) {
        if (runBytes > 0) chunks.push(asMessages(bytes, runStart, at, runBytes));
        const header = Buffer.allocUnsafe(messageHeaderLength(length));
        writeMessageHeader(header, 0, length);
        chunks.push(header, bytes.subarray(at, at + length));
        copied = false;
        runStart = at + length;
        runBytes = 0;
      } else {
        runBytes += messageHeaderLength(length) + length;
      }
      at += length;
    }
    if (runBytes > 0) chunks.push(asMessages(bytes, runStart, bytes.length, runBytes));
    if (chunks.length > 1) socket.cork();
    for (let i = 0; i < chunks.length; i++) {
      this.sent += chunks[i]!.length;
      if (i === chunks.length - 1) socket.write(chunks[i], this.afterSend);
      else socket.write(chunks[i]);
    }
    if (chunks.length > 1) socket.uncork();
    return copied;
  }

  /**
   * The client side: each message through ws.send(), which masks it. It masks into a copy, but for the rare mask of
   * four zero bytes, which it sends as it is: so the bytes count as not copied.
   */
  private sendMessages(bytes: Buffer): boolean {
    const socket = this.socket;
    socket?.cork();
    let at = 0;
    while (at < bytes.length) {
      const end = at + HEADER_SIZE + bytes.readUInt32BE(at + 1);
      const frame = at === 0 && end === bytes.length ? bytes : bytes.subarray(at, end);
      this.sent += wireBytes(frame.length, this.masked);
      if (end === bytes.length) this.ws.send(frame, this.afterSend);
      else this.ws.send(frame);
      at = end;
    }
    socket?.uncork();
    return false;
  }

  private receive(data: Buffer, isBinary: boolean): void {
    if (this.ending || this.done) return;
    // ws hands over every message of a read in one go: the read's clock reading is taken once, before the first.
    if (!this.inRead) {
      this.inRead = true;
      this.onRead();
      queueMicrotask(this.endRead);
    }
    try {
      if (!isBinary) throw new ProtocolError(`a text message of ${data.length} bytes; frames travel in binary messages only`);
      if (data.length === 0) throw new ProtocolError('an empty message; each message carries a frame');
      this.decoder.push(data);
      if (this.decoder.midFrame && !this.ending) {
        throw new ProtocolError('a message ended inside a frame; each message carries whole frames');
      }
    } catch (err) {
      this.close(asProtocolError(err));
    }
  }

  /** ws found the connection broken or the peer's bytes malformed; it closes the WebSocket itself. */
  private failed(err: Error & { code?: string }): void {
    this.closeError ??= wsError(err, this.receiver._maxPayload);
    if (this.ending || this.done) return;
    this.failing();
    this.decoder.stop();
    setTimeout(() => this.ws.terminate(), CLOSE_FLUSH_MS).unref();
  }

  private ended(code: number, reason: Buffer): void {
    // The peer closed without an ERROR frame this side answered: its close code is all there is to say why.
    if (!this.ending && !this.done) this.closeError ??= closeCodeError(code, reason.toString('utf8'));
    this.finish();
  }
}

/** Why ws gave up on a connection, in this library's codes. */
function wsError(err: Error & { code?: string }, limit: number): Error {
  if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
    return new ProtocolError(`a WebSocket message over ${limit} bytes (maxPayload and a frame header)`, ErrorCode.FRAME_TOO_LARGE);
  }
  if (err.code?.startsWith('WS_ERR_')) return new ProtocolError(`malformed WebSocket traffic: ${err.message}`);
  return err;
}

/** What a close code (and its reason) from the peer says, as over TCP: nothing for a plain close. */
function closeCodeError(code: number, reason: string): Error | undefined {
  if (code === 1000 || code === 1001 || code === 1005) return undefined;
  if (code === 1006) return new Error('the WebSocket connection was lost (1006, no closing handshake)');
  if (code === 1009) return new ProtocolError(`the peer refused a message as too large (1009)`, ErrorCode.FRAME_TOO_LARGE);
  if (code === 1002 || code === 1003 || code === 1007) return new ProtocolError(`the peer closed the WebSocket with ${code}: ${reason}`);
  if (/^E_[A-Z_]+$/.test(reason)) return new TaskwireError(reason, `the peer closed the WebSocket with ${reason}`);
  return new TaskwireError(ErrorCode.DISCONNECTED, `the peer closed the WebSocket with ${code}${reason ? `: ${reason}` : ''}`);
}

/** What acceptWebSockets() needs of a scheduler: its Scheduler passes. */
export interface WebSocketHost {
  attach(conn: Connection): void;
  transportOptions(): WsOptions & { maxPayload: number };
}

/** Hands WebSocket upgrades to a scheduler; see acceptWebSockets(). */
export interface WebSocketAcceptor {
  /** For an HTTP server's 'upgrade' event on the WebSocket path: completes the upgrade and attaches the peer. */
  handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Refuses upgrades from now on; connections already attached are the scheduler's to close. */
  close(): void;
}

/**
 * Turns an HTTP server's upgrades into scheduler peers: each WebSocket gets the same handshake, limits, credits and
 * keepalives as a TCP connection. The caller routes the upgrades (GET /ws) and checks what HTTP itself should;
 * the token is checked in the peer's HELLO, as over TCP.
 */
export function acceptWebSockets(scheduler: WebSocketHost): WebSocketAcceptor {
  // Every connection starts limited to its first frame's (a HELLO's) size; the handshake raises its own limit.
  const server = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    clientTracking: false,
    skipUTF8Validation: true, // text messages are refused whatever they hold, with an ERROR frame that says so
    maxPayload: messageLimit(scheduler.transportOptions().maxPayload, false),
  });
  let closed = false;
  return {
    handleUpgrade(req, socket, head) {
      if (closed) {
        socket.end('HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      server.handleUpgrade(req, socket, head, (ws) => {
        let conn: WsConnection;
        try {
          conn = new WsConnection(ws, 'server', socket, scheduler.transportOptions());
        } catch {
          ws.terminate();
          return;
        }
        scheduler.attach(conn);
      });
    },
    close() {
      closed = true;
      server.close();
    },
  };
}

/**
 * Opens a WebSocket to a scheduler (ws: or wss:); rejects with E_CONNECT, naming the URL, when it cannot be
 * reached or does not upgrade. The token, if any, goes in the HELLO as over TCP, not in the upgrade.
 */
export function connectWs(url: string, options: DialOptions & WsOptions): Promise<WsConnection> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error & { code?: string }): void =>
      reject(new TaskwireError(ErrorCode.CONNECT, `cannot reach the scheduler at ${url}: ${err.code ?? err.message}`, { cause: err }));
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, {
        perMessageDeflate: false,
        skipUTF8Validation: true,
        handshakeTimeout: UPGRADE_TIMEOUT_MS,
        maxPayload: messageLimit(options.maxPayload ?? DEFAULT_MAX_PAYLOAD, anySkippable(options.skippable)),
      });
    } catch (err) {
      reject(new TaskwireError(ErrorCode.INVALID, `cannot open a WebSocket to ${url}: ${err instanceof Error ? err.message : String(err)}`));
      return;
    }
    // ws reports a failed handshake once, to `fail`; whatever it might say after that has no one left to tell.
    ws.on('error', noop);
    let socket: Duplex | null = null;
    ws.once('upgrade', (res) => {
      socket = res.socket;
    });
    ws.once('error', fail);
    ws.once('open', () => {
      ws.off('error', fail);
      try {
        resolve(new WsConnection(ws, 'client', socket, options));
      } catch (err) {
        ws.terminate();
        fail(err as Error);
      }
    });
  });
}
