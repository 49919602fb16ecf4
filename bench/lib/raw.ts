// The raw limits beside the engines: what the disk gives (a 128-byte write + fdatasync loop, and
// 64 such records per fdatasync) and what a JS Map gives for W3's sets and W4's gets.
import { closeSync, fdatasyncSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { BenchConfig } from './config.js';
import { VALUE_BYTES, benchValues, keyLayout, randomIndexes } from './keys.js';
import type { Recorder } from './recorder.js';
import { W2_IN_FLIGHT } from './workloads.js';

const RECORD_BYTES = 128;
const LOG_BYTES = 4 * 1024 * 1024; // small: writing and syncing much more first slows the fdatasyncs that follow

/**
 * Records/s writing `perSync` 128-byte records per fdatasync, one after the other, into a file
 * written and synced beforehand (like a log in a preallocated image: an fdatasync then has no
 * file size to update), wrapping around at its end; for `seconds`.
 */
export function fdatasyncLoop(path: string, perSync: number, seconds: number): number {
  const fd = openSync(path, 'w+');
  try {
    writeSync(fd, Buffer.alloc(LOG_BYTES));
    fsyncSync(fd);
    const buf = Buffer.alloc(RECORD_BYTES * perSync, 1);
    let records = 0;
    let offset = 0;
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    while (performance.now() < end) {
      writeSync(fd, buf, 0, buf.length, offset);
      fdatasyncSync(fd);
      records += perSync;
      offset = offset + 2 * buf.length > LOG_BYTES ? 0 : offset + buf.length;
    }
    return records / ((performance.now() - t0) / 1000);
  } finally {
    closeSync(fd);
  }
}

function mapFigures(cfg: BenchConfig): { sets: number; gets: number } {
  const { keyOf } = keyLayout(cfg.keys, cfg.listKeys);
  const valueOf = benchValues();
  const map = new Map<string, Uint8Array>();
  let t0 = performance.now();
  for (let i = 0; i < cfg.keys; i++) map.set(keyOf(i), valueOf(i));
  const sets = cfg.keys / ((performance.now() - t0) / 1000);
  const next = randomIndexes(cfg.keys, 1);
  let bytes = 0;
  t0 = performance.now();
  for (let i = 0; i < cfg.gets; i++) bytes += map.get(keyOf(next()))?.length ?? 0;
  const gets = cfg.gets / ((performance.now() - t0) / 1000);
  if (bytes !== cfg.gets * VALUE_BYTES) throw new Error('raw Map get: a key was missing');
  return { sets, gets };
}

export function rawJob(dir: string, cfg: BenchConfig, rec: Recorder): void {
  // W1's limit is also measured inside each engine's write job, run by run beside its W1
  // (`w1.raw`): the disk's fdatasync rate drifts, so W1's target compares figures of one moment.
  for (let r = 0; r < cfg.runs; r++) {
    rec.add('w1', fdatasyncLoop(`${dir}/raw-w1.log`, 1, cfg.seconds));
    rec.add('w2', fdatasyncLoop(`${dir}/raw-w2.log`, W2_IN_FLIGHT, cfg.seconds));
  }
  const { sets, gets } = mapFigures(cfg); // CPU-bound and steady: one run
  rec.add('w3', sets);
  rec.add('w4', gets);
  rec.note('w1', '128-byte write + fdatasync loop, sequential, in a file preallocated and synced beforehand');
  rec.note('w2', `${W2_IN_FLIGHT} × 128-byte records per write + fdatasync (group commit of ${W2_IN_FLIGHT} per flush)`);
  rec.note('w3', 'JS Map set, same keys');
  rec.note('w4', 'JS Map get, same random keys');
}
