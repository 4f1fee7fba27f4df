// Unit tests of the scheduler's queue structures: Rows (queued tasks kept as parallel arrays), SeqHeap (requeued
// tasks by submission number) and TypeQueue (one job type's queue, with its rule for tasks avoiding a worker).

import t from 'tap';
import { mulberry32 } from './helpers.js';
import { SeqHeap } from '../lib/scheduler/heap.js';
import { Rows } from '../lib/scheduler/queue.js';
import { TypeQueue } from '../lib/scheduler/type-queue.js';
import { RoundRobin } from '../lib/scheduler/balance.js';

interface Lane {
  name: string;
}

/** Pops every row, head first, as [seq, requestId, lane, body, option]. */
function drain(rows: Rows<Lane, string>): [number, number, string, string, string][] {
  const out: [number, number, string, string, string][] = [];
  while (rows.size > 0) {
    out.push([rows.seq, rows.requestId, rows.lane.name, rows.body().toString(), rows.option]);
    rows.shift();
  }
  return out;
}

t.test('Rows is a FIFO across blocks, every field kept with its row', (t) => {
  const rows = new Rows<Lane, string>();
  const a = { name: 'a' };
  const b = { name: 'b' };
  const chunk = Buffer.from('0123456789'.repeat(40));
  const expected: [number, number, string, string, string][] = [];
  let next = 1;
  const push = (n: number): void => {
    for (let i = 0; i < n; i++, next++) {
      const lane = next % 3 ? a : b;
      const start = next % 300;
      const body = chunk.subarray(start, start + (next % 7));
      rows.push(next * 2 ** 33, next * 7, lane, body, `opt${next % 5}`);
      expected.push([next * 2 ** 33, (next * 7) >>> 0, lane.name, body.toString(), `opt${next % 5}`]);
    }
  };
  push(10);
  const first = drain(rows).slice(0);
  t.same(first, expected.splice(0, 10), 'ten rows in order, seqs above 2^32 kept exactly');
  push(13);
  for (let i = 0; i < 9; i++) rows.shift(); // the head moves well into the ring
  expected.splice(0, 9);
  // Blocks of 4 and 8 took the first ten; drained, the 8 was kept and reused, then one of 16 started. The head is
  // now inside the 16: forty more fill it and start one of 32.
  push(40);
  t.equal(rows.size, 44);
  t.equal(rows.capacity, 16 + 32);
  t.same(drain(rows), expected, 'order and fields survive across blocks');
  t.equal(rows.capacity, 32, 'blocks read through are let go; the last is kept for reuse');
  t.end();
});

t.test('Rows returns memory: blocks go as they are read through, and filter() compacts in order', (t) => {
  const rows = new Rows<Lane, null>();
  t.equal(rows.capacity, 0, 'nothing allocated before the first push');
  const lanes = [{ name: 'keep' }, { name: 'drop' }];
  const body = Buffer.from('x');
  for (let i = 0; i < 10_000; i++) rows.push(i, i, lanes[i % 2]!, body, null);
  t.ok(rows.capacity >= 10_000 && rows.capacity < 10_000 + 1_024, `capacity ${rows.capacity} for 10,000 rows`);
  for (let i = 0; i < 9_000; i++) rows.shift();
  t.ok(rows.capacity < 1_000 + 2 * 1_024, `capacity ${rows.capacity} after draining to 1,000 rows`);
  t.equal(rows.seq, 9_000, 'the head is the 9,001st row');

  rows.filter((lane) => lane.name === 'keep');
  t.equal(rows.size, 500);
  t.equal(rows.capacity, 4 + 8 + 16 + 32 + 64 + 128 + 256, `new blocks sized for the 500 rows kept`);
  const seqs: number[] = [];
  while (rows.size > 0) {
    seqs.push(rows.seq);
    rows.shift();
  }
  t.same(seqs, Array.from({ length: 500 }, (_, i) => 9_000 + 2 * i), 'the kept rows, in order');
  t.equal(rows.capacity, 256, 'only the last block is kept once empty, for reuse');
  rows.push(1, 1, lanes[0]!, body, null);
  t.equal(rows.capacity, 256, 'and the next row goes into it');
  t.equal(rows.seq, 1);
  rows.shift();
  rows.filter(() => false);
  t.equal(rows.size, 0, 'filtering an empty queue is a no-op');
  t.end();
});

t.test('Rows keeps a body that is most of its buffer as it is, and copies one that is a small part of a large read', (t) => {
  const lane = { name: 'l' };
  const rows = new Rows<Lane, null>();
  const own = Buffer.allocUnsafeSlow(100).fill(0x61); // a frame assembled on its own: the body is most of it
  rows.push(1, 1, lane, own.subarray(10, 100), null);
  t.equal(rows.body().buffer, own.buffer, 'kept as it is: no copy');
  rows.shift();

  // A 64 KiB socket read holding a 6-byte body among large frames.
  const read = Buffer.allocUnsafeSlow(64 * 1024).fill(0x2e);
  read.write('tiny!!', 30_000);
  for (let i = 0; i < 200; i++) rows.push(2 + i, 2 + i, lane, read.subarray(30_000, 30_006), null);
  read.fill(0); // the read is reused or gone: the rows must not care
  const bodies: Buffer[] = [];
  while (rows.size > 0) {
    bodies.push(rows.body());
    rows.shift();
  }
  t.ok(bodies.every((b) => b.toString() === 'tiny!!'), 'each small body was copied out of the read');
  t.notOk(bodies.some((b) => b.buffer === read.buffer), 'none points into the read');
  const places = new Set(bodies.map((b) => `${b.byteOffset}:${b.buffer.byteLength}`));
  t.equal(places.size, 200, 'each in a place of its own');

  const medium = Buffer.allocUnsafeSlow(64 * 1024).fill(0x62);
  rows.push(300, 300, lane, medium.subarray(0, 5000), null);
  t.ok(rows.body().buffer !== medium.buffer && rows.body().length === 5000, 'a 5,000-byte body of a 64 KiB read gets a buffer of its own');
  t.equal(rows.body().buffer.byteLength, 5000);
  t.end();
});

