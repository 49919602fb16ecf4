import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Store } from '../src/engine/store.js';
import { isStatefsError } from '../src/errors.js';
import { MiB, memoryImage, openMemory, text } from './helpers.js';

/** An 8 MiB image filled with 60 KB values until a put finds no room, then 40 of them deleted. */
async function nearlyFull(): Promise<{ store: Store; cycles: () => number }> {
  const store = await openMemory(await memoryImage(8 * MiB));
  let cycles = 0;
  store.on('gc', () => cycles++);
  for (let n = 0; ; n++) {
    const refused = await store.put('app', `/state/live/k${n}`, new Uint8Array(60_000).fill(1)).then(
      () => false,
      (err: unknown) => isStatefsError(err) && err.code === 'ENOSPC',
    );
    if (refused) break;
  }
  for (let i = 0; i < 40; i++) await store.delete('app', `/state/live/k${i}`);
  return { store, cycles: () => cycles };
}

test('writes made one after another without waiting reach the journal in that order, also when the first waits for room: the last value of a key is the one kept', async () => {
  const { store, cycles } = await nearlyFull();
  try {
    const kept: string[] = [];
    for (let round = 0; round < 120; round++) {
      const big = Array.from({ length: 16 }, (_, i): [string, Uint8Array] => [`/state/live/k${i}`, new Uint8Array(65_000).fill(round & 255)]);
      // A batch that often needs a reclaim, then a small put of a key it wrote, then a delete and a put.
      await Promise.all([
        store.putMany('app', [['/state/x', `first-${round}`], ...big]),
        store.put('app', '/state/x', `last-${round}`),
        store.put('app', `/state/live/k${round % 16}`, new Uint8Array(65_000)),
        store.delete('app', `/state/live/k${round % 16}`),
        store.put('app', '/state/y', `y-${round}`),
      ]);
      kept.push(`${text(await store.get('app', '/state/x'))} ${(await store.get('app', `/state/live/k${round % 16}`))?.length ?? 'deleted'} ${text(await store.get('app', '/state/y'))}`);
    }
    assert.ok(cycles() > 0, 'some writes waited for a reclaim (a GC cycle ran)');
    assert.deepEqual(
      kept,
      kept.map((_, round) => `last-${round} deleted y-${round}`),
    );
  } finally {
    await store.close();
  }
});
