import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BTree } from '../src/engine/btree.js';
import { DIGEST_BYTES, MOVED_RECORD_BOUND, boundBesidesLiveEntries, changeBound, mountBound, restoreBound, snapshotHeaderBound } from '../src/engine/checkpoint-bound.js';
import { CheckpointBuild, frozenTrees } from '../src/engine/checkpoint-builder.js';
import { Entry } from '../src/engine/entry.js';
import { EntryTable, type EntryRef } from '../src/engine/entry-table.js';
import type { Extent } from '../src/engine/journal-writer.js';
import type { Tree, Trees } from '../src/engine/keyspace.js';
import { MountTable } from '../src/engine/mount-table.js';
import { SnapshotTable } from '../src/engine/snapshot-table.js';
import { EmptyingBound } from '../src/engine/emptying-bound.js';
import { accountIndex } from '../src/engine/store-support.js';

// The reserve is sized from these bounds (docs/storage/statefs-v3.md 8.2): a bound below the
// checkpoint it stands for is how a full image could not be emptied. Checked against the
// encoder itself, over random states and random changes.

// A 64-byte subject (the longest) with a 255-byte key shares up to 320 bytes: the most a v3 entry may.
const SUBJECTS = ['a', 'ab', 'app', 'b', 's'.repeat(64)];
const NAMES = ['s1', 's2', 'snap-three'];

/** Keys that share prefixes a lot (short alphabet), now and then long ones up to 255 bytes. */
const keyArb = fc.oneof(
  fc.stringMatching(/^\/[ab/]{0,12}$/),
  fc.tuple(fc.constantFrom('/x', '/xy', '/'), fc.nat({ max: 255 })).map(([head, n]) => (head + 'k'.repeat(n)).slice(0, 255)),
);
/** Extents at every varint width, up to 2^32 - 1. */
const u32Arb = fc.oneof(fc.nat({ max: 127 }), fc.nat({ max: 0xffff }), fc.nat({ max: 0xffffffff }));
const extentArb = fc.record({ segment: u32Arb, offset: u32Arb, length: u32Arb });
/** Rows of this table stand for entries loaded at open; the bounds must count them as they count objects. */
const table = new EntryTable();
/** A PUTRUN slice's lead (0: a whole record), for entries held in one record. */
const leadArb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 639 }));
const entryArb: fc.Arbitrary<EntryRef> = fc.tuple(fc.array(extentArb, { minLength: 1, maxLength: 3 }), fc.boolean(), leadArb).map(([extents, row, lead]: [Extent[], boolean, number]) => {
  const [first, ...more] = extents;
  if (first === undefined) return Entry.of(new Uint8Array(1), extents);
  if (more.length === 0 && lead > 0) {
    if (!row) return Entry.inRecord(new Uint8Array(1), 0, 1, first.segment, first.offset, first.length, lead);
    return table.addUnread(first.segment, first.offset, first.length, more, lead);
  }
  if (!row) return Entry.of(new Uint8Array(1), extents);
  return table.addUnread(first.segment, first.offset, first.length, more);
});

type Op =
  | { kind: 'put'; subject: string; key: string; entry: EntryRef }
  | { kind: 'delete'; subject: string; pick: number }
  | { kind: 'snapshot'; subject: string; name: string; digest: boolean }
  | { kind: 'deleteSnap'; pick: number }
  | { kind: 'restore'; pick: number }
  | { kind: 'mount'; caller: string; path: string; pick: number }
  | { kind: 'move'; subject: string; pick: number; to: Extent }
  | { kind: 'rewrite'; subject: string; pick: number; to: Extent; lead: number }
  | { kind: 'digest'; pick: number }
  | { kind: 'checkpoint' };

const subjectArb = fc.constantFrom(...SUBJECTS);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('put' as const), subject: subjectArb, key: keyArb, entry: entryArb }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('delete' as const), subject: subjectArb, pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), subject: subjectArb, name: fc.constantFrom(...NAMES), digest: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deleteSnap' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restore' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('mount' as const), caller: subjectArb, path: fc.stringMatching(/^\/mnt\/[a-z]{1,20}$/), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('move' as const), subject: subjectArb, pick: fc.nat(), to: extentArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rewrite' as const), subject: subjectArb, pick: fc.nat(), to: extentArb, lead: leadArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('digest' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('checkpoint' as const) }) },
);

