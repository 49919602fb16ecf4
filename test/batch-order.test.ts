import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { GROUP_FROM, directoryOrder } from '../src/engine/batch-order.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { replayImage } from '../src/engine/replay.js';
import { Store } from '../src/engine/store.js';
import { Op } from '../src/format/opcodes.js';
import { MiB, memoryImage, openMemory } from './helpers.js';
import { guardResources } from './hygiene.js';
import { recordsOf } from './reliability/image-records.js';

guardResources();

const parentOf = (bin: string): string => bin.slice(0, bin.lastIndexOf('/') + 1);

// Keys under a few directories (some nested, some at the root), repeats allowed.
const keyArb = fc.tuple(fc.constantFrom('/a/', '/b/', '/a/x/', '/', '/c/d/e/'), fc.nat({ max: 30 })).map(([dir, n]) => `${dir}k${n}`);

test('directoryOrder: a permutation grouping keys by parent, groups by first appearance, the order given within each', () => {
  fc.assert(
    fc.property(fc.array(keyArb, { minLength: 0, maxLength: 3 * GROUP_FROM, size: 'max' }), (bins) => {
      const order = [...directoryOrder(bins)];
      assert.deepEqual([...order].sort((a, b) => a - b), bins.map((_, i) => i), 'every entry once');
      if (bins.length < GROUP_FROM) {
        assert.deepEqual(order, bins.map((_, i) => i), 'a small batch keeps the order given');
        return;
      }
      // Each directory's entries are contiguous, in the order given.
      const dirs = order.map((i) => parentOf(bins[i] ?? ''));
      const firstSeen = [...new Set(bins.map(parentOf))];
      assert.deepEqual(dirs.filter((d, j) => j === 0 || dirs[j - 1] !== d), firstSeen, 'one run per directory, in order of first appearance');
      for (let j = 1; j < order.length; j++) {
        if (dirs[j] === dirs[j - 1]) assert.ok((order[j] ?? 0) > (order[j - 1] ?? 0), `within ${dirs[j] ?? ''}: the order given`);
      }
    }),
    { numRuns: 500 },
  );
});

