// Unit tests of the scheduler's queue structures: Rows (queued tasks kept as parallel arrays), SeqHeap (requeued
// tasks by submission number), TypeQueue (one job type's queue: priorities, lanes in FIFO or fair order, and its
// rule for tasks avoiding a worker) and JobIndex (unsettled jobs by id).

import t from 'tap';
import { mulberry32 } from './helpers.js';
import { SeqHeap } from '../lib/scheduler/heap.js';
import { Rows } from '../lib/scheduler/queue.js';
import { Lane, TypeQueue, type QueueKinds, type RowTaker } from '../lib/scheduler/type-queue.js';
import { RoundRobin } from '../lib/scheduler/balance.js';
import { JobIndex } from '../lib/scheduler/job-index.js';

/** Pops every row, head first, as [seq, requestId, time, body, option]. */
function drain(rows: Rows<string>): [number, number, number, string, string][] {
  const out: [number, number, number, string, string][] = [];
  while (rows.size > 0) {
    out.push([rows.seq, rows.requestId, rows.time, rows.body().toString(), rows.option]);
    rows.shift();
  }
  return out;
}

t.test('Rows is a FIFO across blocks, every field kept with its row', (t) => {
  const rows = new Rows<string>();
  const chunk = Buffer.from('0123456789'.repeat(40));
  const expected: [number, number, number, string, string][] = [];
  let next = 1;
  const push = (n: number): void => {
    for (let i = 0; i < n; i++, next++) {
      const start = next % 300;
      const body = chunk.subarray(start, start + (next % 7));
      rows.push(next * 2 ** 33, next * 7, 1_800_000_000_000 + next, body, `opt${next % 5}`);
      expected.push([next * 2 ** 33, (next * 7) >>> 0, 1_800_000_000_000 + next, body.toString(), `opt${next % 5}`]);
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

t.test('Rows returns memory: blocks go as they are read through', (t) => {
  const rows = new Rows<null>();
  t.equal(rows.capacity, 0, 'nothing allocated before the first push');
  const body = Buffer.from('x');
  for (let i = 0; i < 10_000; i++) rows.push(i, i, 0, body, null);
  t.ok(rows.capacity >= 10_000 && rows.capacity < 10_000 + 1_024, `capacity ${rows.capacity} for 10,000 rows`);
  for (let i = 0; i < 9_000; i++) rows.shift();
  t.ok(rows.capacity < 1_000 + 2 * 1_024, `capacity ${rows.capacity} after draining to 1,000 rows`);
  t.equal(rows.seq, 9_000, 'the head is the 9,001st row');
  while (rows.size > 0) rows.shift();
  t.equal(rows.capacity, 1024, 'only the last block is kept once empty, for reuse');
  rows.push(1, 1, 0, body, null);
  t.equal(rows.capacity, 1024, 'and the next row goes into it');
  t.equal(rows.seq, 1);
  t.end();
});

t.test('Rows.remove() takes a row out of the middle, the head or the tail; find() and forEach() see only live rows', (t) => {
  const rows = new Rows<string>();
  for (let i = 1; i <= 100; i++) rows.push(i * 10, i, i, Buffer.from(`b${i}`), `o${i}`);
  t.equal(rows.remove(505), -1, 'no row has that seq');
  t.equal(rows.remove(500), 3, 'a row in the middle: its body length');
  t.equal(rows.remove(500), -1, 'gone already');
  t.equal(rows.find(500), null);
  t.match(rows.find(510), { requestId: 51, time: 51, options: 'o51' });
  t.equal(rows.find(510)!.body.toString(), 'b51');
  t.equal(rows.remove(10), 2, 'the head');
  t.equal(rows.seq, 20, 'the next one is the head');
  t.equal(rows.remove(1000), 4, 'the tail');
  t.equal(rows.size, 97);
  for (let i = 2; i <= 49; i++) rows.remove(i * 10); // the rows before 500: the head must skip 500 once it gets there
  t.equal(rows.seq, 510, 'the head skipped the row removed earlier');
  const seen: number[] = [];
  rows.forEach((_requestId, seq) => seen.push(seq));
  t.same(seen, Array.from({ length: 49 }, (_, i) => 510 + 10 * i));
  t.equal(rows.size, 49);
  for (let i = 51; i <= 99; i++) rows.remove(i * 10);
  t.equal(rows.size, 0);
  rows.push(2000, 1, 1, Buffer.from('again'), 'x');
  t.equal(rows.seq, 2000, 'a row pushed after everything was removed is the head');
  t.end();
});

t.test('Rows keeps a body that is most of its buffer as it is, and copies one that is a small part of a large read', (t) => {
  const rows = new Rows<null>();
  const own = Buffer.allocUnsafeSlow(100).fill(0x61); // a frame assembled on its own: the body is most of it
  rows.push(1, 1, 0, own.subarray(10, 100), null);
  t.equal(rows.body().buffer, own.buffer, 'kept as it is: no copy');
  rows.shift();

  // A 64 KiB socket read holding a 6-byte body among large frames.
  const read = Buffer.allocUnsafeSlow(64 * 1024).fill(0x2e);
  read.write('tiny!!', 30_000);
  for (let i = 0; i < 200; i++) rows.push(2 + i, 2 + i, 0, read.subarray(30_000, 30_006), null);
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
  rows.push(300, 300, 0, medium.subarray(0, 5000), null);
  t.ok(rows.body().buffer !== medium.buffer && rows.body().length === 5000, 'a 5,000-byte body of a 64 KiB read gets a buffer of its own');
  t.equal(rows.body().buffer.byteLength, 5000);
  t.end();
});

interface Item {
  seq: number;
  heapIndex: number;
  avoid: string | null;
  priority: number;
}
const item = (seq: number, priority = 0): Item => ({ seq, heapIndex: -1, avoid: null, priority });

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

/** A TypeQueue of test items: workers are strings, lanes' owners strings, rows become items. */
interface Kinds extends QueueKinds {
  task: Item;
  worker: string;
  owner: string;
  options: { tag: string };
}
function testQueue(fair = false): { queue: TypeQueue<Kinds>; emptied: Lane<Kinds>[] } {
  const emptied: Lane<Kinds>[] = [];
  const taker: RowTaker<Kinds> = {
    fromRow: (lane, seq) => item(seq, lane.level.priority),
    laneEmptied: (lane) => emptied.push(lane),
  };
  return { queue: new TypeQueue<Kinds>('job', new RoundRobin(), fair, taker), emptied };
}
const push = (queue: TypeQueue<Kinds>, lane: Lane<Kinds>, seq: number): void => queue.push(lane, seq, seq, 0, Buffer.from(`r${seq}`), { tag: `t${seq}` });
/** Takes every task worker `w` may take, in the order the queue gives them, as seqs. */
function takeAll(queue: TypeQueue<Kinds>, w = 'a'): number[] {
  const out: number[] = [];
  while (queue.headSeq(w) !== Infinity) out.push(queue.take(w).seq);
  return out;
}

t.test('TypeQueue: a task that failed on a worker goes to another one first, and back to it only when alone', (t) => {
  const { queue } = testQueue();
  queue.workers = queue.active = 2; // workers a and b, both with credits
  const lane = new Lane<Kinds>('c1', false, queue.level(0));
  const old = item(1);
  queue.requeue(old, 'a'); // timed out on a
  push(queue, lane, 5);
  t.equal(queue.headSeq('a'), 5, 'a sees only the row: the older task avoids it');
  t.equal(queue.headSeq('b'), 1, 'b sees the older task');
  t.equal(queue.requeuedCount, 1);

  queue.active = 1; // b stopped taking work: a is alone
  t.equal(queue.headSeq('a'), 1, 'alone, a may take it back');
  queue.active = 2;
  queue.headSeq('b');
  t.equal(queue.take('b'), old, 'b takes it');
  t.equal(old.avoid, null, 'taken: it avoids nobody any more');
  queue.headSeq('a');
  t.equal(queue.take('a').seq, 5, 'then the row');

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

t.test('TypeQueue: the highest priority first, FIFO within one; requeued tasks keep their place in their priority', (t) => {
  const { queue } = testQueue();
  queue.workers = queue.active = 1;
  const low = new Lane<Kinds>('c1', false, queue.level(-5));
  const normal = new Lane<Kinds>('c1', false, queue.level(0));
  const high = new Lane<Kinds>('c2', false, queue.level(10));
  push(queue, low, 1);
  push(queue, normal, 2);
  push(queue, high, 3);
  push(queue, normal, 4);
  push(queue, low, 5);
  push(queue, high, 6);
  queue.requeue(item(0, 0), null); // an old normal task back from a lost worker
  t.equal(queue.headSeq('a'), 3);
  t.equal(queue.headPriority, 10);
  t.same(takeAll(queue), [3, 6, 0, 2, 4, 1, 5], 'high, then normal (the requeued one first, by age), then low');
  t.equal(queue.live, 0);
  t.end();
});

t.test('TypeQueue: FIFO takes the oldest row across lanes; fair gives each lane a turn', (t) => {
  for (const fair of [false, true]) {
    const { queue, emptied } = testQueue(fair);
    queue.workers = queue.active = 1;
    const burst = new Lane<Kinds>('burst', false, queue.level(0));
    const single = new Lane<Kinds>('single', false, queue.level(0));
    for (let seq = 1; seq <= 5; seq++) push(queue, burst, seq);
    push(queue, single, 6);
    push(queue, burst, 7);
    const order = takeAll(queue);
    if (fair) t.same(order, [1, 6, 2, 3, 4, 5, 7], 'fair: the single job waits one turn of the burst, not five');
    else t.same(order, [1, 2, 3, 4, 5, 6, 7], 'FIFO: by submission');
    t.same(emptied.map((l) => l.owner).sort(), ['burst', 'single'], 'each lane is let go once it is empty');
  }
  t.end();
});

t.test('TypeQueue: rows removed by seq, and a whole lane dropped, leave the rest in order', (t) => {
  const { queue, emptied } = testQueue();
  queue.workers = queue.active = 1;
  const a = new Lane<Kinds>('a', false, queue.level(0));
  const b = new Lane<Kinds>('b', false, queue.level(0));
  for (let seq = 1; seq <= 6; seq++) push(queue, seq % 2 ? a : b, seq);
  t.equal(queue.removeRow(a, 3), 2, 'a row in the middle of a lane');
  t.equal(queue.removeRow(a, 3), -1, 'only once');
  t.equal(queue.removeRow(b, 1), -1, 'not in that lane');
  t.equal(queue.removeRow(a, 1), 2, "a lane's head: the heap of lanes follows");
  t.equal(queue.headSeq('a'), 2, "b's head is the oldest now");
  t.equal(queue.dropLane(b), 3, "b's three rows go at once");
  t.same(emptied, [b]);
  t.same(takeAll(queue), [5]);
  t.same(emptied, [b, a]);
  t.equal(queue.live, 0);
  t.end();
});

t.test('JobIndex: ids in order, settled in any order, stragglers moved out of their pages', (t) => {
  const index = new JobIndex<{ id: number }>();
  const model = new Map<number, { id: number }>();
  const rnd = mulberry32(7);
  let next = 1_764_000_000_000_000; // ids start from a clock in microseconds
  for (let step = 0; step < 200_000; step++) {
    if (rnd() < 0.52) {
      const v = { id: next };
      index.set(next, v);
      model.set(next, v);
      next++;
    } else if (model.size > 0) {
      // Mostly the oldest (FIFO), sometimes any: the stragglers are what the sparse map is for.
      const id = rnd() < 0.9 ? model.keys().next().value! : [...model.keys()][Math.floor(rnd() * Math.min(model.size, 50))]!;
      if (rnd() < 0.995) {
        if (!index.delete(id)) return t.fail(`delete(${id}) found nothing`);
        model.delete(id);
      }
    }
  }
  t.equal(index.size, model.size);
  let wrong = 0;
  for (const [id, v] of model) if (index.get(id) !== v) wrong++;
  t.equal(wrong, 0, `${model.size} live ids found`);
  t.equal(index.get(next + 5), undefined);
  t.ok(index.pageCount <= Math.ceil(model.size / 64) + 2, `${index.pageCount} pages for ${model.size} live ids spread over ${next - 1_764_000_000_000_000}`);
  t.end();
});
