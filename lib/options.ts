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
