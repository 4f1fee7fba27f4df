// Bytes in and out of a listener's sockets, for metrics. Node already counts every socket's bytes (bytesRead,
// bytesWritten), so nothing is added to the read and write paths: open sockets are summed at scrape time, and a
// socket's totals are folded in once when it closes.

import type { Socket } from 'node:net';

export class SocketTraffic {
  private readonly open = new Set<Socket>();
  private closedReceived = 0;
  private closedSent = 0;

  /** Follows a socket until it closes; once per connection. */
  track(socket: Socket): void {
    this.open.add(socket);
    socket.once('close', () => {
      this.closedReceived += socket.bytesRead;
      this.closedSent += socket.bytesWritten ?? 0;
      this.open.delete(socket);
    });
  }

  /** Bytes received and sent so far, by every socket followed. O(open sockets). */
  totals(): { received: number; sent: number } {
    let received = this.closedReceived;
    let sent = this.closedSent;
    for (const socket of this.open) {
      received += socket.bytesRead;
      sent += socket.bytesWritten ?? 0;
    }
    return { received, sent };
  }
}
