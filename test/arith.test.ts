import t from 'tap';
import {
  ArithError,
  MAX_EXPRESSION_LENGTH,
  MAX_NESTING_DEPTH,
  arithJob,
  evaluate,
  evaluateToString,
} from '../lib/jobs/arith.js';

// `js` is the same expression written as JavaScript (adjusted only where JS syntax forbids the
// original, e.g. `-2**2` or `--3`), so each row proves the evaluator computes exactly what JS does.
// Object.is is used because it tells -0 from 0 and treats NaN as equal to itself.
const values: ReadonlyArray<{ src: string; js: number; text?: string }> = [
  // precedence
  { src: '1+2*3', js: 1 + 2 * 3, text: '7' },
  { src: '(1+2)*3', js: (1 + 2) * 3, text: '9' },
  { src: '1+(2*3)/4-5', js: 1 + (2 * 3) / 4 - 5, text: '-2.5' },
  { src: '10-4-3', js: 10 - 4 - 3, text: '3' },
  { src: '2*3%4', js: (2 * 3) % 4, text: '2' },
  { src: '100/10/5', js: 100 / 10 / 5, text: '2' },
  { src: '2+3**2*2', js: 2 + 3 ** 2 * 2, text: '20' },
  { src: '7-2*3+1', js: 7 - 2 * 3 + 1, text: '2' },
  // associativity
  { src: '2**3**2', js: 2 ** 3 ** 2, text: '512' },
  { src: '(2**3)**2', js: (2 ** 3) ** 2, text: '64' },
  { src: '2**-1', js: 2 ** -1, text: '0.5' },
  { src: '2**-2**2', js: 2 ** -(2 ** 2), text: '0.0625' },
  { src: '8-3-2', js: 8 - 3 - 2, text: '3' },
  { src: '2/4*2', js: (2 / 4) * 2, text: '1' },
  // unary minus / plus
  { src: '-2**2', js: -(2 ** 2), text: '-4' },
  { src: '(-2)**2', js: (-2) ** 2, text: '4' },
  { src: '-(-3)', js: -(-3), text: '3' },
  { src: '--3', js: -(-3), text: '3' },
  { src: '---3', js: -(-(-3)), text: '-3' },
  { src: '1 - -1', js: 1 - -1, text: '2' },
  { src: '-(2+3)', js: -(2 + 3), text: '-5' },
  { src: '+5', js: +5, text: '5' },
  { src: '+-+5', js: +-+5, text: '-5' },
  { src: '-0', js: -0, text: '0' },
  { src: '0*-1', js: 0 * -1, text: '0' },
  // decimals and exponents
  { src: '0.1+0.2', js: 0.1 + 0.2, text: '0.30000000000000004' },
  { src: '.5*4', js: 0.5 * 4, text: '2' },
  { src: '5.', js: 5, text: '5' },
  { src: '5.*2', js: 5 * 2, text: '10' },
  { src: '1e3+1', js: 1e3 + 1, text: '1001' },
  { src: '2.5E-1', js: 2.5e-1, text: '0.25' },
  { src: '1e+2', js: 1e2, text: '100' },
  { src: '007', js: 7, text: '7' },
  { src: '1/3', js: 1 / 3, text: '0.3333333333333333' },
  { src: '1e21', js: 1e21, text: '1e+21' },
  { src: '1e-7', js: 1e-7, text: '1e-7' },
  { src: '1e999', js: Infinity, text: 'Infinity' },
  // negative numbers
  { src: '-5+3', js: -5 + 3, text: '-2' },
  { src: '3*-2', js: 3 * -2, text: '-6' },
  { src: '-3*-3', js: -3 * -3, text: '9' },
  { src: '-1.5e2', js: -1.5e2, text: '-150' },
  { src: '-(-8)/-2', js: -(-8) / -2, text: '-4' },
  // whitespace
  { src: ' 1 +\t2\n*3 ', js: 1 + 2 * 3, text: '7' },
  { src: '\n\t 42 \r\n', js: 42, text: '42' },
  { src: '2 ** 3', js: 2 ** 3, text: '8' },
  { src: '( 1 + 2 ) * 3', js: (1 + 2) * 3, text: '9' },
  // remainder
  { src: '-7 % 3', js: -7 % 3, text: '-1' },
  { src: '7 % -3', js: 7 % -3, text: '1' },
  { src: '5.5 % 2', js: 5.5 % 2, text: '1.5' },
  { src: '-4 % 2', js: -4 % 2, text: '0' },
  // overflow and NaN follow JS
  { src: '10**400', js: 10 ** 400, text: 'Infinity' },
  { src: '-(10**400)', js: -(10 ** 400), text: '-Infinity' },
  { src: '(-8)**(1/3)', js: (-8) ** (1 / 3), text: 'NaN' },
  { src: '10**400 - 10**400', js: 10 ** 400 - 10 ** 400, text: 'NaN' },
  { src: '1/10**400', js: 1 / 10 ** 400, text: '0' },
  // limits: exactly at the boundaries is accepted
  { src: '1+'.repeat(4999) + '10', js: 4999 + 10, text: '5009' },
  { src: '('.repeat(200) + '1' + ')'.repeat(200), js: 1, text: '1' },
  { src: '-'.repeat(200) + '1', js: 1, text: '1' },
];

