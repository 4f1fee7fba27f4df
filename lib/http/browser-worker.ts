// The browser worker: `GET /worker` serves a page that makes the tab a worker for `sha256` (WebCrypto) and
// `arith` (the same parser as the Node workers, the compiled lib/jobs/arith.js, served at /worker/arith.js), over
// the WebSocket transport at /ws. It speaks the binary protocol itself, in plain browser JavaScript, with no build
// step: the same frames as every other peer, one per WebSocket message.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { HttpError, type HttpServer } from './server.js';

/**
 * The compiled parser: next to this module once built (dist/lib/http -> dist/lib/jobs), or, running from source,
 * the build's copy (npm run build makes it; the tests run after it).
 */
function arithModule(): string {
  const here = import.meta.url;
  const file = here.endsWith('.ts') ? new URL('../../dist/lib/jobs/arith.js', here) : new URL('../jobs/arith.js', here);
  try {
    // The source map comment points at a file the page cannot fetch; the browser would only log a 404.
    return readFileSync(fileURLToPath(file), 'utf8').replace(/^\/\/# sourceMappingURL=.*$/m, '');
  } catch {
    throw new HttpError(503, 'E_NOT_BUILT', 'the browser worker needs the compiled parser: run npm run build');
  }
}

export function addBrowserWorkerRoutes(http: HttpServer): void {
  let arith: string | null = null;
  http.route('GET', '/worker', ({ res }) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(PAGE);
  });
  http.route('GET', '/worker/arith.js', ({ res }) => {
    arith ??= arithModule();
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' });
    res.end(arith);
  });
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>taskwire browser worker</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 46rem; padding: 0 1rem; color: #1d232a; }
  h1 { font-size: 1.4rem; margin: 0 0 .2rem; }
  .muted { color: #667; }
  #state { font-weight: 600; }
  #state.up { color: #17803d; } #state.down { color: #b3261e; }
  table { border-collapse: collapse; width: 100%; margin-top: 1rem; font-variant-numeric: tabular-nums; }
  td, th { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #e4e6ea; }
  code, td.mono { font-family: ui-monospace, monospace; font-size: .85rem; overflow-wrap: anywhere; }
</style>
</head>
<body>
<h1>taskwire browser worker</h1>
<p class="muted">This tab runs <code>sha256</code> (WebCrypto) and <code>arith</code> jobs for the scheduler it came from, over a WebSocket. Close it and the scheduler gives its tasks to another worker.</p>
<p>State: <span id="state">connecting</span> · done <span id="done">0</span> · failed <span id="failed">0</span> · running <span id="running">0</span></p>
<table><thead><tr><th>task</th><th>type</th><th>result</th></tr></thead><tbody id="log"></tbody></table>
<script type="module">
import { evaluateToString } from '/worker/arith.js';

const CMD = { TASK: 1, RESULT: 2, HELLO: 3, ERROR: 7, READY: 8, CANCEL: 9 };
const VERSION = 4, ROLE_WORKER = 2, MAY_BLOCK = 2;
const params = new URLSearchParams(location.search);
const token = params.get('token') ?? '';
const name = params.get('name') ?? 'browser-' + Math.random().toString(16).slice(2, 8);
const concurrency = Number(params.get('concurrency') ?? 4);
// ?delay=ms holds each answer that long: to watch tasks in flight, or to close the tab on them.
const delay = Number(params.get('delay') ?? 0);
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });
const $ = (id) => document.getElementById(id);
const counts = { done: 0, failed: 0, running: 0 };
const show = () => { for (const k in counts) $(k).textContent = counts[k]; };

function str16(text) {
  const bytes = enc.encode(text);
  const out = new Uint8Array(2 + bytes.length);
  new DataView(out.buffer).setUint16(0, bytes.length);
  out.set(bytes, 2);
  return out;
}
function frame(cmd, ...parts) {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(5 + length);
  out[0] = cmd;
  new DataView(out.buffer).setUint32(1, length);
  let at = 5;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
const u32 = (n) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n); return b; };
const u16 = (n) => { const b = new Uint8Array(2); new DataView(b.buffer).setUint16(0, n); return b; };

