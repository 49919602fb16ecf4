import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BTree, replaceIfPresent } from '../src/engine/btree.js';
import { guardResources } from './hygiene.js';

guardResources();

test('replaceIfPresent replaces a present key in place and hands back its value; an absent key changes nothing; clones keep theirs', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 0, max: 2000 }), { maxLength: 600 }),
      fc.array(fc.integer({ min: 0, max: 2000 }), { minLength: 1, maxLength: 60 }),
      (present, writes) => {
        const tree = new BTree<string, number>();
        const model = new Map<string, number>();
        for (const k of present) {
          tree.set(`/state/k${k}`, k);
          model.set(`/state/k${k}`, k);
        }
        const clone = tree.clone(); // copy-on-write: the writes below must not reach it
        const cloned = new Map(model);
        writes.forEach((k, i) => {
          const key = `/state/k${k}`;
          const value = 100_000 + i;
          assert.equal(replaceIfPresent(tree, key, value), model.get(key), key);
          if (model.has(key)) model.set(key, value);
        });
        assert.deepEqual(new Map(tree.entries()), model);
        assert.equal(tree.size, model.size);
        assert.deepEqual(new Map(clone.entries()), cloned);
      },
    ),
    { seed: 20261128, numRuns: 200 },
  );
});