t.test('evaluates with JavaScript double semantics', async (t) => {
  for (const { src, js, text } of values) {
    const name = JSON.stringify(src.length > 40 ? `${src.slice(0, 37)}...` : src);
    const found = evaluate(src);
    t.ok(Object.is(found, js), `${name} === ${String(js)}`, { found, wanted: js });
    t.equal(evaluateToString(src), String(js), `${name} as text`);
    if (text !== undefined) t.equal(evaluateToString(src), text, `${name} -> '${text}'`);
  }
});

t.test('exports the documented limits', async (t) => {
  t.equal(MAX_EXPRESSION_LENGTH, 10_000);
  t.equal(MAX_NESTING_DEPTH, 200);
});

const errors: ReadonlyArray<{ src: string; message: string; column: number; label?: string }> = [
  // unexpected token
  { src: '(1+2)*)', message: "unexpected ')' at column 7", column: 7 },
  { src: '1+(2*3))', message: "unexpected ')' at column 8", column: 8 },
  { src: '()', message: "unexpected ')' at column 2", column: 2 },
  { src: '1 2', message: "unexpected '2' at column 3", column: 3 },
  { src: '*3', message: "unexpected '*' at column 1", column: 1 },
  { src: '2 * * 3', message: "unexpected '*' at column 5", column: 5 },
  { src: '2***3', message: "unexpected '*' at column 4", column: 4 },
  { src: '(1 2)', message: "unexpected '2' at column 4", column: 4 },
  // unknown characters
  { src: '2 $ 3', message: "unexpected character '$' at column 3", column: 3 },
  { src: 'abc', message: "unexpected character 'a' at column 1", column: 1 },
  { src: '1 + x', message: "unexpected character 'x' at column 5", column: 5 },
  { src: '1\u00a0+ 1', message: "unexpected character '\u00a0' at column 2", column: 2 },
  { src: '1+\u{1F600}', message: "unexpected character '\u{1F600}' at column 3", column: 3 },
  // unexpected end
  { src: '1+', message: 'unexpected end of expression at column 3', column: 3 },
  { src: '-', message: 'unexpected end of expression at column 2', column: 2 },
  { src: '2**', message: 'unexpected end of expression at column 4', column: 4 },
  { src: '(1+', message: 'unexpected end of expression at column 4', column: 4 },
  // empty
  { src: '', message: 'empty expression', column: 1 },
  { src: '   ', message: 'empty expression', column: 1 },
  { src: '\t\n', message: 'empty expression', column: 1 },
  // unclosed parenthesis
  { src: '(1+2', message: "missing ')' for '(' at column 1", column: 1 },
  { src: '2*((1+2)', message: "missing ')' for '(' at column 3", column: 3 },
  // malformed numbers
  { src: '1.2.3', message: "invalid number '1.2.3' at column 1", column: 1 },
  { src: '1e', message: "invalid number '1e' at column 1", column: 1 },
  { src: '1e+', message: "invalid number '1e+' at column 1", column: 1 },
  { src: '2 + 1e-', message: "invalid number '1e-' at column 5", column: 5 },
  { src: '.', message: "invalid number '.' at column 1", column: 1 },
  { src: '1..2', message: "invalid number '1..2' at column 1", column: 1 },
  { src: '3 * 1e5.5', message: "invalid number '1e5.5' at column 5", column: 5 },
  // division by zero
  { src: '1/0', message: 'division by zero at column 2', column: 2 },
  { src: '5%0', message: 'modulo by zero at column 2', column: 2 },
  { src: '1/(2-2)', message: 'division by zero at column 2', column: 2 },
  { src: '1 / -0', message: 'division by zero at column 3', column: 3 },
  { src: '0/0', message: 'division by zero at column 2', column: 2 },
  { src: '2 % (1-1)', message: 'modulo by zero at column 3', column: 3 },
  { src: '1 + 2/0.0', message: 'division by zero at column 6', column: 6 },
  // a syntax error anywhere wins over a division by zero computed before it
  { src: '1/0)', message: "unexpected ')' at column 4", column: 4 },
  // oversized, checked before anything else
  {
    src: '1'.repeat(10_001),
    message: 'expression too long: 10001 characters (max 10000)',
    column: 1,
    label: "'1' x 10001",
  },
  {
    src: ' '.repeat(10_001),
    message: 'expression too long: 10001 characters (max 10000)',
    column: 1,
    label: "' ' x 10001",
  },
  {
    src: '-'.repeat(100_000) + '1',
    message: 'expression too long: 100001 characters (max 10000)',
    column: 1,
    label: "'-' x 100000 + '1'",
  },
  // nested too deeply: an error, never a stack overflow
  {
    src: '('.repeat(1000) + '1' + ')'.repeat(1000),
    message: 'expression nested too deeply at column 201 (max 200)',
    column: 201,
    label: "'(' x 1000 + '1' + ')' x 1000",
  },
  {
    src: '('.repeat(201) + '1' + ')'.repeat(201),
    message: 'expression nested too deeply at column 201 (max 200)',
    column: 201,
    label: "'(' x 201 + '1' + ')' x 201",
  },
  {
    src: '-'.repeat(5000) + '1',
    message: 'expression nested too deeply at column 201 (max 200)',
    column: 201,
    label: "'-' x 5000 + '1'",
  },
  {
    src: '-'.repeat(201) + '1',
    message: 'expression nested too deeply at column 201 (max 200)',
    column: 201,
    label: "'-' x 201 + '1'",
  },
  {
    src: '-('.repeat(101) + '1' + ')'.repeat(101),
    message: 'expression nested too deeply at column 201 (max 200)',
    column: 201,
    label: "'-(' x 101 + '1' + ')' x 101",
  },
  {
    src: '2**'.repeat(3000) + '1',
    message: 'expression nested too deeply at column 602 (max 200)',
    column: 602,
    label: "'2**' x 3000 + '1'",
  },
];

