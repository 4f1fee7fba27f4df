// Intrusive doubly linked lists (O(1) push, pop and removal of any member), and Rows, the FIFO of queued tasks
// as parallel arrays.
//
// Ready-worker slots and running tasks carry their own prev/next links, so listing them allocates nothing and a
// member is unlinked from the middle without a scan. (A ring buffer would cost less per entry but cannot remove
// from the middle.)

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

/**
 * The size of the memory `buf` keeps alive (its ArrayBuffer). The `buffer` getter costs about 30 ns, as much as
 * the copy of a short body, and the frames of one socket read share one buffer: so the last answer is kept.
 * (This holds a reference to one buffer at most, the last one asked about.)
 */
let sizedBuf: Buffer | null = null;
let sizedBytes = 0;
function allocationOf(buf: Buffer): number {
  if (buf !== sizedBuf) {
    sizedBuf = buf;
    sizedBytes = buf.buffer.byteLength;
  }
  return sizedBytes;
}

/**
 * A task object's body about to wait in a queue (requeued, or retried): a body that is a small part of a large
 * buffer, such as the socket read it arrived in, is copied out so that it does not keep the rest alive.
 */
export function detachBody(body: Buffer): Buffer {
  return body.length * 2 >= allocationOf(body) ? body : Buffer.from(body);
}

/**
 * Rows per block: the first block of a queue is small, later ones double up to the largest. 4 keeps the first
 * block's typed arrays within V8's 64 bytes kept on the heap, so a queue of one task costs no backing stores.
 */
const BLOCK_MIN = 4;
const BLOCK_MAX = 1024;

/**
 * Blocks up to this many rows keep their numbers in plain arrays: a typed array costs about 230 bytes however few
 * elements it has, and a queue of one task (a job type per task) paid 1.8 KB for its first block that way.
 */
const PLAIN_BLOCK_MAX = 16;

type Numbers = Float64Array | Uint32Array | number[];

/** A run of rows in parallel arrays; a queue is a chain of them, written at the tail and read at the head. */
class Block<O> {
  readonly seqs: Numbers;
  readonly requestIds: Numbers;
  readonly times: Numbers;
  readonly starts: Numbers;
  readonly lengths: Numbers;
  /** A row's body's buffer; null for a row removed from the middle (remove()), which the head skips. */
  readonly bodies: (Buffer | null)[];
  readonly options: (O | null)[];
  /** Next row to read, and next row to write. */
  read = 0;
  write = 0;
  next: Block<O> | null = null;

  constructor(readonly size: number) {
    const plain = size <= PLAIN_BLOCK_MAX;
    this.seqs = plain ? new Array<number>(size).fill(0) : new Float64Array(size);
    this.requestIds = plain ? new Array<number>(size).fill(0) : new Uint32Array(size);
    this.times = plain ? new Array<number>(size).fill(0) : new Float64Array(size);
    this.starts = plain ? new Array<number>(size).fill(0) : new Uint32Array(size);
    this.lengths = plain ? new Array<number>(size).fill(0) : new Uint32Array(size);
    this.bodies = new Array<Buffer | null>(size).fill(null);
    this.options = new Array<O | null>(size).fill(null);
  }

  /** The index of the live or removed row with this seq, or -1 (rows are in ascending seq order). */
  indexOf(seq: number): number {
    let lo = this.read;
    let hi = this.write - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const at = this.seqs[mid]!;
      if (at === seq) return mid;
      if (at < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }
}

/** Bodies up to this size are copied into the queue's arena when they are a small part of the buffer they came in. */
const ARENA_BODY_MAX = 1024;
/** The arena's slabs start this small (a queue may hold one task) and double up to the largest. */
const ARENA_MIN = 64;
const ARENA_MAX = 64 * 1024;

/**
 * A FIFO of queued tasks stored as rows of parallel arrays, not as objects: a queued task costs about 44 bytes
 * here where an object per task, with its Buffer view and index entry, cost about 300. Tasks become objects only
 * when dispatched, and the number in flight is bounded by the workers' credits.
 *
 * A row's body is kept as a buffer and a range of it, so no Buffer view per task survives (a view alone is ~100
 * bytes). Which buffer depends on what the body arrived in:
 *
 *   most of its buffer (a large frame, or one assembled on its own)  ->  that buffer, as it is
 *   a small part of a large read, up to 1 KiB                         ->  copied into the queue's arena
 *   a small part of a large read, over 1 KiB                          ->  copied into a buffer of its own
 *
 * A socket read is 64 KiB however few bytes it holds, and a row pointing into it kept it all alive: 10,000
 * 6-byte tasks read beside large ones held 630 MB. The arena is a run of slabs written in arrival order and
 * read in the same order, so a slab is dense with bodies still queued and is let go once they are all gone.
 *
 * The rows live in a chain of blocks (4 rows, doubling to 1,024), so the queue never copies a row to grow and
 * gives a block back as soon as it is read through: memory follows the queue's length down as it drains. A ring
 * that doubled and halved spent 0.4 us per task copying rows in a 200,000-task burst.
 */
export class Rows<O> {
  // No block until the first push.
  private head: Block<O> | null = null;
  private tail: Block<O> | null = null;
  /** Rows held (not counting those removed from the middle and not yet passed by the head). */
  size = 0;
  /** Rows the blocks held can take; exposed for tests of the memory policy. */
  capacity = 0;
  /** The arena slab being written, and its first free byte. */
  private arena: Buffer | null = null;
  private arenaUsed = 0;

