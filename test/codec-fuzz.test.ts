import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeCheckpoint, decodeCheckpointChunk, encodeCheckpoint, encodeCheckpointChunk, type CheckpointEntries } from '../src/format/checkpoint.js';
import { crc32c } from '../src/format/crc32c.js';
import { RECORD_OVERHEAD, decodeRecord, encodeRecord } from '../src/format/record.js';
import { decodeSegmentHeader, decodeSync, encodeSegmentHeader, encodeSync } from '../src/format/segment.js';
import { decodeSuperblock, encodeSuperblock, type Superblock } from '../src/format/superblock.js';
import { StatefsError } from '../src/errors.js';
import { guardResources } from './hygiene.js';

guardResources();

const runs = Number(process.env.STATEFS_FUZZ_RUNS ?? 2000);
const seed = Number(process.env.STATEFS_SEED ?? 42);
console.log(`codec fuzz: seed ${seed}, ${runs} runs per property`);
const params = { numRuns: runs, seed };

test('CRC-32C is the Castagnoli checksum', () => {
  assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
});

test('record framing: the spec example bytes', () => {
  const rec = encodeRecord(0x01, Buffer.from('k'), Buffer.from('v'));
  assert.deepEqual([...rec.subarray(0, 11)], [0x46, 0x53, 0x58, 0x4e, 0x01, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00]);
  assert.equal(rec.length, RECORD_OVERHEAD + 2);
  assert.equal(Buffer.from(rec).readUInt32LE(13), crc32c(rec.subarray(0, 13)));
});

test('records round-trip and every single-byte change is detected', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 2000 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (op, key, value, pos, delta) => {
      const rec = encodeRecord(op, key, value);
      const r = decodeRecord(rec, 0);
      assert.ok(r.ok);
      assert.equal(r.record.opcode, op);
      assert.deepEqual(r.record.key, key);
      assert.deepEqual(r.record.value, value);
      const bad = rec.slice();
      const at = pos % bad.length;
      bad[at] = ((bad[at] ?? 0) + delta) & 0xff;
      assert.equal(decodeRecord(bad, 0).ok, false);
    }),
    params,
  );
});

test('decodeRecord never throws or reads past the end on arbitrary bytes', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat({ max: 220 }), (bytes, at) => {
      const r = decodeRecord(bytes, at);
      if (r.ok) assert.ok(at + r.record.length <= bytes.length);
    }),
    params,
  );
  // Huge lengths in an otherwise valid header are a fault, not an allocation.
  const rec = encodeRecord(1, Buffer.from('k'), Buffer.from('v'));
  Buffer.from(rec.buffer).writeUInt32LE(0xffffffff, 7);
  assert.deepEqual(decodeRecord(rec, 0), { ok: false, fault: 'length' });
});

const superblockArb = fc.record({
  generation: fc.integer({ min: 0, max: 2 ** 52 }),
  segmentSize: fc.constant(256 * 1024),
  segmentCount: fc.integer({ min: 2, max: 14 }),
  ckptSegment: fc.integer({ min: 0, max: 1 }),
  ckptOffset: fc.integer({ min: 0, max: 1000 }),
  ckptSegSeq: fc.integer({ min: 1, max: 2 ** 40 }),
  ckptId: fc.integer({ min: 1, max: 2 ** 40 }),
}, { noNullPrototype: true });

test('superblocks round-trip; any damage or wrong geometry is refused', () => {
  const capacity = 4 * 1024 * 1024;
  fc.assert(
    fc.property(superblockArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (fields, pos, delta) => {
      const sb: Superblock = { ...fields, capacity };
      const bytes = encodeSuperblock(sb);
      assert.deepEqual(decodeSuperblock(bytes, capacity), { ok: true, sb });
      assert.equal(decodeSuperblock(bytes, capacity + 4096).ok, false);
      const bad = bytes.slice();
      const at = pos % 128;
      bad[at] = ((bad[at] ?? 0) + delta) & 0xff;
      assert.equal(decodeSuperblock(bad, capacity).ok, false);
    }),
    params,
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      decodeSuperblock(bytes, capacity);
    }),
    params,
  );
});

test('segment headers, SYNC marks and checkpoint chunks round-trip and reject bad lengths', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 52 }), fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), fc.nat({ max: 0xffffffff }), (segSeq, a, b, c) => {
      const h = { segSeq, segIndex: a, prevIndex: b, prevEnd: c };
      assert.deepEqual(decodeSegmentHeader(encodeSegmentHeader(h)), h);
      assert.deepEqual(decodeSync(encodeSync({ segSeq, batchStart: a })), { segSeq, batchStart: a });
      const chunk = decodeCheckpointChunk(encodeCheckpointChunk(segSeq, a, b, new Uint8Array([1, 2])));
      assert.deepEqual(chunk && { ...chunk, data: [...chunk.data] }, { id: segSeq, index: a, count: b, data: [1, 2] });
    }),
    params,
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      if (bytes.length !== 20) assert.equal(decodeSegmentHeader(bytes), undefined);
      if (bytes.length !== 12) assert.equal(decodeSync(bytes), undefined);
      if (bytes.length < 16) assert.equal(decodeCheckpointChunk(bytes), undefined);
    }),
    params,
  );
});

