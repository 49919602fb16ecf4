import assert from 'node:assert/strict';
import { copyFile, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BlockDevice } from '../src/device/device.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import type { OpenOptions } from '../src/engine/store-types.js';
import { StatefsError } from '../src/errors.js';
import { MAX_RECORD_VALUE, decodeRecord, putValueStart } from '../src/format/record.js';
import { MiB, text, withTempDir } from './helpers.js';
import { guardResources } from './hygiene.js';
import { crc32cOf, record } from './record-encoder.js';

guardResources();

/*
 * Open reads the values of checkpointed entries segment by segment, adjacent segments in runs of
 * up to 4 MiB, through two reused buffers on a file image (a fresh buffer per run otherwise); a
 * writable store told to read them on demand reads each from the device when it is asked for,
 * its record's CRC checked then. These stores span more than one run, with values of many sizes
 * and a transaction value in several PAYLOAD records, so every path of both kinds of reading is
 * taken on both kinds of device.
 */

const SUBJECTS = ['app', 'billing', 'zeta'];
const KEYS = 3000;

/** Key i's value: its own bytes (so a value read from the wrong place cannot pass), 1 to ~4 KiB long. */
function valueOf(i: number): Buffer {
  const v = Buffer.alloc(1 + ((i * 977) % 4000));
  for (let j = 0; j < v.length; j++) v[j] = (i * 31 + j * 7) & 0xff;
  v.write(`<${i}>`, 0, 'latin1');
  return v;
}

/** Key i's 100-byte value for the stores of single PUT records: its own bytes, so a value read from the wrong place cannot pass. */
const short = (i: number): Buffer => Buffer.from(`<${i}>`.padEnd(100, '.'), 'latin1');
const subjectOf = (i: number): string => SUBJECTS[i % SUBJECTS.length] ?? 'app';
const keyOf = (i: number): string => `/state/k${i}`;
const bigValue = Buffer.alloc(40 * 1024, 'transaction value ');

/** Writes the keys (and one 40 KiB transaction value), then closes: close writes a checkpoint, so the next open reads every value through it. */
async function fill(s: Store): Promise<void> {
  for (let from = 0; from < KEYS; from += 500) {
    for (const subject of SUBJECTS) {
      const batch: [string, Uint8Array][] = [];
      for (let i = from; i < from + 500; i++) if (subjectOf(i) === subject) batch.push([keyOf(i), valueOf(i)]);
      await s.putMany(subject, batch);
    }
  }
  const t = s.begin('app');
  await t.put('app', '/state/big', bigValue);
  await t.commit();
  assert.ok((await s.stat()).usedBytes > 5 * MiB, 'the values span more than one read run (4 MiB)');
  await s.close();
}

function checkAll(s: Store, except = -1): void {
  for (let i = 0; i < KEYS; i++) if (i !== except) assert.deepEqual(s.getSync(subjectOf(i), keyOf(i)), new Uint8Array(valueOf(i)), `key ${i}`);
  const into = new Uint8Array(bigValue.length);
  assert.equal(s.getInto('app', '/state/big', into), bigValue.length);
  assert.deepEqual(into, new Uint8Array(bigValue));
}

/** Each way of opening: read-only, writable (values read at open), writable with values read on demand. */
const WAYS: OpenOptions[] = [{ readOnly: true }, {}, { valueReads: 'on-demand' }];

/** Open each way and check every value each time. */
async function checkEveryWay(open: (options: OpenOptions) => Promise<Store>): Promise<void> {
  for (const way of WAYS) {
    const s = await open(way);
    try {
      assert.ok(s.openReport.recordsReplayed < 10, 'the values come from the checkpoint, not from replayed records');
      checkAll(s);
    } finally {
      await s.close();
    }
  }
}

test('every checkpointed value of a file image reads back: read at open across several read runs, or on demand', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'img');
    await fill(await Store.create(path, { size: 16 * MiB, autoGc: false }));
    await checkEveryWay((way) => Store.open(path, { autoGc: false, ...way }));
  });
});

test('every checkpointed value of a memory image reads back every way (a device without readInto)', async () => {
  const device = new MemoryDevice(16 * MiB);
  await Store.format(device, { zeroed: true });
  await fill(await Store.openDevice(device, { autoGc: false }));
  await checkEveryWay((way) => Store.openDevice(new MemoryDevice(device.bytes), { autoGc: false, ...way }));
});

