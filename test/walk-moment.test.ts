import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { MiB, memoryImage } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

// stat, listSnaps details and gcPlan answer for the moment they are called
// (docs/storage/statefs-v3.md 8.1, 8.3), though they walk the index over turns of the event loop:
// what is done after the call, in the same turn or in a later one while the walk is paused, must
// not show in the answer. Each answer is compared with that of the same call made just before,
// on the same unchanged store.

const KEYS = 40_000; // over 32,768 index entries: the walks span turns
const name = (i: number): string => `/state/k${i}`;

/**
 * 'app': KEYS small keys, snapshots 'a' and 'b' that both hold the old value of k0 (so neither
 * holds it alone); 'g': 40 values of 6,000 bytes, half of them overwritten, in segments outside
 * the log chain (GC candidates).
 */
async function fixture(): Promise<Store> {
  const s = await Store.openDevice(new MemoryDevice(await memoryImage(32 * MiB)), { autoGc: false, checkpointBytes: 1 << 30 });
  for (let from = 0; from < KEYS; from += 10_000) {
    await s.putMany('app', Array.from({ length: 10_000 }, (_, j): [string, string] => [name(from + j), `v${from + j}`]));
  }
  await s.put('g', '/state/pad', 'p');
  await s.putMany('g', Array.from({ length: 40 }, (_, i): [string, string] => [`/state/g${i}`, `${i}`.padEnd(6000, '-')]));
  await s.putMany('g', Array.from({ length: 20 }, (_, i): [string, string] => [`/state/g${2 * i}`, `again${i}`.padEnd(6000, '-')]));
  await s.snapshot('app', 'a');
  await s.snapshot('app', 'b');
  await s.put('app', name(0), 'new value of k0, longer than the old one');
  await s.checkpoint(); // the log before it leaves the chain: its segments become candidates
  return s;
}

/** Changes made after a call: at once, in the same turn, and again after a turn (the walk's first pause). */
async function changeEverything(s: Store): Promise<void> {
  const now = [
    s.putMany('g', Array.from({ length: 40 }, (_, i): [string, string] => [`/state/g${i}`, `third${i}`.padEnd(6000, '-')])),
    s.putMany('app', Array.from({ length: 50 }, (_, i): [string, string] => [`/state/new${i}`, 'y'.repeat(4000)])),
    s.deleteSnap('app', 'b'),
  ];
  await new Promise((resolve) => setImmediate(resolve));
  const later = [s.delete('app', name(1)), s.snapshot('app', 'c'), s.put('app', name(2), 'x'.repeat(3000))];
  await Promise.all([...now, ...later]);
}

test('stat answers for the moment of the call, whatever is written right after it', async () => {
  const s = await fixture();
  try {
    const expected = await s.stat();
    const answer = s.stat();
    await changeEverything(s);
    const st = await answer;
    assert.ok(st.garbageBytes >= 0, `garbageBytes ${st.garbageBytes}`);
    assert.deepEqual(st, expected);
  } finally {
    await s.close();
  }
});

test('listSnaps details answer for the moment of the call, whatever is deleted right after it', async () => {
  const s = await fixture();
  try {
    const expected = await s.listSnaps('app', { details: true });
    assert.deepEqual(
      expected.map((i) => [i.name, i.exclusiveBytes]),
      [
        ['a', 0],
        ['b', 0],
      ],
      'a and b share the old k0',
    );
    const answer = s.listSnaps('app', { details: true });
    await changeEverything(s);
    assert.deepEqual(await answer, expected);
  } finally {
    await s.close();
  }
});

test('gcPlan answers for the moment of the call, whatever is written or deleted right after it', async () => {
  const s = await fixture();
  try {
    const options = { maxSegments: 2 };
    const expected = await s.gcPlan(options);
    assert.ok(expected.segments.length > 0, JSON.stringify(expected));
    const answer = s.gcPlan(options);
    await changeEverything(s);
    const plan = await answer;
    assert.ok(plan.remainingGarbageBytes >= 0, `remainingGarbageBytes ${plan.remainingGarbageBytes}`);
    assert.deepEqual(plan, expected);
  } finally {
    await s.close();
  }
});
