// The package as a user installs it: what `npm pack` puts in the tarball, source maps that resolve inside it,
// `import 'taskwire'` (and `require`'s error) from an install of the tarball, and `npm start` handing SIGTERM
// to the scheduler so that nothing is left holding its port.

import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { root, within } from './helpers.js';

const HELLO_SHA = '185f8db32271fe25f561a6fc938b2e264306ec304eda518007d1764826381969';
const REQUIRE_MESSAGE = "taskwire is an ES module: use import or await import('taskwire')";

if (!existsSync(path.join(root, 'dist', 'server.js'))) {
  throw new Error('dist/ is missing: run `npm run build` (npm test does it first)');
}

const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  license: string;
  main: string;
  types: string;
  bin: Record<string, string>;
  exports: unknown;
  dependencies: Record<string, string>;
  optionalDependencies?: Record<string, string>;
};

interface Packed {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number; mode: number }[];
}

/**
 * The environment of the programs this file runs: without the npm_* variables of an npm that may be running
 * the suite (they would configure the child npm: its prefix, a dry run...), TASKWIRE_* ones (options of the
 * server) or NODE_OPTIONS (the test runner's, which need not resolve from a temporary directory).
 */
function cleanEnv(): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_globalconfig', 'npm_config_registry']);
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) && !keep.has(key.toLowerCase())) continue;
    if (key.startsWith('TASKWIRE_') || key === 'NODE_OPTIONS') continue;
    env[key] = value;
  }
  return env;
}

/** Runs a program to completion, killed after `ms`. */
function run(command: string, args: string[], cwd: string, ms = 60_000): Promise<{ code: number | string; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { cwd, env: cleanEnv(), timeout: ms, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err?.killed) reject(new Error(`timed out after ${ms} ms: ${command} ${args.join(' ')}\n${stderr}`));
      else resolve({ code: err ? (err.code ?? err.signal ?? 1) : 0, stdout, stderr });
    });
  });
}

