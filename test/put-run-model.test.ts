import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDevice } from '../src/device/memory-device.js';
import { GROUP_FROM } from '../src/engine/batch-order.js';
import { fsckDevice } from '../src/engine/fsck.js';
import { Store } from '../src/engine/store.js';
import type { StoreStat } from '../src/engine/store-types.js';
import { MiB, memoryImage, rng } from './helpers.js';
import { seedFrom } from './reliability/workload.js';

/*
 * A seeded random model of putMany's PUTRUN records among the other writes: small values in runs
 * (a key given twice in a batch too), puts, deletes, snapshots (taken, deleted, restored), GC,
 * checkpoints, reopens. After each step the store must read as the model; at checkpoints of the
 * run a crash copy must replay to the same values and the same space figures, verify its
 * snapshots read-only, and pass fsck.
 */

type Live = Map<string, Uint8Array>;

const SUBJECTS = ['app', 'web'] as const;

function stripStat(s: StoreStat): unknown {
  // What quotas count, kept write by write, is what a walk of the index finds.
  for (const x of s.subjects) assert.equal(x.usedBytes, x.liveBytes + x.snapshotOnlyBytes, `${x.subject}: usedBytes ${x.usedBytes}, walked ${x.liveBytes} + ${x.snapshotOnlyBytes}`);
  return { liveBytes: s.liveBytes, subjects: s.subjects, snapshots: s.snapshots };
}

async function checkStore(store: Store, live: ReadonlyMap<string, Live>, snaps: ReadonlyMap<string, Live>, where: string): Promise<void> {
  for (const subject of SUBJECTS) {
    const want = live.get(subject) ?? new Map<string, Uint8Array>();
    for (const [k, v] of want) assert.deepEqual(await store.get(subject, k), v, `${where}: ${subject} ${k}`);
    // And no key the model lacks (a deleted one come back, a run entry indexed twice).
    const listed = (await store.list(subject, '/state/', { limit: 10_000 })).keys;
    assert.deepEqual(listed, [...want.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), `${where}: ${subject}'s keys`);
  }
  for (const [id] of snaps) {
    const [subject, name] = id.split('/');
    if (subject !== undefined && name !== undefined) await store.verifySnapshot(subject, name);
  }
}

async function crashCopyCheck(store: Store, device: MemoryDevice, live: ReadonlyMap<string, Live>, snaps: ReadonlyMap<string, Live>, where: string): Promise<void> {
  await store.sync();
  const stat = stripStat(await store.stat());
  const copy = device.bytes.slice();
  const reopened = await Store.openDevice(new MemoryDevice(copy.slice()), { autoGc: false });
  await checkStore(reopened, live, snaps, `${where} (crash copy)`);
  assert.deepEqual(stripStat(await reopened.stat()), stat, `${where}: replay's space figures are the writer's`);
  // The snapshots' restore reads as the model too (restored into the copy only).
  for (const [id, content] of snaps) {
    const [subject, name] = id.split('/');
    if (subject === undefined || name === undefined) continue;
    await reopened.restoreSnap(subject, name);
    for (const [k, v] of content) assert.deepEqual(await reopened.get(subject, k), v, `${where}: restored ${id} ${k}`);
    break;
  }
  await reopened.close();
  const readOnly = await Store.openDevice(new MemoryDevice(copy.slice()), { readOnly: true });
  for (const [id] of snaps) {
    const [subject, name] = id.split('/');
    if (subject !== undefined && name !== undefined) await readOnly.verifySnapshot(subject, name);
  }
  await readOnly.close();
  const report = await fsckDevice(new MemoryDevice(copy.slice()));
  assert.equal(report.exitCode, 0, `${where}: fsck ${JSON.stringify(report.findings)}`);
}

