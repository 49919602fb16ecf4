import { StatefsError } from '../errors.js';
import type { EntryRef } from './entry-table.js';
import { MOUNT_ROOT, type MountTable } from './mount-table.js';
import { checkKey, fromBinary, toBinary } from './names.js';
import type { SnapshotTable } from './snapshot-table.js';
import { isMountKey, listTree } from './store-support.js';
import type { ListPage } from './store-types.js';

/**
 * A caller's keys under /mnt/: reads go through its mounts to the mounted snapshots'
 * `/state/` keys, and writes there are refused.
 */
export class MountNamespace {
  constructor(
    private readonly mounts: MountTable,
    private readonly snapshots: SnapshotTable,
  ) {}

  /** Writes only ever go under /state/: at or under a mount is `EROFS`, elsewhere under /mnt/ `EINVAL`. */
  checkWritePath(subject: string, key: string, op: string): void {
    if (!isMountKey(key)) return;
    const bin = toBinary(key, 'key', op);
    const mount = this.mounts.covering(subject, bin);
    if (mount !== undefined) throw StatefsError.EROFS(`${key} is under the read-only mount ${fromBinary(mount.path)}`, { op, subject, key });
    throw StatefsError.EINVAL(`key ${key} is not under /state/ (and no snapshot is mounted there)`, { op, subject, key });
  }

  /** The owner of the snapshot mounted where `caller`'s key (or prefix) `key` reads, if any. */
  ownerAt(caller: string, key: string): string | undefined {
    if (!isMountKey(key)) return undefined;
    let bin: string;
    try {
      bin = toBinary(key, 'key', 'read');
    } catch {
      return undefined; // not a name: the read itself refuses it
    }
    return this.mounts.covering(caller, bin)?.owner;
  }

  /** A read of `/mnt/<label>/<rest>`: the mounted snapshot's `/state/<rest>`. */
  read(caller: string, key: string, op: string): EntryRef | undefined {
    const bin = checkKey(key, op, caller, MOUNT_ROOT);
    const mount = this.mounts.covering(caller, bin);
    if (mount === undefined) throw StatefsError.ENOENT(`mount for ${key}`, { op, subject: caller, key });
    if (bin === mount.path) return undefined;
    return this.snapshots.get(mount.owner, mount.name)?.tree.get(`/state${bin.slice(mount.path.length)}`);
  }

  /** A page of `list` under /mnt/: the mounted snapshot's keys, named under the mount. */
  list(caller: string, prefix: string, after: string | undefined, limit: number, op: string): ListPage {
    const mount = this.mounts.covering(caller, prefix);
    if (mount === undefined) throw StatefsError.ENOENT(`mount for ${fromBinary(prefix)}`, { op, subject: caller });
    const tree = this.snapshots.get(mount.owner, mount.name)?.tree;
    const toOwner = (bin: string): string => `/state${bin.slice(mount.path.length)}`;
    const ownerAfter = after === undefined ? undefined : after.startsWith(mount.path) ? toOwner(after) : undefined;
    const page = listTree(tree, toOwner(prefix), ownerAfter, limit);
    const back = (k: string): string => `${fromBinary(mount.path)}${k.slice('/state'.length)}`;
    return page.next === undefined ? { keys: page.keys.map(back) } : { keys: page.keys.map(back), next: back(page.next) };
  }
}
