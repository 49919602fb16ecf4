import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { setTimeout as delay } from 'node:timers/promises';
import { EntryTable } from '../src/engine/entry-table.js';
import { Entry } from '../src/engine/entry.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { StatefsError } from '../src/errors.js';
import { MiB, memoryImage, openMemory, text } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

const isEIO = (err: unknown): boolean => err instanceof StatefsError && err.code === 'EIO';

test('a row reads like an entry: its records, its value, a move, several records', () => {
  const table = new EntryTable();
  const rows: number[] = [];
  // Past the first capacity (1,024 rows), so the columns grow while rows are added.
  for (let i = 0; i < 3000; i++) rows.push(table.addUnread(i % 7, 100 * i, 30 + (i % 5), i % 1000 === 0 ? [{ segment: 9, offset: i, length: 12 }] : []));
  const [first, second] = rows;
  assert.ok(first !== undefined && second !== undefined);
  assert.equal(table.loaded(first), false);
  assert.deepEqual(table.extents(first), [
    { segment: 0, offset: 0, length: 30 },
    { segment: 9, offset: 0, length: 12 },
  ]);
  assert.equal(table.diskBytes(first), 42);
  assert.equal(table.extentCount(second), 1);
  assert.equal(table.segment(rows[2999] ?? -1), 2999 % 7);
  assert.equal(table.offset(rows[2999] ?? -1), 299_900);
  assert.ok(table.hasRecordIn(first, new Set([9])));
  assert.ok(!table.hasRecordIn(second, new Set([9])));
  assert.throws(() => table.value(first), isEIO, 'a row not read yet has no value to give');

  const slab = table.addSlab(new Uint8Array([1, 2, 3, 4, 5, 6]));
  table.fillInSlab(first, slab, 0, 2);
  table.fillInSlab(second, slab, 2, 4);
  assert.ok(table.loaded(first));
  assert.deepEqual([...table.value(second)], [3, 4, 5, 6]);
  assert.deepEqual([...table.copyValue(first)], [1, 2]);
  const into = new Uint8Array(3);
  assert.equal(table.copyValueInto(second, into), 4, 'too small: the length, nothing copied');
  assert.deepEqual([...into], [0, 0, 0]);
  assert.equal(table.copyValueInto(first, into), 2);
  assert.deepEqual([...into], [1, 2, 0]);
  const object = Entry.of(new Uint8Array([3, 4, 5, 6]), []);
  assert.ok(table.sameValue(second, object) && table.sameValue(object, second));
  assert.ok(!table.sameValue(first, second));

  table.moveTo(first, { segment: 4, offset: 8, length: 40 });
  assert.deepEqual(table.extents(first), [{ segment: 4, offset: 8, length: 40 }], 'a move leaves one record');
  assert.deepEqual([...table.value(first)], [1, 2], 'and the same value');
});

test('a slab is dropped once all its rows are released and a checkpoint begun after that is done, not before', () => {
  const table = new EntryTable();
  const a = table.addUnread(0, 0, 20, []);
  const b = table.addUnread(0, 20, 20, []);
  const c = table.addUnread(1, 0, 20, []);
  const one = table.addSlab(new Uint8Array([1, 2]));
  const two = table.addSlab(new Uint8Array([3]));
  table.fillInSlab(a, one, 0, 1);
  table.fillInSlab(b, one, 1, 1);
  table.fillInSlab(c, two, 0, 1);

  const before = table.checkpointStarted();
  table.released(a);
  table.released(c);
  table.checkpointDone(before);
  assert.deepEqual([...table.value(c)], [3], 'the checkpoint began before the release: it may still read the row');
  const next = table.checkpointStarted();
  table.checkpointDone(next);
  assert.throws(() => table.value(c), isEIO, 'released: a read is an error, never another value');
  assert.deepEqual([...table.value(a)], [1], 'a slab with a row still held stays');
  assert.deepEqual([...table.value(b)], [2]);
  table.released(b);
  const last = table.checkpointStarted();
  table.checkpointDone(last);
  assert.throws(() => table.value(a), isEIO);
  assert.throws(() => table.value(b), isEIO);
});

