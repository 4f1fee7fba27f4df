// A shared allowance of bytes for payloads that straddle socket reads (see FrameBudget in lib/protocol/frame.ts).
//
// Each connection's decoder asks for a frame's whole length when it starts assembling it. Granting whole frames
// means a connection that got its bytes can always finish, so connections waiting for bytes never deadlock
// against each other; a waiting connection stops reading, and TCP pushes back on its sender.

import type { FrameBudget } from '../protocol/frame.js';

export class ByteBudget implements FrameBudget {
  /** Bytes granted and not yet given back. */
  used = 0;
  private readonly waiters: (() => void)[] = [];
  private waking = false;

  /**
   * @param limit bytes granted at most at once; a single frame above it is granted only when nothing else is
   *   held, so no frame waits forever
   * @param threshold frames shorter than this do not ask (their cost is bounded by one socket read each)
   */
  constructor(
    readonly limit: number,
    readonly threshold: number,
  ) {}

  reserve(bytes: number): boolean {
    if (this.used > 0 && this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used -= bytes;
    if (this.waiters.length > 0 && !this.waking) {
      // Waiters try again on the next turn, not inside the release: that happens while another connection is
      // handling a frame, and its decoder must not be re-entered from there.
      this.waking = true;
      setImmediate(() => this.wake());
    }
  }

  /** Calls `waiter` once some bytes have been given back, in order of waiting. */
  wait(waiter: () => void): void {
    this.waiters.push(waiter);
  }

  /** Forgets a waiter (its connection closed). */
  cancel(waiter: () => void): void {
    const i = this.waiters.indexOf(waiter);
    if (i >= 0) this.waiters.splice(i, 1);
  }

  /** Waiters in line. */
  get waiting(): number {
    return this.waiters.length;
  }

  private wake(): void {
    this.waking = false;
    // Each waiter retries; one that is refused again waits again, behind those still in line.
    const line = this.waiters.splice(0);
    for (const waiter of line) waiter();
  }
}
