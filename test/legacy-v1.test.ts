import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FaultDevice } from '../src/device/fault-device.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { fsckDevice } from '../src/engine/fsck.js';
import { crc32c } from '../src/format/crc32c.js';
import { decodeUpgrade } from '../src/format/meta-records.js';
import { Op } from '../src/format/opcodes.js';
import { NO_SEGMENT, encodeSegmentHeader } from '../src/format/segment.js';
import { Store } from '../src/engine/store.js';
import { StatefsError } from '../src/errors.js';
import { record } from './record-encoder.js';
import { guardResources } from './hygiene.js';
import { memoryImage } from './helpers.js';

guardResources();

// v1 journals are v1 records back to back from byte 0 (docs/storage/statefs-v3.md, "Legacy v1
// images"), encoded by the tests' own encoder.
function v1Record(opcode: number, key: string, value: string | Buffer = ''): Buffer {
  return record(opcode, Buffer.from(key, 'utf8'), typeof value === 'string' ? Buffer.from(value, 'utf8') : value);
}
assert.equal(v1Record(1, 'k').subarray(0, 4).toString('hex'), '4653584e');

function v1Image(size: number, records: Buffer[]): Uint8Array {
  const img = new Uint8Array(size);
  img.set(Buffer.concat(records), 0);
  return img;
}

const PUT = 1;
const DEL = 2;
const NOOP = 3;
const fixture = [
  v1Record(PUT, '/state/a', 'one'),
  v1Record(PUT, '/state/b/c', 'two'),
  v1Record(NOOP, ''),
  v1Record(PUT, '/state/a', 'one again'),
  v1Record(PUT, '/state/gone', 'x'),
  v1Record(DEL, '/state/gone'),
  v1Record(PUT, '/state/z', 'last'),
];
const expected = new Map([
  ['/state/a', 'one again'],
  ['/state/b/c', 'two'],
  ['/state/z', 'last'],
]);

async function stateOf(store: Store, subject: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const k of (await store.list(subject)).keys) out.set(k, Buffer.from((await store.get(subject, k)) ?? []).toString('utf8'));
  return out;
}

test('a v1 image opens as subject legacy and is upgraded in place by its first write', async () => {
  const img = v1Image(4 << 20, fixture);
  const s = await Store.openDevice(new MemoryDevice(img));
  assert.equal(s.openReport.format, 'legacy-v1');
  assert.deepEqual(await stateOf(s, 'legacy'), expected);
  await s.close();
  assert.deepEqual(img.subarray(0, 64), v1Image(4 << 20, fixture).subarray(0, 64), 'opening and reading wrote nothing');
  const w = await Store.openDevice(new MemoryDevice(img));
  await w.put('legacy', '/state/new', 'written after upgrade');
  await w.close();
  const r = await Store.openDevice(new MemoryDevice(img));
  assert.equal(r.openReport.format, 'v3');
  assert.deepEqual(await stateOf(r, 'legacy'), new Map([...expected, ['/state/new', 'written after upgrade']]));
  await r.close();
  // The upgrade's first record, right after its segment's header, names the v1 journal it read.
  const journal = Buffer.concat(fixture);
  const mark = img.subarray(4096 + 35, 4096 + 35 + 27);
  assert.equal(mark[4], Op.UPGRADE);
  assert.deepEqual(decodeUpgrade(mark.subarray(11, 23)), { v1End: journal.length, v1Crc: crc32c(journal) });
  const report = await fsckDevice(new MemoryDevice(img));
  assert.equal(report.exitCode, 0, JSON.stringify(report.findings));
});

/** Every key's value as hex (values may be any bytes). */
async function rawStateOf(store: Store, subject: string): Promise<string> {
  const out: [string, string][] = [];
  for (const k of (await store.list(subject)).keys) out.push([k, Buffer.from((await store.get(subject, k)) ?? []).toString('hex')]);
  return JSON.stringify(out);
}

