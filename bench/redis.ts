// Redis for the BullMQ peer: installed from Debian's packages when missing, run on a free loopback port with
// persistence off, and killed with the other children at the end.

import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, spawnTracked } from './procs.js';

function installed(): boolean {
  return spawnSync('sh', ['-c', 'command -v redis-server'], { stdio: 'ignore' }).status === 0;
}

function install(): string | null {
  process.stderr.write('bench: redis-server not found; apt-get install -y redis-server...\n');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'redis-server']]) {
    const run = spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env });
    if (run.status !== 0) return `apt-get ${args.join(' ')} failed (${run.error?.message ?? `exit ${run.status}`})`;
  }
  return installed() ? null : 'redis-server still missing after apt-get install';
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

export interface Redis {
  port: number;
  stop(): Promise<void>;
}

/** Starts a private redis-server; returns it, or why BullMQ has to be skipped. */
export async function startRedis(): Promise<Redis | { skip: string }> {
  if (!installed()) {
    const failure = install();
    if (failure) return { skip: failure };
  }
  const port = await freePort();
  const proc = spawnTracked('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  for (let i = 0; i < 100; i++) {
    if (proc.exitCode !== null) break;
    if (await accepts(port)) {
      const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      return { port, stop: () => (proc.kill('SIGTERM'), exited) };
    }
    await sleep(100);
  }
  proc.kill('SIGKILL');
  return { skip: `redis-server did not start on port ${port}` };
}
