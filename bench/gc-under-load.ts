// Write throughput and worst write latency while automatic GC runs, next to the same workload
// with GC off (on an image big enough never to need it). Issue 5. `npm run bench` records the
// same runs in its table; this prints them alone.
// Run: npm run build && node dist/bench/gc-under-load.js   (STATEFS_BENCH_OPS to change the op count)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GC_IMAGE, describeGcLoad, gcLoadRun } from './lib/gc-load.js';

const ops = Number(process.env.STATEFS_BENCH_OPS ?? 60_000);
const MIB = 1024 * 1024;

const dir = await mkdtemp(join(tmpdir(), 'statefs-gc-bench-'));
try {
  console.log(describeGcLoad(ops));
  for (const [label, autoGc, file] of [
    ['GC off (1 GiB image)  ', false, 'off.img'],
    ['auto GC (16 MiB image)', true, 'on.img'],
    ['GC off (1 GiB image)  ', false, 'off2.img'],
  ] as const) {
    const r = await gcLoadRun(join(dir, file), ops, autoGc);
    console.log(
      `${label}: ${r.opsPerSec.toFixed(0)} durable puts/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, worst ${r.worst.toFixed(2)} ms, ` +
        `segments freed by GC ${r.gcCycles}, used ${(r.usedBytes / MIB).toFixed(1)} MiB of ${(autoGc ? GC_IMAGE.on : GC_IMAGE.off) / MIB} MiB`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
