import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FaultDevice } from '../src/device/fault-device.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { StatefsError } from '../src/errors.js';
import { memoryImage, text } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

const code = (c: string) => (err: unknown) => err instanceof StatefsError && err.code === c;

function flip(buf: Uint8Array, at: number, mask: number): void {
  buf[at] = (buf[at] ?? 0) ^ mask;
}

/** Byte offset of the record whose key field is `subject NUL key` (the last such record, or the first). */
function recordOffset(image: Uint8Array, subject: string, key: string, which: 'first' | 'last' = 'last'): number {
  const needle = Buffer.from(`${subject}\0${key}`, 'latin1');
  const at = which === 'last' ? Buffer.from(image).lastIndexOf(needle) : Buffer.from(image).indexOf(needle);
  assert.ok(at > 11, `record of ${key} not found`);
  return at - 11;
}

test('group commit: 64 concurrent durable puts share a few flushes', async () => {
  const device = new FaultDevice(await memoryImage());
  const store = await Store.openDevice(device);
  const before = device.flushes;
  await Promise.all(Array.from({ length: 64 }, (_, i) => store.put('app', `/state/k${i}`, `v${i}`)));
  const flushes = device.flushes - before;
  console.log(`group commit: 64 puts, ${flushes} flushes`);
  assert.ok(flushes <= 4, `${flushes} flushes for 64 concurrent puts`);
  for (let i = 0; i < 64; i++) assert.equal(text(await store.get('app', `/state/k${i}`)), `v${i}`);
  await store.close();
});

test('a put resolves only after its flush', async () => {
  const device = new FaultDevice(await memoryImage());
  const store = await Store.openDevice(device);
  const flushesBefore = device.flushes;
  await store.put('app', '/state/k', 'v');
  assert.ok(device.flushes > flushesBefore);
  // What the put wrote is on the durable image, not only in the page cache.
  const reopened = await Store.openDevice(new MemoryDevice(device.powerCut()));
  assert.equal(text(await reopened.get('app', '/state/k')), 'v');
  await reopened.close();
});

test('the last record torn at every byte offset replays to the previous state', async () => {
  const base = await memoryImage();
  const setup = await Store.openDevice(new MemoryDevice(base));
  await setup.put('app', '/state/keep', 'kept');
  await setup.put('app', '/state/x', 'old');
  await setup.close();
  const probe = new FaultDevice(base);
  const probeStore = await Store.openDevice(probe);
  const writesBefore = probe.writes;
  await probeStore.put('app', '/state/x', 'a new value that is torn');
  await probeStore.close();
  assert.equal(probe.writes, writesBefore + 1, 'one put is one device write');
  // record: 15 + key + value, then a 27-byte SYNC record
  const writeLength = 15 + 'app\0/state/x'.length + 'a new value that is torn'.length + 27;
  for (let torn = 0; torn < writeLength; torn++) {
    const device = new FaultDevice(base, { crash: { atWrite: writesBefore + 1, tornBytes: torn } });
    const store = await Store.openDevice(device);
    await assert.rejects(store.put('app', '/state/x', 'a new value that is torn'), code('EIO'));
    await store.close();
    const after = await Store.openDevice(new MemoryDevice(device.diskImage()));
    assert.equal(text(await after.get('app', '/state/x')), 'old', `torn at ${torn}`);
    assert.equal(text(await after.get('app', '/state/keep')), 'kept');
    assert.equal(after.openReport.tornTailAt === undefined, torn === 0, `torn tail reported at ${torn}`);
    // Writing after the torn tail and reopening again never brings the torn bytes back.
    await after.put('app', '/state/y', 'y');
    await after.close();
  }
});

test('damage followed by valid records is EINTEGRITY naming the offset, not a torn tail', async () => {
  const image = await memoryImage();
  const store = await Store.openDevice(new MemoryDevice(image));
  for (let i = 0; i < 40; i++) await store.put('app', `/state/k${i}`, `value-${i}`);
  await store.close();
  {
    // Damage in the last batch, followed only by that batch's own SYNC, is what a device that
    // wrote the in-flight batch out of order leaves: a torn tail (docs/storage/statefs-v3.md §6.2).
    const damaged = image.slice();
    const at = recordOffset(damaged, 'app', '/state/k39');
    flip(damaged, at + 11 + 'app\0/state/k39'.length, 0x01);
    const s = await Store.openDevice(new MemoryDevice(damaged));
    assert.equal(s.openReport.tornTailAt, at);
    assert.equal(await s.get('app', '/state/k39'), undefined);
    assert.equal(text(await s.get('app', '/state/k38')), 'value-38');
    await s.close();
  }
  for (const victim of ['/state/k10', '/state/k38']) {
    const damaged = image.slice();
    const at = recordOffset(damaged, 'app', victim);
    flip(damaged, at + 11 + `app\0${victim}`.length, 0x01); // one bit of the value
    await assert.rejects(Store.openDevice(new MemoryDevice(damaged)), (err: unknown) => {
      assert.ok(err instanceof StatefsError);
      assert.equal(err.code, 'EINTEGRITY');
      assert.equal(err.offset, at, `offset named for ${victim}`);
      assert.match(err.message, new RegExp(`${at}`));
      return true;
    });
  }
});

