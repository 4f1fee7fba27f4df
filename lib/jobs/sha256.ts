// Built-in `sha256` job: the lowercase hex SHA-256 digest of the payload's bytes (the UTF-8 of the input text).

import { createHash } from 'node:crypto';

export function sha256Job(payload: Uint8Array): string {
  return createHash('sha256').update(payload).digest('hex');
}