/**
 * Damage in the record at image byte `record` that holds `key`'s value: an open that reads every
 * value (writable or read-only) fails with `EINTEGRITY` at the record; a store that reads values
 * on demand opens and serves every other value, and reading that one (`getSync`, `get`) is that
 * `EINTEGRITY`, naming the key.
 */
async function assertDamageFound(path: string, subject: string, key: string, record: number | undefined, what: string): Promise<void> {
  const damaged = (message: RegExp) => (err: unknown): boolean => {
    assert.ok(err instanceof StatefsError, String(err));
    assert.equal(err.code, 'EINTEGRITY', what);
    assert.match(err.message, message, what);
    if (record !== undefined) assert.equal(err.offset, record, what);
    return true;
  };
  const naming = (op: string) => (err: unknown): boolean => damaged(/record holding a value is damaged/)(err) && err instanceof StatefsError && err.key === key && err.subject === subject && err.op === op;
  await assert.rejects(Store.open(path), damaged(/record holding a live value is damaged/));
  const s = await Store.open(path, { autoGc: false, valueReads: 'on-demand' });
  try {
    assert.throws(() => s.getSync(subject, key), naming('get'));
    await assert.rejects(s.get(subject, key), damaged(/record holding a value is damaged/));
    // A transaction's read names the key too.
    const txn = s.begin(subject);
    await assert.rejects(txn.get(subject, key), naming('txn.get'));
    await txn.abort();
  } finally {
    await s.close();
  }
  // So does a diff that compares the value (on a copy: it writes a snapshot and the key).
  await copyFile(path, `${path}.diff`);
  const d = await Store.open(`${path}.diff`, { autoGc: false, valueReads: 'on-demand' });
  try {
    await d.snapshot(subject, 'before');
    await d.put(subject, key, 'other');
    await assert.rejects(d.diffSnaps(subject, 'before', '@live'), naming('diffSnaps'));
  } finally {
    await d.close();
    await rm(`${path}.diff`);
  }
  await assert.rejects(Store.open(path, { readOnly: true }), damaged(/record holding a live value is damaged/));
}

test('a damaged byte in a checkpointed value is EINTEGRITY at its record: at open in any read run, or when it is read on demand', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'img');
    await fill(await Store.create(path, { size: 16 * MiB, autoGc: false }));
    const clean = await readFile(path);
    for (const i of [5, KEYS - 7]) {
      const image = Buffer.from(clean);
      const value = valueOf(i);
      const at = image.indexOf(value);
      assert.ok(at > 0, `value ${i} is in the image`);
      assert.equal(image.indexOf(value, at + 1), -1, `value ${i} is in the image once`);
      const last = at + value.length - 1;
      image[last] = (image[last] ?? 0) ^ 0x40;
      await writeFile(path, image);
      const record = at - 11 - (subjectOf(i).length + 1 + keyOf(i).length); // header, then subject NUL key
      await assertDamageFound(path, subjectOf(i), keyOf(i), record, `value ${i}`);
      const s = await Store.open(path, { autoGc: false, valueReads: 'on-demand' });
      try {
        checkAll(s, i);
      } finally {
        await s.close();
      }
    }
  });
});

test('putValueStart finds the value of an intact PUT of the given length, and nothing else', () => {
  const PUT = 0x01;
  const DELETE = 0x02;
  const put = record(PUT, Buffer.from('app\0/state/a', 'latin1'), Buffer.from('a value'));
  const at = 5;
  const image = (r: Buffer): Buffer => Buffer.concat([Buffer.alloc(at, 0xee), r, Buffer.alloc(3, 0xee)]);
  const valueStart = at + 11 + 'app\0/state/a'.length;
  assert.equal(putValueStart(image(put), at, put.length), valueStart);
  assert.equal(Buffer.from(image(put).subarray(valueStart, at + put.length - 4)).toString(), 'a value');

  const flipped = (i: number): Buffer => {
    const r = Buffer.from(put);
    r[i] = (r[i] ?? 0) ^ 1;
    return r;
  };
  const hugeValue = Buffer.from(put);
  hugeValue.writeUInt32LE(MAX_RECORD_VALUE + 1, 7);
  const cases: [string, Buffer, number, number][] = [
    ['a length past the buffer', image(put), at, put.length + 4],
    ['a length shorter than any record', image(put), at, 14],
    ['another length than the record', image(put), at, put.length - 1],
    ['a damaged magic', image(flipped(0)), at, put.length],
    ['another opcode', image(record(DELETE, Buffer.from('app\0/state/a', 'latin1'), Buffer.from('a value'))), at, put.length],
    ['a value length over the maximum', image(hugeValue), at, put.length],
    ['a damaged value byte (CRC)', image(flipped(put.length - 6)), at, put.length],
    ['a damaged CRC', image(flipped(put.length - 1)), at, put.length],
  ];
  for (const [what, buf, from, length] of cases) {
    assert.equal(putValueStart(buf, from, length), -1, what);
    const r = decodeRecord(buf, from, Math.min(buf.length, from + length));
    assert.ok(!r.ok || r.record.opcode !== PUT || r.record.length !== length, `${what}: decodeRecord agrees it is not that PUT`);
  }
});

