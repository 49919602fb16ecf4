import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FaultDevice } from '../src/device/fault-device.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { LIVE } from '../src/engine/store-types.js';
import { StatefsError } from '../src/errors.js';
import { crc32c } from '../src/format/crc32c.js';
import { MiB, memoryImage, openMemory, text } from './helpers.js';
import { referenceDigest } from './reliability/model.js';
import { guardResources } from './hygiene.js';

guardResources();

const code = (c: string) => (err: unknown) => err instanceof StatefsError && err.code === c;

async function contents(store: Store, subject: string, prefix = '/state/'): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const k of (await store.list(subject, prefix, { limit: 10_000 })).keys) out.set(k, text(await store.get(subject, k)) ?? '');
  return out;
}

test('a snapshot preserves old bytes after puts, deletes, transactions, restores and reopen', async () => {
  const img = await memoryImage();
  const s = await openMemory(img);
  const markers: string[] = [];
  s.on('marker', (line: string) => markers.push(line));
  await s.put('app', '/state/a', 'a1');
  await s.put('app', '/state/b/c', 'c1');
  await s.put('other', '/state/x', 'x1');
  await s.snapshot('app', 'one');
  assert.deepEqual(markers, ['statefs: snapshot subject=app name=one']);
  const frozen = new Map([['/state/a', 'a1'], ['/state/b/c', 'c1']]);
  await s.put('app', '/state/a', 'a2');
  await s.delete('app', '/state/b/c');
  const t = s.begin('app');
  await t.put('app', '/state/t', 'txn');
  await t.commit();
  await s.snapshot('app', 'two');
  await s.put('app', '/state/late', 'z');
  await s.restoreSnap('app', 'one');
  assert.deepEqual(await contents(s, 'app'), frozen, 'restore makes live equal the snapshot');
  await s.put('app', '/state/a', 'a3');
  await s.mountSnap('app', 'app', 'one', '/mnt/one');
  assert.deepEqual(await contents(s, 'app', '/mnt/one/'), new Map([['/mnt/one/a', 'a1'], ['/mnt/one/b/c', 'c1']]));
  await s.mountSnap('app', 'app', 'two', '/mnt/two');
  assert.deepEqual(await contents(s, 'app', '/mnt/two/'), new Map([['/mnt/two/a', 'a2'], ['/mnt/two/t', 'txn']]));
  const digest = await s.verifySnapshot('app', 'one');
  assert.match(digest, /^[0-9a-f]{64}$/);
  await s.close();
  const r = await openMemory(img);
  assert.deepEqual(await contents(r, 'app', '/mnt/one/'), new Map([['/mnt/one/a', 'a1'], ['/mnt/one/b/c', 'c1']]));
  assert.equal(text(await r.get('app', '/state/a')), 'a3');
  assert.deepEqual(await r.listSnaps('app'), ['one', 'two']);
  assert.equal(await r.verifySnapshot('app', 'one'), digest);
  assert.deepEqual(await r.listMounts('app'), [
    { path: '/mnt/one', owner: 'app', name: 'one' },
    { path: '/mnt/two', owner: 'app', name: 'two' },
  ]);
  // Checkpoints carry snapshots and mounts too.
  await r.checkpoint();
  await r.close();
  const c = await openMemory(img);
  assert.equal(c.openReport.recordsReplayed < 5, true);
  assert.deepEqual(await contents(c, 'app', '/mnt/two/'), new Map([['/mnt/two/a', 'a2'], ['/mnt/two/t', 'txn']]));
  assert.equal(await c.verifySnapshot('app', 'one'), digest);
  await c.close();
});

test('a snapshot taken while a transaction is open contains none of it', async () => {
  const s = await openMemory(await memoryImage());
  await s.put('app', '/state/base', 'b');
  for (const finish of ['commit', 'abort'] as const) {
    const t = s.begin('app');
    await t.put('app', `/state/${finish}`, 'in txn');
    await s.snapshot('app', `during-${finish}`);
    if (finish === 'commit') await t.commit();
    else await t.abort();
    await s.mountSnap('app', 'app', `during-${finish}`, `/mnt/${finish}`);
    // The first transaction committed before the second snapshot, so that one holds /state/commit.
    const expected = finish === 'commit' ? ['base'] : ['base', 'commit'];
    assert.deepEqual((await s.list('app', `/mnt/${finish}/`)).keys, expected.map((k) => `/mnt/${finish}/${k}`));
  }
  assert.equal(text(await s.get('app', '/state/commit')), 'in txn');
  await s.close();
});

