import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MemoryDevice } from '../src/device/memory-device.js';
import { decodeCheckpoint } from '../src/format/checkpoint.js';
import { BTree } from '../src/engine/btree.js';
import { CheckpointBuild } from '../src/engine/checkpoint-builder.js';
import { Entry } from '../src/engine/entry.js';
import type { Trees } from '../src/engine/keyspace.js';
import { MountTable } from '../src/engine/mount-table.js';
import { SnapshotTable } from '../src/engine/snapshot-table.js';
import { Store } from '../src/engine/store.js';
import type { OpenOptions } from '../src/engine/store-types.js';
import { MiB, memoryImage, text } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

/** Small steps, and no automatic checkpoint or GC: the test decides when each runs. */
const STEPPED: OpenOptions = { checkpointStepEntries: 16, checkpointBytes: 64 * MiB, autoGc: false };

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Every key and value of `subject`'s live state. */
async function liveState(s: Store, subject: string): Promise<Map<string, string | undefined>> {
  const out = new Map<string, string | undefined>();
  for (const key of (await s.list(subject, '/state/', { limit: 10_000 })).keys) out.set(key, text(await s.get(subject, key)));
  return out;
}

test('writes, deletes, snapshots, restores, mounts and transactions between the steps of a checkpoint are all there after reopening', async () => {
  const image = await memoryImage(16 * MiB);
  const s = await Store.openDevice(new MemoryDevice(image), STEPPED);
  await s.putMany(
    'app',
    Array.from({ length: 600 }, (_, i): [string, string] => [`/state/k${i}`, `v${i}`]),
  );
  await s.put('other', '/state/x', 'x0');
  await s.snapshot('app', 'before');
  await s.snapshot('app', 'doomed');

  let built = false;
  const checkpoint = s.checkpoint().then(() => {
    built = true;
  });
  // Each operation below runs while the checkpoint (600 entries, 16 per turn) is still being built.
  const ops: (() => Promise<void>)[] = [
    () => s.put('app', '/state/k1', 'changed'),
    () => s.put('app', '/state/new', 'fresh'),
    () => s.delete('app', '/state/k2'),
    () => s.snapshot('app', 'during'),
    () => s.put('app', '/state/k3', 'after-during'),
    () => s.deleteSnap('app', 'doomed'),
    () => s.mountSnap('app', 'app', 'during', '/mnt/during'),
    async () => {
      const t = s.begin('app');
      await t.put('app', '/state/t1', 'in-txn');
      await t.put('app', '/state/t2', new Uint8Array(40_000).fill(7)); // several PAYLOAD records
      await t.delete('app', '/state/k4');
      await t.commit();
    },
    () => s.restoreSnap('other', 'none').catch(() => undefined), // ENOENT: changes nothing
    () => s.put('other', '/state/x', 'x1'),
    () => s.snapshot('other', 'o1'),
    () => s.put('other', '/state/y', 'y1'),
    () => s.restoreSnap('other', 'o1'), // /state/y goes again
  ];
  for (const op of ops) {
    await turn();
    assert.equal(built, false, 'the checkpoint was done before the operations between its steps');
    await op();
  }
  await checkpoint;
  await s.put('app', '/state/k5', 'after-checkpoint');

  const expectApp = await liveState(s, 'app');
  const expectOther = await liveState(s, 'other');
  const snaps = await s.listSnaps('app');
  const digests = new Map<string, string>();
  for (const name of snaps) digests.set(name, await s.verifySnapshot('app', name));
  await s.close();

  const reopened = await Store.openDevice(new MemoryDevice(image));
  try {
    // Replay starts at the checkpoint: only its own batch and the put after it are replayed.
    assert.ok(reopened.openReport.batchesReplayed <= 3, `replayed ${reopened.openReport.batchesReplayed} batches`);
    assert.deepEqual(await liveState(reopened, 'app'), expectApp);
    assert.deepEqual(await liveState(reopened, 'other'), expectOther);
    assert.equal(expectApp.get('/state/k1'), 'changed');
    assert.equal(expectApp.has('/state/k2'), false);
    assert.equal(expectApp.get('/state/t1'), 'in-txn');
    assert.equal((await reopened.get('app', '/state/t2'))?.length, 40_000);
    assert.equal(expectOther.has('/state/y'), false);
    assert.deepEqual(await reopened.listSnaps('app'), ['before', 'during']);
    for (const name of snaps) {
      if (name === 'doomed') continue;
      assert.equal(await reopened.verifySnapshot('app', name), digests.get(name), `snapshot ${name}`);
    }
    // The snapshot taken between the steps holds the state of that moment, through its mount too.
    assert.equal(text(await reopened.get('app', '/mnt/during/k1')), 'changed');
    assert.equal(await reopened.get('app', '/mnt/during/k2'), undefined);
    assert.equal(text(await reopened.get('app', '/mnt/during/k3')), 'v3');
    const during = await reopened.diffSnaps('app', 'before', 'during');
    assert.deepEqual([...during.added].sort(), ['/state/new']);
    assert.deepEqual([...during.removed].sort(), ['/state/k2']);
  } finally {
    await reopened.close();
  }
});

test('a checkpoint built in steps of any size encodes exactly what it encodes in one step', () => {
  fc.assert(
    fc.property(
      fc.dictionary(fc.constantFrom('a', 'b', 'app', 'zz'), fc.uniqueArray(fc.stringMatching(/^\/state\/[a-z0-9/]{1,12}$/), { maxLength: 40 }), { maxKeys: 4 }),
      fc.integer({ min: 1, max: 50 }),
      (layout, step) => {
        const trees: Trees = new Map();
        let n = 0;
        for (const [subject, keys] of Object.entries(layout)) {
          const tree = new BTree<string, Entry>();
          for (const key of keys) {
            n++;
            tree.set(key, Entry.unread(n % 7, 64 * n, 20 + key.length, n % 5 === 0 ? [{ segment: 9, offset: n, length: 30 }] : []));
          }
          trees.set(subject, tree);
        }
        const whole = new CheckpointBuild(trees).finish(new SnapshotTable(), new MountTable(), 42);
        const stepped = new CheckpointBuild(trees);
        let steps = 0;
        while (!stepped.step(step)) steps++;
        assert.ok(steps <= Math.ceil(n / step), `${steps} steps for ${n} entries of ${step}`);
        assert.deepEqual(stepped.finish(new SnapshotTable(), new MountTable(), 42), whole);
        const decoded = decodeCheckpoint(whole);
        assert.equal(decoded.nextTxnId, 42);
        assert.equal(decoded.entries.keys.length, n);
        const subjects = Object.keys(layout).filter((s) => (layout[s] ?? []).length > 0).sort();
        assert.deepEqual(decoded.entries.runs.map((r) => r.subject), subjects);
        for (const [i, run] of decoded.entries.runs.entries()) {
          const from = decoded.entries.runs[i - 1]?.end ?? 0;
          assert.deepEqual(decoded.entries.keys.slice(from, run.end), [...(layout[run.subject] ?? [])].sort());
        }
      },
    ),
    { numRuns: 300 },
  );
});
