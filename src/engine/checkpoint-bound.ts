import { BTree, diffTrees } from './btree.js';
import type { EntryRef, EntryTable } from './entry-table.js';
import type { Tree, Trees } from './keyspace.js';
import type { Mount, MountTable } from './mount-table.js';
import type { SnapshotTable } from './snapshot-table.js';

/*
 * Upper bounds of a version 5 checkpoint payload (docs/storage/statefs-v3.md 7.1), for the
 * segments kept in reserve for the next checkpoint (8.2). Every key is counted whole (as if it
 * shared nothing with the previous one) and every varint at its widest, so a bound never depends
 * on which keys happen to be neighbours: an estimate from the last checkpoint's bytes per entry
 * did, and sorted short keys followed by random long ones left a full image that could not be
 * emptied (Appendix A, item 8).
 *
 * Why a change can be bounded on its own: the payload's keys are sorted, and for sorted X < Z < Y
 * the bytes Y shares with Z are at least those it shares with X. So inserting Z never makes
 * another entry longer (Y shares more, and its rest shrinks by at least what its `shared`
 * varint can grow); deleting Z can make Y's rest longer by at most Z's own rest, which Z's removed
 * entry (two varints, the rest, the count, an extent) more than pays for.
 */

/** Fixed fields: version, next_txn_id, entry_count, next_snap_id, snapshot_count, mount_count. */
const PAYLOAD_FIXED = 1 + 8 + 4 + 8 + 4 + 4;
/** A live entry beyond its index key and extents: varint shared (≤ 320: 2 bytes), varint rest_len (3), extent_count (1). */
const LIVE_ENTRY_FIXED = 2 + 3 + 1;
/** A live entry's extent: three varints of at most 5 bytes. */
const LIVE_EXTENT = 15;
/** A PUTRUN slice's lead after its first extent: a varint in a live entry, a u32 in a difference. */
const LIVE_LEAD = 5;
const DIFF_LEAD = 4;
/** A snapshot's difference beyond its key and extents: key_len (2), extent_count (1); extents 12 bytes each. */
const DIFF_FIXED = 3;
const DIFF_EXTENT = 12;
/** A snapshot beyond its subject and name: their two length bytes, snap_id, has_digest, the digest, diff_count. */
const SNAPSHOT_FIXED = 1 + 1 + 8 + 1 + 32 + 4;
/**
 * An entry moved to one new record (by GC, or a checkpoint's re-written change): its extent at
 * its widest. (The v1 upgrade's moves are not counted: open's bound of a legacy state counts
 * each entry's first record already.)
 */
export const MOVED_RECORD_BOUND = LIVE_EXTENT;
/** A digest a checkpoint did not have yet, recorded since. */
export const DIGEST_BYTES = 32;

/** Most bytes a live entry of `subject`'s key `bin` holding `e` takes. */
export function liveEntryBound(entries: EntryTable, subject: string, bin: string, e: EntryRef): number {
  return LIVE_ENTRY_FIXED + subject.length + 1 + bin.length + movedEntryBound(entries, e);
}

/** Most bytes one snapshot's difference at `bin` takes: naming `held` (the snapshot's entry), or none (absent in the snapshot). */
export function diffEntryBound(entries: EntryTable, bin: string, held: EntryRef | undefined): number {
  return DIFF_FIXED + bin.length + (held === undefined ? 0 : DIFF_EXTENT * entries.extentCount(held) + (entries.recordLead(held) === 0 ? 0 : DIFF_LEAD));
}

/** Most bytes a live entry's change of records can add: its extents written at their widest. */
export function movedEntryBound(entries: EntryTable, e: EntryRef): number {
  return LIVE_EXTENT * entries.extentCount(e) + (entries.recordLead(e) === 0 ? 0 : LIVE_LEAD);
}

export function snapshotHeaderBound(subject: string, name: string): number {
  return SNAPSHOT_FIXED + subject.length + name.length;
}

export function mountBound(m: Pick<Mount, 'caller' | 'path' | 'owner' | 'name'>): number {
  return 1 + m.caller.length + 2 + m.path.length + 1 + m.owner.length + 1 + m.name.length + 8;
}

/**
 * Most bytes a change of `subject`'s key `bin` from `before` to `after` (undefined: absent) can
 * add to the next checkpoint, given the subject's snapshot count. The live entry: a new one whole,
 * a changed one its extents (the key takes the same bytes). Only the newest snapshot of the
 * subject is written against the live tree (the others against the next newer snapshot), and it
 * gains a difference at `bin` only if it held what the live tree held before (`before`, or
 * nothing), so the difference names `before`: no snapshot needs looking at.
 */
export function changeBound(entries: EntryTable, subject: string, bin: string, before: EntryRef | undefined, after: EntryRef | undefined, snapshotsOfSubject: number): number {
  const live = after === undefined ? 0 : before === undefined ? liveEntryBound(entries, subject, bin, after) : movedEntryBound(entries, after);
  return snapshotsOfSubject === 0 ? live : live + diffEntryBound(entries, bin, before);
}

/** Most bytes a restore of `subject` from a snapshot's tree can add: `changeBound` of each key it changes. */
export function restoreBound(entries: EntryTable, subject: string, live: Tree | undefined, restored: Tree, snapshotsOfSubject: number): number {
  let n = 0;
  diffTrees(
    live ?? new BTree<string, EntryRef>(),
    restored,
    (bin, before) => (n += changeBound(entries, subject, bin, before, undefined, snapshotsOfSubject)),
    (bin, after) => (n += changeBound(entries, subject, bin, undefined, after, snapshotsOfSubject)),
    (bin, before, after) => (n += changeBound(entries, subject, bin, before, after, snapshotsOfSubject)),
  );
  return n;
}

/**
 * Most bytes a checkpoint of this state takes besides its live entries (`liveEntriesBound`
 * sums those in open's walk of the index): the fixed fields, each snapshot and its differences
 * from its base (the next newer snapshot of its subject, or the live tree: a walk of those
 * differences only), and the mounts.
 */
export function boundBesidesLiveEntries(entries: EntryTable, trees: Trees, snapshots: SnapshotTable, mounts: MountTable): number {
  let n = PAYLOAD_FIXED;
  const empty = new BTree<string, EntryRef>();
  for (const { snap, base } of snapshots.withBases((subject) => trees.get(subject) ?? empty)) {
    n += snapshotHeaderBound(snap.subject, snap.name);
    const add = (bin: string, held: EntryRef | undefined): void => {
      n += diffEntryBound(entries, bin, held);
    };
    diffTrees(
      snap.tree,
      base,
      add,
      (bin) => {
        add(bin, undefined);
      },
      add,
    );
  }
  for (const m of mounts.all()) n += mountBound(m);
  return n;
}
