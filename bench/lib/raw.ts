// The raw limits beside the engines: what the disk gives (a 128-byte write + fdatasync loop, and
// 64 such records per fdatasync) and what a JS Map gives for W3's sets and W4's gets.
import { closeSync, fdatasyncSync, openSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { BenchConfig } from './config.js';
import { VALUE_BYTES, benchValues, keyLayout, randomIndexes } from './keys.js';
import type { Recorder } from './recorder.js';
import { W2_IN_FLIGHT } from './workloads.js';

const RECORD_BYTES = 128;

/** Records/s appending `perSync` 128-byte records per fdatasync to `path`, for `seconds`. */
function fdatasyncLoop(path: string, perSync: number, seconds: number): number {
  const fd = openSync(path, 'w');
  const buf = Buffer.alloc(RECORD_BYTES * perSync, 1);
  let records = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  try {
    while (performance.now() < end) {
      writeSync(fd, buf);
      fdatasyncSync(fd);
      records += perSync;
    }
  } finally {
    closeSync(fd);
  }
  return records / ((performance.now() - t0) / 1000);
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
  for (let r = 0; r < cfg.runs; r++) {
    rec.add('w1', fdatasyncLoop(`${dir}/raw-w1.log`, 1, cfg.seconds));
    rec.add('w2', fdatasyncLoop(`${dir}/raw-w2.log`, W2_IN_FLIGHT, cfg.seconds));
  }
  const { sets, gets } = mapFigures(cfg); // CPU-bound and steady: one run
  rec.add('w3', sets);
  rec.add('w4', gets);
  rec.note('w1', '128-byte write + fdatasync loop, appending to one file');
  rec.note('w2', `${W2_IN_FLIGHT} × 128-byte records per write + fdatasync (group commit of ${W2_IN_FLIGHT} per flush)`);
  rec.note('w3', 'JS Map set, same keys');
  rec.note('w4', 'JS Map get, same random keys');
}
