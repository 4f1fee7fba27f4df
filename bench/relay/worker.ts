// The relay baseline worker: `connections` sockets that answer each TASK with the sha256 hex of its body.
// Usage: worker.ts <port> [connections]

import { createHash } from 'node:crypto';
import net from 'node:net';
import { numArg, serve } from '../child.js';
import { READY, RESULT, Wire, frame } from './wire.js';

function connect(port: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      wire.send(frame(READY, 0));
      resolve();
    });
    const wire = new Wire(socket, (_cmd, task) => {
      // TASK: [task id u32][attempt u32][type str16][body] -> RESULT: [task id u32][attempt u32][status 0][digest]
      const body = task.subarray(10 + task.readUInt16BE(8));
      const digest = createHash('sha256').update(body).digest('hex');
      const out = frame(RESULT, 9 + 64);
      task.copy(out, 5, 0, 8);
      out[13] = 0;
      out.write(digest, 14, 'latin1');
      wire.send(out);
    });
  });
}

const port = numArg(0, 9001);
await Promise.all(Array.from({ length: numArg(1, 1) }, () => connect(port)));
serve({});
