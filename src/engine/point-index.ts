import type { EntryRef } from './entry-table.js';
import type { SortedTree } from './btree.js';

/**
 * The index is split into 2^SHARD_BITS hash maps by a hash of the key. One `Map` of a million
 * keys stalls its caller for ~50 ms each time it doubles (measured on a 2-core VM: the `set` that
 * takes it past 524,288 entries); a shard of a million-key subject holds ~16,000.
 */
const SHARD_BITS = 6;
/**
 * Committed keys copied into the index by each point read while it is being filled: the copy of a
 * million keys (0.7–1.1 s on a 2-core VM) is spread over the first ~31,000 reads, ~35 µs each, rather
 * than taken by one read (which held the event loop 0.8–1 s).
 */
export const FILL_PER_READ = 32;

/** FNV-1a over the key's characters; the top bits choose the shard. */
function shardOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> (32 - SHARD_BITS);
}

/**
 * A subject's point-read index: its committed keys in hash maps (a tree lookup compares strings
 * at every level; a hash lookup does not). The owner keeps it in step with the committed tree by
 * applying every durable round's changes (`set`, `delete`). Until it holds every key, each read
 * first copies the next `FILL_PER_READ` committed keys in (in key order, from the current committed
 * tree, so a copied entry is always the current one), and a miss is answered by the tree.
 */
export class PointIndex {
  private readonly shards: Map<string, EntryRef>[] = Array.from({ length: 1 << SHARD_BITS }, () => new Map<string, EntryRef>());
  /** The last key the fill copied (every committed key up to it is in the index); undefined before the first step. */
  private filledTo: string | undefined;
  private complete = false;
  private readonly pair: (string | EntryRef)[] = [];

  /** The committed entry of `bin`; `tree` is the subject's committed tree (undefined: none). */
  get(bin: string, tree: SortedTree<string, EntryRef> | undefined): EntryRef | undefined {
    if (this.complete) return this.shard(bin).get(bin);
    if (tree === undefined) return undefined;
    this.fill(tree);
    return this.shard(bin).get(bin) ?? tree.get(bin);
  }

  set(bin: string, entry: EntryRef): void {
    this.shard(bin).set(bin, entry);
  }

  delete(bin: string): void {
    this.shard(bin).delete(bin);
  }

  /** Whether every committed key is in the index (reads no longer touch the tree). */
  get filled(): boolean {
    return this.complete;
  }

  private shard(bin: string): Map<string, EntryRef> {
    const shard = this.shards[shardOf(bin)];
    if (shard === undefined) throw new Error('point index: shard out of range'); // unreachable: shardOf < 2^SHARD_BITS
    return shard;
  }

  private fill(tree: SortedTree<string, EntryRef>): void {
    let copied = 0;
    // From the last key copied (again: a key set or deleted since is already in step) onwards;
    // one pair array reused for every step of the iterator.
    for (const [bin, entry] of tree.entries(this.filledTo, this.pair)) {
      this.shard(bin).set(bin, entry);
      this.filledTo = bin;
      if (++copied > FILL_PER_READ) return;
    }
    this.complete = true;
  }
}
