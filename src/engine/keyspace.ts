import { BTree, deleteIfPresent, replaceIfPresent, type SortedTree } from './btree.js';
import { SteppedDirectoryCounts, type DirectoryCounts } from './directory-counts.js';
import type { EntryRef } from './entry-table.js';
import { PointIndex } from './point-index.js';
import type { KeyView } from './tree-rules.js';

/** Point reads a subject serves from its tree before it gets a point index (see `readPoint`). */
const POINT_INDEX_AFTER_READS = 4096;
/** "Has children?" questions a subject's tree answers before the subject's directory counts are started. */
const DIRECTORY_COUNTS_AFTER = 4096;
/** Keys counted towards a subject's directory counts per "has children?" question while they are built (~0.1 ms here). */
const DIRECTORY_COUNTS_STEP = 512;
/**
 * Undo entries past which a derived subject's committed tree is kept built (see `Keyspace`): a
 * tree built for a reader costs a tree write per entry (~9 µs each in a million-key tree on a
 * 2-core VM), so a build never applies more than this many (~2 ms).
 */
export const UNDO_BUILD_LIMIT = 256;

/** One subject's keys (binary strings, e.g. "/state/a") and their entries. */
export type Tree = SortedTree<string, EntryRef>;

/** Every subject's tree. */
export type Trees = Map<string, Tree>;

/** What one durable round makes visible: the keys written in it, and the trees of subjects it replaced. */
export interface Sealed {
  /**
   * Per subject, each key written in the round and its entry after it (undefined: deleted); for
   * an `unlisted` subject only those written before its batch.
   */
  changes: Map<string, Map<string, EntryRef | undefined>>;
  /** Subjects whose tree was replaced wholesale (restore): their point-read maps are rebuilt. */
  replaced: Set<string>;
  /** Subjects given a batch whose keys `changes` does not list (`batchAhead`): a point index of theirs is dropped. */
  unlisted: Set<string>;
  /** The trees, as the round left them, of subjects committed as trees of their own (see `Keyspace`). */
  trees: Trees;
}

/**
 * The live index. `working` has every accepted write applied (writers validate against it);
 * readers see the committed state — the state as of the last durable journal round.
 *
 * A subject's committed state is kept one of two ways:
 * - derived (the usual way): the working tree with the writes not yet durable undone — `undo`
 *   holds, for each key written since the committed state, its committed entry. A round then
 *   costs the working tree nothing. Cloning it per round for readers (copy-on-write, O(1)) made
 *   the next write to every node copy it: for a lone put, a third of its CPU (docs/performance.md).
 *   A reader that needs a whole tree (a list, a diff) gets a clone of the working tree with `undo`
 *   applied, kept until the committed state changes.
 * - a tree of its own (`ownTree`), from a restore until the round holding it is durable: the
 *   working tree was replaced wholesale, so no list of keys undoes it. Such a subject's tree is
 *   cloned at the start of each round, and made the committed one once the round is durable, as
 *   every subject's was before. A batch of many keys (`batchAhead`) takes this way too: its round
 *   is cloned when sealed anyway, and its keys then need no undo entries.
 */
export class Keyspace {
  /** Per subject, its committed tree: that of an `ownTree` subject, or a derived one's as last built for a reader. */
  private readonly committed: Trees = new Map();
  /** Per derived subject, the committed entry of each key written since (undefined: none). */
  private readonly undo = new Map<string, Map<string, EntryRef | undefined>>();
  /** Subjects whose committed state is a tree of their own (a restore, or a batch, not yet made derived again). */
  private readonly ownTree = new Set<string>();
  private changes = new Map<string, Map<string, EntryRef | undefined>>();
  private replaced = new Set<string>();
  /** Subjects given a tree of their own for a batch in the round not yet sealed (`batchAhead`). */
  private batched = new Set<string>();
  /** Of those, the ones whose writes in the round `changes` does not list (no reader needs the list: see `batchAhead`). */
  private unlisted = new Set<string>();
  /**
   * Point indexes of the committed state (hash maps: a tree lookup compares strings at every
   * level; a hash lookup does not). Started per subject once it has been read often enough, filled
   * by the reads that follow, and kept in step by applying each durable round's changes.
   */
  private readonly points = new Map<string, PointIndex>();
  /** Point reads served from the tree, per subject without a point index yet. */
  private readonly treeReads = new Map<string, number>();
  /**
   * The working trees' directories, per subject, for the tree rules. Built once a subject has been
   * written often enough to repay the walk of its keys, then kept in step by `set` and `delete`;
   * dropped on `replace`.
   */
  private readonly dirs = new Map<string, DirectoryCounts>();
  /** Directory counts being built, per subject (see `directories`). */
  private readonly dirBuilds = new Map<string, SteppedDirectoryCounts>();
  /** "Has children?" questions answered from the tree, per subject without counts yet. */
  private readonly treeChildQueries = new Map<string, number>();
  private readonly views = new Map<string, KeyView>();
  /** Whether the last `set` added a key (rather than replaced one): the guess for the next. */
  private lastSetAdded = true;

