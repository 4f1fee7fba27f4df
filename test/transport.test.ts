// TcpConnection's way out: a turn of frames leaves in one write, in order with prebuilt and large frames, and
// close() puts its ERROR after everything written before it.

import t, { type Test } from 'tap';
import net from 'node:net';
import { once } from 'node:events';
import { TaskwireError } from '../lib/errors.js';
import { encode, encodeKeepalive, writeCompleted, writeError, writeTask } from '../lib/protocol/index.js';
import { TcpConnection } from '../lib/transport/tcp.js';
import { waitFor } from './helpers.js';

interface Pair {
  conn: TcpConnection;
  /** Every chunk the connection handed to its socket's write(). */
  writes: Buffer[];
  /** Every byte the other end has received so far. */
  received: () => Buffer;
  ended: Promise<unknown>;
  peer: net.Socket;
}

/** A TcpConnection on the accepting side of a loopback connection, and the raw socket at the other end. */
async function pair(t: Test): Promise<Pair> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const peer = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [socket] = (await once(server, 'connection')) as [net.Socket];
  t.teardown(() => {
    peer.destroy();
    socket.destroy();
    server.close();
  });
  const writes: Buffer[] = [];
  const write = socket.write.bind(socket) as (chunk: Buffer) => boolean;
  socket.write = ((chunk: Buffer) => {
    writes.push(chunk);
    return write(chunk);
  }) as typeof socket.write;
  const chunks: Buffer[] = [];
  peer.on('data', (chunk: Buffer) => chunks.push(chunk));
  return { conn: new TcpConnection(socket), writes, received: () => Buffer.concat(chunks), ended: once(peer, 'end'), peer };
}

t.test('the frames of one turn leave in one write, prebuilt frames in their place', async (t) => {
  const { conn, writes, received } = await pair(t);
  const expected: Buffer[] = [];
  for (let i = 0; i < 50; i++) {
    writeTask(conn.frames(), i, 1, 'sha256', `body ${i}`);
    expected.push(encode(writeTask, i, 1, 'sha256', `body ${i}`));
  }
  conn.send(encodeKeepalive());
  expected.push(encodeKeepalive());
  for (let i = 0; i < 10; i++) {
    writeCompleted(conn.frames(), i, 'done');
    expected.push(encode(writeCompleted, i, 'done'));
  }
  const all = Buffer.concat(expected);
  t.equal(conn.pendingBytes, all.length, 'pendingBytes counts what was written and not yet flushed');
  t.equal(writes.length, 0, 'nothing is written before the turn ends');
  await waitFor('every byte at the other end', () => received().length >= all.length);
  t.equal(writes.length, 1, 'one write for the whole turn');
  t.ok(received().equals(all), 'the bytes of every frame, in order');
});

/** Writes one turn of `count` COMPLETED frames with `size`-byte bodies; returns their bytes. */
function turn(conn: TcpConnection, first: number, count: number, size: number): Buffer[] {
  const frames: Buffer[] = [];
  for (let id = first; id < first + count; id++) {
    const body = Buffer.alloc(size, id % 251);
    writeCompleted(conn.frames(), id, body);
    frames.push(encode(writeCompleted, id, body));
  }
  return frames;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('a slab is written from its start again once the socket has taken every byte, and only then', async (t) => {
  const { conn, writes, received, peer } = await pair(t);
  const expected: Buffer[] = [];
  expected.push(...turn(conn, 0, 20, 50));
  await nextTurn();
  expected.push(...turn(conn, 20, 20, 50));
  await nextTurn();
  t.equal(writes.length, 2, 'one write per turn');
  t.equal(writes[1]!.buffer, writes[0]!.buffer, 'both turns in one slab');
  t.equal(writes[1]!.byteOffset, writes[0]!.byteOffset, 'the second written over the first, which the kernel had');
  await waitFor('two turns at the other end', () => received().length >= Buffer.concat(expected).length);
  t.ok(received().equals(Buffer.concat(expected)), 'both arrived intact');

  // A reader that stops: writes stay queued in the socket, and their bytes must not be written over.
  peer.pause();
  let id = 40;
  let stalledTurns = 0;
  while (stalledTurns < 5) {
    expected.push(...turn(conn, id, 100, 200));
    id += 100;
    await nextTurn();
    if (conn.pendingBytes > 0) stalledTurns++;
  }
  const last = writes.at(-1)!;
  const before = writes.at(-2)!;
  t.ok(last.buffer !== before.buffer || last.byteOffset >= before.byteOffset + before.length, 'queued bytes were not reused');
  peer.resume();
  const all = Buffer.concat(expected);
  await waitFor('every byte at the other end', () => received().length >= all.length);
  t.ok(received().equals(all), `${all.length} bytes in ${writes.length} writes, all intact`);
});

t.test('a large prebuilt frame is written as it is, after what was pending and before what follows', async (t) => {
  const { conn, writes, received } = await pair(t);
  const before = encode(writeTask, 1, 1, 'big', 'x');
  const big = encode(writeCompleted, 1, Buffer.alloc(100_000, 0x61));
  const after = encode(writeCompleted, 2, 'y');
  writeTask(conn.frames(), 1, 1, 'big', 'x');
  conn.send(big);
  writeCompleted(conn.frames(), 2, 'y');
  const all = Buffer.concat([before, big, after]);
  await waitFor('every byte at the other end', () => received().length >= all.length);
  t.equal(writes.length, 3, 'three writes: the pending frame, the large one, the rest of the turn');
  t.equal(writes[1], big, 'the large frame itself, not a copy');
  t.ok(received().equals(all), 'in order');
});

t.test('close(error): the ERROR follows every frame written before it; frames written after are dropped', async (t) => {
  const { conn, received, ended } = await pair(t);
  writeTask(conn.frames(), 1, 1, 'sha256', 'a');
  writeCompleted(conn.frames(), 2, 'b');
  conn.close(new TaskwireError('E_TEST', 'closing'));
  const sink = conn.frames();
  writeTask(sink, 3, 1, 'sha256', 'written after close');
  conn.send(encodeKeepalive());
  await ended;
  const expected = Buffer.concat([
    encode(writeTask, 1, 1, 'sha256', 'a'),
    encode(writeCompleted, 2, 'b'),
    encode(writeError, 'E_TEST', 'closing'),
  ]);
  t.ok(received().equals(expected), 'the frames, then the ERROR, then the end of the stream');
  t.equal(conn.frames().length, 0, 'the writer of a closed connection holds nothing');
});
