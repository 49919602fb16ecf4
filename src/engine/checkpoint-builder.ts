import type { Checkpoint, CheckpointSnapshot } from '../format/checkpoint.js';
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
  const entries: Checkpoint['entries'] = { runs: [], keys: [], counts: [], extents: [] };
  for (const [subject, tree] of [...trees].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (tree.size === 0) continue;
    tree.forEachPair((bin, e) => {
      entries.keys.push(bin);
      entries.counts.push(1 + e.moreRecords.length);
      entries.extents.push(e.segment, e.offset, e.recordLength);
      for (const x of e.moreRecords) entries.extents.push(x.segment, x.offset, x.length);
    });
    entries.runs.push({ subject, end: entries.keys.length });
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
