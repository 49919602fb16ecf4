// Writers beside background snapshot digests: P snapshots of a K-key subject taken in a row, then
// lone durable puts (one writer awaiting each) for a few seconds while their digests are computed.
// Prints how long the snapshots took, the puts' rate, the longest gap between two turns of the
// event loop while the puts ran, and how long after that `close` (which waits for every digest) took.
// With `keep`, only the newest `keep` snapshots are kept: each older one is deleted as the next
// is taken (a rotation), so its digest need not be computed.
// Run: npm run build && node dist/bench/snapshot-digests.js [snapshots] [keys] [seconds] [keep]   (default 100 200000 3, all kept)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Store } from '../src/index.js';
import { LoopProbe } from './lib/loop-probe.js';

const snapshots = Number(process.argv[2] ?? '100');
const keys = Number(process.argv[3] ?? '200000');
const seconds = Number(process.argv[4] ?? '3');
const keep = Number(process.argv[5] ?? String(snapshots));
if (!(Number.isInteger(snapshots) && snapshots > 0 && Number.isInteger(keys) && keys > 0 && seconds >= 0 && Number.isInteger(keep) && keep > 0)) {
  console.error('usage: node dist/bench/snapshot-digests.js [snapshots] [keys] [seconds] [keep]   (whole numbers of snapshots, keys and kept snapshots; seconds 0: no puts, only the digests)');
  process.exit(2);
}
const value = new Uint8Array(100).fill(7);
const BATCH = 10_000;

const dir = await mkdtemp(join(tmpdir(), 'statefs-snapshot-digests-'));
try {
  const store = await Store.create(join(dir, 'image'), { size: 1024 * 1024 * 1024 });
  for (let from = 0; from < keys; from += BATCH) {
    const batch: [string, Uint8Array][] = [];
    for (let i = from; i < Math.min(keys, from + BATCH); i++) batch.push([`/state/app${i % 100}/k${i}`, value]);
    await store.putMany('bench', batch);
  }
  const t0 = performance.now();
  for (let i = 0; i < snapshots; i++) {
    await store.put('bench', `/state/snap/k${i}`, value);
    await store.snapshot('bench', `s${i}`);
    if (i >= keep) await store.deleteSnap('bench', `s${i - keep}`);
  }
  const snapshotMs = performance.now() - t0;
  const probe = new LoopProbe();
  const t1 = performance.now();
  let puts = 0;
  while (performance.now() - t1 < seconds * 1000) await store.put('bench', `/state/w/k${puts++ % 5000}`, value);
  const putsPerSec = seconds === 0 ? 0 : puts / ((performance.now() - t1) / 1000);
  const held = probe.stop();
  const t2 = performance.now();
  await store.close();
  const closeMs = performance.now() - t2;
  console.log('| snapshots × keys (kept) | taking them (and deleting, with keep) | lone puts/s while digests run | longest loop gap during the puts | close after (digests done) |');
  console.log('|---|---:|---:|---:|---:|');
  console.log(`| ${snapshots} × ${keys} (${Math.min(keep, snapshots)}) | ${snapshotMs.toFixed(0)} ms | ${putsPerSec.toFixed(0)} | ${held.toFixed(1)} ms | ${closeMs.toFixed(0)} ms |`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
