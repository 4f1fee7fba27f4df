// The scheduler's HTTP listener: a small router over Node's own `http` module, the rules every request follows
// (token or loopback, body limit, JSON errors with the library's codes), and the upgrade to WebSocket at /ws.
//
// Node's http module, not a framework: the API is a dozen routes of JSON, and a framework's router and body
// parsing would be most of a dependency for what is here a few dozen lines (see the README, "HTTP API").

import http from 'node:http';
import type { Duplex } from 'node:stream';
import { timingSafeEqual, createHash } from 'node:crypto';
import { ErrorCode, TaskwireError } from '../errors.js';

/** A route's handler: `params` holds the path's `{name}` parts. Throw an HttpError (or any TaskwireError) to answer 4xx. */
export type RouteHandler = (request: Request) => void | Promise<void>;

export interface Request {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly url: URL;
  readonly params: Record<string, string>;
}

/** An error answered as `{"error": {"code", "message"}}` with its status. */
export class HttpError extends TaskwireError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
  ) {
    super(code, message);
  }
}

/** The HTTP status a library error code is answered with. */
const STATUS_OF: Record<string, number> = {
  [ErrorCode.INVALID]: 400,
  [ErrorCode.GRAPH]: 400,
  [ErrorCode.NO_WORKER]: 400,
  [ErrorCode.AUTH]: 401,
  [ErrorCode.NO_SUCH_JOB]: 404,
  [ErrorCode.TOO_LARGE]: 413,
  [ErrorCode.QUEUE_FULL]: 503,
  [ErrorCode.TOO_MANY_PENDING]: 503,
  [ErrorCode.SHUTDOWN]: 503,
};

export interface HttpServerOptions {
  host: string;
  port: number;
  /** The scheduler's token: every request must carry it as a bearer token; null for none. */
  token: string | null;
  /** Without a token, whether requests from other machines than this one are answered. */
  open: boolean;
  maxBodyBytes: number;
}

interface Route {
  readonly method: string;
  readonly parts: readonly string[];
  readonly handler: RouteHandler;
}

export class HttpServer {
  readonly server: http.Server;
  private readonly routes: Route[] = [];
  private readonly tokenDigest: Buffer | null;
  /** Called for an upgrade to WebSocket at /ws, once authorised. */
  onUpgrade: ((req: http.IncomingMessage, socket: Duplex, head: Buffer) => void) | null = null;
  private boundPort = 0;

