import type { Checkpoint, CheckpointSnapshot } from '../format/checkpoint.js';
import { BTree, diffTrees } from './btree.js';
import type { Entry } from './entry.js';
import type { Trees } from './keyspace.js';
import type { MountTable } from './mount-table.js';
import { indexKey } from './names.js';
import type { SnapshotTable } from './snapshot-table.js';

/**
 * The checkpoint of the current state: every live entry, each snapshot as its differences from
 * its subject's live tree (so its size follows what changed since, not the snapshot's size), and
 * the mount tables.
 */
export function buildCheckpoint(trees: Trees, snapshots: SnapshotTable, mounts: MountTable, nextTxnId: number): Checkpoint {
  const entries: Checkpoint['entries'] = [];
  for (const [subject, tree] of [...trees].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    for (const [bin, e] of tree.entries()) entries.push({ key: indexKey(subject, bin), extents: e.extents });
  }
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
