import { BTree, diffTrees } from './btree.js';
import { diffEntryBound } from './checkpoint-bound.js';
import type { Entry } from './entry.js';
import type { Trees } from './keyspace.js';
import type { Snapshot, SnapshotTable } from './snapshot-table.js';

/**
 * The most that deleting live keys can add to a checkpoint (docs/storage/statefs-v3.md 8.2). A
 * checkpoint writes each snapshot as its differences from the live tree, so once the live keys
 * are deleted a snapshot differs at every key it holds: its differences grow to one per entry of
 * its own, and no record is freed meanwhile (the snapshot holds them). The reserve keeps room for
 * this beside the next checkpoint's bound, so a full image with snapshots can be emptied key by
 * key (Appendix A, item 8: with one snapshot of 15,000 short keys, delete 17,243 of 19,213 got
 * `ENOSPC`, and then so did deleting the snapshot).
 *
 * O(1) per change: per subject, the sum over its live entries of what each would take as a
 * difference (`diffEntryBound`), kept by every put and delete; a snapshot's sum is its
 * subject's when it is taken (its tree is the live tree then). Entries only ever lose records
 * (GC moves a value to one), so a sum counted when an entry came in stays an upper bound.
 */
export class EmptyingBound {
  private readonly live: Map<string, number>;
  /** Per snapshot id: what its differences can take once the live tree is empty. */
  private readonly ofSnapshot = new Map<number, number>();
  private total = 0;

  /**
   * At open: `liveBySubject` summed in the index's walk (`accountIndex`); each snapshot's sum is
   * its subject's plus what it differs by (a walk of the differences only).
   */
  constructor(trees: Trees, snapshots: SnapshotTable, liveBySubject: Map<string, number>) {
    this.live = liveBySubject;
    for (const snap of snapshots.all()) {
      let n = this.liveOf(snap.subject);
      diffTrees(
        snap.tree,
        trees.get(snap.subject) ?? new BTree<string, Entry>(),
        (bin, held) => (n += diffEntryBound(bin, held)),
        (bin, live) => (n -= diffEntryBound(bin, live)),
        (bin, held, live) => (n += diffEntryBound(bin, held) - diffEntryBound(bin, live)),
      );
      this.add(snap.id, n);
    }
  }

  /** Bytes the reserve keeps for it: every snapshot's entries as differences. */
  get bytes(): number {
    return this.total;
  }

  /** What a snapshot of `subject` taken now would add to `bytes`. */
  forNewSnapshot(subject: string): number {
    return this.liveOf(subject);
  }

  /** `subject`'s key `bin` changed from `before` to `after` (undefined: absent) in the live tree. */
  changed(subject: string, bin: string, before: Entry | undefined, after: Entry | undefined): void {
    const delta = (after === undefined ? 0 : diffEntryBound(bin, after)) - (before === undefined ? 0 : diffEntryBound(bin, before));
    if (delta !== 0) this.live.set(subject, this.liveOf(subject) + delta);
  }

  taken(snap: Pick<Snapshot, 'subject' | 'id'>): void {
    this.add(snap.id, this.liveOf(snap.subject));
  }

  deleted(snap: Pick<Snapshot, 'id'>): void {
    this.total -= this.ofSnapshot.get(snap.id) ?? 0;
    this.ofSnapshot.delete(snap.id);
  }

  /** `subject`'s live tree is now a copy of `snap`'s. */
  restored(subject: string, snap: Pick<Snapshot, 'id'>): void {
    this.live.set(subject, this.ofSnapshot.get(snap.id) ?? 0);
  }

  private liveOf(subject: string): number {
    return this.live.get(subject) ?? 0;
  }

  private add(id: number, bytes: number): void {
    this.ofSnapshot.set(id, bytes);
    this.total += bytes;
  }
}
