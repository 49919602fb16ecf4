import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDevice } from '../src/device/memory-device.js';
import { fsckDevice } from '../src/engine/fsck.js';
import { Store } from '../src/engine/store.js';
import { StatefsError } from '../src/errors.js';
import { memoryImage, text } from './helpers.js';
import { guardResources } from './hygiene.js';
import { record, u32, u64 } from './record-encoder.js';

guardResources();

/*
 * Records whose framing and CRC are right but whose value does not decode (a writer bug, or bytes
 * re-sealed by hand): replay must stop with EINTEGRITY at that record, and fsck must call it
 * unrecoverable damage at the same offset. Records are built from docs/storage/statefs-v3.md by the
 * tests' own encoder; bit flips (caught by the CRC) are the reliability suite's job.
 */

const SEG0 = 4096; // segment 0 starts after superblock slot A
const PREPARE = 0x10;
const PAYLOAD = 0x11;
const COMMIT = 0x12;
const ABORT = 0x13;
const SYNC = 0x14;
const SNAPSHOT = 0x21;
const SNAPDIGEST = 0x22;
const RESTORE = 0x24;
const MOUNT = 0x25;
const RELOC = 0x27;
const PUT = 0x01;

const key = (s: string): Buffer => Buffer.from(s, 'latin1');
const payload = (txnId: number, kind: number, index: number, count: number, data = ''): Buffer => {
  const head = Buffer.alloc(13);
  head.writeBigUInt64LE(BigInt(txnId), 0);
  head.writeUInt8(kind, 8);
  head.writeUInt16LE(index, 9);
  head.writeUInt16LE(count, 11);
  return Buffer.concat([head, Buffer.from(data)]);
};
const mark = (txnId: number, ops: number): Buffer => Buffer.concat([u64(txnId), u32(ops)]);

/** A small image whose log is all in segment 0 (a put and the snapshot `snap` of app), and where that log ends. */
async function sample(): Promise<{ img: Uint8Array; tail: number }> {
  const img = await memoryImage();
  const s = await Store.openDevice(new MemoryDevice(img), { autoGc: false });
  await s.put('app', '/state/a', 'alpha');
  await s.snapshot('app', 'snap');
  await s.verifySnapshot('app', 'snap'); // its digest record is written
  const tail = (await s.stat()).usedBytes;
  await s.close();
  return { img, tail };
}

/** Appends one sealed batch of `records` at the end of segment 0's log; returns each record's byte offset. */
function appendBatch(img: Uint8Array, tail: number, records: Buffer[]): number[] {
  const offsets: number[] = [];
  let at = SEG0 + tail;
  for (const r of records) {
    offsets.push(at);
    at += r.length;
  }
  const sync = record(SYNC, Buffer.alloc(0), Buffer.concat([u64(1), u32(tail)]));
  img.set(Buffer.concat([...records, sync]), SEG0 + tail);
  return offsets;
}

interface Case {
  name: string;
  records: Buffer[];
  /** The record (index in `records`) replay must stop at. */
  at: number;
  message: RegExp;
}

