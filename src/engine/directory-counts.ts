/**
 * How many direct children (keys or directories) each directory of one subject's keys has, so
 * the tree rules' "has children?" is a hash lookup rather than a search of the sorted tree.
 * Directories are binary-string paths without the trailing slash ("/state/app7" for the key
 * "/state/app7/k1"); a directory exists while its count is above zero.
 */
export class DirectoryCounts {
  private readonly counts = new Map<string, number>();
  /**
   * Keys added under `runParent` and not counted yet: consecutive adds under one parent (a batch
   * applied grouped by directory, a walk of sorted keys) are counted in one step, not one map
   * update and one parent string each. Every other method counts them first.
   */
  private runParent = '';
  private run = 0;

  has(dir: string): boolean {
    this.settle();
    return this.counts.has(dir);
  }

  /** A key `bin` was added. */
  added(bin: string): void {
    const slash = bin.lastIndexOf('/');
    if (this.run > 0 && slash === this.runParent.length && bin.startsWith(this.runParent)) {
      this.run++;
      return;
    }
    this.settle();
    if (slash <= 0) return;
    this.runParent = bin.slice(0, slash);
    this.run = 1;
  }

  /** A key `bin` was removed. */
  removed(bin: string): void {
    this.settle();
    for (let path = bin; ; ) {
      const slash = path.lastIndexOf('/');
      if (slash <= 0) return;
      const dir = path.slice(0, slash);
      const n = this.counts.get(dir) ?? 0;
      if (n === 0) return; // not a key these counts know of
      if (n > 1) {
        this.counts.set(dir, n - 1);
        return;
      }
      // Its last child went: the directory goes too, and is one child fewer of its parent.
      this.counts.delete(dir);
      path = dir;
    }
  }

  /** Count the run of adds under `runParent`: that many more direct children of it. */
  private settle(): void {
    if (this.run === 0) return;
    for (let path = this.runParent, add = this.run; ; add = 1) {
      const count = this.counts.get(path) ?? 0;
      this.counts.set(path, count + add);
      if (count > 0) break;
      // A new directory: one more child of its parent.
      const slash = path.lastIndexOf('/');
      if (slash <= 0) break;
      path = path.slice(0, slash);
    }
    this.run = 0;
  }
}

/** A sorted set of keys that can be walked from a key on (a frozen B+ tree). */
export interface SortedKeys {
  keys(lowestKey?: string): IterableIterator<string>;
}

/**
 * A subject's directory counts built a step at a time from a frozen copy of its keys, while
 * writes go on: the keys added and removed meanwhile are recorded and applied, in order, once
 * every key of the copy has been counted. (One walk of a million keys holds the event loop for
 * ~0.2 s on a 2-core VM; in steps, each of the first few thousand puts after the start pays a
 * small part.)
 */
export class SteppedDirectoryCounts {
  private readonly counts = new DirectoryCounts();
  /** The next key of `frozen` to count (undefined: from the first). */
  private next: string | undefined;
  private readonly changes: { bin: string; added: boolean }[] = [];

  constructor(private readonly frozen: SortedKeys) {}

  added(bin: string): void {
    this.changes.push({ bin, added: true });
  }

  removed(bin: string): void {
    this.changes.push({ bin, added: false });
  }

  /** Count up to `n` more keys; the finished counts (changes applied) once every key is counted. */
  step(n: number): DirectoryCounts | undefined {
    let counted = 0;
    for (const bin of this.frozen.keys(this.next)) {
      if (counted++ === n) {
        this.next = bin;
        return undefined;
      }
      this.counts.added(bin); // in ascending order: mostly runs under one parent
    }
    for (const { bin, added } of this.changes) {
      if (added) this.counts.added(bin);
      else this.counts.removed(bin);
    }
    return this.counts;
  }
}