/**
 * The ArrayBuffer bytes held after full collections, once the figure is steady: V8 frees the
 * memory of dead ArrayBuffers on a background thread after a collection, so one reading right
 * after `gc()` may still count them on a busy machine (the suite, two test files at a time).
 */
async function arrayBufferBytes(): Promise<number> {
  setFlagsFromString('--expose-gc');
  const exposed: unknown = runInNewContext('gc');
  if (typeof exposed !== 'function') throw new Error('gc not exposed');
  const gc = exposed as () => void; // checked just above
  let last = -1;
  for (let i = 0; i < 40; i++) {
    gc();
    await delay(50);
    const now = process.memoryUsage().arrayBuffers;
    if (now === last) return now;
    last = now;
  }
  return last;
}

/** `keys` were all just deleted from `s`: two checkpoints later over 2.5 MiB of memory has been let go. Closes `s`. */
async function assertLetGoByCheckpoints(s: Store, keys: readonly string[]): Promise<void> {
  const deleted = await arrayBufferBytes();
  await s.checkpoint();
  await s.checkpoint();
  const released = await arrayBufferBytes();
  assert.ok(deleted - released > 2.5 * MiB, `ArrayBuffers ${String(deleted)} → ${String(released)} bytes`);
  assert.deepEqual(await valuesOf(s, 'app', keys.slice(0, 3)), [undefined, undefined, undefined]);
  await s.close();
}

/**
 * `keys` of subject `app` with `value(i)` each, put into `img` by a store that is closed (and so,
 * once this returns, holds no memory the caller then measures).
 */
async function putAllAndClose(img: Uint8Array, keys: readonly string[], value: (i: number) => string): Promise<void> {
  const first = await openMemory(img, { autoGc: false });
  await first.putMany('app', keys.map((key, i) => [key, value(i)] as const));
  await first.close();
}

async function valuesOf(store: Store, subject: string, keys: readonly string[]): Promise<(string | undefined)[]> {
  const out: (string | undefined)[] = [];
  for (const key of keys) out.push(text(await store.get(subject, key)));
  return out;
}

test('entries loaded at open: snapshots keep them through overwrites, checkpoints, restore, GC and reopen; released ones free their memory', async () => {
  const img = await memoryImage(64 * MiB);
  const keys = Array.from({ length: 6000 }, (_, i) => `/state/k${String(i).padStart(5, '0')}`);
  const old = (i: number): string => `old-${String(i)}-${'x'.repeat(1000)}`;
  const mixed = keys.map((_, i) => (i % 2 === 0 ? `new-${String(i)}` : old(i)));
  const overwriteEven = (store: Store): Promise<void> => store.putMany('app', keys.flatMap((key, i) => (i % 2 === 0 ? [[key, `new-${String(i)}`] as const] : [])));
  let s = await openMemory(img, { autoGc: false });
  await s.putMany('app', keys.map((key, i) => [key, old(i)] as const));
  await s.checkpoint();
  await s.close();

  // Every value now comes from the checkpoint: rows.
  s = await openMemory(img, { autoGc: false });
  assert.deepEqual(await valuesOf(s, 'app', keys), keys.map((_, i) => old(i)));
  await s.snapshot('app', 'before');
  await overwriteEven(s);
  await s.checkpoint();
  await s.checkpoint();
  await s.mountSnap('app', 'app', 'before', '/mnt/before');
  const mounted = keys.map((key) => key.replace('/state/', '/mnt/before/'));
  assert.deepEqual(await valuesOf(s, 'app', mounted), keys.map((_, i) => old(i)), 'the snapshot still holds the rows the live tree let go');
  await s.umount('app', '/mnt/before');
  await s.restoreSnap('app', 'before');
  await s.checkpoint();
  assert.deepEqual(await valuesOf(s, 'app', keys), keys.map((_, i) => old(i)), 'restored: the rows are live again');
  await overwriteEven(s);
  await s.deleteSnap('app', 'before'); // the even keys' rows: held by nothing now
  await s.checkpoint();
  await s.checkpoint();
  const gc = await s.gcNow();
  assert.ok(gc.segmentsFreed > 0 && gc.movedBytes > 0, 'GC emptied segments, moving the odd keys rows');
  assert.deepEqual(await valuesOf(s, 'app', keys), mixed, 'the moved rows read back');
  await s.close();

  // After a reopen the odd keys' ~3 MB of values are rows again. Deleted, nothing holds them,
  // and once checkpoints have passed their memory is let go, while the store is open. No
  // checkpoint runs of itself meanwhile (it could let them go before the first measure).
  s = await openMemory(img, { autoGc: false, checkpointBytes: 1 << 30 });
  assert.deepEqual(await valuesOf(s, 'app', keys), mixed, 'and after a reopen');
  for (const key of keys) await s.delete('app', key);
  await assertLetGoByCheckpoints(s, keys);
});