test('putMany of a large batch interleaving directories over existing keys and a snapshot, with keys given twice, reads, lists, accounts and replays as given', async () => {
  const device = new MemoryDevice(await memoryImage(16 * MiB));
  const store = await Store.openDevice(device, { autoGc: false });
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  const sorted = (keys: Iterable<string>): string[] => [...keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  // Keys written before: the batch replaces some, and a snapshot holds their old values.
  const before = new Map<string, Uint8Array>();
  for (let i = 0; i < 40; i++) before.set(`/state/app${i % 4}/k${i}`, enc(`old${i}`));
  await store.putMany('app', [...before]);
  await store.snapshot('app', 'before');
  const batch: [string, Uint8Array][] = [];
  const want = new Map(before);
  // More distinct keys than UNDO_BUILD_LIMIT (256), so the committed tree is built mid-batch.
  for (let i = 0; i < 5 * GROUP_FROM; i++) {
    // Four directories interleaved; every seventh entry repeats a key given earlier in the batch.
    const key = i % 7 === 6 ? (batch[i - 5]?.[0] ?? '/state/none') : `/state/app${i % 4}/k${i}`;
    // A value too large for a run (a PUT record of its own) and an empty one among the small.
    const value = i === 100 ? new Uint8Array(20_000).fill(7) : i === 101 ? new Uint8Array(0) : enc(`v${i}`);
    batch.push([key, value]);
    want.set(key, value);
  }
  await store.putMany('app', batch);
  const check = async (s: Store, where: string): Promise<void> => {
    for (const [k, v] of want) assert.deepEqual(await s.get('app', k), v, `${where}: ${k}`);
    assert.deepEqual((await s.list('app', '/state/', { limit: 10_000 })).keys, sorted(want.keys()), `${where}: keys`);
    // The snapshot still holds the values the batch replaced.
    const diff = await s.diffSnaps('app', 'before', '@live');
    assert.deepEqual(sorted(diff.changed), sorted([...before.keys()].filter((k) => want.get(k) !== before.get(k))), `${where}: replaced since the snapshot`);
    await s.verifySnapshot('app', 'before');
  };
  await check(store, 'live');
  const stat = await store.stat();
  const app = stat.subjects.find((s) => s.subject === 'app');
  assert.ok(app !== undefined);
  // What the writer counted is what a walk of the index finds (no repeated key counted twice).
  assert.equal(app.usedBytes, app.liveBytes + app.snapshotOnlyBytes);
  await store.sync();
  const reopened = await openMemory(device.bytes.slice(), { autoGc: false });
  await check(reopened, 'after replay');
  const again = await reopened.stat();
  assert.deepEqual(again.subjects, stat.subjects, "replay's space figures are the writer's");
  await reopened.close();
  await store.close();
});

/** A memory device whose writes wait while it is held (a round kept in flight). */
class HeldDevice extends MemoryDevice {
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;
  hold(): void {
    this.gate = new Promise((resolve) => (this.open = resolve));
  }
  release(): void {
    this.open?.();
    this.gate = undefined;
  }
  override async write(offset: number, data: Uint8Array): Promise<void> {
    const copy = data.slice(); // the journal may reuse its buffer once the write resolves
    await this.gate;
    await super.write(offset, copy);
  }
}

test('replay indexes a batch\'s puts grouped by directory, yet before any other record of the batch (a delete and a snapshot between puts of the same keys)', async () => {
  const device = new HeldDevice(await memoryImage(8 * MiB));
  const store = await Store.openDevice(device, { autoGc: false });
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  const many = (tag: string): [string, Uint8Array][] => Array.from({ length: GROUP_FROM }, (_, i) => [`/state/d${i % 3}/k${i}`, enc(`${tag}${i}`)]);
  // A round kept in flight: everything appended meanwhile is written as the next round, one batch.
  device.hold();
  const first = store.put('app', '/state/first', enc('x'));
  await new Promise((resolve) => setImmediate(resolve));
  const pending = [
    store.putMany('app', many('a')),
    store.snapshot('app', 'mid'),
    store.putMany('app', many('c')),
    store.delete('app', '/state/d0/k0'),
    store.snapshot('app', 'gone'),
    store.putMany('app', many('b')),
  ];
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  device.release();
  await Promise.all([first, ...pending]);
  await store.sync();
  // The image holds them as one batch, in this order, then one SYNC.
  const ops = recordsOf(device.bytes).map((r) => r.opcode);
  const snapAt = ops.indexOf(Op.SNAPSHOT);
  const batch = ops.slice(ops.lastIndexOf(Op.SYNC, snapAt) + 1, ops.indexOf(Op.SYNC, snapAt));
  const order = batch.filter((op, i) => op !== batch[i - 1]);
  assert.deepEqual(order, [Op.PUTRUN, Op.SNAPSHOT, Op.PUTRUN, Op.DELETE, Op.SNAPSHOT, Op.PUTRUN], `one batch: ${batch.join(',')}`);
  const want = async (s: Store, where: string): Promise<void> => {
    assert.deepEqual(await s.get('app', '/state/d0/k0'), enc('b0'), `${where}: put again after its delete`);
    assert.deepEqual(await s.get('app', '/state/d2/k2'), enc('b2'), where);
    // 'mid' holds every a-value (taken right after their puts); 'gone' every c-value but k0's (deleted right after its put).
    const mid = await s.diffSnaps('app', 'mid', '@live');
    assert.deepEqual([mid.added, mid.removed, mid.changed.length], [[], [], GROUP_FROM], `${where}: mid`);
    const gone = await s.diffSnaps('app', 'gone', '@live');
    assert.deepEqual([gone.added, gone.removed, gone.changed.length], [['/state/d0/k0'], [], GROUP_FROM - 1], `${where}: gone`);
  };
  await want(store, 'live');
  const reopened = await openMemory(device.bytes.slice(), { autoGc: false });
  await want(reopened, 'after replay');
  await reopened.close();
  await store.close();
});

test('replay makes each subject\'s tree at its first put, as in record order, though it groups puts by directory across subjects', async () => {
  const device = new HeldDevice(await memoryImage(8 * MiB));
  const store = await Store.openDevice(device, { autoGc: false });
  const batchOf = (dir: string): [string, Uint8Array][] => Array.from({ length: GROUP_FROM }, (_, i) => [`/state/${dir}/k${i}`, new Uint8Array([i])]);
  device.hold();
  const first = store.put('first', '/state/k', new Uint8Array([1]));
  await new Promise((resolve) => setImmediate(resolve));
  // One batch: subjects a, b, c; a's and c's keys share a directory, so grouping puts c's before b's.
  const pending = [store.putMany('a', batchOf('x')), store.putMany('b', batchOf('y')), store.putMany('c', batchOf('x'))];
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
  device.release();
  await Promise.all([first, ...pending]);
  await store.sync();
  const replayed = await replayImage(new MemoryDevice(device.bytes.slice()), 'legacy');
  assert.deepEqual([...replayed.index.keys()], ['first', 'a', 'b', 'c']);
  for (const subject of ['a', 'b', 'c']) assert.equal(replayed.index.get(subject)?.size, GROUP_FROM, subject);
  await store.close();
});

test('readers see a putMany of 256 entries or more only once it is durable, with another such batch and a lone put on top of it in flight', async () => {
  const device = new HeldDevice(await memoryImage(8 * MiB));
  const store = await Store.openDevice(device, { autoGc: false });
  const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
  const text = (v: Uint8Array | undefined): string | undefined => (v === undefined ? undefined : new TextDecoder().decode(v));
  const batch = (tag: string, n: number): [string, Uint8Array][] => Array.from({ length: n }, (_, i) => [`/state/d${i % 4}/k${i}`, enc(`${tag}${i}`)]);
  try {
    await store.putMany('app', batch('old', 300));
    const reads = async (): Promise<(string | number | undefined)[]> => [
      text(await store.get('app', '/state/d1/k1')),
      text(store.getSync('app', '/state/d3/k299')),
      text(store.getSync('app', '/state/d3/k311')),
      text(await store.get('app', '/state/lone')),
      (await store.list('app', '/state/d0/', { limit: 1000 })).keys.length,
    ];
    device.hold();
    const first = store.putMany('app', batch('new', 300)); // its round is held in flight
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
    const second = store.putMany('app', batch('newer', 320)); // the next round, on top of it
    const lone = store.put('app', '/state/lone', 'x');
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(await reads(), ['old1', 'old299', undefined, undefined, 75], 'while both rounds are in flight');
    device.release();
    await first;
    await Promise.all([second, lone]);
    assert.deepEqual(await reads(), ['newer1', 'newer299', 'newer311', 'x', 80], 'once durable');
    await store.put('app', '/state/d1/k1', 'lone again'); // a lone write after the batches
    assert.equal(text(await store.get('app', '/state/d1/k1')), 'lone again');
    const reopened = await openMemory(device.bytes.slice(), { autoGc: false });
    assert.equal(text(await reopened.get('app', '/state/d3/k311')), 'newer311');
    assert.equal(text(await reopened.get('app', '/state/d1/k1')), 'lone again');
    await reopened.close();
  } finally {
    device.release();
    await store.close();
  }
});