test('damage in a segment that the log has left behind is EINTEGRITY', async () => {
  const image = await memoryImage();
  const store = await Store.openDevice(new MemoryDevice(image), { checkpointBytes: 1 << 30 });
  const big = new Uint8Array(30_000).fill(7);
  for (let i = 0; i < 30; i++) await store.put('app', `/state/big${i}`, big); // ~3.5 segments
  await store.close();
  const at = recordOffset(image, 'app', '/state/big0', 'first'); // the PUT (a close-time checkpoint names the key too)
  const damaged = image.slice();
  flip(damaged, at + 200, 0x80);
  const atRecord = (err: unknown): boolean => err instanceof StatefsError && err.code === 'EINTEGRITY' && err.offset === at;
  // An open reads every value (read-only or not), unless told to read them on demand: then the
  // read that needs it finds the damage (statefs-v3.md 6.3).
  await assert.rejects(Store.openDevice(new MemoryDevice(damaged)), atRecord);
  await assert.rejects(Store.openDevice(new MemoryDevice(damaged), { readOnly: true }), atRecord);
  const s = await Store.openDevice(new MemoryDevice(damaged), { autoGc: false, valueReads: 'on-demand' });
  try {
    assert.throws(() => s.getSync('app', '/state/big0'), atRecord);
    assert.deepEqual(s.getSync('app', '/state/big1'), big);
  } finally {
    await s.close();
  }
});

test('EIO on a flush fails the affected writes and refuses further writes until reopened', async () => {
  const base = await memoryImage();
  const probe = new FaultDevice(base);
  const s0 = await Store.openDevice(probe);
  await s0.put('app', '/state/a', '1');
  await s0.close();
  const device = new FaultDevice(base, { failFlush: { at: probe.flushes + 1, code: 'EIO' } });
  const store = await Store.openDevice(device);
  await store.put('app', '/state/a', '1');
  const results = await Promise.allSettled([store.put('app', '/state/b', '2'), store.put('app', '/state/c', '3')]);
  for (const r of results) assert.ok(r.status === 'rejected' && code('EIO')(r.reason));
  await assert.rejects(store.put('app', '/state/d', '4'), code('EIO'));
  await assert.rejects(store.delete('app', '/state/a'), code('EIO'));
  // Readers still see exactly the acknowledged state.
  assert.equal(text(await store.get('app', '/state/a')), '1');
  assert.equal(await store.get('app', '/state/b'), undefined);
  await store.close();
  const reopened = await Store.openDevice(new MemoryDevice(device.diskImage()));
  assert.equal(text(await reopened.get('app', '/state/a')), '1');
  assert.equal(await reopened.get('app', '/state/b'), undefined);
  await reopened.put('app', '/state/b', 'works again');
  await reopened.close();
});

test('ENOSPC from the device reaches the writer with its code', async () => {
  const base = await memoryImage();
  const device = new FaultDevice(base, { failWrite: { at: 1, code: 'ENOSPC' } });
  const store = await Store.openDevice(device);
  await assert.rejects(store.put('app', '/state/a', '1'), code('ENOSPC'));
  await assert.rejects(store.put('app', '/state/a', '1'), code('EIO'));
  await store.close();
});

test('checkpoints bound replay: reopen replays the journal since the last checkpoint only', async () => {
  const image = await memoryImage();
  const store = await Store.openDevice(new MemoryDevice(image), { checkpointBytes: 64 * 1024 });
  for (let round = 0; round < 20; round++) {
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.put('app', `/state/k${i}`, `round ${round} value ${i} `.repeat(10))));
  }
  await store.close();
  const r = await Store.openDevice(new MemoryDevice(image));
  assert.ok(r.openReport.recordsReplayed < 400, `replayed ${r.openReport.recordsReplayed} records of 1000 writes`);
  for (let i = 0; i < 50; i++) assert.equal(text(await r.get('app', `/state/k${i}`)), `round 19 value ${i} `.repeat(10));
  const stat = await r.stat();
  assert.ok(stat.segmentsUsed < stat.segments / 2, `overwritten segments were freed (${stat.segmentsUsed} used)`);
  await r.close();
});

test('a blank device is EINVAL; both superblocks damaged is EINTEGRITY', async () => {
  await assert.rejects(Store.openDevice(new MemoryDevice(4 << 20)), code('EINVAL'));
  const image = await memoryImage();
  flip(image, 8, 1);
  flip(image, image.length - 4096 + 8, 1);
  await assert.rejects(Store.openDevice(new MemoryDevice(image)), code('EINTEGRITY'));
});

test('one damaged superblock: the other copy is used', async () => {
  const image = await memoryImage();
  const s = await Store.openDevice(new MemoryDevice(image), { checkpointBytes: 16 * 1024 });
  for (let i = 0; i < 200; i++) await s.put('app', `/state/k${i % 20}`, `v${i}`.repeat(20));
  await s.close();
  for (const slot of [0, image.length - 4096]) {
    const damaged = image.slice();
    flip(damaged, slot + 20, 0xff);
    const r = await Store.openDevice(new MemoryDevice(damaged));
    assert.equal(text(await r.get('app', '/state/k19')), 'v199'.repeat(20));
    await r.close();
  }
});
