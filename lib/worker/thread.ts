// One thread of a worker's pool: loads handler modules, runs one task at a time, aborts it when told to.
//
// Messages in:  { kind: 'run', id, module, export, payload, taskId, attempt, type } | { kind: 'abort', id, code, message }
// Messages out: { id, ok: true, result } | { id, ok: false, code, message } | { kind: 'progress', id, value, message }

import { parentPort } from 'node:worker_threads';
import { TaskwireError } from '../errors.js';
import { badResult, handlerErrorCode, handlerErrorMessage, type Handler, type HandlerResult } from '../jobs/handler.js';

export interface RunMessage {
  kind: 'run';
  id: number;
  module: string;
  export: string;
  payload: Uint8Array;
  /** A graph node's inputs; structured cloning copies them. */
  inputs: readonly Uint8Array[];
  taskId: number;
  attempt: number;
  type: string;
}

export interface AbortMessage {
  kind: 'abort';
  id: number;
  code: string;
  message: string;
}

export type Reply = { id: number; ok: true; result: HandlerResult } | { id: number; ok: false; code: string; message: string };

/** A handler's progress report, passed on by the worker (which throttles it). */
export interface ProgressMessage {
  kind: 'progress';
  id: number;
  value: number;
  message: string;
}

const port = parentPort!;
const modules = new Map<string, Promise<Handler>>();
let current: { id: number; controller: AbortController } | null = null;

function load(module: string, name: string): Promise<Handler> {
  const key = `${module}#${name}`;
  let handler = modules.get(key);
  if (!handler) {
    handler = import(module).then((m: Record<string, unknown>) => {
      const fn = m[name];
      if (typeof fn !== 'function') throw new TaskwireError('E_NO_HANDLER', `${module} has no function export '${name}'`);
      return fn as Handler;
    });
    modules.set(key, handler);
  }
  return handler;
}

async function run(message: RunMessage): Promise<void> {
  const controller = new AbortController();
  current = { id: message.id, controller };
  const { id, taskId, attempt, type } = message;
  let reply: Reply;
  try {
    const handler = await load(message.module, message.export);
    const payload = Buffer.from(message.payload.buffer, message.payload.byteOffset, message.payload.byteLength);
    const progress = (value = Number.NaN, message = ''): void => {
      if (typeof value === 'number' && typeof message === 'string') port.postMessage({ kind: 'progress', id, value, message } satisfies ProgressMessage);
    };
    const inputs = message.inputs.map((u) => Buffer.from(u.buffer, u.byteOffset, u.byteLength));
    const result = await handler(payload, { taskId, attempt, type, inputs, signal: controller.signal, progress });
    const bad = badResult(result);
    reply = bad ? { id, ok: false, code: 'E_HANDLER', message: bad } : { id, ok: true, result };
  } catch (err) {
    reply = { id, ok: false, code: handlerErrorCode(err), message: handlerErrorMessage(err) };
  }
  current = null;
  // Bytes that own their memory go back without a copy.
  const result = reply.ok ? reply.result : null;
  const movable = result instanceof Uint8Array && result.byteOffset === 0 && result.byteLength === result.buffer.byteLength;
  port.postMessage(reply, movable ? [(result as Uint8Array).buffer as ArrayBuffer] : []);
}

port.on('message', (message: RunMessage | AbortMessage) => {
  if (message.kind === 'abort') {
    if (current?.id === message.id) current.controller.abort(new TaskwireError(message.code, message.message));
    return;
  }
  void run(message);
});
