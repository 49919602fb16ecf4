import { createRequire } from 'node:module';
import type * as SortedBTree from 'sorted-btree';

// sorted-btree is CommonJS with its class on `exports.default`; under ESM interop a default
// import yields the exports object, so take `.default` explicitly. Checked right here.
const require = createRequire(import.meta.url);
const mod = require('sorted-btree') as { default: new <K, V>() => SortedBTree.default<K, V> };
if (typeof mod.default !== 'function') throw new Error('sorted-btree: unexpected module shape');

/** A B+ tree sorted map with O(1) copy-on-write `clone()`. */
export const BTree = mod.default;
export type BTree<K, V> = SortedBTree.default<K, V>;

type DiffHandler<K, V> = ((k: K, v: V) => { break?: true } | undefined) | undefined;
const diffModule = require('sorted-btree/extended/diffAgainst') as {
  default: <K, V>(a: BTree<K, V>, b: BTree<K, V>, onlyA?: DiffHandler<K, V>, onlyB?: DiffHandler<K, V>, different?: (k: K, va: V, vb: V) => { break?: true } | undefined) => unknown;
};
if (typeof diffModule.default !== 'function') throw new Error('sorted-btree: unexpected diffAgainst module shape');

/**
 * Report the differences between two trees (in no promised order), skipping subtrees they share
 * (cheap for a tree and its copy-on-write clones). Values are compared by identity.
 */
export function diffTrees<K, V>(
  a: BTree<K, V>,
  b: BTree<K, V>,
  onlyA: (k: K, v: V) => void,
  onlyB: (k: K, v: V) => void,
  different: (k: K, va: V, vb: V) => void,
): void {
  diffModule.default(
    a,
    b,
    (k, v) => {
      onlyA(k, v);
      return undefined;
    },
    (k, v) => {
      onlyB(k, v);
      return undefined;
    },
    (k, va, vb) => {
      different(k, va, vb);
      return undefined;
    },
  );
}
