import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeCheckpoint, decodeCheckpointChunk, emptyCheckpoint, encodeCheckpoint, encodeCheckpointChunk, type Checkpoint, type CheckpointEntries } from '../src/format/checkpoint.js';
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
function columns(list: { subject: string; key: string; extents: [number, number, number][]; lead: number }[]): CheckpointEntries {
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
    leads: Uint16Array.from(list, (e) => e.lead),
  };
}

/** A snapshot difference's extents: the first may be a PUTRUN slice (`lead`, version 5). */
const diffExtentsArb = fc
  .tuple(
    fc.array(fc.record({ segment: fc.nat({ max: 9 }), offset: fc.nat({ max: 9999 }), length: fc.nat({ max: 9999 }) }, { noNullPrototype: true }), { minLength: 1, maxLength: 2 }),
    fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 639 })),
  )
  .map(([extents, lead]) => extents.map((x, i) => (i === 0 && lead > 0 ? { ...x, lead } : x)));

const ckptArb = fc.record({
  nextTxnId: fc.integer({ min: 1, max: 2 ** 40 }),
  entries: fc
    .array(
      fc.record({
        // Subjects that are prefixes of each other, and keys that share long prefixes, for the
        // shared-prefix keys of version 3; extents up to 2^32 - 1 for its 5-byte varints.
        subject: fc.constantFrom('app', 'apps', 'ap', 'b.c', 'z'),
        key: fc
          .oneof(fc.string({ maxLength: 40 }), fc.string({ maxLength: 3 }).map((s) => `/state/app1/k${s}`))
          .map((s) => Buffer.from(s, 'utf8').toString('latin1')),
        extents: fc.array(fc.tuple(fc.nat({ max: 1000 }), fc.integer({ min: 0, max: 0xffff_ffff }), fc.nat({ max: 70_000 })), { minLength: 1, maxLength: 3 }),
        // A PUTRUN slice's start in its record (version 5), or 0.
        lead: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 639 })),
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
          fc.record({ key: fc.constantFrom('/state/a', '/state/b/c'), extents: fc.option(diffExtentsArb, { nil: null }) }, { noNullPrototype: true }),
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

/**
 * The version 2 payload of `ckpt` (each entry's key and extents written whole), built here byte by
 * byte as the engine before version 3 wrote it: images written then must still open.
 */
function version2Payload(ckpt: Checkpoint): Uint8Array {
  const rest = encodeCheckpoint({ ...ckpt, entries: emptyCheckpoint().entries }); // version, ids, count 0, then snapshots and mounts
  const parts: Buffer[] = [Buffer.from([2]), Buffer.from(rest.subarray(1, 9))];
  const count = Buffer.alloc(4);
  count.writeUInt32LE(ckpt.entries.keys.length);
  parts.push(count);
  const { runs, keys, counts, extents } = ckpt.entries;
  let i = 0;
  let x = 0;
  for (const run of runs) {
    for (; i < run.end; i++) {
      const key = Buffer.from(`${run.subject}\0${keys[i] ?? ''}`, 'latin1');
      const head = Buffer.alloc(2);
      head.writeUInt16LE(key.length);
      const n = counts[i] ?? 0;
      const xs = Buffer.alloc(1 + 12 * n);
      xs[0] = n;
      for (let j = 0; j < 3 * n; j++) xs.writeUInt32LE(extents[x++] ?? 0, 1 + 4 * j);
      parts.push(head, key, xs);
    }
  }
  parts.push(Buffer.from(rest.subarray(13)));
  return new Uint8Array(Buffer.concat(parts)); // not a Buffer: decoded digests are then Uint8Arrays, as from the engine's own payloads
}

/** `ckpt` with every PUTRUN slice's lead dropped: what a payload before version 5 can hold. */
function withoutLeads(ckpt: Checkpoint): Checkpoint {
  return {
    ...ckpt,
    entries: { ...ckpt.entries, leads: new Uint16Array(ckpt.entries.leads.length) },
    snapshots: ckpt.snapshots.map((snap) => ({ ...snap, diff: snap.diff.map((d) => ({ key: d.key, extents: d.extents?.map(({ segment, offset, length }) => ({ segment, offset, length })) ?? null })) })),
  };
}

test('keys longer than 320 bytes (only a v1 image has them) round-trip, sharing at most 320 bytes', () => {
  const keys = ['x', 'y', 'z'].map((c) => `/state/${'d'.repeat(990)}${c}`);
  const ckpt: Checkpoint = { ...emptyCheckpoint(), entries: columns(keys.map((key) => ({ subject: 'legacy', key, extents: [[1, 2, 3]], lead: 0 }))) };
  const bytes = encodeCheckpoint(ckpt);
  assert.deepEqual(decodeCheckpoint(bytes), ckpt);
  assert.ok(bytes.length > 2 * (1005 - 320), `${bytes.length} bytes: the bytes past the 320 shared are written`);
});

test('version 2 checkpoint payloads (written before keys shared their prefixes) decode to the same checkpoint', () => {
  fc.assert(
    fc.property(ckptArb, (ckpt) => {
      const old = withoutLeads(ckpt); // before version 5, no extent was a PUTRUN slice
      assert.deepEqual(decodeCheckpoint(version2Payload(old)), old);
    }),
    params,
  );
});

test('version 3 entries of sorted keys take a third of version 2 bytes; bad prefix lengths and varints are EINTEGRITY', () => {
  const list = Array.from({ length: 10_000 }, (_, i) => ({ subject: 'bench', key: `/state/app${i % 10}/k${String(i).padStart(6, '0')}`, extents: [[3 + (i >> 12), (i * 141) % (1 << 20), 141] as [number, number, number]], lead: 0 }));
  list.sort((a, b) => (a.key < b.key ? -1 : 1));
  const ckpt: Checkpoint = { ...emptyCheckpoint(), entries: columns(list) };
  const v3 = encodeCheckpoint(ckpt);
  const v2 = version2Payload(ckpt);
  assert.deepEqual(decodeCheckpoint(v3), ckpt);
  assert.ok(v3.length * 3 < v2.length, `${v3.length} bytes against ${v2.length}`);
  const header = [3, 1, 0, 0, 0, 0, 0, 0, 0];
  const tail = new Array<number>(16).fill(0); // next_snap_id, no snapshots, no mounts
  const payload = (entries: number[], count: number): Uint8Array => Uint8Array.from([...header, count, 0, 0, 0, ...entries, ...tail]);
  const bad = (entries: number[], count: number, reason: string): void => {
    assert.throws(() => decodeCheckpoint(payload(entries, count)), (e: unknown) => e instanceof StatefsError && e.code === 'EINTEGRITY' && e.message.includes(reason), reason);
  };
  const first = [0, 3, 0x61, 0, 0x6b, 1, 0, 0, 0]; // "a NUL k", one extent (0, 0, 0)
  assert.equal(decodeCheckpoint(payload([...first, 3, 1, 0x6c, 1, 0, 0, 0], 2)).entries.keys.join(), 'k,kl');
  bad([...first, 4, 1, 0x6c, 1, 0, 0, 0], 2, 'shares more bytes'); // 4 bytes of a 3-byte key
  bad([0, 3, 0x61, 0, 0x6b, 1, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0], 1, 'over 32 bits'); // 2^32
  bad([0, 3, 0x61, 0, 0x6b, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0], 1, 'over 32 bits'); // six bytes
  bad([0, 3, 0x61, 0x62, 0x6b, 1, 0, 0, 0], 1, 'no subject'); // no NUL
  bad([0, 3, 0, 0x61, 0x6b, 1, 0, 0, 0], 1, 'no subject'); // NUL first
  bad([0, 0x80, 0x80, 0x04], 1, 'over 65535'); // a key of 65536 bytes
  bad([...first, 2, 0, 0], 2, 'without extents');
  // A key may share at most 320 bytes: a 7-byte entry can no longer make a 64 KiB key string.
  const long = [0, 0xc4, 0x02, 0x61, 0, ...new Array<number>(322).fill(0x6b), 1, 0, 0, 0]; // "a NUL" + 322 k's: 324 bytes
  assert.equal(decodeCheckpoint(payload([...long, 0xc0, 0x02, 4, 0x6c, 0x6c, 0x6c, 0x6c, 1, 0, 0, 0], 2)).entries.keys[1]?.length, 322);
  bad([...long, 0xc1, 0x02, 3, 0x6c, 0x6c, 0x6c, 1, 0, 0, 0], 2, 'more than 320');
  assert.deepEqual(decodeCheckpoint(payload([0, 3, 0x61, 0, 0x6b, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0], 1)).entries.extents, Uint32Array.of(0xffff_ffff, 0, 0));
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
  assert.deepEqual(decodeCheckpoint(good).entries, { runs: [{ subject: 'app', end: 1 }], keys: ['/state/a'], counts: Uint8Array.of(1), extents: Uint32Array.of(0, 0, 0), leads: Uint16Array.of(0) });
});
