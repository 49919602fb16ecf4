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
