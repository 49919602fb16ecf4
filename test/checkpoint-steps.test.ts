import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MemoryDevice } from '../src/device/memory-device.js';
import { decodeCheckpoint } from '../src/format/checkpoint.js';
import { Op } from '../src/format/opcodes.js';
import { decodeRecord } from '../src/format/record.js';
import { decodeTxnMark } from '../src/format/txn-records.js';
import { BTree } from '../src/engine/btree.js';
import { CheckpointBuild } from '../src/engine/checkpoint-builder.js';
import { EntryTable, type EntryRef } from '../src/engine/entry-table.js';
import type { Trees } from '../src/engine/keyspace.js';
import { MountTable } from '../src/engine/mount-table.js';
import { SnapshotTable } from '../src/engine/snapshot-table.js';
import { Store } from '../src/engine/store.js';
import type { OpenOptions } from '../src/engine/store-types.js';
import { MiB, memoryImage, openMemory, rng, text } from './helpers.js';
import { StatefsError } from '../src/errors.js';
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
        const table = new EntryTable();
        let n = 0;
        for (const [subject, keys] of Object.entries(layout)) {
          const tree = new BTree<string, EntryRef>();
          for (const key of keys) {
            n++;
            tree.set(key, table.addUnread(n % 7, 64 * n, 20 + key.length, n % 5 === 0 ? [{ segment: 9, offset: n, length: 30 }] : []));
          }
          trees.set(subject, tree);
        }
        const whole = new CheckpointBuild(trees, table).finish(new SnapshotTable(), new MountTable(), 42);
        const stepped = new CheckpointBuild(trees, table);
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

const big = (tag: string): string => 'x'.repeat(60_000) + tag;

/** The bytes of records `subject`'s live state and snapshots hold, as `stat()` counts them. */
async function usedBytesOf(s: Store, subject: string): Promise<number | undefined> {
  return (await s.stat()).subjects.find((x) => x.subject === subject)?.usedBytes;
}

/** Open `image` as it would be after a crash now and after a clean close, and run `check` on each. */
async function reopenBoth(crashed: Uint8Array, closed: Uint8Array, check: (s: Store, label: string) => Promise<void>): Promise<void> {
  for (const [label, image] of [['after a crash', crashed], ['after a clean close', closed]] as const) {
    const s = await Store.openDevice(new MemoryDevice(image), { autoGc: false });
    try {
      await check(s, label);
    } finally {
      await s.close();
    }
  }
}

test('a snapshot taken while a checkpoint is built keeps the records it names, even once their segments are reused', async () => {
  const image = await memoryImage(4 * MiB);
  const s = await Store.openDevice(new MemoryDevice(image), { ...STEPPED, checkpointStepEntries: 1 });
  await s.putMany('app', Array.from({ length: 200 }, (_, i): [string, string] => [`/state/k${i}`, `v${i}`]));
  for (let i = 0; i < 5; i++) await s.put('junk', '/state/filler', big(`p${i}`));
  const checkpoint = s.checkpoint();
  await turn();
  await s.put('app', '/state/k', `B-${big('b')}`);
  await s.snapshot('app', 'S2'); // shares the value of the live key written after the checkpoint began
  const usedDuring = await usedBytesOf(s, 'app');
  for (let i = 0; i < 8; i++) {
    await turn();
    await s.put('junk', '/state/filler', big(String(i)));
  }
  await checkpoint;
  const usedBefore = await usedBytesOf(s, 'app');
  assert.equal(usedBefore, usedDuring, 'the checkpoint stored no second copy of the shared value');
  for (let i = 0; i < 30; i++) await s.put('junk', '/state/filler2', big(`f${i}`)); // reuses every free segment
  await s.sync();
  const digest = await s.verifySnapshot('app', 'S2');
  const crashed = new Uint8Array(image);
  await s.close();
  await reopenBoth(crashed, image, async (r, label) => {
    assert.equal(text(await r.get('app', '/state/k'))?.slice(0, 2), 'B-', label);
    assert.equal(await r.verifySnapshot('app', 'S2'), digest, label);
    assert.equal(await usedBytesOf(r, 'app'), usedBefore, `${label}: the subject's bytes as counted before`);
  });
});

