import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { MemoryDevice } from '../src/device/memory-device.js';
import { fsckDevice } from '../src/engine/fsck.js';
import { Store } from '../src/engine/store.js';
import { CHECKPOINT_VERSION } from '../src/format/checkpoint.js';
import { SUPERBLOCK_LENGTH, SUPERBLOCK_SLOT, decodeSuperblock, superblockOffset } from '../src/format/superblock.js';
import { text } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

// Images written by earlier engines of this format keep opening. The fixture was written by the
// engine at b3fae13 (checkpoint payload version 2): 4 MiB, 256 KiB segments; 300 keys of `app`
// under three directories and one of `other`, snapshot `app/before`, then every 7th key deleted,
// /state/dir1/k1 changed, the snapshot mounted at /mnt/b, its digest recorded, a checkpoint, close.
const V2_IMAGE = new URL('../../test/fixtures/v2-checkpoint.img.gz', import.meta.url);

/** The payload version byte of the checkpoint the superblock names (the higher generation). */
function currentCheckpointVersion(img: Uint8Array): number {
  const slots = ([0, 1] as const).map((slot) => {
    const at = superblockOffset(slot, img.length);
    return decodeSuperblock(img.subarray(at, at + SUPERBLOCK_LENGTH), img.length);
  });
  const sbs = slots.flatMap((d) => (d.ok ? [d.sb] : []));
  const sb = sbs.reduce((a, b) => (b.generation > a.generation ? b : a));
  // CKPT record: 11-byte header, then the chunk's 16-byte header, then the payload.
  return img[SUPERBLOCK_SLOT + sb.ckptSegment * sb.segmentSize + sb.ckptOffset + 11 + 16] ?? -1;
}

async function expectFixtureState(s: Store): Promise<void> {
  const keys = (await s.list('app', '/state/dir1/', { limit: 1000 })).keys;
  const expected = Array.from({ length: 100 }, (_, j) => 3 * j + 1).filter((i) => i % 7 !== 0).map((i) => `/state/dir1/k${i}`).sort();
  assert.deepEqual(keys, expected);
  assert.equal(text(await s.get('app', '/state/dir1/k1')), 'changed');
  assert.equal(text(await s.get('app', '/state/dir2/k299')), 'value 299');
  assert.equal(await s.get('app', '/state/dir0/k21'), undefined);
  assert.equal(text(await s.get('other', '/state/x')), 'y');
  assert.equal(text(await s.get('app', '/mnt/b/dir0/k21')), 'value 21', 'the snapshot through its mount');
  assert.equal(text(await s.get('app', '/mnt/b/dir1/k1')), 'value 1');
  assert.ok((await s.verifySnapshot('app', 'before')).length > 0);
}

test('an image whose checkpoint is payload version 2 opens and passes fsck; its next checkpoint is the current version and reads the same', async () => {
  const img = new Uint8Array(gunzipSync(readFileSync(V2_IMAGE)));
  assert.equal(currentCheckpointVersion(img), 2, 'the fixture holds a version 2 checkpoint');
  assert.equal((await fsckDevice(new MemoryDevice(img.slice()))).exitCode, 0);
  const s = await Store.openDevice(new MemoryDevice(img));
  await expectFixtureState(s);
  await s.put('app', '/state/dir1/k1', 'changed again');
  await s.checkpoint();
  await s.close();
  assert.equal(currentCheckpointVersion(img), CHECKPOINT_VERSION);
  assert.equal((await fsckDevice(new MemoryDevice(img.slice()))).exitCode, 0);
  const r = await Store.openDevice(new MemoryDevice(img));
  await r.put('app', '/state/dir1/k1', 'changed');
  await expectFixtureState(r);
  await r.close();
});

// Written by the engine at 3cf087d (payload version 3: every snapshot written against the live
// tree; version 4 writes each against the next newer snapshot of its subject). 4 MiB, 256 KiB
// segments, `autoGc: false`; the operations are `v3Operations` below, then a checkpoint, close.
const V3_IMAGE = new URL('../../test/fixtures/v3-snapshots.img.gz', import.meta.url);

/** The fixture's history: applied to a model here, to the store when it was written. */
function v3Operations(): { snapshots: Map<string, Map<string, string>>; live: Map<string, string> } {
  const live = new Map<string, string>();
  const snapshots = new Map<string, Map<string, string>>();
  for (let i = 0; i < 60; i++) live.set(`/state/k${i}`, `v${i}`);
  snapshots.set('s1', new Map(live));
  for (let i = 0; i < 60; i += 3) live.set(`/state/k${i}`, `w${i}`);
  for (let i = 0; i < 60; i += 5) live.delete(`/state/k${i}`);
  for (let j = 0; j < 10; j++) live.set(`/state/n${j}`, `n${j}`);
  snapshots.set('s2', new Map(live));
  for (let i = 0; i < 60; i += 4) live.set(`/state/k${i}`, `x${i}`);
  for (let j = 0; j < 5; j++) live.delete(`/state/n${j}`);
  snapshots.set('s3', new Map(live));
  live.set('/state/k1', 'live');
  live.delete('/state/k2');
  return { snapshots, live };
}

