import { BTree, diffTrees } from './btree.js';
import { diffEntryBound } from './checkpoint-bound.js';
import type { EntryRef, EntryTable } from './entry-table.js';
import type { Tree, Trees } from './keyspace.js';
import type { Snapshot, SnapshotTable } from './snapshot-table.js';

/** One snapshot's part: all its entries as differences (`total`), and those the bound counts (the newest of its subject only). */
interface SnapshotShare {
  subject: string;
  total: number;
  counted: number;
}

/**
 * The most that deleting live keys can add to a checkpoint beyond its bound (docs/storage/
 * statefs-v3.md 8.2). A checkpoint writes the newest snapshot of each subject as its differences
 * from the live tree (older ones against the next newer), so deleting a live key it holds gives
 * it one more difference, and frees no record (the snapshot holds it). The reserve keeps room for
 * this beside the next checkpoint's bound, so a full image with snapshots can be emptied key by
 * key (Appendix A, item 8: with one snapshot of 15,000 short keys, delete 17,243 of 19,213 got
 * `ENOSPC`, and then so did deleting the snapshot).
 *
 * Per subject it counts the entries its newest snapshot shares with the live tree, each as a
 * difference (`diffEntryBound`); those it already differs at are in the checkpoint bound. Kept in
 * O(1) per change: per subject the sum over its live entries, adjusted by every put and delete;
 * a new snapshot shares all of them. The share only shrinks as the live tree moves away from the
 * snapshot, so it is not lowered per write (that would take a lookup): each checkpoint lowers it
 * to what the snapshot shares with the state it wrote (`tighten`), and a restore, which can make
 * it share more, counts it whole again; the next older snapshot becoming the newest counts at most
 * what the deleted one did (`deleted`).
 * GC only ever makes an entry's difference shorter (it moves a value to one record, a PUTRUN
 * slice's to one without a lead), so sums counted as entries came in stay upper bounds; a
 * checkpoint's re-written changes may make it longer (`moved`).
 */
export class EmptyingBound {
  private readonly live: Map<string, number>;
  private readonly ofSnapshot = new Map<number, SnapshotShare>();
  /** Per subject, its snapshots' ids, oldest first (ids only grow: a new one goes last). */
  private readonly ids = new Map<string, number[]>();
  private counted = 0;

  /**
   * At open: `liveBySubject` summed in the index's walk (`accountIndex`); each snapshot's total
   * from the next newer one's (the newest's from the live sum) and a walk of their differences.
   */
  constructor(
    private readonly entries: EntryTable,
    trees: Trees,
    snapshots: SnapshotTable,
    liveBySubject: Map<string, number>,
  ) {
    this.live = liveBySubject;
    const empty = new BTree<string, EntryRef>();
    const newer = new Map<string, number>(); // the total of the snapshot built before, per subject
    for (const { snap, base } of snapshots.withBases((subject) => trees.get(subject) ?? empty).reverse()) {
      const newest = !newer.has(snap.subject);
      const { total, held } = totalAgainst(entries, snap.tree, base, newer.get(snap.subject) ?? this.liveOf(snap.subject));
      newer.set(snap.subject, total);
      this.ofSnapshot.set(snap.id, { subject: snap.subject, total, counted: newest ? total - held : 0 });
      this.idsOf(snap.subject).push(snap.id); // newest first here: reversed below
      if (newest) this.counted += total - held;
    }
    for (const ids of this.ids.values()) ids.reverse();
  }

  /** Bytes the reserve keeps for it. */
  get bytes(): number {
    return this.counted;
  }

  /** What a snapshot of `subject` taken now would add to `bytes` (it replaces the newest's share). */
  forNewSnapshot(subject: string): number {
    return this.liveOf(subject) - (this.newestOf(subject)?.counted ?? 0);
  }

  /** What a restore of `subject` would add to `bytes`: its newest snapshot counted whole. */
  forRestore(subject: string): number {
    const newest = this.newestOf(subject);
    return newest === undefined ? 0 : newest.total - newest.counted;
  }

  /** `subject`'s key `bin` changed from `before` to `after` (undefined: absent) in the live tree. */
  changed(subject: string, bin: string, before: EntryRef | undefined, after: EntryRef | undefined): void {
    const delta = (after === undefined ? 0 : diffEntryBound(this.entries, bin, after)) - (before === undefined ? 0 : diffEntryBound(this.entries, bin, before));
    if (delta !== 0) this.live.set(subject, this.liveOf(subject) + delta);
  }

