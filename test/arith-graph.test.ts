// Distributed `arith`: a compiled graph, run node by node through arithOpJob, gives exactly what local evaluation
// gives, for every result and every error. The graph is run in process here; the scheduler's part is tested apart.

import t from 'tap';
import { ArithError, evaluate, evaluateToString } from '../lib/jobs/arith.js';
import { arithOpJob, compileArith, type ArithGraphNode } from '../lib/jobs/arith-graph.js';
import { generator, mulberry32, tableSources } from './arith-cases.js';

type Outcome = { text: string } | { error: string; message: string; column: number };

function outcome(run: () => string): Outcome {
  try {
    return { text: run() };
  } catch (err) {
    if (!(err instanceof ArithError)) throw err;
    return { error: err.name, message: err.message, column: err.column };
  }
}

/** Runs the nodes in order as a scheduler would, each given its inputs' results; returns what the root returns. */
function execute(graph: readonly ArithGraphNode[]): string | Uint8Array {
  const results: Buffer[] = [];
  const run = (node: ArithGraphNode) =>
    arithOpJob(Buffer.from(node.payload), { inputs: node.inputs.map((i) => results[i]!) });
  for (const node of graph.slice(0, -1)) results.push(Buffer.from(run(node)));
  return run(graph.at(-1)!);
}

const local = (src: string): Outcome => outcome(() => evaluateToString(src));
const distributed = (src: string): Outcome => outcome(() => execute(compileArith(src)) as string);

/** The root's value as a double, by running the root as a non-final node: tells -0 from 0, unlike the text. */
function distributedValue(src: string): number | ArithError {
  const graph = compileArith(src);
  const root = graph.at(-1)!;
  const asIntermediate = root.payload.replace(/^(\S+ \S+) 1 /, '$1 0 ');
  const out = Buffer.from(execute([...graph.slice(0, -1), { ...root, payload: asIntermediate }]));
  if (out[0] === 0) return out.readDoubleBE(1);
  return new ArithError(out.subarray(5).toString(), out.readUInt32BE(1));
}

function localValue(src: string): number | ArithError {
  try {
    return evaluate(src);
  } catch (err) {
    if (err instanceof ArithError) return err;
    throw err;
  }
}

const label = (src: string): string => JSON.stringify(src.length > 40 ? `${src.slice(0, 37)}...` : src);

t.test("every expression of arith.test.ts: the graph's result or error is the local one", async (t) => {
  for (const src of tableSources) t.same(distributed(src), local(src), label(src));
});

// ---- random expressions -------------------------------------------------------------------------------------

t.test('random expressions: local and distributed agree exactly, -0 and NaN included', async (t) => {
  const next = generator(mulberry32(20_240_611));
  const seen = { zeroDivision: 0, syntax: 0, negativeZero: 0, nan: 0, infinity: 0, finite: 0 };
  let mismatches = 0;
  for (let i = 0; i < 5000; i++) {
    const src = next();
    const want = local(src);
    const found = distributed(src);
    if (JSON.stringify(found) !== JSON.stringify(want)) {
      if (++mismatches <= 10) t.same(found, want, label(src));
      continue;
    }
    if ('message' in want) {
      if (/by zero/.test(want.message)) seen.zeroDivision++;
      else seen.syntax++;
      continue;
    }
    const value = localValue(src) as number;
    const raw = distributedValue(src);
    const show = (x: unknown): string => (Object.is(x, -0) ? '-0' : String(x));
    if (!Object.is(raw, value) && ++mismatches <= 10) t.fail(`${label(src)}: double ${show(raw)}, locally ${show(value)}`);
    if (Object.is(value, -0)) seen.negativeZero++;
    else if (Number.isNaN(value)) seen.nan++;
    else if (!Number.isFinite(value)) seen.infinity++;
    else seen.finite++;
  }
  t.equal(mismatches, 0, '5000 expressions, no difference');
  // The generator must keep reaching every kind of outcome, or the comparison proves little.
  for (const [kind, count] of Object.entries(seen)) t.ok(count >= 50, `${kind}: ${count} of 5000`);
});

