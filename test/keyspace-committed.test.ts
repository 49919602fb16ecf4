import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BTree } from '../src/engine/btree.js';
import type { EntryRef } from '../src/engine/entry-table.js';
import { Keyspace, UNDO_BUILD_LIMIT, type Sealed, type Tree } from '../src/engine/keyspace.js';

// Readers see the committed state: the working trees as the last durable round left them. A
// subject's committed state is derived from its working tree (the writes since undone) or, after a
// restore, a tree of its own; these tests drive Keyspace directly against a model of the three
// states (committed, the round in flight, working) and check every way a reader reads.

const SUBJECTS = ['a', 'b'] as const;
/** Few keys, so writes often meet (a key written twice in a round, again after a seal, ...). */
const KEYS = Array.from({ length: 6 }, (_, i) => `/state/k${i}`);
/** Many keys in directories, written in runs: trees of several levels, a point index filled over several reads. */
const BULK_KEYS = Array.from({ length: 400 }, (_, i) => `/state/d${i % 7}/k${i}`);
/** Keys every check reads one by one (every bulk key is read through whole trees). */
const READ_KEYS = [...KEYS, ...BULK_KEYS.filter((_, i) => i % 37 === 0)];
/** Reads that start a subject's point index, leaving it to be filled by the reads that follow (32 keys each). */
const READS_FOR_POINT_INDEX = 4098;

type State = Map<string, Map<string, EntryRef>>;

type Op =
  | { kind: 'set'; subject: number; key: number }
  | { kind: 'delete'; subject: number; key: number }
  | { kind: 'bulk'; subject: number; from: number; count: number; remove: boolean; ahead: boolean }
  | { kind: 'replace'; subject: number; keys: number[] }
  | { kind: 'seal' }
  | { kind: 'publish' }
  | { kind: 'hold'; subject: number }
  | { kind: 'readMany'; subject: number };

const subjectArb = fc.integer({ min: 0, max: SUBJECTS.length - 1 });
const keyArb = fc.integer({ min: 0, max: KEYS.length - 1 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('set' as const), subject: subjectArb, key: keyArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('delete' as const), subject: subjectArb, key: keyArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('bulk' as const),
      subject: subjectArb,
      from: fc.integer({ min: 0, max: BULK_KEYS.length - 1 }),
      count: fc.integer({ min: 1, max: BULK_KEYS.length }),
      remove: fc.boolean(),
      // Announced as a batch (`batchAhead`, as putMany does for one of 256 keys or more): its round commits as a tree of its own.
      ahead: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('replace' as const), subject: subjectArb, keys: fc.uniqueArray(keyArb, { maxLength: KEYS.length }) }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'seal' as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'publish' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('hold' as const), subject: subjectArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('readMany' as const), subject: subjectArb }) },
);

function copyState(state: State): State {
  return new Map([...state].map(([subject, keys]) => [subject, new Map(keys)]));
}

function contents(tree: Tree | undefined): Map<string, EntryRef> {
  return new Map(tree === undefined ? [] : tree.entries());
}

/** Sets, deletes and in-place replaces (`replaceIfPresent`) made on any tree (every tree's class is counted from here on). */
let treeWrites = 0;
{
  const proto: unknown = Object.getPrototypeOf(BTree.prototype);
  assert.ok(typeof proto === 'object' && proto !== null);
  // (`delete` is an `editRange` in sorted-btree: counted there, once.)
  for (const name of ['set', 'editRange']) {
    const method: unknown = Reflect.get(proto, name);
    assert.ok(typeof method === 'function');
    Reflect.set(proto, name, function (this: unknown, ...args: unknown[]): unknown {
      treeWrites++;
      const result: unknown = Reflect.apply(method, this, args);
      return result;
    });
  }
}

/** `fn()`, and the tree writes it made. */
function treeWritesDuring<T>(fn: () => T): { result: T; writes: number } {
  const before = treeWrites;
  const result = fn();
  return { result, writes: treeWrites - before };
}

