import { CheckpointEncoder, type CheckpointSnapshot } from '../format/checkpoint.js';
import { BTree, diffTrees } from './btree.js';
import { diffEntryBound } from './checkpoint-bound.js';
import type { EntryRef, EntryTable } from './entry-table.js';
import type { Tree, Trees } from './keyspace.js';
import type { MountTable } from './mount-table.js';
import type { SnapshotTable } from './snapshot-table.js';

/** About what a checkpoint entry takes besides its key: length, NUL, extent count, one extent. */
const ENTRY_OVERHEAD_BYTES = 16;
/** A guess of a key's bytes, to size the payload before the first entry (it grows if short). */
const KEY_BYTES_GUESS = 32;
/** Room over the last checkpoint's bytes per entry (a buffer too small grows by half, with a copy). */
const PER_ENTRY_SLACK = 1.05;

/**
 * A checkpoint of the live trees as they were when it began (`frozen`: copy-on-write clones no
 * write changes), encoded a step at a time so that a large index does not hold the event loop:
 * `step` until it returns true, then `finish`. Each snapshot is written as its differences from
 * the next newer snapshot of its subject, the newest from these trees (so its size follows what
 * changed, not the snapshot's size, and a live change touches one snapshot's differences).
 */
export class CheckpointBuild {
  private readonly subjects: [string, Tree][];
  private readonly encoder: CheckpointEncoder;
  /** The next subject to encode, and the last key of it already encoded (undefined: none yet). */
  private subjectAt = 0;
  private after: string | undefined;
  /** Live entries the checkpoint holds. */
  readonly entries: number;
  /**
   * Per snapshot id, after `finish`: the most bytes its differences naming an entry of its own
   * take (`diffEntryBound`): what the checkpoint already holds of it (`EmptyingBound.tighten`,
   * which needs the newest snapshot's, written against the live tree).
   */
  readonly heldDifferences = new Map<number, number>();

  /** `frozen`: the trees to write (clones no write changes); `bytesPerEntry`: the last checkpoint's, if known, to size the payload (a guess otherwise). */
  constructor(
    readonly frozen: Trees,
    private readonly table: EntryTable,
    bytesPerEntry?: number,
  ) {
    this.subjects = [...frozen].filter(([, tree]) => tree.size > 0).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    let bytes = 0;
    let entries = 0;
    for (const [subject, tree] of this.subjects) {
      entries += tree.size;
      bytes += tree.size * (bytesPerEntry === undefined ? ENTRY_OVERHEAD_BYTES + subject.length + KEY_BYTES_GUESS : bytesPerEntry * PER_ENTRY_SLACK);
    }
    this.entries = entries;
    this.encoder = new CheckpointEncoder(Math.ceil(bytes));
  }

  /** Encode up to `most` more live entries; true once every entry is encoded. */
  step(most: number): boolean {
    const encoder = this.encoder;
    const table = this.table;
    let left = most;
    for (let subjectAt = this.subjectAt; subjectAt < this.subjects.length; subjectAt++) {
      const [subject, tree] = this.subjects[subjectAt] ?? ['', new BTree<string, EntryRef>()];
      const after = this.after;
      const last = tree.maxKey() ?? '';
      tree.forRange(after ?? (tree.minKey() ?? ''), last, true, (bin, e) => {
        if (bin === after) return undefined;
        if (left === 0) return { break: true };
        encoder.entry(subject, bin, table.segment(e), table.offset(e), table.recordLength(e), table.recordLead(e), table.moreRecords(e));
        this.after = bin;
        left--;
        return undefined;
      });
      if (left === 0 && this.after !== last) {
        this.subjectAt = subjectAt; // this subject's keys after `this.after` are next
        return false;
      }
      this.after = undefined;
    }
    this.subjectAt = this.subjects.length;
    return true;
  }

  /** The payload: the entries (every `step` done), then the snapshots and mounts as they are now. */
  finish(snapshots: SnapshotTable, mounts: MountTable, nextTxnId: number): Uint8Array {
    while (!this.step(Number.POSITIVE_INFINITY));
    const snaps: CheckpointSnapshot[] = [];
    const empty = new BTree<string, EntryRef>();
    for (const { snap, base } of snapshots.withBases((subject) => this.frozen.get(subject) ?? empty)) {
      const diff: CheckpointSnapshot['diff'] = [];
      let held = 0;
      const differs = (key: string, e: EntryRef): void => {
        diff.push({ key, extents: this.table.extents(e) });
        held += diffEntryBound(this.table, key, e);
      };
      diffTrees(snap.tree, base, differs, (key) => diff.push({ key, extents: null }), differs);
      this.heldDifferences.set(snap.id, held);
      snaps.push({ subject: snap.subject, name: snap.name, id: snap.id, digest: snap.digest, diff });
    }
    return this.encoder.finish({ nextTxnId, nextSnapId: snapshots.nextId, snapshots: snaps, mounts: mounts.all() });
  }
}

/** Copy-on-write clones of `trees` (O(1) each): what they hold now, whatever is written later. */
export function frozenTrees(trees: Trees): Trees {
  const frozen: Trees = new Map();
  for (const [subject, tree] of trees) frozen.set(subject, tree.clone());
  return frozen;
}

/** A key whose live entry changed: its entry now, or undefined where it was deleted. */
export interface LiveChange {
  subject: string;
  bin: string;
  entry: EntryRef | undefined;
}

/** How `now` differs from `before` (a frozen copy of it): cheap when little changed, as shared subtrees are skipped. */
export function changesSince(before: Trees, now: Trees): LiveChange[] {
  const changes: LiveChange[] = [];
  const empty = new BTree<string, EntryRef>();
  for (const subject of new Set([...before.keys(), ...now.keys()])) {
    diffTrees(
      before.get(subject) ?? empty,
      now.get(subject) ?? empty,
      (bin) => changes.push({ subject, bin, entry: undefined }),
      (bin, entry) => changes.push({ subject, bin, entry }),
      (bin, _was, entry) => changes.push({ subject, bin, entry }),
    );
  }
  return changes;
}
