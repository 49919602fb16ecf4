// The log writes zeros ahead of its tail in segments it takes fresh on a sparse device
// (journal-writer.ts `PAD_AHEAD`, docs/storage/statefs-v3.md 5.2): what it writes, where it
// does not, what happens when the file system has no room for the zeros, and crashes at
// every write of such a workload.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FaultDevice, type TraceEvent } from '../src/device/fault-device.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { fsckDevice } from '../src/engine/fsck.js';
import { PAD_AHEAD } from '../src/engine/journal-writer.js';
import { Store } from '../src/engine/store.js';
import { StatefsError } from '../src/errors.js';
import { SEGMENT_RECORD_LENGTH } from '../src/format/segment.js';
import { segmentOffset } from '../src/format/superblock.js';
import { memoryImage, text } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

type Write = Extract<TraceEvent, { kind: 'write' }>;

function writesOf(device: FaultDevice): Write[] {
  return device.trace.filter((e): e is Write => e.kind === 'write');
}

/** Whether every byte of `bytes` from `from` on is zero. */
function zerosFrom(bytes: Uint8Array, from: number): boolean {
  return bytes.subarray(from).every((b) => b === 0);
}

const value = (i: number): string => `value ${i} `.repeat(8);

/** The segment a byte offset of the image falls in, and where in it. */
function place(offset: number, segmentSize: number): { segment: number; at: number } {
  const rel = offset - segmentOffset(0, segmentSize);
  return { segment: Math.floor(rel / segmentSize), at: rel - Math.floor(rel / segmentSize) * segmentSize };
}

/** Whether `w` writes a segment's start (its header), other than the first segment's. */
function isHeader(w: Write, segmentSize: number): boolean {
  const p = place(w.offset, segmentSize);
  return p.at === 0 && p.segment > 0;
}

/** Small durable puts, one at a time, until the log has taken `segments` segments after the one it opened in. */
async function putUntilRolled(store: Store, device: FaultDevice, segmentSize: number, segments: number): Promise<number> {
  const headers = (): number => writesOf(device).filter((w) => isHeader(w, segmentSize)).length;
  let i = 0;
  while (headers() < segments) await store.put('app', `/state/k${i}`, value(i++));
  // and a few more in the last segment taken
  for (let j = 0; j < 20; j++) await store.put('app', `/state/k${i}`, value(i++));
  return i;
}

test('on a sparse device the log writes zeros ahead of its tail in the segments it takes fresh, within them', async () => {
  const base = await memoryImage();
  const device = new FaultDevice(base, { trace: true, sparse: true });
  const store = await Store.openDevice(device);
  const segmentSize = (await store.stat()).segmentSize;
  // The segment the log opened in has a header: its writes are the records alone.
  const first = writesOf(device).length;
  await store.put('app', '/state/first', 'v');
  const own = writesOf(device).slice(first);
  assert.equal(own.length, 1);
  assert.equal(own[0]?.data.length, 15 + 'app\0/state/first'.length + 1 + 27, 'no zeros in a segment written before the open');

  const n = await putUntilRolled(store, device, segmentSize, 2);
  const writes = writesOf(device);
  for (const w of writes) {
    assert.equal(place(w.offset + w.data.length - 1, segmentSize).segment, place(w.offset, segmentSize).segment, `write at ${w.offset} of ${w.data.length} bytes stays in its segment`);
  }
  // Each fresh segment's header goes with zeros behind it, so its first commits find blocks written.
  const headers = writes.filter((w) => isHeader(w, segmentSize));
  assert.equal(headers.length, 2);
  for (const h of headers) {
    assert.ok(h.data.length > SEGMENT_RECORD_LENGTH && h.data.length <= PAD_AHEAD + 4096, `header write of ${h.data.length} bytes`);
    assert.ok(zerosFrom(h.data, SEGMENT_RECORD_LENGTH), 'only zeros after the header');
  }
  // Past the zeros, a commit writes zeros again (fewer writes carry zeros than commits).
  const inFresh = writes.filter((w) => headers.some((h) => w.offset > h.offset && w.offset < h.offset + segmentSize));
  const padded = inFresh.filter((w) => w.data.length > 1000);
  assert.ok(inFresh.length > 20 && padded.length >= 1 && padded.length < inFresh.length / 4, `${padded.length} of ${inFresh.length} commits in fresh segments carry zeros`);
  // A commit here is one put (under 200 bytes with its SYNC): whatever follows it is zeros, not
  // bytes left in a reused buffer.
  for (const w of padded) assert.ok(zerosFrom(w.data, 200), `the write at ${w.offset} carries only zeros after its records`);
  await store.close();

  // What is durable opens with every value, and passes fsck.
  const image = device.powerCut();
  assert.equal((await fsckDevice(new MemoryDevice(image.slice()))).exitCode, 0);
  const reopened = await Store.openDevice(new MemoryDevice(image));
  for (const i of [0, Math.floor(n / 2), n - 1]) assert.equal(text(await reopened.get('app', `/state/k${i}`)), value(i));
  await reopened.close();

  // The same workload on a device that is not sparse writes no zeros: every write is records.
  const plain = new FaultDevice(base, { trace: true });
  const plainStore = await Store.openDevice(plain);
  await putUntilRolled(plainStore, plain, segmentSize, 2);
  await plainStore.close();
  const plainBytes = writesOf(plain).reduce((sum, w) => sum + w.data.length, 0);
  const sparseBytes = writes.reduce((sum, w) => sum + w.data.length, 0);
  assert.ok(writesOf(plain).every((w) => !isHeader(w, segmentSize) || w.data.length === SEGMENT_RECORD_LENGTH), 'plain headers are written alone');
  assert.ok(sparseBytes > plainBytes, `${sparseBytes} bytes written with zeros ahead, ${plainBytes} without`);
});

