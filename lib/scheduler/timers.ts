// Deadlines: running tasks' timeouts and retry delays, and later any per-job delay a client asks for.

import { LinkedList, type Linked } from './queue.js';

export interface Timed<T> extends Linked<T> {
  /** When the item is due, in the clock of the caller (ms). */
  deadline: number;
}

/** Each bucket covers this many ms of deadlines; a power of two so the bucket number is a shift away. */
const BUCKET_MS = 256;
/** Buckets in the ring: with BUCKET_MS, the ring spans about 17 minutes. */
const BUCKETS = 4096;
const MASK = BUCKETS - 1;

const bucketOf = (ms: number): number => Math.floor(ms / BUCKET_MS);

/**
 * Items waiting for a deadline, in a hashed timer wheel: a ring of buckets, each an intrusive list of the items
 * whose deadlines fall in its BUCKET_MS (modulo the ring). Adding and removing cost O(1) however many distinct
 * durations there are, which matters once durations come from clients (timeouts, backoffs, delays).
 *
 * popDue(now) visits the buckets the clock passed since the last call, and the one `now` is in, and takes from
 * them only the items whose deadline has come: nothing fires early, and the precision does not depend on
 * BUCKET_MS. Items whose deadline is a whole ring or more away share a bucket with nearer ones and are passed
 * over once per turn of the ring (a 1-hour delay is looked at 3 times before it fires). The items of the bucket
 * `now` is in are looked at again by each call until they fall due, a few times at a 100 ms tick.
 */
export class TimerWheel<T extends Timed<T>> {
  private readonly buckets: LinkedList<T>[] = Array.from({ length: BUCKETS }, () => new LinkedList<T>());
  /** The bucket number (not wrapped) where the next popDue() starts; -1 while the wheel is empty. */
  private cursor = -1;
  size = 0;
  /** Items looked at by popDue() so far, due or not: what a test reads to see the cost of a tick. */
  scanned = 0;

  add(item: T, now: number, duration: number): void {
    item.deadline = now + duration;
    if (this.cursor < 0) this.cursor = bucketOf(now);
    // `&` wraps the bucket number to 32 bits first, which keeps its low bits: the index is right at any clock.
    this.buckets[bucketOf(item.deadline) & MASK]!.pushBack(item);
    this.size++;
  }

  remove(item: T): void {
    const list = item.list;
    if (!list) return;
    list.remove(item);
    this.size--;
  }

  /** Forgets every item. */
  clear(): void {
    for (const bucket of this.buckets) while (bucket.head !== null) bucket.remove(bucket.head);
    this.size = 0;
    this.cursor = -1;
  }

  /** Removes and returns the items due at `now` (deadline at most `now`), in no particular order. */
  popDue(now: number): T[] {
    const due: T[] = [];
    if (this.size === 0) {
      this.cursor = -1;
      return due;
    }
    const last = bucketOf(now);
    // After a pause of a whole ring or more, each bucket is visited once.
    for (let b = Math.max(this.cursor, last - MASK); b <= last; b++) {
      const bucket = this.buckets[b & MASK]!;
      for (let item = bucket.head; item !== null; ) {
        const next = item.next;
        this.scanned++;
        if (item.deadline <= now) {
          bucket.remove(item);
          due.push(item);
        }
        item = next;
      }
    }
    this.size -= due.length;
    if (last > this.cursor) this.cursor = last;
    return due;
  }
}
