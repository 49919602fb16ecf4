// W1–W7 on any BenchEngine. Every workload checks what it read or listed, so a figure cannot
// come from a store that silently did nothing.
import { performance } from 'node:perf_hooks';
import type { BenchEngine, Getter } from '../engines/engine.js';
import type { BenchConfig } from './config.js';
import { profiled } from './cpu-profile.js';
import { timed } from './progress.js';
import { inFlightFor } from './in-flight.js';
import { VALUE_BYTES, benchValues, keyLayout, listTarget, randomIndexes } from './keys.js';
import type { Recorder } from './recorder.js';

/** Puts in flight in W2 (and per transaction for an engine that groups by transaction). */
export const W2_IN_FLIGHT = 64;

/** Fresh writes for W1/W2: each call gives a key no earlier call gave, and its value. */
export function freshWrites(cfg: BenchConfig): () => [string, Uint8Array] {
  const { keyOf } = keyLayout(cfg.keys, cfg.listKeys);
  const valueOf = benchValues();
  let next = 0;
  return () => {
    const i = next++;
    return [keyOf(i), valueOf(i)];
  };
}

/** W1: one writer, each durable put awaited; ops/s over `seconds`. */
export async function w1(engine: BenchEngine, seconds: number, nextWrite: () => [string, Uint8Array]): Promise<number> {
  let n = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    await engine.put(...nextWrite());
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
}

/** W2: 64 durable puts in flight (or 64 per transaction); ops/s over `seconds`. */
export async function w2(engine: BenchEngine, seconds: number, nextWrite: () => [string, Uint8Array]): Promise<number> {
  const putGroup = engine.putGroup;
  if (putGroup !== undefined) {
    let n = 0;
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    while (performance.now() < end) {
      await putGroup(Array.from({ length: W2_IN_FLIGHT }, nextWrite));
      n += W2_IN_FLIGHT;
    }
    return n / ((performance.now() - t0) / 1000);
  }
  const { latencies, elapsed } = await inFlightFor(W2_IN_FLIGHT, seconds, () => engine.put(...nextWrite()));
  return latencies.length / elapsed;
}

/** W3: load `keys` keys with one sync at the end; ops/s and the method used. */
export async function w3(engine: BenchEngine, cfg: BenchConfig): Promise<{ opsPerSec: number; method: string }> {
  const { keyOf } = keyLayout(cfg.keys, cfg.listKeys);
  const t0 = performance.now();
  const method = await engine.bulkLoad(cfg.keys, keyOf, benchValues());
  const opsPerSec = cfg.keys / ((performance.now() - t0) / 1000);
  await checkLoaded(engine, cfg);
  return { opsPerSec, method };
}

/** Every 997th key and the last one must read back as a 100-byte value. */
async function checkLoaded(engine: BenchEngine, cfg: BenchConfig): Promise<void> {
  const { keyOf } = keyLayout(cfg.keys, cfg.listKeys);
  const getter = engine.getters[0];
  if (getter === undefined) throw new Error('the engine offers no getter');
  for (const i of [...Array.from({ length: Math.ceil(cfg.keys / 997) }, (_, j) => j * 997), cfg.keys - 1]) {
    const v = await getter.get(keyOf(i));
    if (v?.length !== VALUE_BYTES) throw new Error(`key ${keyOf(i)} did not read back after the load`);
  }
}

/** Random gets checked between clock reads. */
const W4_BATCH = 1000;

/**
 * W4: random gets over the loaded keys with one getter, for `seconds` or `cfg.gets` gets,
 * whichever comes first; ops/s. Every get must find its 100-byte value.
 */
export async function w4(getter: Getter, cfg: BenchConfig, seconds: number, seed: number): Promise<number> {
  const { keyOf } = keyLayout(cfg.keys, cfg.listKeys);
  const next = randomIndexes(cfg.keys, seed);
  let n = 0;
  let bytes = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (n < cfg.gets && performance.now() < end) {
    if (getter.kind === 'sync') {
      for (let i = 0; i < W4_BATCH; i++) bytes += getter.get(keyOf(next()))?.length ?? 0;
    } else {
      for (let i = 0; i < W4_BATCH; i++) bytes += (await getter.get(keyOf(next())))?.length ?? 0;
    }
    n += W4_BATCH;
  }
  const elapsed = (performance.now() - t0) / 1000;
  if (bytes !== n * VALUE_BYTES) throw new Error(`W4 ${getter.name}: read ${bytes} bytes, expected ${n * VALUE_BYTES}`);
  return n / elapsed;
}

/** W6: list the keys under one app's prefix; ms. */
export async function w6(engine: BenchEngine, cfg: BenchConfig): Promise<number> {
  const { apps } = keyLayout(cfg.keys, cfg.listKeys);
  const { prefix, expected } = listTarget(cfg.keys, apps);
  const t0 = performance.now();
  const n = await engine.list(prefix, cfg.listKeys);
  const ms = performance.now() - t0;
  if (n !== Math.min(expected, cfg.listKeys)) throw new Error(`W6: listed ${n} keys under ${prefix}, expected ${expected}`);
  return ms;
}

/** W7: one persistent snapshot, durable when it resolves; ms. Then the engine's untimed `afterSnapshot`. */
export async function w7(engine: BenchEngine, tag: string): Promise<number | undefined> {
  if (engine.snapshot === undefined) return undefined;
  const t0 = performance.now();
  await engine.snapshot(tag);
  const ms = performance.now() - t0;
  await engine.afterSnapshot?.(tag);
  return ms;
}

/** The big-store sequence after a load: W4 per getter (warm), W6, W7, each `runs` times. */
export async function readWorkloads(name: string, engine: BenchEngine, cfg: BenchConfig, rec: Recorder): Promise<void> {
  for (const getter of engine.getters) {
    await timed(`${name} W4 ${getter.name}`, async () => {
      await w4(getter, cfg, cfg.seconds, 999); // warm-up, not recorded
      await profiled(`${name}-w4-${getter.name}`, async () => {
        for (let r = 0; r < cfg.runs; r++) rec.add(`w4.${getter.name}`, await w4(getter, cfg, cfg.seconds, 1 + r));
      });
    });
  }
  await timed(`${name} W6`, async () => {
    await w6(engine, cfg); // warm-up
    for (let r = 0; r < Math.max(3, cfg.runs); r++) rec.add('w6.ms', await w6(engine, cfg));
  });
  await timed(`${name} W7`, () => snapshotRuns(engine, 'w7', Math.max(3, cfg.runs), rec));
}

/**
 * `runs` timed snapshots (`<figure>.ms`) after one warm-up, as W4 and W6 have: the process's
 * first snapshot also pays for compiling its code paths (2–8 ms for StateFS on this machine,
 * every engine's first is slower). Its time is kept apart in `<figure>.first.ms`, not in the median.
 */
export async function snapshotRuns(engine: BenchEngine, figure: string, runs: number, rec: Recorder): Promise<void> {
  const first = await w7(engine, `${figure}-warm-up`);
  if (first !== undefined) rec.add(`${figure}.first.ms`, first);
  for (let r = 0; r < runs; r++) {
    const ms = await w7(engine, `${figure}-${r}`);
    if (ms !== undefined) rec.add(`${figure}.ms`, ms);
  }
}
