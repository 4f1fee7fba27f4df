// The taskwire scheduler under test: a plain createScheduler() with default options, plus the harness's probes.

import { createScheduler } from '../../lib/index.js';
import { serve } from '../child.js';

const scheduler = createScheduler({ port: 0 });
const { port } = await scheduler.listen();
serve({ queued: () => scheduler.stats().queued, stats: () => scheduler.stats() }, { port });
