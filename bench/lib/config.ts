// The suite's knobs, read from the environment by the orchestrator and by every child alike.

import { VALUE_READS, type ValueReads } from '../../src/engine/store-types.js';

export const ENGINE_NAMES = ['statefs', 'lmdb', 'classic-level', 'sqlite'] as const;
export type EngineName = (typeof ENGINE_NAMES)[number];

export interface BenchConfig {
  quick: boolean;
  /** Keys of the big store (W3, W4, W6, W7, size, reopen, RSS). */
  keys: number;
  /** Keys of the small store whose snapshot time is compared with the big one's. */
  smallSnapshotKeys: number;
  /** Length of one timed run of W1, W2 and the raw loops, in seconds. */
  seconds: number;
  /** Repetitions of each throughput figure (the table shows the median). */
  runs: number;
  /** Random gets in one W4 run. */
  gets: number;
  /** Keys under the prefix W6 lists (and so keys per `/state/app<n>/`). */
  listKeys: number;
  /** Puts of one GC-under-load run. */
  gcOps: number;
  /** Length of one daemon phase (one client count, puts or gets), in seconds. */
  daemonSeconds: number;
  /** A job that repeats in fresh processes (W3 load, reopen) is repeated only while one took less than this. */
  repeatUnderSeconds: number;
  /** Repetitions of the big-store jobs stop when the suite would pass this (shared among engines). */
  budgetSeconds: number;
  engines: EngineName[];
}

function num(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${raw}: expected a positive number`);
  return n;
}

function engines(): EngineName[] {
  const raw = process.env.BENCH_ENGINES;
  if (raw === undefined || raw === '') return [...ENGINE_NAMES];
  return raw.split(',').map((name) => {
    const found = ENGINE_NAMES.find((e) => e === name.trim());
    if (found === undefined) throw new Error(`BENCH_ENGINES: unknown engine ${name} (use ${ENGINE_NAMES.join(', ')})`);
    return found;
  });
}

export function loadConfig(): BenchConfig {
  const quick = process.env.BENCH_QUICK === '1';
  const keys = Math.floor(num('BENCH_KEYS', quick ? 20_000 : 1_000_000));
  return {
    quick,
    keys,
    smallSnapshotKeys: Math.min(keys, 1000),
    seconds: num('BENCH_SECONDS', quick ? 0.25 : 1),
    runs: Math.floor(num('BENCH_RUNS', quick ? 1 : 3)),
    gets: Math.floor(num('BENCH_GETS', Math.min(keys, quick ? 20_000 : 200_000))),
    listKeys: Math.min(keys, 10_000),
    gcOps: Math.floor(num('BENCH_GC_OPS', quick ? 20_000 : 30_000)),
    daemonSeconds: num('BENCH_DAEMON_SECONDS', quick ? 0.5 : 2),
    repeatUnderSeconds: num('BENCH_REPEAT_UNDER_SECONDS', 40),
    budgetSeconds: num('BENCH_BUDGET_SECONDS', 360),
    engines: engines(),
  };
}

/** When StateFS's reopened store reads its values (`BENCH_VALUE_READS`, default at-open; `OpenOptions.valueReads`). */
export function statefsValueReads(): ValueReads {
  const raw = process.env.BENCH_VALUE_READS;
  if (raw === undefined || raw === '') return 'at-open';
  const found = VALUE_READS.find((v) => v === raw);
  if (found === undefined) throw new Error(`BENCH_VALUE_READS=${raw}: use ${VALUE_READS.join(' or ')}`);
  return found;
}
