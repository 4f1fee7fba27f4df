// The container files, checked where no Docker engine runs: the Dockerfile linted (dockerfile-utils) and held to
// its shape; docker-compose.yml normalised by `docker-compose config`; then the programs started as the image and
// the compose file start them (their ENTRYPOINT, command and environment, read from the files), with a job through
// them and the HEALTHCHECK's own command before and after the scheduler stops.
//
// docker-compose is Debian's (scripts/ensure-test-tools.sh installs it). Without it the compose checks and the
// compose worker fail under CI=true and are skipped elsewhere.

import t, { type Test } from 'tap';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { validate } from 'dockerfile-utils';
import { parse as parseYaml } from 'yaml';
import { root, runCli, spawnChild, waitFor, within } from './helpers.js';

const HELLO_SHA = '185f8db32271fe25f561a6fc938b2e264306ec304eda518007d1764826381969';
const DOCKERFILE = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
const COMPOSE_FILE = 'docker-compose.yml';
const compose = (process.env.PATH ?? '').split(path.delimiter).map((dir) => path.join(dir, 'docker-compose')).find((file) => existsSync(file));
const noCompose = 'docker-compose is missing: run scripts/ensure-test-tools.sh as root (apt-get install docker-compose) for the compose checks';
const noConfig = (): string => (compose ? 'docker-compose config failed (see the compose test)' : noCompose);

if (!existsSync(path.join(root, 'dist', 'server.js'))) {
  throw new Error('dist/ is missing: run `npm run build` (npm test does it first)');
}

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}
interface Stage {
  image: string;
  name: string | undefined;
  body: Instruction[];
}

/** Instructions with continuation lines joined and comments dropped, as the builder reads them. */
function instructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  let start = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd();
    if (/^\s*#/.test(line) || (pending === '' && line.trim() === '')) return;
    if (pending === '') start = i + 1;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      return;
    }
    const m = /^\s*(\S+)\s*([\s\S]*)$/.exec(pending + line)!;
    out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: start });
    pending = '';
  });
  return out;
}

function stages(list: Instruction[]): Stage[] {
  const out: Stage[] = [];
  for (const ins of list) {
    if (ins.keyword === 'FROM') {
      const words = ins.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      out.push({ image: words[0]!, name: /^as$/i.test(words[1] ?? '') ? words[2] : undefined, body: [] });
    } else if (out.length > 0) out.at(-1)!.body.push(ins);
  }
  return out;
}

/** The JSON (exec) form's argument list, or null for the shell form. */
function execForm(args: string): string[] | null {
  try {
    const value = JSON.parse(args) as unknown;
    return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : null;
  } catch {
    return null;
  }
}

/** `ENV A=1 B="two words"`, or the older `ENV A 1`. */
function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { args } of stage.body.filter((i) => i.keyword === 'ENV')) {
    if (!/^[\w.-]+=/.test(args)) {
      const [key, ...rest] = args.split(/\s+/);
      env[key!] = rest.join(' ');
      continue;
    }
    for (const m of args.matchAll(/([\w.-]+)=("(?:[^"\\]|\\.)*"|\S*)/g)) env[m[1]!] = m[2]!.startsWith('"') ? (JSON.parse(m[2]!) as string) : m[2]!;
  }
  return env;
}

const last = (stage: Stage, keyword: string): Instruction | undefined => stage.body.filter((i) => i.keyword === keyword).at(-1);

const all = stages(instructions(DOCKERFILE));
const final = all.at(-1)!;
const workdir = last(final, 'WORKDIR')?.args ?? '/';
const entrypoint = execForm(last(final, 'ENTRYPOINT')?.args ?? '') ?? [];
const cmd = execForm(last(final, 'CMD')?.args ?? '[]') ?? [];
const health = /^((?:--[\w-]+=\S+\s+)*)CMD\s+([\s\S]*)$/.exec(last(final, 'HEALTHCHECK')?.args ?? '');
const healthcheck = execForm(health?.[2] ?? '') ?? [];
const imageEnv = envOf(final);

/**
 * A command of the image as this machine runs it: the image's `node` is the Node running the tests, and the
 * WORKDIR is the repository root (spawnChild's cwd), whose dist/ npm run build made.
 */
function local(argv: string[]): [string, string[]] {
  const [command, ...args] = argv.map((a) => (a === workdir || a.startsWith(`${workdir}/`) ? path.join(root, path.relative(workdir, a)) : a));
  return [command === 'node' ? process.execPath : command!, args];
}

/** Unsets the TASKWIRE_* variables of whoever runs the tests: a container starts with the image's alone. */
function containerEnv(...layers: Record<string, string | undefined>[]): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const key of Object.keys(process.env)) if (key.startsWith('TASKWIRE_')) env[key] = undefined;
  return Object.assign(env, ...layers);
}