test('writes through a mount are EROFS and change nothing', async () => {
  const s = await openMemory(await memoryImage());
  await s.put('app', '/state/k', 'v');
  await s.snapshot('app', 'snap');
  await s.mountSnap('app', 'app', 'snap', '/mnt/view');
  const before = await s.verifySnapshot('app', 'snap');
  for (const key of ['/mnt/view', '/mnt/view/k', '/mnt/view/new', '/mnt/view/deep/er']) {
    await assert.rejects(s.put('app', key, 'x'), code('EROFS'), key);
    await assert.rejects(s.delete('app', key), code('EROFS'), key);
    const t = s.begin('app');
    await assert.rejects(t.put('app', key, 'x'), code('EROFS'), key);
    await assert.rejects(t.delete('app', key), code('EROFS'), key);
    await t.abort();
  }
  await assert.rejects(s.put('app', '/mnt/elsewhere/k', 'x'), code('EINVAL'));
  assert.equal(await s.verifySnapshot('app', 'snap'), before);
  assert.deepEqual(await contents(s, 'app'), new Map([['/state/k', 'v']]));
  assert.equal(text(await s.get('app', '/mnt/view/k')), 'v');
  await s.close();
});

test('names, EEXIST, ENOENT, EBUSY naming the mounts, EPERM without a grant, grants', async () => {
  const s = await openMemory(await memoryImage(), { grants: { reader: ['owner'] } });
  await s.put('owner', '/state/k', 'v');
  for (const bad of ['', '.hidden', 'a/b', 'sp ace', 'caf\u00e9']) await assert.rejects(s.snapshot('owner', bad), code('EINVAL'), bad);
  await assert.rejects(s.snapshot('owner', 'n'.repeat(65)), code('ENAMETOOLONG'));
  await s.snapshot('owner', 'n'.repeat(64));
  await s.snapshot('owner', 's');
  await assert.rejects(s.snapshot('owner', 's'), code('EEXIST'));
  await assert.rejects(s.deleteSnap('owner', 'missing'), code('ENOENT'));
  await assert.rejects(s.restoreSnap('owner', 'missing'), code('ENOENT'));
  await assert.rejects(s.mountSnap('stranger', 'owner', 's', '/mnt/x'), code('EPERM'));
  await s.mountSnap('reader', 'owner', 's', '/mnt/x');
  await assert.rejects(s.mountSnap('reader', 'owner', 's', '/mnt/x'), code('EEXIST'));
  await assert.rejects(s.mountSnap('reader', 'owner', 's', '/mnt/a/b'), code('EINVAL'));
  await assert.rejects(s.mountSnap('reader', 'owner', 's', '/state/x'), code('EINVAL'));
  assert.equal(text(await s.get('reader', '/mnt/x/k')), 'v');
  await assert.rejects(s.get('owner', '/mnt/x/k'), code('ENOENT')); // mounts are per caller
  assert.deepEqual(await s.listMounts('owner'), []);
  await assert.rejects(s.deleteSnap('owner', 's'), (err: unknown) => {
    assert.ok(err instanceof StatefsError && err.code === 'EBUSY');
    assert.match(err.message, /reader:\/mnt\/x/);
    return true;
  });
  await assert.rejects(s.umount('reader', '/mnt/y'), code('ENOENT'));
  await s.umount('reader', '/mnt/x');
  await s.deleteSnap('owner', 's');
  assert.deepEqual(await s.listSnaps('owner'), ['n'.repeat(64)]);
  await s.close();
});

