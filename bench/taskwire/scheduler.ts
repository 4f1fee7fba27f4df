// The taskwire scheduler under test: a plain createScheduler() with default options, plus the harness's probes.
// Usage: scheduler.ts [ws|http|tls]: with `ws`, also its HTTP listener on a free port, whose /ws takes WebSocket peers
// (reported as wsUrl). With `http` the same listener, reported as httpPort (W1 + /metrics scrapes it). With `tls`,
// TLS on the TCP listener with a self-signed certificate made now by openssl, reported as tlsWhere (tls:<port>:<file>).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createScheduler } from '../../lib/index.js';
import { serve } from '../child.js';

const ws = process.argv[2] === 'ws';
const http = ws || process.argv[2] === 'http';
const tls = process.argv[2] === 'tls' ? selfSigned() : null;
const scheduler = createScheduler({ port: 0, ...(http ? { httpPort: 0 } : {}), ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}) });
const { port } = await scheduler.listen();
serve(
  { queued: () => scheduler.stats().queued, stats: () => scheduler.stats() },
  {
    port,
    ...(ws ? { wsUrl: `ws://127.0.0.1:${scheduler.httpPort}/ws` } : {}),
    ...(http ? { httpPort: scheduler.httpPort } : {}),
    ...(tls ? { tlsWhere: `tls:${port}:${tls.file}` } : {}),
  },
);

/** A P-256 certificate for 127.0.0.1 that the bench's peers trust as their CA; its directory goes when this process does. */
function selfSigned(): { cert: Buffer; key: Buffer; file: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'taskwire-bench-tls-'));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'key.pem',
    '-out', 'cert.pem', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { cwd: dir, stdio: 'ignore' });
  return { cert: fs.readFileSync(path.join(dir, 'cert.pem')), key: fs.readFileSync(path.join(dir, 'key.pem')), file: path.join(dir, 'cert.pem') };
}
