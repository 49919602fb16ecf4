import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { StatefsError } from '../src/errors.js';
import { MiB, memoryImage, rng } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

const rec = (key: string, valueLen: number): number => 15 + 'app\0'.length + key.length + valueLen;

test('quotas: soft warns once per window, hard is EDQUOTA with a marker, deletes always work', async () => {
  const s = await Store.openDevice(new MemoryDevice(await memoryImage(4 * MiB)), { quotas: { app: { soft: 3000, hard: 5000 } }, quotaWarnIntervalMs: 60_000 });
  const markers: string[] = [];
  s.on('marker', (line: string) => markers.push(line));
  await s.put('app', '/state/a', new Uint8Array(2000)); // 2,021 bytes used
  assert.deepEqual(markers, []);
  await s.put('app', '/state/b', new Uint8Array(1000)); // over soft: warned, accepted
  await s.put('app', '/state/c', new Uint8Array(10)); // still over soft: no second warning in the window
  const used = rec('/state/a', 2000) + rec('/state/b', 1000);
  assert.deepEqual(markers, [`statefs: quota warn subject=app used=${used} soft=3000`]);
  await assert.rejects(s.put('app', '/state/d', new Uint8Array(3000)), (err: unknown) => err instanceof StatefsError && err.code === 'EDQUOTA');
  const wouldUse = used + rec('/state/c', 10) + rec('/state/d', 3000);
  const lastMarker = markers[markers.length - 1];
  assert.equal(lastMarker, `statefs: quota deny subject=app used=${wouldUse} hard=5000`);
  const t = s.begin('app');
  await t.put('app', '/state/t', new Uint8Array(4000));
  await assert.rejects(t.commit(), (err: unknown) => err instanceof StatefsError && err.code === 'EDQUOTA');
  // Overwriting with a smaller value frees bytes: allowed. Other subjects are not limited.
  await s.put('app', '/state/a', new Uint8Array(10));
  await s.put('other', '/state/big', new Uint8Array(60_000));
  await s.delete('app', '/state/b');
  assert.equal((await s.stat()).subjects.find((x) => x.subject === 'app')?.usedBytes, rec('/state/a', 10) + rec('/state/c', 10));
  await s.close();
});

test('snapshots cannot be used to escape a quota: what they pin counts', async () => {
  const s = await Store.openDevice(new MemoryDevice(await memoryImage(4 * MiB)), { quotas: { app: { soft: 10_000, hard: 10_000 } } });
  await s.put('app', '/state/a', new Uint8Array(4000));
  await s.snapshot('app', 'pin');
  await s.put('app', '/state/a', new Uint8Array(4000)); // the old 4,000 stay pinned: ~8 KB used
  await assert.rejects(s.put('app', '/state/b', new Uint8Array(4000)), (err: unknown) => err instanceof StatefsError && err.code === 'EDQUOTA');
  await s.deleteSnap('app', 'pin'); // always allowed, and frees what only it held
  await s.put('app', '/state/b', new Uint8Array(4000));
  await s.close();
});

test('quota accounting equals a recount, and a recount from the image after reopen', async () => {
  const seed = Number(process.env.STATEFS_SEED ?? 5);
  const rand = rng(seed);
  const img = await memoryImage(8 * MiB);
  const s = await Store.openDevice(new MemoryDevice(img), { autoGc: true, checkpointBytes: 64 * 1024 });
  const check = async (store: Store, label: string): Promise<void> => {
    for (const x of (await store.stat()).subjects) assert.equal(x.usedBytes, x.liveBytes + x.snapshotOnlyBytes, `${label}: ${x.subject}`);
  };
  let snaps = 0;
  for (let i = 0; i < 600; i++) {
    const subject = rand() < 0.5 ? 'a' : 'b';
    const key = `/state/k${Math.floor(rand() * 40)}`;
    const r = rand();
    if (r < 0.6) await s.put(subject, key, new Uint8Array(Math.floor(rand() * 3000)));
    else if (r < 0.8) await s.delete(subject, key).catch(() => undefined);
    else if (r < 0.85) await s.snapshot(subject, `s${snaps++}`);
    else if (r < 0.9) {
      const names = await s.listSnaps(subject);
      const name = names[Math.floor(rand() * names.length)];
      if (name !== undefined) await s.deleteSnap(subject, name);
    } else if (r < 0.93) {
      const names = await s.listSnaps(subject);
      const name = names[0];
      if (name !== undefined) await s.restoreSnap(subject, name);
    } else if (r < 0.97) await s.gcNow();
    if (i % 50 === 0) await check(s, `seed ${seed} step ${i}`);
  }
  await check(s, 'end');
  const before = (await s.stat()).subjects.map((x) => [x.subject, x.usedBytes]);
  await s.close();
  const r = await Store.openDevice(new MemoryDevice(img));
  await check(r, 'after reopen');
  assert.deepEqual((await r.stat()).subjects.map((x) => [x.subject, x.usedBytes]), before);
  await r.close();
  console.log(`quota accounting: seed ${seed}, 600 operations, recount equal`);
});

