// StateFS through its public embedded API (`Store`), one image file per store.
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Store } from '../../src/index.js';
import { statefsValueReads } from '../lib/config.js';
import { SUBJECT } from '../lib/keys.js';
import type { BenchEngine, EngineFactory, ReadValue } from './engine.js';

const IMAGE = 'statefs.img';
const MIB = 1024 * 1024;
const BULK_CHUNK = 10_000;

/** A sparse image with room for ~1 KiB per key (records, checkpoints, GC reserve): 1 GiB for 1M keys. */
function imageBytes(keys: number): number {
  return Math.max(256, Math.ceil(keys / 1024)) * MIB;
}

/** W3: `putMany` (one append per call, checked whole, durable when it resolves) in chunks of 10,000, then `sync()`. */
async function bulkLoad(store: Store, count: number, keyOf: (i: number) => string, valueOf: (i: number) => Uint8Array): Promise<string> {
  for (let from = 0; from < count; from += BULK_CHUNK) {
    const to = Math.min(count, from + BULK_CHUNK);
    await store.putMany(SUBJECT, Array.from({ length: to - from }, (_, j): [string, Uint8Array] => [keyOf(from + j), valueOf(from + j)]));
  }
  await store.sync();
  return `putMany, ${BULK_CHUNK} per call, then sync()`;
}

/**
 * Untimed after each W7 run, as the peers remove their copies: wait until the snapshot's
 * background digest (a SHA-256 over every key) is recorded, so the next run does not share the
 * CPU with it, then delete the snapshot.
 */
async function digestThenDelete(store: Store, tag: string): Promise<void> {
  for (;;) {
    const info = (await store.listSnaps(SUBJECT, { details: true })).find((s) => s.name === tag);
    if (info === undefined) throw new Error(`snapshot ${tag} is missing`);
    if (info.digest !== undefined) break;
    await delay(50);
  }
  await store.deleteSnap(SUBJECT, tag);
}

/** `getInto` with one reused buffer, as lmdb-js's `getBinaryFast` reuses one (its `length` is the last value's). */
const intoBuffer = new Uint8Array(4096);
const lastRead = { length: 0 };
function readInto(store: Store, key: string): ReadValue | undefined {
  const length = store.getInto(SUBJECT, key, intoBuffer);
  if (length === undefined) return undefined;
  if (length > intoBuffer.length) throw new Error(`value of ${length} bytes is larger than the bench's buffer`);
  lastRead.length = length;
  return lastRead;
}

function wrap(store: Store): BenchEngine {
  return {
    put: (key, value) => store.put(SUBJECT, key, value),
    bulkLoad: (count, keyOf, valueOf) => bulkLoad(store, count, keyOf, valueOf),
    getters: [
      { name: 'get', kind: 'async', get: (key) => store.get(SUBJECT, key) },
      { name: 'getSync', kind: 'sync', get: (key) => store.getSync(SUBJECT, key) },
      { name: 'getInto', kind: 'sync', get: (key) => readInto(store, key) },
    ],
    list: async (prefix, limit) => (await store.list(SUBJECT, prefix, { limit })).keys.length,
    snapshot: (tag) => store.snapshot(SUBJECT, tag),
    afterSnapshot: (tag) => digestThenDelete(store, tag),
    spaceDetails: async () => {
      const st = await store.stat();
      return { usedBytes: st.usedBytes, liveBytes: st.liveBytes, garbageBytes: st.garbageBytes, capacity: st.capacity };
    },
    close: () => store.close(),
  };
}

export const statefsEngine: EngineFactory = {
  create: async (dir, expectedKeys) => wrap(await Store.create(join(dir, IMAGE), { size: imageBytes(expectedKeys) })),
  open: async (dir) => wrap(await Store.open(join(dir, IMAGE), { valueReads: statefsValueReads() })),
  dataPath: (dir) => join(dir, IMAGE),
  describe:
    'StateFS (this repository, dist/), one sparse image file; every put resolves only after its record is fdatasync-ed ' +
    '(group commit); W3 uses putMany (10,000 per call); W7 is `snapshot()` (durable when it resolves); after each run, untimed, the harness waits for its background digest of every key and deletes it. ' +
    `The reopened store reads its values ${statefsValueReads()} (BENCH_VALUE_READS).`,
};
