// Typed jobs on real sockets and processes: definitions run by a worker and called by a client, payloads their
// codec refuses, and worker processes loading job modules with --jobs.

import t from 'tap';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { builtinJobs, createWorker, defineJob, ErrorCode, TaskFailedError, TaskwireError, type JobCodec } from '../lib/index.js';
import { multiply, stats } from './fixtures/typed-jobs.js';
import { root, runCli, sha256, spawnChild, startClient, startScheduler, startServer, startWorker, thrown, waitFor, within } from './helpers.js';

const HELLO_SHA = '185f8db32271fe25f561a6fc938b2e264306ec304eda518007d1764826381969';

/** Rejects unless `promise` rejects within 10 s; resolves with the error. */
async function rejection(promise: Promise<unknown>, what: string): Promise<TaskwireError> {
  const outcome = await within(10_000, what, promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  ));
  if (outcome.ok) throw new Error(`${what}: resolved with ${JSON.stringify(outcome.value)}`);
  return outcome.error as TaskwireError;
}


const upper = defineJob({ type: 'upper', codec: 'text', run: (text: string) => text.toUpperCase() });
const none = defineJob({ type: 'none', run: (payload: undefined) => (payload === undefined ? 'nothing' : 'something') });
const fails = defineJob({
  type: 'fails',
  run: (n: number): number => {
    throw Object.assign(new Error(`no ${n}`), n === 2 ? { code: 'E_CUSTOM' } : {});
  },
});
const big = defineJob({ type: 'big', run: (n: number) => BigInt(n) });
// A codec of bytes: the payload is the bytes themselves, the result a u32.
const bytes: JobCodec<Uint8Array, number> = {
  encode: (payload) => payload,
  decode: (body) => body,
  encodeResult: (n) => {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(n);
    return out;
  },
  decodeResult: (body) => {
    if (body.length !== 4) throw new Error(`${body.length} bytes, not 4`);
    return body.readUInt32BE(0);
  },
};
const checksum = defineJob({ type: 'checksum', codec: bytes, run: (payload: Uint8Array) => payload.reduce((a, b) => (a + b) >>> 0, 0) });

t.test('client.run through a real scheduler and worker: encoded, run and decoded by the definition', async (t) => {
  const scheduler = await startScheduler(t);
  const port = scheduler.port;
  const later = defineJob({
    type: 'later',
    run: async (ms: number, context) => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return { attempt: context.attempt, type: context.type };
    },
  });
  const jobs = [multiply, stats, later, upper, none, checksum, builtinJobs.sha256, builtinJobs.arith];
  const worker = startWorker(t, port, undefined, { jobs });
  await within(10_000, 'the worker', worker.ready());
  t.same(worker.types.sort(), jobs.map((j) => j.type).sort(), 'jobs alone: only their types, no built-ins added');
  const client = startClient(t, port);

  t.equal(await within(10_000, 'multiply', client.run(multiply, [5, 10])), 50, 'client.run(multiply, [5, 10]) resolves 50');
  t.same(await within(10_000, 'stats', client.run(stats, [1, 2, 3])), { count: 3, sum: 6 }, 'an async run, an object result');
  t.same(await within(10_000, 'later', client.run(later, 5)), { attempt: 1, type: 'later' }, 'run gets the task context');
  t.equal(await within(10_000, 'upper', client.run(upper, 'héllo')), 'HÉLLO', 'text codec');
  t.equal(await within(10_000, 'none', client.run(none, undefined)), 'nothing', 'undefined travels as an empty body');
  t.equal(await within(10_000, 'checksum', client.run(checksum, new Uint8Array([1, 2, 250]))), 253, 'a codec of its own, in bytes both ways');
  t.equal(await within(10_000, 'sha256', client.run(builtinJobs.sha256, 'Hello')), HELLO_SHA, 'the built-in sha256, typed');
  t.equal(await within(10_000, 'arith', client.run(builtinJobs.arith, '2 ** 10')), '1024', 'the built-in arith, typed');

  // The wire format is the codec's: JSON text for the default, the text itself for 'text'.
  t.equal(await client.submit('multiply', '[6, 7]'), '42', 'a JSON payload submitted raw');
  t.equal(await client.submit('upper', 'abc'), 'ABC', 'a text payload submitted raw: no JSON quoting');

  t.equal(await within(10_000, 'with options', client.run(multiply, [2, 3], { priority: 'high', retries: 1, timeoutMs: 5000 })), 6, "submit()'s options");
  const many = await within(10_000, '100 products', Promise.all(Array.from({ length: 100 }, (_, i) => client.run(multiply, [i, i]))));
  t.same(many, Array.from({ length: 100 }, (_, i) => i * i), 'pipelined on one connection');

  const job = await within(10_000, 'enqueueJob', client.enqueueJob(multiply, [7, 8]));
  t.ok(Number.isSafeInteger(job.id) && job.id > 0, 'enqueueJob resolves with the job id');
  t.equal(await within(10_000, 'its result', job.result), 56, 'and its typed result');
  const detached = await within(10_000, 'a detached job', client.enqueueJob(stats, [4, 5], { detach: true }));
  t.same(JSON.parse(await within(10_000, 'wait by id', client.wait(detached.id))), { count: 2, sum: 9 }, 'a detached typed job waited for by id');
  t.same(await detached.result, { count: 2, sum: 9 });
});

