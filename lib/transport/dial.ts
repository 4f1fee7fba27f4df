// Where a client or worker finds its scheduler when given a URL. Only the check lives here; the WebSocket transport
// is loaded when a URL is first dialled, so that reaching a scheduler over TCP does not need the `ws` package
// loaded (25-40 ms of a program's start-up on this project's machine).

import { ErrorCode, TaskwireError } from '../errors.js';
import { invalidOption } from '../options.js';
import type { Connection } from './connection.js';
import type { DialOptions, SessionOptions } from './session.js';

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
 * The scheduler's address from the options: a URL, or host and port. Both at once is E_INVALID, since either names
 * the scheduler on its own.
 */
export function schedulerAddress(
  options: { url?: unknown; host?: unknown; port?: unknown },
  hostPort: () => { host: string; port: number },
): { host: string; port: number; dial: SessionOptions['dial'] } {
  if (options.url === undefined) return { ...hostPort(), dial: undefined };
  const url = checkSchedulerUrl('url', options.url);
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