/** A set or delete of the keyspace: its own tree write (two when a guess of adding or replacing misses), and at most one build of a committed tree. */
const MAX_WRITES_PER_CHANGE = 2 + UNDO_BUILD_LIMIT;

function pick<T>(items: readonly T[], i: number): T {
  const item = items[i];
  if (item === undefined) throw new Error(`no item ${i}`);
  return item;
}

/** Run `ops` on a Keyspace and a model side by side, checking every read against the model. */
function check(initial: [string, EntryRef][], ops: Op[]): void {
  let next = 1_000;
  const start = new BTree<string, EntryRef>();
  for (const [k, v] of initial) start.set(k, v);
  const keyspace = new Keyspace(new Map([['a', start]]));
  const working: State = new Map([['a', new Map(initial)]]);
  let committed = copyState(working);
  let inFlight: { sealed: Sealed; state: State } | undefined;
  const held: { tree: Tree; expected: Map<string, EntryRef> }[] = [];

  const expectCommitted = (subject: string): Map<string, EntryRef> => committed.get(subject) ?? new Map<string, EntryRef>();
  const checkReads = (wholeTrees: boolean): void => {
    for (const subject of SUBJECTS) {
      const expected = expectCommitted(subject);
      for (const key of READ_KEYS) {
        assert.equal(keyspace.readEntry(subject, key), expected.get(key), `readEntry ${subject} ${key}`);
        assert.equal(keyspace.readPoint(subject, key), expected.get(key), `readPoint ${subject} ${key}`);
      }
      // Not after every step: a whole tree is built on first use, and later readers get the same one.
      if (wholeTrees) {
        const { result, writes } = treeWritesDuring(() => keyspace.read(subject));
        assert.deepEqual(contents(result), expected, `read ${subject}`);
        assert.ok(writes < UNDO_BUILD_LIMIT, `a whole tree built with ${writes} tree writes`);
      }
      assert.deepEqual(contents(keyspace.workingTree(subject)), working.get(subject) ?? new Map(), `working ${subject}`);
    }
    for (const h of held) assert.deepEqual(contents(h.tree), h.expected, 'a tree handed to a reader never changes');
  };

  for (const [step, op] of ops.entries()) {
    switch (op.kind) {
      case 'set': {
        const subject = pick(SUBJECTS, op.subject);
        const key = pick(KEYS, op.key);
        const keys = working.get(subject) ?? new Map<string, EntryRef>();
        working.set(subject, keys);
        const { result: old, writes } = treeWritesDuring((): EntryRef | undefined => keyspace.set(subject, key, next));
        assert.equal(old, keys.get(key));
        assert.ok(writes <= MAX_WRITES_PER_CHANGE, `a set made ${writes} tree writes`);
        keys.set(key, next++);
        break;
      }
      case 'delete': {
        const subject = pick(SUBJECTS, op.subject);
        const key = pick(KEYS, op.key);
        const keys = working.get(subject) ?? new Map<string, EntryRef>();
        working.set(subject, keys);
        assert.equal(keyspace.delete(subject, key), keys.get(key));
        keys.delete(key);
        break;
      }
      case 'bulk': {
        const subject = pick(SUBJECTS, op.subject);
        const keys = working.get(subject) ?? new Map<string, EntryRef>();
        working.set(subject, keys);
        if (op.ahead && !op.remove) {
          const { writes } = treeWritesDuring(() => {
            keyspace.batchAhead(subject);
          });
          assert.ok(writes < UNDO_BUILD_LIMIT, `batchAhead built a committed tree with ${writes} tree writes`);
        }
        for (const key of BULK_KEYS.slice(op.from, op.from + op.count)) {
          const { result: old, writes } = treeWritesDuring((): EntryRef | undefined => (op.remove ? keyspace.delete(subject, key) : keyspace.set(subject, key, next)));
          assert.equal(old, keys.get(key));
          assert.ok(writes <= MAX_WRITES_PER_CHANGE, `a change made ${writes} tree writes`);
          if (op.remove) keys.delete(key);
          else keys.set(key, next++);
        }
        break;
      }
      case 'replace': {
        const subject = pick(SUBJECTS, op.subject);
        const tree = new BTree<string, EntryRef>();
        const keys = new Map<string, EntryRef>();
        for (const k of op.keys) {
          tree.set(pick(KEYS, k), next);
          keys.set(pick(KEYS, k), next++);
        }
        keyspace.replace(subject, tree);
        working.set(subject, keys);
        break;
      }
      case 'seal':
        // One round in flight at a time, as the journal writes them.
        inFlight ??= { sealed: keyspace.seal(), state: copyState(working) };
        break;
      case 'publish':
        if (inFlight !== undefined) {
          const sealed = inFlight.sealed;
          const { writes } = treeWritesDuring(() => {
            keyspace.publish(sealed);
          });
          // At most the round's own keys, and fewer than the limit per subject.
          const roundKeys = [...sealed.changes.values()].reduce((n, keys) => n + keys.size, 0);
          assert.ok(writes <= roundKeys && writes < UNDO_BUILD_LIMIT * Math.max(1, sealed.changes.size), `a durable round of ${roundKeys} keys made ${writes} tree writes`);
          committed = inFlight.state;
          inFlight = undefined;
        }
        break;
      case 'hold': {
        const subject = pick(SUBJECTS, op.subject);
        const tree = keyspace.read(subject);
        if (tree !== undefined) held.push({ tree, expected: contents(tree) });
        break;
      }
      case 'readMany': {
        const subject = pick(SUBJECTS, op.subject);
        const expected = expectCommitted(subject);
        for (let i = 0; i < READS_FOR_POINT_INDEX; i++) {
          const key = pick(READ_KEYS, i % READ_KEYS.length);
          assert.equal(keyspace.readPoint(subject, key), expected.get(key));
        }
        break;
      }
    }
    checkReads(step % 3 === 0);
  }
  checkReads(true);
}

