// How long a checkpoint holds the event loop, at 1,000 and 1,000,000 keys: the longest gap between
// two turns of the loop while it runs (a probe re-armed with setImmediate), the worst latency of
// awaited puts issued one after another beside it, and the whole checkpoint (docs/performance.md).
// Run: npm run build && node dist/bench/checkpoint-stall.js   (STATEFS_BENCH_KEYS=1000,1000000 to change)
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Store } from '../src/index.js';
import { LoopProbe } from './lib/loop-probe.js';

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
    const worstPut: number[] = [];
    for (let r = 0; r < 3; r++) {
      const probe = new LoopProbe();
      const writer = { stop: false, worst: 0, puts: 0 };
      const t0 = performance.now();
      const done = store.checkpoint().finally(() => {
        writer.stop = true;
      });
      // A writer beside the checkpoint: one awaited put after another, each timed.
      const writing = (async () => {
        for (let i = 0; !writer.stop; i++) {
          const p0 = performance.now();
          await store.put('bench', `/state/during/k${i % 1000}`, value);
          writer.worst = Math.max(writer.worst, performance.now() - p0);
          writer.puts++;
        }
      })();
      await done;
      whole.push(performance.now() - t0);
      await writing;
      held.push(probe.stop());
      worstPut.push(writer.worst);
    }
    const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[1] ?? Number.NaN;
    console.log(
      `${String(n).padStart(8)} keys: event loop held at most ${median(held).toFixed(1)} ms, worst put beside it ${median(worstPut).toFixed(1)} ms, whole checkpoint ${median(whole).toFixed(1)} ms (medians of 3)`,
    );
    await store.close();
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