test('damage to any part of a record among back-to-back ones is EINTEGRITY at that record, read at open or on demand', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'img');
    const count = 3000;
    const s = await Store.create(path, { size: 8 * MiB, autoGc: false });
    // Puts in flight together: one PUT record each, back to back (putMany would write PUTRUN
    // records, several values in one: test/put-run.test.ts damages those).
    await Promise.all(Array.from({ length: count }, (_, i) => s.put('app', keyOf(i), short(i))));
    await s.checkpoint(); // the next open reads the values through the checkpoint, not by replaying the batch
    await s.close();
    const clean = await readFile(path);
    const MAGIC = Buffer.from([0x46, 0x53, 0x58, 0x4e]);
    // [key, which byte of its record: from its start (>= 0) or its end (< 0)]
    const cases: [number, number, string][] = [
      [0, 12, 'a key byte of the first key'],
      [1500, 11 + 'app\0/state/k1500'.length + 50, 'a value byte'],
      [count - 1, -1, 'the last CRC byte of the last key'],
      [777, 7, 'the value length'],
      [2024, 4, 'the opcode'],
    ];
    for (const [i, where, what] of cases) {
      const value = short(i);
      const at = clean.indexOf(value);
      assert.ok(at > 0 && clean.indexOf(value, at + 1) === -1, `value ${i} is in the image once`);
      const start = at - 11 - ('app\0'.length + keyOf(i).length);
      const end = at + value.length + 4;
      assert.ok(clean.subarray(start, start + 4).equals(MAGIC), `${what}: the record starts where computed`);
      const previous = clean.lastIndexOf(MAGIC, start - 1);
      const before = decodeRecord(clean, previous);
      const besideAnother = decodeRecord(clean, end).ok || (before.ok && previous + before.record.length === start);
      assert.ok(besideAnother, `${what}: the record has another right beside it`);
      const image = Buffer.from(clean);
      const byte = where >= 0 ? start + where : end + where;
      image[byte] = (image[byte] ?? 0) ^ 0x10;
      await writeFile(path, image);
      await assertDamageFound(path, 'app', keyOf(i), start, what);
    }
    await writeFile(path, clean);
    const reopened = await Store.open(path);
    try {
      for (let i = 0; i < count; i += 97) assert.deepEqual(reopened.getSync('app', keyOf(i)), new Uint8Array(short(i)));
    } finally {
      await reopened.close();
    }
  });
});

/**
 * Bit flips in two records, two in each (image byte, bit), whose effects on a CRC-32C over a span
 * that holds them all cancel out: for each flip, its effect on the CRC of the bytes from it to
 * `end` (CRC-32C is linear, so the effects of several flips add up), and a meet in the middle
 * over pairs of flips within the first two records and within the last two.
 */
