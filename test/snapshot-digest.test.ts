import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BTree } from '../src/engine/btree.js';
import type { EntryRef } from '../src/engine/entry-table.js';
import { DigestJobs, snapshotDigest } from '../src/engine/snapshot-digest.js';
import type { Snapshot } from '../src/engine/snapshot-table.js';

/*
 * Background snapshot digests run one after another: each takes a step of its entries per turn
 * of the event loop, and several at once would each take theirs in the same turn, holding
 * writers behind all of them.
 */

const KEYS = 5000; // more than two steps of a digest

/** A snapshot whose entries are the rows `first` … `first + KEYS - 1`. */
function snapshotOf(id: number, first: number): Snapshot {
  const tree = new BTree<string, EntryRef>();
  for (let i = 0; i < KEYS; i++) tree.set(`/state/k${String(i).padStart(5, '0')}`, first + i);
  return { subject: 'app', name: `s${id}`, id, tree, digest: undefined, at: 0 };
}

test('background digests run one snapshot after another, in the order started, each recorded when known; a failed one does not stop the next', async () => {
  const snaps: [Snapshot, Snapshot, Snapshot] = [snapshotOf(1, 0), snapshotOf(2, KEYS), snapshotOf(3, 2 * KEYS)];
  const reads: number[] = []; // the snapshot (by index) of each value read, in order
  const recorded: number[] = [];
  const valueOf = (entry: EntryRef): Uint8Array => {
    const row = typeof entry === 'number' ? entry : -1;
    const snap = Math.floor(row / KEYS);
    if (snap === 1 && row % KEYS === KEYS - 1) throw new Error('value gone (a released slab)');
    reads.push(snap);
    return Uint8Array.of(row & 0xff);
  };
  const jobs = new DigestJobs(
    valueOf,
    (snap) => {
      recorded.push(snap.id);
      return Promise.resolve();
    },
    () => true,
  );
  const started = snaps.map((snap) => jobs.start(snap));
  assert.equal(jobs.start(snaps[0]), started[0], 'a digest asked for again is the same job');
  const settled = await Promise.allSettled(started);
  await jobs.recorded();
  assert.deepEqual(
    settled.map((s) => s.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  );
  // Not interleaved: every value of the first, then of the second (up to its failure), then the third.
  const firstOfNext = (i: number): number => reads.indexOf(i + 1);
  assert.ok(reads.lastIndexOf(0) < firstOfNext(0) && reads.lastIndexOf(1) < firstOfNext(1), 'one digest at a time');
  assert.equal(reads.filter((s) => s === 0).length, KEYS);
  assert.equal(reads.filter((s) => s === 2).length, KEYS);
  assert.deepEqual(recorded, [1, 3], 'the failed one not recorded');
  // The digests are the snapshots' own.
  for (const snap of [snaps[0], snaps[2]]) {
    const expected = await snapshotDigest(snap.tree, (_bin, entry) => Uint8Array.of((typeof entry === 'number' ? entry : 0) & 0xff));
    assert.deepEqual(snap.digest, expected);
  }
});

test('a snapshot deleted before its digest\'s turn is not hashed: its job is ENOENT, and the next one runs', async () => {
  const snaps: [Snapshot, Snapshot, Snapshot] = [snapshotOf(1, 0), snapshotOf(2, KEYS), snapshotOf(3, 2 * KEYS)];
  const deleted = new Set<number>();
  const read = new Set<number>(); // the snapshots (by index) any value was read of
  const recorded: number[] = [];
  const jobs = new DigestJobs(
    (entry) => {
      read.add(Math.floor((typeof entry === 'number' ? entry : -1) / KEYS));
      return new Uint8Array(1);
    },
    (snap) => {
      recorded.push(snap.id);
      return Promise.resolve();
    },
    (snap) => !deleted.has(snap.id),
  );
  const started = snaps.map((snap) => jobs.start(snap));
  deleted.add(2); // before any digest's turn: the check is made when its turn comes
  const settled = await Promise.allSettled(started);
  await jobs.recorded();
  assert.deepEqual(
    settled.map((s) => (s.status === 'rejected' && s.reason instanceof Error ? ('code' in s.reason ? s.reason.code : 'error') : s.status)),
    ['fulfilled', 'ENOENT', 'fulfilled'],
  );
  assert.deepEqual([...read].sort(), [0, 2], 'no value of the deleted snapshot read');
  assert.deepEqual(recorded, [1, 3]);
});