  /** `working`: every subject's tree as the store opened it (its committed state too). */
  constructor(private readonly working: Trees) {}

  /** Set `bin` in the working tree of `subject` (created on first use); returns the entry it replaced. */
  set(subject: string, bin: string, entry: EntryRef): EntryRef | undefined {
    const tree = this.writable(subject);
    // Inserting a new key takes one walk of the tree (`set` without overwriting), and so does
    // replacing one (`replaceIfPresent`, which hands back the entry replaced), but each fails on the
    // other kind. Writes tend to come in runs of one kind (a load adds keys, a service updates its
    // own), so guess from the last one: a wrong guess costs one walk more.
    let old: EntryRef | undefined;
    if (this.lastSetAdded) {
      if (!tree.set(bin, entry, false)) {
        old = replaceIfPresent(tree, bin, entry);
        this.lastSetAdded = false;
      }
    } else {
      old = replaceIfPresent(tree, bin, entry);
      if (old === undefined) tree.set(bin, entry);
      this.lastSetAdded = old === undefined;
    }
    if (old === undefined) {
      this.dirs.get(subject)?.added(bin);
      this.dirBuilds.get(subject)?.added(bin);
    }
    if (!this.unlisted.has(subject)) this.changed(subject, bin, old).set(bin, entry);
    return old;
  }

  /** Remove `bin` from the working tree of `subject`; returns the entry it held. */
  delete(subject: string, bin: string): EntryRef | undefined {
    const old = deleteIfPresent(this.writable(subject), bin);
    if (old !== undefined) {
      this.dirs.get(subject)?.removed(bin);
      const build = this.dirBuilds.get(subject);
      if (build !== undefined) {
        build.removed(bin);
        // A delete of a key asks the rules nothing, yet it too moves the build on (a run of deletes
        // would otherwise keep its clone, and the old tree with it, until the next put).
        this.directories(subject);
      }
    }
    if (!this.unlisted.has(subject)) this.changed(subject, bin, old).set(bin, undefined);
    return old;
  }

  private writable(subject: string): Tree {
    let tree = this.working.get(subject);
    if (tree === undefined) this.working.set(subject, (tree = new BTree<string, EntryRef>()));
    return tree;
  }

  /** The round's changes of `subject`, once `bin`'s committed entry (`old`, if not written since) is kept for readers. */
  private changed(subject: string, bin: string, old: EntryRef | undefined): Map<string, EntryRef | undefined> {
    if (!this.ownTree.has(subject)) {
      let undo = this.undo.get(subject);
      if (undo === undefined) this.undo.set(subject, (undo = new Map<string, EntryRef | undefined>()));
      if (!undo.has(bin)) {
        undo.set(bin, old);
        // From here on a build would cost more than the limit: build it now (once per committed state).
        if (undo.size === UNDO_BUILD_LIMIT && !this.committed.has(subject)) this.read(subject);
      }
    }
    let keys = this.changes.get(subject);
    if (keys === undefined) this.changes.set(subject, (keys = new Map<string, EntryRef | undefined>()));
    return keys;
  }

  workingTree(subject: string): Tree | undefined {
    return this.working.get(subject);
  }

  /** Replace a subject's working tree wholesale (restore). */
  replace(subject: string, tree: Tree): void {
    // The committed state is about to lose the tree it is derived from.
    this.commitAsOwnTree(subject);
    this.working.set(subject, tree);
    this.dirs.delete(subject);
    this.dirBuilds.delete(subject);
    this.changes.delete(subject);
    this.replaced.add(subject);
  }

  /**
   * The next writes to `subject` are a batch of at least `UNDO_BUILD_LIMIT` entries (`putMany`;
   * as many keys, unless the batch repeats keys). A round of that many keys is cloned when sealed
   * either way (see `seal`), so until that round is durable the subject's committed state is a
   * tree of its own, as after a restore: the batch's keys then get no undo entries (for a bulk
   * load, one map entry per key fewer, and that map's growth). A batch that repeats its keys costs
   * a clone it would not otherwise have (O(1), the writes after it copying their paths).
   *
   * Nor, unless the subject is read by key (it has a point index, or point reads are being
   * counted towards one), are the round's writes to it listed in `changes` from here on: the
   * round's clone becomes its committed tree whole, and only a point index needs the list (a bulk
   * load built a map of each round's keys, ~10% of its CPU). A point index started while such a
   * round is in flight is dropped when the round is durable, and the next point read starts a
   * new one, so the batches after it are listed.
   */
  batchAhead(subject: string): void {
    this.commitAsOwnTree(subject);
    this.batched.add(subject);
    if (!this.points.has(subject) && !this.treeReads.has(subject)) this.unlisted.add(subject);
  }

