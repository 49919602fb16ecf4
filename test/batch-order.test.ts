import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GROUP_FROM, directoryOrder } from '../src/engine/batch-order.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { MiB, memoryImage, openMemory } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

const parentOf = (bin: string): string => bin.slice(0, bin.lastIndexOf('/') + 1);

// Keys under a few directories (some nested, some at the root), repeats allowed.
const keyArb = fc.tuple(fc.constantFrom('/a/', '/b/', '/a/x/', '/', '/c/d/e/'), fc.nat({ max: 30 })).map(([dir, n]) => `${dir}k${n}`);

test('directoryOrder: a permutation grouping keys by parent, groups by first appearance, the order given within each', () => {
  fc.assert(
    fc.property(fc.array(keyArb, { minLength: 0, maxLength: 3 * GROUP_FROM, size: 'max' }), (bins) => {
      const order = [...directoryOrder(bins)];
      assert.deepEqual([...order].sort((a, b) => a - b), bins.map((_, i) => i), 'every entry once');
      if (bins.length < GROUP_FROM) {
        assert.deepEqual(order, bins.map((_, i) => i), 'a small batch keeps the order given');
        return;
      }
      // Each directory's entries are contiguous, in the order given.
      const dirs = order.map((i) => parentOf(bins[i] ?? ''));
      const firstSeen = [...new Set(bins.map(parentOf))];
      assert.deepEqual(dirs.filter((d, j) => j === 0 || dirs[j - 1] !== d), firstSeen, 'one run per directory, in order of first appearance');
      for (let j = 1; j < order.length; j++) {
        if (dirs[j] === dirs[j - 1]) assert.ok((order[j] ?? 0) > (order[j - 1] ?? 0), `within ${dirs[j] ?? ''}: the order given`);
      }
    }),
    { numRuns: 500 },
  );
});

test('putMany of a large batch interleaving directories, with keys given twice, reads, lists, accounts and replays as given', async () => {
  const device = new MemoryDevice(await memoryImage(8 * MiB));
  const store = await Store.openDevice(device, { autoGc: false });
  const batch: [string, Uint8Array][] = [];
  const want = new Map<string, Uint8Array>();
  for (let i = 0; i < 4 * GROUP_FROM; i++) {
    // Four directories interleaved; every seventh entry repeats an earlier key with a new value.
    const key = i % 7 === 6 ? (batch[i - 5]?.[0] ?? '/state/none') : `/state/app${i % 4}/k${i}`;
    const value = new TextEncoder().encode(`v${i}`);
    batch.push([key, value]);
    want.set(key, value);
  }
  await store.putMany('app', batch);
  for (const [k, v] of want) assert.deepEqual(await store.get('app', k), v, k);
  const listed = (await store.list('app', '/state/', { limit: 10_000 })).keys;
  assert.deepEqual(listed, [...want.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  const stat = await store.stat();
  const app = stat.subjects.find((s) => s.subject === 'app');
  assert.ok(app !== undefined);
  // What the writer counted is what a walk of the index finds (no repeated key counted twice).
  assert.equal(app.usedBytes, app.liveBytes);
  await store.sync();
  const reopened = await openMemory(device.bytes.slice(), { autoGc: false });
  for (const [k, v] of want) assert.deepEqual(await reopened.get('app', k), v, `${k} after replay`);
  assert.equal((await reopened.stat()).liveBytes, stat.liveBytes);
  await reopened.close();
  await store.close();
});
