// IdTable against a Map as the model: every operation answers the same, whatever the ids and the order.

import t from 'tap';
import fc from 'fast-check';
import { IdTable } from '../lib/id-table.js';

type Op = { kind: 'set' | 'delete' | 'get'; id: number };

/** Ids from a narrow range collide in the table; ids near 2^32 check the u32 keys. */
const id = fc.oneof(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0xffff_fff0, max: 0xffff_ffff }), fc.nat());
const op: fc.Arbitrary<Op> = fc.record({ kind: fc.constantFrom('set', 'delete', 'get'), id });

function check(ops: Op[]): void {
  const table = new IdTable<{ id: number; n: number }>();
  const model = new Map<number, { id: number; n: number }>();
  ops.forEach(({ kind, id }, n) => {
    if (kind === 'set') {
      const value = { id, n };
      table.set(id, value);
      model.set(id, value);
    } else if (kind === 'delete') {
      if (table.delete(id) !== model.delete(id)) throw new Error(`delete(${id}) disagrees at op ${n}`);
    } else if (table.get(id) !== model.get(id)) {
      throw new Error(`get(${id}) disagrees at op ${n}`);
    }
    if (table.size !== model.size) throw new Error(`size ${table.size}, expected ${model.size} at op ${n}`);
  });
  for (const key of model.keys()) if (table.get(key) !== model.get(key)) throw new Error(`entry ${key} lost`);
  const values = [...table.values()].sort((a, b) => a.n - b.n);
  const expected = [...model.values()].sort((a, b) => a.n - b.n);
  if (values.length !== expected.length || values.some((v, i) => v !== expected[i])) throw new Error('values() disagree');
}

t.test('IdTable answers every sequence of set, delete and get as a Map does', async (t) => {
  t.doesNotThrow(() => fc.assert(fc.property(fc.array(op, { maxLength: 400 }), check), { numRuns: 500 }));
});

t.test('IdTable under in-flight churn: ids set in order, deleted some turns later, through growth and shrinking', (t) => {
  const table = new IdTable<{ id: number }>();
  const live: number[] = [];
  let next = 0;
  let wrong = 0;
  // Windows of 16, then 3,000 (the table grows), then 16 again (it shrinks): deletions keep every entry reachable.
  for (const window of [16, 3_000, 16]) {
    for (let i = 0; i < 20_000; i++) {
      table.set(next, { id: next });
      live.push(next++);
      while (live.length > window) {
        const gone = live.shift()!;
        if (table.get(gone)?.id !== gone || !table.delete(gone)) wrong++;
        if (table.has(gone)) wrong++;
      }
    }
    t.equal(table.size, window, `size follows a window of ${window}`);
  }
  t.equal(wrong, 0, 'every entry was found, deleted once, and gone after');
  t.ok(live.every((id) => table.get(id)?.id === id), 'the live ones are all still there');
  table.clear();
  t.equal(table.size, 0);
  t.equal(table.get(live[0]!), undefined, 'clear() empties it');
  t.end();
});
