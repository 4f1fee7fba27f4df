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

const MIN_ROWS = 16;

/**
 * A FIFO of queued tasks stored as rows of parallel arrays (a ring buffer), not as objects: a queued task costs
 * about 44 bytes here where an object per task, with its Buffer view and index entry, cost about 300. Tasks
 * become objects only when dispatched, and the number in flight is bounded by the workers' credits.
 *
 * A row's body is kept as its ArrayBuffer and a range, so no Buffer view per task survives (a view alone is
 * ~100 bytes); the ArrayBuffer is the socket read it arrived in, shared with the frames around it.
 * The capacity doubles when full and drops to a quarter when a sixteenth full, so memory returns after a burst
 * drains.
 */
export class Rows<L, O> {
  // Allocated on the first push: a queue exists for every job type a worker announces, used or not.
  private seqs = new Float64Array(0);
  private requestIds = new Uint32Array(0);
  private starts = new Uint32Array(0);
  private lengths = new Uint32Array(0);
  private lanes: (L | null)[] = [];
  private bodies: (ArrayBufferLike | null)[] = [];
  private options: (O | null)[] = [];
  private head = 0;
  /** Rows held. */
  size = 0;

  /** Rows that fit before the arrays grow; exposed for tests of the memory policy. */
  get capacity(): number {
    return this.seqs.length;
  }

  push(seq: number, requestId: number, lane: L, body: Buffer, options: O): void {
    if (this.size === this.seqs.length) this.resize(Math.max(MIN_ROWS, this.size * 2));
    const i = (this.head + this.size) & (this.seqs.length - 1);
    this.seqs[i] = seq;
    this.requestIds[i] = requestId;
    this.lanes[i] = lane;
    this.bodies[i] = body.buffer;
    this.starts[i] = body.byteOffset;
    this.lengths[i] = body.length;
    this.options[i] = options;
    this.size++;
  }

  // The head row's fields; only valid while size > 0.
  get seq(): number {
    return this.seqs[this.head]!;
  }
  get requestId(): number {
    return this.requestIds[this.head]!;
  }
  get lane(): L {
    return this.lanes[this.head]!;
  }
  get option(): O {
    return this.options[this.head]!;
  }
  /** The head row's body as a Buffer (a new view over the bytes it arrived in). */
  body(): Buffer {
    return Buffer.from(this.bodies[this.head]!, this.starts[this.head], this.lengths[this.head]);
  }

  /** Drops the head row. */
  shift(): void {
    const i = this.head;
    this.lanes[i] = null;
    this.bodies[i] = null;
    this.options[i] = null;
    this.head = (i + 1) & (this.seqs.length - 1);
    this.size--;
    // Shrinking at a sixteenth, to a quarter, leaves room to grow fourfold before the next resize: a queue that
    // swings between a few hundred and a thousand tasks (W3) resized itself on every swing at halving thresholds.
    if (this.size < this.seqs.length >> 4 && this.seqs.length > MIN_ROWS) this.resize(Math.max(MIN_ROWS, this.seqs.length >> 2));
  }

  /** Calls `each` with every row, head first: lane, request id, seq, then a function making its body. */
  forEach(each: (lane: L, requestId: number, seq: number, body: () => Buffer) => void): void {
    const mask = this.seqs.length - 1;
    for (let n = 0; n < this.size; n++) {
      const i = (this.head + n) & mask;
      each(this.lanes[i]!, this.requestIds[i]!, this.seqs[i]!, () => Buffer.from(this.bodies[i]!, this.starts[i], this.lengths[i]));
    }
  }

  /** Keeps only the rows whose lane passes `keep`, in order. */
  filter(keep: (lane: L) => boolean): void {
    if (this.size === 0) return;
    const mask = this.seqs.length - 1;
    let kept = 0;
    for (let n = 0; n < this.size; n++) {
      const from = (this.head + n) & mask;
      if (!keep(this.lanes[from]!)) continue;
      const to = (this.head + kept++) & mask;
      this.seqs[to] = this.seqs[from]!;
      this.requestIds[to] = this.requestIds[from]!;
      this.starts[to] = this.starts[from]!;
      this.lengths[to] = this.lengths[from]!;
      this.lanes[to] = this.lanes[from]!;
      this.bodies[to] = this.bodies[from]!;
      this.options[to] = this.options[from]!;
    }
    for (let n = kept; n < this.size; n++) {
      const i = (this.head + n) & mask;
      this.lanes[i] = null;
      this.bodies[i] = null;
      this.options[i] = null;
    }
    this.size = kept;
    let capacity = this.seqs.length;
    while (capacity > MIN_ROWS && kept < capacity >> 2) capacity >>= 1;
    if (capacity !== this.seqs.length) this.resize(capacity);
  }

  /** Moves the rows, in order, into arrays of `capacity` (a power of two), starting at 0. */
  private resize(capacity: number): void {
    const mask = this.seqs.length - 1;
    const seqs = new Float64Array(capacity);
    const requestIds = new Uint32Array(capacity);
    const starts = new Uint32Array(capacity);
    const lengths = new Uint32Array(capacity);
    const lanes = new Array<L | null>(capacity).fill(null);
    const bodies = new Array<ArrayBufferLike | null>(capacity).fill(null);
    const options = new Array<O | null>(capacity).fill(null);
    for (let n = 0; n < this.size; n++) {
      const i = (this.head + n) & mask;
      seqs[n] = this.seqs[i]!;
      requestIds[n] = this.requestIds[i]!;
      starts[n] = this.starts[i]!;
      lengths[n] = this.lengths[i]!;
      lanes[n] = this.lanes[i]!;
      bodies[n] = this.bodies[i]!;
      options[n] = this.options[i]!;
    }
    this.seqs = seqs;
    this.requestIds = requestIds;
    this.starts = starts;
    this.lengths = lengths;
    this.lanes = lanes;
    this.bodies = bodies;
    this.options = options;
    this.head = 0;
  }
}

