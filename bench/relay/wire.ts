// The relay's whole wire layer: taskwire's frame format [cmd u8][len u32 BE][payload] and command numbers, a
// naive decoder and corked writes, with none of taskwire's checks.

import type net from 'node:net';

export const TASK = 1;
export const RESULT = 2;
export const SUBMIT = 4;
export const COMPLETED = 5;
export const READY = 8;

/** A frame with its header written and `size` payload bytes left for the caller to fill. */
export function frame(cmd: number, size: number): Buffer {
  const out = Buffer.allocUnsafe(5 + size);
  out[0] = cmd;
  out.writeUInt32BE(size, 1);
  return out;
}

export class Wire {
  private rest: Buffer | null = null;
  private corked = false;

  constructor(
    readonly socket: net.Socket,
    onFrame: (cmd: number, payload: Buffer) => void,
  ) {
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      const buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
      let at = 0;
      while (buf.length - at >= 5) {
        const end = at + 5 + buf.readUInt32BE(at + 1);
        if (end > buf.length) break;
        onFrame(buf[at]!, buf.subarray(at + 5, end)); // a view, not a copy, as taskwire's decoder does
        at = end;
      }
      this.rest = at < buf.length ? buf.subarray(at) : null;
    });
  }

  /** Everything sent in one event-loop turn leaves in one write. */
  send(data: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(data);
  }
}
