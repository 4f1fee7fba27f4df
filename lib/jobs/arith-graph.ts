// Distributed evaluation of `arith` expressions: compileArith turns one into a graph of `arith.op` tasks, and
// arithOpJob runs one of them on a worker. The root's result or error is exactly what evaluateToString gives.

import { ArithError, applyBinary, parse, postOrder, type ArithNode, type BinaryOperator } from './arith.js';

/**
 * One task of the graph. `inputs` are indices of earlier nodes whose results it takes, in the order of its `$k`
 * args; the last node is the root and every other node is an input of exactly one later node.
 *
 * `payload` is UTF-8 text, space separated: `<op> <column> <final> <arg> [<arg>]`
 * - op: `add sub mul div mod pow` take two args, `neg` one, and `num` one literal (only a root that is a bare
 *   literal is a node: other literals are args).
 * - column: the operator's 1-based column in the source, for the division-by-zero message.
 * - final: `1` on the root, which returns String(value) or throws; `0` elsewhere.
 * - arg: `$k`, the result of node `inputs[k]`; or a literal's source text, read with Number().
 *
 * A non-final node returns bytes: 0x00 + the value as float64 big-endian (so -0, NaN and infinities survive), or
 * 0x01 + column as u32 big-endian + the UTF-8 message of a division by zero. Such an error is carried to the root
 * rather than failing its task, so that, as locally, the first one in evaluation order is the one reported.
 */
export type ArithGraphNode = { type: 'arith.op'; payload: string; inputs: number[] };

const OP_NAMES: Record<BinaryOperator, string> = {
  '+': 'add',
  '-': 'sub',
  '*': 'mul',
  '/': 'div',
  '%': 'mod',
  '**': 'pow',
};
const BINARY = new Map(Object.entries(OP_NAMES).map(([op, name]) => [name, op as BinaryOperator]));

/** Compiles an expression into its graph, in topological order. Throws the ArithError `parse` throws. */
export function compileArith(source: string): ArithGraphNode[] {
  const root = parse(source);
  const nodes: ArithGraphNode[] = [];
  // The operands computed so far: a literal's text, or the index of the node that computes it.
  const operands: Array<string | number> = [];
  const emit = (node: ArithNode, op: string, args: Array<string | number>): void => {
    const inputs: number[] = [];
    const text = args.map((arg) => (typeof arg === 'string' ? arg : `$${inputs.push(arg) - 1}`));
    nodes.push({ type: 'arith.op', payload: [op, node.column, node === root ? 1 : 0, ...text].join(' '), inputs });
    operands.push(nodes.length - 1);
  };
  for (const node of postOrder(root)) {
    if (node.kind === 'num') {
      if (node === root) emit(node, 'num', [node.text]);
      else operands.push(node.text);
    } else if (node.kind === 'neg') {
      emit(node, 'neg', [operands.pop()!]);
    } else {
      const right = operands.pop()!;
      emit(node, OP_NAMES[node.op], [operands.pop()!, right]);
    }
  }
  return nodes;
}

// What the tokenizer accepts, so that Number() cannot read anything else ('0x10', 'Infinity', ' 1').
const LITERAL = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function malformed(what: string): Error {
  return new Error(`malformed arith.op task: ${what}`);
}

function decodeText(bytes: Uint8Array, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw malformed(`${what} is not valid UTF-8`);
  }
}

function decodeResult(bytes: Uint8Array, k: number): number | ArithError {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf[0] === 0 && buf.length === 9) return buf.readDoubleBE(1);
  if (buf[0] === 1 && buf.length >= 5) {
    return new ArithError(decodeText(buf.subarray(5), `input ${k}`), buf.readUInt32BE(1));
  }
  throw malformed(`input ${k} is not an intermediate result (${buf.length} bytes)`);
}

function encodeResult(outcome: number | ArithError): Buffer {
  if (typeof outcome === 'number') {
    const buf = Buffer.alloc(9);
    buf.writeDoubleBE(outcome, 1);
    return buf;
  }
  const message = Buffer.from(outcome.message);
  const buf = Buffer.alloc(5 + message.length);
  buf[0] = 1;
  buf.writeUInt32BE(outcome.column, 1);
  message.copy(buf, 5);
  return buf;
}

function operand(arg: string, index: number, inputs: readonly Uint8Array[]): number | ArithError {
  if (arg.startsWith('$')) {
    const k = /^\$(?:0|[1-9]\d*)$/.test(arg) ? Number(arg.slice(1)) : -1;
    const input = inputs[k];
    if (!input) throw malformed(`arg ${index + 1} names no input (the task has ${inputs.length})`);
    return decodeResult(input, k);
  }
  if (!LITERAL.test(arg)) throw malformed(`arg ${index + 1} is neither $k nor a decimal literal`);
  return Number(arg);
}

function compute(op: string, [a, b]: number[], column: number): number | ArithError {
  return op === 'num' ? a : op === 'neg' ? -a : applyBinary(BINARY.get(op)!, a, b, column);
}

/** Built-in `arith.op` job: one node of a compiled graph (see ArithGraphNode), given its inputs' results. */
export function arithOpJob(
  payload: Uint8Array,
  context: { readonly inputs: readonly Uint8Array[] },
): string | Uint8Array {
  const [op = '', column = '', final, ...args] = decodeText(payload, 'payload').split(' ');
  const arity = op === 'num' || op === 'neg' ? 1 : BINARY.has(op) ? 2 : 0;
  if (arity === 0) throw malformed(`unknown op (payload starts '${op.slice(0, 8)}')`);
  if (args.length !== arity) throw malformed(`${op} takes ${arity} arg(s), got ${args.length}`);
  if (!/^[1-9]\d{0,9}$/.test(column) || Number(column) > 0xffff_ffff) throw malformed('column is not a u32 above 0');
  if (final !== '0' && final !== '1') throw malformed("final is neither '0' nor '1'");

  const operands = args.map((arg, i) => operand(arg, i, context.inputs));
  // The first operand's error wins over the second's, which wins over this node's own: evaluation order.
  const outcome = operands.find((o) => o instanceof ArithError) ?? compute(op, operands as number[], Number(column));
  if (final === '0') return encodeResult(outcome);
  if (outcome instanceof ArithError) throw outcome;
  return String(outcome);
}