interface Item {
  seq: number;
  heapIndex: number;
  avoid: string | null;
}
const item = (seq: number): Item => ({ seq, heapIndex: -1, avoid: null });

t.test('SeqHeap answers random pushes, pops and removals as a sorted list does', (t) => {
  for (let seed = 1; seed <= 200; seed++) {
    const rnd = mulberry32(seed);
    const heap = new SeqHeap<Item>();
    let model: Item[] = [];
    let next = 0;
    for (let step = 0; step < 300; step++) {
      const r = rnd();
      if (r < 0.5) {
        // Mostly out of order, as tasks come back from a lost worker or a timeout sweep.
        const it = item(Math.floor(rnd() * 1000) * 1000 + next++);
        heap.push(it);
        model.push(it);
      } else if (r < 0.75) {
        model.sort((a, b) => a.seq - b.seq);
        const want = model.shift() ?? null;
        if (heap.pop() !== want) return t.fail(`seed ${seed} step ${step}: pop differs`);
        if (want && want.heapIndex !== -1) return t.fail(`seed ${seed}: a popped item keeps its index`);
      } else if (model.length > 0) {
        const victim = model[Math.floor(rnd() * model.length)]!;
        heap.remove(victim);
        heap.remove(victim); // a second removal is harmless
        model = model.filter((m) => m !== victim);
      }
      const min = model.reduce<Item | null>((best, m) => (best === null || m.seq < best.seq ? m : best), null);
      if (heap.top !== min || heap.size !== model.length) return t.fail(`seed ${seed} step ${step}: top or size differs`);
    }
  }
  t.pass('200 random sequences of 300 operations agree with the model');
  t.end();
});

t.test('SeqHeap puts 100,000 tasks back in O(n log n): each push and pop walks at most log2(n) levels', (t) => {
  // Counting comparisons rather than timing: the old sorted list walked ~n/2 entries per insertion.
  let compared = 0;
  const counted = (seq: number): Item => {
    const it = item(seq);
    return new Proxy(it, {
      get(target, key) {
        if (key === 'seq') compared++;
        return target[key as keyof Item];
      },
      set(target, key, value) {
        (target as unknown as Record<string | symbol, unknown>)[key] = value;
        return true;
      },
    });
  };
  const n = 100_000;
  const heap = new SeqHeap<Item>();
  for (let i = 0; i < n; i++) heap.push(counted(i)); // ascending, the worst case of the sorted list
  const pushes = compared;
  compared = 0;
  let last = -1;
  for (let i = 0; i < n; i++) {
    const it = heap.pop()!;
    if (it.seq < last) return t.fail('popped out of order');
    last = it.seq;
  }
  t.ok(pushes / n <= 2 * 17, `pushes: ${(pushes / n).toFixed(1)} seq reads per task (log2(100,000) = 16.6)`);
  t.ok(compared / n <= 4 * 17, `pops: ${(compared / n).toFixed(1)} seq reads per task`);
  t.end();
});

t.test('TypeQueue: a task that failed on a worker goes to another one first, and back to it only when alone', (t) => {
  type Q = TypeQueue<Item, string, { client: unknown }, null>;
  const lane = { client: 'c1' };
  const queue: Q = new TypeQueue('job', new RoundRobin());
  queue.workers = queue.active = 2; // workers a and b, both with credits
  const old = item(1);
  queue.requeue(old, 'a'); // timed out on a
  queue.rows.push(5, 50, lane, Buffer.from('row'), null);
  queue.live++;
  t.equal(queue.headSeq('a'), 5, 'a sees only the row: the older task avoids it');
  t.equal(queue.headSeq('b'), 1, 'b sees the older task');
  t.equal(queue.requeuedCount, 1);

  queue.active = 1; // b stopped taking work: a is alone
  t.equal(queue.headSeq('a'), 1, 'alone, a may take it back');
  queue.active = 2;
  t.equal(queue.take('b'), old, 'b takes it');
  t.equal(old.avoid, null, 'taken: it avoids nobody any more');
  t.equal(queue.take('a'), null, 'then the row is the head');
  queue.rows.shift();

  const again = item(2);
  queue.requeue(again, 'a');
  t.ok(queue.avoidsAny);
  queue.forget('a'); // a stopped announcing the type
  t.notOk(queue.avoidsAny);
  t.equal(again.avoid, null);
  t.equal(queue.headSeq('a'), 2, 'open to a again');
  queue.remove(again);
  t.equal(queue.live, 0);
  t.equal(queue.headSeq('a'), Infinity);
  t.end();
});
