import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BTree } from '../src/engine/btree.js';
import { DirectoryCounts, SteppedDirectoryCounts } from '../src/engine/directory-counts.js';
import type { EntryRef } from '../src/engine/entry-table.js';
import { Keyspace } from '../src/engine/keyspace.js';
import { Store } from '../src/engine/store.js';
import { StatefsError } from '../src/errors.js';
import { memoryImage, openMemory } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

const code = (c: string) => (err: unknown) => err instanceof StatefsError && err.code === c;

/** Every directory path of `keys`: each proper prefix ending before a slash (as the counts name them). */
function directoriesOf(keys: Iterable<string>): Set<string> {
  const dirs = new Set<string>();
  for (const key of keys) for (let slash = key.indexOf('/', 1); slash !== -1; slash = key.indexOf('/', slash + 1)) dirs.add(key.slice(0, slash));
  return dirs;
}

const segment = fc.constantFrom('a', 'b', 'a-1', 'a0', 'c');
const keyArb = fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => `/state/${parts.join('/')}`);
const opArb = fc.record({ add: fc.boolean(), key: keyArb });

test('directory counts name exactly the directories of the keys, kept in step or built from sorted keys', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60, size: 'max' }), (ops) => {
      const keys = new Set<string>();
      const counts = new DirectoryCounts();
      // Every candidate path, present or not: a directory whose last key went must be gone.
      const candidates = [...directoriesOf(ops.map((o) => `${o.key}/x`))];
      ops.forEach(({ add, key }, i) => {
        if (add && !keys.has(key)) {
          keys.add(key);
          counts.added(key);
        } else if (!add && keys.has(key)) {
          keys.delete(key);
          counts.removed(key);
        }
        // Asked now and then, so runs of adds under one parent form, and some end in a question,
        // some in a remove or an add elsewhere (each counts the run first).
        if (i % 3 !== 2) return;
        const expected = directoriesOf(keys);
        const candidate = candidates[i % Math.max(1, candidates.length)];
        if (candidate !== undefined) assert.equal(counts.has(candidate), expected.has(candidate), `kept in step, after op ${i}: ${candidate}`);
      });
      // Built from the keys in ascending order (the walk that starts a subject's counts): runs under one parent.
      const built = new DirectoryCounts();
      for (const key of [...keys].sort()) built.added(key);
      const expected = directoriesOf(keys);
      for (const candidate of candidates) {
        assert.equal(counts.has(candidate), expected.has(candidate), `kept in step: ${candidate}`);
        assert.equal(built.has(candidate), expected.has(candidate), `built: ${candidate}`);
      }
    }),
    { seed: 20261126, numRuns: 300 },
  );
});

test('directory counts built in steps from a frozen copy, with writes in between, name exactly the directories of the keys at the end', () => {
  fc.assert(
    fc.property(fc.array(keyArb, { maxLength: 40 }), fc.array(fc.tuple(opArb, fc.integer({ min: 1, max: 5 })), { maxLength: 60 }), (initial, ops) => {
      const tree = new BTree<string, true>();
      for (const key of initial) tree.set(key, true);
      const build = new SteppedDirectoryCounts(tree.clone());
      let counts: DirectoryCounts | undefined;
      for (const [{ add, key }, stepKeys] of ops) {
        if (add && !tree.has(key)) {
          tree.set(key, true);
          if (counts === undefined) build.added(key);
          else counts.added(key);
        } else if (!add && tree.has(key)) {
          tree.delete(key);
          if (counts === undefined) build.removed(key);
          else counts.removed(key);
        }
        counts ??= build.step(stepKeys);
      }
      for (let guard = 0; counts === undefined; guard++) {
        assert.ok(guard <= initial.length + 1, 'the build ends');
        counts = build.step(1);
      }
      const expected = directoriesOf(tree.keys());
      for (const candidate of directoriesOf([...initial, ...ops.map(([o]) => o.key)].map((k) => `${k}/x`))) {
        assert.equal(counts.has(candidate), expected.has(candidate), candidate);
      }
    }),
    { seed: 20261127, numRuns: 300 },
  );
});

