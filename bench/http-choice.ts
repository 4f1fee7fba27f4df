// The HTTP API's framework choice, measured: the same JSON route (GET /job/{id}, a job's status of about 300
// bytes) served by Node's own http module with the API's router (lib/http/server.ts) and by fastify, the fastest
// well-kept framework for Node, each in a child process of its own; a client here keeps 32 requests in flight over
// keep-alive connections for a fixed time, taking turns between the two. Requests per second and latency.
// Usage: tsx bench/http-choice.ts [seconds per run (3)] [rounds (3)]

import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const JOB = {
  job_id: 1764590000000001,
  finished: true,
  state: 'completed',
  type: 'arith',
  answer: -2.5,
  attempts: 1,
  priority: 0,
  worker: 'local-1',
  submitted_at: 1764590000000,
  started_at: 1764590000001,
  finished_at: 1764590000002,
};

async function serve(kind: 'node' | 'fastify'): Promise<number> {
  if (kind === 'fastify') {
    const { default: Fastify } = await import('fastify');
    const app = Fastify({ logger: false });
    app.get('/job/:id', async (req) => ({ ...JOB, job_id: Number((req.params as { id: string }).id) }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    return (app.server.address() as { port: number }).port;
  }
  const { HttpServer, sendJson } = await import('../lib/http/server.js');
  const http = new HttpServer({ host: '127.0.0.1', port: 0, token: null, open: false, maxBodyBytes: 1 << 20 });
  http.route('GET', '/job/{id}', ({ res, params }) => sendJson(res, 200, { ...JOB, job_id: Number(params.id) }));
  return http.listen();
}

if (process.argv[2] === 'serve') {
  const port = await serve(process.argv[3] as 'node' | 'fastify');
  process.send!({ port });
} else {
  const seconds = Number(process.argv[2] ?? 3);
  const rounds = Number(process.argv[3] ?? 3);
  const servers = new Map<string, { child: ChildProcess; port: number }>();
  for (const kind of ['node', 'fastify']) {
    const child = fork(fileURLToPath(import.meta.url), ['serve', kind], { execArgv: ['--import', 'tsx'] });
    const [message] = (await once(child, 'message')) as [{ port: number }];
    servers.set(kind, { child, port: message.port });
  }
  const results: Record<string, { rps: number[]; p50: number[]; p99: number[] }> = { node: { rps: [], p50: [], p99: [] }, fastify: { rps: [], p50: [], p99: [] } };
  const run = async (port: number): Promise<{ rps: number; p50: number; p99: number }> => {
    const until = performance.now() + seconds * 1000;
    const latencies: number[] = [];
    // Node's http client with a keep-alive agent: fetch() would cap both servers at what it can send.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
    const get = (path: string): Promise<void> =>
      new Promise((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path, agent }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (body += d));
            res.on('end', () => (JSON.parse(body), resolve()));
          })
          .on('error', reject);
      });
    await Promise.all(
      Array.from({ length: 32 }, async (_, i) => {
        while (performance.now() < until) {
          const t0 = performance.now();
          await get(`/job/${i}`);
          latencies.push(performance.now() - t0);
        }
      }),
    );
    agent.destroy();
    latencies.sort((a, b) => a - b);
    return { rps: latencies.length / seconds, p50: latencies[latencies.length >> 1]!, p99: latencies[Math.floor(latencies.length * 0.99)]! };
  };
  for (const kind of ['node', 'fastify']) await run(servers.get(kind)!.port); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const kind of r % 2 === 0 ? ['node', 'fastify'] : ['fastify', 'node']) {
      const figures = await run(servers.get(kind)!.port);
      results[kind]!.rps.push(figures.rps);
      results[kind]!.p50.push(figures.p50);
      results[kind]!.p99.push(figures.p99);
    }
  }
  const med = (xs: number[]): number => xs.sort((a, b) => a - b)[xs.length >> 1]!;
  for (const [kind, r] of Object.entries(results)) {
    process.stdout.write(`${kind.padEnd(8)} ${med(r.rps).toFixed(0).padStart(7)} req/s   p50 ${med(r.p50).toFixed(2)} ms   p99 ${med(r.p99).toFixed(2)} ms   (rounds: ${r.rps.map((x) => x.toFixed(0)).join(', ')} req/s)\n`);
  }
  for (const { child } of servers.values()) child.kill();
}
