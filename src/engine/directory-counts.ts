/**
 * How many direct children (keys or directories) each directory of one subject's keys has, so
 * the tree rules' "has children?" is a hash lookup rather than a search of the sorted tree.
 * Directories are binary-string paths without the trailing slash ("/state/app7" for the key
 * "/state/app7/k1"); a directory exists while its count is above zero.
 */
export class DirectoryCounts {
  private readonly counts = new Map<string, number>();

  /** Counts of the keys `forEachKey` yields, which must come in ascending order (a tree walk). */
  static of(forEachKey: (visit: (bin: string) => void) => void): DirectoryCounts {
    const dirs = new DirectoryCounts();
    // Sorted keys under one parent mostly come in runs: count a run, then add it in one step.
    let parent = '';
    let run = 0;
    forEachKey((bin) => {
      const slash = bin.lastIndexOf('/');
      if (run > 0 && slash === parent.length && bin.startsWith(parent)) {
        run++;
        return;
      }
      if (run > 0) dirs.addChildren(parent, run);
      run = 0;
      if (slash <= 0) return;
      parent = bin.slice(0, slash);
      run = 1;
    });
    if (run > 0) dirs.addChildren(parent, run);
    return dirs;
  }

  has(dir: string): boolean {
    return this.counts.has(dir);
  }

  /** A key `bin` was added. */
  added(bin: string): void {
    const slash = bin.lastIndexOf('/');
    if (slash > 0) this.addChildren(bin.slice(0, slash), 1);
  }

  /** A key `bin` was removed. */
  removed(bin: string): void {
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

  private addChildren(dir: string, n: number): void {
    for (let path = dir, add = n; ; add = 1) {
      const count = this.counts.get(path) ?? 0;
      this.counts.set(path, count + add);
      if (count > 0) return;
      // A new directory: one more child of its parent.
      const slash = path.lastIndexOf('/');
      if (slash <= 0) return;
      path = path.slice(0, slash);
    }
  }
}