/** `npm pack --json` of this package; lifecycle scripts ignored, so the pack does not rebuild dist/ under other tests. */
async function pack(args: string[]): Promise<Packed> {
  const r = await run('npm', ['pack', '--json', '--ignore-scripts', ...args], root);
  if (r.code !== 0) throw new Error(`npm pack ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  const [packed] = JSON.parse(r.stdout) as Packed[];
  return packed!;
}

let dryRun: Promise<Packed> | undefined;
const contents = (): Promise<Packed> => (dryRun ??= pack(['--dry-run']));

/** Every string in package.json's "exports", the files it points at. */
function exportTargets(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (value && typeof value === 'object') return Object.values(value).flatMap(exportTargets);
  return [];
}

const inPackage = (target: string): string => path.posix.normalize(target).replace(/^\.\//, '');

/** Resolves when `check()` resolves true; rejects after `ms`. */
async function until(what: string, check: () => Promise<boolean> | boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Whether a new listener can take `port` on the loopback interface, that is, nothing holds it. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

t.test('the tarball holds what a user needs, and nothing else', async (t) => {
  const packed = await contents();
  const files = new Set(packed.files.map((f) => f.path));
  t.comment(`${packed.filename}: ${packed.files.length} files, ${packed.size} bytes packed, ${packed.unpackedSize} unpacked`);

  const needed = [
    'package.json',
    'README.md',
    'LICENSE',
    'CHANGELOG.md',
    'docs/PROTOCOL.md',
    'require.cjs',
    ...['server', 'worker', 'client', 'lib/index'].flatMap((f) => [`dist/${f}.js`, `dist/${f}.js.map`, `dist/${f}.d.ts`]),
    ...Object.values(pkg.bin),
    ...exportTargets(pkg.exports),
    pkg.main,
    pkg.types,
  ].map(inPackage);
  t.same(needed.filter((f) => !files.has(f)), [], 'dist/ (CLIs, library, types, maps), the docs, LICENSE, CHANGELOG and every file package.json names');

  for (const js of [...files].filter((f) => f.startsWith('dist/') && f.endsWith('.js'))) {
    if (!files.has(`${js}.map`) || !files.has(js.replace(/\.js$/, '.d.ts'))) t.fail(`${js} ships without its map or its declarations`);
  }

  // The TypeScript sources ship for the source maps (smaller than maps carrying them inline); only sources.
  const topLevel = new Set(['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'require.cjs', 'server.ts', 'worker.ts', 'client.ts']);
  const stray = [...files].filter((f) => !(topLevel.has(f) || /^(dist|docs)\//.test(f) || /^lib\/.*\.ts$/.test(f)));
  t.same(stray, [], 'nothing but dist/, docs/, the sources and the top-level files (no test/, bench/, .ci/, .github/, scripts/, node_modules, .tap)');
  t.ok(files.has('server.ts') && files.has('lib/index.ts'), 'the sources the maps point at');
  const suspicious = [...files].filter((f) => /(^|\/)(test|bench|node_modules|\.tap|\.ci)(\/|$)|\.test\.|\.tsbuildinfo$/.test(f));
  t.same(suspicious, [], 'no tests, benchmarks, dependencies or build state anywhere in it');

  t.equal(pkg.license, 'MIT');
  const license = readFileSync(path.join(root, 'LICENSE'), 'utf8');
  t.match(license, /^MIT License/, 'LICENSE is the MIT license');
  t.match(license, /Copyright \(c\) 2026 the taskwire authors/);
  t.match(readFileSync(path.join(root, 'CHANGELOG.md'), 'utf8'), /^## \[Unreleased\]$/m, 'CHANGELOG.md has an Unreleased section');
});

t.test('every source map in the tarball resolves its sources inside it', async (t) => {
  const packed = await contents();
  const files = new Set(packed.files.map((f) => f.path));
  const maps = [...files].filter((f) => f.endsWith('.js.map'));
  t.ok(maps.length >= 4, `${maps.length} maps`);
  const problems: string[] = [];
  for (const mapPath of maps) {
    const map = JSON.parse(readFileSync(path.join(root, mapPath), 'utf8')) as { file: string; sourceRoot?: string; sources: string[]; sourcesContent?: (string | null)[] };
    const js = mapPath.replace(/\.map$/, '');
    if (map.file !== path.posix.basename(js)) problems.push(`${mapPath}: "file" is ${map.file}`);
    if (!readFileSync(path.join(root, js), 'utf8').trimEnd().endsWith(`//# sourceMappingURL=${path.posix.basename(mapPath)}`)) {
      problems.push(`${js} does not point at ${mapPath}`);
    }
    if (map.sources.length === 0) problems.push(`${mapPath} has no sources`);
    map.sources.forEach((source, i) => {
      const content = map.sourcesContent?.[i];
      if (typeof content === 'string' && content.length > 0) return; // carried in the map itself
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(mapPath), map.sourceRoot ?? '', source));
      if (!files.has(resolved)) problems.push(`${mapPath}: ${source} (${resolved}) is neither in the map nor in the tarball`);
    });
  }
  t.same(problems, [], 'each map names its .js, which points back at it, and carries or ships every source');
});

