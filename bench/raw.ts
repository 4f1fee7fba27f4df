// A peer on a raw socket, for the points where what the library would do is itself in the way: a worker that takes
// tasks and never answers, a watcher that only times the scheduler's keepalives, a client that decides what goes
// into each write. It speaks protocol version 1, as a peer written against the first protocol document does.

import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { FrameDecoder, MAX_PAYLOAD_LIMIT } from '../lib/protocol/frame.js';
import { Cmd, Role, encode, encodeKeepalive, isKnownCommand, writeHello } from '../lib/protocol/index.js';

/** Receives one frame; its payload is buf[start, end), valid only during the call. */
export type RawHandler = (cmd: number, buf: Buffer, start: number, end: number) => void;

export class RawPeer {
  /** Handles every frame after the scheduler's HELLO; keepalives are answered before it is called. */
  onFrame: RawHandler = () => {};
  private greeted = false;
  private keepaliveWaiters: ((at: number) => void)[] = [];
  private readonly decoder = new FrameDecoder((cmd, buf, start, end) => this.frame(cmd, buf, start, end), {
    isKnownCommand,
    maxPayload: MAX_PAYLOAD_LIMIT,
  });

  private constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.decoder.push(chunk));
    socket.on('error', () => {}); // a destroyed or dropped peer is what some points measure, not a failure
  }

  /** Connects and says HELLO as `role`; a worker sends its READY itself, when it chooses. */
  static async open(port: number, role: typeof Role.CLIENT | typeof Role.WORKER, name: string): Promise<RawPeer> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const peer = new RawPeer(socket);
    socket.write(encode(writeHello, { version: 1, role, heartbeatMs: 0, name, token: '' }));
    return peer;
  }

  /** Writes bytes; resolves once the socket can take more (its 'drain'), so a fast sender stays bounded. */
  send(bytes: Buffer): Promise<void> | null {
    if (this.socket.write(bytes)) return null;
    return new Promise((resolve) => this.socket.once('drain', resolve));
  }

  /** Resolves with performance.now() when the scheduler's next keepalive arrives. */
  keepalive(): Promise<number> {
    return new Promise((resolve) => this.keepaliveWaiters.push(resolve));
  }

  private frame(cmd: number, buf: Buffer, start: number, end: number): void {
    if (cmd === Cmd.HELLO && !this.greeted) {
      this.greeted = true; // the scheduler's answer to our HELLO
      return;
    }
    if (cmd === Cmd.HELLO && end === start) {
      // Keepalives are answered at once, so the scheduler never drops this peer for silence.
      this.socket.write(encodeKeepalive());
      const now = performance.now();
      for (const resolve of this.keepaliveWaiters.splice(0)) resolve(now);
    }
    this.onFrame(cmd, buf, start, end);
  }
}