test('readers see exactly the state of the last durable round, whatever is written, sealed, restored or held meanwhile', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(keyArb, { maxLength: KEYS.length }).map((keys) => keys.map((k, i): [string, EntryRef] => [pick(KEYS, k), i + 1])),
      fc.array(opArb, { maxLength: 60 }),
      (initial, ops) => {
        check(initial, ops);
      },
    ),
    { numRuns: 2000 },
  );
});

test('a lone write per round leaves the working tree unshared: rounds clone nothing unless a reader asks for a whole tree', () => {
  const keyspace = new Keyspace(new Map());
  let clones = 0;
  const counting = (tree: Tree): void => {
    const clone = tree.clone.bind(tree);
    tree.clone = () => {
      clones++;
      return clone();
    };
  };
  keyspace.set('a', '/state/k0', 1);
  const working = keyspace.workingTree('a');
  assert.ok(working !== undefined);
  counting(working);
  for (let i = 1; i <= 100; i++) {
    keyspace.set('a', `/state/k${i}`, i);
    keyspace.publish(keyspace.seal());
    assert.equal(keyspace.readPoint('a', `/state/k${i}`), i);
  }
  assert.equal(clones, 0, 'no round cloned the working tree');
  // A reader of the whole tree gets one clone, built once and kept until the next durable round.
  const first = keyspace.read('a');
  assert.equal(keyspace.read('a'), first);
  assert.equal(clones, 1);
  keyspace.set('a', '/state/k1', 7); // not durable yet: the reader's tree is still the committed one
  assert.equal(keyspace.read('a'), first);
  assert.equal(first?.get('/state/k1'), 1);
  keyspace.publish(keyspace.seal());
  assert.notEqual(keyspace.read('a'), first);
  assert.equal(keyspace.read('a')?.get('/state/k1'), 7);
  assert.equal(first.get('/state/k1'), 1, 'the tree handed out before is unchanged');
});

test('reads of a subject that was never written leave nothing behind: no count of reads, no point index', () => {
  const keyspace = new Keyspace(new Map());
  for (let i = 0; i < 5000; i++) assert.equal(keyspace.readPoint(`ghost${i % 3}`, '/state/k'), undefined);
  assert.equal(keyspace.read('ghost0'), undefined);
  for (const field of ['treeReads', 'points', 'committed', 'undo']) {
    const map: unknown = Reflect.get(keyspace, field);
    assert.ok(map instanceof Map, field);
    assert.equal(map.size, 0, `${field} is empty`);
  }
});

