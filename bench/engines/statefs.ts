// StateFS through its public embedded API (`Store`), one image file per store.
import { join } from 'node:path';
import { Store } from '../../src/index.js';
import { inFlight } from '../lib/in-flight.js';
import { SUBJECT } from '../lib/keys.js';
import type { BenchEngine, EngineFactory } from './engine.js';

const IMAGE = 'statefs.img';
const MIB = 1024 * 1024;
/** Durable puts kept in flight by the W3 fallback (they share flushes: group commit). */
const BULK_WINDOW = 4096;
const BULK_CHUNK = 10_000;

/** A sparse image with room for ~1 KiB per key (records, checkpoints, GC reserve): 1 GiB for 1M keys. */
function imageBytes(keys: number): number {
  return Math.max(256, Math.ceil(keys / 1024)) * MIB;
}

/**
 * W3 uses the fastest crash-safe write API the engine offers, found at run time: a `putMany`
 * or `batch` method if the Store has one (called as `putMany(subject, [[key, value], ...])` /
 * `batch(subject, [{ type: 'put', key, value }, ...])` in chunks of 10,000, then `sync()`),
 * otherwise durable puts with 4,096 in flight, then `sync()`.
 */
async function bulkLoad(store: Store, count: number, keyOf: (i: number) => string, valueOf: (i: number) => Uint8Array): Promise<string> {
  const putMany: unknown = Reflect.get(store, 'putMany');
  const batch: unknown = Reflect.get(store, 'batch');
  const chunked = async (method: (from: number, to: number) => unknown): Promise<void> => {
    for (let from = 0; from < count; from += BULK_CHUNK) {
      const done: unknown = method(from, Math.min(count, from + BULK_CHUNK));
      await done;
    }
    await store.sync();
  };
  const range = <T>(from: number, to: number, make: (key: string, value: Uint8Array) => T): T[] =>
    Array.from({ length: to - from }, (_, j) => make(keyOf(from + j), valueOf(from + j)));
  if (typeof putMany === 'function') {
    await chunked((from, to): unknown => Reflect.apply(putMany, store, [SUBJECT, range(from, to, (key, value) => [key, value])]));
    return `putMany, ${BULK_CHUNK} per call, then sync()`;
  }
  if (typeof batch === 'function') {
    await chunked((from, to): unknown => Reflect.apply(batch, store, [SUBJECT, range(from, to, (key, value) => ({ type: 'put', key, value }))]));
    return `batch, ${BULK_CHUNK} per call, then sync()`;
  }
  await inFlight(BULK_WINDOW, count, (i) => store.put(SUBJECT, keyOf(i), valueOf(i)));
  await store.sync();
  return `durable puts, ${BULK_WINDOW} in flight (no batch API found), then sync()`;
}

function wrap(store: Store): BenchEngine {
  return {
    put: (key, value) => store.put(SUBJECT, key, value),
    bulkLoad: (count, keyOf, valueOf) => bulkLoad(store, count, keyOf, valueOf),
    getters: [{ name: 'get', kind: 'async', get: (key) => store.get(SUBJECT, key) }],
    list: async (prefix, limit) => (await store.list(SUBJECT, prefix, { limit })).keys.length,
    snapshot: (tag) => store.snapshot(SUBJECT, tag),
    maxSnapshotRuns: 1,
    spaceDetails: async () => {
      const st = await store.stat();
      return { usedBytes: st.usedBytes, liveBytes: st.liveBytes, garbageBytes: st.garbageBytes, capacity: st.capacity };
    },
    close: () => store.close(),
  };
}

export const statefsEngine: EngineFactory = {
  create: async (dir, expectedKeys) => wrap(await Store.create(join(dir, IMAGE), { size: imageBytes(expectedKeys) })),
  open: async (dir) => wrap(await Store.open(join(dir, IMAGE))),
  dataPath: (dir) => join(dir, IMAGE),
  describe:
    'StateFS (this repository, dist/), one sparse image file; every put resolves only after its record is fdatasync-ed ' +
    '(group commit); W3 uses the fastest crash-safe write API found at run time; W7 is `snapshot()` (durable when it resolves), once per store: each starts a background digest of every key.',
};