t.test('a payload the codec cannot read fails its task with E_DECODE; the worker keeps serving', async (t) => {
  const scheduler = await startScheduler(t);
  const worker = startWorker(t, scheduler.port, undefined, { jobs: [multiply, upper, fails, big] });
  await within(10_000, 'the worker', worker.ready());
  const client = startClient(t, scheduler.port);

  let err = await rejection(client.submit('multiply', 'not json'), "submit('multiply', 'not json')");
  t.ok(err instanceof TaskFailedError, 'a task failure');
  t.equal(err.code, ErrorCode.DECODE);
  t.equal(err.message, `cannot decode the payload of job type 'multiply': not valid JSON (Unexpected token 'o', "not json" is not valid JSON)`);

  err = await rejection(client.submit('multiply', Buffer.from([0x5b, 0xff, 0x5d])), 'bad UTF-8');
  t.same([err.code, err.message], [ErrorCode.DECODE, "cannot decode the payload of job type 'multiply': not valid UTF-8"]);
  err = await rejection(client.submit('upper', Buffer.from([0xc3])), 'bad UTF-8 for text');
  t.same([err.code, err.message], [ErrorCode.DECODE, "cannot decode the payload of job type 'upper': not valid UTF-8"]);

  err = await rejection(client.run(fails, 1), 'a run that throws');
  t.same([err.code, err.message], [ErrorCode.HANDLER, 'no 1'], "a run's error fails the task as a handler's does");
  err = await rejection(client.run(fails, 2), 'a run that throws with a code');
  t.same([err.code, err.message], ['E_CUSTOM', 'no 2'], 'its own code reaches the client');
  err = await rejection(client.run(big, 1), 'a result JSON cannot hold');
  t.equal(err.code, ErrorCode.HANDLER);
  t.match(err.message, /^cannot encode the result of job type 'big': not JSON-serialisable \(.*BigInt.*\)$/);

  t.equal(await within(10_000, 'multiply after', client.run(multiply, [5, 10])), 50, 'the worker still serves');
});

t.test('client.run refuses, unsent, what it cannot send', async (t) => {
  const scheduler = await startScheduler(t);
  const client = startClient(t, scheduler.port);
  await within(10_000, 'connect', client.connect());

  let err = await rejection(client.run(multiply, [1n, 2n] as never), 'a BigInt payload');
  t.same([err.code, err.message], [ErrorCode.INVALID, "cannot encode the payload of job type 'multiply': not JSON-serialisable (Do not know how to serialize a BigInt)"]);
  err = await rejection(client.run({ type: 'multiply', run: () => 1 } as never, [1, 2]), 'not a definition');
  t.same([err.code, err.message], [ErrorCode.INVALID, 'definition must be a job definition from defineJob()']);
  err = await rejection(client.enqueueJob('multiply' as never, [1, 2]), 'enqueueJob of a type name');
  t.equal(err.code, ErrorCode.INVALID);

  // Options are submit()'s, refused the same way.
  for (const options of [{ retries: -1 }, { priority: 'urgent' }, { retry: 3 }] as never[]) {
    const viaRun = await rejection(client.run(multiply, [1, 2], options), `run with ${JSON.stringify(options)}`);
    const viaSubmit = await rejection(client.submit('multiply', '[1,2]', options), `submit with ${JSON.stringify(options)}`);
    t.same([viaRun.code, viaRun.message], [viaSubmit.code, viaSubmit.message], `${JSON.stringify(options)}: ${viaRun.message}`);
  }
  t.equal(client.pendingCount, 0, 'nothing was sent');
  t.equal(scheduler.stats().submitted, 0);
});

