import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BTree, type SortedTree } from '../src/engine/btree.js';
import type { EntryRef } from '../src/engine/entry-table.js';
import { FILL_PER_READ, PointIndex } from '../src/engine/point-index.js';
import { MiB, memoryImage, openMemory, text } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

// A point index answers every read as its subject's committed tree does, while it is being filled
// read by read and while durable rounds change keys under it (as Keyspace.publish applies them:
// the round's changes to the index, and a new committed tree).

type Op = { kind: 'read'; key: number } | { kind: 'round'; changes: [number, number | undefined][] };

const KEYS = 400;
const keyOf = (i: number): string => `/state/d${i % 7}/k${i}`;
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.nat({ max: KEYS - 1 }).map((key): Op => ({ kind: 'read', key })) },
  {
    weight: 1,
    arbitrary: fc
      .array(fc.tuple(fc.nat({ max: KEYS - 1 }), fc.option(fc.nat({ max: 1_000_000 }), { nil: undefined })), { minLength: 1, maxLength: 8 })
      .map((changes): Op => ({ kind: 'round', changes })),
  },
);

test('a point index answers as the committed tree does, during its fill and across rounds', () => {
  fc.assert(
    fc.property(fc.array(fc.nat({ max: KEYS - 1 }), { maxLength: KEYS }), fc.array(opArb, { minLength: 1, maxLength: 300 }), (initial, ops) => {
      const working: SortedTree<string, EntryRef> = new BTree<string, EntryRef>();
      for (const i of initial) working.set(keyOf(i), i);
      let committed = working.clone();
      const index = new PointIndex();
      for (const op of ops) {
        if (op.kind === 'read') {
          const key = keyOf(op.key);
          assert.equal(index.get(key, committed), committed.get(key), key);
          continue;
        }
        const changes = new Map<string, EntryRef | undefined>();
        for (const [i, value] of op.changes) {
          if (value === undefined) working.delete(keyOf(i));
          else working.set(keyOf(i), value);
          changes.set(keyOf(i), value);
        }
        committed = working.clone();
        for (const [key, value] of changes) {
          if (value === undefined) index.delete(key);
          else index.set(key, value);
        }
      }
      // Read on until the fill is done: every key, present or not, still answers as the tree.
      for (let guard = 0; !index.filled; guard++) {
        assert.ok(guard <= KEYS, 'the fill ends');
        index.get(keyOf(0), committed);
      }
      for (let i = 0; i < KEYS; i++) assert.equal(index.get(keyOf(i), committed), committed.get(keyOf(i)), keyOf(i));
    }),
    { numRuns: 200 },
  );
});

test('a point index is filled after about one read per FILL_PER_READ keys, whichever keys are read', () => {
  const tree = new BTree<string, EntryRef>();
  const keys = 10_000;
  for (let i = 0; i < keys; i++) tree.set(keyOf(i), i);
  const index = new PointIndex();
  let reads = 0;
  while (!index.filled) {
    assert.equal(index.get(keyOf(reads % 10), tree), reads % 10); // the same few keys over and over
    reads++;
  }
  assert.ok(reads <= Math.ceil(keys / FILL_PER_READ) + 1, `filled after ${reads} reads`);
  assert.equal(index.get('/state/missing', tree), undefined);
  assert.equal(index.get(keyOf(keys - 1), undefined), keys - 1, 'once filled, the index alone answers');
});

test('while a subject\'s point index is being filled, get sees only durable writes, deletes and restores', async () => {
  const s = await openMemory(await memoryImage(16 * MiB));
  try {
    const n = 5000;
    const key = (i: number): string => `/state/k${String(i).padStart(5, '0')}`;
    const all = Array.from({ length: n }, (_, i) => i);
    await s.putMany('app', all.map((i): [string, string] => [key(i), `v${i}`]));
    await s.snapshot('app', 'before');
    // The 4,096th read starts the index; each read after copies ~32 keys, so it stays partial
    // (about a thousand keys) through the reads below.
    for (let i = 0; i < 4100; i++) s.getSync('app', key(0));
    const sample = (): number[] => all.filter((i) => i % 97 === 0 || i < 40);
    const pending = s.putMany('app', all.map((i): [string, string] => [key(i), `new${i}`]));
    for (const i of sample()) assert.equal(text(s.getSync('app', key(i))), `v${i}`, `${key(i)} not durable yet`);
    await pending;
    for (const i of sample()) assert.equal(text(s.getSync('app', key(i))), `new${i}`, key(i));
    const deleted = s.delete('app', key(4000));
    assert.equal(text(s.getSync('app', key(4000))), 'new4000', 'the delete is not durable yet');
    await deleted;
    assert.equal(s.getSync('app', key(4000)), undefined);
    await s.restoreSnap('app', 'before');
    for (const i of sample()) assert.equal(text(s.getSync('app', key(i))), `v${i}`, `${key(i)} restored`);
    for (let i = 0; i < 6000; i++) s.getSync('app', key(1)); // a new index, filled to the end
    for (const i of all) assert.equal(text(s.getSync('app', key(i))), `v${i}`, key(i));
  } finally {
    await s.close();
  }
});