// ---- the graph's shape --------------------------------------------------------------------------------------

/** Why the graph is not one the scheduler accepts, or null. */
function shapeError(graph: readonly ArithGraphNode[]): string | null {
  if (graph.length === 0) return 'no nodes';
  const consumers = graph.map(() => 0);
  for (const [i, node] of graph.entries()) {
    const fields = node.payload.split(' ');
    if (node.type !== 'arith.op') return `node ${i} has type ${node.type}`;
    if (fields[2] !== (i === graph.length - 1 ? '1' : '0')) return `node ${i} has final ${fields[2]}`;
    const refs = fields.slice(3).filter((arg) => arg.startsWith('$'));
    if (refs.join() !== node.inputs.map((_, k) => `$${k}`).join()) return `node ${i}: args ${refs}, ${node.inputs.length} inputs`;
    for (const input of node.inputs) {
      if (!(input >= 0 && input < i)) return `node ${i} takes node ${input}, not an earlier one`;
      consumers[input]!++;
    }
  }
  const root = consumers.pop();
  if (root !== 0) return 'the root is consumed';
  const unused = consumers.findIndex((n) => n === 0);
  return unused === -1 ? null : `node ${unused} is consumed by no later node`;
}

t.test('graphs are topological, rooted at the last node, every other node consumed', async (t) => {
  const next = generator(mulberry32(7));
  const sources = [...tableSources, ...Array.from({ length: 2000 }, next)];
  let checked = 0;
  for (const src of sources) {
    let graph: ArithGraphNode[];
    try {
      graph = compileArith(src);
    } catch {
      continue;
    }
    checked++;
    const error = shapeError(graph);
    if (error) t.fail(`${label(src)}: ${error}`);
  }
  t.ok(checked > 1000, `${checked} graphs checked`);
});

t.test('independent subtrees are independent nodes; literals are inlined', async (t) => {
  t.same(compileArith('(1*2)+(3*4)'), [
    { type: 'arith.op', payload: 'mul 3 0 1 2', inputs: [] },
    { type: 'arith.op', payload: 'mul 9 0 3 4', inputs: [] },
    { type: 'arith.op', payload: 'add 6 1 $0 $1', inputs: [0, 1] },
  ]);
  t.same(compileArith('1+(2*3)/4-5').map((n) => [n.payload, n.inputs]), [
    ['mul 5 0 2 3', []],
    ['div 8 0 $0 4', [0]],
    ['add 2 0 1 $0', [1]],
    ['sub 10 1 $0 5', [2]],
  ]);
  t.same(compileArith('-2**-1').map((n) => [n.payload, n.inputs]), [
    ['neg 5 0 1', []],
    ['pow 3 0 2 $0', [0]],
    ['neg 1 1 $0', [1]],
  ]);
  for (const src of ['5', '+5', '(5)', ' (+(1e999)) ']) {
    const graph = compileArith(src);
    t.equal(graph.length, 1, `${src}: one node`);
    t.match(graph[0]!.payload, /^num \d+ 1 (5|1e999)$/, `${src}: a num root`);
  }
});

t.test('a 10,000-character chain compiles quickly into one node per operator', async (t) => {
  const src = '1+'.repeat(4999) + '10';
  t.equal(src.length, 10_000);
  const start = performance.now();
  const graph = compileArith(src);
  const ms = performance.now() - start;
  t.equal(graph.length, 4999, 'one node per +');
  t.ok(ms < 500, `compiled in ${ms.toFixed(1)} ms`);
  t.equal(execute(graph), '5009');
  t.equal(compileArith('-'.repeat(200) + '1').length, 200, 'a node per unary minus');
  t.throws(() => compileArith(src + '1'), new ArithError('expression too long: 10001 characters (max 10000)', 1));
});

