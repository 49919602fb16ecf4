// Write throughput and worst write latency while automatic GC runs, next to the same workload
// with GC off (on an image big enough never to need it). Issue 5.
// Run: npm run build && node dist/bench/gc-under-load.js   (STATEFS_BENCH_OPS to change the op count)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Store } from '../src/index.js';

const ops = Number(process.env.STATEFS_BENCH_OPS ?? 60_000);
const keys = 8000; // ~8 MiB live: half of the small image, so GC has partly-live segments to empty
const concurrency = 64;
const value = new Uint8Array(1000).fill(1);

async function run(label: string, path: string, size: number, autoGc: boolean): Promise<void> {
  const store = await Store.create(path, { size, autoGc });
  const latencies: number[] = [];
  let gcCycles = 0;
  store.on('marker', (line: string) => {
    if (line.startsWith('statefs: compact progress')) gcCycles++;
  });
  const t0 = performance.now();
  let next = 0;
  let seed = 12345;
  const randomKey = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; // fixed-seed LCG: the same keys every run
    return seed % keys;
  };
  const worker = async (): Promise<void> => {
    while (next < ops) {
      next++;
      const k = randomKey();
      const s = performance.now();
      await store.put('bench', `/state/k${k}`, value);
      latencies.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const st = await store.stat();
  console.log(
    `${label}: ${(ops / seconds).toFixed(0)} durable puts/s, p50 ${(latencies[Math.floor(latencies.length / 2)] ?? 0).toFixed(2)} ms, ` +
      `p99 ${(latencies[Math.floor(latencies.length * 0.99)] ?? 0).toFixed(2)} ms, worst ${(latencies.at(-1) ?? 0).toFixed(2)} ms, ` +
      `segments freed by GC ${gcCycles}, used ${(st.usedBytes / 1048576).toFixed(1)} MiB of ${size / 1048576} MiB`,
  );
  await store.close();
}

const dir = await mkdtemp(join(tmpdir(), 'statefs-gc-bench-'));
try {
  console.log(`${ops} puts of 1,000 bytes over ${keys} random keys, ${concurrency} in flight (${((ops * 1040) / 1048576).toFixed(0)} MiB written)`);
  await run('GC off (1 GiB image)  ', join(dir, 'off.img'), 1024 * 1024 * 1024, false);
  await run('auto GC (16 MiB image)', join(dir, 'on.img'), 16 * 1024 * 1024, true);
  await run('GC off (1 GiB image)  ', join(dir, 'off2.img'), 1024 * 1024 * 1024, false);
} finally {
  await rm(dir, { recursive: true, force: true });
}