/** A checkpoint of this state: the encoder's own output, and the build (for what it says of the snapshots). */
function checkpointOf(trees: Trees, snapshots: SnapshotTable, mounts: MountTable): { size: number; build: CheckpointBuild } {
  const build = new CheckpointBuild(frozenTrees(trees), table);
  build.step(Number.POSITIVE_INFINITY);
  return { size: build.finish(snapshots, mounts, 2 ** 40).length, build };
}

/** What a checkpoint of this state takes. */
function checkpointSize(trees: Trees, snapshots: SnapshotTable, mounts: MountTable): number {
  return checkpointOf(trees, snapshots, mounts).size;
}

function nth<T>(items: readonly T[], pick: number): T | undefined {
  return items.length === 0 ? undefined : items[pick % items.length];
}

/** Apply `op` as the store does, returning the growth the store counts for it; `emptying` kept as the store keeps it. */
function apply(op: Op, trees: Trees, snapshots: SnapshotTable, mounts: MountTable, emptying?: EmptyingBound): number {
  const live = (subject: string): Tree => {
    let tree = trees.get(subject);
    if (tree === undefined) trees.set(subject, (tree = new BTree<string, EntryRef>()));
    return tree;
  };
  switch (op.kind) {
    case 'put': {
      const before = live(op.subject).get(op.key);
      live(op.subject).set(op.key, op.entry);
      emptying?.changed(op.subject, op.key, before, op.entry);
      return changeBound(table, op.subject, op.key, before, op.entry, snapshots.countOf(op.subject));
    }
    case 'delete': {
      const key = nth(live(op.subject).keysArray(), op.pick);
      if (key === undefined) return 0;
      const before = live(op.subject).get(key);
      live(op.subject).delete(key);
      emptying?.changed(op.subject, key, before, undefined);
      return changeBound(table, op.subject, key, before, undefined, snapshots.countOf(op.subject));
    }
    case 'snapshot': {
      if (snapshots.get(op.subject, op.name) !== undefined) return 0;
      const digest = op.digest ? new Uint8Array(32).fill(7) : undefined;
      const snap = { subject: op.subject, name: op.name, id: snapshots.nextId, tree: live(op.subject).clone(), digest, at: 0 };
      snapshots.add(snap);
      emptying?.taken(snap);
      return snapshotHeaderBound(op.subject, op.name);
    }
    case 'deleteSnap': {
      const snap = nth(snapshots.all(), op.pick);
      if (snap !== undefined && mounts.mountsOf(snap.subject, snap.name).length === 0) {
        snapshots.remove(snap.subject, snap.name);
        emptying?.deleted(snap);
      }
      return 0;
    }
    case 'restore': {
      const snap = nth(snapshots.all(), op.pick);
      if (snap === undefined) return 0;
      const grew = restoreBound(table, snap.subject, trees.get(snap.subject), snap.tree, snapshots.countOf(snap.subject));
      trees.set(snap.subject, snap.tree.clone());
      emptying?.restored(snap.subject, snap);
      return grew;
    }
    case 'mount': {
      const snap = nth(snapshots.all(), op.pick);
      if (snap === undefined || mounts.get(op.caller, op.path) !== undefined) return 0;
      const m = { caller: op.caller, path: op.path, owner: snap.subject, name: snap.name, snapId: snap.id };
      mounts.add({ ...m, at: 0 });
      return mountBound(m);
    }
    case 'move': {
      // GC moves a record: the entry (shared by the live tree and snapshots) changes in place.
      const entry = nth(live(op.subject).valuesArray(), op.pick);
      if (entry === undefined) return 0;
      table.moveTo(entry, op.to);
      return MOVED_RECORD_BOUND;
    }
    case 'rewrite': {
      // A checkpoint writes a value changed while it was built again, as a PUT or a PUTRUN slice:
      // a live entry no snapshot holds (a snapshot taken meanwhile restarts the build).
      const key = nth(live(op.subject).keysArray(), op.pick);
      const entry = key === undefined ? undefined : live(op.subject).get(key);
      if (key === undefined || entry === undefined || snapshots.all().some((snap) => snap.tree.get(key) === entry)) return 0;
      const to = op.lead === 0 ? op.to : { ...op.to, lead: op.lead };
      if (emptying === undefined) table.moveTo(entry, to);
      else {
        emptying.moved(op.subject, key, entry, () => {
          table.moveTo(entry, to);
        });
      }
      return MOVED_RECORD_BOUND;
    }
    case 'digest': {
      const snap = nth(snapshots.all(), op.pick);
      if (snap !== undefined) snap.digest = new Uint8Array(32).fill(9);
      return 0; // a snapshot's header bound counts its digest from the start
    }
    case 'checkpoint':
      return 0; // the caller writes it (its bound starts again from its size)
  }
}

