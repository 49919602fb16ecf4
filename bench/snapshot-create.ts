// Snapshot creation time at 1,000 and 1,000,000 keys (issue 4: flat, O(1) in the number of keys).
// Run: npm run build && node dist/bench/snapshot-create.js   (STATEFS_BENCH_KEYS=1000,1000000 to change)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Store } from '../src/index.js';

const sizes = (process.env.STATEFS_BENCH_KEYS ?? '1000,1000000').split(',').map(Number);
const dir = await mkdtemp(join(tmpdir(), 'statefs-bench-'));
try {
  for (const n of sizes) {
    const store = await Store.create(join(dir, `snap-${n}.img`), { size: 512 * 1024 * 1024 });
    const value = new Uint8Array(100).fill(7);
    for (let i = 0; i < n; i += 2000) {
      const batch: Promise<void>[] = [];
      for (let j = i; j < Math.min(n, i + 2000); j++) batch.push(store.put('bench', `/state/app${j % 100}/k${j}`, value));
      await Promise.all(batch);
    }
    const times: number[] = [];
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      await store.snapshot('bench', `s${r}`);
      times.push(performance.now() - t0);
      // Let the previous snapshot's background digest finish so runs do not share the CPU.
      while ((await store.listSnaps('bench', { details: true })).some((s) => s.digest === undefined)) {
        await new Promise((resolve) => setTimeout(resolve, 500)); // details are O(keys): poll slowly
      }
    }
    times.sort((a, b) => a - b);
    console.log(`snapshot of ${n} keys: median ${(times[2] ?? 0).toFixed(3)} ms (min ${(times[0] ?? 0).toFixed(3)}, max ${(times[4] ?? 0).toFixed(3)}), durable (includes one fdatasync; digest computed in the background afterwards)`);
    await store.close();
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