const handlers = {
  async sha256(body) {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', body));
    return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
  },
  arith(body) {
    let source;
    try { source = dec.decode(body); } catch { throw new Error('payload is not valid UTF-8'); }
    return evaluateToString(source);
  },
};

function connect() {
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
  ws.binaryType = 'arraybuffer';
  let keepalive = null;
  ws.onopen = () => {
    // HELLO: version, role, heartbeat 0 (the scheduler's is followed), name, token, one setting: this worker's
    // keepalives never wait for a handler (they run between awaits).
    ws.send(frame(CMD.HELLO, new Uint8Array([VERSION, ROLE_WORKER]), u32(0), str16(name), str16(token), new Uint8Array([1, MAY_BLOCK]), u32(0)));
  };
  ws.onmessage = (event) => {
    const data = new Uint8Array(event.data);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (let at = 0; at + 5 <= data.length; ) {
      const cmd = data[at];
      const length = view.getUint32(at + 1);
      const payload = data.subarray(at + 5, at + 5 + length);
      at += 5 + length;
      onFrame(ws, cmd, payload, () => {
        if (keepalive) return;
        const p = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
        const heartbeat = p.getUint32(2) || 5000;
        keepalive = setInterval(() => ws.readyState === 1 && ws.send(frame(CMD.HELLO)), heartbeat);
        ws.send(frame(CMD.READY, u32(concurrency), u16(2), str16('sha256'), str16('arith')));
        $('state').textContent = 'connected as ' + name; $('state').className = 'up';
      });
    }
  };
  ws.onclose = () => {
    clearInterval(keepalive);
    $('state').textContent = 'disconnected; reconnecting'; $('state').className = 'down';
    setTimeout(connect, 1000);
  };
}

function onFrame(ws, cmd, payload, onHello) {
  if (cmd === CMD.HELLO) return payload.length > 0 && onHello();
  if (cmd === CMD.ERROR) {
    const n = new DataView(payload.buffer, payload.byteOffset).getUint16(0);
    $('state').textContent = 'refused: ' + dec.decode(payload.subarray(2 + n)) + ' (' + dec.decode(payload.subarray(2, 2 + n)) + ')';
    return;
  }
  if (cmd === CMD.CANCEL) return; // tasks here are short; the scheduler drops the late answer
  if (cmd !== CMD.TASK) return;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const taskId = view.getUint32(0), attempt = view.getUint32(4), typeLength = view.getUint16(8);
  const type = dec.decode(payload.subarray(10, 10 + typeLength));
  const body = payload.slice(10 + typeLength);
  run(ws, taskId, attempt, type, body);
}

async function run(ws, taskId, attempt, type, body) {
  counts.running++; show();
  const head = [u32(taskId), u32(attempt)];
  let reply, text;
  try {
    const handler = handlers[type];
    if (!handler) throw Object.assign(new Error('this worker has no handler for job type ' + type), { code: 'E_NO_HANDLER' });
    text = String(await handler(body));
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    reply = frame(CMD.RESULT, ...head, new Uint8Array([0]), enc.encode(text));
    counts.done++;
  } catch (err) {
    text = 'error: ' + err.message;
    reply = frame(CMD.RESULT, ...head, new Uint8Array([1]), str16(err.code ?? 'E_HANDLER'), enc.encode(err.message));
    counts.failed++;
  }
  counts.running--; show();
  if (ws.readyState === 1) ws.send(reply);
  const row = document.createElement('tr');
  for (const cell of [taskId + '/' + attempt, type, text]) {
    const td = document.createElement('td'); td.className = 'mono'; td.textContent = cell; row.append(td);
  }
  $('log').prepend(row);
  while ($('log').children.length > 50) $('log').lastChild.remove();
}

connect();
</script>
</body>
</html>
`;