test('a restore while a checkpoint is built leaves the snapshot its records', async () => {
  const image = await memoryImage(4 * MiB);
  const s = await Store.openDevice(new MemoryDevice(image), { ...STEPPED, checkpointStepEntries: 1 });
  await s.put('app', '/state/a', `A0-${big('0')}`);
  await s.snapshot('app', 'S');
  await s.put('app', '/state/a', 'A1');
  for (let i = 0; i < 12; i++) await s.put('app', '/state/filler', big(String(i)));
  await s.putMany('app', Array.from({ length: 40 }, (_, i): [string, string] => [`/state/k${i}`, `v${i}`]));
  await s.checkpoint(); // the snapshot's record is now outside the log chain, held only by it
  const checkpoint = s.checkpoint();
  await turn();
  await s.restoreSnap('app', 'S');
  await checkpoint;
  for (let i = 0; i < 40; i++) await s.put('app', '/state/filler2', big(`f${i}`));
  await s.sync();
  const digest = await s.verifySnapshot('app', 'S');
  const crashed = new Uint8Array(image);
  await s.close();
  await reopenBoth(crashed, image, async (r, label) => {
    assert.equal(text(await r.get('app', '/state/a'))?.slice(0, 3), 'A0-', label);
    assert.equal(await r.verifySnapshot('app', 'S'), digest, label);
  });
});

test('writes made while a checkpoint is built that leave no room for it beside them: the checkpoint is written as of its end, and no write fails', async () => {
  const image = await memoryImage(4 * MiB);
  const s = await Store.openDevice(new MemoryDevice(image), { checkpointStepEntries: 1, checkpointBytes: 64 * MiB });
  await s.putMany('app', Array.from({ length: 400 }, (_, i): [string, string] => [`/state/k${i}`, `v${i}`]));
  await s.checkpoint();
  const progress = { done: false };
  const checkpoint = s.checkpoint().finally(() => {
    progress.done = true;
  });
  let puts = 0;
  while (!progress.done) await s.put('app', `/state/big${puts++ % 30}`, big(String(puts))); // ENOSPC would throw here
  await checkpoint;
  assert.ok(puts > 30, `only ${puts} puts ran beside the checkpoint`);
  await s.put('app', '/state/after', 'y');
  const expect = await liveState(s, 'app');
  await s.close();
  const r = await Store.openDevice(new MemoryDevice(image));
  try {
    assert.deepEqual(await liveState(r, 'app'), expect);
  } finally {
    await r.close();
  }
});

test('gcNow waiting for a checkpoint does not start once the store is closing', async () => {
  const image = await memoryImage(4 * MiB);
  const seed = await Store.openDevice(new MemoryDevice(image), { autoGc: false, checkpointBytes: 64 * MiB });
  await seed.putMany('app', Array.from({ length: 300 }, (_, i): [string, string] => [`/state/k${i}`, `v${i}`]));
  for (let i = 0; i < 28; i++) await seed.put('app', '/state/g', big(String(i)));
  await seed.close();
  let closed = false;
  let lateWrites = 0;
  const device = new MemoryDevice(image);
  const write = device.write.bind(device);
  device.write = (offset, data) => {
    if (closed) lateWrites++;
    return write(offset, data);
  };
  const close = device.close.bind(device);
  device.close = () => {
    closed = true;
    return close();
  };
  const s = await Store.openDevice(device, { checkpointStepEntries: 1, checkpointBytes: 64 * MiB, autoGc: false });
  const checkpoint = s.checkpoint();
  await turn();
  const gc = s.gcNow({ maxSegments: 6 });
  await turn();
  await s.close();
  await checkpoint;
  await assert.rejects(gc, (err: unknown) => err instanceof Error && 'code' in err && err.code === 'EBADF');
  assert.equal(lateWrites, 0);
});

