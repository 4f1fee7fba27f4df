// Loads BullMQ for the --peers rows from bench/results/peers/, where the runner installs it on demand.
// It is not a devDependency: its optional native add-on (msgpackr-extract) leaves per-platform entries out of
// the lockfile on this npm, and `npm ci` then refuses the lockfile, so every install would pay for a peer that
// only `--peers` uses.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// This file runs from bench/bullmq/ under tsx and from bench/results/build/bench/bullmq/ once compiled.
const here = fileURLToPath(import.meta.url);
const built = `${path.sep}bench${path.sep}results${path.sep}build${path.sep}`;
const root = here.includes(built) ? here.slice(0, here.indexOf(built)) : path.resolve(path.dirname(here), '..', '..');

/** The directory the peer packages are installed into (git-ignored with the rest of bench/results). */
export const PEERS_DIR = path.join(root, 'bench', 'results', 'peers');

const PACKAGES = ['bullmq@6', 'ioredis@6'];

/** Installs bullmq and ioredis into PEERS_DIR unless they are there; returns why not, or null. */
export function installBullmq(): string | null {
  if (existsSync(path.join(PEERS_DIR, 'node_modules', 'bullmq', 'package.json'))) return null;
  mkdirSync(PEERS_DIR, { recursive: true });
  process.stderr.write(`bench: installing ${PACKAGES.join(' ')} into ${PEERS_DIR}\n`);
  const r = spawnSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--prefix', PEERS_DIR, ...PACKAGES], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return r.status === 0 ? null : `npm install ${PACKAGES.join(' ')} failed (exit ${r.status})`;
}

// The few BullMQ shapes the benchmark uses, typed here so the project type-checks without the package.
export interface Job {
  data: { input: string };
  waitUntilFinished(events: QueueEvents): Promise<unknown>;
}
export interface Queue {
  waitUntilReady(): Promise<unknown>;
  add(name: string, data: { input: string }): Promise<Job>;
  addBulk(jobs: { name: string; data: { input: string }; opts: { jobId: string } }[]): Promise<unknown>;
  close(): Promise<void>;
}
export interface QueueEvents {
  waitUntilReady(): Promise<unknown>;
  on(event: string, listener: (arg: never) => void): QueueEvents;
  off(event: string, listener: (arg: never) => void): QueueEvents;
  close(): Promise<void>;
}
export interface BullmqModule {
  Queue: new (name: string, options: object) => Queue;
  QueueEvents: new (name: string, options: object) => QueueEvents;
  Worker: new (name: string, processor: (job: Job) => Promise<string>, options: object) => { waitUntilReady(): Promise<unknown> };
}

export async function loadBullmq(): Promise<BullmqModule> {
  const require = createRequire(path.join(PEERS_DIR, 'package.json'));
  return (await import(pathToFileURL(require.resolve('bullmq')).href)) as BullmqModule;
}