async function runModel(seed: number, steps: number): Promise<void> {
  const next = rng(seed);
  const int = (n: number): number => Math.floor(next() * n);
  let device = new MemoryDevice(await memoryImage(8 * MiB));
  const options = { autoGc: false, checkpointBytes: 96 * 1024 };
  let store = await Store.openDevice(device, options);
  const live = new Map<string, Live>(SUBJECTS.map((s) => [s, new Map<string, Uint8Array>()]));
  const snaps = new Map<string, Live>();
  const key = (): string => `/state/d${int(4)}/k${String(int(60)).padStart(int(3) + 1, '0')}${'x'.repeat(int(3) * int(30))}`;
  const value = (): Uint8Array => {
    const size = next() < 0.05 ? 600 + int(800) : int(90);
    return new Uint8Array(size).map(() => int(256));
  };
  // Keys are files, never directories of each other: `/state/dN/kM…` only.
  let snapCount = 0;
  try {
    for (let step = 0; step < steps; step++) {
      const where = `seed ${seed} step ${step}`;
      const subject = SUBJECTS[int(SUBJECTS.length)] ?? 'app';
      const mine = live.get(subject) ?? new Map<string, Uint8Array>();
      const r = next();
      if (r < 0.35) {
        const batch: [string, Uint8Array][] = [];
        // Now and then a batch large enough to go into the index grouped by directory (batch-order.ts).
        for (let i = 0, n = next() < 0.05 ? GROUP_FROM + int(8) : 1 + int(25); i < n; i++) {
          const k = batch.length > 0 && next() < 0.1 ? (batch[int(batch.length)]?.[0] ?? key()) : key();
          batch.push([k, value()]);
        }
        if (next() < 0.5) batch.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
        await store.putMany(subject, batch);
        for (const [k, v] of batch) mine.set(k, v);
      } else if (r < 0.5) {
        const k = key();
        const v = value();
        await store.put(subject, k, v);
        mine.set(k, v);
      } else if (r < 0.65) {
        const keys = [...mine.keys()];
        for (let i = 0, n = 1 + int(6); i < n && keys.length > 0; i++) {
          const k = keys[int(keys.length)] ?? '';
          if (!mine.has(k)) continue;
          await store.delete(subject, k);
          mine.delete(k);
        }
      } else if (r < 0.7) {
        const name = `s${snapCount++}`;
        await store.snapshot(subject, name);
        snaps.set(`${subject}/${name}`, new Map(mine));
      } else if (r < 0.74) {
        const ids = [...snaps.keys()].filter((id) => id.startsWith(`${subject}/`));
        const id = ids[int(ids.length)];
        if (id !== undefined) {
          await store.deleteSnap(subject, id.slice(subject.length + 1));
          snaps.delete(id);
        }
      } else if (r < 0.77) {
        const ids = [...snaps.keys()].filter((id) => id.startsWith(`${subject}/`));
        const id = ids[int(ids.length)];
        const content = id === undefined ? undefined : snaps.get(id);
        if (id !== undefined && content !== undefined) {
          await store.restoreSnap(subject, id.slice(subject.length + 1));
          live.set(subject, new Map(content));
        }
      } else if (r < 0.85) {
        await store.gcNow({ maxSegments: 1 + int(4) });
      } else if (r < 0.9) {
        await store.checkpoint();
      } else if (r < 0.93) {
        await store.close();
        device = new MemoryDevice(device.bytes);
        store = await Store.openDevice(device, options);
        await checkStore(store, live, snaps, `${where} (reopened)`);
      } else if (r < 0.96) {
        await crashCopyCheck(store, device, live, snaps, where);
      }
      if (step % 25 === 0) await checkStore(store, live, snaps, where);
    }
    await crashCopyCheck(store, device, live, snaps, `seed ${seed} end`);
    // Everything gone: not a byte may stay charged (the slices sum to their records exactly).
    for (const id of [...snaps.keys()]) {
      const [subject, name] = id.split('/');
      if (subject !== undefined && name !== undefined) await store.deleteSnap(subject, name);
      snaps.delete(id);
    }
    for (const subject of SUBJECTS) {
      const mine = live.get(subject) ?? new Map<string, Uint8Array>();
      for (const k of [...mine.keys()]) await store.delete(subject, k);
      mine.clear();
    }
    const empty = await store.stat();
    assert.equal(empty.liveBytes, 0, `seed ${seed}: live bytes left over ${JSON.stringify(empty.subjects)}`);
    for (const s of empty.subjects) assert.equal(s.liveBytes + s.snapshotOnlyBytes, 0, `seed ${seed}: ${s.subject} still charged`);
    await crashCopyCheck(store, device, live, snaps, `seed ${seed} emptied`);
  } finally {
    await store.close();
  }
}

test('seeded model: putMany runs among puts, deletes, snapshots, GC, checkpoints and reopens read and account as written', async () => {
  const first = seedFrom(1);
  const seeds = Number(process.env.STATEFS_SEEDS ?? '2');
  for (let s = first; s < first + seeds; s++) await runModel(s, Number(process.env.STATEFS_STEPS ?? '400'));
});