t.test('a result the codec cannot read rejects with E_DECODE', async (t) => {
  const scheduler = await startScheduler(t);
  // A worker whose idea of 'multiply' is not the definition's: a plain handler answering text, not JSON.
  const worker = startWorker(t, scheduler.port, { multiply: () => 'fifty', checksum: () => 'xy' });
  await within(10_000, 'the worker', worker.ready());
  const client = startClient(t, scheduler.port);
  let err = await rejection(client.run(multiply, [5, 10]), 'a result that is not JSON');
  t.ok(err instanceof TaskFailedError);
  t.same([err.code, err.message], [ErrorCode.DECODE, `cannot decode the result of job type 'multiply': not valid JSON (Unexpected token 'i', "fifty" is not valid JSON)`]);
  err = await rejection(client.run(checksum, new Uint8Array([1])), "a result its own codec refuses");
  t.same([err.code, err.message], [ErrorCode.DECODE, "cannot decode the result of job type 'checksum': 2 bytes, not 4"]);
  const job = await within(10_000, 'enqueueJob', client.enqueueJob(multiply, [5, 10]));
  err = await rejection(job.result, 'the enqueued result');
  t.equal(err.code, ErrorCode.DECODE);
});

t.test('defineJob validates the definition and freezes it', async (t) => {
  const run = (s: string) => s;
  const cases: [unknown, RegExp][] = [
    [null, /^defineJob: the definition must be an object of \{ type, run, codec\? \}$/],
    [{ type: '', run }, /^defineJob: type must be a job type name of 1 to 255 bytes, got 0 bytes$/],
    [{ type: 'x'.repeat(256), run }, /got 256 bytes$/],
    [{ type: 'é'.repeat(128), run }, /got 256 bytes$/],
    [{ type: 7, run }, /type must be a job type name of 1 to 255 bytes, got number$/],
    [{ type: 'x' }, /^defineJob: run of job type 'x' must be a function, got undefined$/],
    [{ type: 'x', run, codec: 'xml' }, /^defineJob: codec of job type 'x' must be 'json', 'text' or \{ encode, decode, encodeResult, decodeResult \}, got "xml"$/],
    [{ type: 'x', run, codec: null }, /codec of job type 'x' must be .*, got null$/],
    [{ type: 'x', run, codec: { encode: run, decode: run } }, /^defineJob: the codec of job type 'x' lacks encodeResult, decodeResult \(each a function\)$/],
  ];
  for (const [spec, message] of cases) {
    const err = thrown(() => defineJob(spec as never));
    t.ok(err instanceof TaskwireError && err.code === ErrorCode.INVALID, `E_INVALID for ${String(JSON.stringify(spec)).slice(0, 40)}`);
    t.match(err.message, message);
  }
  t.equal(defineJob({ type: 'é'.repeat(127) + 'x', run }).type.length, 128, '255 bytes is a valid type');

  const definition = defineJob({ type: 'echo', run, description: 'kept' } as never) as unknown as Record<string, unknown>;
  t.ok(Object.isFrozen(definition), 'frozen');
  t.same(Object.keys(definition).sort(), ['codec', 'description', 'run', 'type'], 'the mark is not enumerable; other fields are kept');
  t.equal(JSON.stringify(multiply.codec.encode([1, 2])), JSON.stringify('[1,2]'), 'JSON by default');
  t.same(multiply.codec.decode(Buffer.from('[3,4]')), [3, 4]);
  t.equal(multiply.codec.encodeResult(12), '12');
  t.equal(multiply.codec.decodeResult(Buffer.from('12')), 12);
  t.equal(upper.codec.encode('a"b'), 'a"b', 'text is raw');
});

t.test('createWorker validates jobs like its other options', async (t) => {
  const twin = defineJob({ type: 'multiply', run: ([a, b]: [number, number]) => a + b });
  const cases: [object, string][] = [
    [{ jobs: multiply }, 'options.jobs must be an array of job definitions (from defineJob()), got object'],
    [{ jobs: [multiply, 'stats'] }, 'options.jobs[1] must be a job definition (from defineJob()), got "stats"'],
    [{ jobs: [{ type: 'x', run: () => 'x', codec: {} }] }, 'options.jobs[0] must be a job definition (from defineJob()), got object'],
    [{ jobs: [multiply, twin] }, "options.jobs defines job type 'multiply' twice"],
    [{ jobs: [multiply, stats, multiply] }, "options.jobs defines job type 'multiply' twice"],
    [{ jobs: [stats, multiply], handlers: { multiply: () => '' } }, "job type 'multiply' is in both options.jobs and options.handlers"],
    [{ jobs: [builtinJobs.arith], handlers: { arith: () => '' } }, "job type 'arith' is in both options.jobs and options.handlers"],
  ];
  for (const [options, message] of cases) {
    const err = thrown(() => createWorker({ port: 1, ...options }));
    t.same([err instanceof TaskwireError && err.code, err.message], [ErrorCode.INVALID, message]);
  }
});