function cancellingFlips(image: Buffer, records: readonly [number, number][], end: number): [number, number][] {
  const effect = (at: number, bit: number): number => {
    const span = new Uint8Array(end - at);
    const plain = crc32cOf(span);
    span[0] = 1 << bit;
    return (crc32cOf(span) ^ plain) >>> 0;
  };
  const flips = records.map(([from, to]) => {
    const out: { at: number; bit: number; effect: number }[] = [];
    for (let at = from; at < to; at++) for (let bit = 0; bit < 8; bit++) out.push({ at, bit, effect: effect(at, bit) });
    return out;
  });
  const [a = [], b = [], c = [], d = []] = flips;
  const pairs = new Map<number, [number, number][]>();
  for (const x of a) for (const y of b) pairs.set((x.effect ^ y.effect) >>> 0, [[x.at, x.bit], [y.at, y.bit]]);
  for (const x of c) {
    for (const y of d) {
      const other = pairs.get((x.effect ^ y.effect) >>> 0);
      if (other !== undefined && image.length > 0) return [...other, [x.at, x.bit], [y.at, y.bit]];
    }
  }
  return [];
}

test('flips spread over several records whose effects on one CRC over them all cancel are still EINTEGRITY (each record is checked on its own)', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'img');
    const count = 40;
    const valueOf40 = (i: number): Buffer => Buffer.from(`<${i}>`.padEnd(100, String.fromCharCode(0x61 + i)), 'latin1');
    const s = await Store.create(path, { size: 8 * MiB, autoGc: false });
    await Promise.all(Array.from({ length: count }, (_, i) => s.put('app', keyOf(i), valueOf40(i)))); // one PUT record each
    await s.checkpoint(); // the next open reads the values through the checkpoint, not by replaying the batch
    await s.close();
    const clean = await readFile(path);
    const valueAt = (i: number): number => clean.indexOf(valueOf40(i));
    // 64 value bytes of each of keys 5, 9, 20 and 30 (512 candidate flips each: ~2^18 pairs a side).
    const records: [number, number][] = [5, 9, 20, 30].map((i) => [valueAt(i) + 8, valueAt(i) + 72]);
    const last = Math.max(...[5, 9, 20, 30].map((i) => valueAt(i) + 104));
    const flips = cancellingFlips(clean, records, last);
    assert.equal(flips.length, 4, 'a cancelling set of four flips exists');
    const image = Buffer.from(clean);
    for (const [at, bit] of flips) image[at] = (image[at] ?? 0) ^ (1 << bit);
    const from = Math.min(...records.map(([f]) => f));
    assert.equal(crc32cOf(image.subarray(from, last)), crc32cOf(clean.subarray(from, last)), 'one CRC over the damaged span cannot tell');
    await writeFile(path, image);
    for (const i of [5, 9, 20, 30]) await assertDamageFound(path, 'app', keyOf(i), undefined, `key ${i}`);
  });
});

/** A 3,000-key image with key 10's value record damaged; returns the damaged byte's offset in the image. */
async function imageWithDamagedValue(path: string, count: number): Promise<number> {
  const first = await Store.create(path, { size: 8 * MiB, autoGc: false });
  await Promise.all(Array.from({ length: count }, (_, i) => first.put('app', keyOf(i), short(i)))); // one PUT record each
  await first.checkpoint();
  await first.close();
  const image = await readFile(path);
  const at = image.indexOf(short(10));
  image[at + 50] = (image[at + 50] ?? 0) ^ 0x04;
  await writeFile(path, image);
  return at + 50;
}

const integrity = (err: unknown): boolean => err instanceof StatefsError && err.code === 'EINTEGRITY';

