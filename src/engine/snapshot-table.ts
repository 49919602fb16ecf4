import type { EntryRef } from './entry-table.js';
import type { Tree } from './keyspace.js';

/** A named snapshot: an O(1) copy-on-write clone of its subject's tree at one point in the log. */
export interface Snapshot {
  subject: string;
  name: string;
  /** Store-wide creation sequence number. */
  id: number;
  tree: Tree;
  /** SHA-256 over the content in canonical order; undefined until computed. */
  digest: Uint8Array | undefined;
  /** Byte offset of the record that defines it (its SNAPSHOT record, or the checkpoint holding it). */
  at: number;
}

/** Every subject's snapshots, by name. */
export class SnapshotTable {
  private readonly bySubject = new Map<string, Map<string, Snapshot>>();
  nextId = 1;

  get(subject: string, name: string): Snapshot | undefined {
    return this.bySubject.get(subject)?.get(name);
  }

  add(snap: Snapshot): void {
    let named = this.bySubject.get(snap.subject);
    if (named === undefined) this.bySubject.set(snap.subject, (named = new Map<string, Snapshot>()));
    named.set(snap.name, snap);
    this.nextId = Math.max(this.nextId, snap.id + 1);
  }

  remove(subject: string, name: string): void {
    const named = this.bySubject.get(subject);
    named?.delete(name);
    if (named?.size === 0) this.bySubject.delete(subject);
  }

  /** How many snapshots `subject` has. */
  countOf(subject: string): number {
    return this.bySubject.get(subject)?.size ?? 0;
  }

  /** The subject's snapshots, names in bytewise ascending order. */
  of(subject: string): Snapshot[] {
    const named = this.bySubject.get(subject);
    if (named === undefined) return [];
    return [...named.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  all(): Snapshot[] {
    const out: Snapshot[] = [];
    for (const named of this.bySubject.values()) out.push(...named.values());
    return out.sort((a, b) => a.id - b.id);
  }

  /**
   * Every snapshot, oldest first, with the tree a checkpoint writes it against (payload version
   * 4): the next newer snapshot of its subject, or for the newest the live tree (`live`). A change
   * of the live tree then changes only the newest snapshot's differences, whatever the number of
   * snapshots (docs/storage/statefs-v3.md 7.1).
   */
  withBases(live: (subject: string) => Tree): { snap: Snapshot; base: Tree }[] {
    const all = this.all();
    const newer = new Map<string, Tree>();
    const out: { snap: Snapshot; base: Tree }[] = [];
    for (let i = all.length - 1; i >= 0; i--) {
      const snap = all[i];
      if (snap === undefined) continue;
      out.push({ snap, base: newer.get(snap.subject) ?? live(snap.subject) });
      newer.set(snap.subject, snap.tree);
    }
    return out.reverse();
  }

  /** Whether a snapshot of `subject` other than `except` holds exactly `entry` at `bin`. */
  holds(subject: string, bin: string, entry: EntryRef, except?: Snapshot): boolean {
    const named = this.bySubject.get(subject);
    if (named === undefined) return false;
    for (const snap of named.values()) if (snap !== except && snap.tree.get(bin) === entry) return true;
    return false;
  }
}