test('values read on demand: the open and the reads hold none; GC moves keep them in memory, released like the others', async () => {
  const img = await memoryImage(64 * MiB);
  const keys = Array.from({ length: 6000 }, (_, i) => `/state/k${String(i).padStart(5, '0')}`);
  const value = (i: number): string => `${String(i)}-${'x'.repeat(1000)}`;
  await putAllAndClose(img, keys, value);
  // No checkpoint runs of itself meanwhile (it could let memory go between two measures).
  const unopened = await arrayBufferBytes();
  const s = await openMemory(img, { autoGc: false, checkpointBytes: 1 << 30, valueReads: 'on-demand' });
  assert.deepEqual(await valuesOf(s, 'app', keys), keys.map((_, i) => value(i)));
  const read = await arrayBufferBytes();
  assert.ok(read - unopened < 1 * MiB, `ArrayBuffers ${String(unopened)} → ${String(read)} bytes after the open and reads of ~6 MB of values`);
  // GC moves them: their new records may not be durable when next read, so their values are
  // held in memory from then on; deleted, nothing holds them, and once checkpoints have passed
  // their memory is let go, while the store is open. (Half the keys deleted first, so their
  // segments are worth emptying.)
  const kept = keys.map((_, i) => (i % 2 === 1 ? undefined : value(i)));
  for (const [i, key] of keys.entries()) if (i % 2 === 1) await s.delete('app', key);
  await s.checkpoint();
  const moved = await s.gcNow();
  assert.ok(moved.movedBytes > 2.5 * MiB, `GC moved ${String(moved.movedBytes)} bytes`);
  const held = await arrayBufferBytes();
  assert.ok(held - read > 2.5 * MiB, `ArrayBuffers ${String(read)} → ${String(held)} bytes after GC moved the rows`);
  assert.deepEqual(await valuesOf(s, 'app', keys), kept, 'the rows GC moved read back');
  for (const [i, key] of keys.entries()) if (i % 2 === 0) await s.delete('app', key);
  await assertLetGoByCheckpoints(s, keys);
});