test('random writes, snapshots, restores and GC beside checkpoints built 1-4 entries per turn: every durable image holds the model', async () => {
  const first = Number(process.env.STATEFS_SEED ?? 1);
  const runs = Number(process.env.STATEFS_CHECKPOINT_RUNS ?? 40);
  let crashes = 0;
  for (let seed = first; seed < first + runs; seed++) {
    const rand = rng(seed);
    const image = await memoryImage(4 * MiB);
    const s = await Store.openDevice(new MemoryDevice(image), { checkpointStepEntries: 1 + Math.floor(rand() * 4), checkpointBytes: 64 * MiB, autoGc: rand() < 0.5 });
    const model = new Map<string, string>();
    const snaps = new Map<string, Map<string, string>>();
    await s.putMany('app', Array.from({ length: 60 }, (_, i): [string, string] => [`/state/k${i}`, `v${i}`]));
    for (let i = 0; i < 60; i++) model.set(`/state/k${i}`, `v${i}`);
    let running: Promise<void> | undefined;
    let snapCount = 0;
    try {
      for (let step = 0; step < 250; step++) {
        const x = rand();
        const key = `/state/k${Math.floor(rand() * 70)}`;
        const names = [...snaps.keys()];
        const pick = names[Math.floor(rand() * names.length)];
        try {
          if (x < 0.35) {
            const value = `${rand() < 0.2 ? 'B'.repeat(20_000 + Math.floor(rand() * 40_000)) : 'v'}${step}`;
            await s.put('app', key, value);
            model.set(key, value);
          } else if (x < 0.45) {
            if (model.has(key)) {
              await s.delete('app', key);
              model.delete(key);
            }
          } else if (x < 0.52) {
            const name = `s${snapCount++}`;
            await s.snapshot('app', name);
            snaps.set(name, new Map(model));
          } else if (x < 0.57) {
            if (pick !== undefined) {
              await s.restoreSnap('app', pick);
              model.clear();
              for (const [k, v] of snaps.get(pick) ?? []) model.set(k, v);
            }
          } else if (x < 0.61) {
            if (pick !== undefined && names.length > 2) {
              await s.deleteSnap('app', pick);
              snaps.delete(pick);
            }
          } else if (x < 0.68) {
            running ??= s
              .checkpoint()
              .catch(() => undefined)
              .finally(() => {
                running = undefined;
              });
          } else if (x < 0.71) {
            await s.gcNow().catch(() => undefined);
          } else if (x < 0.9) {
            await turn();
          } else {
            // A crash now: what is on the device reopens to the model (every write above was acknowledged).
            await s.sync();
            crashes++;
            const crashed = await Store.openDevice(new MemoryDevice(new Uint8Array(image)), { autoGc: false });
            try {
              assert.deepEqual(await liveState(crashed, 'app'), new Map(model), `seed ${seed} step ${step}: live state`);
              for (const [name, want] of snaps) {
                await crashed.mountSnap('app', 'app', name, `/mnt/${name}`);
                const got = new Map<string, string | undefined>();
                for (const k of (await crashed.list('app', `/mnt/${name}/`, { limit: 10_000 })).keys) got.set(`/state/${k.slice(`/mnt/${name}/`.length)}`, text(await crashed.get('app', k)));
                assert.deepEqual(got, new Map(want), `seed ${seed} step ${step}: snapshot ${name}`);
              }
            } finally {
              await crashed.close();
            }
          }
        } catch (err) {
          // A full image refuses writes: the model did not apply them either.
          if (err instanceof StatefsError && err.code === 'ENOSPC') continue;
          throw err;
        }
      }
    } finally {
      await running;
      await s.close();
    }
  }
  assert.ok(crashes > runs, `only ${crashes} crash images checked`);
  console.log(`checkpoint steps: seeds ${first}..${first + runs - 1}, ${crashes} crash images checked`);
});

test('checkpointStepEntries must be a whole number of at least 1, or Infinity (one turn)', async () => {
  for (const bad of [0, -1, 1.5, Number.NaN]) {
    await assert.rejects(Store.openDevice(new MemoryDevice(await memoryImage()), { checkpointStepEntries: bad }), (err: unknown) => err instanceof StatefsError && err.code === 'EINVAL', String(bad));
  }
  const s = await Store.openDevice(new MemoryDevice(await memoryImage()), { checkpointStepEntries: Number.POSITIVE_INFINITY });
  await s.putMany('app', Array.from({ length: 50 }, (_, i): [string, string] => [`/state/k${i}`, `v${i}`]));
  await s.checkpoint();
  assert.equal(text(await s.get('app', '/state/k7')), 'v7');
  await s.close();
});

