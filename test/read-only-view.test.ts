import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { isStatefsError } from '../src/errors.js';
import { readImageKind } from '../src/engine/superblock-io.js';
import { SEGMENT_RECORD_LENGTH } from '../src/format/segment.js';
import { segmentOffset } from '../src/format/superblock.js';
import { memoryImage, openMemory, text } from './helpers.js';
import { record } from './record-encoder.js';
import { guardResources } from './hygiene.js';

guardResources();

const key = (i: number): string => `/state/k${String(i).padStart(3, '0')}`;
const keys = Array.from({ length: 100 }, (_, i) => key(i));

/** A device over shared bytes that runs `gates[i].run` before the first read `gates[i].when` accepts (all reads wait meanwhile). */
class GatedReads extends MemoryDevice {
  reads = 0;
  private held: Promise<void> | undefined;
  constructor(
    bytes: Uint8Array,
    private readonly gates: { when: (n: number, offset: number, length: number) => boolean; run: () => Promise<void>; done?: boolean }[],
  ) {
    super(bytes);
  }
  override async read(offset: number, length: number): Promise<Uint8Array> {
    const n = ++this.reads;
    const gate = this.gates.find((g) => g.done !== true && g.when(n, offset, length));
    if (gate !== undefined) {
      gate.done = true;
      this.held = gate.run();
    }
    if (this.held !== undefined) await this.held;
    return super.read(offset, length);
  }
}

/** A live store whose snapshot's records sit among garbage, outside the log chain: the next GC moves them and frees their segments. */
async function liveOwner(): Promise<{ bytes: Uint8Array; owner: Store }> {
  const bytes = await memoryImage();
  const owner = await openMemory(bytes, { autoGc: false });
  for (let round = 0; round < 10; round++) {
    await owner.putMany('app', keys.slice(round * 10, round * 10 + 10).map((k, i) => [k, `0:${String(i)}:`.padEnd(300, 'x')] as const));
    await owner.putMany('junk', keys.map((k) => [k, ''.padEnd(300, 'j')] as const));
  }
  await owner.snapshot('app', 'S');
  for (let round = 0; round < 10; round++) await owner.putMany('junk', keys.map((k) => [k, ''.padEnd(300, 'k')] as const));
  await owner.checkpoint();
  return { bytes, owner };
}

/** The owner's GC moves the snapshot's records and frees their segments; its writes then take and rewrite them. */
async function moveAndRewrite(owner: Store, round: number): Promise<void> {
  const gc = await owner.gcNow();
  assert.ok(gc.segmentsFreed > 0);
  for (let i = 0; i < 30; i++) await owner.putMany('junk', keys.map((k) => [k, `${String(round)}:${String(i)}`.padEnd(300, 'z')] as const));
  await owner.checkpoint();
}

async function stateOf(store: Store, subject: string): Promise<string> {
  const out: string[] = [];
  for (const k of (await store.list(subject)).keys) out.push(`${k}=${text(await store.get(subject, k)) ?? ''}`);
  return out.join('\n');
}

test('a read-only open whose image its owner rewrites under the replay replays again and reads one consistent image (review: false EINTEGRITY)', async () => {
  // The owner writes before the replay's first read of a segment header, of the log chain (a
  // whole segment), and of the values (a run of segments).
  const reads: [string, (n: number, offset: number, length: number) => boolean][] = [
    ['header', (_n, _offset, length) => length === SEGMENT_RECORD_LENGTH],
    ['chain', (_n, _offset, length) => length === 256 * 1024],
    ['values', (_n, _offset, length) => length > 256 * 1024],
  ];
  for (const [at, when] of reads) {
    const { bytes, owner } = await liveOwner();
    let rewrote = 0;
    const device = new GatedReads(bytes, [
      {
        when,
        run: async () => {
          await moveAndRewrite(owner, rewrote);
          rewrote++;
        },
      },
    ]);
    const reader = await Store.openDevice(device, { readOnly: true });
    assert.equal(rewrote, 1, `the owner wrote before the ${at} read`);
    assert.equal(await stateOf(reader, 'app'), await stateOf(owner, 'app'), `owner wrote before the ${at} read`);
    assert.equal(await stateOf(reader, 'junk'), await stateOf(owner, 'junk'), `owner wrote before the ${at} read`);
    assert.equal(await reader.verifySnapshot('app', 'S'), await owner.verifySnapshot('app', 'S'));
    await reader.close();
    await owner.close();
  }
});

