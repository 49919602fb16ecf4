import { BTree } from './btree.js';
import type { Entry } from './entry.js';
import type { KeyView } from './tree-rules.js';

/** One subject's keys (binary strings, e.g. "/state/a") and their entries. */
export type Tree = BTree<string, Entry>;

/** Every subject's tree. */
export type Trees = Map<string, Tree>;

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

  constructor(private readonly working: Trees) {
    this.committed = new Map();
    for (const [subject, tree] of working) this.committed.set(subject, tree.clone());
    this.lastSealed = this.committed;
  }

  /** The working tree of `subject`, created empty on first use. */
  writable(subject: string): Tree {
    let tree = this.working.get(subject);
    if (tree === undefined) this.working.set(subject, (tree = new BTree<string, Entry>()));
    this.dirty.add(subject);
    return tree;
  }

  workingTree(subject: string): Tree | undefined {
    return this.working.get(subject);
  }

  /** Replace a subject's working tree wholesale (restore). */
  replace(subject: string, tree: Tree): void {
    this.working.set(subject, tree);
    this.dirty.add(subject);
  }

  /** All working trees (checkpoints, accounting). */
  workingTrees(): Trees {
    return this.working;
  }

  /** The state readers will see once the current round is durable. */
  seal(): Trees {
    if (this.dirty.size === 0) return this.lastSealed;
    const next: Trees = new Map(this.lastSealed);
    for (const subject of this.dirty) {
      const tree = this.working.get(subject);
      if (tree !== undefined) next.set(subject, tree.clone());
    }
    this.dirty.clear();
    this.lastSealed = next;
    return next;
  }

  publish(trees: Trees): void {
    this.committed = trees;
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
    return {
      has: (bin) => this.working.get(subject)?.has(bin) === true,
      hasChildren: (bin) => {
        const next = this.working.get(subject)?.nextHigherKey(`${bin}/`);
        return next?.startsWith(`${bin}/`) === true;
      },
    };
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