test('transactions that wait for a checkpoint take their ids after waiting: ids follow log order', async () => {
  const image = await memoryImage(4 * MiB);
  const s = await Store.openDevice(new MemoryDevice(image), { checkpointStepEntries: 1, checkpointBytes: 64 * MiB, autoGc: false });
  await s.putMany('app', Array.from({ length: 400 }, (_, i): [string, string] => [`/state/k${i}`, `v${i}`]));
  let n = 0;
  for (let size = 60_000; size >= 1; size = Math.floor(size / 2)) {
    try {
      for (;;) await s.put('app', `/state/f${n++}`, 'x'.repeat(size));
    } catch (err) {
      if (!(err instanceof StatefsError && err.code === 'ENOSPC')) throw err;
    }
  }
  const checkpoint = s.checkpoint();
  const t1 = s.begin('app');
  await t1.delete('app', '/state/k1');
  const t2 = s.begin('app');
  await t2.delete('app', '/state/k2');
  await Promise.all([t1.commit(), t2.commit(), checkpoint]);
  await s.close();
  // Every PREPARE on the image, in log order of this run (both are in the image's last segments written).
  const ids: number[] = [];
  for (let at = 0; at + 15 < image.length; at++) {
    if (image[at] !== 0x46 || image[at + 1] !== 0x53 || image[at + 2] !== 0x58 || image[at + 3] !== 0x4e || image[at + 4] !== Op.PREPARE) continue;
    const r = decodeRecord(image, at);
    const mark = r.ok ? decodeTxnMark(r.record.value) : undefined;
    if (mark !== undefined) ids.push(mark.txnId);
  }
  assert.deepEqual([...ids].sort((a, b) => a - b), [1, 2]);
});

test('a snapshot taken while a checkpoint is built makes the build start over in steps, not finish in one turn', async () => {
  const s = await Store.openDevice(new MemoryDevice(await memoryImage(4 * MiB)), { ...STEPPED, checkpointStepEntries: 1 });
  const keys = 300;
  await s.putMany('app', Array.from({ length: keys }, (_, i): [string, string] => [`/state/k${i}`, `v${i}`]));
  const progress = { done: false };
  const checkpoint = s.checkpoint().finally(() => {
    progress.done = true;
  });
  let turns = 0;
  while (turns < 50) {
    await turn();
    turns++;
  }
  await s.snapshot('app', 'midway');
  while (!progress.done) {
    await turn();
    turns++;
  }
  await checkpoint;
  // One entry per turn: the restarted build alone takes about `keys` turns after the snapshot. A
  // build that went on from where it was (about 250 turns left) and then built again in one
  // turn, or one that finished in one turn at once, ends well before.
  assert.ok(turns >= 50 + keys - 10, `the checkpoint ended ${turns} turns after it began`);
  console.log(`checkpoint restarted by a snapshot: ended ${turns} turns after it began`);
  await s.close();
});

test('a loop of awaited puts on a memory image lets checkpoints built in steps finish as it goes (a crash copy replays a short journal)', async () => {
  const bytes = await memoryImage(32 * MiB);
  const s = await openMemory(bytes, { checkpointBytes: MiB, autoGc: false });
  const value = new Uint8Array(100).fill(7);
  const puts = 60_000; // ~9 MiB of records: nine times the checkpoint threshold
  try {
    for (let i = 0; i < puts; i++) await s.put('app', `/state/k${i}`, value);
    // The device's writes complete at once, so nothing but the writer lets the loop turn.
    const crashed = await openMemory(bytes.slice(), { autoGc: false });
    try {
      const replayed = crashed.openReport.recordsReplayed;
      assert.ok(replayed < puts / 3, `replayed ${replayed} of ${puts} records: checkpoints were written during the loop`);
      assert.deepEqual(crashed.getSync('app', `/state/k${puts - 1}`), value);
    } finally {
      await crashed.close();
    }
  } finally {
    await s.close();
  }
});