  /** Appends a row (seqs ascending); its body is kept as the table above says. `time` is when it was queued. */
  push(seq: number, requestId: number, time: number, body: Buffer, options: O): void {
    const length = body.length;
    if (length * 2 >= allocationOf(body)) return this.place(seq, requestId, time, body, 0, length, options);
    if (length > ARENA_BODY_MAX) {
      const own = Buffer.allocUnsafe(length); // over 4 KiB... or the pool's, which holds no socket read
      body.copy(own, 0, 0, length);
      return this.place(seq, requestId, time, own, 0, length, options);
    }
    let arena = this.arena;
    if (arena === null || this.arenaUsed + length > arena.length) {
      arena = this.arena = Buffer.allocUnsafe(Math.min(ARENA_MAX, Math.max(length, arena ? arena.length * 2 : ARENA_MIN)));
      this.arenaUsed = 0;
    }
    const at = this.arenaUsed;
    // A loop for short bodies: buf.copy() is a C++ call that costs more than a few bytes' worth.
    if (length <= 64) for (let i = 0; i < length; i++) arena[at + i] = body[i]!;
    else body.copy(arena, at, 0, length);
    this.arenaUsed = at + length;
    this.place(seq, requestId, time, arena, at, length, options);
  }

  // The head row's fields; only valid while size > 0.
  get seq(): number {
    const b = this.head!;
    return b.seqs[b.read]!;
  }
  get requestId(): number {
    const b = this.head!;
    return b.requestIds[b.read]!;
  }
  get time(): number {
    const b = this.head!;
    return b.times[b.read]!;
  }
  get option(): O {
    const b = this.head!;
    return b.options[b.read]!;
  }
  /** The head row's body as a Buffer (a new view over the bytes it arrived in). */
  body(): Buffer {
    const b = this.head!;
    const start = b.starts[b.read]!;
    return b.bodies[b.read]!.subarray(start, start + b.lengths[b.read]!);
  }

  /** Drops the head row, and any removed rows behind it; a block read through is let go, or reused when last. */
  shift(): void {
    this.size--;
    this.advance();
    for (let b = this.head; b !== null && b.read < b.write && b.bodies[b.read] === null; b = this.head) this.advance();
  }

  private advance(): void {
    const b = this.head!;
    const i = b.read++;
    b.bodies[i] = null;
    b.options[i] = null;
    if (b.read < b.write) return;
    if (b.next) {
      this.head = b.next;
      this.capacity -= b.size;
    } else {
      b.read = b.write = 0;
    }
  }

  /**
   * Removes the row with this seq wherever it is, returning its body's length, or -1 if no live row has it. Found
   * by a walk over the blocks (a queue of a million rows has about a thousand) and a binary search in one. A row
   * in the middle is marked and skipped when the head reaches it; its body is let go at once.
   */
  remove(seq: number): number {
    for (let b = this.head; b; b = b.next) {
      if (b.write === b.read || seq > b.seqs[b.write - 1]!) continue;
      const i = b.indexOf(seq);
      if (i < 0 || b.bodies[i] === null) return -1;
      const length = b.lengths[i]!;
      if (b === this.head && i === b.read) {
        this.shift();
        return length;
      }
      b.options[i] = null;
      b.bodies[i] = null;
      this.size--;
      return length;
    }
    return -1;
  }

  /** The row with this seq, or null: its request id, queue time and body (a view), for status and removal. */
  find(seq: number): { requestId: number; time: number; body: Buffer; options: O } | null {
    for (let b = this.head; b; b = b.next) {
      if (b.write === b.read || seq > b.seqs[b.write - 1]!) continue;
      const i = b.indexOf(seq);
      if (i < 0 || b.bodies[i] === null) return null;
      const start = b.starts[i]!;
      return { requestId: b.requestIds[i]!, time: b.times[i]!, body: b.bodies[i]!.subarray(start, start + b.lengths[i]!), options: b.options[i]! };
    }
    return null;
  }

  /** Calls `each` with every live row, head first: request id, seq, queue time, then a function making its body. */
  forEach(each: (requestId: number, seq: number, time: number, body: () => Buffer) => void): void {
    for (let b = this.head; b; b = b.next) {
      for (let i = b.read; i < b.write; i++) {
        if (b.bodies[i] === null) continue;
        const block = b;
        each(b.requestIds[i]!, b.seqs[i]!, b.times[i]!, () => block.bodies[i]!.subarray(block.starts[i], block.starts[i]! + block.lengths[i]!));
      }
    }
  }

  private place(seq: number, requestId: number, time: number, body: Buffer, start: number, length: number, options: O): void {
    let b = this.tail;
    if (b === null || b.write === b.size) b = this.grow();
    const i = b.write++;
    b.seqs[i] = seq;
    b.requestIds[i] = requestId;
    b.times[i] = time;
    b.bodies[i] = body;
    b.starts[i] = start;
    b.lengths[i] = length;
    b.options[i] = options;
    this.size++;
  }

  private grow(): Block<O> {
    const block = new Block<O>(this.tail ? Math.min(this.tail.size * 2, BLOCK_MAX) : BLOCK_MIN);
    if (this.tail) this.tail.next = block;
    else this.head = block;
    this.tail = block;
    this.capacity += block.size;
    return block;
  }
}