t.test('installed from the tarball: import by name, the programs, and what require() says', async (t) => {
  const tmp = realpathSync(mkdtempSync(path.join(os.tmpdir(), 'taskwire-package-')));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const packed = await pack(['--pack-destination', tmp]);
  const tarball = path.join(tmp, packed.filename);
  t.ok(existsSync(tarball), `npm pack wrote ${packed.filename}`);

  const project = path.join(tmp, 'project');
  const installed = path.join(project, 'node_modules', 'taskwire');
  mkdirSync(project);
  // A CommonJS project (no "type"), as most are: the .mjs file below is ES, the .cjs file CommonJS.
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'taskwire-install-check', version: '1.0.0', private: true }));
  const install = await run('npm', ['install', tarball, '--offline', '--no-audit', '--no-fund'], project, 90_000);
  const viaNpm = install.code === 0;
  if (!viaNpm) {
    if (!/ENOTCACHED/.test(install.stderr)) {
      t.fail(`npm install of the tarball exited ${install.code}: ${install.stderr}`);
      return;
    }
    // The npm cache holds the dependencies' tarballs (npm ci puts them there) but not always the registry's
    // metadata that resolving their ranges needs. Then the tarball is unpacked where npm would put it, with its
    // dependencies linked from this checkout's node_modules.
    t.comment(`npm install --offline: ${install.stderr.trim().split('\n')[1] ?? install.stderr.trim()}`);
    t.comment('so the tarball is unpacked into node_modules/taskwire instead, with its dependencies linked from this checkout');
    mkdirSync(installed, { recursive: true });
    const untar = await run('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1'], project);
    t.equal(untar.code, 0, `tar -xzf (stderr: ${untar.stderr})`);
    for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
      const from = path.join(root, 'node_modules', dep);
      if (existsSync(from)) symlinkSync(from, path.join(project, 'node_modules', dep), 'dir');
    }
  }
  t.ok(existsSync(path.join(installed, 'package.json')), `${viaNpm ? 'installed by npm' : 'unpacked'} into node_modules/taskwire`);

  writeFileSync(
    path.join(project, 'esm.mjs'),
    [
      "import { createScheduler, createWorker, createClient } from 'taskwire';",
      "console.log(import.meta.resolve('taskwire'));",
      'const scheduler = createScheduler({ port: 0 });',
      'const { port } = await scheduler.listen();',
      'const worker = createWorker({ port });',
      'await worker.ready();',
      'const client = createClient({ port });',
      "console.log(await client.submit('sha256', 'Hello'));",
      'await client.close();',
      'await worker.close();',
      'await scheduler.close();',
    ].join('\n'),
  );
  const esm = await run(process.execPath, ['esm.mjs'], project, 30_000);
  t.equal(esm.code, 0, `an ES module imports it by name and runs a task (stderr: ${esm.stderr})`);
  t.same(esm.stdout.trim().split('\n'), [pathToFileURL(path.join(installed, 'dist', 'lib', 'index.js')).href, HELLO_SHA], 'resolved to the installed dist/lib/index.js');

  writeFileSync(
    path.join(project, 'cjs.cjs'),
    [
      "let message = 'require did not throw';",
      "try { require('taskwire'); } catch (err) { message = `${err.code}: ${err.message}`; }",
      'console.log(message);',
      "import('taskwire').then((m) => console.log(typeof m.createScheduler, typeof m.createClient));",
    ].join('\n'),
  );
  const cjs = await run(process.execPath, ['cjs.cjs'], project, 30_000);
  t.equal(cjs.code, 0, `stderr: ${cjs.stderr}`);
  t.same(cjs.stdout.trim().split('\n'), [`ERR_REQUIRE_ESM: ${REQUIRE_MESSAGE}`, 'function function'], "CommonJS: require() says to use import; await import('taskwire') works");

  for (const [name, target] of Object.entries(pkg.bin)) {
    // npm links the programs into node_modules/.bin; unpacked, they are run where the link would point.
    const bin = viaNpm
      ? await run(path.join(project, 'node_modules', '.bin', name), ['--version'], project, 30_000)
      : await run(process.execPath, [path.join(installed, target), '--version'], project, 30_000);
    t.same([bin.code, bin.stdout.trim()], [0, pkg.version], `${name} runs from the installed package`);
  }

  const map = JSON.parse(readFileSync(path.join(installed, 'dist', 'server.js.map'), 'utf8')) as { sources: string[]; sourcesContent?: string[] };
  const source = map.sourcesContent?.[0] ?? readFileSync(path.join(installed, 'dist', map.sources[0]!), 'utf8');
  t.match(source, /^#!\/usr\/bin\/env node\n\/\/ taskwire-server/, "the installed server.js.map's source is there: server.ts");
});

t.test('npm start hands SIGTERM to the scheduler, which exits and frees its port', async (t) => {
  // Its own process group, so that teardown can reach anything npm leaves behind, even an orphan.
  const npm = spawn('npm', ['start', '--', '--port', '0', '--http-port', '0'], { cwd: root, env: cleanEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
  npm.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = once(npm, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  const group = npm.pid!;
  const groupAlive = (): boolean => {
    try {
      process.kill(-group, 0);
      return true;
    } catch {
      return false;
    }
  };
  t.teardown(() => {
    if (groupAlive()) process.kill(-group, 'SIGKILL');
  });

  let port = 0;
  await until(
    'npm start to print the scheduler address',
    () => {
      port = Number(/listening on [^:\s]+:(\d+)/.exec(err)?.[1] ?? 0);
      if (!port && npm.exitCode !== null) throw new Error(`npm start exited ${npm.exitCode}: ${err}`);
      return port > 0;
    },
    30_000,
  );
  t.notOk(await portFree(port), `the scheduler listens on ${port}`);

  npm.kill('SIGTERM'); // to npm itself, as a process manager or `kill <pid>` would
  await until('the port to be freed', () => portFree(port), 8_000);
  t.pass('the port is free again');
  const code = await within(8_000, 'npm to exit', exited);
  t.equal(code, 0, 'npm exits 0 once the scheduler has');
  t.match(err, /SIGTERM received, shutting down/, 'the scheduler itself got the signal and shut down gracefully');
  await until('every process npm started to be gone', () => !groupAlive(), 5_000);
  t.pass('no process of the group is left');
});