test('a value read on demand stays readable while GC has moved it and its new record is not written yet', async () => {
  const img = await memoryImage(16 * MiB);
  const keys = Array.from({ length: 3000 }, (_, i) => `/state/k${String(i).padStart(4, '0')}`);
  const value = (i: number): string => `${String(i)}-${'v'.repeat(500)}`;
  let s = await openMemory(img, { autoGc: false });
  await s.putMany('app', keys.map((key, i) => [key, value(i)] as const));
  await s.checkpoint();
  await s.close();
  // Writes held back until `release` is called: GC's RELOC records are appended (and the rows'
  // records moved to them) but not on the device yet.
  let release = (): void => undefined;
  let held = Promise.resolve();
  let writesStarted = 0;
  class HeldWrites extends MemoryDevice {
    override async write(offset: number, data: Uint8Array): Promise<void> {
      writesStarted++;
      await held;
      return super.write(offset, data);
    }
  }
  s = await Store.openDevice(new HeldWrites(img), { autoGc: false, checkpointBytes: 1 << 30, commitMode: 'background', valueReads: 'on-demand' });
  for (const [i, key] of keys.entries()) if (i % 2 === 1) await s.delete('app', key);
  await s.checkpoint();
  held = new Promise((resolve) => (release = resolve));
  const before = writesStarted;
  const gc = s.gcNow();
  while (writesStarted === before) await new Promise((resolve) => setImmediate(resolve));
  const expected = keys.map((_, i) => (i % 2 === 1 ? undefined : value(i)));
  assert.deepEqual(keys.map((key) => text(s.getSync('app', key))), expected, 'every value reads back while the moves are in flight');
  release();
  assert.ok((await gc).movedBytes > 0);
  assert.deepEqual(await valuesOf(s, 'app', keys), expected);
  await s.close();
});

test('a value read on demand that an overwrite lets go still reads back until the overwrite is durable, though its segment is taken in the same round', async () => {
  // Review: the live tree lets go of the row at once, so its segment is freed and the log may take
  // it for the same round's records, while reads still see the committed tree.
  for (const valueReads of ['at-open', 'on-demand'] as const) {
    const dev = new MemoryDevice(16 * MiB);
    await Store.format(dev, { zeroed: true, segmentSize: 256 * 1024 });
    const first = await Store.openDevice(dev, { autoGc: false });
    await first.put('app', '/state/a', 'AAAA');
    for (let i = 0; i < 14; i++) await first.put('app', '/state/b', new Uint8Array(60 * 1024).fill(i)); // only a's record stays live in its segment
    await first.close();
    const s = await Store.openDevice(new MemoryDevice(dev.bytes.slice()), { autoGc: false, valueReads });
    const writes = [s.put('app', '/state/a', 'new'), ...[1, 2, 3, 4, 5].map((j) => s.put('app', `/state/c${String(j)}`, new Uint8Array(60 * 1024).fill(j)))];
    assert.equal(text(s.getSync('app', '/state/a')), 'AAAA', `${valueReads}: the committed value while the overwrite is in flight`);
    assert.equal(text(await s.get('app', '/state/a')), 'AAAA', valueReads);
    await Promise.all(writes);
    assert.equal(text(s.getSync('app', '/state/a')), 'new', valueReads);
    await s.close();
  }
});

test('values read on demand that deletes let go cost no read and no memory, unless the log takes their segment before the next checkpoint', async () => {
  // Review: reading each into memory as it was let go made a delete of a loaded key a device read,
  // and a slab of 64 KiB each.
  const img = await memoryImage(16 * MiB);
  const keys = Array.from({ length: 3000 }, (_, i) => `/state/k${String(i).padStart(4, '0')}`);
  const value = (i: number): string => `${String(i)}-${'d'.repeat(300)}`;
  await putAllAndClose(img, keys, value);
  class CountingReads extends MemoryDevice {
    reads = 0;
    override readSync(offset: number, into: Uint8Array): void {
      this.reads++;
      super.readSync(offset, into);
    }
  }
  for (const checkpointFirst of [true, false]) {
    const device = new CountingReads(img.slice());
    const s = await Store.openDevice(device, { autoGc: false, checkpointBytes: 1 << 30, valueReads: 'on-demand' });
    const before = await arrayBufferBytes();
    for (const key of keys) await s.delete('app', key);
    assert.equal(device.reads, 0, 'deletes read nothing');
    assert.ok((await arrayBufferBytes()) - before < 1 * MiB, 'and hold nothing');
    if (checkpointFirst) await s.checkpoint(); // nothing can read the let-go rows after it
    const reads = device.reads;
    for (let r = 0; r < 60; r++) await s.put('app', '/state/filler', String(r).padEnd(60_000, 'f')); // the log takes the freed segments
    const kept = device.reads - reads;
    if (checkpointFirst) assert.equal(kept, 0, 'after a checkpoint the freed segments are taken without reads');
    else {
      assert.ok(kept > 0 && kept <= keys.length, `before one, a let-go value is read once, as its segment is taken (${kept} reads)`);
      const grown = (await arrayBufferBytes()) - before;
      assert.ok(grown < 8 * MiB, `the values read then are packed into shared slabs: ArrayBuffers +${grown} bytes`);
    }
    assert.equal(s.getSync('app', keys[0] ?? ''), undefined);
    await s.close();
  }
});

