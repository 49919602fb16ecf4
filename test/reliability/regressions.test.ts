import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FaultDevice } from '../../src/device/fault-device.js';
import { MemoryDevice } from '../../src/device/memory-device.js';
import { Store } from '../../src/engine/store.js';
import { memoryImage, text } from '../helpers.js';
import { boundaries } from './crash-image.js';
import { guardResources } from '../hygiene.js';

/** Regression tests for the engine bugs the reliability suite found (docs/reliability.md). */

/** The disk after the last write of the trace, with the bytes [from, to) of that write lost. */
async function lastWriteWithHole(base: Uint8Array, run: (s: Store) => Promise<void>, hole: (write: { offset: number; length: number }) => [number, number]): Promise<Uint8Array> {
  const device = new FaultDevice(base, { trace: true });
  const store = await Store.openDevice(device, { autoGc: false });
  await run(store);
  const events = device.trace.length;
  let image: Uint8Array | undefined;
  for (const b of boundaries(base, device.trace)) {
    // The last journal write: just before the flush that ends the run.
    if (b.at === events - 1) {
      const w = b.unsynced.at(-1);
      assert.ok(w !== undefined, 'the run ends with a write and its flush');
      const [from, to] = hole({ offset: w.offset, length: w.data.length });
      const kept = new Uint8Array(w.data);
      kept.set(b.durable.subarray(w.offset + from, w.offset + to), from);
      image = b.durable.slice();
      image.set(kept, w.offset);
    }
  }
  await store.close();
  assert.ok(image !== undefined);
  return image;
}


guardResources();

test('a write that reaches the disk with an earlier sector missing is a torn tail, and the log goes on in a fresh segment', async () => {
  const base = await memoryImage();
  const value = 'v'.repeat(3000);
  // The last write: one batch (a 3 KB put and its SYNC); its second 512-byte sector is lost.
  const image = await lastWriteWithHole(
    base,
    async (s) => {
      await s.put('app', '/state/old', 'old');
      await s.put('app', '/state/new', value);
    },
    () => [512, 1024],
  );
  // It used to be EINTEGRITY ("damaged record followed by valid records"): the store could not open.
  const store = await Store.openDevice(new MemoryDevice(image));
  assert.notEqual(store.openReport.tornTailAt, undefined);
  assert.equal(text(await store.get('app', '/state/old')), 'old');
  assert.equal(await store.get('app', '/state/new'), undefined);
  // A shorter batch where the torn one was would leave its SYNC behind: the log must move on.
  await store.put('app', '/state/after', 'a');
  await store.close();
  const again = await Store.openDevice(new MemoryDevice(image));
  assert.equal(text(await again.get('app', '/state/after')), 'a');
  assert.equal(text(await again.get('app', '/state/old')), 'old');
  await again.close();
});

test('two batches sealed in one round (a put, then a checkpoint) are written with one write each', async () => {
  const base = await memoryImage();
  const device = new FaultDevice(base, { trace: true });
  const store = await Store.openDevice(device, { autoGc: false });
  await store.put('app', '/state/a', 'a');
  const before = device.trace.length;
  // Same tick: the put's batch is open when the checkpoint starts its own batch.
  await Promise.all([store.put('app', '/state/b', 'b'.repeat(2000)), store.checkpoint()]);
  const writes = device.trace.slice(before).filter((e) => e.kind === 'write');
  const flushes = device.trace.slice(before).filter((e) => e.kind === 'flush');
  await store.close();
  // One write and flush for the put's batch, one for the checkpoint's, and one for each
  // superblock slot (both name the new checkpoint: statefs-v3.md 7.2, step 4).
  assert.equal(writes.length, 4, JSON.stringify(device.trace.slice(before).map((e) => e.kind)));
  assert.equal(flushes.length, 4);
});
