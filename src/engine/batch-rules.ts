import { BTree } from './btree.js';
import { fromBinary } from './names.js';
import { checkPutAllowed, type KeyView } from './tree-rules.js';

/**
 * Tree rules for a batch of puts, checked before any is written: each key against the subject's
 * keys and the batch's earlier keys — exactly what the same puts made one by one would meet, so
 * the error is the one the first failing put would get, and a refused batch is refused whole.
 */
export function checkBatchAllowed(view: KeyView, bins: readonly string[], keys: readonly string[], subject: string, op: string): void {
  // In ascending order no earlier key can lie below a later one, so a set answers every question
  // about earlier keys; in any other order a sorted tree finds earlier descendants.
  const ascending = bins.every((bin, i) => i === 0 || (bins[i - 1] ?? '') <= bin);
  const earlierSet = new Set<string>();
  const earlierTree = ascending ? undefined : new BTree<string, true>();
  // Keys of a batch share parents: remember each parent's answer (until the batch adds that key).
  const known = new Map<string, boolean>();
  const combined: KeyView = {
    has: (bin) => {
      let has = known.get(bin);
      if (has === undefined) known.set(bin, (has = earlierSet.has(bin) || view.has(bin)));
      return has;
    },
    hasChildren: (bin) => view.hasChildren(bin) || earlierTree?.nextHigherKey(`${bin}/`)?.startsWith(`${bin}/`) === true,
  };
  bins.forEach((bin, i) => {
    checkPutAllowed(combined, bin, subject, keys[i] ?? fromBinary(bin), op);
    earlierSet.add(bin);
    known.delete(bin);
    earlierTree?.set(bin, true);
  });
}