test('rounds around the 256-entry limit: reads stay exact and builds stay bounded, subject by subject', () => {
  const bulk = (subject: number, from: number, count: number, remove = false, ahead = false): Op => ({ kind: 'bulk', subject, from, count, remove, ahead });
  const sequences: Op[][] = [
    // Two subjects each left with 256 undo entries by a durable round of 128 keys each.
    [bulk(0, 0, 128), bulk(1, 0, 128), { kind: 'seal' }, bulk(0, 0, 256), bulk(1, 0, 256), { kind: 'publish' }, { kind: 'hold', subject: 0 }],
    // A round of 300 keys (cloned at its seal), the subject restored while it is in flight, then written again.
    [bulk(0, 0, 300), { kind: 'seal' }, { kind: 'replace', subject: 0, keys: [0, 1] }, bulk(0, 50, 300), { kind: 'publish' }, { kind: 'seal' }, { kind: 'publish' }],
    // A restored subject made derived again with 300 keys written while its round was in flight.
    [{ kind: 'replace', subject: 1, keys: [2] }, { kind: 'seal' }, bulk(1, 0, 300), { kind: 'publish' }, { kind: 'hold', subject: 1 }, { kind: 'seal' }, { kind: 'publish' }],
    // A tree built during a round in flight (the 256th write), then that round published, then deletes.
    [bulk(0, 0, 100), { kind: 'seal' }, bulk(0, 100, 200), { kind: 'publish' }, bulk(0, 0, 400, true), { kind: 'seal' }, { kind: 'publish' }],
    // A batch announced (`batchAhead`) while a round of the same subject is in flight, then held and written again.
    [bulk(0, 0, 100), { kind: 'seal' }, bulk(0, 100, 300, false, true), { kind: 'publish' }, { kind: 'hold', subject: 0 }, bulk(0, 0, 10), { kind: 'seal' }, { kind: 'publish' }, { kind: 'seal' }, { kind: 'publish' }],
    // Two announced batches, the second while the first's round is in flight; another subject's round published in between.
    [bulk(0, 0, 300, false, true), { kind: 'seal' }, bulk(0, 50, 300, false, true), bulk(1, 0, 5), { kind: 'publish' }, { kind: 'seal' }, { kind: 'publish' }],
    // An announced batch while another subject's round is in flight (that round's durability leaves it alone), after a restore.
    [bulk(1, 0, 20), { kind: 'seal' }, { kind: 'replace', subject: 0, keys: [1] }, bulk(0, 0, 300, false, true), { kind: 'publish' }, { kind: 'hold', subject: 0 }, { kind: 'seal' }, { kind: 'publish' }],
  ];
  for (const ops of sequences) check([], ops);
});

/** One of a Keyspace's private per-subject maps (`undo`, `points`), read for a test's checks. */
function privateMap(keyspace: Keyspace, name: 'undo' | 'points'): Map<unknown, unknown> {
  const map: unknown = Reflect.get(keyspace, name);
  assert.ok(map instanceof Map);
  return map;
}