test('values read on demand: GC over a damaged value fails with EINTEGRITY once, moving nothing; then sets its segment aside and empties the others; the segment comes back once nothing holds the value', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'img');
    const count = 3000;
    const damagedAt = await imageWithDamagedValue(path, count);
    const kept = Array.from({ length: count }, (_, i) => i).filter((i) => i % 10 === 0);
    const check = (s: Store, ten: Uint8Array | undefined): void => {
      for (const i of kept) if (i !== 10) assert.deepEqual(s.getSync('app', keyOf(i)), new Uint8Array(short(i)), `key ${i}`);
      if (ten !== undefined) assert.deepEqual(s.getSync('app', keyOf(10)), ten);
    };
    const onDemand = { autoGc: false, valueReads: 'on-demand' } as const;
    let s = await Store.open(path, onDemand);
    try {
      for (let i = 0; i < count; i++) if (i % 10 !== 0) await s.delete('app', keyOf(i)); // 90% of each segment is garbage now
      await s.checkpoint();
      const { garbageBytes, segmentSize } = await s.stat();
      const damagedSegment = Math.floor((damagedAt - 4096) / segmentSize); // segment i starts at 4096 + i·S
      await assert.rejects(s.gcNow(), integrity);
      assert.equal((await s.stat()).garbageBytes, garbageBytes, 'nothing was moved or freed');
      // The damage was reported; the segment holding it is left alone from now on, and the
      // others are emptied (a review: automatic GC chose it at every cycle and reclaimed nothing).
      const { segments, pinnedBySnapshots, ...plan } = await s.gcPlan();
      assert.equal(pinnedBySnapshots.length, 0);
      assert.deepEqual(await s.gcNow(), plan, 'the plan predicts the cycle');
      assert.ok(plan.segmentsFreed > 0 && plan.movedBytes > 0 && segments.length === plan.segmentsFreed, `GC freed ${plan.segmentsFreed} segments`);
      assert.ok(!segments.includes(damagedSegment), `segment ${damagedSegment} was set aside`);
      const left = (await s.stat()).garbageBytes;
      assert.ok(left < garbageBytes && left > segmentSize / 2, `garbage ${garbageBytes} -> ${left}: the damaged value's segment is still there`);
      assert.equal((await s.gcNow()).segmentsFreed, 0, 'the set-aside segment is not chosen again');
      assert.throws(() => s.getSync('app', keyOf(10)), integrity);
      check(s, undefined);
      await s.close();
      // Nothing of it is written down: after a reopen the damage is reported again, by gcPlan too.
      s = await Store.open(path, onDemand);
      await assert.rejects(s.gcPlan(), integrity);
      assert.equal((await s.gcNow()).segmentsFreed, 0);
      // A snapshot holding the damaged value keeps its segment aside after the key is written over...
      await s.snapshot('app', 'held');
      await s.put('app', keyOf(10), 'fresh');
      await s.checkpoint();
      assert.equal((await s.gcNow()).segmentsFreed, 0, 'still held by the snapshot');
      // ...and deleting the snapshot, the last holder, gives the segment back.
      await s.deleteSnap('app', 'held');
      await s.checkpoint();
      assert.ok((await s.gcPlan()).segments.includes(damagedSegment), `segment ${damagedSegment} is chosen again`);
      const after = await s.gcNow();
      assert.ok(after.segmentsFreed > 0, `GC freed ${after.segmentsFreed} segments`);
      assert.ok((await s.stat()).garbageBytes < left);
      check(s, new Uint8Array(Buffer.from('fresh')));
    } finally {
      await s.close();
    }
    const reopened = await Store.open(path, { autoGc: false });
    try {
      check(reopened, new Uint8Array(Buffer.from('fresh')));
    } finally {
      await reopened.close();
    }
  });
});

test('values read on demand: automatic GC sets a segment with a damaged value aside and keeps reclaiming the others (it failed on that value at every cycle, until writes found no room)', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'img');
    const count = 3000;
    await imageWithDamagedValue(path, count);
    const s = await Store.open(path, { valueReads: 'on-demand' });
    try {
      let cycles = 0;
      s.on('gc', () => {
        cycles++;
      });
      // Key 10 is all that is left in its segment: the emptiest, chosen first at every cycle.
      const kept = (i: number): boolean => i === 10 || (i >= 2500 && i % 10 === 0);
      for (let i = 0; i < count; i++) if (!kept(i)) await s.delete('app', keyOf(i));
      // Three times the image in overwrites of 40 keys, with a key kept from each round, so the
      // segments they fill keep a little live data: only GC makes room.
      const value = new Uint8Array(1024).fill(7);
      for (let round = 0; round < 24 * 40; round++) {
        await Promise.all([
          s.put('churn', `/state/keep${round}`, 'k'),
          ...Array.from({ length: 24 }, (_, j) => s.put('churn', `/state/c${(round * 24 + j) % 40}`, value)),
        ]);
      }
      assert.ok(cycles > 0, 'automatic GC reclaimed');
      assert.throws(() => s.getSync('app', keyOf(10)), integrity);
      for (let i = 0; i < count; i++) if (kept(i) && i !== 10) assert.deepEqual(s.getSync('app', keyOf(i)), new Uint8Array(short(i)), `key ${i}`);
      for (let round = 0; round < 24 * 40; round++) assert.equal(text(s.getSync('churn', `/state/keep${round}`)), 'k');
    } finally {
      await s.close();
    }
  });
});

