// Built-in `sumsq`: the sum of the squares of the integers from A to B, exact (BigInt), as decimal text. A range
// splits into chunks that run as separate tasks, and `sumsq.combine` adds their sums: the built-in example of
// a job type that splits and combines (see defineJob's split and combine).

import { TaskwireError } from '../errors.js';

/** The most integers one task sums: about 0.1-0.3 s of a worker's event loop. Split larger ranges. */
export const MAX_SUMSQ_RANGE = 100_000_000;

/** Squares up to this bound, and sums of them below 2^53, are exact doubles: the fast loop's domain. */
const FAST_BOUND = 2 ** 26;

function sumsqError(message: string): TaskwireError {
  return new TaskwireError('E_SUMSQ', message);
}

/** Parses "A B" (two integers, A <= B, separated by spaces, a comma or ".."). */
export function parseRange(text: string): [bigint, bigint] {
  const match = /^\s*([+-]?\d+)\s*(?:\s|,|\.\.)\s*([+-]?\d+)\s*$/.exec(text);
  if (!match) throw sumsqError(`a sumsq payload is a range "A B" of two integers, got ${JSON.stringify(text.slice(0, 80))}`);
  const from = BigInt(match[1]!);
  const to = BigInt(match[2]!);
  if (from > to) throw sumsqError(`the range ${from}..${to} is empty: A must not be above B`);
  return [from, to];
}

/** The sum of k^2 for k from `from` to `to`, exactly. */
export function sumOfSquares(from: bigint, to: bigint): bigint {
  if (to - from + 1n > BigInt(MAX_SUMSQ_RANGE)) {
    throw sumsqError(`the range ${from}..${to} has ${to - from + 1n} integers; one task sums at most ${MAX_SUMSQ_RANGE}: split it into chunks`);
  }
  // Past the doubles' exact domain a BigInt per integer would take seconds a task: the closed form is exact.
  if (from < -BigInt(FAST_BOUND) || to > BigInt(FAST_BOUND)) return closedForm(from, to);
  // Doubles are exact here (k^2 <= 2^52, and the partial sum is flushed to a BigInt before it passes 2^52): a
  // BigInt per integer would be about ten times slower.
  let total = 0n;
  let partial = 0;
  for (let k = Number(from), end = Number(to); k <= end; k++) {
    partial += k * k;
    if (partial >= 2 ** 52) {
      total += BigInt(partial);
      partial = 0;
    }
  }
  return total + BigInt(partial);
}

/** The sum of k^2 for k from `from` to `to` by n(n+1)(2n+1)/6, for ranges on either side of 0. */
function closedForm(from: bigint, to: bigint): bigint {
  const upTo = (n: bigint): bigint => (n < 0n ? 0n : (n * (n + 1n) * (2n * n + 1n)) / 6n);
  if (from >= 0n) return upTo(to) - upTo(from - 1n);
  if (to <= 0n) return upTo(-from) - upTo(-to - 1n);
  return upTo(-from) + upTo(to);
}

/** The handler of `sumsq`: "A B" -> the sum of squares as decimal text. */
export function sumsqJob(payload: Uint8Array): string {
  const [from, to] = parseRange(Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString());
  return sumOfSquares(from, to).toString();
}

/** Splits "A B" into at most `chunks` consecutive ranges of nearly equal length, in order. */
export function splitRange(text: string, chunks: number): string[] {
  const [from, to] = parseRange(text);
  const count = to - from + 1n;
  const n = BigInt(Math.max(1, Math.min(chunks, Number(count < BigInt(chunks) ? count : BigInt(chunks)))));
  const parts: string[] = [];
  for (let i = 0n; i < n; i++) {
    const start = from + (count * i) / n;
    const end = from + (count * (i + 1n)) / n - 1n;
    parts.push(`${start} ${end}`);
  }
  return parts;
}

/** The sum of decimal integers, exactly. */
export function addDecimals(values: readonly string[]): string {
  let total = 0n;
  for (const value of values) {
    if (!/^-?\d+$/.test(value)) throw sumsqError(`sumsq.combine takes decimal integers, got ${JSON.stringify(value.slice(0, 80))}`);
    total += BigInt(value);
  }
  return total.toString();
}