test('a restore brings back the directories of the snapshot for the tree rules', async () => {
  const s: Store = await openMemory(await memoryImage(16 * 1024 * 1024));
  try {
    // Enough writes first that the subject's rules are answered from its directory counts.
    await s.putMany('app', Array.from({ length: 4200 }, (_, i): [string, string] => [`/state/f/k${i}`, 'v']));
    await s.put('app', '/state/a/b', 'v');
    await s.snapshot('app', 'with-dir');
    await s.delete('app', '/state/a/b');
    await s.put('app', '/state/a', 'now a key'); // `/state/a` stops being a directory
    await s.restoreSnap('app', 'with-dir');
    await assert.rejects(s.put('app', '/state/a', 'x'), code('EISDIR'));
    await s.put('app', '/state/a/c', 'beside b');
    assert.deepEqual((await s.list('app', '/state/a/')).keys, ['/state/a/b', '/state/a/c']);
  } finally {
    await s.close();
  }
});

test('a batch under an existing directory still meets ENOTDIR from a key above it', async () => {
  const s: Store = await openMemory(await memoryImage());
  try {
    await s.put('app', '/state/x/y/z', 'deep');
    await s.put('app', '/state/k', 'a key');
    await assert.rejects(s.put('app', '/state/k/sub', 'under a key'), code('ENOTDIR'));
    await assert.rejects(s.putMany('app', [['/state/x/y/w', '1'], ['/state/k/q', '2']]), code('ENOTDIR'));
    await s.putMany('app', [['/state/x/y/w', '1'], ['/state/x/v', '2']]);
    await assert.rejects(s.put('app', '/state/x/y', 'has children'), code('EISDIR'));
  } finally {
    await s.close();
  }
});

/** The code a write fails with, or 'ok'. */
async function outcome(write: () => Promise<void>): Promise<string> {
  try {
    await write();
    return 'ok';
  } catch (err) {
    if (err instanceof StatefsError) return err.code;
    throw err;
  }
}

test('putMany meets exactly the error the same puts one by one would, or writes the same keys', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(keyArb, { maxLength: 6 }), fc.array(keyArb, { minLength: 1, maxLength: 8 }), async (before, batch) => {
      const [one, many] = [await openMemory(await memoryImage()), await openMemory(await memoryImage())];
      try {
        for (const key of before) {
          const a = await outcome(() => one.put('app', key, 'v'));
          assert.equal(await outcome(() => many.put('app', key, 'v')), a);
        }
        let expected = 'ok';
        const probe = await openMemory(await memoryImage()); // the batch's puts one by one, on a copy
        try {
          for (const key of before) await outcome(() => probe.put('app', key, 'v'));
          for (const key of batch) {
            expected = await outcome(() => probe.put('app', key, 'w'));
            if (expected !== 'ok') break;
          }
        } finally {
          await probe.close();
        }
        assert.equal(await outcome(() => many.putMany('app', batch.map((k) => [k, 'w']))), expected, `batch ${JSON.stringify(batch)} after ${JSON.stringify(before)}`);
        if (expected === 'ok') for (const key of batch) await one.put('app', key, 'w');
        assert.deepEqual((await many.list('app', '/state/')).keys, (await one.list('app', '/state/')).keys, 'a refused batch writes nothing');
      } finally {
        await one.close();
        await many.close();
      }
    }),
    { seed: 20261126, numRuns: 150 },
  );
});

