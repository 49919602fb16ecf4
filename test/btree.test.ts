import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BTree, deleteIfPresent, replaceIfPresent, type SortedTree } from '../src/engine/btree.js';
import { guardResources } from './hygiene.js';

guardResources();

type Op = { kind: 'replace' | 'set' | 'delete'; key: number } | { kind: 'clone' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('replace' as const), key: fc.integer({ min: 0, max: 5999 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('set' as const), key: fc.integer({ min: 0, max: 5999 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: fc.integer({ min: 0, max: 5999 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'clone' as const }) },
);

test('replaceIfPresent and deleteIfPresent change a present key in one walk and hand back its value; an absent key changes nothing; clones keep theirs', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 5999 }), { maxLength: 5000, size: 'max' }), fc.array(opArb, { minLength: 1, maxLength: 400, size: 'max' }), (present, ops) => {
      // Up to 5,000 keys (three levels of nodes of 64), with deletes among the replaces so that
      // underfull nodes meet the walk, and clones taken along the way.
      const tree = new BTree<string, number>();
      const model = new Map<string, number>();
      for (const k of present) {
        tree.set(`/state/k${k}`, k);
        model.set(`/state/k${k}`, k);
      }
      const clones: { tree: SortedTree<string, number>; expected: Map<string, number> }[] = [{ tree: tree.clone(), expected: new Map(model) }];
      ops.forEach((op, i) => {
        if (op.kind === 'clone') {
          clones.push({ tree: tree.clone(), expected: new Map(model) });
          return;
        }
        const key = `/state/k${op.key}`;
        if (op.kind === 'delete') {
          assert.equal(deleteIfPresent(tree, key), model.get(key), `delete ${key}`);
          model.delete(key);
        } else if (op.kind === 'set') {
          tree.set(key, i);
          model.set(key, i);
        } else {
          assert.equal(replaceIfPresent(tree, key, 100_000 + i), model.get(key), key);
          if (model.has(key)) model.set(key, 100_000 + i);
        }
      });
      tree.checkValid();
      assert.deepEqual(new Map(tree.entries()), model);
      assert.equal(tree.size, model.size);
      for (const c of clones) {
        c.tree.checkValid();
        assert.deepEqual(new Map(c.tree.entries()), c.expected, 'a clone never changes');
      }
    }),
    { seed: 20261128, numRuns: 60 },
  );
});