// ---- the CLIs -------------------------------------------------------------------------------------------------

if (!existsSync(path.join(root, 'dist', 'worker.js'))) {
  throw new Error('dist/ is missing: run `npm run build` (npm test does it first)');
}
const WORKER = path.join(root, 'dist', 'worker.js');
const FIXTURE = path.join('test', 'fixtures', 'typed-jobs.ts');

/** Modules written for one test, inside the package so that `import 'taskwire'` resolves to it. */
function writeModules(name: string, files: Record<string, string>): Record<string, string> {
  const dir = path.join(root, '.tap', 'typed-jobs', name);
  mkdirSync(dir, { recursive: true });
  return Object.fromEntries(
    Object.entries(files).map(([file, text]) => {
      writeFileSync(path.join(dir, file), text);
      return [file, path.relative(root, path.join(dir, file))];
    }),
  );
}

t.test('dist/worker.js --jobs runs a module\'s job types; the CLI client calls them with JSON arguments', async (t) => {
  const { port } = await startServer(t);
  // The fixture is TypeScript, so this worker runs under tsx; its definitions come from lib/ while the worker is
  // dist/: they are recognised across the two copies.
  const worker = spawnChild(t, process.execPath, ['--import', 'tsx', WORKER, '--port', String(port), '--jobs', FIXTURE]);
  await waitFor('the worker to connect', () => /connected to scheduler/.test(worker.stderr()) || worker.proc.exitCode !== null, 30_000);
  const running = /running (.*) x16/.exec(worker.stderr())?.[1]?.split(', ') ?? [];
  for (const type of ['sha256', 'arith', 'multiply', 'stats', 'square', 'shout', 'reverse']) t.ok(running.includes(type), `runs ${type}`);
  t.notOk(running.includes('VERSION'), 'a constant export is left alone');

  const p = ['--port', String(port)];
  let r = await runCli(t, 'client', [...p, '--type', 'multiply', '[5,10]']);
  t.same([r.code, r.stdout, r.stderr], [0, '50\n', ''], 'client.js --type multiply "[5,10]" prints 50');
  r = await runCli(t, 'client', [...p, '--type', 'stats', '[1,2,3]', '[]']);
  t.same([r.code, r.stdout], [0, '[1,2,3] = {"count":3,"sum":6}\n[] = {"count":0,"sum":0}\n'], 'a JSON result is printed as JSON text');
  r = await runCli(t, 'client', [...p, '--type', 'square', '-5', '7', '1.5']);
  t.same([r.code, r.stdout], [0, '-5 = 25\n7 = 49\n1.5 = 2.25\n'], 'a negative number needs no --');
  r = await runCli(t, 'client', [...p, '--type', 'square', '--', '-1e1', '-0.5']);
  t.same([r.code, r.stdout], [0, '-1e1 = 100\n-0.5 = 0.25\n'], 'an input yargs would take for options goes after --, verbatim');
  r = await runCli(t, 'client', [...p, '--', 'status']);
  t.same([r.code, r.stdout], [0, `${sha256('status')}\n`], 'an input that is a command name goes after --');
  r = await runCli(t, 'client', [...p, '--type', 'multiply', 'not json']);
  t.same([r.code, r.stdout], [1, '']);
  t.equal(r.stderr, `taskwire-client: cannot decode the payload of job type 'multiply': not valid JSON (Unexpected token 'o', "not json" is not valid JSON) (E_DECODE)\n`);
  r = await runCli(t, 'client', [...p, '--type', 'shout', 'hello']);
  t.same([r.code, r.stdout], [0, 'HELLO\n'], 'an exported function is the handler of its export name');
  r = await runCli(t, 'client', [...p, '--type', 'reverse', 'abc']);
  t.same([r.code, r.stdout], [0, 'cba\n'], "the default export's entries too");
  r = await runCli(t, 'client', [...p, 'Hello']);
  t.same([r.code, r.stdout], [0, `${HELLO_SHA}\n`], 'the built-ins stay');

  const client = startClient(t, port);
  t.equal(await within(10_000, 'run on the CLI worker', client.run(multiply, [5, 10])), 50, 'the same definition, from the library');

  worker.proc.kill('SIGTERM');
  t.equal(await within(15_000, 'worker exit', worker.exited), 0, 'the worker exits 0 on SIGTERM');
});

