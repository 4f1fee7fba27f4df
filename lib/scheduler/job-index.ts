// Every unsettled job by its id, for status, wait and cancel from any client.
//
// Job ids are handed out in ascending order and most jobs settle roughly in that order, so the index is a run of
// dense pages of PAGE slots, one slot per id: about 8 bytes a job and no hashing on the path of every task. A page
// goes once its jobs have all settled. A page that keeps only a few stragglers (a long delay among short jobs) is
// turned into entries of a Map, so that a straggler never pins a whole page: memory stays under about 150 bytes
// a job however the ids are spread.

const PAGE_BITS = 10;
const PAGE = 1 << PAGE_BITS;
/** A page left with fewer live entries than this, and not the newest, moves them to the sparse Map. */
const SPARSE_BELOW = PAGE / 16;

interface Page<V> {
  readonly slots: (V | undefined)[];
  count: number;
}

export class JobIndex<V> {
  private readonly pages = new Map<number, Page<V>>();
  private readonly sparse = new Map<number, V>();
  /** The page used last: consecutive ids nearly always share one. */
  private lastNumber = -1;
  private lastPage: Page<V> | null = null;
  /** The highest page number made so far; that page is never made sparse, as new ids still arrive in it. */
  private newest = -1;
  size = 0;

  get(id: number): V | undefined {
    const page = this.page(Math.floor(id / PAGE));
    if (page !== null) {
      const value = page.slots[id % PAGE];
      if (value !== undefined) return value;
    }
    return this.sparse.size > 0 ? this.sparse.get(id) : undefined;
  }

  /** Adds or replaces the entry of `id`. */
  set(id: number, value: V): void {
    const number = Math.floor(id / PAGE);
    let page = this.page(number);
    if (page === null) {
      if (this.sparse.has(id)) return void this.sparse.set(id, value);
      if (number < this.newest) {
        // An id below the newest page whose page went (ids are given out in order, so this is rare): sparse.
        this.sparse.set(id, value);
        this.size++;
        return;
      }
      page = { slots: new Array<V | undefined>(PAGE).fill(undefined), count: 0 };
      // The page that was newest may have emptied while ids still arrived in it: thin it now, or never.
      const previous = this.pages.get(this.newest);
      if (previous !== undefined && previous.count < SPARSE_BELOW) this.thin(this.newest, previous);
      this.pages.set(number, page);
      this.newest = number;
      this.lastNumber = number;
      this.lastPage = page;
    }
    const i = id % PAGE;
    if (page.slots[i] === undefined) {
      page.count++;
      this.size++;
    }
    page.slots[i] = value;
  }

  delete(id: number): boolean {
    const number = Math.floor(id / PAGE);
    const page = this.page(number);
    if (page !== null) {
      const i = id % PAGE;
      if (page.slots[i] !== undefined) {
        page.slots[i] = undefined;
        page.count--;
        this.size--;
        if (number !== this.newest && page.count < SPARSE_BELOW) this.thin(number, page);
        return true;
      }
    }
    if (this.sparse.delete(id)) {
      this.size--;
      return true;
    }
    return false;
  }

  clear(): void {
    this.pages.clear();
    this.sparse.clear();
    this.lastNumber = this.newest = -1;
    this.lastPage = null;
    this.size = 0;
  }

  /** Every entry, in no particular order. */
  *values(): IterableIterator<V> {
    for (const page of this.pages.values()) for (const v of page.slots) if (v !== undefined) yield v;
    yield* this.sparse.values();
  }

  /** Pages held, for tests of the memory policy. */
  get pageCount(): number {
    return this.pages.size;
  }

  private page(number: number): Page<V> | null {
    if (number === this.lastNumber) return this.lastPage;
    const page = this.pages.get(number) ?? null;
    if (page !== null) {
      this.lastNumber = number;
      this.lastPage = page;
    }
    return page;
  }

  /** Lets a page go, moving what is left of it to the sparse Map. */
  private thin(number: number, page: Page<V>): void {
    const base = number * PAGE;
    for (let i = 0; i < PAGE; i++) {
      const v = page.slots[i];
      if (v !== undefined) this.sparse.set(base + i, v);
    }
    this.pages.delete(number);
    if (this.lastNumber === number) {
      this.lastNumber = -1;
      this.lastPage = null;
    }
  }
}