  /**
   * `subject`'s live entry at `bin` is written again elsewhere (`move`): a checkpoint's re-written
   * changes land in PUTRUN slices, whose differences take a lead more than a PUT's (4 bytes), so
   * the live sum is adjusted, not left below what open would sum. The entry is in no snapshot (it
   * was written while the checkpoint was built, and a snapshot then restarts the build).
   */
  moved(subject: string, bin: string, entry: EntryRef, move: () => void): void {
    const before = diffEntryBound(this.entries, bin, entry);
    move();
    const delta = diffEntryBound(this.entries, bin, entry) - before;
    if (delta !== 0) this.live.set(subject, this.liveOf(subject) + delta);
  }

  taken(snap: Pick<Snapshot, 'subject' | 'id'>): void {
    this.count(this.newestOf(snap.subject), 0);
    const total = this.liveOf(snap.subject);
    const share = { subject: snap.subject, total, counted: 0 };
    this.ofSnapshot.set(snap.id, share);
    this.idsOf(snap.subject).push(snap.id);
    this.count(share, total);
  }

  /**
   * The next older snapshot (A) of the newest one deleted (N) becomes the newest, counted at most
   * as N was. Each key A holds is then covered already: where A and the live tree hold the same
   * entry, either N holds it too (in N's count) or A differs from N there (a difference of A's in
   * the checkpoint bound); where they differ, A differs from N or N from the live tree, at the
   * same bytes (in the bound too).
   */
  deleted(snap: Pick<Snapshot, 'subject' | 'id'>): void {
    const share = this.ofSnapshot.get(snap.id);
    if (share === undefined) return;
    const ids = this.idsOf(snap.subject);
    const wasNewest = ids.at(-1) === snap.id;
    const shared = share.counted;
    this.count(share, 0);
    this.ofSnapshot.delete(snap.id);
    ids.splice(ids.indexOf(snap.id), 1);
    if (!wasNewest) return;
    const next = this.newestOf(snap.subject);
    if (next === undefined) return;
    this.count(next, Math.min(next.total, shared));
  }

  /** `subject`'s live tree is now a copy of `snap`'s. */
  restored(subject: string, snap: Pick<Snapshot, 'id'>): void {
    this.live.set(subject, this.ofSnapshot.get(snap.id)?.total ?? 0);
    const newest = this.newestOf(subject);
    this.count(newest, newest?.total ?? 0);
  }

  /**
   * A checkpoint was written: per snapshot id, the bytes of its differences naming an entry of
   * its own (`CheckpointBuild.heldDifferences`); the newest snapshot's are against the live tree,
   * and its bound counts them from now on. Only the state it wrote counts: no restore since (the
   * checkpointer appends it in the turn it finishes).
   */
  tighten(heldDifferences: ReadonlyMap<number, number>): void {
    for (const [id, held] of heldDifferences) {
      const share = this.ofSnapshot.get(id);
      if (share === undefined || this.idsOf(share.subject).at(-1) !== id) continue;
      this.count(share, Math.min(share.counted, Math.max(0, share.total - held)));
    }
  }

  private count(share: SnapshotShare | undefined, counted: number): void {
    if (share === undefined) return;
    this.counted += counted - share.counted;
    share.counted = counted;
  }

  private idsOf(subject: string): number[] {
    let ids = this.ids.get(subject);
    if (ids === undefined) this.ids.set(subject, (ids = []));
    return ids;
  }

  private newestOf(subject: string): SnapshotShare | undefined {
    const id = this.ids.get(subject)?.at(-1);
    return id === undefined ? undefined : this.ofSnapshot.get(id);
  }

  private liveOf(subject: string): number {
    return this.live.get(subject) ?? 0;
  }
}

/**
 * A snapshot's entries as differences (`total`), from its base's (`baseTotal`) and a walk of
 * their differences; `held`: those it differs at, naming entries of its own.
 */
function totalAgainst(entries: EntryTable, tree: Tree, base: Tree, baseTotal: number): { total: number; held: number } {
  let total = baseTotal;
  let held = 0;
  diffTrees(
    tree,
    base,
    (bin, e) => {
      total += diffEntryBound(entries, bin, e);
      held += diffEntryBound(entries, bin, e);
    },
    (bin, other) => (total -= diffEntryBound(entries, bin, other)),
    (bin, e, other) => {
      total += diffEntryBound(entries, bin, e) - diffEntryBound(entries, bin, other);
      held += diffEntryBound(entries, bin, e);
    },
  );
  return { total, held };
}
