// Durable puts of 1,000-byte values over 8,000 random keys, 64 in flight, on a store whose image
// is small enough that automatic GC must run (16 MiB), or big enough that it never does (1 GiB,
// auto GC off). Issue 5; `bench/gc-under-load.ts` prints it on its own, the suite records it.
import { performance } from 'node:perf_hooks';
import { Store } from '../../src/index.js';
import { inFlight } from './in-flight.js';
import { randomIndexes } from './keys.js';
import { summarize, type LatencySummary } from './stats.js';

const KEYS = 8000; // ~8 MiB live: half of the small image, so GC has partly-live segments to empty
const CONCURRENCY = 64;
const MIB = 1024 * 1024;

export const GC_VALUE_BYTES = 1000;
export const GC_IMAGE = { on: 16 * MIB, off: 1024 * MIB } as const;

export interface GcRun extends LatencySummary {
  /** Segments the automatic GC freed during the run. */
  gcCycles: number;
  usedBytes: number;
}

export async function gcLoadRun(path: string, ops: number, autoGc: boolean): Promise<GcRun> {
  const store = await Store.create(path, { size: autoGc ? GC_IMAGE.on : GC_IMAGE.off, autoGc });
  try {
    const value = new Uint8Array(GC_VALUE_BYTES).fill(1);
    const latencies: number[] = [];
    let gcCycles = 0;
    store.on('marker', (line: string) => {
      if (line.startsWith('statefs: compact progress')) gcCycles++;
    });
    const randomKey = randomIndexes(KEYS); // fixed seed: the same keys every run
    const t0 = performance.now();
    await inFlight(CONCURRENCY, ops, async () => {
      const s = performance.now();
      await store.put('bench', `/state/k${randomKey()}`, value);
      latencies.push(performance.now() - s);
    });
    const summary = summarize(latencies, (performance.now() - t0) / 1000);
    return { ...summary, gcCycles, usedBytes: (await store.stat()).usedBytes };
  } finally {
    await store.close();
  }
}

export function describeGcLoad(ops: number): string {
  return `${ops} durable puts of ${GC_VALUE_BYTES} bytes over ${KEYS} random keys, ${CONCURRENCY} in flight (${((ops * (GC_VALUE_BYTES + 40)) / MIB).toFixed(0)} MiB written)`;
}
