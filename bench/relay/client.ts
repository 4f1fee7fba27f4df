// The relay baseline client: pipelined SUBMITs on one connection, each promise settled by its request id.

import net from 'node:net';
import { COMPLETED, SUBMIT, Wire, frame } from './wire.js';

export class RelayClient {
  private readonly pending = new Map<number, (result: string) => void>();
  private nextId = 0;
  private readonly wire: Wire;

  private constructor(socket: net.Socket) {
    this.wire = new Wire(socket, (cmd, payload) => {
      if (cmd !== COMPLETED) return;
      const id = payload.readUInt32BE(0);
      const resolve = this.pending.get(id)!;
      this.pending.delete(id);
      resolve(payload.toString('utf8', 4));
    });
  }

  static connect(port: number): Promise<RelayClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RelayClient(socket)));
      socket.once('error', reject);
    });
  }

  submit(type: string, body: string): Promise<string> {
    const id = (this.nextId = (this.nextId + 1) >>> 0);
    const typeLength = Buffer.byteLength(type);
    // SUBMIT: [request id u32][type str16][body], the same bytes taskwire's client sends.
    const out = frame(SUBMIT, 6 + typeLength + Buffer.byteLength(body));
    out.writeUInt32BE(id, 5);
    out.writeUInt16BE(typeLength, 9);
    out.write(type, 11);
    out.write(body, 11 + typeLength);
    this.wire.send(out);
    return new Promise((resolve) => this.pending.set(id, resolve));
  }

  close(): void {
    this.wire.socket.end();
  }
}