test('a write refused for want of room is made again without the zeros, and the store goes on', async () => {
  const base = await memoryImage();
  // Find the write that carries the first fresh segment's header and its zeros.
  const probe = new FaultDevice(base, { trace: true, sparse: true });
  const probeStore = await Store.openDevice(probe);
  const segmentSize = (await probeStore.stat()).segmentSize;
  const n = await putUntilRolled(probeStore, probe, segmentSize, 1);
  await probeStore.close();
  const probeWrites = writesOf(probe);
  const headerAt = probeWrites.findIndex((w) => isHeader(w, segmentSize));
  assert.ok(headerAt >= 0 && (probeWrites[headerAt]?.data.length ?? 0) > SEGMENT_RECORD_LENGTH);

  // The same run, with the file system out of room for that write only.
  const device = new FaultDevice(base, { trace: true, sparse: true, failWrite: { at: headerAt + 1, code: 'ENOSPC' } });
  const store = await Store.openDevice(device);
  for (let i = 0; i < n; i++) await store.put('app', `/state/k${i}`, value(i));
  assert.equal(device.injected, 1, 'the padded write was refused');
  const writes = writesOf(device);
  const header = writes.find((w) => w.offset === probeWrites[headerAt]?.offset);
  assert.equal(header?.data.length, SEGMENT_RECORD_LENGTH, 'the header is written again alone');
  const segment = place(header.offset, segmentSize).segment;
  assert.ok(
    writes.filter((w) => place(w.offset, segmentSize).segment === segment).every((w) => w.data.length < 1000),
    'no zeros in the rest of that segment',
  );
  await store.close();
  const reopened = await Store.openDevice(new MemoryDevice(device.powerCut()));
  for (let i = 0; i < n; i++) assert.equal(text(await reopened.get('app', `/state/k${i}`)), value(i));
  await reopened.close();
});

