import { BTree, diffTrees } from './btree.js';
import { diffEntryBound } from './checkpoint-bound.js';
import type { Entry } from './entry.js';
import type { Trees } from './keyspace.js';
import type { Snapshot, SnapshotTable } from './snapshot-table.js';

/** One snapshot's part: all its entries as differences (`total`), and those the bound still counts. */
interface SnapshotShare {
  subject: string;
  total: number;
  counted: number;
}

/**
 * The most that deleting live keys can add to a checkpoint beyond its bound (docs/storage/
 * statefs-v3.md 8.2). A checkpoint writes each snapshot as its differences from the live tree,
 * so deleting a live key the snapshot holds gives it one more difference, and frees no record
 * (the snapshot holds it). The reserve keeps room for this beside the next checkpoint's bound,
 * so a full image with snapshots can be emptied key by key (Appendix A, item 8: with one
 * snapshot of 15,000 short keys, delete 17,243 of 19,213 got `ENOSPC`, and then so did deleting
 * the snapshot).
 *
 * Per snapshot it counts the entries it shares with the live tree, each as a difference
 * (`diffEntryBound`); those it already differs at are in the checkpoint bound. Kept in O(1) per
 * change: per subject the sum over its live entries, adjusted by every put and delete; a new
 * snapshot shares all of them. A snapshot's share only shrinks as the live tree moves away from
 * it, so it is not lowered per write (that would take a lookup per snapshot): each checkpoint
 * lowers it to what the snapshot shares with the state it wrote (`tighten`), and a restore,
 * which can make a snapshot share more, raises every share of its subject to the whole. Entries
 * only ever lose records (GC moves a value to one), so sums counted as entries came in stay
 * upper bounds.
 */
export class EmptyingBound {
  private readonly live: Map<string, number>;
  private readonly ofSnapshot = new Map<number, SnapshotShare>();
  private counted = 0;

  /**
   * At open: `liveBySubject` summed in the index's walk (`accountIndex`); each snapshot's from
   * it and a walk of the snapshot's differences from the live tree.
   */
  constructor(trees: Trees, snapshots: SnapshotTable, liveBySubject: Map<string, number>) {
    this.live = liveBySubject;
    for (const snap of snapshots.all()) {
      let total = this.liveOf(snap.subject);
      let held = 0;
      diffTrees(
        snap.tree,
        trees.get(snap.subject) ?? new BTree<string, Entry>(),
        (bin, e) => {
          total += diffEntryBound(bin, e);
          held += diffEntryBound(bin, e);
        },
        (bin, live) => (total -= diffEntryBound(bin, live)),
        (bin, e, live) => {
          total += diffEntryBound(bin, e) - diffEntryBound(bin, live);
          held += diffEntryBound(bin, e);
        },
      );
      this.add(snap, total, total - held);
    }
  }

  /** Bytes the reserve keeps for it. */
  get bytes(): number {
    return this.counted;
  }

  /** What a snapshot of `subject` taken now would add to `bytes`. */
  forNewSnapshot(subject: string): number {
    return this.liveOf(subject);
  }

  /** What a restore of `subject` would add to `bytes`: every snapshot of it counted whole. */
  forRestore(subject: string): number {
    let n = 0;
    for (const share of this.ofSnapshot.values()) if (share.subject === subject) n += share.total - share.counted;
    return n;
  }

  /** `subject`'s key `bin` changed from `before` to `after` (undefined: absent) in the live tree. */
  changed(subject: string, bin: string, before: Entry | undefined, after: Entry | undefined): void {
    const delta = (after === undefined ? 0 : diffEntryBound(bin, after)) - (before === undefined ? 0 : diffEntryBound(bin, before));
    if (delta !== 0) this.live.set(subject, this.liveOf(subject) + delta);
  }

  taken(snap: Pick<Snapshot, 'subject' | 'id'>): void {
    const total = this.liveOf(snap.subject);
    this.add(snap, total, total);
  }

  deleted(snap: Pick<Snapshot, 'id'>): void {
    this.counted -= this.ofSnapshot.get(snap.id)?.counted ?? 0;
    this.ofSnapshot.delete(snap.id);
  }

  /** `subject`'s live tree is now a copy of `snap`'s. */
  restored(subject: string, snap: Pick<Snapshot, 'id'>): void {
    this.live.set(subject, this.ofSnapshot.get(snap.id)?.total ?? 0);
    for (const share of this.ofSnapshot.values()) {
      if (share.subject !== subject) continue;
      this.counted += share.total - share.counted;
      share.counted = share.total;
    }
  }

  /**
   * A checkpoint was written: per snapshot id, the bytes of its differences naming an entry of
   * its own (`CheckpointBuild.heldDifferences`), which its bound counts from now on. Only the
   * state it wrote counts: no restore since (the checkpointer appends it in the turn it finishes).
   */
  tighten(heldDifferences: ReadonlyMap<number, number>): void {
    for (const [id, held] of heldDifferences) {
      const share = this.ofSnapshot.get(id);
      if (share === undefined) continue;
      const counted = Math.min(share.counted, Math.max(0, share.total - held));
      this.counted -= share.counted - counted;
      share.counted = counted;
    }
  }

  private liveOf(subject: string): number {
    return this.live.get(subject) ?? 0;
  }

  private add(snap: Pick<Snapshot, 'subject' | 'id'>, total: number, counted: number): void {
    this.ofSnapshot.set(snap.id, { subject: snap.subject, total, counted });
    this.counted += counted;
  }
}