/** Keys of large batches: mostly leaves of a few directories, now and then a key above or below one of them. */
const leafArb = fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 99 })).map(([d, k]) => `/state/d${d}/k${k}`);
const clashArb = fc.constantFrom('/state/d2', '/state/d4/k7/x', '/state/d1/k3/y/z', '/state/e/k1', '/state/e', '/state/d5/k30');
const bigBatchArb = fc.oneof(
  fc.array(fc.oneof({ weight: 40, arbitrary: leafArb }, { weight: 1, arbitrary: clashArb }), { minLength: 64, maxLength: 90 }),
  // 256 entries or more: the subject's round commits as a tree of its own (Keyspace.batchAhead).
  fc.array(fc.oneof({ weight: 1000, arbitrary: leafArb }, { weight: 1, arbitrary: clashArb }), { minLength: 256, maxLength: 300 }),
);

test('a large batch (applied grouped by directory) meets exactly the error the same puts one by one would, or writes the same keys', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.oneof(leafArb, clashArb), { maxLength: 6 }), bigBatchArb, async (before, batch) => {
      const many = await openMemory(await memoryImage());
      const probe = await openMemory(await memoryImage()); // the batch's puts one by one
      try {
        for (const key of before) assert.equal(await outcome(() => many.put('app', key, 'v')), await outcome(() => probe.put('app', key, 'v')));
        let expected = 'ok';
        for (const key of batch) {
          expected = await outcome(() => probe.put('app', key, 'w'));
          if (expected !== 'ok') break;
        }
        const listed = (await many.list('app', '/state/')).keys;
        assert.equal(await outcome(() => many.putMany('app', batch.map((k) => [k, 'w']))), expected, `batch ${JSON.stringify(batch)} after ${JSON.stringify(before)}`);
        if (expected === 'ok') assert.deepEqual((await many.list('app', '/state/')).keys, (await probe.list('app', '/state/')).keys);
        else assert.deepEqual((await many.list('app', '/state/')).keys, listed, 'a refused batch writes nothing');
      } finally {
        await many.close();
        await probe.close();
      }
    }),
    { seed: 20261128, numRuns: 120 },
  );
});

test('large batches on a subject with directory counts meet the same errors, and a refused one writes nothing', async () => {
  const s: Store = await openMemory(await memoryImage(32 * 1024 * 1024));
  try {
    // 6,000 keys in one batch ask "has children?" 6,000 times: past 4,096 the subject has its counts.
    await s.putMany('app', Array.from({ length: 6000 }, (_, i): [string, string] => [`/state/d${i % 6}/k${i}`, 'v']));
    const leaves = (tag: string): [string, string][] => Array.from({ length: 300 }, (_, i): [string, string] => [`/state/d${i % 6}/${tag}${i}`, 'w']);
    await s.putMany('app', leaves('n'));
    const before = (await s.list('app', '/state/', { limit: 10_000 })).keys;
    assert.equal(before.length, 6300);
    await assert.rejects(s.putMany('app', [...leaves('a'), ['/state/d2', 'x']]), code('EISDIR'));
    await assert.rejects(s.putMany('app', [...leaves('b'), ['/state/d1/k1/y', 'x']]), code('ENOTDIR'));
    await assert.rejects(s.putMany('app', [...leaves('c'), ['/state/e', 'x'], ...leaves('d'), ['/state/e/f', 'x']]), code('ENOTDIR'));
    await assert.rejects(s.putMany('app', [...leaves('g'), ['/state/h/i', 'x'], ...leaves('j'), ['/state/h', 'x']]), code('EISDIR'));
    assert.deepEqual((await s.list('app', '/state/', { limit: 10_000 })).keys, before, 'refused batches wrote nothing');
  } finally {
    await s.close();
  }
});

