import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FaultDevice } from '../src/device/fault-device.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { MiB, memoryImage, openMemory, text } from './helpers.js';

const keyOf = (i: number): string => `/state/bulk/k${String(i).padStart(5, '0')}`;

test('putMany stores every value, the last of a repeated key wins, and reads and lists see them', async () => {
  const store = await openMemory(await memoryImage());
  await store.put('app', '/state/bulk/k00001', 'old');
  await store.putMany('app', [
    [keyOf(1), 'one'],
    [keyOf(2), new Uint8Array([2, 2])],
    [keyOf(1), 'uno'],
    ['/state/other/x', ''],
  ]);
  assert.equal(text(await store.get('app', keyOf(1))), 'uno');
  assert.deepEqual(await store.get('app', keyOf(2)), new Uint8Array([2, 2]));
  assert.equal(text(await store.get('app', '/state/other/x')), '');
  assert.deepEqual((await store.list('app', '/state/')).keys, [keyOf(1), keyOf(2), '/state/other/x']);
  await store.putMany('app', []); // nothing to write: resolves at once
  await store.close();
});

test('putMany refuses a batch whole: nothing is written when any entry breaks a rule', async () => {
  const store = await openMemory(await memoryImage());
  await store.put('app', '/state/file', 'v');
  await store.put('app', '/state/dir/child', 'v');
  const refused: [string, [string, string][]][] = [
    ['EINVAL', [[keyOf(1), 'a'], ['/elsewhere/k', 'b']]],
    ['ENAMETOOLONG', [[keyOf(1), 'a'], [`/state/${'x'.repeat(300)}`, 'b']]],
    ['ENOTDIR', [[keyOf(1), 'a'], ['/state/file/below', 'b']]],
    ['EISDIR', [[keyOf(1), 'a'], ['/state/dir', 'b']]],
    ['ENOTDIR', [[keyOf(1), 'a'], ['/state/p', 'b'], ['/state/p/q', 'c']]], // conflict inside the batch
    ['EISDIR', [[keyOf(1), 'a'], ['/state/p/q', 'b'], ['/state/p', 'c']]],
    ['EFBIG', [[keyOf(1), 'a'], [keyOf(2), 'x'.repeat(70_000)]]],
  ];
  for (const [code, batch] of refused) {
    await assert.rejects(store.putMany('app', batch), { code }, `${code} for ${JSON.stringify(batch.map(([k]) => k))}`);
    assert.equal(await store.get('app', keyOf(1)), undefined, `${code}: the valid entries before the bad one were not written`);
  }
  assert.deepEqual((await store.list('app', '/state/')).keys, ['/state/dir/child', '/state/file']);
  await store.close();
});

test('putMany over the free space is ENOSPC before anything is written; over the hard quota EDQUOTA', async () => {
  const store = await openMemory(await memoryImage(2 * MiB), { autoGc: false });
  const big = Array.from({ length: 400 }, (_, i): [string, Uint8Array] => [keyOf(i), new Uint8Array(10_000)]);
  await assert.rejects(store.putMany('app', big), { code: 'ENOSPC' });
  assert.equal((await store.list('app', '/state/')).keys.length, 0);
  await store.put('app', '/state/still-writable', 'yes');
  await store.close();

  const limited = await openMemory(await memoryImage(), { quotas: { app: { soft: 1_000, hard: 5_000 } } });
  limited.on('marker', () => undefined);
  const batch = Array.from({ length: 60 }, (_, i): [string, string] => [keyOf(i), 'v'.repeat(100)]);
  await assert.rejects(limited.putMany('app', batch), { code: 'EDQUOTA' });
  assert.equal((await limited.list('app', '/state/')).keys.length, 0);
  await limited.close();
});

test('a crash at every device write of a multi-segment putMany leaves a prefix of the batch, never a gap', async () => {
  // 3,000 values of 200 bytes: about 700 KB of records, several 256 KiB segments, several journal batches.
  const batch = Array.from({ length: 3000 }, (_, i): [string, Uint8Array] => [keyOf(i), new Uint8Array(200).fill(i % 251)]);
  const base = await memoryImage(8 * MiB);
  const probe = new FaultDevice(base);
  const probeStore = await Store.openDevice(probe, { autoGc: false });
  const writesBefore = probe.writes;
  await probeStore.putMany('app', batch);
  const writesOfBatch = probe.writes - writesBefore;
  await probeStore.close();
  assert.ok(writesOfBatch >= 4, `the batch took only ${writesOfBatch} device writes`);
  let states = 0;
  for (let n = writesBefore + 1; n <= writesBefore + writesOfBatch; n++) {
    for (const keepUnsynced of [false, true]) {
      const device = new FaultDevice(base, { crash: { atWrite: n, keepUnsynced, tornBytes: keepUnsynced ? 77 : 0 } });
      const store = await Store.openDevice(device, { autoGc: false });
      await assert.rejects(store.putMany('app', batch), { code: 'EIO' });
      await store.close();
      const after = await Store.openDevice(new MemoryDevice(device.diskImage()));
      const keys = [];
      for (let page = await after.list('app', '/state/', { limit: 10_000 }); ; ) {
        keys.push(...page.keys);
        if (page.next === undefined) break;
        page = await after.list('app', '/state/', { limit: 10_000, after: page.next });
      }
      assert.deepEqual(keys, batch.slice(0, keys.length).map(([k]) => k), `crash at write ${n}: the survivors are a prefix`);
      for (const [k, v] of batch.slice(0, keys.length)) assert.deepEqual(await after.get('app', k), v, `crash at write ${n}: ${k}`);
      await after.close();
      states++;
    }
  }
  assert.ok(states >= 8);
});
