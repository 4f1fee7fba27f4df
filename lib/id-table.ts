// A map from u32 ids to objects for the hot bookkeeping of in-flight work: a worker's running tasks in the
// scheduler, a client's pending requests.
//
// Why not a Map: those ids only ever grow, so each entry is set once and deleted once, and a JS Map under that
// churn rebuilds its hash table every few dozen operations. Once a long-lived Map's table has been promoted to
// the old generation, the tables it leaves behind keep the objects they held alive through young-generation
// collections until the next full one, so nearly every task object was promoted. In the scheduling core alone that cost
// 2.2 us per task against 0.33 (a million tasks, 1 worker); a Map with 16 live entries and that churn, alone in
// a process, 1.9-2.6 us per operation against 0.25 for this table.
//
// Open addressing with linear probing in two parallel arrays allocated once (and again only when the number of
// entries doubles or falls to an eighth): a deletion shifts the entries after it back into place instead of
// leaving a tombstone, so churn never reallocates anything.

const MIN_CAPACITY = 16;

export class IdTable<T extends object> {
  private keys: Uint32Array;
  private slots: (T | null)[];
  private mask: number;
  /** 32 - log2(capacity): the hash's top bits pick the slot. */
  private shift: number;
  private count = 0;

  constructor() {
    this.keys = new Uint32Array(MIN_CAPACITY);
    this.slots = new Array<T | null>(MIN_CAPACITY).fill(null);
    this.mask = MIN_CAPACITY - 1;
    this.shift = 32 - Math.log2(MIN_CAPACITY);
  }

  get size(): number {
    return this.count;
  }

  get(id: number): T | undefined {
    for (let i = this.home(id); ; i = (i + 1) & this.mask) {
      const value = this.slots[i]!;
      if (value === null) return undefined;
      if (this.keys[i] === id) return value;
    }
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** Adds or replaces the entry for `id` (a u32). */
  set(id: number, value: T): void {
    let i = this.home(id);
    for (; this.slots[i] !== null; i = (i + 1) & this.mask) {
      if (this.keys[i] === id) {
        this.slots[i] = value;
        return;
      }
    }
    this.keys[i] = id;
    this.slots[i] = value;
    // At most half full, so probe runs stay short and an empty slot always ends a search.
    if (++this.count * 2 > this.slots.length) this.resize(this.slots.length * 2);
  }

  delete(id: number): boolean {
    let i = this.home(id);
    for (; ; i = (i + 1) & this.mask) {
      if (this.slots[i] === null) return false;
      if (this.keys[i] === id) break;
    }
    // Backward-shift deletion: each later entry of the run moves into the hole unless its home slot lies
    // (cyclically) after the hole, so every entry stays reachable from its home without tombstones.
    for (let j = (i + 1) & this.mask; this.slots[j] !== null; j = (j + 1) & this.mask) {
      const home = this.home(this.keys[j]!);
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      this.keys[i] = this.keys[j]!;
      this.slots[i] = this.slots[j]!;
      i = j;
    }
    this.slots[i] = null;
    this.count--;
    if (this.count * 8 < this.slots.length && this.slots.length > MIN_CAPACITY) this.resize(this.slots.length / 2);
    return true;
  }

  clear(): void {
    this.keys = new Uint32Array(MIN_CAPACITY);
    this.slots = new Array<T | null>(MIN_CAPACITY).fill(null);
    this.mask = MIN_CAPACITY - 1;
    this.shift = 32 - Math.log2(MIN_CAPACITY);
    this.count = 0;
  }

  /** The values, in no particular order. Do not change the table while iterating. */
  *values(): IterableIterator<T> {
    for (const value of this.slots) if (value !== null) yield value;
  }

  /**
   * Fibonacci hashing, taking the product's top bits. Its low bits would send ids that differ by a multiple of
   * the capacity to one slot, and a worker among 64 holds every 64th task id: with the low bits the core
   * sweep's 64-worker point cost 0.52-0.53 us per task against 0.29-0.30 for 1 worker; with the top bits, 0.40.
   */
  private home(id: number): number {
    return Math.imul(id, 0x9e3779b1) >>> this.shift;
  }

  private resize(capacity: number): void {
    const { keys, slots } = this;
    this.keys = new Uint32Array(capacity);
    this.slots = new Array<T | null>(capacity).fill(null);
    this.mask = capacity - 1;
    this.shift = 32 - Math.log2(capacity);
    this.count = 0;
    for (let i = 0; i < slots.length; i++) {
      const value = slots[i]!;
      if (value !== null) this.set(keys[i]!, value);
    }
  }
}