/** The same state with every `keep`-th live key of each subject kept (0: none) and the rest deleted; the snapshots shared. */
function emptied(trees: Trees, keep: number): Trees {
  const out: Trees = new Map();
  for (const [subject, tree] of trees) {
    const left = new BTree<string, EntryRef>();
    tree.keysArray().forEach((key, i) => {
      const entry = tree.get(key);
      if (keep > 0 && i % keep === 0 && entry !== undefined) left.set(key, entry);
    });
    out.set(subject, left);
  }
  return out;
}

test('a checkpoint never takes more than its bound: from open (the whole state), after any changes (the bound plus their growth), and with live keys deleted (plus the emptying bound)', () => {
  // The reserve keeps room for the bound and the emptying bound (docs/storage/statefs-v3.md
  // 8.2): without the second, one snapshot of short keys made a full image that could not be
  // emptied (Appendix A, item 8).
  let checked = 0;
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
      const trees: Trees = new Map();
      const snapshots = new SnapshotTable();
      const mounts = new MountTable();
      const emptying = new EmptyingBound(table, trees, snapshots, new Map());
      let bound = checkpointSize(trees, snapshots, mounts);
      for (const op of ops) {
        bound += apply(op, trees, snapshots, mounts, emptying);
        if (op.kind === 'checkpoint') {
          // As the checkpointer does once one is written: the bound is its size and the digests
          // still to come, and the newest snapshot's share drops to what it still shares with the
          // state written.
          const written = checkpointOf(trees, snapshots, mounts);
          bound = written.size + DIGEST_BYTES * snapshots.all().filter((snap) => snap.digest === undefined).length;
          emptying.tighten(written.build.heldDifferences);
        }
        const size = checkpointSize(trees, snapshots, mounts);
        assert.ok(size <= bound, `after ${op.kind}: checkpoint ${size} bytes, bound ${bound}`);
        const opened = accountIndex(table, trees, snapshots, { segmentCount: 1 << 20, segmentSize: 1 << 20 });
        const atOpen = opened.liveEntriesBound + boundBesidesLiveEntries(table, trees, snapshots, mounts);
        assert.ok(size <= atOpen, `after ${op.kind}: checkpoint ${size} bytes, open's bound ${atOpen}`);
        // Open sums what is there now; the store's count may be higher (GC moves shrink entries).
        const emptyingAtOpen = new EmptyingBound(table, trees, snapshots, opened.liveDiffBytes);
        assert.ok(emptyingAtOpen.bytes <= emptying.bytes, `after ${op.kind}: open's emptying bound ${emptyingAtOpen.bytes}, the store's ${emptying.bytes}`);
        for (const keep of [0, 2, 3]) {
          const left = checkpointSize(emptied(trees, keep), snapshots, mounts);
          assert.ok(left <= bound + emptying.bytes, `after ${op.kind}, live keys but every ${keep}th deleted: checkpoint ${left} bytes, bound ${bound} + ${emptying.bytes}`);
          assert.ok(left <= atOpen + emptyingAtOpen.bytes, `after ${op.kind}, live keys but every ${keep}th deleted: checkpoint ${left} bytes, open's bound ${atOpen} + ${emptyingAtOpen.bytes}`);
        }
        checked++;
      }
    }),
    { numRuns: 300 },
  );
  assert.ok(checked > 1_000, `${checked} states checked`);
});

