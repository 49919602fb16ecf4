// Lone durable puts (one writer awaiting each, as W1) on images of different sizes: what a put
// costs must not grow with the image. Prints puts/s and the main thread's CPU per put for each
// size, sparse images made in a temporary folder, one after the other.
// Run: npm run build && node dist/bench/image-size-puts.js [GiB,GiB,...] [seconds]   (default 0.25,32 3)
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Store } from '../src/index.js';

const GiB = 1024 * 1024 * 1024;
const sizes = (process.argv[2] ?? '0.25,32').split(',').map(Number);
const seconds = Number(process.argv[3] ?? '3');
if (!sizes.every((gib) => gib > 0) || !(seconds > 0)) {
  console.error('usage: node dist/bench/image-size-puts.js [GiB,GiB,...] [seconds]   (sizes and seconds above 0)');
  process.exit(2);
}
const value = new Uint8Array(100).fill(7);
const keyOf = (i: number): string => `/state/app${i % 100}/k${i}`;

/** The main thread's user and system CPU so far, in µs (Linux: /proc; the other threads left out). */
function mainThreadCpu(): { user: number; system: number } {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const tick = 10_000; // USER_HZ 100
  return { user: Number(fields[11]) * tick, system: Number(fields[12]) * tick };
}

async function lonePuts(gib: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'statefs-image-size-'));
  try {
    const store = await Store.create(join(dir, 'image'), { size: Math.round((gib * GiB) / 4096) * 4096 });
    try {
      for (let i = 0; i < 500; i++) await store.put('bench', keyOf(i), value); // warm-up
      const cpu0 = mainThreadCpu();
      const t0 = performance.now();
      let n = 0;
      while (performance.now() - t0 < seconds * 1000) await store.put('bench', keyOf(500 + n++), value);
      const ms = performance.now() - t0;
      const cpu1 = mainThreadCpu();
      const { segments } = await store.stat();
      console.log(`| ${gib} GiB | ${segments} | ${Math.round((n / ms) * 1000)} | ${((cpu1.user - cpu0.user) / n).toFixed(1)} µs | ${((cpu1.system - cpu0.system) / n).toFixed(1)} µs |`);
    } finally {
      await store.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

console.log('| image | segments | puts/s | main thread user CPU per put | system CPU per put |');
console.log('|---|---:|---:|---:|---:|');
for (const gib of sizes) await lonePuts(gib);
