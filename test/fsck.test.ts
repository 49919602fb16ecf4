import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FaultDevice } from '../src/device/fault-device.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { fsckDevice, type FsckReport } from '../src/engine/fsck.js';
import { Store } from '../src/engine/store.js';
import { superblockOffset } from '../src/format/superblock.js';
import { memoryImage, openMemory, text } from './helpers.js';
import { crc32cOf, record, u32, u64 } from './record-encoder.js';
import { guardResources } from './hygiene.js';

guardResources();

// Records are built from docs/storage/statefs-v3.md by the tests' own encoder.
const SEG0 = 4096; // segment 0 starts after superblock slot A
/** Append one batch (records + SYNC) at the end of segment 0's log (segment 0 has sequence 1). */
function appendBatch(img: Uint8Array, tail: number, records: Buffer[]): void {
  const body = Buffer.concat(records);
  const sync = record(0x14, Buffer.alloc(0), Buffer.concat([u64(1), u32(tail)]));
  img.set(Buffer.concat([body, sync]), SEG0 + tail);
}

const reasons = (r: FsckReport): string[] => r.findings.map((f) => f.reason);

/** A small image: puts, a delete, a transaction, a snapshot and a mount, all in segment 0. */
async function sample(): Promise<{ img: Uint8Array; tail: number }> {
  const img = await memoryImage();
  const s = await Store.openDevice(new MemoryDevice(img), { autoGc: false });
  await s.put('app', '/state/a', 'alpha');
  await s.put('app', '/state/b', 'beta');
  await s.delete('app', '/state/b');
  const t = s.begin('app');
  await t.put('app', '/state/t1', 'one');
  await t.put('app', '/state/t2', 'two');
  await t.commit();
  await s.snapshot('app', 'snap');
  // Its digest is computed from the loop's next turn and appended once known: before the writes
  // that follow, so the log ends where `tail` says.
  while ((await s.listSnaps('app', { details: true }))[0]?.digest === undefined) await new Promise(setImmediate);
  await s.put('app', '/state/a', 'alpha2');
  await s.mountSnap('app', 'app', 'snap', '/mnt/snap');
  await s.put('app', '/state/z', 'last');
  const tail = (await s.stat()).usedBytes; // everything is in segment 0: its log ends here
  await s.close();
  return { img, tail };
}

test('a clean image passes with exit 0', async () => {
  const { img } = await sample();
  const r = await fsckDevice(new MemoryDevice(img));
  assert.equal(r.exitCode, 0, JSON.stringify(r.findings));
  assert.equal(r.format, 'v3');
  assert.ok(r.checked.records > 5 && r.checked.snapshots === 1 && r.checked.mounts === 1);
});

test('a bit flip in each record kind mid-image is unrecoverable (2) with its offset', async () => {
  const { img } = await sample();
  const find = (needle: string, opcode: number): number => {
    const buf = Buffer.from(img);
    for (let at = buf.indexOf(Buffer.from(needle, 'latin1')); at !== -1; at = buf.indexOf(Buffer.from(needle, 'latin1'), at + 1)) {
      if (buf[at - 11 + 4] === opcode && buf.readUInt32LE(at - 11) === 0x4e585346) return at - 11;
    }
    assert.fail(`no record 0x${opcode.toString(16)} with key ${needle}`);
  };
  const kinds: [string, number, string][] = [
    ['PUT', 0x01, 'app\0/state/a'],
    ['DELETE', 0x02, 'app\0/state/b'],
    ['PREPARE', 0x10, 'app'],
    ['PAYLOAD', 0x11, 'app\0/state/t1'],
    ['COMMIT', 0x12, 'app'],
    ['SNAPSHOT', 0x21, 'app\0snap'],
    ['MOUNT', 0x25, 'app\0/mnt/snap'],
  ];
  for (const [name, opcode, key] of kinds) {
    const at = find(key, opcode);
    const damaged = img.slice();
    damaged[at + 8] = (damaged[at + 8] ?? 0) ^ 0x40; // inside value_len
    const r = await fsckDevice(new MemoryDevice(damaged));
    assert.equal(r.exitCode, 2, `${name}: ${JSON.stringify(r.findings)}`);
    assert.deepEqual(reasons(r), ['damage-before-valid-records'], name);
    assert.equal(r.findings[0]?.offset, at, `${name} offset`);
  }
});

test('a flip in the last record (the final SYNC) is a torn tail: reported, exit 0', async () => {
  const { img, tail } = await sample();
  const damaged = img.slice();
  const at = SEG0 + tail - 3; // inside the final SYNC's CRC
  damaged[at] = (damaged[at] ?? 0) ^ 1;
  const r = await fsckDevice(new MemoryDevice(damaged));
  assert.equal(r.exitCode, 0);
  assert.deepEqual(reasons(r), ['torn-tail']);
});

