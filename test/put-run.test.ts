import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { Op } from '../src/format/opcodes.js';
import { RUN_RECORD_MAX, encodeRunInto, planRuns, runEntries, intactRun, runEntryAt, runValueStart } from '../src/format/put-run.js';
import { crc32c } from '../src/format/crc32c.js';
import { MAX_RECORD_VALUE, claimedRecordLength, decodeRecord, encodeRecord } from '../src/format/record.js';
import { MiB, memoryImage } from './helpers.js';
import { recordsOf } from './reliability/image-records.js';

/*
 * PUTRUN records: putMany's runs of small values, each key sharing its prefix with the one before
 * it in the record (format/put-run.ts, docs/storage/statefs-v3.md 3.3).
 */

const params = { numRuns: 200, seed: 0x5e_ed };

/** Binary-string keys (one char per byte, 1-255 bytes) that often share long prefixes. */
const binArb = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 255 }).map((b) => Buffer.from(b).toString('latin1')),
  fc.nat({ max: 99_999 }).map((i) => `/state/app${i % 7}/k${i}`),
);

const batchArb = fc.array(fc.tuple(binArb, fc.uint8Array({ maxLength: 700 })), { minLength: 1, maxLength: 40 });

/**
 * The record a plan's run is written as, decoded back from its bytes, and its entries' slices
 * (lead, length). Encoded at an offset of a larger buffer, as a batch's later runs are.
 */
function runRecord(subject: string, bins: string[], values: Uint8Array[], plan: { first: number; count: number; valueLength: number }): { bytes: Uint8Array; slices: Int32Array } {
  const at = 7;
  const out = new Uint8Array(at + plan.valueLength + 5).fill(0xee);
  const batchSlices = new Int32Array(3 * bins.length).fill(-1);
  encodeRunInto(plan, subject.length, bins, values, out, at, batchSlices);
  assert.deepEqual([...out.subarray(0, at), ...out.subarray(at + plan.valueLength)], new Array<number>(at + 5).fill(0xee), 'nothing written outside the run');
  for (let i = 0; i < bins.length; i++) {
    const inRun = i >= plan.first && i < plan.first + plan.count;
    const untouched = inRun ? [batchSlices[3 * i + 2]] : [batchSlices[3 * i], batchSlices[3 * i + 1], batchSlices[3 * i + 2]];
    assert.ok(untouched.every((x) => x === -1), inRun ? "the record holding an entry is the caller's to write" : 'the slices of entries outside the run untouched');
  }
  const slices = Int32Array.from({ length: 2 * plan.count }, (_, k) => batchSlices[3 * (plan.first + (k >> 1)) + (k & 1)] ?? -1);
  return { bytes: encodeRecord(Op.PUTRUN, Buffer.from(subject, 'latin1'), out.subarray(at, at + plan.valueLength)), slices };
}

