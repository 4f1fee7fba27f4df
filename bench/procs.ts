// The runner side of the bench harness: compiles the bench and lib/ once, forks the compiled scripts, talks to
// them over IPC, and makes sure every child (and redis) is dead when the run ends, however it ends.

import { fork, spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BUILD = path.join(ROOT, 'bench/results/build');
const live = new Set<ChildProcess>();

/**
 * Compiles lib/ and bench/ with tsc into bench/results/build. Children run that plain JavaScript: what ships is
 * tsc's output, a child starts in ~50 ms instead of ~600 under tsx, and profiles have no loader thread in them.
 */
export function build(): void {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const run = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'bench/tsconfig.json')], { stdio: 'inherit' });
  if (run.status !== 0) throw new Error(`tsc -p bench/tsconfig.json failed (exit ${run.status})`);
}

interface Reply {
  id?: number;
  result?: unknown;
  error?: string;
  ready?: boolean;
}

/** A forked bench script that answers requests (see child.ts). */
export class Child {
  readonly info: Record<string, unknown> = {};
  private nextId = 0;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly exited: Promise<void>;
  private stderr = '';

  private constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    proc.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
      process.stderr.write(chunk);
    });
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        live.delete(proc);
        const error = new Error(`${name} exited (${signal ?? code}) ${this.stderr.trim()}`);
        for (const w of this.waiting.values()) w.reject(error);
        this.waiting.clear();
        resolve();
      });
    });
    proc.on('message', (reply: Reply) => {
      if (reply.id === undefined) return;
      const w = this.waiting.get(reply.id);
      this.waiting.delete(reply.id);
      if (reply.error !== undefined) w?.reject(new Error(`${name}: ${reply.error}`));
      else w?.resolve(reply.result);
    });
  }

  /** Forks the compiled `script` (a .ts path from the repo root) with node flags and waits until it is ready. */
  static start(script: string, args: (string | number)[], nodeArgs: string[] = []): Promise<Child> {
    const proc = fork(path.join(BUILD, script.replace(/\.ts$/, '.js')), args.map(String), {
      cwd: ROOT,
      execArgv: nodeArgs,
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    });
    live.add(proc);
    const child = new Child(script, proc);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`${script} not ready after 30 s`)), 30_000);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        proc.kill('SIGKILL');
        reject(err);
      };
      proc.on('message', (reply: Reply) => {
        if (!reply.ready) return;
        clearTimeout(timer);
        Object.assign(child.info, reply);
        resolve(child);
      });
      child.exited.then(() => fail(new Error(`${script} exited before it was ready: ${child.stderr.trim()}`)));
    });
  }

  request<T>(op: string, args: unknown = null, timeoutMs = 600_000): Promise<T> {
    const id = ++this.nextId;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`${this.name}: ${op} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, {
        resolve: (v) => (clearTimeout(timer), resolve(v as T)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      this.proc.send({ id, op, args });
    });
  }

  /** Asks the child to exit (a normal exit writes --cpu-prof profiles), then kills it if it lingers. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    if (this.proc.connected) this.proc.send({ op: 'exit' });
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** Starts children through `fn` and stops every one of them afterwards, last started first. */
export async function withChildren<T>(fn: (start: typeof Child.start) => Promise<T>): Promise<T> {
  const started: Child[] = [];
  try {
    return await fn(async (script, args, nodeArgs) => {
      const child = await Child.start(script, args, nodeArgs);
      started.push(child);
      return child;
    });
  } finally {
    for (const child of started.reverse()) await child.stop();
  }
}

/** Spawns a plain program (redis-server) that is killed with the rest at exit. */
export function spawnTracked(command: string, args: string[], options: SpawnOptions = {}): ChildProcess {
  const proc = spawn(command, args, { stdio: 'ignore', ...options });
  live.add(proc);
  proc.on('exit', () => live.delete(proc));
  return proc;
}

/** SIGKILLs whatever is still running; safe to call from an 'exit' handler (synchronous). */
export function killAll(): void {
  for (const proc of live) proc.kill('SIGKILL');
  live.clear();
}

/** A port that was free a moment ago (for redis-server, which cannot report one it picked itself). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
