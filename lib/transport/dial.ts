// Where a client or worker finds its scheduler when given a URL. Only the check lives here; the WebSocket transport
// is loaded when a URL is first dialled, so that reaching a scheduler over TCP does not need the `ws` package
// loaded (25-40 ms of a program's start-up on this project's machine).

import { ErrorCode, TaskwireError } from '../errors.js';
import { checkKnown, invalidOption, optionKeys } from '../options.js';
import type { Connection } from './connection.js';
import type { DialOptions, SessionOptions } from './session.js';
import { connectTls, type TlsClientOptions } from './tcp.js';

const PEM = (v: unknown): boolean => typeof v === 'string' || Buffer.isBuffer(v);

const TLS_OPTIONS = optionKeys({ ca: true, cert: true, key: true, servername: true, fingerprint256: true } satisfies Record<keyof Exclude<TlsClientOptions, true>, true>);

/** options.tls, checked: true, or PEM contents as strings or Buffers (a certificate needs its key). */
function checkTls(what: string, value: unknown): TlsClientOptions {
  if (value === true) return true;
  const mustBe = 'true, or { ca?, cert?, key?, servername?, fingerprint256? } with PEM contents';
  if (typeof value !== 'object' || value === null || Array.isArray(value)) invalidOption('tls', mustBe, value);
  checkKnown(what, value, TLS_OPTIONS, 'tls');
  const o = value as Record<string, unknown>;
  for (const name of ['ca', 'cert', 'key'] as const) {
    if (o[name] !== undefined && !PEM(o[name])) invalidOption(`tls.${name}`, 'PEM contents, as a string or a Buffer', o[name]);
  }
  if (o.servername !== undefined && (typeof o.servername !== 'string' || o.servername === '')) invalidOption('tls.servername', 'a host name', o.servername);
  if (o.fingerprint256 !== undefined && (typeof o.fingerprint256 !== 'string' || !/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){31}$/.test(o.fingerprint256))) {
    invalidOption('tls.fingerprint256', "a SHA-256 fingerprint, 32 hex pairs separated by ':'", o.fingerprint256);
  }
  if ((o.cert === undefined) !== (o.key === undefined)) {
    throw new TaskwireError(ErrorCode.INVALID, 'options.tls.cert and options.tls.key go together: give both or neither');
  }
  return o as TlsClientOptions;
}

/** A scheduler's URL, checked: ws: or wss:, with a host. */
export function checkSchedulerUrl(name: string, value: unknown): URL {
  const mustBe = 'a ws: or wss: URL, such as ws://127.0.0.1:9002/ws';
  if (typeof value !== 'string' || value.length === 0) invalidOption(name, mustBe, value);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    invalidOption(name, mustBe, value);
  }
  if ((url.protocol !== 'ws:' && url.protocol !== 'wss:') || url.hostname === '') invalidOption(name, mustBe, value);
  return url;
}

/**
 * The scheduler's address from the options of `what` (the constructor, for messages): a URL, or host and port. Both
 * at once is E_INVALID, since either names the scheduler on its own.
 */
export function schedulerAddress(
  what: string,
  options: { url?: unknown; host?: unknown; port?: unknown; tls?: unknown },
  hostPort: () => { host: string; port: number },
): { host: string; port: number; dial: SessionOptions['dial'] } {
  if (options.url === undefined) {
    const address = hostPort();
    if (options.tls === undefined) return { ...address, dial: undefined };
    const tlsOptions = checkTls(what, options.tls);
    const { host, port } = address;
    return {
      ...address,
      dial: { where: `${host}:${port}`, open: (dial: DialOptions): Promise<Connection> => connectTls(host, port, tlsOptions, dial) },
    };
  }
  const url = checkSchedulerUrl('url', options.url);
  if (options.tls !== undefined) {
    throw new TaskwireError(ErrorCode.INVALID, 'options.tls is for host and port: over WebSocket, a wss: URL brings TLS itself');
  }
  if (options.host !== undefined || options.port !== undefined) {
    throw new TaskwireError(ErrorCode.INVALID, 'options.url names the scheduler on its own: give it without options.host and options.port');
  }
  const where = options.url as string;
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port ? Number(url.port) : url.protocol === 'wss:' ? 443 : 80,
    dial: { where, open: async (dial: DialOptions): Promise<Connection> => (await import('./ws.js')).connectWs(where, dial) },
  };
}
