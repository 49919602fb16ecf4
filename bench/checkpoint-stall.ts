// How long a checkpoint holds the event loop: its synchronous part (building and encoding the
// whole index, before its first await) and the whole checkpoint, at 1,000 and 1,000,000 keys.
// An automatic checkpoint runs that synchronous part inside the round that triggers it, so it is
// also the worst extra wait a put can meet once the store is large (docs/performance.md).
// Run: npm run build && node dist/bench/checkpoint-stall.js   (STATEFS_BENCH_KEYS=1000,1000000 to change)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Store } from '../src/index.js';

const sizes = (process.env.STATEFS_BENCH_KEYS ?? '1000,1000000').split(',').map(Number);
const BATCH = 10_000;
const dir = await mkdtemp(join(tmpdir(), 'statefs-bench-'));
try {
  for (const n of sizes) {
    const store = await Store.create(join(dir, `ckpt-${n}.img`), { size: Math.max(256, Math.ceil(n / 1024)) * 1024 * 1024 });
    const value = new Uint8Array(100).fill(7);
    for (let from = 0; from < n; from += BATCH) {
      const to = Math.min(n, from + BATCH);
      await store.putMany('bench', Array.from({ length: to - from }, (_, j): [string, Uint8Array] => [`/state/app${(from + j) % 100}/k${from + j}`, value]));
    }
    const held: number[] = [];
    const whole: number[] = [];
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      const done = store.checkpoint();
      held.push(performance.now() - t0);
      await done;
      whole.push(performance.now() - t0);
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[1] ?? Number.NaN;
    console.log(`${String(n).padStart(8)} keys: event loop held ${median(held).toFixed(1)} ms, whole checkpoint ${median(whole).toFixed(1)} ms (median of 3)`);
    await store.close();
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
