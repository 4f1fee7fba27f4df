// Settings from a configuration file, on the real programs: precedence flag > TASKWIRE_* > file > default, one
// file for all three programs through its sections, paths relative to the file, and every mistake in it a
// one-line usage error.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { runCli, startServer } from './helpers.js';

async function dir(t: Test): Promise<string> {
  const d = await mkdtemp(path.join(tmpdir(), 'taskwire-config-'));
  t.teardown(() => rm(d, { recursive: true, force: true }));
  return d;
}

async function file(d: string, name: string, content: unknown): Promise<string> {
  const where = path.join(d, name);
  await writeFile(where, typeof content === 'string' ? content : JSON.stringify(content));
  return where;
}

/** Runs a program with --print-config and returns the settings it prints. */
async function settings(t: Test, program: 'server' | 'worker' | 'client', args: string[], env: NodeJS.ProcessEnv = {}): Promise<Record<string, unknown>> {
  const r = await runCli(t, program, [...args, '--print-config'], env);
  t.equal(r.code, 0, `${program} ${args.join(' ')} --print-config exits 0${r.stderr ? `: ${r.stderr}` : ''}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

const shared = {
  port: 9400,
  token: 'shared-secret',
  'max-queued': 77,
  server: { 'local-workers': 2, host: '0.0.0.0', heartbeat: 700 },
  worker: { concurrency: 3, 'tls-ca': 'certs/ca.pem', jobs: ['jobs/a.mjs', 'file:///opt/b.mjs'] },
  client: { type: 'arith', timeout: 1234 },
};

t.test('precedence: the command line, then TASKWIRE_*, then the file, then the default', async (t) => {
  const d = await dir(t);
  const { 'max-queued': _, ...forAll } = shared;
  const config = await file(d, 'taskwire.json', { ...forAll, server: { ...shared.server, 'max-queued': 77 } });

  let s = await settings(t, 'server', ['--config', config]);
  t.match(s, { port: 9400, 'local-workers': 2, host: '0.0.0.0', heartbeat: 700, 'max-queued': 77, token: '********', config });
  t.equal(s['max-attempts'], 3, 'what the file does not say keeps its default');
  t.notMatch(JSON.stringify(s), 'shared-secret', 'the token never appears');

  s = await settings(t, 'server', ['--config', config], { TASKWIRE_PORT: '9500', TASKWIRE_HEARTBEAT: '900' });
  t.match(s, { port: 9500, heartbeat: 900, 'local-workers': 2 }, 'a variable beats the file');
  s = await settings(t, 'server', ['--config', config, '--port', '9600'], { TASKWIRE_PORT: '9500' });
  t.equal(s.port, 9600, 'a flag beats the variable');
  s = await settings(t, 'server', ['--config', config], { TASKWIRE_PORT: '' });
  t.equal(s.port, 9400, 'an empty variable counts as unset');
  s = await settings(t, 'server', [], { TASKWIRE_CONFIG: config });
  t.equal(s['local-workers'], 2, 'TASKWIRE_CONFIG names the file too');
  s = await settings(t, 'server', []);
  t.match(s, { port: 9001, 'local-workers': 0, token: null, config: null }, 'no file: the defaults');

  s = await settings(t, 'worker', ['--config', config]);
  t.match(s, { port: 9400, concurrency: 3, host: '127.0.0.1', token: '********' }, "the worker's section and the shared keys");
  t.equal(s['tls-ca'], path.join(d, 'certs', 'ca.pem'), 'a path is relative to the file');
  t.same(s.jobs, [path.join(d, 'jobs', 'a.mjs'), 'file:///opt/b.mjs'], 'each of a list, a file URL left as it is');
  t.notOk('local-workers' in s, "the server's section is not the worker's business");

  s = await settings(t, 'client', ['--config', config]);
  t.match(s, { port: 9400, type: 'arith', timeout: 1234 });
  s = await settings(t, 'client', ['--config', config, 'jobs']);
  t.match(s, { port: 9400, limit: 20 }, 'a command sees the file too');
  t.notOk('type' in s, "and lists only its own settings");

  s = await settings(t, 'server', ['--config', await file(d, 'camel.json', { localWorkers: 4, logFormat: 'json', verbose: 2 })]);
  t.match(s, { 'local-workers': 4, 'log-format': 'json', verbose: 2 }, 'camelCase keys name the same options');
});

t.test('a flag given twice takes its last value; a list takes them all', async (t) => {
  // As `npm start -- --local-workers 2` runs `server.js --local-workers 1 --local-workers 2`.
  let s = await settings(t, 'server', ['--local-workers', '1', '--local-workers', '2', '--host', 'a', '--host', '127.0.0.2', '-v', '-v']);
  t.match(s, { 'local-workers': 2, host: '127.0.0.2', verbose: 2 });
  s = await settings(t, 'worker', ['--jobs', 'a.mjs', '--jobs', 'b.mjs', '--port', '7', '--port', '8']);
  t.match(s, { jobs: ['a.mjs', 'b.mjs'], port: 8 });
  s = await settings(t, 'client', ['--type', 'sha256', '--type', 'arith', 'x', 'y']);
  t.equal(s.type, 'arith');
  const r = await runCli(t, 'server', ['--local-workers', '1', '--local-workers', 'x']);
  t.same([r.code, r.stderr], [2, 'taskwire-server: --local-workers must be a whole number from 0, got "x" (see --help)\n'], 'the last one is the one checked');
});

t.test('a file the program cannot use is one line and exit 2', async (t) => {
  const d = await dir(t);
  const cases: [string, string | object, 'server' | 'worker' | 'client', RegExp][] = [
    ['typo.json', { concurency: 2 }, 'worker', /^taskwire-worker: --config \S*typo\.json: unknown setting "concurency"; did you mean "concurrency"\? \(see --help\)\n$/],
    ['far.json', { 'local-workers': 2 }, 'worker', /^taskwire-worker: --config \S*far\.json: unknown setting "local-workers" \(see --help\)\n$/],
    ['section.json', { worker: { 'max-queued': 1 } }, 'worker', /unknown setting "max-queued"/],
    ['bad.json', '{"port": ', 'server', /^taskwire-server: --config \S*bad\.json: .*JSON.* \(see --help\)\n$/],
    ['array.json', [1, 2], 'client', /^taskwire-client: --config \S*array\.json: must hold a JSON object of settings \(see --help\)\n$/],
    ['value.json', { port: 'abc' }, 'server', /^taskwire-server: --port must be a whole number from 0 to 65535, got "abc" \(see --help\)\n$/],
    ['self.json', { config: 'other.json' }, 'server', /"config" cannot be set in a file/],
    ['sectiontype.json', { server: 3 }, 'server', /"server" must be an object of settings/],
  ];
  for (const [name, content, program, expected] of cases) {
    const r = await runCli(t, program, ['--config', await file(d, name, content), '--print-config']);
    t.equal(r.code, 2, `${name}: exit 2`);
    t.match(r.stderr, expected, `${name}: ${r.stderr.trim()}`);
    t.equal(r.stdout, '', `${name}: nothing printed on stdout`);
  }
  const r = await runCli(t, 'server', ['--config', path.join(d, 'missing.json')]);
  t.same([r.code, r.stderr], [2, `taskwire-server: --config ${path.join(d, 'missing.json')}: no such file (see --help)\n`]);
  const help = await runCli(t, 'worker', ['--help'], { TASKWIRE_CONFIG: path.join(d, 'typo.json') });
  t.same([help.code, help.stderr], [0, ''], '--help answers whatever the file holds');
  t.match(help.stdout, /--config/);
});

t.test('the settings of a file take effect: a scheduler, its local worker and a client configured by files', async (t) => {
  const d = await dir(t);
  const config = await file(d, 'taskwire.json', { token: 'from-file', server: { 'local-workers': 1, 'http-port': 0 }, client: { type: 'arith' } });
  const { child, port } = await startServer(t, ['--config', config]);
  t.match(child.stderr(), /with 1 local worker\(s\)/, "the file's local-workers");
  const ok = await runCli(t, 'client', ['--config', config, '--port', String(port), '6*7']);
  t.same([ok.code, ok.stdout], [0, '42\n'], "the file's type and token");
  const refused = await runCli(t, 'client', ['--port', String(port), '--type', 'arith', '6*7']);
  t.equal(refused.code, 2, 'without the file the token is missing');
  t.match(refused.stderr, /E_AUTH/);
});
