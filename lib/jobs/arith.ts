// Safe arithmetic evaluator (tokenizer + recursive-descent parser) with JavaScript double semantics, used by the `arith` job.

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

type Operator = '+' | '-' | '*' | '/' | '%' | '**' | '(' | ')';

type Token =
  | { readonly kind: 'num'; readonly text: string; readonly column: number; readonly value: number }
  | { readonly kind: 'op'; readonly text: Operator; readonly column: number };

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
 * Parses and evaluates in one pass. Grammar (lowest to highest precedence):
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
  // Division by zero is remembered rather than thrown at once, so that a syntax error later in the
  // input (`1/0)`) wins: a malformed expression should be reported as malformed, whatever it computes.
  private zeroDivision: ArithError | undefined;

  constructor(
    private readonly tokens: readonly Token[],
    private readonly sourceLength: number,
  ) {}

  parse(): number {
    if (this.tokens.length === 0) throw new ArithError('empty expression', 1);
    const value = this.additive();
    const extra = this.tokens[this.pos];
    if (extra) throw unexpected(extra);
    if (this.zeroDivision) throw this.zeroDivision;
    return value;
  }

  private additive(): number {
    let left = this.multiplicative();
    for (let op = this.peekOp(); op === '+' || op === '-'; op = this.peekOp()) {
      this.pos++;
      const right = this.multiplicative();
      left = op === '+' ? left + right : left - right;
    }
    return left;
  }

  private multiplicative(): number {
    let left = this.unary();
    for (let op = this.peekOp(); op === '*' || op === '/' || op === '%'; op = this.peekOp()) {
      const column = this.tokens[this.pos++]!.column;
      const right = this.unary();
      if (op !== '*' && right === 0) {
        const what = op === '/' ? 'division' : 'modulo';
        this.zeroDivision ??= new ArithError(`${what} by zero at column ${column}`, column);
      }
      left = op === '*' ? left * right : op === '/' ? left / right : left % right;
    }
    return left;
  }

  private unary(): number {
    const token = this.tokens[this.pos];
    const op = this.peekOp();
    if (token && (op === '-' || op === '+')) {
      this.pos++;
      this.enter(token);
      const value = this.unary();
      this.depth--;
      return op === '-' ? -value : value;
    }
    return this.power();
  }

  private power(): number {
    const base = this.primary();
    const token = this.tokens[this.pos];
    if (token && this.peekOp() === '**') {
      this.pos++;
      // A chain like `2**2**2...` recurses once per operator, so it counts towards the depth limit too.
      this.enter(token);
      const exponent = this.unary();
      this.depth--;
      return base ** exponent;
    }
    return base;
  }

  private primary(): number {
    const token = this.tokens[this.pos++];
    if (!token) {
      const column = this.sourceLength + 1;
      throw new ArithError(`unexpected end of expression at column ${column}`, column);
    }
    if (token.kind === 'num') return token.value;
    if (token.text !== '(') throw unexpected(token);
    this.enter(token);
    const value = this.additive();
    const close = this.tokens[this.pos++];
    if (!close) throw new ArithError(`missing ')' for '(' at column ${token.column}`, token.column);
    if (close.text !== ')') throw unexpected(close);
    this.depth--;
    return value;
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

/** Evaluates and returns the IEEE-754 double. Throws ArithError. */
export function evaluate(source: string): number {
  // Checked before tokenizing so hostile input costs nothing beyond reading its length.
  if (source.length > MAX_EXPRESSION_LENGTH) {
    throw new ArithError(
      `expression too long: ${source.length} characters (max ${MAX_EXPRESSION_LENGTH})`,
      1,
    );
  }
  return new Parser(tokenize(source), source.length).parse();
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