test('runs cover a batch in order, stay within RUN_RECORD_MAX, decode to their entries, and their slices tile the record', () => {
  fc.assert(
    fc.property(batchArb, fc.constantFrom('a', 'bench', 'x'.repeat(64)), (batch, subject) => {
      const bins = batch.map(([b]) => b);
      const values = batch.map(([, v]) => v);
      const plans = planRuns(subject.length, bins, values);
      let next = 0;
      for (const plan of plans) {
        assert.equal(plan.first, next, 'plans follow each other in the order given');
        next += plan.count;
        if (plan.valueLength === 0) {
          assert.equal(plan.count, 1, 'a plain PUT holds one entry');
          continue;
        }
        assert.ok(plan.count >= 2, 'a run holds two entries or more');
        const { bytes, slices } = runRecord(subject, bins, values, plan);
        assert.ok(bytes.length <= RUN_RECORD_MAX, `a run of ${bytes.length} bytes`);
        const decoded = decodeRecord(bytes, 0);
        assert.ok(decoded.ok);
        const entries = runEntries(decoded.record);
        assert.ok(entries !== undefined);
        assert.equal(entries.length, plan.count);
        let tiled = 0;
        entries.forEach((e, j) => {
          assert.equal(e.bin, bins[plan.first + j]);
          assert.deepEqual(e.value, values[plan.first + j]);
          assert.equal(e.lead, slices[2 * j], 'the writer and the reader agree on the slice');
          assert.equal(e.length, slices[2 * j + 1]);
          assert.equal(e.lead, tiled, 'each slice starts where the one before ended');
          tiled += e.length;
          assert.deepEqual(runEntryAt(decoded.record, e.lead, e.length)?.value, e.value);
          // The open's reader finds the same value in the record's bytes, and nothing for another slice.
          const start = runValueStart(bytes, 0, e.lead, e.length);
          assert.deepEqual(bytes.subarray(start, start + e.value.length), e.value);
          assert.equal(start + e.value.length, e.lead + e.length - (j === entries.length - 1 ? 4 : 0), 'the value ends where its slice does (but for the CRC)');
          assert.equal(runValueStart(bytes, 0, e.lead, e.length + 1), -1);
          assert.equal(runValueStart(bytes, 0, e.lead + 1, e.length - 1), -1);
        });
        assert.equal(tiled, bytes.length, 'the slices cover the record, CRC included');
        assert.equal(runEntryAt(decoded.record, (entries[1]?.lead ?? 0) + 1, 1), undefined, 'no entry starts inside another');
      }
      assert.equal(next, batch.length);
    }),
    params,
  );
});

test('planRuns of no entries plans nothing; claimedRecordLength reads a header and nothing else', () => {
  assert.deepEqual(planRuns(3, [], []), []);
  const rec = encodeRecord(Op.PUT, Buffer.from('app\0/state/a', 'latin1'), Buffer.from('hi'));
  assert.equal(claimedRecordLength(rec, 0), rec.length);
  assert.equal(claimedRecordLength(rec.subarray(0, 10), 0), undefined, 'shorter than a header');
  const otherMagic = Uint8Array.from(rec);
  otherMagic[0] = 0;
  assert.equal(claimedRecordLength(otherMagic, 0), undefined, 'no magic');
  const huge = Uint8Array.from(rec);
  Buffer.from(huge.buffer).writeUInt32LE(MAX_RECORD_VALUE + 1, 7);
  assert.equal(claimedRecordLength(huge, 0), undefined, 'a value length over the maximum');
});

test('an entry too large for a run with another is a plain PUT; neighbours still share runs', () => {
  const bins = ['/state/a', '/state/b', '/state/big', '/state/c', '/state/d'];
  const values = [new Uint8Array(10), new Uint8Array(10), new Uint8Array(RUN_RECORD_MAX), new Uint8Array(10), new Uint8Array(10)];
  assert.deepEqual(
    planRuns(3, bins, values).map((p) => [p.first, p.count, p.valueLength > 0]),
    [
      [0, 2, true],
      [2, 1, false],
      [3, 2, true],
    ],
  );
});