  constructor(private readonly options: HttpServerOptions) {
    this.tokenDigest = options.token === null ? null : digest(options.token);
    this.server = http.createServer((req, res) => void this.handle(req, res));
    // Keep-alive sockets of a dashboard or a poller must not hold close() up for long.
    this.server.keepAliveTimeout = 5000;
    this.server.on('upgrade', (req, socket, head) => this.upgrade(req, socket, head));
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  get port(): number {
    return this.boundPort;
  }

  get maxBodyBytes(): number {
    return this.options.maxBodyBytes;
  }

  /** Adds a route; `path` may hold `{name}` parts, e.g. '/job/{id}'. */
  route(method: string, path: string, handler: RouteHandler): void {
    this.routes.push({ method, parts: path.split('/').slice(1), handler });
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        reject(new TaskwireError(ErrorCode.CONNECT, `cannot listen for HTTP on ${this.options.host}:${this.options.port}: ${err.code ?? err.message}`, { cause: err }));
      };
      this.server.once('error', onError);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', onError);
        this.boundPort = (this.server.address() as { port: number }).port;
        resolve(this.boundPort);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  /** Why a request may not be answered, or null: a missing or wrong token, or a remote address without one. */
  private refusal(req: http.IncomingMessage): HttpError | null {
    if (this.tokenDigest !== null) {
      const header = req.headers.authorization ?? '';
      const match = /^Bearer\s+(.+)$/i.exec(header);
      // A browser cannot set headers on a link or an EventSource: a GET may carry the token as ?token= instead.
      const presented = match ? match[1]!.trim() : req.method === 'GET' || req.method === 'HEAD' ? queryToken(req.url) : null;
      if (presented === null) return new HttpError(401, ErrorCode.AUTH, 'this scheduler requires a token: send Authorization: Bearer <token> (or ?token=<token> on a GET)');
      if (!timingSafeEqual(digest(presented), this.tokenDigest)) return new HttpError(401, ErrorCode.AUTH, 'wrong token');
      return null;
    }
    if (!this.options.open && !isLoopback(req.socket.remoteAddress)) {
      return new HttpError(403, ErrorCode.AUTH, 'without a token this scheduler answers its own machine only (start it with a token, or --http-open)');
    }
    return null;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const refusal = this.refusal(req);
      if (refusal) throw refusal;
      const url = new URL(req.url ?? '/', 'http://localhost');
      const parts = url.pathname.split('/').slice(1);
      let allowed: string[] = [];
      for (const route of this.routes) {
        const params = matchPath(route.parts, parts);
        if (params === null) continue;
        if (route.method !== req.method && !(route.method === 'GET' && req.method === 'HEAD')) {
          allowed.push(route.method);
          continue;
        }
        allowed = [];
        await route.handler({ req, res, url, params });
        return;
      }
      if (allowed.length > 0) {
        res.setHeader('allow', [...new Set(allowed)].join(', '));
        throw new HttpError(405, 'E_METHOD', `${req.method} is not allowed on ${url.pathname}; use ${[...new Set(allowed)].join(' or ')}`);
      }
      throw new HttpError(404, 'E_NOT_FOUND', `no such endpoint: ${url.pathname}`);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const e = err instanceof TaskwireError ? err : new TaskwireError('E_INTERNAL', err instanceof Error ? err.message : String(err));
      const status = e instanceof HttpError ? e.status : (STATUS_OF[e.code] ?? (e.code === 'E_INTERNAL' ? 500 : 400));
      sendJson(res, status, { error: { code: e.code, message: e.message } });
    }
  }

  private upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    // The WebSocket peer presents the token in its HELLO like any other; only the loopback rule applies here.
    const remoteRefused = this.tokenDigest === null && !this.options.open && !isLoopback(req.socket.remoteAddress);
    if (path !== '/ws' || this.onUpgrade === null || remoteRefused) {
      socket.end(`HTTP/1.1 ${remoteRefused ? '403 Forbidden' : '404 Not Found'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      return;
    }
    this.onUpgrade(req, socket, head);
  }
}

function matchPath(pattern: readonly string[], parts: readonly string[]): Record<string, string> | null {
  if (pattern.length !== parts.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p.startsWith('{') && p.endsWith('}')) {
      if (parts[i] === '') return null;
      params[p.slice(1, -1)] = decodeURIComponent(parts[i]!);
    } else if (p !== parts[i]) {
      return null;
    }
  }
  return params;
}

function queryToken(url: string | undefined): string | null {
  const token = new URL(url ?? '/', 'http://localhost').searchParams.get('token');
  return token === null || token === '' ? null : token;
}

function isLoopback(address: string | undefined): boolean {
  return address === '127.0.0.1' || address === '::1' || address === '::ffff:127.0.0.1' || (address?.startsWith('127.') ?? false);
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

export function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

/** The request's body as JSON (an object); 413 past `limit` bytes, 400 for anything that is not a JSON object. */
export async function readJson(req: http.IncomingMessage, limit: number): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new HttpError(413, ErrorCode.TOO_LARGE, `the body of ${declared} bytes exceeds the limit of ${limit}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      req.resume();
      throw new HttpError(413, ErrorCode.TOO_LARGE, `the body exceeds the limit of ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') throw new HttpError(400, ErrorCode.INVALID, 'the body is empty; send a JSON object');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, ErrorCode.INVALID, `the body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HttpError(400, ErrorCode.INVALID, 'the body must be a JSON object');
  return value as Record<string, unknown>;
}
