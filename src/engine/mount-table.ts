/** A snapshot mounted read-only at `path` (`/mnt/<label>`) in `caller`'s namespace. */
export interface Mount {
  caller: string;
  path: string;
  owner: string;
  name: string;
  snapId: number;
  /** Byte offset of the record that defines it (its MOUNT record, or the checkpoint holding it). */
  at: number;
}

export const MOUNT_ROOT = '/mnt/';

/** Every caller's mounts, by path. Mount tables are per caller: no one else sees them. */
export class MountTable {
  private readonly byCaller = new Map<string, Map<string, Mount>>();

  get(caller: string, path: string): Mount | undefined {
    return this.byCaller.get(caller)?.get(path);
  }

  add(m: Mount): void {
    let paths = this.byCaller.get(m.caller);
    if (paths === undefined) this.byCaller.set(m.caller, (paths = new Map<string, Mount>()));
    paths.set(m.path, m);
  }

  remove(caller: string, path: string): void {
    const paths = this.byCaller.get(caller);
    paths?.delete(path);
    if (paths?.size === 0) this.byCaller.delete(caller);
  }

  /** The caller's mounts sorted by path. */
  of(caller: string): Mount[] {
    const paths = this.byCaller.get(caller);
    if (paths === undefined) return [];
    return [...paths.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  all(): Mount[] {
    const out: Mount[] = [];
    for (const caller of [...this.byCaller.keys()].sort()) out.push(...this.of(caller));
    return out;
  }

  /** Mounts of snapshot `name` of `owner`, anywhere. */
  mountsOf(owner: string, name: string): Mount[] {
    return this.all().filter((m) => m.owner === owner && m.name === name);
  }

  /** The caller's mount at or above binary key `bin` (`/mnt/<label>` or `/mnt/<label>/...`). */
  covering(caller: string, bin: string): Mount | undefined {
    if (!bin.startsWith(MOUNT_ROOT)) return undefined;
    const slash = bin.indexOf('/', MOUNT_ROOT.length);
    return this.get(caller, slash === -1 ? bin : bin.slice(0, slash));
  }
}