test('a truncated image and a blank one are unrecoverable', async () => {
  const { img } = await sample();
  const r = await fsckDevice(new MemoryDevice(img.slice(0, img.length - 100_000)));
  assert.equal(r.exitCode, 2);
  assert.deepEqual(reasons(r), ['superblocks-damaged']);
  const blank = await fsckDevice(new MemoryDevice(new Uint8Array(4 << 20)));
  assert.deepEqual([blank.exitCode, reasons(blank)], [2, ['blank-image']]);
  // Smaller than the superblock slots (a file of 100 bytes was an EIO, exit 1; review).
  for (const size of [0, 100, 5000]) {
    const tiny = await fsckDevice(new MemoryDevice(new Uint8Array(size)));
    assert.deepEqual([tiny.exitCode, reasons(tiny)], [2, ['blank-image']], `${String(size)} bytes`);
  }
});

test('an orphaned transaction is repairable: 1, --repair, then 0, and the store opens without it', async () => {
  const { img, tail } = await sample();
  // PREPARE + PAYLOAD in a complete batch, and no COMMIT (a crash between the two parts of a
  // transaction that spanned a segment roll leaves exactly this).
  const subject = Buffer.from('app');
  appendBatch(img, tail, [
    record(0x10, subject, Buffer.concat([u64(1000), u32(1)])),
    record(0x11, Buffer.from('app\0/state/orphan', 'latin1'), Buffer.concat([u64(1000), Buffer.from([1]), Buffer.from([0, 0, 1, 0]), Buffer.from('x')])),
  ]);
  const before = img.slice();
  const dry = await fsckDevice(new MemoryDevice(img), { repair: true, dryRun: true });
  assert.deepEqual([dry.exitCode, reasons(dry)], [1, ['orphaned-transaction']]);
  assert.equal(dry.findings[0]?.offset, SEG0 + tail);
  assert.deepEqual(img, before, '--dry-run wrote nothing');
  const fixed = await fsckDevice(new MemoryDevice(img), { repair: true });
  assert.deepEqual([fixed.exitCode, fixed.repaired], [1, true]);
  const again = await fsckDevice(new MemoryDevice(img));
  assert.equal(again.exitCode, 0, JSON.stringify(again.findings));
  const s = await Store.openDevice(new MemoryDevice(img));
  assert.equal(await s.get('app', '/state/orphan'), undefined);
  assert.equal(text(await s.get('app', '/state/z')), 'last');
  await s.close();
});

test('superblock A damaged with B good is repairable; both damaged is unrecoverable', async () => {
  const { img } = await sample();
  const a = img.slice();
  a[20] = (a[20] ?? 0) ^ 0xff;
  const r = await fsckDevice(new MemoryDevice(a));
  assert.deepEqual([r.exitCode, reasons(r)], [1, ['superblock-a-damaged']]);
  const fixed = await fsckDevice(new MemoryDevice(a), { repair: true });
  assert.equal(fixed.repaired, true);
  assert.equal((await fsckDevice(new MemoryDevice(a))).exitCode, 0);
  const both = img.slice();
  both[20] = (both[20] ?? 0) ^ 0xff;
  both[both.length - 4096 + 20] = (both[both.length - 4096 + 20] ?? 0) ^ 0xff;
  const bad = await fsckDevice(new MemoryDevice(both));
  assert.deepEqual([bad.exitCode, reasons(bad)], [2, ['superblocks-damaged']]);
});

test('a mount naming a missing snapshot is repairable: the repair removes the mount', async () => {
  const { img, tail } = await sample();
  appendBatch(img, tail, [record(0x25, Buffer.from('app\0/mnt/ghost', 'latin1'), Buffer.concat([u64(77), Buffer.from('app\0nosuch', 'latin1')]))]);
  const r = await fsckDevice(new MemoryDevice(img));
  assert.deepEqual([r.exitCode, reasons(r)], [1, ['mount-missing-snapshot']]);
  assert.equal(r.findings[0]?.offset, SEG0 + tail, 'the MOUNT record');
  const fixed = await fsckDevice(new MemoryDevice(img), { repair: true });
  assert.equal(fixed.repaired, true);
  assert.equal((await fsckDevice(new MemoryDevice(img))).exitCode, 0);
  const s = await Store.openDevice(new MemoryDevice(img));
  assert.deepEqual((await s.listMounts('app')).map((m) => m.path), ['/mnt/snap']);
  await s.close();
});