  /** Give a derived subject's committed state a tree of its own (`ownTree`), until its next durable round. */
  private commitAsOwnTree(subject: string): void {
    if (this.ownTree.has(subject)) return;
    this.read(subject); // builds the committed tree, if it is not built, and keeps it in `committed`
    this.undo.delete(subject);
    this.ownTree.add(subject);
  }

  /** All working trees (checkpoints, accounting). */
  workingTrees(): Trees {
    return this.working;
  }

  /** The state readers will see once the current round is durable. */
  seal(): Sealed {
    const sealed: Sealed = { changes: this.changes, replaced: this.replaced, unlisted: this.unlisted, trees: new Map() };
    for (const [subject, keys] of this.changes) {
      // A round of many keys is cloned as rounds once all were: its committed tree is then ready
      // when it is durable, not built from its undo entries (the writes after it copy their paths).
      if (keys.size < UNDO_BUILD_LIMIT || this.ownTree.has(subject)) continue;
      const tree = this.working.get(subject);
      if (tree !== undefined) sealed.trees.set(subject, tree.clone());
    }
    for (const subject of this.ownTree) {
      if (!this.changes.has(subject) && !this.replaced.has(subject) && !this.unlisted.has(subject)) continue; // not written in the round
      const tree = this.working.get(subject);
      if (tree !== undefined) sealed.trees.set(subject, tree.clone());
    }
    this.changes = new Map();
    this.replaced = new Set();
    this.batched = new Set();
    this.unlisted = new Set();
    return sealed;
  }

  publish(sealed: Sealed): void {
    for (const subject of sealed.replaced) this.points.delete(subject);
    for (const subject of sealed.unlisted) {
      // Its index cannot be brought in step without the list; the next point read starts another.
      if (this.points.delete(subject)) this.treeReads.set(subject, POINT_INDEX_AFTER_READS - 1);
    }
    for (const [subject, keys] of sealed.changes) {
      const points = this.points.get(subject);
      if (points !== undefined) {
        for (const [bin, entry] of keys) {
          if (entry === undefined) points.delete(bin);
          else points.set(bin, entry);
        }
      }
      if (!this.ownTree.has(subject)) {
        // The round's keys are committed now: undone only if written again since it began.
        const built = this.committed.get(subject);
        this.committed.delete(subject);
        const undo = this.undo.get(subject);
        const since = this.changes.get(subject);
        if (since === undefined) {
          this.undo.delete(subject); // nothing written since the round began (a bulk load's rounds: no walk of its keys)
        } else if (undo !== undefined) {
          for (const bin of keys.keys()) {
            if (since.has(bin)) undo.set(bin, keys.get(bin));
            else undo.delete(bin);
          }
          if (undo.size === 0) this.undo.delete(subject);
        }
        // Too many undo entries left to build from: the built tree takes the round's keys instead
        // (fewer than the limit, or the round's clone is its tree).
        if (built !== undefined && !sealed.trees.has(subject) && (this.undo.get(subject)?.size ?? 0) >= UNDO_BUILD_LIMIT) {
          this.committed.set(subject, withChanges(built, keys));
        }
      } else if (!sealed.trees.has(subject)) {
        // Derived when the round began, replaced or given a batch since: its tree of its own takes the round's keys.
        this.committed.set(subject, withChanges(this.committed.get(subject), keys));
      }
    }
    for (const [subject, tree] of sealed.trees) this.committed.set(subject, tree);
    for (const subject of this.ownTree) {
      // Replaced, or given a batch, since the round began: derived again once that round is durable.
      if (this.replaced.has(subject) || this.batched.has(subject)) continue;
      // Derived again: the working tree differs from the committed one only in the keys written
      // since the round began.
      const tree = this.committed.get(subject);
      const undo = new Map<string, EntryRef | undefined>();
      for (const bin of this.changes.get(subject)?.keys() ?? []) undo.set(bin, tree?.get(bin));
      if (undo.size > 0) this.undo.set(subject, undo);
      this.ownTree.delete(subject);
    }
  }

