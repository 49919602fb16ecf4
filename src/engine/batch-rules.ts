import { StatefsError } from '../errors.js';
import { fromBinary } from './names.js';
import { checkPutAllowed, type KeyView } from './tree-rules.js';

/**
 * Tree rules for a batch of puts checked before any is written: each key against the subject's
 * keys and every other key of the batch. Any conflict inside the batch would also fail if the
 * puts were made one by one (whichever came second), so checking up front refuses exactly the
 * batches that sequential puts could not complete — and refuses them whole.
 */
export function checkBatchAllowed(view: KeyView, bins: readonly string[], keys: readonly string[], subject: string, op: string): void {
  const batch = new Set(bins);
  const sorted = [...batch].sort();
  const combined: KeyView = {
    has: (bin) => batch.has(bin) || view.has(bin),
    hasChildren: (bin) => view.hasChildren(bin) || hasDescendant(sorted, bin),
  };
  bins.forEach((bin, i) => {
    const key = keys[i] ?? fromBinary(bin);
    if (combined.hasChildren(bin)) throw StatefsError.EISDIR(key, { op, subject });
    checkPutAllowed(combined, bin, subject, key, op);
  });
}

/** Whether a key of `sorted` (ascending, distinct) lies strictly below `bin` in the tree. */
function hasDescendant(sorted: readonly string[], bin: string): boolean {
  const prefix = `${bin}/`;
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] ?? '') < prefix) lo = mid + 1;
    else hi = mid;
  }
  return sorted[lo]?.startsWith(prefix) === true;
}