test('tree rules agree before and after a subject is written often enough to get directory counts', async () => {
  const s: Store = await openMemory(await memoryImage(16 * 1024 * 1024));
  try {
    const check = async (when: string): Promise<void> => {
      await assert.rejects(s.put('app', '/state/d3', 'x'), code('EISDIR'), when);
      await assert.rejects(s.put('app', '/state/d3/k3/under', 'x'), code('ENOTDIR'), when);
      await assert.rejects(s.delete('app', '/state/d4'), code('EISDIR'), when);
      await assert.rejects(s.putMany('app', [['/state/d5/new', 'x'], ['/state/d5', 'y']]), code('EISDIR'), when);
    };
    for (let i = 0; i < 100; i++) await s.put('app', `/state/d${i % 10}/k${i}`, 'v');
    await check('answered from the tree');
    // Every put asks "has children?" at least once: past 4,096 the subject has its counts.
    for (let i = 100; i < 5000; i++) await s.put('app', `/state/d${i % 10}/k${i}`, 'v');
    await check('answered from the counts');
    // The counts follow deletes: once a directory is empty its name may hold a value.
    for (let i = 9; i < 5000; i += 10) await s.delete('app', `/state/d9/k${i}`);
    await s.put('app', '/state/d9', 'now a key');
    await assert.rejects(s.put('app', '/state/d9/k9', 'x'), code('ENOTDIR'));
    assert.equal((await s.list('app', '/state/d9', { limit: 10 })).keys.length, 1);
  } finally {
    await s.close();
  }
});

test('a subject\'s directory counts follow the puts, deletes and restore made while they are built in steps', () => {
  // Keyspace directly, so the questions are counted exactly: the 4,096th "has children?" starts a
  // build from a clone of 20,002 keys, 512 keys a question, so ~40 questions pass before it ends.
  const start = (): Keyspace => {
    const tree = new BTree<string, EntryRef>();
    for (let i = 0; i < 20_000; i++) tree.set(`/state/f/k${String(i).padStart(5, '0')}`, i);
    tree.set('/state/gone/x', 1);
    tree.set('/state/keep/x', 1);
    const keys = new Keyspace(new Map([['app', tree]]));
    for (let i = 0; i < 4100; i++) assert.equal(keys.view('app').hasChildren('/state/zz'), false);
    return keys;
  };
  const askMany = (keys: Keyspace): void => {
    for (let i = 0; i < 200; i++) keys.view('app').hasChildren('/state/zz');
  };

  const keys = start();
  keys.set('app', '/state/new/x', 2); // a new directory while the build is under way
  keys.delete('app', '/state/gone/x'); // and a directory's last key gone
  askMany(keys); // the build ends: the changes made meanwhile are applied
  const view = keys.view('app');
  assert.equal(view.hasChildren('/state/new'), true);
  assert.equal(view.hasChildren('/state/gone'), false);
  assert.equal(view.hasChildren('/state/keep'), true);
  assert.equal(view.hasChildren('/state/f'), true);

  // Deletes alone (which ask the rules nothing) also finish a build: afterwards the counts answer,
  // and the tree is no longer searched.
  const deleting = start();
  const working = deleting.workingTree('app');
  assert.ok(working !== undefined);
  let searched = 0;
  const search = working.nextHigherKey.bind(working);
  working.nextHigherKey = (key) => {
    searched++;
    return search(key);
  };
  for (let i = 0; i < 100; i++) deleting.delete('app', `/state/f/k${String(i).padStart(5, '0')}`);
  deleting.delete('app', '/state/gone/x');
  assert.equal(deleting.view('app').hasChildren('/state/gone'), false);
  assert.equal(deleting.view('app').hasChildren('/state/keep'), true);
  assert.equal(deleting.view('app').hasChildren('/state/f'), true);
  assert.equal(searched, 0, 'answered by the counts');

  const restored = start();
  const snap = new BTree<string, EntryRef>();
  snap.set('/state/r/x', 3);
  restored.replace('app', snap); // a restore while the build is under way drops it
  askMany(restored);
  for (let i = 0; i < 5000; i++) restored.view('app').hasChildren('/state/zz'); // and a new one is built
  assert.equal(restored.view('app').hasChildren('/state/f'), false);
  assert.equal(restored.view('app').hasChildren('/state/r'), true);
});