t.test('rejects bad input with exact messages and columns', async (t) => {
  for (const { src, message, column, label } of errors) {
    const name = label ?? JSON.stringify(src);
    let caught: unknown;
    try {
      evaluate(src);
    } catch (err) {
      caught = err;
    }
    if (!(caught instanceof ArithError)) {
      t.fail(`${name} should throw ArithError`, { found: caught });
      continue;
    }
    t.equal(caught.message, message, `${name} message`);
    t.equal(caught.column, column, `${name} column`);
  }
});

t.test('ArithError', async (t) => {
  const err = new ArithError('boom at column 3', 3);
  t.ok(err instanceof Error, 'is an Error');
  t.equal(err.name, 'ArithError');
  t.equal(err.column, 3);
  t.throws(() => evaluate('1+'), ArithError, 'evaluate throws ArithError instances');
  t.throws(() => evaluateToString('1/0'), ArithError, 'evaluateToString throws ArithError instances');
});

t.test('arithJob', async (t) => {
  t.equal(arithJob(Buffer.from('2+3')), '5');
  t.equal(arithJob(new TextEncoder().encode('0.1 + 0.2')), '0.30000000000000004');
  t.equal(arithJob(Buffer.from('10**400')), 'Infinity');
  t.throws(() => arithJob(Buffer.from([0xff])), new ArithError('payload is not valid UTF-8', 1));
  t.throws(() => arithJob(Buffer.from([0x31, 0x2b, 0xc3])), ArithError, 'truncated sequence');
  t.throws(() => arithJob(Buffer.from('1/0')), { message: 'division by zero at column 2', column: 2 });
});