test('verifySnapshot on a read-only store whose image its owner has rewritten since the open is EBUSY, not EINTEGRITY (review)', async () => {
  const { bytes, owner } = await liveOwner();
  const reader = await Store.openDevice(new MemoryDevice(bytes), { readOnly: true });
  const digest = await reader.verifySnapshot('app', 'S');
  await moveAndRewrite(owner, 1);
  const got = await reader.verifySnapshot('app', 'S').then(
    (d) => d,
    (err: unknown) => (isStatefsError(err) ? err.code : String(err)),
  );
  assert.equal(got, 'EBUSY');
  // What it read at the open it still serves; a new open verifies the snapshot where it is now.
  assert.equal((await reader.get('app', key(0)))?.length, 300);
  await reader.close();
  const again = await Store.openDevice(new MemoryDevice(bytes), { readOnly: true });
  assert.equal(await again.verifySnapshot('app', 'S'), digest);
  await again.close();
  await owner.close();
});

test('verifySnapshot on a read-only store reads each value once and its segment header once, after it', async () => {
  const { bytes, owner } = await liveOwner();
  const device = new GatedReads(bytes, []);
  const reader = await Store.openDevice(device, { readOnly: true });
  const before = device.reads;
  await reader.verifySnapshot('app', 'S');
  // The snapshot's 100 values, each in one record: a read of the record and one of its segment's
  // header (the header read before the value proved nothing the one after does not).
  assert.equal(device.reads - before, 2 * keys.length);
  await reader.close();
  await owner.close();
});

test('a read-only open while its owner checkpoints and reuses the old checkpoint segment between the superblock reads and the header reads (review)', async () => {
  const bytes = await memoryImage();
  const owner = await openMemory(bytes, { autoGc: false });
  for (let r = 0; r < 5; r++) await owner.putMany('app', keys.map((k) => [k, String(r).padEnd(300, 'a')] as const));
  await owner.checkpoint();
  const kind = await readImageKind(new MemoryDevice(bytes));
  if (kind.kind === 'legacy-v1') return assert.fail('v3');
  const { ckptSegment, segmentSize } = kind.sb;
  const oldHeader = bytes.slice(segmentOffset(ckptSegment, segmentSize), segmentOffset(ckptSegment, segmentSize) + SEGMENT_RECORD_LENGTH);
  let rounds = 0;
  // The first segment header read (after the replay read the superblock slots).
  const device = new GatedReads(bytes, [{ when: (_n, _offset, length) => length === SEGMENT_RECORD_LENGTH, run: async () => {
    const now = (): Uint8Array => bytes.slice(segmentOffset(ckptSegment, segmentSize), segmentOffset(ckptSegment, segmentSize) + SEGMENT_RECORD_LENGTH);
    while (Buffer.compare(now(), oldHeader) === 0) {
      assert.ok(++rounds < 50, 'the old checkpoint segment was never reused');
      await owner.putMany('app', keys.map((k) => [k, `w${String(rounds)}`.padEnd(300, 'b')] as const));
      await owner.checkpoint();
    }
  } }]);
  const opened = await Store.openDevice(device, { readOnly: true }).then(
    (s) => s,
    (err: unknown) => err,
  );
  assert.ok(rounds > 0, 'the owner wrote under the replay');
  if (opened instanceof Store) {
    assert.equal(await stateOf(opened, 'app'), await stateOf(owner, 'app'));
    await opened.close();
  } else {
    await owner.close();
    assert.fail(`a read-only open while the owner wrote failed with ${isStatefsError(opened) ? `${opened.code}: ${opened.message}` : String(opened)}`);
  }
  await owner.close();
});