t.test('--jobs with plain node and a file URL: a type of the module replaces the built-in of that name', async (t) => {
  const { port } = await startServer(t);
  const files = writeModules('override', {
    'jobs.mjs': [
      "import { defineJob } from 'taskwire';",
      "export const add = defineJob({ type: 'add', run: ([a, b]) => a + b });",
      "export function sha256(payload) { return 'own:' + payload.toString(); }",
      '',
    ].join('\n'),
    'more.mjs': "export default { lower: (payload) => payload.toString().toLowerCase() };\n",
  });
  const url = pathToFileURL(path.join(root, files['jobs.mjs']!)).href;
  const worker = spawnChild(t, process.execPath, [WORKER, '--port', String(port), '--jobs', url, '--jobs', files['more.mjs']!]);
  await waitFor('the worker to connect', () => /connected to scheduler/.test(worker.stderr()) || worker.proc.exitCode !== null, 20_000);
  t.match(worker.stderr(), `taskwire-worker: job type sha256 of ${url} replaces the built-in one\n`, 'says so in its log');
  const p = ['--port', String(port)];
  let r = await runCli(t, 'client', [...p, 'Hello']);
  t.same([r.code, r.stdout], [0, 'own:Hello\n'], "the module's sha256 wins");
  r = await runCli(t, 'client', [...p, '--type', 'add', '[2,3]']);
  t.same([r.code, r.stdout], [0, '5\n']);
  r = await runCli(t, 'client', [...p, '--type', 'lower', 'ABC']);
  t.same([r.code, r.stdout], [0, 'abc\n'], 'a second --jobs module');
  r = await runCli(t, 'client', [...p, '--type', 'arith', '6*7']);
  t.same([r.code, r.stdout], [0, '42\n'], 'the other built-in stays');
});

t.test('--jobs errors: one line naming the module, exit 2', async (t) => {
  const files = writeModules('errors', {
    'nothing.mjs': 'export const answer = 42;\nexport default { also: 1 };\n',
    'twice.mjs': "export function double(p) { return p; }\nexport default { double: (p) => p };\n",
    'fn.mjs': 'export default function (p) { return p; }\n',
    'broken.mjs': 'export const = ;\n',
    'throws.mjs': "throw new Error('no database');\n",
    'a.mjs': 'export function same(p) { return p; }\n',
    'b.mjs': 'export const same = (p) => p;\n',
    'shared.mjs': "import { same } from './a.mjs';\nexport { same };\nexport default { same };\n",
  });
  const cases: [string[], RegExp][] = [
    [['missing.mjs'], /^taskwire-worker: cannot load --jobs module missing\.mjs: Cannot find module '[^']*missing\.mjs' imported from .*\n$/],
    [[files['nothing.mjs']!], /^taskwire-worker: --jobs module \S*nothing\.mjs exports no job definition or function\n$/],
    [[files['twice.mjs']!], /^taskwire-worker: --jobs module \S*twice\.mjs defines job type 'double' twice\n$/],
    [[files['fn.mjs']!], /^taskwire-worker: --jobs module \S*fn\.mjs: its default export is a function; export it under the name of its job type\n$/],
    [[files['broken.mjs']!], /^taskwire-worker: cannot load --jobs module \S*broken\.mjs: Unexpected token '='\n$/],
    [[files['throws.mjs']!], /^taskwire-worker: cannot load --jobs module \S*throws\.mjs: no database\n$/],
    [[files['a.mjs']!, files['b.mjs']!], /^taskwire-worker: job type 'same' is defined by both --jobs modules \S*a\.mjs and \S*b\.mjs\n$/],
  ];
  for (const [modules, message] of cases) {
    // --port 1: a module that loaded by mistake would make the worker retry for ever instead of exiting.
    const r = await runCli(t, 'worker', ['--port', '1', ...modules.flatMap((m) => ['--jobs', m])]);
    t.equal(r.code, 2, `${modules.join(' ')}: exit 2`);
    t.match(r.stderr, message);
  }
  // The same function exported by name and in the default object is one handler, not two.
  const worker = spawnChild(t, process.execPath, [WORKER, '--port', '1', '--jobs', files['shared.mjs']!]);
  await waitFor('a connection attempt', () => /retry 1/.test(worker.stderr()) || worker.proc.exitCode !== null, 20_000);
  t.equal(worker.proc.exitCode, null, `shared.mjs loads (${worker.stderr().trim()})`);
});
