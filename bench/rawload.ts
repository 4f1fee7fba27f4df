// Client connections built from raw frames (bench/raw.ts), for what the library client cannot be made to do: a
// watcher that only records when the scheduler's keepalives arrive (S1), and a client that puts a small task and
// large ones into the same write (W4 mixed). Usage: rawload.ts <port>

import { createHash, randomBytes } from 'node:crypto';
import { Cmd, Role, decodeCompleted, encode, writeSubmit } from '../lib/protocol/index.js';
import { numArg, serve } from './child.js';
import { RawPeer } from './raw.js';

const port = numArg(0, 9001);

// ---- S1: the keepalive watcher -------------------------------------------------------------------------------

/** Wall-clock arrival times of the scheduler's keepalives on the watcher connection, from its start. */
const arrivals: number[] = [];

async function watch(): Promise<boolean> {
  const watcher = await RawPeer.open(port, Role.CLIENT, 'watcher');
  arrivals.push(Date.now());
  watcher.onFrame = (cmd, _buf, start, end) => void (cmd === Cmd.HELLO && end === start && arrivals.push(Date.now()));
  return true;
}

/**
 * The longest gap between consecutive keepalives that overlaps [from, to] (wall-clock ms), counting the gap still
 * open now: a stall shows even if no keepalive has come after it yet. Also how many keepalives came in all.
 */
function maxGap({ from, to }: { from: number; to: number }): { maxGapMs: number; keepalives: number } {
  const times = [...arrivals, Date.now()];
  let maxGapMs = 0;
  for (let i = 1; i < times.length; i++) {
    if (times[i]! >= from && times[i - 1]! <= to) maxGapMs = Math.max(maxGapMs, times[i]! - times[i - 1]!);
  }
  return { maxGapMs, keepalives: arrivals.length - 1 };
}

// ---- W4 mixed: small bodies read together with large ones ----------------------------------------------------

interface Mixed {
  /** Small tasks to queue, one per write, each between two large ones. */
  n: number;
  /** Large tasks sent alone first, so buffers sized by large traffic are in the baseline rather than the figure. */
  warmup: number;
  smallType: string;
  smallBytes: number;
  largeBytes: number;
  /** Writes whose large tasks may be unanswered at once: keeps the client under its pending-bytes limit. */
  window: number;
}

const LARGE = 8; // distinct large bodies, so their expected digests are computed once
let client: RawPeer | null = null;

/**
 * Phase `warmup`: the large tasks alone. Phase `mixed`: writes of [large][small][large], as one buffer and one
 * write, so each small SUBMIT is read in the same socket read as large ones. Resolves once every large task has
 * come back, with the count of wrong results; the small ones stay queued (no worker runs their type).
 */
async function mixed(spec: Mixed & { phase: 'warmup' | 'mixed' }): Promise<{ bad: number; large: number }> {
  client ??= await RawPeer.open(port, Role.CLIENT, 'mixed');
  const bodies = Array.from({ length: LARGE }, () => randomBytes(spec.largeBytes));
  const digests = bodies.map((b) => createHash('sha256').update(b).digest('hex'));
  // Each SUBMIT is a template whose request id, right after the 5-byte header, is patched in the write's buffer.
  const templates = bodies.map((body) => encode(writeSubmit, 0, 'sha256', body));
  const small = encode(writeSubmit, 0, spec.smallType, Buffer.alloc(spec.smallBytes, 's'));
  const write = spec.phase === 'warmup' ? (['large'] as const) : (['large', 'small', 'large'] as const);
  const writeBytes = write.reduce((sum, kind) => sum + (kind === 'small' ? small : templates[0]!).length, 0);
  /** Request id -> index of its large body; small tasks get ids of their own range and are never answered. */
  const expected = new Map<number, number>();
  let next = spec.phase === 'warmup' ? 0 : 0x4000_0000;
  let bad = 0;
  let answered = 0;
  let freed: (() => void) | null = null;
  client.onFrame = (cmd, buf, start, end) => {
    if (cmd !== Cmd.COMPLETED && cmd !== Cmd.FAILED) return;
    const reply = decodeCompleted(buf, start, end); // FAILED begins with the request id too
    const which = expected.get(reply.requestId);
    if (which === undefined) return;
    expected.delete(reply.requestId);
    if (cmd !== Cmd.COMPLETED || buf.toString('latin1', reply.bodyStart, reply.bodyEnd) !== digests[which]) bad++;
    answered++;
    freed?.();
  };
  const writes = spec.phase === 'warmup' ? spec.warmup : spec.n;
  const largePerWrite = write.filter((kind) => kind === 'large').length;
  for (let i = 0; i < writes; i++) {
    const out = Buffer.allocUnsafe(writeBytes);
    let at = 0;
    for (const kind of write) {
      const id = kind === 'small' ? 0x8000_0000 + i : next++;
      const frame = kind === 'small' ? small : templates[id % LARGE]!;
      if (kind === 'large') expected.set(id, id % LARGE);
      frame.copy(out, at);
      out.writeUInt32BE(id, at + 5);
      at += frame.length;
    }
    await client.send(out);
    while (expected.size > spec.window * largePerWrite) await new Promise<void>((resolve) => (freed = resolve));
  }
  while (expected.size > 0) await new Promise<void>((resolve) => (freed = resolve));
  return { bad, large: answered };
}

serve({ watch, maxGap, mixed }, {});