test('the soft-quota warning is given only once its write is durable: a write that fails (ENOSPC, EIO) warns of nothing', async () => {
  const { FaultDevice } = await import('../src/device/fault-device.js');
  // ENOSPC: the image is full of another subject's values.
  const full = await Store.openDevice(new MemoryDevice(await memoryImage(2 * MiB)), { quotas: { app: { soft: 1000, hard: 10 * MiB } } });
  const markers: string[] = [];
  full.on('marker', (line: string) => markers.push(line));
  for (let filled = 0; ; filled++) {
    try {
      await full.put('other', `/state/k${filled}`, new Uint8Array(60_000));
    } catch (err) {
      assert.ok(err instanceof StatefsError && err.code === 'ENOSPC', String(err));
      break;
    }
  }
  await assert.rejects(full.put('app', '/state/big', new Uint8Array(60_000)), (err: unknown) => err instanceof StatefsError && err.code === 'ENOSPC');
  assert.deepEqual(markers.filter((m) => m.includes('quota')), [], 'no warning for bytes never written');
  await full.close();

  // EIO: the device fails the write.
  const device = new FaultDevice(4 * MiB);
  await Store.format(device);
  const s = await Store.openDevice(device, { quotas: { app: { soft: 100, hard: 10 * MiB } } });
  const seen: string[] = [];
  s.on('marker', (line: string) => seen.push(line));
  await s.put('app', '/state/small', 'x');
  device.failCalls({ at: 1, code: 'EIO', sticky: true });
  await assert.rejects(s.put('app', '/state/big', new Uint8Array(500)), (err: unknown) => err instanceof StatefsError && err.code === 'EIO');
  assert.deepEqual(seen, []);
  await s.close().catch(() => undefined);

  // And a write that succeeds warns after it resolved, with what the subject uses then.
  const ok = await Store.openDevice(new MemoryDevice(await memoryImage(4 * MiB)), { quotas: { app: { soft: 100, hard: 10 * MiB } } });
  const order: string[] = [];
  ok.on('marker', () => order.push('marker'));
  await ok.put('app', '/state/big', new Uint8Array(500)).then(() => order.push('put resolved'));
  assert.deepEqual(order, ['marker', 'put resolved']);
  await ok.close();
});

test('putMany with a key given twice counts only its last value against the quota', async () => {
  const s = await Store.openDevice(new MemoryDevice(await memoryImage(4 * MiB)), { quotas: { app: { soft: 10_000, hard: 10_000 } } });
  try {
    await s.put('app', '/state/a', new Uint8Array(8000));
    const used = rec('/state/a', 8000);
    // One 1,000-byte value fits under the hard quota; the same key twice in one batch still does.
    await s.putMany('app', [
      ['/state/k4', new Uint8Array(1000)],
      ['/state/k4', new Uint8Array(1000).fill(1)],
    ]);
    assert.equal((await s.stat()).subjects.find((x) => x.subject === 'app')?.usedBytes, used + rec('/state/k4', 1000));
    assert.deepEqual(await s.get('app', '/state/k4'), new Uint8Array(1000).fill(1));
  } finally {
    await s.close();
  }
});