test('malformed run values decode to undefined, never to entries', () => {
  const subject = new Uint8Array([0x61]);
  const decode = (value: number[]): ReturnType<typeof runEntries> => {
    const r = decodeRecord(encodeRecord(Op.PUTRUN, subject, Uint8Array.from(value)), 0);
    assert.ok(r.ok);
    return runEntries(r.record);
  };
  assert.ok(decode([0, 1, 0x61, 1, 9]) !== undefined, 'the well-formed control');
  assert.ok(intactRun(encodeRecord(Op.PUTRUN, subject, Uint8Array.from([0, 1, 0x61, 1, 9])), 0), 'the well-formed control is an intact run');
  const bad: [string, number[]][] = [
    ['no entry', []],
    ['a lone byte', [0]],
    ['a first entry sharing bytes', [1, 1, 0x61, 0]],
    ['an empty key', [0, 0, 0]],
    ['a suffix past the value', [0, 5, 0x61]],
    ['no value length', [0, 1, 0x61]],
    ['a value past the record', [0, 1, 0x61, 3, 1]],
    ['a value length in 4 bytes', [0, 1, 0x61, 0x80, 0x80, 0x80, 0x01]],
    ['a value length over 65,536', [0, 1, 0x61, 0x81, 0x80, 0x04]],
    ['a second key sharing more than the first has', [0, 1, 0x61, 0, 2, 1, 0x62, 0]],
  ];
  for (const [what, value] of bad) {
    assert.equal(decode(value), undefined, what);
    const bytes = encodeRecord(Op.PUTRUN, subject, Uint8Array.from(value));
    const r = decodeRecord(bytes, 0);
    assert.ok(r.ok && !intactRun(bytes, 0), `${what}: not an intact run`);
    // The open's reader finds no value in such a record: none at the entry that is malformed, or
    // after it (a well-formed first entry before it aside, which the open's form check refuses).
    const badFrom = what === 'a second key sharing more than the first has' ? 16 : 0;
    for (let lead = badFrom; lead < bytes.length; lead++) {
      for (let length = 1; length <= bytes.length - lead; length++) assert.equal(runValueStart(bytes, 0, lead, length), -1, `${what}: slice ${lead}+${length}`);
    }
  }
  assert.equal(runValueStart(encodeRecord(Op.PUTRUN, subject, Uint8Array.from([0, 1, 0x61, 1, 9])), 0, 0, 21), 16, 'the control: one entry, its slice the whole record, its value at 16');
});

const keyOf = (i: number): string => `/state/app${i % 10}/k${i}`;
const valueOf = (i: number): Uint8Array => new Uint8Array(Buffer.from(`value ${i} `.repeat(1 + (i % 9))));

async function loaded(keys: number, size = 8 * MiB): Promise<{ store: Store; device: MemoryDevice }> {
  const device = new MemoryDevice(await memoryImage(size));
  const store = await Store.openDevice(device, { autoGc: false });
  for (let from = 0; from < keys; from += 1000) await store.putMany('app', Array.from({ length: Math.min(1000, keys - from) }, (_, j) => [keyOf(from + j), valueOf(from + j)]));
  return { store, device };
}

function checkAll(store: Store, keys: number, changed: ReadonlyMap<number, Uint8Array | undefined> = new Map()): void {
  for (let i = 0; i < keys; i++) assert.deepEqual(store.getSync('app', keyOf(i)), changed.has(i) ? changed.get(i) : valueOf(i), `key ${i}`);
}

test('putMany writes runs: fewer bytes than one PUT per key, read back from the log and from a checkpoint', async () => {
  const keys = 5000;
  const { store, device } = await loaded(keys);
  const runBytes = (await store.stat()).subjects[0]?.liveBytes ?? 0;
  const single = await Store.openDevice(new MemoryDevice(await memoryImage(8 * MiB)), { autoGc: false });
  for (let i = 0; i < keys; i++) await single.put('app', keyOf(i), valueOf(i));
  const putBytes = (await single.stat()).subjects[0]?.liveBytes ?? 0;
  await single.close();
  assert.ok(runBytes < 0.85 * putBytes, `runs take ${runBytes} bytes, one PUT per key ${putBytes}`);
  checkAll(store, keys);
  // A crash (no close, so no checkpoint): the runs are replayed from the log.
  const fromLog = await Store.openDevice(new MemoryDevice(device.bytes.slice()), { autoGc: false });
  checkAll(fromLog, keys);
  assert.equal((await fromLog.stat()).subjects[0]?.liveBytes, runBytes, 'replay charges each entry its slice, as the writer did');
  await fromLog.close(); // writes a checkpoint naming the slices
  const fromCheckpoint = await Store.openDevice(new MemoryDevice(device.bytes.slice()), { autoGc: false });
  checkAll(fromCheckpoint, keys);
  assert.equal((await fromCheckpoint.stat()).subjects[0]?.liveBytes, runBytes);
  await fromCheckpoint.close();
  await store.close();
});