test('a value under a snapshot altered with its CRC recomputed is caught by the digest (2)', async () => {
  const { img } = await sample();
  const key = Buffer.from('app\0/state/t1', 'latin1');
  const at = Buffer.from(img).indexOf(key) - 11; // the PAYLOAD holding "one" (read by the snapshot too)
  const len = Buffer.from(img).readUInt32LE(at + 7) + key.length + 15;
  const rec = Buffer.from(img.subarray(at, at + len));
  rec.write('ONE', len - 4 - 3, 'latin1');
  rec.writeUInt32LE(crc32cOf(rec.subarray(0, len - 4)), len - 4);
  img.set(rec, at);
  const r = await fsckDevice(new MemoryDevice(img));
  assert.deepEqual([r.exitCode, reasons(r)], [2, ['snapshot-digest-mismatch']]);
});

test('a legacy v1 image passes (0) and is reported as such', async () => {
  const img = new Uint8Array(4 << 20);
  img.set(Buffer.concat([record(1, Buffer.from('/state/a'), Buffer.from('1')), record(2, Buffer.from('/state/a'), Buffer.alloc(0)), record(1, Buffer.from('/state/b'), Buffer.from('2'))]));
  const r = await fsckDevice(new MemoryDevice(img));
  assert.deepEqual([r.exitCode, r.format, reasons(r)], [0, 'legacy-v1', ['legacy-v1']]);
});

test('a legacy v1 image v3 cannot hold is legacy-not-upgradable (2): a key v3 refuses, a value over a segment (review: fsck said clean, and every write failed)', async () => {
  const v1 = (records: Buffer[]): Uint8Array => {
    const img = new Uint8Array(4 << 20);
    img.set(Buffer.concat(records));
    return img;
  };
  const fine = record(1, Buffer.from('/state/ok'), Buffer.from('1'));
  for (const [what, odd] of [
    ['a doubled slash', record(1, Buffer.from('/state/a//b'), Buffer.from('x'))],
    ['the root itself', record(1, Buffer.from('/state/'), Buffer.from('x'))],
    ['a value over a segment', record(1, Buffer.from('/state/big'), Buffer.alloc(300_000, 7))],
    ['a key whose bytes are not UTF-8', record(1, Buffer.concat([Buffer.from('/state/caf'), Buffer.from([0xe9])]), Buffer.from('x'))],
  ] as const) {
    const r = await fsckDevice(new MemoryDevice(v1([fine, odd])));
    assert.deepEqual([r.exitCode, reasons(r)], [2, ['legacy-v1', 'legacy-not-upgradable']], what);
  }
});

test('a record kind this version does not know: open fails with ENOTSUP, fsck says unsupported-record', async () => {
  const { img, tail } = await sample();
  appendBatch(img, tail, [record(0x7f, Buffer.from('app\0/state/x', 'latin1'), Buffer.from('from the future'))]);
  await assert.rejects(Store.openDevice(new MemoryDevice(img.slice())), (err: unknown) => err instanceof Error && 'code' in err && err.code === 'ENOTSUP');
  const r = await fsckDevice(new MemoryDevice(img));
  assert.deepEqual([r.exitCode, reasons(r)], [2, ['unsupported-record']]);
});

test('either superblock slot damaged after many checkpoints loses nothing: both name the newest checkpoint (review: one flipped byte in the newest slot left a superblock whose checkpoint segments were reused)', async () => {
  const img = await memoryImage(4 * 1024 * 1024);
  const s = await Store.openDevice(new MemoryDevice(img));
  const expected = new Map<string, string>();
  // The review's history: 40 keys of 3,000 bytes rewritten each round, a checkpoint and a GC
  // cycle every fifth, so segments of older checkpoints are reused.
  for (let round = 0; round < 12; round++) {
    const puts: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) {
      const value = `${String(round)}-${String(i)}-${'v'.repeat(3000)}`;
      puts.push(s.put('app', `/state/k${String(i)}`, value));
      expected.set(`/state/k${String(i)}`, value);
    }
    await Promise.all(puts);
    if (round % 5 === 4) {
      await s.checkpoint();
      await s.gcNow();
    }
  }
  await s.put('app', '/state/final', 'last-acknowledged');
  expected.set('/state/final', 'last-acknowledged');
  await s.close();
  for (const slot of [0, 1] as const) {
    const damaged = img.slice();
    const at = superblockOffset(slot, damaged.length) + 20;
    damaged[at] = (damaged[at] ?? 0) ^ 0xff;
    const report = await fsckDevice(new MemoryDevice(damaged.slice()));
    assert.equal(report.exitCode, 1, `slot ${String(slot)}: ${JSON.stringify(report.findings)}`);
    const r = await Store.openDevice(new MemoryDevice(damaged));
    try {
      for (const [key, value] of expected) assert.equal(text(await r.get('app', key)), value, `slot ${String(slot)} damaged: ${key}`);
    } finally {
      await r.close();
    }
  }
});

