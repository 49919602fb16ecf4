/** Batches smaller than this are applied to the index in the order given (grouping would not repay its map). */
export const GROUP_FROM = 64;

/**
 * The order in which `putMany` applies a batch's entries to the index: grouped by parent
 * directory, the groups in the order of their first key, each group's keys in the order given
 * (so a key given twice is still applied last with its last value). The records are written in
 * the order given either way; only the inserts into the B+ tree are reordered.
 *
 * Why: a batch that interleaves directories (a load of many apps' keys) sends consecutive inserts
 * down different paths of a large tree, and each insert then misses the cache at every level
 * (~3 µs an insert into a million-key tree on a 2-core VM). Grouped, consecutive inserts share
 * their path, and the nodes one directory's keys add are made one after another, so they lie
 * together in memory for later reads (docs/performance.md). Grouping costs one map lookup per
 * key, a full sort about ten.
 */
export function directoryOrder(bins: readonly string[]): Int32Array {
  const n = bins.length;
  const order = new Int32Array(n);
  if (n < GROUP_FROM) {
    for (let i = 0; i < n; i++) order[i] = i;
    return order;
  }
  const groupOf = new Int32Array(n);
  // Per group, its size, then (below) where its next key goes in `order`.
  const slot = new Int32Array(n);
  const groups = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const bin = bins[i] ?? '';
    const dir = bin.slice(0, bin.lastIndexOf('/') + 1);
    let g = groups.get(dir);
    if (g === undefined) groups.set(dir, (g = groups.size));
    groupOf[i] = g;
    slot[g] = (slot[g] ?? 0) + 1;
  }
  for (let g = 0, at = 0; g < groups.size; g++) {
    const size = slot[g] ?? 0;
    slot[g] = at;
    at += size;
  }
  for (let i = 0; i < n; i++) {
    const g = groupOf[i] ?? 0;
    const at = slot[g] ?? 0;
    order[at] = i;
    slot[g] = at + 1;
  }
  return order;
}