async function expectV3State(s: Store): Promise<void> {
  const { snapshots, live } = v3Operations();
  const read = async (prefix: string): Promise<Map<string, string>> => {
    const out = new Map<string, string>();
    for (const key of (await s.list('app', prefix, { limit: 1000 })).keys) out.set(key.replace(prefix, '/state/'), text(await s.get('app', key)) ?? '(missing)');
    return out;
  };
  assert.deepEqual(await read('/state/'), live);
  for (const [name, expected] of snapshots) {
    await s.mountSnap('app', 'app', name, `/mnt/${name}`);
    assert.deepEqual(await read(`/mnt/${name}/`), expected, `snapshot ${name}`);
    await s.umount('app', `/mnt/${name}`);
  }
}

test('an image whose snapshots are in a payload version 3 checkpoint reads them as written; its next checkpoint is the current version and reads the same', async () => {
  const img = new Uint8Array(gunzipSync(readFileSync(V3_IMAGE)));
  assert.equal(currentCheckpointVersion(img), 3, 'the fixture holds a version 3 checkpoint');
  assert.equal((await fsckDevice(new MemoryDevice(img.slice()))).exitCode, 0);
  const s = await Store.openDevice(new MemoryDevice(img));
  await expectV3State(s);
  await s.checkpoint();
  await s.close();
  assert.equal(currentCheckpointVersion(img), CHECKPOINT_VERSION);
  assert.equal((await fsckDevice(new MemoryDevice(img.slice()))).exitCode, 0);
  const r = await Store.openDevice(new MemoryDevice(img));
  await expectV3State(r);
  await r.close();
});

// Written by the engine at 3aa485c (payload version 4, before PUTRUN records: its putMany wrote
// one PUT per key). 4 MiB, 256 KiB segments, `autoGc: false`; the operations are `v4Operations`
// below: a checkpoint, then a put and a putMany the next open replays from the journal, close.
const V4_IMAGE = new URL('../../test/fixtures/v4-checkpoint.img.gz', import.meta.url);

function v4Operations(): { s1: Map<string, string>; s2: Map<string, string>; live: Map<string, string> } {
  const live = new Map<string, string>();
  for (let i = 0; i < 200; i++) live.set(`/state/k${i}`, `v${i}`);
  const s1 = new Map(live);
  for (let j = 0; j < 50; j++) live.set(`/state/k${4 * j}`, `w${4 * j}`);
  for (let i = 0; i < 200; i += 9) live.delete(`/state/k${i}`);
  live.set('/state/t', 'txn');
  const s2 = new Map(live);
  live.set('/state/after', 'after the checkpoint');
  live.set('/state/k1', 'x1');
  live.set('/state/k2', 'x2');
  return { s1, s2, live };
}

async function expectV4State(s: Store): Promise<void> {
  const { s1, s2, live } = v4Operations();
  const read = async (prefix: string): Promise<Map<string, string>> => {
    const out = new Map<string, string>();
    for (const key of (await s.list('app', prefix, { limit: 1000 })).keys) out.set(key.replace(prefix, '/state/'), text(await s.get('app', key)) ?? '(missing)');
    return out;
  };
  assert.deepEqual(await read('/state/'), live);
  assert.deepEqual(await read('/mnt/one/'), s1, 'snapshot s1 through its mount');
  await s.mountSnap('app', 'app', 's2', '/mnt/two');
  assert.deepEqual(await read('/mnt/two/'), s2, 'snapshot s2');
  await s.umount('app', '/mnt/two');
  assert.ok((await s.verifySnapshot('app', 's1')).length > 0);
}

test('an image written before PUTRUN records (payload version 4) opens and passes fsck; PUTRUN records and a version 5 checkpoint then join it', async () => {
  const img = new Uint8Array(gunzipSync(readFileSync(V4_IMAGE)));
  assert.equal(currentCheckpointVersion(img), 4, 'the fixture holds a version 4 checkpoint');
  assert.ok(!Buffer.from(img).includes(Buffer.from([0x46, 0x53, 0x58, 0x4e, 0x29])), 'the fixture holds no PUTRUN record');
  assert.equal((await fsckDevice(new MemoryDevice(img.slice()))).exitCode, 0);
  const s = await Store.openDevice(new MemoryDevice(img), { autoGc: false });
  await expectV4State(s);
  // Runs of the same keys and values beside the old PUTs, then a checkpoint naming both kinds.
  await s.putMany('app', [...v4Operations().live].slice(0, 20));
  await s.snapshot('app', 's3');
  await s.checkpoint();
  await s.close();
  assert.equal(currentCheckpointVersion(img), CHECKPOINT_VERSION);
  assert.ok(Buffer.from(img).includes(Buffer.from([0x46, 0x53, 0x58, 0x4e, 0x29])), 'the putMany wrote a PUTRUN record');
  assert.equal((await fsckDevice(new MemoryDevice(img.slice()))).exitCode, 0);
  const r = await Store.openDevice(new MemoryDevice(img), { autoGc: false });
  await expectV4State(r);
  await r.gcNow();
  await r.close();
  const again = await Store.openDevice(new MemoryDevice(img));
  await expectV4State(again);
  await again.close();
});