test('a crash between the two superblock writes of a checkpoint: the next writable open writes the stale slot before reusing a segment (review: later writes reused the old checkpoint, then one flipped byte lost the image)', async () => {
  const img = await memoryImage(4 * 1024 * 1024);
  const expected = new Map<string, string>();
  const round = async (s: Store, tag: string): Promise<void> => {
    const puts: Promise<void>[] = [];
    for (let i = 0; i < 40; i++) {
      const value = `${tag}-${String(i)}-${'v'.repeat(3000)}`;
      puts.push(s.put('app', `/state/k${String(i)}`, value));
      expected.set(`/state/k${String(i)}`, value);
    }
    await Promise.all(puts);
  };
  // The review's history: rounds of 40 keys of 3,000 bytes, a checkpoint and a GC every fifth.
  const s = await Store.openDevice(new MemoryDevice(img));
  for (let r = 0; r < 12; r++) {
    await round(s, `a${String(r)}`);
    if (r % 5 === 4) {
      await s.checkpoint();
      await s.gcNow();
    }
  }
  await s.close();

  // Where the next checkpoint's last write (its second superblock slot) falls.
  const probe = new FaultDevice(img.slice());
  const p = await Store.openDevice(probe);
  await round(p, 'probe');
  await p.checkpoint();
  const secondSlotWrite = probe.writes;
  await p.close();

  // The same, cut at that write: one slot names the new checkpoint, the other the one before.
  const cut = new FaultDevice(img, { crash: { atWrite: secondSlotWrite } });
  const c = await Store.openDevice(cut);
  await round(c, 'cut'); // acknowledged: the crash comes later, in the checkpoint
  await c.checkpoint().catch(() => undefined);
  await c.close().catch(() => undefined);
  const crashed = cut.diskImage();

  // Reopened, 120 acknowledged puts with no checkpoint, then a crash.
  const r = await Store.openDevice(new MemoryDevice(crashed), { checkpointBytes: 1 << 30 });
  for (let i = 0; i < 3; i++) await round(r, `b${String(i)}`);
  await r.sync();
  const afterCrash = crashed.slice();
  await r.close();
  for (const slot of [0, 1] as const) {
    const damaged = afterCrash.slice();
    const at = superblockOffset(slot, damaged.length) + 20;
    damaged[at] = (damaged[at] ?? 0) ^ 0xff;
    const o = await Store.openDevice(new MemoryDevice(damaged));
    try {
      for (const [key, value] of expected) assert.equal(text(await o.get('app', key)), value, `slot ${String(slot)} damaged: ${key}`);
    } finally {
      await o.close();
    }
  }
});

test('a clean close of a store whose head segment is a reused one is clean: the old bytes after the log are no torn tail (user report)', async () => {
  const img = await memoryImage();
  const s = await openMemory(img);
  // Rewriting the same keys makes GC free segments that the log then takes again: the head ends
  // up in a segment whose earlier life wrote past where this one ends.
  for (let r = 0; r < 30; r++) await s.putMany('app', Array.from({ length: 100 }, (_, i) => [`/state/k${String(i)}`, `${String(r)}:`.padEnd(1000, 'x')] as const));
  const st = await s.stat();
  await s.close();
  const r = await fsckDevice(new MemoryDevice(img));
  assert.deepEqual([r.exitCode, r.findings], [0, []]);
  const again = await openMemory(img);
  assert.equal(again.openReport.tornTailAt, undefined);
  assert.equal(text(await again.get('app', '/state/k99')), '29:'.padEnd(1000, 'x'));
  await again.close();
  // Without the fix this image reported a torn tail with fault 'magic' right at the log's end.
  assert.ok(st.usedBytes > 0);
});

test('bytes that are no record after the log end, with no earlier life of the segment after them, are still a torn tail (info, exit 0)', async () => {
  const { img, tail } = await sample();
  // A write whose first bytes were lost and the rest is not a record of any life: crash residue.
  img.fill(0xa5, SEG0 + tail, SEG0 + tail + 200);
  const r = await fsckDevice(new MemoryDevice(img));
  assert.deepEqual([r.exitCode, reasons(r)], [0, ['torn-tail']]);
  assert.equal(r.findings[0]?.offset, SEG0 + tail);
});
