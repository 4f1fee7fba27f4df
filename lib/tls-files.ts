// The command lines' --tls-* flags: PEM files read up front, so a wrong path is one line naming the flag rather
// than a TLS error later.

import fs from 'node:fs';
import type { SchedulerTlsOptions } from './scheduler/index.js';
import type { TlsClientOptions } from './transport/tcp.js';

/** Thrown for a file that cannot be read; the message names the flag. */
export class TlsFileError extends Error {}

function readFlag(flag: string, file: string | undefined): Buffer | undefined {
  if (file === undefined) return undefined;
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new TlsFileError(`--${flag} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The scheduler's --tls-cert, --tls-key and --tls-ca; undefined when none is given. */
export function schedulerTls(argv: { 'tls-cert'?: string; 'tls-key'?: string; 'tls-ca'?: string }): SchedulerTlsOptions | undefined {
  const cert = readFlag('tls-cert', argv['tls-cert']);
  const key = readFlag('tls-key', argv['tls-key']);
  const ca = readFlag('tls-ca', argv['tls-ca']);
  if (!cert && !key && !ca) return undefined;
  if (!cert || !key) throw new TlsFileError('--tls-cert and --tls-key go together: TLS needs both');
  return { cert, key, ...(ca ? { ca } : {}) };
}

/** A client's or worker's --tls, --tls-ca, --tls-cert and --tls-key; any of the last three implies --tls. */
export function peerTls(argv: { tls?: boolean; 'tls-ca'?: string; 'tls-cert'?: string; 'tls-key'?: string }): TlsClientOptions | undefined {
  const ca = readFlag('tls-ca', argv['tls-ca']);
  const cert = readFlag('tls-cert', argv['tls-cert']);
  const key = readFlag('tls-key', argv['tls-key']);
  if (!ca && !cert && !key) return argv.tls ? true : undefined;
  if (!cert !== !key) throw new TlsFileError('--tls-cert and --tls-key go together');
  return { ...(ca ? { ca } : {}), ...(cert ? { cert, key } : {}) };
}