test('GC moves the live entries of half-superseded runs; snapshots, verify and reopen see the same values', async () => {
  const keys = 6000;
  const { store, device } = await loaded(keys);
  await store.snapshot('app', 'before');
  const changed = new Map<number, Uint8Array | undefined>();
  for (let i = 0; i < keys; i += 2) changed.set(i, new Uint8Array(Buffer.from(`new ${i}`)));
  for (let i = 1; i < keys; i += 7) changed.set(i, undefined);
  await store.putMany('app', [...changed].filter(([, v]) => v !== undefined).map(([i, v]) => [keyOf(i), v ?? new Uint8Array(0)]));
  for (const [i, v] of changed) if (v === undefined) await store.delete('app', keyOf(i));
  await store.deleteSnap('app', 'before');
  await store.snapshot('app', 'after');
  await store.checkpoint(); // the log's chain starts here: GC may empty the segments before it
  const gc = await store.gcNow();
  assert.ok(gc.movedBytes > 0 && gc.segmentsFreed > 0, `GC moved ${gc.movedBytes} bytes and freed ${gc.segmentsFreed} segments`);
  checkAll(store, keys, changed);
  await store.verifySnapshot('app', 'after');
  await store.close();
  const reopened = await Store.openDevice(new MemoryDevice(device.bytes.slice()), { autoGc: false });
  checkAll(reopened, keys, changed);
  await reopened.verifySnapshot('app', 'after');
  await reopened.close();
});

test('a run with a valid CRC but a malformed entry after the values read fails the open with EINTEGRITY', async () => {
  const { store, device } = await loaded(3000);
  await store.close();
  const bytes = device.bytes.slice();
  const start = Buffer.from(bytes.buffer, bytes.byteOffset).indexOf(Buffer.from([0x46, 0x53, 0x58, 0x4e, Op.PUTRUN])); // the first PUTRUN record
  const r = decodeRecord(bytes, start);
  assert.ok(r.ok && r.record.opcode === Op.PUTRUN, 'found the first PUTRUN record');
  const entries = runEntries(r.record) ?? [];
  const last = entries.at(-1);
  assert.ok(last !== undefined && entries.length >= 2);
  // The last entry shares more bytes than the key before it has; the CRC made right again.
  bytes[start + last.lead] = 255;
  const body = r.record.length - 4;
  Buffer.from(bytes.buffer, bytes.byteOffset).writeUInt32LE(crc32c(bytes.subarray(start, start + body)), start + body);
  assert.ok(decodeRecord(bytes, start).ok);
  await assert.rejects(Store.openDevice(new MemoryDevice(bytes)), (e: unknown) => e instanceof Error && 'code' in e && e.code === 'EINTEGRITY' && e.message.includes('malformed PUTRUN'));
});

test('a damaged run holding a checkpointed value fails the open with EINTEGRITY at its offset, found by the value pass', async () => {
  const { store, device } = await loaded(3000);
  await store.checkpoint(); // the values are now read through the checkpoint at open, not replayed
  await store.close();
  const bytes = device.bytes.slice();
  // The first PUTRUN record: magic, opcode 0x29.
  let at = -1;
  for (let i = 0; i + 5 < bytes.length && at < 0; i++) if (bytes[i] === 0x46 && bytes[i + 1] === 0x53 && bytes[i + 2] === 0x58 && bytes[i + 3] === 0x4e && bytes[i + 4] === Op.PUTRUN) at = i;
  assert.ok(at > 0, 'the image holds a PUTRUN record');
  const r = decodeRecord(bytes, at);
  assert.ok(r.ok);
  const flip = at + r.record.length - 6; // a byte of the run's last value
  bytes[flip] = (bytes[flip] ?? 0) ^ 0x10;
  // The log's scan starts at the checkpoint, past this record: only the open's value pass reads it.
  const found = (e: unknown): boolean => e instanceof Error && 'code' in e && e.code === 'EINTEGRITY' && 'offset' in e && e.offset === at && e.message.includes('record holding a live value') && e.message.includes('(crc)');
  await assert.rejects(Store.openDevice(new MemoryDevice(bytes)), found);
});