test('a crash at every device write of the upgrade leaves the v1 state or the upgraded state, never less', async () => {
  // The second history stores a value that holds a whole valid v1 record: the upgrade copies it
  // past the v1 journal, where a search for damage must not take it for a v1 record (it made an
  // upgrade cut short before its superblock an EINTEGRITY image).
  const embedded = [...fixture, v1Record(PUT, '/state/copy', v1Record(PUT, '/state/inner', 'looks valid'))];
  for (const records of [fixture, embedded]) {
    const base = v1Image(4 << 20, records);
    const before = await Store.openDevice(new MemoryDevice(base.slice()));
    const v1State = await rawStateOf(before, 'legacy');
    await before.close();
    const probe = new FaultDevice(base);
    const ps = await Store.openDevice(probe);
    await ps.put('legacy', '/state/new', 'w');
    const withWrite = await rawStateOf(ps, 'legacy');
    await ps.close();
    let checked = 0;
    for (let n = 1; n <= probe.writes; n++) {
      for (const tornBytes of [0, 7]) {
        const device = new FaultDevice(base, { crash: { atWrite: n, tornBytes } });
        const s = await Store.openDevice(device);
        await assert.rejects(s.put('legacy', '/state/new', 'w'), (e: unknown) => e instanceof StatefsError && e.code === 'EIO');
        await s.close();
        const r = await Store.openDevice(new MemoryDevice(device.diskImage()));
        const state = await rawStateOf(r, 'legacy');
        assert.ok(state === v1State || state === withWrite, `crash at write ${n} (torn ${tornBytes}): ${r.openReport.format} ${state}`);
        await r.put('legacy', '/state/again', 'still writable');
        await r.close();
        checked++;
      }
    }
    console.log(`legacy upgrade of ${records.length} records: ${probe.writes} device writes, ${checked} crash states checked`);
  }
});

test('an upgrade torn anywhere inside a value that holds a whole v1 record, or keeping only the later bytes of its write, opens as the v1 state (its UPGRADE record names the v1 journal)', async () => {
  const inner = v1Record(PUT, '/state/inner', 'looks valid');
  const base = v1Image(4 << 20, [...fixture, v1Record(PUT, '/state/copy', Buffer.concat([Buffer.alloc(40, 0x61), inner, Buffer.alloc(40, 0x62)]))]);
  const before = await Store.openDevice(new MemoryDevice(base.slice()));
  const v1State = await rawStateOf(before, 'legacy');
  await before.close();
  const probe = new FaultDevice(base, { trace: true });
  const ps = await Store.openDevice(probe);
  await ps.put('legacy', '/state/new', 'w');
  await ps.close();
  const writes = probe.trace.flatMap((e, i) => (e.kind === 'write' ? [{ ...e, i }] : []));
  // The write of the upgrade's values: the one that copies the inner record past the v1 journal.
  const values = writes.find((w) => Buffer.from(w.data).includes(inner));
  assert.ok(values !== undefined, 'the upgrade copies the value holding a v1 record');
  const n = writes.indexOf(values) + 1;
  const innerAt = Buffer.from(values.data).indexOf(inner);
  const opens = async (img: Uint8Array, label: string): Promise<void> => {
    const r = await Store.openDevice(new MemoryDevice(img));
    assert.equal(r.openReport.format, 'legacy-v1', label);
    assert.equal(await rawStateOf(r, 'legacy'), v1State, label);
    await r.put('legacy', '/state/again', 'still writable');
    await r.close();
    assert.equal((await fsckDevice(new MemoryDevice(img))).exitCode, 0, `fsck: ${label}`);
  };
  let checked = 0;
  for (let cut = innerAt - 12; cut <= innerAt + inner.length + 12; cut++) {
    // Torn: the write's first `cut` bytes reached the disk.
    const device = new FaultDevice(base, { crash: { atWrite: n, tornBytes: cut } });
    const s = await Store.openDevice(device);
    await assert.rejects(s.put('legacy', '/state/new', 'w'), (e: unknown) => e instanceof StatefsError && e.code === 'EIO');
    await s.close();
    await opens(device.diskImage(), `torn at byte ${String(cut)} of write ${String(n)}`);
    // Out of order within the write (the device contract allows it): only its bytes from `cut` on.
    const reordered = base.slice();
    for (const w of writes.slice(0, n - 1)) reordered.set(w.data, w.offset);
    reordered.set(values.data.subarray(cut), values.offset + cut);
    await opens(reordered, `write ${String(n)} kept from byte ${String(cut)} on`);
    checked += 2;
  }
  assert.ok(checked > 100);
});

