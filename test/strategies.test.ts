// Dispatch strategies on real sockets: how round-robin and least-loaded share tasks between unequal workers, and
// round-robin alternating between a scheduler's built-in (--local-workers) worker and a remote one.

import t, { type Test } from 'tap';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient, createWorker, type Strategy } from '../lib/index.js';
import { root, sha256, spawnChild, startScheduler, startServer, waitFor, within } from './helpers.js';

/**
 * Two workers, `big` (concurrency 8) and `small` (concurrency 2), no prefetch (so credits are the concurrency),
 * running 20 ms tasks that answer with their worker's name; one client keeps 4 tasks outstanding for 120 tasks,
 * never enough to fill both. Returns how many each ran.
 */
async function share(t: Test, strategy: Strategy): Promise<Record<string, number>> {
  const scheduler = await startScheduler(t, { strategy });
  const port = scheduler.port;
  const worker = (name: string, concurrency: number) => {
    const w = createWorker({ port, name, concurrency, prefetch: 0, handlers: { job: async () => (await sleep(20), name) } });
    t.teardown(() => w.close());
    return w;
  };
  // big first: on a tie, round-robin's first turn is its.
  await worker('big', 8).ready();
  await worker('small', 2).ready();
  const client = createClient({ port });
  t.teardown(() => client.close());
  await client.connect();
  const counts: Record<string, number> = { big: 0, small: 0 };
  let submitted = 0;
  const lane = async (): Promise<void> => {
    while (submitted < 120) {
      submitted++;
      counts[await client.submit('job', String(submitted))]!++;
    }
  };
  await within(20_000, `${strategy}: 120 tasks`, Promise.all([lane(), lane(), lane(), lane()]));
  return counts;
}


t.test('round-robin gives unequal workers turns; least-loaded gives each a share of its concurrency', async (t) => {
  const rr = await share(t, 'round-robin');
  const ll = await share(t, 'least-loaded');
  t.comment(`4 tasks outstanding, big x8 and small x2: round-robin ${JSON.stringify(rr)}, least-loaded ${JSON.stringify(ll)}`);
  // Round-robin alternates, so small holds 2 of the 4 most of the time: about half. Least-loaded gives small a
  // second task only once big is at half its concurrency, which 4 tasks never reach: about a quarter.
  t.ok(rr.small! >= 0.4 * 120 && rr.small! <= 0.6 * 120, `round-robin: small ran ${rr.small} of 120 (about half)`);
  t.ok(ll.small! >= 0.15 * 120 && ll.small! <= 0.33 * 120, `least-loaded: small ran ${ll.small} of 120 (about a quarter)`);
  t.equal(rr.big! + rr.small!, 120);
  t.equal(ll.big! + ll.small!, 120);
});

t.test('round-robin alternates between a --local-workers worker and a remote dist/worker.js', async (t) => {
  const { child: server, port } = await startServer(t, ['--local-workers', '1', '-vv']);
  const remote = spawnChild(t, process.execPath, [path.join(root, 'dist', 'worker.js'), '--port', String(port), '--name', 'remote']);
  await waitFor('the remote worker to register', () => /worker remote .* ready/.test(server.stderr()), 10_000);
  const client = createClient({ port });
  t.teardown(() => client.close());
  await client.connect();
  // One at a time, so both workers are idle at every submit and the strategy alone decides.
  for (let i = 0; i < 8; i++) t.equal(await client.submit('sha256', `x${i}`), sha256(`x${i}`));
  await waitFor('the last dispatch logged', () => (server.stderr().match(/ -> worker /g) ?? []).length >= 8);
  const order = [...server.stderr().matchAll(/attempt 1 -> worker (\S+)/g)].map((m) => m[1]);
  t.equal(order.length, 8);
  t.same(new Set(order), new Set(['local-1', 'remote']), 'both ran tasks');
  t.ok(order.every((name, i) => i === 0 || name !== order[i - 1]), `alternating: ${order.join(', ')}`);
  remote.proc.kill('SIGTERM');
  await within(10_000, 'the remote worker to exit', remote.exited);
});
