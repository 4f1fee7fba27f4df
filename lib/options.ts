// Option validation shared by the scheduler, worker and client constructors: checked once, named when wrong.

import { ErrorCode, TaskwireError } from './errors.js';

/** Throws a TaskwireError with code E_INVALID naming the option and what it must be. */
export function invalidOption(name: string, mustBe: string, value: unknown): never {
  throw new TaskwireError(ErrorCode.INVALID, `options.${name} must be ${mustBe}, got ${describe(value)}`);
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  return typeof value;
}

export function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    invalidOption(name, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

export function checkString(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) invalidOption(name, 'a non-empty string', value);
  return value;
}

export function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') invalidOption(name, 'true or false', value);
  return value;
}

export function checkOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(value as T)) invalidOption(name, `one of ${allowed.map((v) => `'${v}'`).join(', ')}`, value);
  return value as T;
}

/** Lets `{ port: undefined }` fall back to the default instead of overriding it. */
export function stripUndefined<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * An options interface's keys, for checkKnown. Write the argument as `{ ... } satisfies Record<keyof T, true>`: a
 * key the interface gains or loses without this list following is then a compile error.
 */
export function optionKeys(keys: Readonly<Record<string, true>>): ReadonlySet<string> {
  return new Set(Object.keys(keys));
}

/**
 * Throws E_INVALID for a key of `options` that is not a known one, since a misspelt option would otherwise be
 * dropped without a word and its default used. Only keys are looked at: a known key may be undefined (`{ port:
 * undefined }` takes the default), an unknown one is refused whatever its value. `path` names a nested object.
 */
export function checkKnown(what: string, options: unknown, known: ReadonlySet<string>, path = ''): void {
  const problem = unknownOption(what, options, known, path);
  if (problem !== null) throw new TaskwireError(ErrorCode.INVALID, problem);
}

/** checkKnown's message, or null when every key is known: for callers that report problems as strings. */
export function unknownOption(what: string, options: unknown, known: ReadonlySet<string>, path = ''): string | null {
  if (typeof options !== 'object' || options === null) return `${path ? `options.${path}` : 'options'} of ${what} must be an object, got ${describe(options)}`;
  for (const key of Object.keys(options)) if (!known.has(key)) return unknownOptionMessage(what, key, known, path);
  return null;
}

/** `unknown option options.<key> for <what>`, and `; did you mean <name>?` when a known name is close. */
export function unknownOptionMessage(what: string, key: string, known: Iterable<string>, path = ''): string {
  const near = nearestName(key, known);
  return `unknown option options.${path ? `${path}.` : ''}${key} for ${what}${near === null ? '' : `; did you mean ${near}?`}`;
}

/**
 * The known name that `name` most likely misspells, or null when none is close: the same but for case, '_' and
 * '-' (max_payload for maxPayload), or at most 2 edits away (a third of its length, for a long name), and fewer
 * edits than the shorter of the two has characters, so that a short name unlike any is not matched to one.
 */
export function nearestName(name: string, known: Iterable<string>): string | null {
  const wanted = fold(name);
  const limit = Math.max(2, Math.floor(wanted.length / 3));
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const folded = fold(candidate);
    // More edits than the limit are certain then, and skipping them bounds the work for an absurdly long key.
    if (Math.abs(folded.length - wanted.length) > limit) continue;
    const distance = editDistance(wanted, folded);
    if (distance < bestDistance && distance <= limit && distance < Math.min(wanted.length, folded.length)) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best ?? sharedStem(wanted, known);
}

/**
 * The known name that begins as `name` does, for most of the shorter one (at least 4 characters and 80%): a
 * different ending of the same word, such as retry for retries, is more edits away than a typo.
 */
function sharedStem(wanted: string, known: Iterable<string>): string | null {
  let best: string | null = null;
  let bestLength = 0;
  for (const candidate of known) {
    const folded = fold(candidate);
    let n = 0;
    while (n < wanted.length && n < folded.length && wanted[n] === folded[n]) n++;
    if (n >= 4 && n >= 0.8 * Math.min(wanted.length, folded.length) && n > bestLength) {
      best = candidate;
      bestLength = n;
    }
  }
  return best;
}

function fold(name: string): string {
  return name.toLowerCase().replace(/[-_]/g, '');
}

/** Insertions, deletions, substitutions and swaps of two neighbours from a to b (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
