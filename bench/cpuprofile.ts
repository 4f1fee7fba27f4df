// Reads a V8 .cpuprofile (node --cpu-prof) and lists the functions with the most self time.
// Usage: tsx bench/cpuprofile.ts <file.cpuprofile> [count]

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}
export interface SelfTime {
  name: string;
  where: string;
  ms: number;
  percent: number;
}

/** Self time per function (summed over the call sites V8 keeps apart), largest first. */
export function topSelfTime(file: string, count = 10): { totalMs: number; top: SelfTime[] } {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byNode = new Map(profile.nodes.map((n) => [n.id, n]));
  const micros = new Map<string, { name: string; where: string; us: number }>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    const { functionName, url, lineNumber } = byNode.get(id)!.callFrame;
    const name = functionName || (url ? '(anonymous)' : '(native)');
    const where = url ? `${shorten(url)}:${lineNumber + 1}` : '';
    const key = `${name} ${where}`;
    const entry = micros.get(key) ?? { name, where, us: 0 };
    entry.us += delta;
    micros.set(key, entry);
    total += delta;
  });
  const top = [...micros.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, count)
    .map((e) => ({ name: e.name, where: e.where, ms: e.us / 1000, percent: (100 * e.us) / total }));
  return { totalMs: total / 1000, top };
}

/** Paths relative to the repository, node: and node_modules paths kept short. */
function shorten(url: string): string {
  if (!url.startsWith('file://')) return url;
  const root = fileURLToPath(new URL('..', import.meta.url));
  const file = path.relative(root, fileURLToPath(url));
  return file.replace(/^.*node_modules\//, '').replace(/^bench\/results\/build\//, '');
}

export function formatTop(title: string, file: string, count = 10): string {
  const { totalMs, top } = topSelfTime(file, count);
  const lines = top.map((e) => `  ${e.percent.toFixed(1).padStart(5)}%  ${e.ms.toFixed(0).padStart(7)} ms  ${e.name}  ${e.where}`);
  return `${title} (${totalMs.toFixed(0)} ms sampled)\n${lines.join('\n')}`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: tsx bench/cpuprofile.ts <file.cpuprofile> [count]\n');
    process.exit(2);
  }
  process.stdout.write(`${formatTop(path.basename(file), file, Number(process.argv[3] ?? 10))}\n`);
}
