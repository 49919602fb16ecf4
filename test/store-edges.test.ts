import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { MemoryDevice } from '../src/device/memory-device.js';
import { fsckDevice } from '../src/engine/fsck.js';
import { Store } from '../src/engine/store.js';
import { StatefsError, type ErrorCode } from '../src/errors.js';
import { MiB, memoryImage, openMemory, text, withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';
import { record } from './record-encoder.js';

guardResources();

// Edges of the embedded API that the feature tests pass by: sizes and geometry, empty subjects,
// reads through mounts, limits, and legacy images upgraded by each kind of first write.

const code = (c: ErrorCode) => (err: unknown): boolean => err instanceof StatefsError && err.code === c;

test('Store.create without a size makes a sparse 256 MiB image with 1 MiB segments', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'default.img');
    const s = await Store.create(path);
    try {
      const st = await s.stat();
      assert.equal(st.capacity, 256 * MiB);
      assert.equal(st.segmentSize, MiB);
      assert.ok((await stat(path)).blocks * 512 < 16 * MiB, 'the file is sparse');
    } finally {
      await s.close();
    }
  });
});

test('format refuses a segment size that is not a multiple of 4096 and a device too small for four segments; open refuses a device too small for its superblocks', async () => {
  await assert.rejects(Store.format(new MemoryDevice(4 * MiB), { segmentSize: 300_000, zeroed: true }), code('EINVAL'));
  await assert.rejects(Store.format(new MemoryDevice(4 * MiB), { segmentSize: 128 * 1024, zeroed: true }), code('EINVAL'));
  await assert.rejects(Store.format(new MemoryDevice(MiB), { zeroed: true }), code('EINVAL'));
  // The message says the smallest size (it said "holds -1 segments" below the superblocks).
  await assert.rejects(Store.format(new MemoryDevice(1000), { zeroed: true }), {
    message: 'EINVAL: invalid: image of 1000 bytes is too small: with 256 KiB segments it must be at least 1032 KiB (4 segments and two 4 KiB superblock slots)',
  });
  await assert.rejects(Store.openDevice(new MemoryDevice(4096)), code('EINVAL'));
});

test('formatting over a used device zeroes it first: nothing of the old image comes back', async () => {
  const img = await memoryImage();
  const old = await openMemory(img, { autoGc: false });
  for (let i = 0; i < 50; i++) await old.put('app', `/state/k${i}`, 'x'.repeat(2000));
  await old.close();
  await Store.format(new MemoryDevice(img)); // not `zeroed`: the device still holds the old log
  const s = await openMemory(img);
  try {
    assert.deepEqual((await s.list('app')).keys, []);
    assert.equal((await s.stat()).liveBytes, 0);
  } finally {
    await s.close();
  }
  assert.equal((await fsckDevice(new MemoryDevice(img))).exitCode, 0);
});

test('a device that starts with a record other than a v1 PUT, DELETE or CHECKPOINT is not taken for a legacy image', async () => {
  const img = new Uint8Array(4 * MiB);
  img.set(record(0x14, Buffer.alloc(0), Buffer.alloc(12)), 0); // a SYNC record at byte 0
  await assert.rejects(Store.openDevice(new MemoryDevice(img)), (err: unknown) => err instanceof StatefsError && err.code !== 'EIO');
});

test('an empty subject: snapshot, diff against @live and restore all work on nothing', async () => {
  const s = await openMemory(await memoryImage());
  try {
    await s.snapshot('empty', 'none');
    assert.deepEqual(await s.diffSnaps('empty', 'none', '@live'), { added: [], removed: [], changed: [] });
    await s.put('empty', '/state/later', 'v');
    assert.deepEqual(await s.diffSnaps('empty', 'none', '@live'), { added: ['/state/later'], removed: [], changed: [] });
    await s.restoreSnap('empty', 'none');
    assert.deepEqual((await s.list('empty')).keys, []);
    await s.snapshot('never', 'written');
    await s.restoreSnap('never', 'written'); // a subject that never had a key
    assert.deepEqual((await s.list('never')).keys, []);
  } finally {
    await s.close();
  }
});

test('reads through a mount: the mount path itself holds no value, paging works, an unmounted /mnt path is ENOENT', async () => {
  const s = await openMemory(await memoryImage());
  try {
    for (const k of ['a', 'b', 'c', 'd']) await s.put('app', `/state/${k}`, k);
    await s.snapshot('app', 'snap');
    await s.mountSnap('app', 'app', 'snap', '/mnt/view');
    assert.equal(await s.get('app', '/mnt/view'), undefined);
    assert.equal(text(await s.get('app', '/mnt/view/c')), 'c');
    assert.deepEqual(await s.list('app', '/mnt/view/', { limit: 2 }), { keys: ['/mnt/view/a', '/mnt/view/b'], next: '/mnt/view/b' });
    assert.deepEqual(await s.list('app', '/mnt/view/', { limit: 2, after: '/mnt/view/b' }), { keys: ['/mnt/view/c', '/mnt/view/d'] });
    // An `after` outside the mount starts from its beginning.
    assert.deepEqual((await s.list('app', '/mnt/view/', { after: '/mnt/a' })).keys, ['/mnt/view/a', '/mnt/view/b', '/mnt/view/c', '/mnt/view/d']);
    await assert.rejects(s.list('app', '/mnt/other/'), code('ENOENT'));
    await assert.rejects(s.get('app', '/mnt/other/a'), code('ENOENT'));
  } finally {
    await s.close();
  }
});