test('valueReads other than at-open or on-demand is EINVAL, and so is on-demand on a device that cannot read on the calling thread', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'img');
    await (await Store.create(path, { size: 4 * MiB })).close();
    const options: OpenOptions = {};
    Reflect.set(options, 'valueReads', 'lazily'); // as a JavaScript caller would pass it
    await assert.rejects(Store.open(path, options), { code: 'EINVAL', message: /valueReads lazily: use at-open or on-demand/ });
    const store = await Store.open(path, { valueReads: 'on-demand' }); // the image was left unlocked
    await store.close();
  });
  const device = new MemoryDevice(4 * MiB);
  await Store.format(device, { zeroed: true });
  const noSyncReads: BlockDevice = { size: device.size, read: (o, n) => device.read(o, n), write: (o, d) => device.write(o, d), flush: () => device.flush(), close: () => device.close() };
  await assert.rejects(Store.openDevice(noSyncReads, { valueReads: 'on-demand' }), { code: 'EINVAL', message: /needs a device that reads on the calling thread/ });
  const store = await Store.openDevice(noSyncReads); // values read at open need no readSync
  await store.close();
});

test('values read on demand: a read failing at any point of a GC cycle changes nothing; every value reads back in the session and after reopens', async () => {
  const SEG = 256 * 1024;
  const key = (i: number): string => `/state/k${String(i).padStart(4, '0')}`;
  const value = (i: number): string => `${String(i)}:`.padEnd(1000, 'v');
  const base = new MemoryDevice(16 * MiB);
  await Store.format(base, { zeroed: true, segmentSize: SEG });
  const first = await Store.openDevice(base, { autoGc: false });
  await first.putMany('app', Array.from({ length: 600 }, (_, i) => [key(i), value(i)] as const));
  await first.close();
  const kept = Array.from({ length: 600 }, (_, i) => i).filter((i) => i % 10 === 0);
  /** A device whose `readSync` call number `failAt` (counted from `arm`) throws EIO once. */
  class FailingRead extends MemoryDevice {
    calls = 0;
    failAt = 0;
    override readSync(offset: number, into: Uint8Array): void {
      if (++this.calls === this.failAt) throw StatefsError.EIO('injected read failure', { op: 'read', offset });
      super.readSync(offset, into);
    }
  }
  const run = async (failAt: number): Promise<{ reads: number; failed: boolean }> => {
    const device = new FailingRead(base.bytes.slice());
    const s = await Store.openDevice(device, { autoGc: false, valueReads: 'on-demand' });
    let failed = false;
    try {
      for (let i = 0; i < 600; i++) if (i % 10 !== 0) await s.delete('app', key(i));
      await s.checkpoint();
      device.calls = 0;
      device.failAt = failAt;
      failed = await s.gcNow().then(
        () => false,
        (err: unknown) => err instanceof StatefsError && err.code === 'EIO',
      );
      const reads = device.calls;
      device.failAt = 0;
      // The kept keys are overwritten but one, and the log fills freed segments: a value whose
      // accounting a failed move had broken would be in a segment reused by now.
      for (const i of kept) if (i !== 300) await s.put('app', key(i), value(i));
      for (let r = 0; r < 40; r++) await s.put('app', '/state/filler', String(r).padEnd(60_000, 'f'));
      await s.checkpoint();
      for (const i of kept) assert.equal(text(s.getSync('app', key(i))), value(i), `fail at read ${failAt}: key ${i}`);
      await s.close();
      for (const valueReads of ['at-open', 'on-demand'] as const) {
        const again = await Store.openDevice(new MemoryDevice(device.bytes.slice()), { autoGc: false, valueReads });
        try {
          for (const i of kept) assert.equal(text(again.getSync('app', key(i))), value(i), `fail at read ${failAt}, reopened ${valueReads}: key ${i}`);
        } finally {
          await again.close();
        }
      }
      return { reads, failed };
    } finally {
      await s.close();
    }
  };
  const { reads } = await run(0); // no failure: how many reads a cycle makes
  assert.ok(reads >= kept.length, `a cycle read ${reads} values`);
  for (let failAt = 1; failAt <= reads; failAt++) {
    const r = await run(failAt);
    assert.ok(r.failed, `the cycle fails with the read ${failAt}`);
  }
});
