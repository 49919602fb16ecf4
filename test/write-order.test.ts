import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BlockDevice } from '../src/device/device.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { isStatefsError } from '../src/errors.js';
import { codeOf, MiB, memoryImage, openMemory, text } from './helpers.js';

/** An 8 MiB image filled with 60 KB values until a put finds no room, then 40 of them deleted. */
async function nearlyFull(): Promise<{ store: Store; cycles: () => number; image: Uint8Array }> {
  const image = await memoryImage(8 * MiB);
  const store = await openMemory(image);
  let cycles = 0;
  store.on('gc', () => cycles++);
  for (let n = 0; ; n++) {
    const refused = await store.put('app', `/state/live/k${n}`, new Uint8Array(60_000).fill(1)).then(
      () => false,
      (err: unknown) => isStatefsError(err) && err.code === 'ENOSPC',
    );
    if (refused) break;
  }
  for (let i = 0; i < 40; i++) await store.delete('app', `/state/live/k${i}`);
  return { store, cycles: () => cycles, image };
}

test('writes made one after another without waiting reach the journal in that order, also when the first waits for room: the last value of a key is the one kept', async () => {
  const { store, cycles } = await nearlyFull();
  try {
    const kept: string[] = [];
    for (let round = 0; round < 120; round++) {
      const big = Array.from({ length: 16 }, (_, i): [string, Uint8Array] => [`/state/live/k${i}`, new Uint8Array(65_000).fill(round & 255)]);
      // A batch that often needs a reclaim, then a small put of a key it wrote, then a delete and a put.
      await Promise.all([
        store.putMany('app', [['/state/x', `first-${round}`], ...big]),
        store.put('app', '/state/x', `last-${round}`),
        store.put('app', `/state/live/k${round % 16}`, new Uint8Array(65_000)),
        store.delete('app', `/state/live/k${round % 16}`),
        store.put('app', '/state/y', `y-${round}`),
      ]);
      kept.push(`${text(await store.get('app', '/state/x'))} ${(await store.get('app', `/state/live/k${round % 16}`))?.length ?? 'deleted'} ${text(await store.get('app', '/state/y'))}`);
    }
    assert.ok(cycles() > 0, 'some writes waited for a reclaim (a GC cycle ran)');
    assert.deepEqual(
      kept,
      kept.map((_, round) => `last-${round} deleted y-${round}`),
    );
  } finally {
    await store.close();
  }
});

/** Starts `write` and tells whether it waits (for room): what it writes is not counted at once in the used bytes. */
async function startWaits(store: Store, write: () => Promise<void>, bytes: number): Promise<{ done: Promise<string>; waits: boolean }> {
  const before = store.stat(); // stat is computed when called
  const done = codeOf(write());
  const after = store.stat();
  return { done, waits: (await after).usedBytes - (await before).usedBytes < bytes };
}

const bigBatch = (round: number): [string, Uint8Array][] => Array.from({ length: 16 }, (_, i): [string, Uint8Array] => [`/state/live/k${i}`, new Uint8Array(65_000).fill(round & 255)]);

test('a restore made after a put is not overtaken by it, nor a snapshot, when the put queues behind a write waiting for room', async () => {
  const { store, cycles } = await nearlyFull();
  try {
    await store.put('app', '/state/x', 'at-snapshot');
    await store.snapshot('app', 's');
    const after: string[] = [];
    for (let round = 0; round < 30; round++) {
      const writes = [store.putMany('app', bigBatch(round)), store.put('app', '/state/x', `after-${round}`)];
      const restore = store.restoreSnap('app', 's'); // made last: its state is the one kept
      await Promise.all([...writes, restore]);
      after.push(text(await store.get('app', '/state/x')) ?? '');
    }
    assert.ok(cycles() > 0, 'some writes waited for a reclaim');
    assert.deepEqual(after, Array(30).fill('at-snapshot'));
  } finally {
    await store.close();
  }
});

test('sync() covers writes made before it that wait for room, and close() lets them finish', async () => {
  const { store } = await nearlyFull();
  let closedAt = -1;
  const results: string[] = [];
  for (let round = 0; round < 40 && closedAt < 0; round++) {
    const { done: big, waits } = await startWaits(store, () => store.putMany('app', bigBatch(round)), 16 * 65_000);
    const small = codeOf(store.put('app', `/state/small${round}`, 'v'));
    if (waits) {
      await store.sync();
      assert.equal(text(await store.get('app', `/state/small${round}`)), 'v', 'sync() returned after the put made before it');
      const del = codeOf(store.delete('app', `/state/small${round}`));
      const closed = codeOf(store.close());
      results.push(...(await Promise.all([big, small, del, closed])));
      closedAt = round;
    } else {
      await Promise.all([big, small]);
    }
  }
  assert.ok(closedAt >= 0, 'a round found a write waiting for room');
  assert.deepEqual(results.slice(1), ['OK', 'OK', 'OK'], 'the put and the delete made before close() were written, and close succeeded');
  assert.ok(['OK', 'ENOSPC'].includes(results[0] ?? ''), `the batch: ${String(results[0])}`);
});