test('limits: a listing prefix over 255 bytes is ENAMETOOLONG; gc bounds must be finite and positive; a transaction deleting past its key limit is EFBIG', async () => {
  const s = await openMemory(await memoryImage(), { txnLimits: { keys: 2 } });
  try {
    await assert.rejects(s.list('app', `/state/${'p'.repeat(249)}`), code('ENAMETOOLONG'));
    await assert.rejects(s.gcNow({ maxSegments: 0 }), code('EINVAL'));
    await assert.rejects(s.gcPlan({ maxBytes: Number.NaN }), code('EINVAL'));
    await assert.rejects(s.gcPlan({ maxBytes: Number.POSITIVE_INFINITY }), code('EINVAL'));
    for (const k of ['a', 'b', 'c']) await s.put('app', `/state/${k}`, k);
    const t = s.begin('app');
    await t.delete('app', '/state/a');
    await t.delete('app', '/state/b');
    await assert.rejects(t.delete('app', '/state/c'), code('EFBIG'));
    await t.delete('app', '/state/a').catch(() => undefined); // the same key again is not a new one
    await t.commit();
    assert.deepEqual((await s.list('app')).keys, ['/state/c']);
  } finally {
    await s.close();
  }
});

// ---- legacy v1 images: any first write upgrades them in place --------------------------------

function v1Image(): Uint8Array {
  const img = new Uint8Array(4 * MiB);
  img.set(Buffer.concat([record(1, Buffer.from('/state/a'), Buffer.from('one')), record(1, Buffer.from('/state/b'), Buffer.from('two'))]), 0);
  return img;
}

const firstWrites: [string, (s: Store) => Promise<unknown>][] = [
  ['delete', (s) => s.delete('legacy', '/state/b')],
  ['transaction', async (s) => {
    const t = s.begin('legacy');
    await t.put('legacy', '/state/t', 'txn');
    await t.commit();
  }],
  ['snapshot', (s) => s.snapshot('legacy', 'first')],
  ['gc', (s) => s.gcNow()],
];

for (const [name, write] of firstWrites) {
  test(`a legacy v1 image whose first write is a ${name} is upgraded to v3 and keeps its keys`, async () => {
    const img = v1Image();
    const s = await Store.openDevice(new MemoryDevice(img));
    assert.equal(s.openReport.format, 'legacy-v1');
    await write(s);
    await s.close();
    const r = await Store.openDevice(new MemoryDevice(img));
    try {
      assert.equal(r.openReport.format, 'v3');
      assert.equal(text(await r.get('legacy', '/state/a')), 'one');
    } finally {
      await r.close();
    }
    assert.equal((await fsckDevice(new MemoryDevice(img))).exitCode, 0);
  });
}

test('a legacy v1 image has no snapshot to mount: ENOENT, and it stays v1', async () => {
  const img = v1Image();
  const s = await Store.openDevice(new MemoryDevice(img));
  await assert.rejects(s.mountSnap('legacy', 'legacy', 'none', '/mnt/x'), code('ENOENT'));
  await s.close();
  const r = await Store.openDevice(new MemoryDevice(img));
  assert.equal(r.openReport.format, 'legacy-v1');
  await r.close();
});

test('a transaction value of several chunks that straddles a segment boundary reads back whole: get, verify, reopen, fsck', async () => {
  const img = await memoryImage();
  const s = await openMemory(img, { autoGc: false });
  const segment = (await s.stat()).segmentSize;
  // Fill the first segment to within 20 KiB of its end, so the 64 KiB value's chunks cross into the next.
  for (let i = 0; (await s.stat()).usedBytes < segment - 20 * 1024; i++) await s.put('app', `/state/fill${i}`, 'f'.repeat(4000));
  const big = Buffer.alloc(64 * 1024, 0x42);
  big.write('start', 0);
  big.write('end', big.length - 3);
  const t = s.begin('app');
  await t.put('app', '/state/big', big);
  await t.commit();
  await s.snapshot('app', 'with-big');
  const digest = await s.verifySnapshot('app', 'with-big');
  assert.deepEqual(Buffer.from((await s.get('app', '/state/big')) ?? []), big);
  await s.checkpoint(); // the next open reads the value from its records, not from the log's replay
  await s.close();
  const r = await openMemory(img);
  try {
    assert.deepEqual(Buffer.from((await r.get('app', '/state/big')) ?? []), big);
    assert.equal(await r.verifySnapshot('app', 'with-big'), digest);
  } finally {
    await r.close();
  }
  const report = await fsckDevice(new MemoryDevice(img));
  assert.equal(report.exitCode, 0, JSON.stringify(report.findings));
});

test('a superblock write that fails inside the reclaim before a put gives that put EIO, not ENOSPC', async () => {
  // A device whose superblock slots (the first and last 4 KiB) refuse writes once armed.
  class SuperblockFailDevice extends MemoryDevice {
    armed = false;
    override write(offset: number, data: Uint8Array): Promise<void> {
      if (this.armed && (offset === 0 || offset === this.size - 4096)) return Promise.reject(StatefsError.EIO('superblock slot refused', { op: 'write' }));
      return super.write(offset, data);
    }
  }
  const device = new SuperblockFailDevice(await memoryImage(4 * MiB));
  // No checkpoint before the image is full: the first is the one the reclaim writes.
  const s = await Store.openDevice(device, { checkpointBytes: 1e12 });
  try {
    device.armed = true;
    let failure: unknown;
    for (let i = 0; i < 2000 && failure === undefined; i++) {
      await s.put('app', `/state/k${i % 20}`, 'x'.repeat(20_000)).catch((err: unknown) => {
        failure = err;
      });
    }
    assert.ok(code('EIO')(failure), `got ${String(failure)}`);
    await assert.rejects(s.put('app', '/state/after', 'v'), code('EIO'), 'and every later write');
  } finally {
    await s.close().catch(() => undefined);
  }
});
