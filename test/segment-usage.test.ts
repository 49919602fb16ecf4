import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Entry } from '../src/engine/entry.js';
import { EntryTable } from '../src/engine/entry-table.js';
import { SegmentUsage } from '../src/engine/segment-usage.js';

/*
 * SegmentUsage keeps the garbage automatic GC asks for after every durable round as a running
 * sum (`candidateGarbage`), updated as segments change, instead of walking every segment each
 * time. Whatever the order of changes, the sum is the garbage of the `gcCandidates` segments,
 * found by walking them all.
 */

const SEGMENTS = 12;
const SEGMENT_SIZE = 4096;

type Step =
  | { kind: 'add'; entry: number }
  | { kind: 'remove'; entry: number }
  | { kind: 'setAside'; entry: number }
  | { kind: 'move'; entry: number; segment: number; length: number }
  | { kind: 'chain'; segments: number[] }
  | { kind: 'trim'; at: number }
  | { kind: 'take' };

const entryArb = fc.nat({ max: 39 });
/** 40 values: the segment and length of each one's record, and a second record's segment for some. */
const recordsArb = fc.array(fc.tuple(fc.nat({ max: SEGMENTS - 1 }), fc.integer({ min: 1, max: 3000 }), fc.option(fc.nat({ max: SEGMENTS - 1 }), { nil: undefined, freq: 4 })), {
  minLength: 40,
  maxLength: 40,
});
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: entryArb.map((entry) => ({ kind: 'add' as const, entry })) },
  { weight: 4, arbitrary: entryArb.map((entry) => ({ kind: 'remove' as const, entry })) },
  { weight: 1, arbitrary: entryArb.map((entry) => ({ kind: 'setAside' as const, entry })) },
  { weight: 2, arbitrary: fc.record({ entry: entryArb, segment: fc.nat({ max: SEGMENTS - 1 }), length: fc.integer({ min: 1, max: 3000 }) }).map((m) => ({ kind: 'move' as const, ...m })) },
  { weight: 1, arbitrary: fc.uniqueArray(fc.nat({ max: SEGMENTS - 1 }), { maxLength: 4 }).map((segments) => ({ kind: 'chain' as const, segments })) },
  { weight: 1, arbitrary: fc.nat({ max: 3 }).map((at) => ({ kind: 'trim' as const, at })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'take' as const }) },
);

/** The garbage of the segments GC may empty, found by walking them (what `candidateGarbage` must equal). */
function walkedGarbage(usage: SegmentUsage): number {
  return usage.gcCandidates().reduce((sum, s) => sum + SEGMENT_SIZE - (usage.liveBytes[s] ?? 0), 0);
}

test('candidateGarbage, kept as segments change, is the garbage of the gcCandidates segments after every step', () => {
  fc.assert(
    fc.property(recordsArb, fc.array(stepArb, { maxLength: 120 }), fc.boolean(), (records, steps, askEarly) => {
      const usage = new SegmentUsage(SEGMENTS, SEGMENT_SIZE, new EntryTable());
      // Some values in two records (a transaction's chunks), in two segments.
      const entries = records.map(([segment, length, second]) =>
        second === undefined ? Entry.inRecord(new Uint8Array(1), 0, 1, segment, 0, length) : Entry.of(new Uint8Array(1), [{ segment, offset: 0, length }, { segment: second, offset: 0, length: 100 }]),
      );
      const held = new Set<number>();
      // As at open: some of the index's entries, then the log chain.
      entries.forEach((e, i) => {
        if (i % 2 === 0) {
          usage.addEntry(e);
          held.add(i);
        }
      });
      // Asked before the chain is set, the sum is walked then and kept from there; else from resetChain.
      if (askEarly) assert.equal(usage.candidateGarbage(), walkedGarbage(usage), 'before the chain is set');
      usage.resetChain([0]);
      assert.equal(usage.candidateGarbage(), walkedGarbage(usage), 'after the chain is set');
      for (const step of steps) {
        const e = 'entry' in step ? entries[step.entry] : undefined;
        switch (step.kind) {
          case 'add':
            if (e === undefined || held.has(step.entry)) continue;
            usage.addEntry(e);
            held.add(step.entry);
            break;
          case 'remove':
            if (e === undefined || !held.delete(step.entry)) continue;
            usage.removeEntry(e);
            break;
          case 'setAside':
            if (e === undefined || !held.has(step.entry)) continue;
            usage.setAsideFor(e);
            break;
          case 'move':
            if (e === undefined || !held.has(step.entry)) continue;
            usage.moveEntry(e, { segment: step.segment, offset: 0, length: step.length });
            break;
          case 'chain':
            usage.resetChain(step.segments);
            break;
          case 'trim':
            usage.trimChainBefore(usage.chain[step.at] ?? -1);
            break;
          case 'take':
            if (usage.freeCount() === 0) continue;
            usage.take();
            break;
        }
        assert.equal(usage.candidateGarbage(), walkedGarbage(usage), `after ${JSON.stringify(step)}`);
      }
    }),
    { numRuns: 300, seed: 0x6a_7b },
  );
});

test('candidateGarbage counts a segment in use outside the chain with at least 1/16 of it dead, and nothing else', () => {
  // As at open: the index's entries first, then the log chain.
  const usage = new SegmentUsage(5, SEGMENT_SIZE, new EntryTable());
  usage.addEntry(Entry.inRecord(new Uint8Array(1), 0, 1, 1, 0, 1000)); // segment 1: 3096 dead
  usage.addEntry(Entry.inRecord(new Uint8Array(1), 0, 1, 2, 0, SEGMENT_SIZE - 100)); // segment 2: 100 dead, under 1/16
  usage.addEntry(Entry.inRecord(new Uint8Array(1), 0, 1, 0, 0, 500)); // the chain's segment: never a candidate
  const damaged = Entry.inRecord(new Uint8Array(1), 0, 1, 3, 0, 10);
  usage.addEntry(damaged);
  usage.resetChain([0]);
  assert.equal(usage.candidateGarbage(), SEGMENT_SIZE - 1000 + SEGMENT_SIZE - 10, 'segments 1 and 3; not 2, the chain, or free segment 4');
  usage.setAsideFor(damaged);
  assert.equal(usage.candidateGarbage(), SEGMENT_SIZE - 1000, 'a set-aside segment is left out');
  usage.removeEntry(damaged);
  assert.equal(usage.candidateGarbage(), SEGMENT_SIZE - 1000, 'released: the segment is free');
  assert.deepEqual(usage.gcCandidates(), [1]);
  assert.equal(usage.take(), 3, 'the first free segment');
  assert.equal(usage.candidateGarbage(), SEGMENT_SIZE - 1000, 'a segment taken for the log is in the chain');
});

test('candidateGarbage: a segment with exactly 1/16 of it dead counts, one with a byte less does not', () => {
  const usage = new SegmentUsage(3, SEGMENT_SIZE, new EntryTable());
  usage.addEntry(Entry.inRecord(new Uint8Array(1), 0, 1, 1, 0, SEGMENT_SIZE - SEGMENT_SIZE / 16));
  usage.addEntry(Entry.inRecord(new Uint8Array(1), 0, 1, 2, 0, SEGMENT_SIZE - SEGMENT_SIZE / 16 + 1));
  usage.resetChain([0]);
  assert.equal(usage.candidateGarbage(), SEGMENT_SIZE / 16);
  assert.deepEqual(usage.gcCandidates(), [1]);
});
