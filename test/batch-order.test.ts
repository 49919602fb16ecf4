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

test('putMany of a large batch interleaving directories over existing keys and a snapshot, with keys given twice, reads, lists, accounts and replays as given', async () => {
  const device = new MemoryDevice(await memoryImage(16 * MiB));
  const store = await Store.openDevice(device, { autoGc: false });
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  const sorted = (keys: Iterable<string>): string[] => [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  // Keys written before: the batch replaces some, and a snapshot holds their old values.
  const before = new Map<string, Uint8Array>();
  for (let i = 0; i < 40; i++) before.set(`/state/app${i % 4}/k${i}`, enc(`old${i}`));
  await store.putMany('app', [...before]);
  await store.snapshot('app', 'before');
  const batch: [string, Uint8Array][] = [];
  const want = new Map(before);
  // More distinct keys than UNDO_BUILD_LIMIT (256), so the committed tree is built mid-batch.
  for (let i = 0; i < 5 * GROUP_FROM; i++) {
    // Four directories interleaved; every seventh entry repeats a key given earlier in the batch.
    const key = i % 7 === 6 ? (batch[i - 5]?.[0] ?? '/state/none') : `/state/app${i % 4}/k${i}`;
    // A value too large for a run (a PUT record of its own) and an empty one among the small.
    const value = i === 100 ? new Uint8Array(20_000).fill(7) : i === 101 ? new Uint8Array(0) : enc(`v${i}`);
    batch.push([key, value]);
    want.set(key, value);
  }
  await store.putMany('app', batch);
  const check = async (s: Store, where: string): Promise<void> => {
    for (const [k, v] of want) assert.deepEqual(await s.get('app', k), v, `${where}: ${k}`);
    assert.deepEqual((await s.list('app', '/state/', { limit: 10_000 })).keys, sorted(want.keys()), `${where}: keys`);
    // The snapshot still holds the values the batch replaced.
    const diff = await s.diffSnaps('app', 'before', '@live');
    assert.deepEqual(sorted(diff.changed), sorted([...before.keys()].filter((k) => want.get(k) !== before.get(k))), `${where}: replaced since the snapshot`);
    await s.verifySnapshot('app', 'before');
  };
  await check(store, 'live');
  const stat = await store.stat();
  const app = stat.subjects.find((s) => s.subject === 'app');
  assert.ok(app !== undefined);
  // What the writer counted is what a walk of the index finds (no repeated key counted twice).
  assert.equal(app.usedBytes, app.liveBytes + app.snapshotOnlyBytes);
  await store.sync();
  const reopened = await openMemory(device.bytes.slice(), { autoGc: false });
  await check(reopened, 'after replay');
  const again = await reopened.stat();
  assert.deepEqual(again.subjects, stat.subjects, "replay's space figures are the writer's");
  await reopened.close();
  await store.close();
});

test('replay indexes a batch\'s puts grouped by directory, yet before any other record of the batch (a delete and a snapshot between puts of the same keys)', async () => {
  const device = new MemoryDevice(await memoryImage(8 * MiB));
  const store = await Store.openDevice(device, { autoGc: false });
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  // Issued in one turn, not awaited one by one: one round, one journal batch, records in this order.
  const many = (tag: string): [string, Uint8Array][] => Array.from({ length: GROUP_FROM }, (_, i) => [`/state/d${i % 3}/k${i}`, enc(`${tag}${i}`)]);
  const snapped = store.putMany('app', many('a'));
  const deleted = store.delete('app', '/state/d0/k0');
  const snapshot = store.snapshot('app', 'mid');
  const after = store.putMany('app', many('b'));
  await Promise.all([snapped, deleted, snapshot, after]);
  const want = async (s: Store, where: string): Promise<void> => {
    assert.deepEqual(await s.get('app', '/state/d0/k0'), enc('b0'), `${where}: put again after its delete`);
    assert.deepEqual(await s.get('app', '/state/d2/k2'), enc('b2'), where);
    const diff = await s.diffSnaps('app', 'mid', '@live');
    // The snapshot was taken after the delete and the first batch: k0 is absent in it, the rest hold a-values.
    assert.deepEqual(diff.added, ['/state/d0/k0'], `${where}: k0 deleted in the snapshot`);
    assert.equal(diff.changed.length, GROUP_FROM - 1, `${where}: every other key changed since the snapshot`);
  };
  await want(store, 'live');
  await store.sync();
  const reopened = await openMemory(device.bytes.slice(), { autoGc: false });
  await want(reopened, 'after replay');
  await reopened.close();
  await store.close();
});