const cases: Case[] = [
  { name: 'PREPARE of 11 bytes', records: [record(PREPARE, key('app'), Buffer.alloc(11))], at: 0, message: /malformed PREPARE/ },
  { name: 'COMMIT of 13 bytes', records: [record(COMMIT, key('app'), Buffer.alloc(13))], at: 0, message: /malformed COMMIT/ },
  { name: 'PAYLOAD shorter than its header', records: [record(PAYLOAD, key('app\0/state/p'), Buffer.alloc(12))], at: 0, message: /malformed PAYLOAD/ },
  { name: 'PAYLOAD of kind 3', records: [record(PAYLOAD, key('app\0/state/p'), payload(7, 3, 0, 1, 'x'))], at: 0, message: /malformed PAYLOAD/ },
  { name: 'PAYLOAD with chunk count 0', records: [record(PAYLOAD, key('app\0/state/p'), payload(7, 1, 0, 0, 'x'))], at: 0, message: /malformed PAYLOAD/ },
  { name: 'PAYLOAD chunk 1 of 1', records: [record(PAYLOAD, key('app\0/state/p'), payload(7, 1, 1, 1, 'x'))], at: 0, message: /malformed PAYLOAD/ },
  {
    name: 'a transaction with fewer ops than its COMMIT says',
    records: [record(PREPARE, key('app'), mark(90, 2)), record(PAYLOAD, key('app\0/state/p'), payload(90, 1, 0, 1, 'x')), record(COMMIT, key('app'), mark(90, 2))],
    at: 2,
    message: /transaction has 1 ops, its COMMIT says 2/,
  },
  {
    name: 'a transaction whose value chunks stop short',
    records: [record(PREPARE, key('app'), mark(91, 1)), record(PAYLOAD, key('app\0/state/p'), payload(91, 1, 0, 2, 'x')), record(COMMIT, key('app'), mark(91, 1))],
    at: 1,
    message: /chunks do not form whole values/,
  },
  { name: 'RELOC of 7 bytes', records: [record(RELOC, key('app\0/state/a'), Buffer.alloc(7))], at: 0, message: /malformed RELOC/ },
  { name: 'SNAPSHOT of 7 bytes', records: [record(SNAPSHOT, key('app\0s2'), Buffer.alloc(7))], at: 0, message: /malformed SNAPSHOT/ },
  { name: 'SNAPSHOT whose key has no subject', records: [record(SNAPSHOT, key('app'), u64(9))], at: 0, message: /metadata record key has no subject/ },
  { name: 'PUT whose key has no subject', records: [record(PUT, key('/state/a'), Buffer.from('v'))], at: 0, message: /record key has no subject/ },
  { name: 'RESTORE of a snapshot that does not exist', records: [record(RESTORE, key('app\0nope'), u64(1))], at: 0, message: /RESTORE of unknown snapshot nope/ },
  { name: 'MOUNT of 10 bytes', records: [record(MOUNT, key('app\0/mnt/m'), Buffer.alloc(10))], at: 0, message: /malformed MOUNT/ },
  { name: 'MOUNT with an empty owner', records: [record(MOUNT, key('app\0/mnt/m'), Buffer.concat([u64(1), key('\0snap')]))], at: 0, message: /malformed MOUNT/ },
  { name: 'MOUNT with a second NUL', records: [record(MOUNT, key('app\0/mnt/m'), Buffer.concat([u64(1), key('app\0snap\0x')]))], at: 0, message: /malformed MOUNT/ },
];

for (const c of cases) {
  test(`malformed record, ${c.name}: open is EINTEGRITY at its offset; fsck exits 2 there`, async () => {
    const { img, tail } = await sample();
    const offset = appendBatch(img, tail, c.records)[c.at];
    await assert.rejects(Store.openDevice(new MemoryDevice(img)), (err: unknown) => {
      assert.ok(err instanceof StatefsError, String(err));
      assert.equal(err.code, 'EINTEGRITY');
      assert.match(err.message, c.message);
      assert.equal(err.offset, offset);
      return true;
    });
    const report = await fsckDevice(new MemoryDevice(img));
    assert.equal(report.exitCode, 2, JSON.stringify(report.findings));
    assert.deepEqual(report.findings.map((f) => [f.reason, f.offset]), [['damage-before-valid-records', offset]]);
  });
}

test('a SNAPDIGEST or ABORT that does not decode, or names another snapshot, changes nothing', async () => {
  const { img, tail } = await sample();
  const before = await Store.openDevice(new MemoryDevice(img.slice()));
  const digest = await before.verifySnapshot('app', 'snap');
  await before.close();
  appendBatch(img, tail, [
    record(SNAPDIGEST, key('app\0snap'), Buffer.alloc(39)),
    record(SNAPDIGEST, key('app\0snap'), Buffer.concat([u64(999), Buffer.alloc(32, 0xaa)])),
    record(ABORT, key('app'), Buffer.alloc(5)),
  ]);
  const s = await Store.openDevice(new MemoryDevice(img));
  try {
    assert.equal(await s.verifySnapshot('app', 'snap'), digest);
    assert.equal(text(await s.get('app', '/state/a')), 'alpha');
  } finally {
    await s.close();
  }
  const report = await fsckDevice(new MemoryDevice(img));
  assert.equal(report.exitCode, 0, JSON.stringify(report.findings));
});