test('a row that GC relocated and a later write replaced in the journal holds no memory after the open (review: its value stayed for good)', async () => {
  const img = await memoryImage(64 * MiB);
  const keys = Array.from({ length: 600 }, (_, i) => `/state/k${String(i).padStart(4, '0')}`);
  const noCheckpoints = { autoGc: false, checkpointBytes: 1 << 30 };
  // In a function of its own, so its stores are gone before the memory is measured. The image
  // is taken as a crash would leave it after the deletes (close would write a checkpoint).
  const build = async (): Promise<Uint8Array> => {
    const first = await openMemory(img, { autoGc: false });
    await first.putMany('app', keys.map((key, i) => [key, `${String(i)}-${'r'.repeat(20_000)}`] as const));
    await first.checkpoint();
    await first.close();
    const second = await openMemory(img, noCheckpoints);
    await second.putMany('app', keys.flatMap((key, i) => (i % 2 === 0 ? [[key, 'small'] as const] : [])));
    await second.checkpoint();
    const gc = await second.gcNow(); // moves odd keys' rows: RELOC records in the journal
    assert.ok(gc.movedBytes > 3 * MiB, `GC moved ${String(gc.movedBytes)} bytes`);
    for (const [i, key] of keys.entries()) if (i % 2 === 1) await second.delete('app', key);
    const crashed = img.slice(); // the next open replays the RELOCs and the deletes after them
    await second.close();
    return crashed;
  };
  const crashed = await build();

  const before = await arrayBufferBytes();
  const s = await openMemory(crashed, noCheckpoints);
  const opened = await arrayBufferBytes();
  assert.deepEqual(await valuesOf(s, 'app', keys.slice(0, 4)), ['small', undefined, 'small', undefined]);
  // The MBs of relocated values nothing holds any more were not kept by the open.
  assert.ok(opened - before < 1.5 * MiB, `ArrayBuffers ${String(before)} → ${String(opened)} bytes after the open`);
  await s.close();
});

test('verifySnapshot of a snapshot deleted while it runs is ENOENT, never the EIO of its values let go (review)', async () => {
  const img = await memoryImage(64 * MiB);
  const keys = Array.from({ length: 40_000 }, (_, i) => `/state/k${String(i)}`);
  let s = await openMemory(img, { autoGc: false });
  await s.putMany('app', keys.map((key) => [key, 'old'] as const));
  await s.checkpoint();
  await s.close();
  s = await openMemory(img, { autoGc: false });
  await s.snapshot('app', 'S'); // its digest is computed in the background, from rows
  const verified = s.verifySnapshot('app', 'S').then(
    () => 'resolved',
    (err: unknown) => (err instanceof StatefsError ? err.code : 'not a StatefsError'),
  );
  await s.putMany('app', keys.map((key) => [key, 'new'] as const));
  await s.deleteSnap('app', 'S');
  await s.checkpoint();
  await s.checkpoint();
  assert.equal(await verified, 'ENOENT');
  await s.close();
});