test('a batch announced with batchAhead keeps no undo entries, even while another round becomes durable, and commits whole', () => {
  const keyspace = new Keyspace(new Map());
  const undoOf = (subject: string): unknown => privateMap(keyspace, 'undo').get(subject);
  keyspace.set('a', '/state/old', 1);
  keyspace.publish(keyspace.seal());
  keyspace.set('b', '/state/x', 2);
  const other = keyspace.seal(); // another subject's round, in flight
  keyspace.batchAhead('a');
  for (let i = 0; i < 300; i++) keyspace.set('a', `/state/d/k${i}`, 10 + i);
  keyspace.set('a', '/state/old', 3);
  assert.equal(undoOf('a'), undefined, 'no undo entries for the batch');
  keyspace.publish(other);
  assert.equal(undoOf('a'), undefined, 'none made when the other round became durable');
  assert.equal(keyspace.readEntry('a', '/state/old'), 1);
  assert.equal(keyspace.readEntry('a', '/state/d/k7'), undefined);
  assert.equal(keyspace.readEntry('b', '/state/x'), 2);
  keyspace.publish(keyspace.seal());
  assert.equal(keyspace.readEntry('a', '/state/old'), 3);
  assert.equal(keyspace.readEntry('a', '/state/d/k299'), 309);
  assert.equal(keyspace.read('a')?.size, 301);
  keyspace.set('a', '/state/old', 4); // derived again: a lone write keeps an undo entry
  assert.ok(undoOf('a') instanceof Map);
  assert.equal(keyspace.readEntry('a', '/state/old'), 3);
});

test('a batch into a subject nobody reads by key is not listed in its round; a point index started meanwhile is dropped when the round is durable and the next read starts another; once read by key, batches are listed and the index kept in step', () => {
  const keyspace = new Keyspace(new Map());
  const hasPoints = (subject: string): boolean => privateMap(keyspace, 'points').has(subject);
  const readOften = (subject: string, bin: string, expected: EntryRef | undefined): void => {
    for (let i = 0; i < READS_FOR_POINT_INDEX; i++) assert.equal(keyspace.readPoint(subject, bin), expected);
  };
  keyspace.set('a', '/state/old', 1);
  keyspace.publish(keyspace.seal());

  keyspace.batchAhead('a');
  for (let i = 0; i < 300; i++) keyspace.set('a', `/state/d/k${i}`, 10 + i);
  keyspace.delete('a', '/state/d/k5');
  const first = keyspace.seal();
  assert.equal(first.changes.get('a'), undefined, 'the batch is not listed');
  assert.ok(first.unlisted.has('a'));
  readOften('a', '/state/old', 1); // starts a point index of the state before the batch
  assert.ok(hasPoints('a'));
  assert.equal(keyspace.readPoint('a', '/state/d/k7'), undefined, 'not durable yet');
  keyspace.publish(first);
  assert.ok(!hasPoints('a'), 'dropped: it cannot be brought in step without the list');
  assert.equal(keyspace.readPoint('a', '/state/d/k7'), 17);
  assert.ok(hasPoints('a'), 'the next point read starts another at once');
  assert.equal(keyspace.readPoint('a', '/state/d/k5'), undefined);
  assert.equal(keyspace.read('a')?.size, 300);

  readOften('a', '/state/d/k7', 17);
  assert.ok(hasPoints('a'));
  keyspace.batchAhead('a');
  for (let i = 0; i < 300; i++) keyspace.set('a', `/state/d/k${i}`, 1000 + i);
  const second = keyspace.seal();
  assert.equal(second.changes.get('a')?.size, 300, 'with a point index, the batch is listed');
  assert.ok(!second.unlisted.has('a'));
  keyspace.publish(second);
  assert.ok(hasPoints('a'), 'kept, and brought in step');
  assert.equal(keyspace.readPoint('a', '/state/d/k7'), 1007);
  assert.equal(keyspace.readPoint('a', '/state/d/k5'), 1005);

  // Point reads counted towards an index (none started yet): the batch is listed, so the index
  // those reads start is not dropped when the batch is durable.
  keyspace.set('b', '/state/x', 1);
  keyspace.publish(keyspace.seal());
  assert.equal(keyspace.readPoint('b', '/state/x'), 1);
  assert.ok(!hasPoints('b'));
  keyspace.batchAhead('b');
  for (let i = 0; i < 300; i++) keyspace.set('b', `/state/d/k${i}`, i);
  const third = keyspace.seal();
  assert.equal(third.changes.get('b')?.size, 300);
  assert.ok(!third.unlisted.has('b'));
  readOften('b', '/state/x', 1);
  assert.ok(hasPoints('b'));
  keyspace.publish(third);
  assert.ok(hasPoints('b'), 'kept');
  assert.equal(keyspace.readPoint('b', '/state/d/k9'), 9);
});