test('values written while a checkpoint is built are written again after it as runs; a crash copy just after it replays them', async () => {
  const device = new MemoryDevice(await memoryImage(16 * MiB));
  const store = await Store.openDevice(device, { autoGc: false, checkpointStepEntries: 16, checkpointBytes: 64 * MiB });
  await store.putMany('app', Array.from({ length: 2000 }, (_, i) => [keyOf(i), valueOf(i)]));
  const changed = new Map<number, Uint8Array | undefined>([
    [1, new Uint8Array(Buffer.from('changed'))],
    [2, undefined],
  ]);
  const checkpoint = store.checkpoint();
  await new Promise((resolve) => setImmediate(resolve)); // the build has begun, in steps of 16 entries
  await store.putMany('app', Array.from({ length: 300 }, (_, j) => [keyOf(2000 + j), valueOf(2000 + j)]));
  await store.put('app', keyOf(1), changed.get(1) ?? new Uint8Array(0));
  await store.delete('app', keyOf(2));
  await checkpoint;
  const live = (await store.stat()).liveBytes;
  // The checkpoint's batch: its CKPT records, then the changes made during the build.
  const records = recordsOf(device.bytes);
  const lastChunk = records.findLastIndex((r) => r.opcode === Op.CKPT);
  const after = records.slice(lastChunk + 1, records.findIndex((r, i) => i > lastChunk && r.opcode === Op.SYNC));
  assert.deepEqual(new Set(after.map((r) => r.opcode)), new Set([Op.DELETE, Op.PUTRUN]), 'the changed and new values written again as runs, the delete as a DELETE');
  const crashed = await Store.openDevice(new MemoryDevice(device.bytes.slice()), { autoGc: false });
  checkAll(crashed, 2300, changed);
  assert.equal((await crashed.stat()).liveBytes, live, 'replay charges the runs written again as the writer did');
  await crashed.close();
  await store.close();
});

test("the values a checkpoint writes again as runs count their slices' leads in the emptying bound, as open counts them", async () => {
  // The reserve keeps room for what deleting every live key adds to the next checkpoint (the
  // emptying bound, docs/storage/statefs-v3.md 8.2): a snapshot's difference naming a PUTRUN
  // slice takes 4 bytes more than one naming a PUT. Values put while a checkpoint is built were
  // counted as PUTs, then written again as slices: the store's bound fell below open's.
  const emptyingOf = (s: Store): number => emptyingBytes(s);
  const device = new MemoryDevice(await memoryImage(16 * MiB));
  const store = await Store.openDevice(device, { autoGc: false, checkpointStepEntries: 16, checkpointBytes: 64 * MiB });
  await store.putMany('app', Array.from({ length: 2000 }, (_, i) => [keyOf(i), valueOf(i)]));
  const checkpoint = store.checkpoint();
  await new Promise((resolve) => setImmediate(resolve)); // the build has begun, in steps of 16 entries
  for (let i = 2000; i < 2500; i++) await store.put('app', keyOf(i), valueOf(i));
  await checkpoint;
  await store.snapshot('app', 'one');
  const reopened = await Store.openDevice(new MemoryDevice(device.bytes.slice()), { autoGc: false });
  assert.ok(emptyingOf(reopened) <= emptyingOf(store), `open's emptying bound ${emptyingOf(reopened)}, the store's ${emptyingOf(store)}`);
  await reopened.close();
  // Deleting the values written again takes off what they count now: the sum does not drift down.
  for (let i = 2000; i < 2500; i++) await store.delete('app', keyOf(i));
  await store.deleteSnap('app', 'one');
  await store.snapshot('app', 'two');
  const again = await Store.openDevice(new MemoryDevice(device.bytes.slice()), { autoGc: false });
  assert.ok(emptyingOf(again) <= emptyingOf(store), `after the deletes: open's emptying bound ${emptyingOf(again)}, the store's ${emptyingOf(store)}`);
  await again.close();
  await store.close();
});

