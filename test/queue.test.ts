// Unit tests of the scheduler's queue structures: Rows, the ring of queued tasks kept as parallel arrays.

import t from 'tap';
import { Rows } from '../lib/scheduler/queue.js';

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
      rows.push(next * 2 ** 33, next * 7, lane, chunk, start, start + body.length, `opt${next % 5}`);
      expected.push([next * 2 ** 33, (next * 7) >>> 0, lane.name, body.toString(), `opt${next % 5}`]);
    }
  };
  push(10);
  const first = drain(rows).slice(0);
  t.same(first, expected.splice(0, 10), 'ten rows in order, seqs above 2^32 kept exactly');
  push(13);
  for (let i = 0; i < 9; i++) rows.shift(); // the head moves well into the ring
  expected.splice(0, 9);
  push(40); // fills the first block (reused from its start once it emptied), one of 32 rows, starts one of 64
  t.equal(rows.size, 44);
  t.equal(rows.capacity, 16 + 32 + 64);
  t.same(drain(rows), expected, 'order and fields survive across blocks');
  t.equal(rows.capacity, 64, 'blocks read through are let go; the last is kept for reuse');
  t.end();
});

t.test('Rows returns memory: blocks go as they are read through, and filter() compacts in order', (t) => {
  const rows = new Rows<Lane, null>();
  t.equal(rows.capacity, 0, 'nothing allocated before the first push');
  const lanes = [{ name: 'keep' }, { name: 'drop' }];
  const body = Buffer.from('x');
  for (let i = 0; i < 10_000; i++) rows.push(i, i, lanes[i % 2]!, body, 0, 1, null);
  t.ok(rows.capacity >= 10_000 && rows.capacity < 10_000 + 1_024, `capacity ${rows.capacity} for 10,000 rows`);
  for (let i = 0; i < 9_000; i++) rows.shift();
  t.ok(rows.capacity < 1_000 + 2 * 1_024, `capacity ${rows.capacity} after draining to 1,000 rows`);
  t.equal(rows.seq, 9_000, 'the head is the 9,001st row');

  rows.filter((lane) => lane.name === 'keep');
  t.equal(rows.size, 500);
  t.equal(rows.capacity, 16 + 32 + 64 + 128 + 256 + 512, `new blocks sized for the 500 rows kept`);
  const seqs: number[] = [];
  while (rows.size > 0) {
    seqs.push(rows.seq);
    rows.shift();
  }
  t.same(seqs, Array.from({ length: 500 }, (_, i) => 9_000 + 2 * i), 'the kept rows, in order');
  t.equal(rows.capacity, 512, 'only the last block is kept once empty, for reuse');
  rows.push(1, 1, lanes[0]!, body, 0, 1, null);
  t.equal(rows.capacity, 512, 'and the next row goes into it');
  t.equal(rows.seq, 1);
  rows.shift();
  rows.filter(() => false);
  t.equal(rows.size, 0, 'filtering an empty queue is a no-op');
  t.end();
});

t.test('Rows keeps a body as a range of the buffer it arrived in, without copying it', (t) => {
  const rows = new Rows<Lane, null>();
  const chunk = Buffer.from('header:payload:trailer');
  rows.push(1, 1, { name: 'l' }, chunk, 7, 14, null);
  chunk[7] = 'P'.charCodeAt(0); // the same memory: a row does not copy
  const body = rows.body();
  t.equal(body.toString(), 'Payload');
  t.equal(body.buffer, chunk.buffer, 'a view over the same bytes');
  t.end();
});
