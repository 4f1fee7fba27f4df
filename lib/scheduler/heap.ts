// A binary min-heap of tasks by submission number, with O(log n) push, pop and removal of any member.
//
// Requeued tasks wait here. A sorted list cost one walk per insertion, so a worker lost with 40,000 tasks froze
// the scheduler for 25-50 s; a heap puts N tasks back in O(N log N) whatever order they come in.
//
//            [0] seq 3                 parent of i: (i - 1) >> 1
//           /         \                children of i: 2i + 1, 2i + 2
//     [1] seq 7     [2] seq 5          every parent's seq is below its children's,
//      /     \                         so the oldest task is always items[0]
//  [3] 9   [4] 8
//
// Each member keeps its own index (`heapIndex`, -1 when it is in no heap), so removing it from the middle, as when
// its client leaves, needs no search.

export interface HeapItem {
  /** The key: read at each comparison, so it may be a getter (a lane's is its head row's); see update(). */
  readonly seq: number;
  /** Where the item sits in its heap's array; -1 when it is in none. */
  heapIndex: number;
}

export class SeqHeap<T extends HeapItem> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  /** The item with the lowest seq, or null. */
  get top(): T | null {
    return this.items[0] ?? null;
  }

  push(item: T): void {
    item.heapIndex = this.items.length;
    this.items.push(item);
    this.up(item.heapIndex);
  }

  pop(): T | null {
    const top = this.items[0];
    if (top === undefined) return null;
    this.remove(top);
    return top;
  }

  /** Removes a member; an item that is not in this heap is left alone. */
  remove(item: T): void {
    const i = item.heapIndex;
    if (i < 0 || this.items[i] !== item) return;
    item.heapIndex = -1;
    const last = this.items.pop()!;
    if (last === item) return;
    this.items[i] = last;
    last.heapIndex = i;
    this.down(i);
    this.up(last.heapIndex);
  }

  /** Puts a member whose seq changed back in its place (a lane whose head row left). */
  update(item: T): void {
    const i = item.heapIndex;
    if (i < 0 || this.items[i] !== item) return;
    this.down(i);
    this.up(item.heapIndex);
  }

  /** Moves every member of `other` into this heap, leaving `other` empty. */
  absorb(other: SeqHeap<T>): void {
    for (const item of other.items) this.push(item);
    other.items.length = 0;
  }

  /** The members in no particular order. Do not change the heap while iterating. */
  values(): readonly T[] {
    return this.items;
  }

  private up(i: number): void {
    const items = this.items;
    const item = items[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const above = items[parent]!;
      if (above.seq <= item.seq) break;
      items[i] = above;
      above.heapIndex = i;
      i = parent;
    }
    items[i] = item;
    item.heapIndex = i;
  }

  private down(i: number): void {
    const items = this.items;
    const n = items.length;
    const item = items[i]!;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && items[child + 1]!.seq < items[child]!.seq) child++;
      const below = items[child]!;
      if (below.seq >= item.seq) break;
      items[i] = below;
      below.heapIndex = i;
      i = child;
    }
    items[i] = item;
    item.heapIndex = i;
  }
}