/** Entries as a checkpoint holds them: column by column, one run per stretch of one subject. */
function columns(list: { subject: string; key: string; extents: [number, number, number][] }[]): CheckpointEntries {
  const runs: CheckpointEntries['runs'] = [];
  for (const [i, e] of list.entries()) {
    const run = runs.at(-1);
    if (run?.subject === e.subject) run.end++;
    else runs.push({ subject: e.subject, end: i + 1 });
  }
  return {
    runs,
    keys: list.map((e) => e.key),
    counts: Uint8Array.from(list, (e) => e.extents.length),
    extents: Uint32Array.from(list.flatMap((e) => e.extents.flat())),
  };
}

const ckptArb = fc.record({
  nextTxnId: fc.integer({ min: 1, max: 2 ** 40 }),
  entries: fc
    .array(
      fc.record({
        subject: fc.constantFrom('app', 'b.c', 'z'),
        key: fc.string({ maxLength: 40 }).map((s) => Buffer.from(s, 'utf8').toString('latin1')),
        extents: fc.array(fc.tuple(fc.nat({ max: 1000 }), fc.nat({ max: 1 << 20 }), fc.nat({ max: 70_000 })), { minLength: 1, maxLength: 3 }),
      }, { noNullPrototype: true }),
      { maxLength: 20 },
    )
    .map(columns),
  nextSnapId: fc.integer({ min: 1, max: 2 ** 40 }),
  snapshots: fc.array(
    fc.record(
      {
        subject: fc.constantFrom('app', 'b.c'),
        name: fc.constantFrom('s1', 'nightly-2026'),
        id: fc.integer({ min: 1, max: 2 ** 40 }),
        digest: fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }), { nil: undefined }),
        diff: fc.array(
          fc.record({ key: fc.constantFrom('/state/a', '/state/b/c'), extents: fc.option(fc.array(fc.record({ segment: fc.nat({ max: 9 }), offset: fc.nat({ max: 9999 }), length: fc.nat({ max: 9999 }) }, { noNullPrototype: true }), { minLength: 1, maxLength: 2 }), { nil: null }) }, { noNullPrototype: true }),
          { maxLength: 4 },
        ),
      },
      { noNullPrototype: true },
    ),
    { maxLength: 3 },
  ),
  mounts: fc.array(fc.record({ caller: fc.constant('app'), path: fc.constant('/mnt/x'), owner: fc.constant('b'), name: fc.constant('s1'), snapId: fc.nat({ max: 99 }) }, { noNullPrototype: true }), { maxLength: 2 }),
}, { noNullPrototype: true });

test('checkpoint payloads round-trip; truncations and garbage give EINTEGRITY, never another error', () => {
  fc.assert(
    fc.property(ckptArb, fc.nat(), (ckpt, cut) => {
      const bytes = encodeCheckpoint(ckpt);
      assert.deepEqual(decodeCheckpoint(bytes), ckpt);
      const short = bytes.subarray(0, cut % bytes.length);
      assert.throws(() => decodeCheckpoint(short), (e: unknown) => e instanceof StatefsError && e.code === 'EINTEGRITY');
    }),
    params,
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
      try {
        decodeCheckpoint(bytes);
      } catch (e) {
        assert.ok(e instanceof StatefsError && e.code === 'EINTEGRITY');
      }
    }),
    params,
  );
});

test('a checkpoint entry whose key has no subject (no NUL after a first byte) is EINTEGRITY', () => {
  const entry = (k: string): Buffer => {
    const head = Buffer.alloc(2);
    head.writeUInt16LE(k.length);
    return Buffer.concat([head, Buffer.from(k, 'latin1'), Buffer.from([1]), Buffer.alloc(12)]);
  };
  for (const k of ['/state/a', '\0/state/a']) {
    const payload = Buffer.concat([Buffer.from([1]), Buffer.alloc(8), Buffer.from([1, 0, 0, 0]), entry(k)]);
    assert.throws(() => decodeCheckpoint(payload), (e: unknown) => e instanceof StatefsError && e.code === 'EINTEGRITY' && e.message.includes('record key has no subject'));
  }
  const good = Buffer.concat([Buffer.from([1]), Buffer.alloc(8), Buffer.from([1, 0, 0, 0]), entry('app\0/state/a')]);
  assert.deepEqual(decodeCheckpoint(good).entries, { runs: [{ subject: 'app', end: 1 }], keys: ['/state/a'], counts: Uint8Array.of(1), extents: Uint32Array.of(0, 0, 0) });
});