  /** The committed entry of `bin` (what a reader sees), without counting towards a point index. */
  readEntry(subject: string, bin: string): EntryRef | undefined {
    if (this.ownTree.has(subject)) return this.committed.get(subject)?.get(bin);
    const undo = this.undo.get(subject);
    if (undo !== undefined) {
      const entry = undo.get(bin);
      if (entry !== undefined || undo.has(bin)) return entry;
    }
    return this.working.get(subject)?.get(bin);
  }

  /** The acknowledged entry of `bin` (what a point read sees). */
  readPoint(subject: string, bin: string): EntryRef | undefined {
    let points = this.points.get(subject);
    if (points === undefined) {
      if (!this.working.has(subject)) return undefined; // never written: nothing to count or index
      // A subject that is read rarely (or once, just after open) is served from its tree alone;
      // one read often gets an index, which its reads then fill (see PointIndex).
      const reads = (this.treeReads.get(subject) ?? 0) + 1;
      if (reads < POINT_INDEX_AFTER_READS) {
        this.treeReads.set(subject, reads);
        return this.readEntry(subject, bin);
      }
      this.treeReads.delete(subject);
      this.points.set(subject, (points = new PointIndex()));
    }
    return points.get(bin, points.filled ? undefined : this.read(subject));
  }

  /**
   * The acknowledged tree of `subject` (what readers see): never changed, so it can be held. A
   * derived subject's is built on first use, and kept until a durable round writes the subject.
   */
  read(subject: string): Tree | undefined {
    const built = this.committed.get(subject);
    if (built !== undefined || this.ownTree.has(subject)) return built;
    const working = this.working.get(subject);
    if (working === undefined) return undefined;
    const tree = working.clone();
    for (const [bin, entry] of this.undo.get(subject) ?? []) {
      if (entry === undefined) tree.delete(bin);
      else tree.set(bin, entry);
    }
    this.committed.set(subject, tree);
    return tree;
  }

  /** The working keys of `subject` as the tree rules see them. */
  view(subject: string): KeyView {
    let view = this.views.get(subject);
    if (view === undefined) {
      const hasChildren = (bin: string): boolean => {
        const dirs = this.directories(subject);
        if (dirs !== undefined) return dirs.has(bin);
        const prefix = `${bin}/`;
        return this.working.get(subject)?.nextHigherKey(prefix)?.startsWith(prefix) === true;
      };
      view = {
        has: (bin) => this.working.get(subject)?.has(bin) === true,
        hasChildren,
        isKnownDirectory: hasChildren,
      };
      this.views.set(subject, view);
    }
    return view;
  }

  /**
   * The subject's directory counts, if it has them. A subject written rarely (or once, just after
   * open) is served from its tree, as point reads are (`readPoint`); one asked often enough gets
   * counts, built from a copy-on-write clone of its keys `DIRECTORY_COUNTS_STEP` keys per question
   * (a walk of a million keys at once held the event loop ~0.2 s), the tree answering meanwhile.
   */
  private directories(subject: string): DirectoryCounts | undefined {
    const built = this.dirs.get(subject);
    if (built !== undefined) return built;
    let build = this.dirBuilds.get(subject);
    if (build === undefined) {
      const asked = (this.treeChildQueries.get(subject) ?? 0) + 1;
      const tree = this.working.get(subject);
      if (asked < DIRECTORY_COUNTS_AFTER || tree === undefined) {
        this.treeChildQueries.set(subject, asked);
        return undefined;
      }
      this.treeChildQueries.delete(subject);
      this.dirBuilds.set(subject, (build = new SteppedDirectoryCounts(tree.clone())));
    }
    const dirs = build.step(DIRECTORY_COUNTS_STEP);
    if (dirs === undefined) return undefined;
    this.dirBuilds.delete(subject);
    this.dirs.set(subject, dirs);
    return dirs;
  }

  /** Working keys strictly below `bin` in the tree. */
  *children(subject: string, bin: string): Iterable<string> {
    const tree = this.working.get(subject);
    if (tree === undefined) return;
    const prefix = `${bin}/`;
    for (const k of tree.keys(prefix)) {
      if (!k.startsWith(prefix)) return;
      yield k;
    }
  }
}

/** A clone of `tree` (or a new tree) with `changes` applied (undefined: deleted). */
function withChanges(tree: Tree | undefined, changes: Map<string, EntryRef | undefined>): Tree {
  const out = tree?.clone() ?? new BTree<string, EntryRef>();
  for (const [bin, entry] of changes) {
    if (entry === undefined) out.delete(bin);
    else out.set(bin, entry);
  }
  return out;
}
