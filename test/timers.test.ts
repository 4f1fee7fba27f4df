// Unit tests of TimerWheel, the deadlines of running tasks and retry delays: against a plain model under random
// adds, removals and clock steps, at clocks large and small, with durations from 0 to several turns of the ring.

import t, { type Test } from 'tap';
import { mulberry32 } from './helpers.js';
import { TimerWheel, type Timed } from '../lib/scheduler/timers.js';

interface Item extends Timed<Item> {
  id: number;
}
const item = (id: number): Item => ({ id, deadline: 0, prev: null, next: null, list: null });

/** A run of random operations; every popDue() must return exactly the items of the model that are due. */
function run(t: Test, seed: number, start: number, maxDuration: number): void {
  const random = mulberry32(seed);
  const wheel = new TimerWheel<Item>();
  const model = new Map<number, number>(); // id -> deadline
  const items = new Map<number, Item>();
  let now = start;
  let nextId = 1;
  let fired = 0;
  for (let step = 0; step < 20_000; step++) {
    const r = random();
    if (r < 0.45) {
      const it = item(nextId++);
      // Mostly short, some at 0, some past a whole ring (about 17 minutes).
      const duration = random() < 0.1 ? 0 : Math.floor(random() ** 3 * maxDuration);
      wheel.add(it, now, duration);
      model.set(it.id, now + duration);
      items.set(it.id, it);
    } else if (r < 0.6 && model.size > 0) {
      const ids = [...model.keys()];
      const id = ids[Math.floor(random() * ids.length)]!;
      wheel.remove(items.get(id)!);
      wheel.remove(items.get(id)!); // twice is harmless
      model.delete(id);
    } else {
      // A tick: usually 100 ms, sometimes a read's small step, sometimes a long pause.
      const x = random();
      now += x < 0.7 ? 100 : x < 0.95 ? Math.floor(random() * 10) : Math.floor(random() * 3 * maxDuration);
      const due = wheel.popDue(now).map((i) => i.id).sort((a, b) => a - b);
      const expected = [...model].filter(([, deadline]) => deadline <= now).map(([id]) => id).sort((a, b) => a - b);
      if (due.join() !== expected.join()) {
        t.fail(`seed ${seed} step ${step} at ${now}: popDue gave [${due.slice(0, 5)}...] (${due.length}), expected ${expected.length}`);
        return;
      }
      for (const id of due) model.delete(id);
      fired += due.length;
    }
    if (wheel.size !== model.size) {
      t.fail(`seed ${seed} step ${step}: size ${wheel.size}, expected ${model.size}`);
      return;
    }
  }
  t.ok(fired > 1000, `seed ${seed}: ${fired} items fell due, each exactly when its deadline came, never before`);
}

t.test('popDue returns exactly the items whose deadline has come, whatever the durations and steps', (t) => {
  for (let seed = 1; seed <= 4; seed++) run(t, seed, 0, 60_000);
  // Durations past the ring, so items share buckets with nearer ones and are passed over.
  for (let seed = 5; seed <= 8; seed++) run(t, seed, 1_000, 5_000_000);
  // A clock like Date.now(), whose bucket numbers pass 2^32 after a wrap of the index.
  for (let seed = 9; seed <= 10; seed++) run(t, seed, 1_800_000_000_000, 3_000_000);
  t.end();
});

t.test('a deadline is not looked at again and again: a tick visits the buckets the clock passed', (t) => {
  const wheel = new TimerWheel<Item>();
  for (let i = 1; i <= 10_000; i++) wheel.add(item(i), 0, i * 1000); // 10,000 distinct durations, up to 2.8 h
  for (let now = 100; now <= 60_000; now += 100) wheel.popDue(now);
  t.equal(wheel.size, 10_000 - 60);
  // Each bucket of the ring holds about 2.4 of these deadlines, and a 100 ms tick visits the bucket it is in (and
  // the one it left): about 3.4 items a tick. One look per distinct duration would be 6,000,000.
  t.ok(wheel.scanned < 4_000, `600 ticks looked at ${wheel.scanned} deadlines`);
  t.end();
});

t.test('an empty wheel restarts at the clock of its next item', (t) => {
  const wheel = new TimerWheel<Item>();
  const a = item(1);
  wheel.add(a, 0, 10);
  t.same(wheel.popDue(10).map((i) => i.id), [1]);
  t.same(wheel.popDue(50_000_000), [], 'a long quiet spell with nothing in it');
  const b = item(2);
  wheel.add(b, 50_000_000, 500);
  t.same(wheel.popDue(50_000_499), [], 'not before its deadline');
  t.same(wheel.popDue(50_000_500).map((i) => i.id), [2], 'at its deadline');
  t.end();
});