test('listSnaps details, exclusive bytes, and diffSnaps against the live state', async () => {
  const s = await openMemory(await memoryImage());
  await s.put('app', '/state/same', 'same');
  await s.put('app', '/state/changed', 'v1');
  await s.put('app', '/state/removed', 'r');
  await s.snapshot('app', 'a');
  await s.put('app', '/state/changed', 'v2');
  await s.delete('app', '/state/removed');
  await s.put('app', '/state/added', 'new');
  await s.snapshot('app', 'b');
  assert.deepEqual(await s.diffSnaps('app', 'a', 'b'), { added: ['/state/added'], removed: ['/state/removed'], changed: ['/state/changed'] });
  assert.deepEqual(await s.diffSnaps('app', 'b', LIVE), { added: [], removed: [], changed: [] });
  await s.put('app', '/state/changed', 'v3');
  assert.deepEqual(await s.diffSnaps('app', 'a', LIVE), { added: ['/state/added'], removed: ['/state/removed'], changed: ['/state/changed'] });
  const details = await s.listSnaps('app', { details: true });
  const a = details.find((d) => d.name === 'a');
  const b = details.find((d) => d.name === 'b');
  // Only "a" keeps changed=v1 and removed=r: each record is 15 + "app\0/state/...".length + value.
  const rec = (key: string, value: string): number => 15 + `app\0${key}`.length + value.length;
  assert.ok(a !== undefined && b !== undefined);
  assert.equal(a.exclusiveBytes, rec('/state/changed', 'v1') + rec('/state/removed', 'r'));
  assert.equal(b.exclusiveBytes, rec('/state/changed', 'v2'));
  assert.equal(a.keys, 3);
  assert.equal(b.id, a.id + 1);
  await s.close();
});

test('the snapshot marker is emitted once per snapshot, never when its record failed', async () => {
  const base = await memoryImage();
  const probe = new FaultDevice(base);
  const p = await Store.openDevice(probe);
  await p.put('app', '/state/k', 'v');
  const flushesBefore = probe.flushes;
  await p.close();
  const device = new FaultDevice(base, { failFlush: { at: flushesBefore + 1, code: 'EIO' } });
  const s = await Store.openDevice(device);
  const markers: string[] = [];
  s.on('marker', (line: string) => markers.push(line));
  await s.put('app', '/state/k', 'v');
  await assert.rejects(s.snapshot('app', 'doomed'), code('EIO'));
  assert.deepEqual(markers, []);
  await s.close();
  const r = await Store.openDevice(new MemoryDevice(device.diskImage()));
  assert.deepEqual(await r.listSnaps('app'), []);
  await r.close();
});

test('a crash at every write of snapshot, deleteSnap, restoreSnap, mountSnap and umount leaves old or new metadata', async () => {
  const base = await memoryImage();
  const setup = await Store.openDevice(new MemoryDevice(base));
  await setup.put('app', '/state/a', '1');
  await setup.put('app', '/state/b', '2');
  await setup.close();
  const script = async (s: Store, log: string[]): Promise<void> => {
    const step = async (name: string, fn: () => Promise<void>): Promise<void> => {
      await fn();
      log.push(name);
    };
    await step('snap1', () => s.snapshot('app', 's1'));
    await step('put', () => s.put('app', '/state/a', 'changed'));
    await step('mount', () => s.mountSnap('app', 'app', 's1', '/mnt/s1'));
    await step('snap2', () => s.snapshot('app', 's2'));
    await step('restore', () => s.restoreSnap('app', 's1'));
    await step('umount', () => s.umount('app', '/mnt/s1'));
    await step('del', () => s.deleteSnap('app', 's1'));
  };
  const probe = new FaultDevice(base);
  const ps = await Store.openDevice(probe);
  await script(ps, []);
  await ps.close();
  let checked = 0;
  for (let n = 1; n <= probe.writes; n++) {
    const device = new FaultDevice(base, { crash: { atWrite: n, tornBytes: n % 3 === 0 ? 9 : 0 } });
    const s = await Store.openDevice(device);
    const done: string[] = [];
    await script(s, done).catch(() => undefined);
    await s.close();
    const r = await Store.openDevice(new MemoryDevice(device.diskImage()));
    const snaps = await r.listSnaps('app');
    const mounts = (await r.listMounts('app')).map((m) => m.path);
    const a = text(await r.get('app', '/state/a'));
    const has = (x: string): boolean => done.includes(x);
    // Every acknowledged step is visible; nothing is half-applied.
    if (has('snap1') && !has('del')) assert.ok(snaps.includes('s1'), `crash ${n}: s1 lost`);
    if (has('snap2')) assert.ok(snaps.includes('s2'), `crash ${n}: s2 lost`);
    if (has('mount') && !has('umount')) assert.deepEqual(mounts, ['/mnt/s1'], `crash ${n}: mount lost`);
    if (has('del')) assert.ok(!snaps.includes('s1'));
    if (mounts.includes('/mnt/s1')) assert.ok(snaps.includes('s1'), `crash ${n}: a mount names a missing snapshot`);
    if (has('restore')) assert.equal(a, '1');
    else if (has('put')) assert.equal(a, 'changed');
    for (const name of snaps) {
      const tree = await r.diffSnaps('app', name, name);
      assert.deepEqual(tree, { added: [], removed: [], changed: [] });
      await r.verifySnapshot('app', name);
    }
    if (snaps.includes('s1')) {
      await r.mountSnap('app', 'app', 's1', '/mnt/check').catch(() => undefined);
      const view = await r.list('app', '/mnt/check/').catch(() => ({ keys: [] as string[] }));
      if (view.keys.length > 0) assert.deepEqual(view.keys, ['/mnt/check/a', '/mnt/check/b']);
    }
    await r.close();
    checked++;
  }
  console.log(`snapshot metadata: ${probe.writes} device writes, ${checked} crash points checked`);
});

