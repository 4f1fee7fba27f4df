import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
// The child side of the bench harness: answers the runner's requests over the IPC channel and dies with it.

/** A request handler; its return value (or promise) is sent back to the runner. */
export type Handlers = Record<string, (args: never) => unknown>;

interface Request {
  id: number;
  op: string;
  args: unknown;
}

/** Resource readings the runner takes before and after a measurement. */
function probe(): { cpu: NodeJS.CpuUsage; mem: NodeJS.MemoryUsage } {
  return { cpu: process.cpuUsage(), mem: process.memoryUsage() };
}

/**
 * CPU profiling of a chosen stretch (--cpu-prof covers the whole process, warm-up included): profileStart,
 * then profileStop writes a .cpuprofile that bench/cpuprofile.ts reads.
 */
let inspector: Session | null = null;
function post(method: string, params?: object): Promise<any> {
  return new Promise((resolve, reject) => inspector!.post(method, params, (err, result) => (err ? reject(err) : resolve(result))));
}
async function profileStart(): Promise<boolean> {
  inspector = new Session();
  inspector.connect();
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 50 });
  await post('Profiler.start');
  return true;
}
async function profileStop({ file }: { file: string }): Promise<string> {
  const { profile } = await post('Profiler.stop');
  inspector!.disconnect();
  inspector = null;
  writeFileSync(file, JSON.stringify(profile));
  return file;
}

/** Full collections, twice with a turn in between, so memory readings count live data rather than garbage. */
async function collect(): Promise<boolean> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return false;
  gc();
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  return true;
}

/**
 * Serves `handlers` (plus probe, gc and exit) to the runner and reports `info` as ready. `exit` does not answer:
 * the process just exits normally, which is what lets --cpu-prof write its profile.
 */
export function serve(handlers: Handlers, info: Record<string, unknown> = {}): void {
  const all: Record<string, (args: never) => unknown> = { probe, gc: collect, profileStart, profileStop, ...handlers };
  process.on('message', (message: Request) => {
    if (message.op === 'exit') process.exit(0);
    const handler = all[message.op];
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`unknown op ${message.op}`);
        return handler(message.args as never);
      })
      .then(
        (result) => process.send!({ id: message.id, result }),
        (err: unknown) => process.send!({ id: message.id, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
      );
  });
  // If the runner dies, so do we: no orphaned scheduler keeps a port or a core busy.
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: true, ...info });
}

/** A positional command-line argument as a number, with a default. */
export function numArg(index: number, fallback: number): number {
  const raw = process.argv[2 + index];
  return raw === undefined ? fallback : Number(raw);
}

/** Where a taskwire client or worker finds the scheduler from a bench argument: a port, a ws:// URL, or tls:<port>:<CA file>. */
export function schedulerWhere(arg: string | undefined, port: number): { url: string } | { port: number; tls?: { ca: Buffer } } {
  if (arg?.startsWith('ws')) return { url: arg };
  const tls = /^tls:(\d+):(.+)$/.exec(arg ?? '');
  if (tls) return { port: Number(tls[1]), tls: { ca: readFileSync(tls[2]!) } };
  return { port };
}
