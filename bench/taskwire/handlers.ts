// Handler modules for T1 (the thread path): run inline by a worker, or loaded by its pool's threads by URL.

/** A trivial task: the payload's length in bytes, as text. */
export function length(payload: Uint8Array): string {
  return String(payload.length);
}
