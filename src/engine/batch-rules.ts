import { DirectoryCounts } from './directory-counts.js';
import { KEY_ROOT, fromBinary } from './names.js';
import { checkPutAllowed, type KeyView } from './tree-rules.js';

/**
 * Tree rules for a batch of puts, checked before any is written: each key against the subject's
 * keys and the batch's earlier keys — exactly what the same puts made one by one would meet, so
 * the error is the one the first failing put would get, and a refused batch is refused whole.
 * `order` is the batch in the order the index will take it (grouped by parent: `directoryOrder`).
 */
export function checkBatchAllowed(view: KeyView, bins: readonly string[], keys: readonly string[], order: Int32Array, subject: string, op: string): void {
  if (batchPasses(view, bins, order)) return;
  checkInOrder(view, bins, keys, subject, op);
}

/**
 * Whether the puts of a batch all pass the tree rules, whatever their order: no key of the batch
 * lies under another, none has children among the subject's keys, and no ancestor of one holds a
 * value there. The rules look only at the keys above and below a key, and a batch only adds keys,
 * so a batch that passes here passes one put at a time in any order, and one that does not fails
 * in every order (`checkInOrder` then finds the error the given order meets first). Taken in the
 * index's order (grouped by parent from `GROUP_FROM` entries on), the ancestors of a run of keys
 * under one parent are looked at once, not once per key: the common case of a large batch costs
 * two lookups per key (among the batch's directories, and "has children?").
 */
function batchPasses(view: KeyView, bins: readonly string[], order: Int32Array): boolean {
  // Every directory the batch's keys make (each ancestor of each key), a group at a time.
  const dirs = new Set<string>();
  let prefix = ''; // the current group's parent, with its slash
  for (const i of order) {
    const bin = bins[i] ?? '';
    const lastSlash = bin.lastIndexOf('/');
    if (lastSlash === prefix.length - 1 && bin.startsWith(prefix)) continue;
    prefix = bin.slice(0, lastSlash + 1);
    if (!ancestorsHoldNoValue(view, bin, lastSlash)) return false;
    for (let slash = lastSlash; slash > 0; slash = bin.lastIndexOf('/', slash - 1)) {
      const dir = bin.slice(0, slash);
      if (dirs.has(dir)) break; // and so are its ancestors
      dirs.add(dir);
    }
  }
  // A key that is one of those directories lies above another key of the batch.
  for (const bin of bins) if (dirs.has(bin) || view.hasChildren(bin)) return false;
  return true;
}

/** No ancestor of `bin` (whose last slash is at `lastSlash`) holds a value among the subject's keys, as `checkPutAllowed` asks it. */
function ancestorsHoldNoValue(view: KeyView, bin: string, lastSlash: number): boolean {
  // A known directory's ancestors hold no value (the rules never let them).
  if (lastSlash >= KEY_ROOT.length && view.isKnownDirectory?.(bin.slice(0, lastSlash)) === true) return true;
  for (let slash = bin.indexOf('/', KEY_ROOT.length); slash !== -1; slash = bin.indexOf('/', slash + 1)) {
    if (view.has(bin.slice(0, slash))) return false;
  }
  return true;
}

/** The batch's puts checked one at a time in the order given, each against the subject and the batch's earlier keys: throws the first error. */
function checkInOrder(view: KeyView, bins: readonly string[], keys: readonly string[], subject: string, op: string): void {
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