/**
 * The store's emptying bound (`checkpointer.emptying.bytes`): a white-box read, since nothing
 * public reports it. The shape is checked, so a renamed field fails the test instead of reading
 * `undefined`.
 */
function emptyingBytes(store: Store): number {
  const checkpointer: unknown = Reflect.get(store, 'checkpointer');
  const emptying: unknown = typeof checkpointer === 'object' && checkpointer !== null ? Reflect.get(checkpointer, 'emptying') : undefined;
  const bytes: unknown = typeof emptying === 'object' && emptying !== null ? Reflect.get(emptying, 'bytes') : undefined;
  if (typeof bytes !== 'number') throw new Error('the store has no checkpointer.emptying.bytes');
  return bytes;
}

test('intactRun: a whole PUTRUN record with its CRC and a well-formed value, anywhere in a buffer; nothing else', () => {
  const subject = Buffer.from('bench', 'latin1');
  const bins = ['/state/a/k1', '/state/a/k2', '/state/a/k30'];
  const values = [new Uint8Array(100).fill(1), new Uint8Array(7).fill(2), new Uint8Array(0)];
  const [plan] = planRuns(subject.length, bins, values);
  assert.ok(plan?.count === 3);
  const { bytes } = runRecord('bench', bins, values, plan);
  // Between other bytes, as in a segment.
  const buf = new Uint8Array(bytes.length + 20).fill(0xee);
  buf.set(bytes, 9);
  assert.ok(intactRun(buf, 9));
  assert.ok(!intactRun(buf, 8) && !intactRun(buf, 10), 'no record starts there');
  assert.ok(!intactRun(buf.subarray(0, 9 + bytes.length - 1), 9), 'cut short by a byte');
  for (const at of [4, 11, 12, 20, bytes.length - 5, bytes.length - 1]) {
    const flipped = buf.slice();
    flipped[9 + at] = (flipped[9 + at] ?? 0) ^ 0x10;
    assert.ok(!intactRun(flipped, 9), `a bit flipped at byte ${at}`);
  }
  assert.ok(!intactRun(encodeRecord(Op.PUT, subject, bytes.subarray(16, bytes.length - 4)), 0), 'a PUT is not a run');
});

test('intactRun agrees with decoding the record and its entries, on runs with bytes changed at random', () => {
  const subject = Buffer.from('bench', 'latin1');
  fc.assert(
    fc.property(batchArb, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }), fc.nat({ max: 3 }), fc.boolean(), (batch, changes, cut, fixCrc) => {
      const bins = batch.map(([b]) => b);
      const values = batch.map(([, v]) => v);
      const plan = planRuns(subject.length, bins, values).find((p) => p.valueLength > 0);
      if (plan === undefined) return;
      const { bytes } = runRecord('bench', bins, values, plan);
      const buf = new Uint8Array(bytes.length + 3).fill(0xee);
      buf.set(bytes, 3);
      for (const [at, byte] of changes) buf[3 + (at % (bytes.length - 4))] = byte; // the CRC itself aside
      // Half the time the CRC is made right again, so the changes reach the header and entry checks.
      if (fixCrc) Buffer.from(buf.buffer, buf.byteOffset).writeUInt32LE(crc32c(buf.subarray(3, 3 + bytes.length - 4)), 3 + bytes.length - 4);
      const within = buf.subarray(0, buf.length - cut); // a record cut short by the buffer's end, now and then
      const r = decodeRecord(within, 3);
      const expected = r.ok && r.record.opcode === Op.PUTRUN && runEntries(r.record) !== undefined;
      assert.equal(intactRun(within, 3), expected);
    }),
    { ...params, numRuns: 1000 },
  );
});

