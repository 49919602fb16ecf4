import { DirectoryCounts } from './directory-counts.js';
import { fromBinary } from './names.js';
import { checkPutAllowed, type KeyView } from './tree-rules.js';

/**
 * Tree rules for a batch of puts, checked before any is written: each key against the subject's
 * keys and the batch's earlier keys — exactly what the same puts made one by one would meet, so
 * the error is the one the first failing put would get, and a refused batch is refused whole.
 */
export function checkBatchAllowed(view: KeyView, bins: readonly string[], keys: readonly string[], subject: string, op: string): void {
  const earlier = new Set<string>();
  // The directories the batch's earlier keys make, counted as the store counts its own.
  const earlierDirs = new DirectoryCounts();
  // Keys of a batch share parents: remember each parent's answer (until the batch adds that key).
  const known = new Map<string, boolean>();
  const combined: KeyView = {
    has: (bin) => {
      let has = known.get(bin);
      if (has === undefined) known.set(bin, (has = earlier.has(bin) || view.has(bin)));
      return has;
    },
    hasChildren: (bin) => earlierDirs.has(bin) || view.hasChildren(bin),
    isKnownDirectory: (bin) => earlierDirs.has(bin) || view.isKnownDirectory?.(bin) === true,
  };
  bins.forEach((bin, i) => {
    checkPutAllowed(combined, bin, subject, keys[i] ?? fromBinary(bin), op);
    if (earlier.has(bin)) return; // a key given twice: its last value wins, nothing new to count
    earlier.add(bin);
    earlierDirs.added(bin);
    known.delete(bin);
  });
}
