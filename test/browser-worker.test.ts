// The browser worker in real headless Chromium: the page at /worker joins over WebSocket, runs sha256 (WebCrypto)
// and arith (the same parser) for tasks submitted over TCP with the same results as a Node worker, and closing the
// tab requeues what it held to another worker.

import t from 'tap';
import { existsSync } from 'node:fs';
import { sha256, startScheduler, waitFor, within, startClient as client, startWorker as worker } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';

if (!existsSync(CHROMIUM)) {
  // CI installs it (scripts/ensure-test-tools.sh); a machine without it cannot run this test.
  if (process.env.CI) t.fail(`${CHROMIUM} is missing: run scripts/ensure-test-tools.sh`);
  else t.plan(0, `${CHROMIUM} is missing (scripts/ensure-test-tools.sh installs it)`);
} else {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
  t.teardown(() => browser.close());

  t.test('a tab is a worker: tasks from a TCP client complete on it with the results a Node worker gives', async (t) => {
    const scheduler = await startScheduler(t, { httpPort: 0, heartbeatMs: 500 });
    const page = await browser.newPage();
    t.teardown(() => page.close());
    await page.goto(`http://127.0.0.1:${scheduler.httpPort}/worker?name=tab-1&concurrency=4`);
    await waitFor('the tab to join', () => scheduler.workers().some((w) => w.name === 'tab-1' && w.concurrency === 4));
    t.match(scheduler.workers(), [{ name: 'tab-1', transport: 'ws', types: ['sha256', 'arith'], concurrency: 4 }]);
    const c = client(t, scheduler.port);
    const texts = ['Hello', '', 'héllo wörld €𝄞', 'x'.repeat(100_000)];
    t.same(await within(20_000, 'sha256 on the tab', Promise.all(texts.map((s) => c.submit('sha256', s)))), texts.map(sha256));
    const expressions = ['1+(2*3)/4-5', '2**-1', '-2**2', '1e308*10', '(-8)**(1/3)', '0.1+0.2'];
    const local = await Promise.all(expressions.map((e) => import('../lib/jobs/arith.js').then((m) => m.evaluateToString(e))));
    t.same(await within(20_000, 'arith on the tab', Promise.all(expressions.map((e) => c.submit('arith', e)))), local);
    await t.rejects(c.submit('arith', '1/0'), { code: 'E_HANDLER', message: 'division by zero at column 2' });
    // A string: the test's types know no DOM.
    await page.waitForFunction("Number(document.getElementById('done').textContent) >= 10");
    // It stays a worker past several keepalive intervals: its keepalives reach the scheduler.
    await new Promise((r) => setTimeout(r, 2000));
    t.ok(scheduler.workers().some((w) => w.name === 'tab-1'), 'still connected after 4 keepalive intervals');
  });

  t.test('closing the tab requeues its in-flight tasks to another worker', async (t) => {
    const scheduler = await startScheduler(t, { httpPort: 0 });
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${scheduler.httpPort}/worker?name=tab-2&concurrency=3&delay=60000`);
    await waitFor('the tab to join', () => scheduler.workers().some((w) => w.name === 'tab-2' && w.concurrency === 3));
    const c = client(t, scheduler.port);
    const inputs = ['a', 'b', 'c'];
    const results = Promise.all(inputs.map((s) => c.submit('sha256', s)));
    await waitFor('the tab to hold all three', () => scheduler.workers().find((w) => w.name === 'tab-2')?.inFlight === 3);
    worker(t, scheduler.port, undefined, { name: 'node' });
    await page.close();
    t.same(await within(15_000, 'the requeued tasks', results), inputs.map(sha256));
    t.ok(scheduler.stats().requeued >= 3, `requeued ${scheduler.stats().requeued}`);
  });
}
