// The taskwire scheduler under test: a plain createScheduler() with default options, plus the harness's probes.
// Usage: scheduler.ts [ws|http]: with `ws`, also its HTTP listener on a free port, whose /ws takes WebSocket peers
// (reported as wsUrl). With `http` the same listener, reported as httpPort (W1 + /metrics scrapes it).

import { createScheduler } from '../../lib/index.js';
import { serve } from '../child.js';

const ws = process.argv[2] === 'ws';
const http = ws || process.argv[2] === 'http';
const scheduler = createScheduler({ port: 0, ...(http ? { httpPort: 0 } : {}) });
const { port } = await scheduler.listen();
serve({ queued: () => scheduler.stats().queued, stats: () => scheduler.stats() }, { port, ...(ws ? { wsUrl: `ws://127.0.0.1:${scheduler.httpPort}/ws` } : {}), ...(http ? { httpPort: scheduler.httpPort } : {}) });
