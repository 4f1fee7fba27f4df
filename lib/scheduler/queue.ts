// Intrusive doubly linked lists: O(1) push and pop at both ends and O(1) removal of any member.
//
// Tasks and ready-worker slots carry their own prev/next links, so queuing allocates nothing, a requeued task
// goes back to the head in O(1), and a task whose client left is unlinked from the middle without a scan.
// (A ring buffer would cost less per entry but cannot remove from the middle.)

export interface Linked<T> {
  prev: T | null;
  next: T | null;
  /** The list the item is in, or null: makes removal safe to call twice. */
  list: { remove(item: T): void } | null;
}

export class LinkedList<T extends Linked<T>> {
  head: T | null = null;
  tail: T | null = null;
  length = 0;

  pushBack(item: T): void {
    item.list = this;
    item.prev = this.tail;
    item.next = null;
    if (this.tail) this.tail.next = item;
    else this.head = item;
    this.tail = item;
    this.length++;
  }

  pushFront(item: T): void {
    item.list = this;
    item.prev = null;
    item.next = this.head;
    if (this.head) this.head.prev = item;
    else this.tail = item;
    this.head = item;
    this.length++;
  }

  /** Inserts `item` before `before`, or at the back when `before` is null. */
  insertBefore(item: T, before: T | null): void {
    if (!before) return this.pushBack(item);
    if (!before.prev) return this.pushFront(item);
    item.list = this;
    item.prev = before.prev;
    item.next = before;
    before.prev.next = item;
    before.prev = item;
    this.length++;
  }

  popFront(): T | null {
    const item = this.head;
    if (item) this.remove(item);
    return item;
  }

  remove(item: T): void {
    if (item.list !== this) return;
    if (item.prev) item.prev.next = item.next;
    else this.head = item.next;
    if (item.next) item.next.prev = item.prev;
    else this.tail = item.prev;
    item.prev = item.next = null;
    item.list = null;
    this.length--;
  }

  /** Moves a member to the back; used to rotate ready workers round-robin. */
  moveToBack(item: T): void {
    if (item.list !== this || this.tail === item) return;
    this.remove(item);
    this.pushBack(item);
  }
}

export interface Timed<T> extends Linked<T> {
  /** When the item is due, in the clock of the caller (ms). */
  deadline: number;
}

/**
 * Items waiting for a deadline, kept in one FIFO list per duration. Items added with the same duration fall
 * due in the order they were added, so each list is sorted by deadline without any sorting, and finding
 * what is due costs O(distinct durations + due items): no heap, and O(1) removal when an item settles first.
 */
class DurationList<T extends Linked<T>> extends LinkedList<T> {
  constructor(readonly duration: number) {
    super();
  }
}

export class Timeline<T extends Timed<T>> {
  // Durations come from peers (per-task timeouts), so an emptied list is dropped at once, not kept.
  private readonly lists = new Map<number, DurationList<T>>();
  size = 0;

  add(item: T, now: number, duration: number): void {
    let list = this.lists.get(duration);
    if (!list) {
      list = new DurationList<T>(duration);
      this.lists.set(duration, list);
    }
    item.deadline = now + duration;
    list.pushBack(item);
    this.size++;
  }

  remove(item: T): void {
    const list = item.list as DurationList<T> | null;
    if (!list) return;
    list.remove(item);
    this.size--;
    if (list.length === 0) this.lists.delete(list.duration);
  }

  /** Removes and returns the items due at `now`, earliest first within each duration (not across durations). */
  popDue(now: number): T[] {
    const due: T[] = [];
    for (const [duration, list] of this.lists) {
      while (list.head && list.head.deadline <= now) {
        due.push(list.popFront()!);
        this.size--;
      }
      if (list.length === 0) this.lists.delete(duration);
    }
    return due;
  }
}