test('damage in a v1 journal is still EINTEGRITY when an unfinished upgrade left its UPGRADE record (it names the journal as it was)', async () => {
  const base = v1Image(4 << 20, fixture);
  const device = new FaultDevice(base, { trace: true });
  const s = await Store.openDevice(device);
  await s.put('legacy', '/state/new', 'w');
  await s.close();
  // The upgrade's log, without its superblocks: an upgrade cut short before slot B.
  const img = base.slice();
  for (const e of device.trace) if (e.kind === 'write' && e.offset < img.length - 8192 && e.offset >= 4096) img.set(e.data, e.offset);
  const intact = await Store.openDevice(new MemoryDevice(img.slice()));
  assert.equal(intact.openReport.format, 'legacy-v1');
  await intact.close();
  const at = (fixture[0]?.length ?? 0) + 3;
  img[at] = (img[at] ?? 0) ^ 0x10; // the second v1 record: the journal now ends before it
  await assert.rejects(Store.openDevice(new MemoryDevice(img.slice())), (e: unknown) => e instanceof StatefsError && e.code === 'EINTEGRITY' && e.offset === fixture[0]?.length);
  assert.equal((await fsckDevice(new MemoryDevice(img))).exitCode, 2);
});

test('a v1 image too full to upgrade gets ENOSPC and stays readable', async () => {
  const records: Buffer[] = [];
  for (let i = 0; i < 52; i++) records.push(v1Record(PUT, `/state/k${i}`, 'x'.repeat(20_000)));
  const img = v1Image(1280 * 1024, records); // 1,040,000 bytes of v1 journal in a 1.25 MiB device
  const s = await Store.openDevice(new MemoryDevice(img));
  await assert.rejects(s.put('legacy', '/state/new', 'w'), (e: unknown) => e instanceof StatefsError && e.code === 'ENOSPC');
  await s.close();
  const r = await Store.openDevice(new MemoryDevice(img));
  assert.equal(r.openReport.format, 'legacy-v1');
  assert.equal((await r.list('legacy')).keys.length, 52);
  await r.close();
});

test('damage in a v1 journal followed by valid records is EINTEGRITY; a torn v1 tail is not', async () => {
  const img = v1Image(4 << 20, fixture);
  const at = (fixture[0]?.length ?? 0) + 3;
  img[at] = (img[at] ?? 0) ^ 0x10;
  await assert.rejects(Store.openDevice(new MemoryDevice(img)), (e: unknown) => e instanceof StatefsError && e.code === 'EINTEGRITY' && e.offset === fixture[0]?.length);
  const torn = v1Image(4 << 20, [...fixture.slice(0, -1), (fixture.at(-1) ?? Buffer.alloc(0)).subarray(0, 10)]);
  const s = await Store.openDevice(new MemoryDevice(torn));
  assert.deepEqual(await stateOf(s, 'legacy'), new Map([['/state/a', 'one again'], ['/state/b/c', 'two']]));
  // Reported as a v3 torn tail is (crash residue): in the open report and by fsck, as info.
  const end = fixture.slice(0, -1).reduce((n, r) => n + r.length, 0);
  assert.equal(s.openReport.tornTailAt, end);
  await s.close();
  const report = await fsckDevice(new MemoryDevice(torn));
  assert.equal(report.exitCode, 0);
  assert.deepEqual(report.findings.map((f) => [f.reason, f.offset]), [['legacy-v1', 0], ['torn-tail', end]]);
  const clean = await Store.openDevice(new MemoryDevice(v1Image(4 << 20, fixture)));
  assert.equal(clean.openReport.tornTailAt, undefined, 'a v1 journal followed by zeros ends cleanly');
  await clean.close();
});

