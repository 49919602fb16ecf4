import { BTree, type SortedTree } from './btree.js';
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

/** One subject's keys (binary strings, e.g. "/state/a") and their entries. */
export type Tree = SortedTree<string, EntryRef>;

/** Every subject's tree. */
export type Trees = Map<string, Tree>;

/** What one durable round makes visible: the trees, and the keys written in it (for point reads). */
export interface Sealed {
  trees: Trees;
  /** Per subject, each key written in the round and its entry after it (undefined: deleted). */
  changes: Map<string, Map<string, EntryRef | undefined>>;
  /** Subjects whose tree was replaced wholesale (restore): their point-read maps are rebuilt. */
  replaced: Set<string>;
}

/**
 * The live index, kept twice: `working` has every accepted write applied (writers validate
 * against it), `committed` is what readers see — the state as of the last durable journal round.
 * At the start of each round the trees of subjects written since the last one are cloned
 * (copy-on-write, O(1)); once the round is durable the clones become the committed state.
 */
export class Keyspace {
  private committed: Trees;
  private lastSealed: Trees;
  private readonly dirty = new Set<string>();
  private changes = new Map<string, Map<string, EntryRef | undefined>>();
  private replaced = new Set<string>();
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

  constructor(private readonly working: Trees) {
    this.committed = new Map();
    for (const [subject, tree] of working) this.committed.set(subject, tree.clone());
    this.lastSealed = this.committed;
  }

  /** Set `bin` in the working tree of `subject` (created on first use); returns the entry it replaced. */
  set(subject: string, bin: string, entry: EntryRef): EntryRef | undefined {
    const tree = this.writable(subject);
    // Inserting a new key takes one walk of the tree, replacing a key two (the old entry, then the
    // new one). Writes tend to come in runs of one kind (a load adds keys, a service updates its
    // own), so guess from the last one: a wrong guess costs one walk more.
    let old: EntryRef | undefined;
    if (this.lastSetAdded) {
      if (!tree.set(bin, entry, false)) {
        old = tree.get(bin);
        tree.set(bin, entry);
        this.lastSetAdded = false;
      }
    } else {
      old = tree.get(bin);
      tree.set(bin, entry);
      this.lastSetAdded = old === undefined;
    }
    if (old === undefined) {
      this.dirs.get(subject)?.added(bin);
      this.dirBuilds.get(subject)?.added(bin);
    }
    this.changed(subject).set(bin, entry);
    return old;
  }

  /** Remove `bin` from the working tree of `subject`; returns the entry it held. */
  delete(subject: string, bin: string): EntryRef | undefined {
    const tree = this.writable(subject);
    const old = tree.get(bin);
    tree.delete(bin);
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
    this.changed(subject).set(bin, undefined);
    return old;
  }

  private writable(subject: string): Tree {
    let tree = this.working.get(subject);
    if (tree === undefined) this.working.set(subject, (tree = new BTree<string, EntryRef>()));
    this.dirty.add(subject);
    return tree;
  }

  private changed(subject: string): Map<string, EntryRef | undefined> {
    let keys = this.changes.get(subject);
    if (keys === undefined) this.changes.set(subject, (keys = new Map<string, EntryRef | undefined>()));
    return keys;
  }

  workingTree(subject: string): Tree | undefined {
    return this.working.get(subject);
  }

  /** Replace a subject's working tree wholesale (restore). */
  replace(subject: string, tree: Tree): void {
    this.working.set(subject, tree);
    this.dirs.delete(subject);
    this.dirBuilds.delete(subject);
    this.dirty.add(subject);
    this.changes.delete(subject);
    this.replaced.add(subject);
  }

  /** All working trees (checkpoints, accounting). */
  workingTrees(): Trees {
    return this.working;
  }

  /** The state readers will see once the current round is durable. */
  seal(): Sealed {
    const sealed: Sealed = { trees: this.lastSealed, changes: this.changes, replaced: this.replaced };
    this.changes = new Map();
    this.replaced = new Set();
    if (this.dirty.size === 0) return sealed;
    const next: Trees = new Map(this.lastSealed);
    for (const subject of this.dirty) {
      const tree = this.working.get(subject);
      if (tree !== undefined) next.set(subject, tree.clone());
    }
    this.dirty.clear();
    this.lastSealed = next;
    sealed.trees = next;
    return sealed;
  }

  publish(sealed: Sealed): void {
    this.committed = sealed.trees;
    for (const subject of sealed.replaced) this.points.delete(subject);
    for (const [subject, keys] of sealed.changes) {
      const points = this.points.get(subject);
      if (points === undefined) continue;
      for (const [bin, entry] of keys) {
        if (entry === undefined) points.delete(bin);
        else points.set(bin, entry);
      }
    }
  }

  /** The acknowledged entry of `bin` (what a point read sees). */
  readPoint(subject: string, bin: string): EntryRef | undefined {
    const tree = this.committed.get(subject);
    let points = this.points.get(subject);
    if (points === undefined) {
      if (tree === undefined) return undefined;
      // A subject that is read rarely (or once, just after open) is served from its tree alone;
      // one read often gets an index, which its reads then fill (see PointIndex).
      const reads = (this.treeReads.get(subject) ?? 0) + 1;
      if (reads < POINT_INDEX_AFTER_READS) {
        this.treeReads.set(subject, reads);
        return tree.get(bin);
      }
      this.treeReads.delete(subject);
      this.points.set(subject, (points = new PointIndex()));
    }
    return points.get(bin, tree);
  }

  /** The acknowledged tree of `subject` (what readers see). */
  read(subject: string): Tree | undefined {
    return this.committed.get(subject);
  }

  readAll(): Trees {
    return this.committed;
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