test('snapshots survive a crash at every write of the workload that follows them', async () => {
  const base = await memoryImage();
  const setup = await Store.openDevice(new MemoryDevice(base));
  for (let i = 0; i < 20; i++) await setup.put('app', `/state/k${i}`, `v${i}`);
  await setup.snapshot('app', 'frozen');
  const expected = await setup.verifySnapshot('app', 'frozen');
  await setup.close();
  const work = async (s: Store): Promise<void> => {
    for (let i = 0; i < 30; i++) {
      await s.put('app', `/state/k${i % 20}`, `new${i}`.repeat(50));
      if (i % 7 === 0) await s.delete('app', `/state/k${(i + 3) % 20}`).catch(() => undefined);
      if (i % 10 === 5) await s.checkpoint();
    }
  };
  const probe = new FaultDevice(base);
  const ps = await Store.openDevice(probe, { checkpointBytes: 4096 });
  await work(ps);
  await ps.close();
  for (let n = 1; n <= probe.writes; n++) {
    const device = new FaultDevice(base, { crash: { atWrite: n, keepUnsynced: n % 2 === 1 } });
    const s = await Store.openDevice(device, { checkpointBytes: 4096 });
    await work(s).catch(() => undefined);
    await s.close();
    const r = await Store.openDevice(new MemoryDevice(device.diskImage()));
    assert.equal(await r.verifySnapshot('app', 'frozen'), expected, `crash at write ${n}`);
    await r.close();
  }
  console.log(`snapshot immutability: ${probe.writes} crash points checked`);
});

test('close waits for the background digest, so a later open checks against the recorded one', async () => {
  const img = await memoryImage();
  const s = await openMemory(img);
  for (let i = 0; i < 50; i++) await s.put('app', `/state/k${i}`, `value ${i}`);
  await s.snapshot('app', 'snap');
  await s.close(); // immediately: the digest is still being computed
  // Alter the value of k7 on disk and re-seal its record's CRC: only the digest can tell.
  const needle = Buffer.from('app\0/state/k7', 'latin1');
  const at = Buffer.from(img).indexOf(needle);
  assert.ok(at > 0);
  const recLen = 15 + needle.length + 'value 7'.length;
  const rec = Buffer.from(img.subarray(at - 11, at - 11 + recLen));
  rec.write('VALUE 7', 11 + needle.length, 'latin1');
  rec.writeUInt32LE(crc32c(rec.subarray(0, recLen - 4)), recLen - 4);
  img.set(rec, at - 11);
  const r = await openMemory(img);
  assert.equal(text(await r.get('app', '/state/k7')), 'VALUE 7');
  await assert.rejects(r.verifySnapshot('app', 'snap'), code('EINTEGRITY'));
  await r.close();
});

test('a snapshot digest is the documented byte stream, also for values that fill the hashing buffer', async () => {
  const s = await openMemory(await memoryImage(16 * MiB));
  const content = new Map<string, Uint8Array>();
  // Sizes around the digest's 64 KiB gathering buffer: empty, tiny, whole-buffer and odd.
  const sizes = [0, 1, 65_536, 65_530, 100, 65_536, 30_000, 40_000, 7, 65_000];
  for (const [i, size] of sizes.entries()) {
    const value = new Uint8Array(size).map((_, j) => (i * 31 + j) & 0xff);
    const key = `/state/v/k${String(i).padStart(2, '0')}-é`;
    await s.put('app', key, value);
    content.set(key, value);
  }
  await s.snapshot('app', 'big');
  await s.verifySnapshot('app', 'big');
  const info = (await s.listSnaps('app', { details: true })).find((x) => x.name === 'big');
  assert.equal(info?.digest, referenceDigest(content));
  await s.close();
});
