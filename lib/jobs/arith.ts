// Safe arithmetic evaluator (tokenizer, recursive-descent parser to a tree, evaluator) with JavaScript double
// semantics, used by the `arith` job and, compiled to a graph, by distributed evaluation (arith-graph.ts).

/** Error raised for malformed, oversized or undefined (division by zero) expressions. `column` is 1-based. */
export class ArithError extends Error {
  override name = 'ArithError';
  readonly column: number;

  constructor(message: string, column: number) {
    super(message);
    this.column = column;
  }
}

export const MAX_EXPRESSION_LENGTH = 10_000; // characters
export const MAX_NESTING_DEPTH = 200; // parentheses/unary nesting; prevents stack overflow on hostile input

export type BinaryOperator = '+' | '-' | '*' | '/' | '%' | '**';
type Operator = BinaryOperator | '(' | ')';

type NumNode = { readonly kind: 'num'; readonly text: string; readonly value: number; readonly column: number };

/**
 * The parsed expression. `column` is the 1-based column of the literal or operator. Unary `+` and parentheses
 * leave no node: on a number both are the identity.
 */
export type ArithNode =
  | NumNode
  | { readonly kind: 'neg'; readonly operand: ArithNode; readonly column: number }
  | {
      readonly kind: 'bin';
      readonly op: BinaryOperator;
      readonly left: ArithNode;
      readonly right: ArithNode;
      readonly column: number;
    };

type Token = NumNode | { readonly kind: 'op'; readonly text: Operator; readonly column: number };

const isDigit = (code: number): boolean => code >= 48 && code <= 57; // 0-9

// Characters that, glued to a literal, make it one malformed number (`1.2.3`, `1e5x`) rather than two tokens.
const isLiteralTail = (ch: string): boolean => /[0-9A-Za-z_.]/.test(ch);

function skipDigits(source: string, i: number): number {
  while (i < source.length && isDigit(source.charCodeAt(i))) i++;
  return i;
}

/** Scans the numeric literal starting at `start` and returns the index just after it. */
function scanNumber(source: string, start: number): number {
  let i = skipDigits(source, start);
  let digits = i - start;
  if (source[i] === '.') {
    const end = skipDigits(source, i + 1);
    digits += end - i - 1;
    i = end;
  }
  let valid = digits > 0; // a lone '.' is not a number
  if (source[i] === 'e' || source[i] === 'E') {
    i++;
    if (source[i] === '+' || source[i] === '-') i++;
    const end = skipDigits(source, i);
    valid &&= end > i;
    i = end;
  }
  let end = i;
  while (end < source.length && isLiteralTail(source[end]!)) end++;
  if (!valid || end !== i) {
    throw new ArithError(`invalid number '${source.slice(start, end)}' at column ${start + 1}`, start + 1);
  }
  return i;
}

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const ch = source[i]!;
    const column = i + 1;
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') {
      i++;
    } else if (isDigit(ch.charCodeAt(0)) || ch === '.') {
      const end = scanNumber(source, i);
      const text = source.slice(i, end);
      // The tokenizer has already restricted `text` to decimal literal syntax, so Number() cannot
      // accept anything surprising (hex, 'Infinity', whitespace) here.
      tokens.push({ kind: 'num', text, column, value: Number(text) });
      i = end;
    } else if (ch === '*' && source[i + 1] === '*') {
      tokens.push({ kind: 'op', text: '**', column });
      i += 2;
    } else if ('+-*/%()'.includes(ch)) {
      tokens.push({ kind: 'op', text: ch as Operator, column });
      i++;
    } else {
      // Report whole code points so an emoji is not shown as half a surrogate pair.
      const char = String.fromCodePoint(source.codePointAt(i)!);
      throw new ArithError(`unexpected character '${char}' at column ${column}`, column);
    }
  }
  return tokens;
}

/**
 * Parses to an ArithNode. Grammar (lowest to highest precedence):
 *   additive       := multiplicative (('+' | '-') multiplicative)*
 *   multiplicative := unary (('*' | '/' | '%') unary)*
 *   unary          := ('-' | '+') unary | power
 *   power          := primary ('**' unary)?
 *   primary        := number | '(' additive ')'
 * `power` takes a `unary` exponent, which gives right associativity and lets `2**-1` work,
 * while `-2**2` still means -(2**2) as in Python and maths.
 */
class Parser {
  private pos = 0;
  private depth = 0;

  constructor(
    private readonly tokens: readonly Token[],
    private readonly sourceLength: number,
  ) {}

  parse(): ArithNode {
    if (this.tokens.length === 0) throw new ArithError('empty expression', 1);
    const node = this.additive();
    const extra = this.tokens[this.pos];
    if (extra) throw unexpected(extra);
    return node;
  }

  private additive(): ArithNode {
    let left = this.multiplicative();
    for (let op = this.peekOp(); op === '+' || op === '-'; op = this.peekOp()) {
      const column = this.tokens[this.pos++]!.column;
      left = { kind: 'bin', op, left, right: this.multiplicative(), column };
    }
    return left;
  }

  private multiplicative(): ArithNode {
    let left = this.unary();
    for (let op = this.peekOp(); op === '*' || op === '/' || op === '%'; op = this.peekOp()) {
      const column = this.tokens[this.pos++]!.column;
      left = { kind: 'bin', op, left, right: this.unary(), column };
    }
    return left;
  }