// ---- one node, as a worker runs it -------------------------------------------------------------------------

const job = (payload: string, inputs: Buffer[] = []) => arithOpJob(Buffer.from(payload), { inputs });
function encode(x: number): Buffer {
  const buf = Buffer.alloc(9);
  buf.writeDoubleBE(x, 1);
  return buf;
}
const failure = (message: string, column: number): Buffer =>
  Buffer.concat([Buffer.from([1]), Buffer.from([0, 0, 0, column]), Buffer.from(message)]);

t.test('arithOpJob: results, deferred errors and their precedence', async (t) => {
  t.equal(job('add 2 1 1 2'), '3', 'literals need no inputs');
  t.same(Buffer.from(job('sub 2 0 1 1')), encode(0));
  t.same(Buffer.from(job('neg 1 0 $0', [encode(0)])), encode(-0), '-0 survives');
  t.same(Buffer.from(job('div 2 0 $0 $1', [encode(0), encode(0)])), failure('division by zero at column 2', 2));
  t.equal(job('neg 1 1 $0', [encode(NaN)]), 'NaN');
  t.equal(job('num 1 1 1e999'), 'Infinity');
  t.throws(() => job('mod 7 1 5 $0', [encode(-0)]), new ArithError('modulo by zero at column 7', 7));
  const left = failure('division by zero at column 2', 2);
  const right = failure('modulo by zero at column 9', 9);
  t.same(Buffer.from(job('div 5 0 $0 $1', [left, right])), left, 'the left error wins');
  t.same(Buffer.from(job('div 5 0 $0 $1', [encode(1), right])), right, 'then the right one');
  t.same(Buffer.from(job('div 5 0 $1 $0', [left, right])), right, 'args, not inputs, give the order');
  t.throws(() => job('add 5 1 $0 $1', [encode(1), right]), new ArithError('modulo by zero at column 9', 9));
});

t.test('arithOpJob: malformed tasks fail with a clear message, never crash', async (t) => {
  const bad: Array<[string | Buffer, Buffer[], RegExp]> = [
    ['', [], /unknown op/],
    ['exp 1 1 2', [], /unknown op/],
    ['toString 1 1 2 3', [], /unknown op/],
    ['add 1 1 2', [], /add takes 2 arg\(s\), got 1/],
    ['neg 1 1 2 3', [], /neg takes 1 arg\(s\), got 2/],
    ['add 0 1 1 2', [], /column/],
    ['add 1.5 1 1 2', [], /column/],
    ['add 99999999999 1 1 2', [], /column/],
    ['add 1 2 1 2', [], /final/],
    ['add 1  1 2', [], /final/],
    ['add 1 1 0x10 2', [], /arg 1 is neither \$k nor a decimal literal/],
    ['add 1 1 1 Infinity', [], /arg 2 is neither/],
    ['add 1 1 1 -2', [], /arg 2 is neither/],
    ['add 1 1 $1 2', [encode(1)], /arg 1 names no input \(the task has 1\)/],
    ['add 1 1 $01 2', [encode(1), encode(1)], /arg 1 names no input/],
    ['add 1 1 $x 2', [encode(1)], /arg 1 names no input/],
    ['neg 1 1 $0', [Buffer.from('5')], /input 0 is not an intermediate result \(1 bytes\)/],
    ['neg 1 1 $0', [Buffer.alloc(0)], /input 0 is not an intermediate result/],
    ['neg 1 1 $0', [Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 0])], /input 0 is not an intermediate result/],
    ['neg 1 1 $0', [Buffer.from([1, 0, 0, 0, 1, 0xff])], /input 0 is not valid UTF-8/],
    [Buffer.from([0x61, 0xff]), [], /payload is not valid UTF-8/],
  ];
  for (const [payload, inputs, message] of bad) {
    t.throws(() => arithOpJob(Buffer.from(payload), { inputs }), { message }, JSON.stringify(String(payload)));
  }
});