async function run(t: Test, argv: string[], env: NodeJS.ProcessEnv = {}, ms = 30_000): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const [command, args] = local(argv);
  const child = spawnChild(t, command, args, env);
  const code = await within(ms, argv.join(' '), child.exited);
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

/** Ports free on `host` now (two at once, so they differ). */
async function freePorts(count: number, host: string): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<net.Server>((resolve, reject) => {
      const server = net.createServer().once('error', reject);
      server.listen(0, host, () => resolve(server));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

t.test('the Dockerfile: no linter findings, multi-stage, pinned bases, a non-root user, exec forms', async (t) => {
  const findings = validate(DOCKERFILE).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
  t.same(findings, [], 'dockerfile-utils finds nothing');

  t.ok(all.length >= 2, `${all.length} stages: one to build, one to run`);
  const names = new Set(all.map((s) => s.name).filter(Boolean));
  for (const { image } of all.filter((s) => !names.has(s.image))) {
    const [name, digest] = image.split('@');
    const tag = name!.split('/').at(-1)!.split(':')[1];
    t.ok(tag !== undefined || digest !== undefined, `${image} names a tag or digest`);
    t.not(tag, 'latest', `${image} is not :latest`);
  }
  t.match(final.image, /^node:20(?:\.\d+)*(?:-[a-z]+)?-slim(?:@sha256:[0-9a-f]{64})?$/, 'the runtime stage is a slim official Node 20 image');

  const build = all[0]!.body.filter((i) => i.keyword === 'RUN').map((i) => i.args).join('\n');
  t.match(build, /\bnpm ci\b/, 'the build stage installs from the lockfile');
  t.match(build, /\bnpm run build\b/, 'and builds');
  t.match(build, /\bnpm prune --omit=dev\b|\bnpm ci\b[^\n]*--omit=dev/, 'and keeps production dependencies only');

  const user = last(final, 'USER')?.args.split(':')[0];
  t.ok(user !== undefined && !['root', '0'].includes(user), `the final stage runs as ${user ?? 'root (no USER)'}`);
  t.same(entrypoint.slice(0, 2), ['node', 'dist/server.js'], 'ENTRYPOINT is exec form and runs the scheduler');
  t.ok(last(final, 'CMD') === undefined || execForm(last(final, 'CMD')!.args) !== null, 'CMD, if any, is exec form');
  t.ok(healthcheck.length > 0, `HEALTHCHECK is exec form: ${last(final, 'HEALTHCHECK')?.args ?? 'none'}`);
  t.equal(imageEnv.TASKWIRE_HOST, '0.0.0.0', 'the scheduler listens on every interface of the container');
  const exposed = final.body.filter((i) => i.keyword === 'EXPOSE').flatMap((i) => i.args.split(/\s+/));
  t.same(exposed.sort(), ['9001', '9002'], 'the TCP and HTTP ports are exposed');
});

t.test('the build copies every source the build compiles, and the runtime stage runs from what it copies', async (t) => {
  const ignored = readFileSync(path.join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const dir of ['node_modules', 'dist', '.git']) t.ok(ignored.includes(dir), `.dockerignore leaves out ${dir}`);
  const copies = (stage: Stage): { from: string | undefined; sources: string[]; dest: string }[] =>
    stage.body.filter((i) => i.keyword === 'COPY').map((i) => {
      const words = i.args.split(/\s+/);
      const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
      const paths = words.filter((w) => !w.startsWith('--'));
      return { from, sources: paths.slice(0, -1), dest: paths.at(-1)! };
    });
  const copied = copies(all[0]!).filter((c) => c.from === undefined).flatMap((c) => c.sources);
  for (const source of copied) {
    t.ok(existsSync(path.join(root, source)), `${source} exists`);
    t.notOk(ignored.some((pattern) => source === pattern || source.startsWith(`${pattern}/`)), `${source} is not left out of the context`);
  }
  // tsc lists what the build compiles (without type-checking it): each of those files must be in a copy.
  const listed = await run(t, ['node', path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json', '--listFilesOnly'], {}, 60_000);
  t.equal(listed.code, 0, 'tsc lists the build');
  const sources = listed.stdout.split('\n').filter((f) => f && !f.includes('/node_modules/')).map((f) => path.relative(root, f));
  t.ok(sources.length > 10, `${sources.length} source files`);
  t.same(sources.filter((f) => !copied.some((c) => f === c || f.startsWith(`${c}/`))), [], 'every one is copied into the build stage');
  t.ok(copied.includes('tsconfig.json') && copied.includes('tsconfig.build.json'), 'with the configuration it extends');

  // The runtime stage's copies from the build stage, laid out in a directory of their own: this repository's dist/
  // and node_modules stand for the build stage's.
  const app = mkdtempSync(path.join(os.tmpdir(), 'taskwire-image-'));
  t.teardown(() => rmSync(app, { recursive: true, force: true }));
  const buildDir = last(all[0]!, 'WORKDIR')?.args ?? '/';
  for (const { from, sources, dest } of copies(final)) {
    t.equal(from, all[0]!.name, `${sources.join(' ')} comes from the build stage`);
    for (const source of sources) {
      const relative = path.posix.relative(buildDir, source);
      const directory = statSync(path.join(root, relative)).isDirectory();
      // As COPY does: a directory's contents go to the destination; a file goes into it if it ends with a slash.
      const into = path.join(app, path.posix.relative(workdir, path.posix.resolve(workdir, dest)));
      const target = !directory && dest.endsWith('/') ? path.join(into, path.basename(relative)) : into;
      mkdirSync(path.dirname(target), { recursive: true });
      if (relative === 'node_modules') symlinkSync(path.join(root, relative), target, 'dir');
      else cpSync(path.join(root, relative), target, { recursive: directory });
    }
  }
  for (const program of ['server', 'worker', 'client']) {
    const r = await run(t, ['node', path.join(app, 'dist', `${program}.js`), '--version']);
    t.same([r.code, r.stdout.trim()], [0, JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version], `${program} starts from the image's files`);
  }
});

type Services = Record<string, Record<string, unknown>>;
/** The compose file as docker-compose reads it, with a token in the shell and without. */
let configs: { token: Services; none: Services } | null = null;
const TOKEN = `container-test-${randomBytes(8).toString('hex')}`;

async function composeConfig(t: Test, token: string | undefined): Promise<Services> {
  const r = await run(t, [compose!, '-f', COMPOSE_FILE, 'config'], containerEnv({ TASKWIRE_TOKEN: token }), 60_000);
  t.equal(r.code, 0, `docker-compose config accepts ${COMPOSE_FILE}${r.code === 0 ? '' : `: ${r.stderr}`}`);
  return (parseYaml(r.stdout) as { services: Services }).services;
}

t.test('docker-compose config: a scheduler on the host loopback, workers that scale, the token passed through', { skip: !compose && !process.env.CI ? noCompose : false }, async (t) => {
  if (!compose) throw new Error(noCompose);
  const s = await composeConfig(t, TOKEN);
  const { scheduler, worker } = s;
  if (!scheduler || !worker) throw new Error(`services scheduler and worker expected, got ${Object.keys(s).join(', ')}`);
  // docker-compose v1 writes "host:published:target/tcp"; v2 writes objects.
  const ports = ((scheduler.ports ?? []) as (string | { host_ip?: string; published: string | number; target: number })[]).map((p) =>
    typeof p === 'string' ? p.replace(/\/tcp$/, '') : `${p.host_ip ?? ''}:${p.published}:${p.target}`,
  );
  t.same(ports.sort(), ['127.0.0.1:9001:9001', '127.0.0.1:9002:9002'], 'ports published on the host loopback only');
  t.match(scheduler.environment, { TASKWIRE_HTTP_OPEN: 'true', TASKWIRE_TOKEN: TOKEN }, "the HTTP API answers forwarded requests; the token is the shell's");
  t.same(worker.build, scheduler.build, 'both from the same Dockerfile');
  t.equal(worker.image, scheduler.image, 'and the same image');
  t.same(worker.entrypoint, ['node', 'dist/worker.js'], 'the worker entrypoint, exec form');
  t.match(worker.environment, { TASKWIRE_HOST: 'scheduler', TASKWIRE_TOKEN: TOKEN }, 'the worker reaches the scheduler by service name, with the token');
  t.equal(worker.container_name, undefined, 'no container_name, so --scale works');
  t.equal(worker.ports, undefined, 'no host ports on the worker');
  t.match(worker.depends_on, { scheduler: { condition: 'service_healthy' } }, 'workers start once the scheduler is healthy');
  for (const [name, service] of Object.entries(s)) t.match(service.restart, /^(always|unless-stopped|on-failure)/, `${name} restarts`);

  const none = await composeConfig(t, undefined);
  for (const name of ['scheduler', 'worker']) {
    t.equal((none[name]?.environment as Record<string, string> | undefined)?.TASKWIRE_TOKEN, '', `no TASKWIRE_TOKEN in the shell: ${name} gets an empty one (none)`);
  }
  configs = { token: s, none };
});

/**
 * The scheduler as the image starts it (ENTRYPOINT and CMD, the image's ENV and then the compose file's, ports
 * remapped to free ones), a worker as the compose file starts it, a job from the client, and the HEALTHCHECK's
 * command while the scheduler runs and after it stopped. `host`, if given, replaces the image's TASKWIRE_HOST.
 */
async function deployment(t: Test, composed: Services | null, host?: string): Promise<void> {
  const [port, httpPort] = await freePorts(2, host ?? imageEnv.TASKWIRE_HOST ?? '127.0.0.1');
  const ports = { TASKWIRE_PORT: String(port), TASKWIRE_HTTP_PORT: String(httpPort) };
  const env = containerEnv(imageEnv, (composed?.scheduler?.environment ?? {}) as Record<string, string>, host ? { TASKWIRE_HOST: host } : {}, ports);
  const token = env.TASKWIRE_TOKEN || undefined;

  if (entrypoint.length === 0 || healthcheck.length === 0) throw new Error('the Dockerfile has no exec-form ENTRYPOINT or HEALTHCHECK to run');
  const [command, args] = local([...entrypoint, ...cmd]);
  const scheduler = spawnChild(t, command, args, env);
  const output = (): string => scheduler.stdout() + scheduler.stderr();
  await waitFor('the scheduler to listen', () => /listening on \S+:\d+/.test(output()) || scheduler.proc.exitCode !== null, 20_000);
  t.match(output(), `listening on ${env.TASKWIRE_HOST}:${port}`, `the scheduler listens on ${env.TASKWIRE_HOST}, port TASKWIRE_PORT`);

  const healthz = async (): Promise<{ workers: number }> => {
    const res = await fetch(`http://127.0.0.1:${httpPort}/healthz`, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(5000) });
    if (res.status !== 200) throw new Error(`GET /healthz answered ${res.status}: ${await res.text()}`);
    return (await res.json()) as { workers: number };
  };
  t.match(await healthz(), { workers: 0 }, 'GET /healthz answers on TASKWIRE_HTTP_PORT');

  let r = await run(t, healthcheck, env);
  t.equal(r.code, 0, `the HEALTHCHECK command exits 0 while the scheduler runs${r.code === 0 ? '' : `: ${r.stderr}`}`);

  await t.test('a worker as the compose file starts it runs a job from the client', { skip: !composed && !process.env.CI ? noCompose : false }, async (t) => {
    if (!composed) throw new Error(noConfig());
    const service = composed.worker!;
    const environment = service.environment as Record<string, string>;
    // The service name resolves only on the compose network; here the scheduler is on this machine.
    t.equal(environment.TASKWIRE_HOST, 'scheduler', 'the worker is pointed at the scheduler service');
    const workerEnv = containerEnv(imageEnv, environment, { TASKWIRE_HOST: '127.0.0.1', TASKWIRE_PORT: String(port) });
    const [wcommand, wargs] = local([...(service.entrypoint as string[]), ...((service.command as string[] | undefined) ?? [])]);
    const worker = spawnChild(t, wcommand, wargs, workerEnv);
    const deadline = Date.now() + 20_000;
    while ((await healthz()).workers < 1) {
      if (worker.proc.exitCode !== null || Date.now() > deadline) throw new Error(`the worker did not join: ${worker.stderr()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const job = await runCli(t, 'client', ['--port', String(port), 'Hello'], containerEnv({ TASKWIRE_TOKEN: token }));
    t.same([job.code, job.stdout], [0, `${HELLO_SHA}\n`], `client.js "Hello" prints the digest${job.code === 0 ? '' : `: ${job.stderr}`}`);
    worker.proc.kill('SIGTERM');
    t.equal(await within(15_000, 'worker exit', worker.exited), 0, 'the worker exits 0 on SIGTERM (docker stop)');
  });

  scheduler.proc.kill('SIGTERM');
  t.equal(await within(15_000, 'scheduler exit', scheduler.exited), 0, 'the scheduler exits 0 on SIGTERM (docker stop)');
  r = await run(t, healthcheck, env);
  t.not(r.code, 0, `the HEALTHCHECK command fails once the scheduler is gone (exit ${r.code})`);
}

// As written: on 0.0.0.0, as the image's TASKWIRE_HOST says, for that and the health check reaching it on
// loopback are what is tested; with the token, which then guards the open HTTP API while the test runs.
t.test("the image's ENTRYPOINT and HEALTHCHECK, a compose worker and a job, as written", async (t) => deployment(t, configs?.token ?? null));

// Compose's default, no token: the same on 127.0.0.1, since an open HTTP API without a token should not face the
// network even for a test.
t.test('the same without a token: an empty TASKWIRE_TOKEN is none', { skip: !compose && !process.env.CI ? noCompose : false }, async (t) => {
  if (!configs) throw new Error(noConfig());
  await deployment(t, configs.none, '127.0.0.1');
});
