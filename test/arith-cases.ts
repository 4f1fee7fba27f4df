// Arithmetic expressions shared by the tests of local and distributed evaluation: every expression of
// test/arith.test.ts's tables, and a seeded generator of random ones.

// Every expression of test/arith.test.ts's `values` and `errors` tables.
export const tableSources: readonly string[] = [
  '1+2*3', '(1+2)*3', '1+(2*3)/4-5', '10-4-3', '2*3%4', '100/10/5', '2+3**2*2', '7-2*3+1',
  '2**3**2', '(2**3)**2', '2**-1', '2**-2**2', '8-3-2', '2/4*2',
  '-2**2', '(-2)**2', '-(-3)', '--3', '---3', '1 - -1', '-(2+3)', '+5', '+-+5', '-0', '0*-1',
  '0.1+0.2', '.5*4', '5.', '5.*2', '1e3+1', '2.5E-1', '1e+2', '007', '1/3', '1e21', '1e-7', '1e999',
  '-5+3', '3*-2', '-3*-3', '-1.5e2', '-(-8)/-2',
  ' 1 +\t2\n*3 ', '\n\t 42 \r\n', '2 ** 3', '( 1 + 2 ) * 3',
  '-7 % 3', '7 % -3', '5.5 % 2', '-4 % 2',
  '10**400', '-(10**400)', '(-8)**(1/3)', '10**400 - 10**400', '1/10**400',
  '1+'.repeat(4999) + '10', '('.repeat(200) + '1' + ')'.repeat(200), '-'.repeat(200) + '1',
  '(1+2)*)', '1+(2*3))', '()', '1 2', '*3', '2 * * 3', '2***3', '(1 2)',
  '2 $ 3', 'abc', '1 + x', '1\u00a0+ 1', '1+\u{1F600}',
  '1+', '-', '2**', '(1+',
  '', '   ', '\t\n',
  '(1+2', '2*((1+2)',
  '1.2.3', '1e', '1e+', '2 + 1e-', '.', '1..2', '3 * 1e5.5',
  '1/0', '5%0', '1/(2-2)', '1 / -0', '0/0', '2 % (1-1)', '1 + 2/0.0',
  '1/0)',
  '1'.repeat(10_001), ' '.repeat(10_001), '-'.repeat(100_000) + '1',
  '('.repeat(1000) + '1' + ')'.repeat(1000), '('.repeat(201) + '1' + ')'.repeat(201),
  '-'.repeat(5000) + '1', '-'.repeat(201) + '1', '-('.repeat(101) + '1' + ')'.repeat(101), '2**'.repeat(3000) + '1',
];

export function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

// Zeros of every spelling, so that divisions by zero are common; extremes that overflow, underflow or lose bits.
const LITERALS = [
  ...['0', '0.0', '.0', '0e5', '1', '2', '3', '10', '.5', '5.', '007', '0.1', '2.5E-3'],
  ...['1e308', '1.7976931348623157e308', '1e999', '1e-320', '5e-324', '9007199254740993'],
];
const OPS = ['+', '-', '*', '/', '%', '**'];

export function generator(rnd: () => number) {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const space = (): string => (rnd() < 0.15 ? pick([' ', '  ', '\t', '\n']) : '');
  const literal = (): string => (rnd() < 0.7 ? pick(LITERALS) : String(Math.floor(rnd() * 1000) / pick([1, 10, 100])));
  const expr = (depth: number): string => {
    const r = rnd();
    if (depth <= 0 || r < 0.25) return literal();
    if (r < 0.6) return expr(depth - 1) + space() + pick(OPS) + space() + expr(depth - 1);
    if (r < 0.7) return '-'.repeat(1 + Math.floor(rnd() * 4)) + expr(depth - 1);
    if (r < 0.75) return pick(['+', '-+', '+-']) + expr(depth - 1);
    if (r < 0.85) return '(' + space() + expr(depth - 1) + space() + ')';
    return Array.from({ length: 2 + Math.floor(rnd() * 3) }, () => expr(depth - 2)).join('**');
  };
  // Now and then one character inserted or removed, for syntax errors before and after divisions by zero.
  const mutate = (src: string): string => {
    const at = Math.floor(rnd() * (src.length + 1));
    const inserted = rnd() < 0.5 ? pick(['(', ')', '*', '+', 'x', '.', 'e', ' ']) : '';
    return src.slice(0, at) + inserted + src.slice(inserted ? at : at + 1);
  };
  return (): string => {
    const src = expr(1 + Math.floor(rnd() * 6));
    return rnd() < 0.1 ? mutate(src) : src;
  };
}