test('damage followed by valid v1 records is EINTEGRITY even when the bytes after the damage look like the start of an upgrade (review: the search stopped there and two records were lost)', async () => {
  const before = [v1Record(PUT, '/state/a', 'one'), v1Record(PUT, '/state/b', 'two')];
  const blobAt = before.reduce((n, r) => n + r.length, 0);
  const key = '/state/blob';
  const valueAt = blobAt + 11 + key.length;
  const header = record(Op.SEGMENT, Buffer.alloc(0), Buffer.from(encodeSegmentHeader({ segSeq: 1, segIndex: 0, prevIndex: NO_SEGMENT, prevEnd: 0 })));
  // And, in the second image, a record header claiming 200,000 bytes right after it (a torn
  // record's look: skipping its claimed length hid the records after the damage; a review).
  const bigClaim = Buffer.alloc(11);
  bigClaim.writeUInt32LE(0x4e585346, 0);
  bigClaim[4] = PUT;
  bigClaim.writeUInt32LE(200_000, 7);
  for (const extra of [Buffer.alloc(0), bigClaim]) {
    const value = Buffer.alloc(8000, 0x5a);
    // A valid v3 segment header where segment 0 would start (4096): what an upgrade writes first.
    Buffer.concat([header, extra]).copy(value, 4096 - valueAt);
    const after = [v1Record(PUT, '/state/after-1', 'x'), v1Record(PUT, '/state/after-2', 'y'), v1Record(DEL, '/state/a')];
    const img = v1Image(4 << 20, [...before, v1Record(PUT, key, value), ...after]);
    img[valueAt + 10] = (img[valueAt + 10] ?? 0) ^ 0x01; // damage inside the blob's value: its CRC fails
    await assert.rejects(Store.openDevice(new MemoryDevice(img.slice())), (e: unknown) => e instanceof StatefsError && e.code === 'EINTEGRITY' && e.offset === blobAt);
    const report = await fsckDevice(new MemoryDevice(img));
    assert.equal(report.exitCode, 2);
  }
});

test('a store just upgraded from v1 holds back no more space than a v3 store given the same keys', async () => {
  const fill = async (s: Store): Promise<number> => {
    let n = 0;
    try {
      for (;;) {
        await s.put('legacy', `/state/big${n}`, 'x'.repeat(60_000));
        n++;
      }
    } catch (err) {
      assert.ok(err instanceof StatefsError && err.code === 'ENOSPC', String(err));
    }
    return n;
  };
  const size = 16 * 1024 * 1024;
  const keys = Array.from({ length: 20_000 }, (_, i): [string, string] => [`/state/k${i}`, `v${i}`]);
  const options = { autoGc: false, checkpointBytes: 1024 * 1024 * 1024 };
  const upgraded = await Store.openDevice(new MemoryDevice(v1Image(size, keys.map(([k, v]) => v1Record(0x01, k, v)))), options);
  await upgraded.put('legacy', '/state/first', 'upgrade');
  const sameSession = await fill(upgraded);
  await upgraded.close();
  // The same keys written to a v3 store, one PUT record each as the upgrade writes them (not
  // putMany's shorter PUTRUN records): neither store has written a checkpoint of them yet, so
  // both estimate the next one alike, and hold back alike when each key is counted once.
  const v3 = await Store.openDevice(new MemoryDevice(await memoryImage(size)), options);
  for (let i = 0; i < keys.length; i += 500) await Promise.all(keys.slice(i, i + 500).map(([k, v]) => v3.put('legacy', k, v)));
  await v3.put('legacy', '/state/first', 'upgrade');
  const fresh = await fill(v3);
  await v3.close();
  // The upgraded store counts each upgraded key once (it counted them twice: a reserve twice as large).
  assert.ok(sameSession >= fresh, `${sameSession} puts just after the upgrade, ${fresh} in the v3 store`);
});
