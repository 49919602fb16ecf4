// fsck throughput on images full of small records (issue 6): time should grow with the image.
// Run: npm run build && node dist/bench/fsck-throughput.js   (STATEFS_BENCH_MIB=64,256,1024 to change)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Store, fsck } from '../src/index.js';

const sizes = (process.env.STATEFS_BENCH_MIB ?? '32,128').split(',').map(Number);
const dir = await mkdtemp(join(tmpdir(), 'statefs-fsck-bench-'));
try {
  for (const mib of sizes) {
    const path = join(dir, `fsck-${mib}.img`);
    const store = await Store.create(path, { size: mib * 1024 * 1024 });
    const value = new Uint8Array(100).fill(3);
    // Fill about 40% of the image with 100-byte values (small records), 4,000 writes per flush;
    // the rest is the reserve a checkpoint of that many keys needs, and free space.
    const records = Math.floor((mib * 1024 * 1024 * 0.4) / 140);
    for (let i = 0; i < records; i += 4000) {
      const batch: Promise<void>[] = [];
      for (let j = i; j < Math.min(records, i + 4000); j++) batch.push(store.put('bench', `/state/app${j % 64}/k${j}`, value));
      await Promise.all(batch);
    }
    await store.close();
    const t0 = performance.now();
    const report = await fsck(path);
    const seconds = (performance.now() - t0) / 1000;
    console.log(
      `fsck of a ${mib} MiB image (${records} live records): ${seconds.toFixed(2)} s, ${(mib / seconds).toFixed(1)} MiB/s of image, ` +
        `exit ${report.exitCode}, ${report.checked.records} records replayed, ${report.checked.values} values checked`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