test('the bounds are tight where they can be: one new key with nothing shared costs exactly its worst case', () => {
  const trees: Trees = new Map();
  const snapshots = new SnapshotTable();
  const mounts = new MountTable();
  const empty = checkpointSize(trees, snapshots, mounts);
  const entry = Entry.of(new Uint8Array(1), [{ segment: 0xffffffff, offset: 0xffffffff, length: 0xffffffff }]);
  const grew = apply({ kind: 'put', subject: 'app', key: '/k', entry }, trees, snapshots, mounts);
  // The key's varints take 1 byte each here, not the 2 and 3 the bound allows for.
  assert.equal(checkpointSize(trees, snapshots, mounts) - empty, grew - 3);
  const atOpen = accountIndex(table, trees, snapshots, { segmentCount: 1 << 20, segmentSize: 1 << 20 }).liveEntriesBound + boundBesidesLiveEntries(table, trees, snapshots, mounts);
  assert.equal(atOpen, empty + grew);
});


test('a live change gives one snapshot a difference however many its subject has: the newest (payload version 4)', () => {
  const trees: Trees = new Map();
  const snapshots = new SnapshotTable();
  const mounts = new MountTable();
  const entry = (n: number): Entry => Entry.of(new Uint8Array(1), [{ segment: n, offset: n, length: 30 }]);
  const keys = Array.from({ length: 200 }, (_, i) => `/k${String(i).padStart(3, '0')}`);
  for (const [i, key] of keys.entries()) apply({ kind: 'put', subject: 'app', key, entry: entry(i) }, trees, snapshots, mounts);
  for (let i = 0; i < 5; i++) snapshots.add({ subject: 'app', name: `s${i}`, id: snapshots.nextId, tree: trees.get('app')?.clone() ?? new BTree<string, EntryRef>(), digest: undefined, at: 0 });
  let bound = checkpointSize(trees, snapshots, mounts);
  for (const [i, key] of keys.entries()) bound += apply({ kind: 'put', subject: 'app', key, entry: entry(1000 + i) }, trees, snapshots, mounts);
  // Written against the live tree, each of the 5 snapshots would differ at every key: ~5 x 20 bytes a key.
  const size = checkpointSize(trees, snapshots, mounts);
  assert.ok(size <= bound, `checkpoint ${size} bytes, bound ${bound}`);
});

test('deleting the newest snapshot counts the next older one at most as the deleted one was, with or without a restore between', () => {
  for (const restore of [false, true]) {
    const trees: Trees = new Map();
    const snapshots = new SnapshotTable();
    const mounts = new MountTable();
    const emptying = new EmptyingBound(table, trees, snapshots, new Map());
    const entry = (n: number): Entry => Entry.of(new Uint8Array(1), [{ segment: n, offset: n, length: 30 }]);
    const keys = Array.from({ length: 200 }, (_, i) => `/k${String(i).padStart(3, '0')}`);
    const putAll = (base: number): void => {
      for (const [i, key] of keys.entries()) apply({ kind: 'put', subject: 'app', key, entry: entry(base + i) }, trees, snapshots, mounts, emptying);
    };
    putAll(0);
    apply({ kind: 'snapshot', subject: 'app', name: 's1', digest: false }, trees, snapshots, mounts, emptying);
    if (restore) putAll(1000); // s2 then shares nothing with s1, and the restore brings s1's entries back
    apply({ kind: 'snapshot', subject: 'app', name: 's2', digest: false }, trees, snapshots, mounts, emptying);
    if (restore) apply({ kind: 'restore', pick: 0 }, trees, snapshots, mounts, emptying);
    const written = checkpointOf(trees, snapshots, mounts);
    emptying.tighten(written.build.heldDifferences);
    apply({ kind: 'deleteSnap', pick: 1 }, trees, snapshots, mounts, emptying); // s2, the newest
    const left = checkpointSize(emptied(trees, 0), snapshots, mounts);
    assert.ok(left <= written.size + emptying.bytes, `restore ${String(restore)}: all live keys deleted, checkpoint ${left} bytes, bound ${written.size} + ${emptying.bytes}`);
  }
});
