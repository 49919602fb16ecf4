import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { isStatefsError } from '../src/errors.js';
import { memoryImage, openMemory, text } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

const key = (i: number): string => `/state/k${String(i).padStart(3, '0')}`;
const keys = Array.from({ length: 100 }, (_, i) => key(i));

/** A view of the same bytes as a live store's device, whose `at`-th read first lets `meanwhile` run (the owner writing). */
class InterleavedDevice extends MemoryDevice {
  reads = 0;
  constructor(
    bytes: Uint8Array,
    private readonly at: number,
    private readonly meanwhile: () => Promise<void>,
  ) {
    super(bytes);
  }
  override async read(offset: number, length: number): Promise<Uint8Array> {
    if (++this.reads === this.at) await this.meanwhile();
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
  // Its replay reads the two superblock slots, the 15 segment headers, the log chain, then the values: the owner writes before each kind.
  for (const at of [3, 18, 19]) {
    const { bytes, owner } = await liveOwner();
    let rewrote = 0;
    const device = new InterleavedDevice(bytes, at, async () => {
      await moveAndRewrite(owner, at);
      rewrote++;
    });
    const reader = await Store.openDevice(device, { readOnly: true });
    assert.equal(rewrote, 1, `the owner wrote under read ${String(at)}`);
    assert.equal(await stateOf(reader, 'app'), await stateOf(owner, 'app'), `read ${String(at)}`);
    assert.equal(await stateOf(reader, 'junk'), await stateOf(owner, 'junk'), `read ${String(at)}`);
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