test('writes queued behind one waiting for room are checked against the hard quota in their turn, not all against the usage before any of them', async () => {
  const { store } = await nearlyFull();
  const used = async (): Promise<number> => (await store.stat()).subjects.find((x) => x.subject === 'app')?.usedBytes ?? 0;
  try {
    for (let round = 0; round < 20; round++) {
      const hard = (await used()) + 300_000;
      store.setAccess({ quotas: { app: { soft: hard, hard } } });
      const overwrites = Array.from({ length: 16 }, (_, i): [string, Uint8Array] => [`/state/live/k${40 + i}`, new Uint8Array(60_000).fill(round & 255)]);
      const writes = [store.putMany('app', overwrites), ...Array.from({ length: 10 }, (_, i) => store.put('app', `/state/new/r${round}-${i}`, new Uint8Array(60_000)))];
      await Promise.allSettled(writes);
      const now = await used();
      assert.ok(now <= hard, `round ${round}: used ${now} over the hard quota ${hard}`);
      for (let i = 0; i < 10; i++) await store.delete('app', `/state/new/r${round}-${i}`).catch(() => undefined);
      store.setAccess({});
    }
  } finally {
    await store.close();
  }
});

test('close() lets everything called before it finish, a snapshot included, and a second close() waits for the same close', async () => {
  const { store, image } = await nearlyFull();
  const calls = [
    codeOf(store.putMany('app', bigBatch(1))),
    codeOf(store.put('app', '/state/x', 'before')),
    codeOf(store.snapshot('app', 's1')),
    codeOf(store.put('app', '/state/y', 'after')),
  ];
  const first = store.close();
  const second = store.close();
  await second;
  assert.equal(await codeOf(store.get('app', '/state/x')), 'EBADF', 'closed once the second close() resolved');
  await first;
  const results = await Promise.all(calls);
  assert.deepEqual(results.slice(1), ['OK', 'OK', 'OK']);
  assert.ok(['OK', 'ENOSPC'].includes(results[0] ?? ''), `the batch: ${String(results[0])}`);
  assert.equal(await codeOf(store.snapshot('app', 's2')), 'EBADF', 'a call after close() is refused');
  const reopened = await openMemory(image);
  try {
    assert.deepEqual(await reopened.listSnaps('app'), ['s1']);
    assert.equal(text(await reopened.get('app', '/state/x')), 'before');
    assert.equal(text(await reopened.get('app', '/state/y')), 'after');
  } finally {
    await reopened.close();
  }
});

/** A memory device whose calls complete on a later turn of the event loop, as a disk's do. */
class SlowDevice implements BlockDevice {
  readonly #m: MemoryDevice;
  constructor(bytes: Uint8Array) {
    this.#m = new MemoryDevice(bytes);
  }
  get size(): number {
    return this.#m.size;
  }
  #later<T>(f: () => Promise<T>): Promise<T> {
    return new Promise((resolve, reject) =>
      setTimeout(() => {
        f().then(resolve, reject);
      }, 0),
    );
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    return this.#later(() => this.#m.read(offset, length));
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    const copy = data.slice();
    return this.#later(() => this.#m.write(offset, copy));
  }
  flush(): Promise<void> {
    return this.#later(() => this.#m.flush());
  }
  close(): Promise<void> {
    return this.#m.close();
  }
}

test('close() with a write waiting for room and a snapshot or restore refused in the same tick finishes (it spun the event loop for good)', async () => {
  for (const late of ['snapshot', 'restore'] as const) {
    const store = await Store.openDevice(new SlowDevice(await memoryImage(8 * MiB)));
    for (let n = 0; ; n++) {
      const code = await codeOf(store.put('app', `/state/live/k${n}`, new Uint8Array(60_000).fill(1)));
      if (code === 'ENOSPC') break;
    }
    for (let i = 0; i < 40; i++) await store.delete('app', `/state/live/k${i}`);
    await store.snapshot('app', 'base');
    let closed = false;
    for (let round = 0; round < 40 && !closed; round++) {
      const { done: big, waits } = await startWaits(store, () => store.putMany('app', bigBatch(round)), 16 * 65_000);
      if (!waits) {
        await big;
        continue;
      }
      const close = codeOf(store.close());
      const refused = codeOf(late === 'snapshot' ? store.snapshot('app', 'late') : store.restoreSnap('app', 'base'));
      assert.deepEqual(await Promise.all([refused, close]), ['EBADF', 'OK'], late);
      assert.ok(['OK', 'ENOSPC'].includes(await big), late);
      closed = true;
    }
    assert.ok(closed, `${late}: a round found a write waiting for room`);
  }
});
