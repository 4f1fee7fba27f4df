// The relay baseline broker: the least a taskwire-shaped scheduler has to do (FIFO queue, id map, a fixed
// window per worker, results routed back by request id) and nothing else. Usage: broker.ts [window]; a window of
// 0 means none: every queued task goes to a worker at once (the "unthrottled relay").

import net from 'node:net';
import { numArg, serve } from '../child.js';
import { COMPLETED, READY, RESULT, SUBMIT, TASK, Wire, frame } from './wire.js';

interface Task {
  client: Wire;
  requestId: number;
  /** The SUBMIT payload after the request id: type str16 and body, forwarded verbatim in TASK. */
  typeAndBody: Buffer;
}
interface Worker {
  wire: Wire;
  held: number;
}

// 16 is taskwire's default worker concurrency, which the runner's window matches; 0 (no window) is Infinity.
const window = numArg(0, 16) || Infinity;
const queue: (Task | undefined)[] = [];
let head = 0;
const inFlight = new Map<number, Task>();
const ready: Worker[] = []; // workers with room, rotated round-robin
let nextId = 0;

function pump(): void {
  while (head < queue.length && ready.length > 0) {
    const task = queue[head]!;
    queue[head++] = undefined;
    const worker = ready.shift()!;
    nextId = (nextId + 1) >>> 0;
    inFlight.set(nextId, task);
    // TASK: [task id u32][attempt u32][type str16][body], the same bytes taskwire sends.
    const out = frame(TASK, 8 + task.typeAndBody.length);
    out.writeUInt32BE(nextId, 5);
    out.writeUInt32BE(1, 9);
    task.typeAndBody.copy(out, 13);
    worker.wire.send(out);
    if (++worker.held < window) ready.push(worker);
  }
  // Reclaim the consumed front of the array now and then, so a long run does not grow it forever.
  if (head === queue.length) queue.length = head = 0;
  else if (head > 65536 && head * 2 > queue.length) {
    queue.splice(0, head);
    head = 0;
  }
}

const server = net.createServer((socket) => {
  let worker: Worker | null = null;
  const wire = new Wire(socket, (cmd, payload) => {
    if (cmd === SUBMIT) {
      queue.push({ client: wire, requestId: payload.readUInt32BE(0), typeAndBody: payload.subarray(4) });
    } else if (cmd === RESULT && worker) {
      // RESULT: [task id u32][attempt u32][status u8][result] -> COMPLETED: [request id u32][result]
      const id = payload.readUInt32BE(0);
      const task = inFlight.get(id)!;
      inFlight.delete(id);
      const out = frame(COMPLETED, payload.length - 5);
      out.writeUInt32BE(task.requestId, 5);
      payload.copy(out, 9, 9);
      task.client.send(out);
      if (worker.held-- === window) ready.push(worker);
    } else if (cmd === READY) {
      worker = { wire, held: 0 };
      ready.push(worker);
    }
    pump();
  });
});
server.listen(0, '127.0.0.1', () => {
  serve({ queued: () => queue.length - head }, { port: (server.address() as net.AddressInfo).port });
});
