import { createRequire } from 'node:module';
import type * as SortedBTree from 'sorted-btree';

// sorted-btree is CommonJS with its class on `exports.default`; under ESM interop a default
// import yields the exports object, so take `.default` explicitly. Checked right here.
const require = createRequire(import.meta.url);
const mod = require('sorted-btree') as {
  default: new <K, V>(entries?: [K, V][], compare?: (a: K, b: K) => number, maxNodeSize?: number) => SortedBTree.default<K, V>;
};
if (typeof mod.default !== 'function') throw new Error('sorted-btree: unexpected module shape');
const SortedMap = mod.default;
/** Node size of every tree (wider than the library's 32: fewer levels for million-key trees). */
const MAX_NODE_SIZE = 64;

/** Plain `<` order: for our string keys it is bytewise order (binary strings), and cheaper than the library's default comparator, which also handles mixed types. */
function compareKeys<K extends string | number>(a: K, b: K): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** A sorted map: built by `new BTree()` or `bulkTree`, or cloned from another. */
export type SortedTree<K, V> = SortedBTree.default<K, V>;

/** A B+ tree sorted map with O(1) copy-on-write `clone()` (clones keep the comparator). */
export class BTree<K extends string | number, V> extends SortedMap<K, V> {
  constructor() {
    super(undefined, compareKeys, MAX_NODE_SIZE);
  }
}

const bulkModule = require('sorted-btree/extended/bulkLoad') as {
  bulkLoad: <K, V>(keys: K[], values: V[], maxNodeSize: number, compare: (a: K, b: K) => number) => SortedBTree.default<K, V>;
};
if (typeof bulkModule.bulkLoad !== 'function') throw new Error('sorted-btree: unexpected bulkLoad module shape');


/** Build a tree from keys in strictly ascending order in O(n) (the caller checks the order). */
export function bulkTree<K extends string | number, V>(keys: K[], values: V[]): SortedTree<K, V> {
  return bulkModule.bulkLoad(keys, values, MAX_NODE_SIZE, compareKeys);
}

/**
 * Give `key` the value `value` if the tree holds the key, in one walk (`get`, then `set`, takes
 * two: in a large tree each walk misses the cache at every level). Returns the value it held, or
 * undefined if the tree holds no such key: its contents are then unchanged, though nodes on the
 * path may be copied (shared with a clone) or merged (underfull), as a `set` or `delete` may.
 */
export function replaceIfPresent<K extends string | number, V>(tree: SortedTree<K, V>, key: K, value: V): V | undefined {
  let old: V | undefined;
  tree.editRange(key, key, true, (_k, v) => {
    old = v;
    return { value };
  });
  return old;
}

/** Remove `key` in one walk (`get`, then `delete`, takes two); returns the value it held, or undefined if the tree holds no such key. */
export function deleteIfPresent<K extends string | number, V>(tree: SortedTree<K, V>, key: K): V | undefined {
  let old: V | undefined;
  tree.editRange(key, key, true, (_k, v) => {
    old = v;
    return { delete: true };
  });
  return old;
}

type DiffHandler<K, V> = ((k: K, v: V) => { break?: true } | undefined) | undefined;
const diffModule = require('sorted-btree/extended/diffAgainst') as {
  default: <K extends string | number, V>(a: SortedTree<K, V>, b: SortedTree<K, V>, onlyA?: DiffHandler<K, V>, onlyB?: DiffHandler<K, V>, different?: (k: K, va: V, vb: V) => { break?: true } | undefined) => unknown;
};
if (typeof diffModule.default !== 'function') throw new Error('sorted-btree: unexpected diffAgainst module shape');

/**
 * Report the differences between two trees (in no promised order), skipping subtrees they share
 * (cheap for a tree and its copy-on-write clones). Values are compared by identity.
 */
export function diffTrees<K extends string | number, V>(
  a: SortedTree<K, V>,
  b: SortedTree<K, V>,
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
