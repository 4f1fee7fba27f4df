// The README's library example is run as written, importing 'taskwire' by name, so the docs cannot drift.

import t from 'tap';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { root, spawnChild, within } from './helpers.js';

t.test('README library example runs and prints what its comments say', async (t) => {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const example = /## Library\s+```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  if (!example) throw new Error('no ```ts block under "## Library" in README.md');
  // Inside the package directory so that `import 'taskwire'` resolves to this package (self-reference).
  const dir = path.join(root, '.tap', 'readme');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'example.ts');
  writeFileSync(file, example);
  const child = spawnChild(t, process.execPath, ['--import', 'tsx', file]);
  const code = await within(20_000, 'the README example', child.exited);
  t.equal(code, 0, `exits 0 (stderr: ${child.stderr()})`);
  const expected = [...example.matchAll(/console\.log\(.*?\/\/ (.+)$/gm)].map((m) => m[1]!.trim().replace(/^'|'$/g, ''));
  t.same(child.stdout().trim().split('\n'), expected, 'prints the values shown in its comments');
  t.ok(expected.length >= 3);
});
