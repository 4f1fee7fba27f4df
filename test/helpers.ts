// Shared test plumbing: schedulers on port 0, child processes that are always reaped, waits with deadlines.

import { spawn, type ChildProcess } from 'node:child_process';
import v8 from 'node:v8';
import vm from 'node:vm';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import {
  createClient,
  createScheduler,
  createWorker,
  type Client,
  type ClientOptions,
  type Handlers,
  type Scheduler,
  type SchedulerOptions,
  type TaskwireError,
  type Worker,
  type WorkerOptions,
} from '../lib/index.js';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A small seeded PRNG (mulberry32): the same seed gives the same sequence, so a failing run can be replayed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A listening scheduler on a free port, closed when the test ends. */
export async function startScheduler(t: Teardown, options: SchedulerOptions = {}): Promise<Scheduler> {
  const scheduler = createScheduler({ port: 0, ...options });
  await scheduler.listen();
  t.teardown(() => scheduler.close());
  return scheduler;
}

/** A client of the scheduler on `port`, closed when the test ends. */
export function startClient(t: Teardown, port: number, options: ClientOptions = {}): Client {
  const c = createClient({ port, ...options });
  t.teardown(() => c.close());
  return c;
}

/** A worker with `handlers` (the built-ins if absent), reconnecting fast, closed when the test ends. */
export function startWorker(t: Teardown, port: number, handlers?: Handlers, options: WorkerOptions = {}): Worker {
  const w = createWorker({ port, handlers, reconnectMinMs: 20, reconnectMaxMs: 200, ...options });
  t.teardown(() => w.close());
  return w;
}

/** Resolves when `check()` is true; rejects after `ms` with `what` in the message. */
export async function waitFor(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Rejects if `promise` does not settle within `ms`. */
export function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface Child {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal name) once the process is gone. */
  exited: Promise<number | string>;
}

/** Spawns a process that is SIGKILLed at teardown if it is still running. */
export function spawnChild(t: Teardown, command: string, args: string[], env: NodeJS.ProcessEnv = {}): Child {
  const proc = spawn(command, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = once(proc, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  return { proc, stdout: () => out, stderr: () => err, exited };
}

/** Runs a TypeScript file under tsx in a child process. */
export function spawnTs(t: Teardown, file: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Child {
  return spawnChild(t, process.execPath, ['--import', 'tsx', path.join(root, file), ...args], env);
}

/** Runs one of the built CLIs (dist/<name>.js) to completion. */
export async function runCli(
  t: Teardown,
  name: 'server' | 'worker' | 'client',
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const child = spawnChild(t, process.execPath, [path.join(root, 'dist', `${name}.js`), ...args], env);
  const code = await within(30_000, `${name} ${args.join(' ')}`, child.exited);
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

/** Starts dist/server.js on a free port and returns it with the port it printed. */
export async function startServer(t: Teardown, args: string[] = []): Promise<{ child: Child; port: number }> {
  // No HTTP listener unless asked for: its default port would clash between tests running side by side.
  const http = args.includes('--http-port') ? [] : ['--http-port', '0'];
  const child = spawnChild(t, process.execPath, [path.join(root, 'dist', 'server.js'), '--port', '0', ...http, ...args]);
  let port = 0;
  await waitFor('the server to print its address', () => {
    const m = /listening on [^:\s]+:(\d+)/.exec(child.stderr());
    if (m) port = Number(m[1]);
    return port > 0 || child.proc.exitCode !== null;
  });
  if (!port) throw new Error(`server did not start: ${child.stderr()}`);
  return { child, port };
}

/** What a synchronous call threw; a test failure if it did not. */
export function thrown(fn: () => unknown): TaskwireError {
  try {
    fn();
  } catch (err) {
    return err as TaskwireError;
  }
  throw new Error('did not throw');
}

/** The garbage collector, exposed at run time if the process was not started with --expose-gc; null if it cannot be. */
export function getGc(): (() => void) | null {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return existing;
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : null;
  } catch {
    return null;
  }
}