test('a power cut at any write of a workload with zeros ahead keeps every acknowledged put, torn or not', async () => {
  // A durable image whose log ends ~10 KiB before its segment does, so the workload below takes a
  // fresh segment (its header and zeros in one write) and goes on past the first zeros.
  const setup = new FaultDevice(await memoryImage(), { trace: true });
  const setupStore = await Store.openDevice(setup);
  const segmentSize = (await setupStore.stat()).segmentSize;
  const big = (i: number): string => `${i} `.padEnd(1000, 'x');
  for (let i = 0; ; i++) {
    await setupStore.put('app', `/state/setup${i % 50}`, big(i));
    const last = writesOf(setup).at(-1);
    if (last !== undefined && place(last.offset + last.data.length, segmentSize).at > segmentSize - 10_000) break;
  }
  const base = setup.powerCut();
  const count = 100; // ~106 KB of records: into the fresh segment and past its first 64 KiB of zeros

  const probe = new FaultDevice(base, { sparse: true, trace: true });
  const probeStore = await Store.openDevice(probe);
  const writesBefore = probe.writes;
  for (let i = 0; i < count; i++) await probeStore.put('app', `/state/k${i}`, big(i));
  const padded = writesOf(probe).filter((w) => w.data.length > 2000).length;
  assert.ok(padded >= 2, `${padded} writes carry zeros`);
  const total = probe.writes - writesBefore;
  await probeStore.close();

  let cuts = 0;
  for (let cut = 1; cut <= total; cut++) {
    for (const tornBytes of [0, 7, 4096 + 11]) {
      const device = new FaultDevice(base, { sparse: true, crash: { atWrite: writesBefore + cut, tornBytes } });
      const store = await Store.openDevice(device);
      let acked = 0;
      for (let i = 0; i < count; i++) {
        try {
          await store.put('app', `/state/k${i}`, big(i));
          acked = i + 1;
        } catch (err) {
          assert.ok(err instanceof StatefsError && err.code === 'EIO', `put ${i}: ${String(err)}`);
          break;
        }
      }
      await store.close();
      const image = device.diskImage();
      const after = await Store.openDevice(new MemoryDevice(image.slice()));
      for (let i = 0; i < acked; i++) assert.equal(text(await after.get('app', `/state/k${i}`)), big(i), `cut ${cut} torn ${tornBytes}: put ${i} was acknowledged`);
      const next = await after.get('app', `/state/k${acked}`);
      assert.ok(next === undefined || text(next) === big(acked), `cut ${cut} torn ${tornBytes}: the put in flight is whole or absent`);
      assert.equal(await after.get('app', `/state/k${acked + 1}`), undefined, `cut ${cut} torn ${tornBytes}: nothing past the put in flight`);
      await after.put('app', '/state/after', 'writes go on');
      await after.close();
      if (cut % 10 === 0 && tornBytes === 7) assert.equal((await fsckDevice(new MemoryDevice(image))).exitCode === 2, false, `cut ${cut}: fsck finds no unrecoverable damage`);
      cuts++;
    }
  }
  assert.ok(cuts >= 3 * count, `${cuts} crash states checked`);
});

test('a segment the log takes again after GC freed it, or one written before the open, gets no zeros', async () => {
  const device = new FaultDevice(await memoryImage(), { trace: true, sparse: true });
  const store = await Store.openDevice(device);
  const segmentSize = (await store.stat()).segmentSize;
  const big = new Uint8Array(20_000).fill(1);
  /** Header writes per segment, in order. */
  const headerWrites = (): Map<number, Write[]> => {
    const bySegment = new Map<number, Write[]>();
    for (const w of writesOf(device)) {
      if (!isHeader(w, segmentSize)) continue;
      const segment = place(w.offset, segmentSize).segment;
      bySegment.set(segment, [...(bySegment.get(segment) ?? []), w]);
    }
    return bySegment;
  };
  const retaken = (): number => [...headerWrites().values()].filter((list) => list.length >= 2).length;
  // Overwrites of a few keys make garbage; GC empties segments, and the log comes back to them.
  for (let i = 0; i < 2000 && retaken() < 2; i++) {
    await store.put('app', `/state/k${i % 8}`, big);
    if (i % 25 === 24) await store.gcNow();
  }
  assert.ok(retaken() >= 2, 'the log took segments again');
  for (const [segment, list] of headerWrites()) {
    assert.ok((list[0]?.data.length ?? 0) > SEGMENT_RECORD_LENGTH, `segment ${segment}, first taken: its header goes with zeros`);
    for (const later of list.slice(1)) assert.equal(later.data.length, SEGMENT_RECORD_LENGTH, `segment ${segment}, taken again: its header alone`);
  }
  await store.close();

  // Reopened, every segment the log wrote has a header: none of them gets zeros again.
  const written = new Set(headerWrites().keys());
  const again = new FaultDevice(device.powerCut(), { trace: true, sparse: true });
  const reopened = await Store.openDevice(again);
  for (let i = 0; i < 300; i++) {
    await reopened.put('app', `/state/k${i % 8}`, big);
    if (i % 25 === 24) await reopened.gcNow();
  }
  const rewritten = writesOf(again).filter((w) => isHeader(w, segmentSize) && written.has(place(w.offset, segmentSize).segment));
  assert.ok(rewritten.length >= 1, 'the reopened log took a segment written before');
  for (const w of rewritten) assert.equal(w.data.length, SEGMENT_RECORD_LENGTH, `segment ${place(w.offset, segmentSize).segment}: written before the open, its header alone`);
  await reopened.close();
});
