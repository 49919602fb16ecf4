// How long single operations hold the event loop on a large store: a service (or statefsd) serves
// every other request between turns, so the longest gap between two turns is what its slowest
// request may wait behind one of these. Reads and writes arrive one per turn, as requests from
// sockets do. The longest V8 GC pause in each step is printed beside it (no operation's doing).
// Run: npm run build && node dist/bench/loop-holds.js   (STATEFS_BENCH_KEYS=1000000 to change)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Store } from '../src/index.js';
import { randomIndexes } from './lib/keys.js';
import { LoopProbe } from './lib/loop-probe.js';

const keys = Number(process.env.STATEFS_BENCH_KEYS ?? '1000000');
const BATCH = 10_000;
const SUBJECT = 'bench';
const keyOf = (i: number): string => `/state/app${i % 100}/k${i}`;
const value = new Uint8Array(100).fill(7);

/** Run `count` calls of `op`, one per turn of the event loop, all awaited at the end. */
async function oneEachTurn(count: number, op: (i: number) => Promise<unknown>): Promise<void> {
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < count; i++) {
    pending.push(op(i));
    await new Promise((resolve) => setImmediate(resolve));
  }
  await Promise.all(pending);
}

async function step(name: string, run: () => Promise<unknown>): Promise<void> {
  const probe = new LoopProbe();
  const t0 = performance.now();
  await run();
  const took = performance.now() - t0;
  // One more turn, so the probe sees the gap an operation that ended within one turn made.
  await new Promise((resolve) => setImmediate(resolve));
  const held = probe.stop();
  console.log(`| ${name} | ${took.toFixed(0)} ms | ${held.toFixed(1)} ms | ${probe.longestGcPause.toFixed(1)} ms |`);
}

const dir = await mkdtemp(join(tmpdir(), 'statefs-bench-'));
try {
  const store = await Store.create(join(dir, 'holds.img'), { size: Math.max(256, Math.ceil(keys / 512)) * 1024 * 1024 });
  const load = async (from: number, to: number, tag: string): Promise<void> => {
    for (let at = from; at < to; at += BATCH) {
      const end = Math.min(to, at + BATCH);
      await store.putMany(SUBJECT, Array.from({ length: end - at }, (_, j): [string, Uint8Array | string] => [keyOf(at + j), tag === '' ? value : `${tag}${at + j}`]));
    }
  };
  await load(0, keys, '');
  await store.snapshot(SUBJECT, 'before');
  await load(0, Math.floor(keys / 4), 'again-'); // garbage for GC, values only the snapshot holds
  await store.checkpoint();
  await store.close();
  const path = join(dir, 'holds.img');
  const t0 = performance.now();
  const s = await Store.open(path);
  console.log(`${keys} keys, a snapshot, a quarter of them rewritten; opened in ${(performance.now() - t0).toFixed(0)} ms\n`);
  console.log('| step | took | event loop held at most | longest V8 GC pause |');
  console.log('|---|---|---|---|');
  const next = randomIndexes(keys, 3);
  await step('40,000 gets, one per turn (the index of point reads starts at the 4,096th)', () => oneEachTurn(40_000, () => s.get(SUBJECT, keyOf(next()))));
  await step('8,000 puts of new keys, one per turn (directory counts start at the ~2,048th)', () => oneEachTurn(8_000, (i) => s.put(SUBJECT, `/state/app${i % 100}/new${i}`, value)));
  await step('stat', () => s.stat());
  await step('listSnaps with details', () => s.listSnaps(SUBJECT, { details: true }));
  await step('gcPlan', () => s.gcPlan());
  await step('gcNow', () => s.gcNow());
  await step('snapshot', () => s.snapshot(SUBJECT, 'after'));
  await step('restoreSnap', () => s.restoreSnap(SUBJECT, 'before'));
  await step('deleteSnap', () => s.deleteSnap(SUBJECT, 'after'));
  await step('checkpoint', () => s.checkpoint());
  await step('close', () => s.close());
} finally {
  await rm(dir, { recursive: true, force: true });
}