  private unary(): ArithNode {
    const token = this.tokens[this.pos];
    const op = this.peekOp();
    if (token && (op === '-' || op === '+')) {
      this.pos++;
      this.enter(token);
      const operand = this.unary();
      this.depth--;
      return op === '-' ? { kind: 'neg', operand, column: token.column } : operand;
    }
    return this.power();
  }

  private power(): ArithNode {
    const base = this.primary();
    const token = this.tokens[this.pos];
    if (token && this.peekOp() === '**') {
      this.pos++;
      // A chain like `2**2**2...` recurses once per operator, so it counts towards the depth limit too.
      this.enter(token);
      const exponent = this.unary();
      this.depth--;
      return { kind: 'bin', op: '**', left: base, right: exponent, column: token.column };
    }
    return base;
  }

  private primary(): ArithNode {
    const token = this.tokens[this.pos++];
    if (!token) {
      const column = this.sourceLength + 1;
      throw new ArithError(`unexpected end of expression at column ${column}`, column);
    }
    if (token.kind === 'num') return token;
    if (token.text !== '(') throw unexpected(token);
    this.enter(token);
    const node = this.additive();
    const close = this.tokens[this.pos++];
    if (!close) throw new ArithError(`missing ')' for '(' at column ${token.column}`, token.column);
    if (close.text !== ')') throw unexpected(close);
    this.depth--;
    return node;
  }

  private peekOp(): Operator | undefined {
    const token = this.tokens[this.pos];
    return token?.kind === 'op' ? token.text : undefined;
  }

  private enter(token: Token): void {
    if (++this.depth > MAX_NESTING_DEPTH) {
      throw new ArithError(
        `expression nested too deeply at column ${token.column} (max ${MAX_NESTING_DEPTH})`,
        token.column,
      );
    }
  }
}

function unexpected(token: Token): ArithError {
  return new ArithError(`unexpected '${token.text}' at column ${token.column}`, token.column);
}

/** Parses without evaluating: throws ArithError for oversized or malformed input, never for a division by zero. */
export function parse(source: string): ArithNode {
  // Checked before tokenizing so hostile input costs nothing beyond reading its length.
  if (source.length > MAX_EXPRESSION_LENGTH) {
    throw new ArithError(
      `expression too long: ${source.length} characters (max ${MAX_EXPRESSION_LENGTH})`,
      1,
    );
  }
  return new Parser(tokenize(source), source.length).parse();
}

/**
 * The tree's nodes in evaluation order: left operand subtree, right operand subtree, then the operator.
 * Iterative, because a 10,000-character `1+1+...` is a left spine thousands of nodes deep.
 */
export function postOrder(root: ArithNode): ArithNode[] {
  // Visiting node, right, left and reversing yields left, right, node.
  const order: ArithNode[] = [];
  const stack = [root];
  for (let node = stack.pop(); node; node = stack.pop()) {
    order.push(node);
    if (node.kind === 'neg') stack.push(node.operand);
    else if (node.kind === 'bin') stack.push(node.left, node.right);
  }
  return order.reverse();
}

/**
 * `left op right` with JavaScript semantics, or the error for a division or modulo by zero (-0 included, which
 * JavaScript would turn into an infinity or NaN) at the operator's `column`.
 */
export function applyBinary(op: BinaryOperator, left: number, right: number, column: number): number | ArithError {
  switch (op) {
    case '+':
      return left + right;
    case '-':
      return left - right;
    case '*':
      return left * right;
    case '**':
      return left ** right;
    case '/':
    case '%':
      if (right === 0) {
        return new ArithError(`${op === '/' ? 'division' : 'modulo'} by zero at column ${column}`, column);
      }
      return op === '/' ? left / right : left % right;
  }
}

/**
 * Evaluates a parsed tree. Division by zero is only found here, after the whole input parsed, so that a syntax
 * error anywhere (`1/0)`) wins: a malformed expression is reported as malformed, whatever it computes. Of
 * several, the first in evaluation order is thrown.
 */
export function evaluateTree(root: ArithNode): number {
  const values: number[] = [];
  for (const node of postOrder(root)) {
    if (node.kind === 'num') {
      values.push(node.value);
    } else if (node.kind === 'neg') {
      values.push(-values.pop()!);
    } else {
      const right = values.pop()!;
      const result = applyBinary(node.op, values.pop()!, right, node.column);
      if (result instanceof ArithError) throw result;
      values.push(result);
    }
  }
  return values[0]!;
}

/** Evaluates and returns the IEEE-754 double. Throws ArithError. */
export function evaluate(source: string): number {
  return evaluateTree(parse(source));
}

/** evaluate() then String(value): the canonical text result, identical to JavaScript's String(number). */
export function evaluateToString(source: string): string {
  return String(evaluate(source));
}

// `fatal` makes malformed bytes an error instead of silently becoming U+FFFD and a confusing parse error.
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Built-in `arith` job: payload is the UTF-8 expression, result is String(value). */
export function arithJob(payload: Uint8Array): string {
  let source: string;
  try {
    source = utf8.decode(payload);
  } catch {
    throw new ArithError('payload is not valid UTF-8', 1);
  }
  return evaluateToString(source);
}