for (const [what, upgradeAt] of [
  ['inside readImageKind (after both slots read as no superblock, before byte 0 is read)', (_n: number, offset: number, length: number): boolean => offset === 0 && length === 16],
  ['between the kind check and the replay (the replay then reads a v3 image)', ((): ((n: number, offset: number, length: number) => boolean) => {
    let sawHead = false;
    return (_n, offset, length) => {
      if (offset === 0 && length === 16) sawHead = true;
      else if (sawHead && offset === 0) return true;
      return false;
    };
  })()],
] as const)
test(`a read-only open of a v1 image that its owner upgrades ${what} (review)`, async () => {
  const v1 = Buffer.concat(keys.map((k) => record(1, Buffer.from(k), Buffer.from(`v1 ${k}`))));
  const bytes = new Uint8Array(4 << 20);
  bytes.set(v1, 0);
  const owner = await openMemory(bytes, { autoGc: false });
  assert.equal(owner.openReport.format, 'legacy-v1');
  let segmentSize = 0;
  let upgradeCkpt = -1;
  let rounds = 0;
  const headerOf = (s: number): Uint8Array => bytes.slice(segmentOffset(s, segmentSize), segmentOffset(s, segmentSize) + SEGMENT_RECORD_LENGTH);
  let upgradeHeader: Uint8Array = new Uint8Array(0);
  const device = new GatedReads(bytes, [
    {
      // readImageKind's read of byte 0 (both slots read as no superblock: a v1 image); the replay's own readImageKind comes next.
      when: upgradeAt,
      run: async () => {
        await owner.put('legacy', '/state/first-write', 'upgrades the image');
        const kind = await readImageKind(new MemoryDevice(bytes));
        if (kind.kind === 'legacy-v1') return assert.fail('not upgraded');
        segmentSize = kind.sb.segmentSize;
        upgradeCkpt = kind.sb.ckptSegment;
        upgradeHeader = headerOf(upgradeCkpt);
      },
    },
    {
      // scanLog reading the checkpoint's segment (headers and superblock were read before the owner moved on).
      when: (_n, _offset, length) => segmentSize > 0 && length === segmentSize,
      run: async () => {
        while (Buffer.compare(headerOf(upgradeCkpt), upgradeHeader) === 0) {
          assert.ok(++rounds < 50, 'the upgrade checkpoint segment was never reused');
          await owner.putMany('legacy', [...keys, '/state/first-write'].map((k) => [k, `w${String(rounds)}`.padEnd(300, 'b')] as const));
          await owner.checkpoint();
        }
      },
    },
  ]);
  const opened = await Store.openDevice(device, { readOnly: true }).then(
    (s) => s,
    (err: unknown) => err,
  );
  try {
    if (!(opened instanceof Store)) assert.fail(`read-only open failed: ${isStatefsError(opened) ? `${opened.code}: ${opened.message}` : String(opened)}`);
    assert.ok(rounds > 0, 'the owner reused the segment under the replay');
    const got = (await opened.list('legacy')).keys.length;
    await opened.close();
    // A consistent image has all 100 v1 keys (plus the first write): the v1 state or a later one, never fewer.
    assert.ok(got >= keys.length, `the read-only store sees ${String(got)} keys of subject legacy`);
  } finally {
    await owner.close();
  }
});

/**
 * A read of a whole segment is not atomic against the owner's writes on a file image: Linux copies a
 * buffered pread page by page without the inode lock, so a read that copied the page holding the
 * tail before the owner's next write, and the later pages after it and one more, sees the tail's
 * page old and the pages after it new. Modelled here: the scan's read of the head segment returns
 * the tail's page as before two appends and every later page as after them.
 */
test('a read-only open whose read of the head segment straddles two appends of its owner (page-granular torn read; review)', async () => {
  const bytes = await memoryImage();
  const owner = await openMemory(bytes, { autoGc: false });
  await owner.put('app', '/state/a', 'a'.padEnd(1000, 'a'));
  const kind = await readImageKind(new MemoryDevice(bytes));
  if (kind.kind === 'legacy-v1') return assert.fail('v3');
  const { segmentSize } = kind.sb;
  let torn = false;
  const device = new (class extends MemoryDevice {
    override async read(offset: number, length: number): Promise<Uint8Array> {
      // The scan's first whole-segment read: the log's only segment, the head.
      if (torn || length !== segmentSize) return super.read(offset, length);
      torn = true;
      const old = await super.read(offset, length);
      // Two batches, each crossing into the next page.
      await owner.put('app', '/state/b', 'b'.padEnd(5000, 'b'));
      await owner.put('app', '/state/c', 'c'.padEnd(5000, 'c'));
      const now = await super.read(offset, length);
      const tail = now.findIndex((b, i) => b !== old[i]); // where the appends began
      assert.ok(tail > 0, 'the owner appended to the segment read');
      const page = Math.floor(tail / 4096) * 4096;
      const out = now.slice();
      out.set(old.subarray(page, page + 4096), page); // the tail's page as copied before the appends
      return out;
    }
  })(bytes);
  const opened = await Store.openDevice(device, { readOnly: true }).then(
    (s) => s,
    (err: unknown) => err,
  );
  assert.ok(torn);
  try {
    if (!(opened instanceof Store)) assert.fail(`read-only open failed: ${isStatefsError(opened) ? `${opened.code}: ${opened.message}` : String(opened)}`);
    assert.equal(text(await opened.get('app', '/state/a'))?.length, 1000);
    await opened.close();
  } finally {
    await owner.close();
  }
});
