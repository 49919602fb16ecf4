import { grown, type Checkpoint, type CheckpointSnapshot } from '../format/checkpoint.js';
import { BTree, diffTrees } from './btree.js';
import type { Entry } from './entry.js';
import type { Trees } from './keyspace.js';
import type { MountTable } from './mount-table.js';
import type { SnapshotTable } from './snapshot-table.js';

/**
 * The checkpoint of the current state: every live entry, each snapshot as its differences from
 * its subject's live tree (so its size follows what changed since, not the snapshot's size), and
 * the mount tables.
 */
export function buildCheckpoint(trees: Trees, snapshots: SnapshotTable, mounts: MountTable, nextTxnId: number): Checkpoint {
  let total = 0;
  for (const tree of trees.values()) total += tree.size;
  // Columns, not an object per entry: a checkpoint lists every key of the store.
  const runs: Checkpoint['entries']['runs'] = [];
  const keys: string[] = [];
  const counts = new Uint8Array(total);
  let extents: Uint32Array = new Uint32Array(3 * total); // grown only for values in several records
  let used = 0;
  for (const [subject, tree] of [...trees].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (tree.size === 0) continue;
    tree.forEachPair((bin, e) => {
      const more = e.moreRecords;
      counts[keys.length] = 1 + more.length;
      keys.push(bin);
      if (used + 3 + 3 * more.length > extents.length) extents = grown(extents, used + 3 + 3 * more.length);
      extents[used++] = e.segment;
      extents[used++] = e.offset;
      extents[used++] = e.recordLength;
      for (const x of more) {
        extents[used++] = x.segment;
        extents[used++] = x.offset;
        extents[used++] = x.length;
      }
    });
    runs.push({ subject, end: keys.length });
  }
  const entries: Checkpoint['entries'] = { runs, keys, counts, extents: extents.subarray(0, used) };
  const snaps: CheckpointSnapshot[] = [];
  for (const snap of snapshots.all()) {
    const live = trees.get(snap.subject) ?? new BTree<string, Entry>();
    const diff: CheckpointSnapshot['diff'] = [];
    diffTrees(
      snap.tree,
      live,
      (key, e) => diff.push({ key, extents: e.extents }),
      (key) => diff.push({ key, extents: null }),
      (key, e) => diff.push({ key, extents: e.extents }),
    );
    snaps.push({ subject: snap.subject, name: snap.name, id: snap.id, digest: snap.digest, diff });
  }
  return { nextTxnId, entries, nextSnapId: snapshots.nextId, snapshots: snaps, mounts: mounts.all() };
}
