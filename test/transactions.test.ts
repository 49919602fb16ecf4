import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FaultDevice } from '../src/device/fault-device.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import { StatefsError } from '../src/errors.js';
import { memoryImage, openMemory, rng, text } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

const code = (c: string) => (err: unknown) => err instanceof StatefsError && err.code === c;

test('a transaction commits all its writes at once; others never see them before', async () => {
  const img = await memoryImage();
  const s = await openMemory(img);
  await s.put('app', '/state/old', 'x');
  const t = s.begin('app');
  await t.put('app', '/state/a', '1');
  await t.put('app', '/state/big', new Uint8Array(40_000).fill(9)); // three PAYLOAD chunks
  await t.delete('app', '/state/old');
  assert.equal(text(await t.get('app', '/state/a')), '1');
  assert.equal(await t.get('app', '/state/old'), undefined);
  assert.equal(await s.get('app', '/state/a'), undefined);
  assert.equal(text(await s.get('app', '/state/old')), 'x');
  await t.commit();
  assert.equal(text(await s.get('app', '/state/a')), '1');
  assert.equal(await s.get('app', '/state/old'), undefined);
  await assert.rejects(t.put('app', '/state/b', '2'), code('EBADF'));
  await assert.rejects(t.commit(), code('EBADF'));
  await s.close();
  for (let i = 0; i < 2; i++) {
    // Replay is idempotent: the same image opened twice gives the same state.
    const r = await openMemory(img);
    assert.deepEqual(await r.get('app', '/state/big'), new Uint8Array(40_000).fill(9));
    assert.deepEqual((await r.list('app')).keys, ['/state/a', '/state/big']);
    await r.close();
  }
});

test('abort discards; caps give EAGAIN, EFBIG and EXDEV', async () => {
  const s = await openMemory(await memoryImage(), { txnLimits: { perStore: 10 } });
  const t = s.begin('app');
  await t.put('app', '/state/a', '1');
  await t.abort();
  assert.equal(await s.get('app', '/state/a'), undefined);
  await assert.rejects(t.abort(), code('EBADF'));
  const open = Array.from({ length: 8 }, () => s.begin('app'));
  assert.throws(() => s.begin('app'), code('EAGAIN'));
  s.begin('other');
  s.begin('other');
  assert.throws(() => s.begin('third'), code('EAGAIN'));
  for (const o of open) await o.abort();
  const big = s.begin('app');
  await assert.rejects(big.put('other', '/state/x', '1'), code('EXDEV'));
  for (let i = 0; i < 32; i++) await big.put('app', `/state/k${i}`, 'v');
  await assert.rejects(big.put('app', '/state/k32', 'v'), code('EFBIG'));
  const heavy = s.begin('app');
  await heavy.put('app', '/state/h1', new Uint8Array(65_536));
  await heavy.put('app', '/state/h2', new Uint8Array(65_536));
  await assert.rejects(heavy.put('app', '/state/h3', new Uint8Array(1)), code('EFBIG'));
  await s.close();
});

test('tree rules apply inside a transaction and again at commit', async () => {
  const s = await openMemory(await memoryImage());
  const t = s.begin('app');
  await t.put('app', '/state/a/b', '1');
  await assert.rejects(t.put('app', '/state/a', 'x'), code('EISDIR'));
  await t.delete('app', '/state/a/b');
  await t.put('app', '/state/a', 'now a value');
  const u = s.begin('app');
  await u.put('app', '/state/a/c', 'child');
  await t.commit();
  await assert.rejects(u.commit(), code('ENOTDIR')); // /state/a holds a value now
  assert.equal(await s.get('app', '/state/a/c'), undefined);
  await s.close();
});

test('crash at every device write of 500 transactions: each is whole or absent, every acknowledged one present', async () => {
  const seed = Number(process.env.STATEFS_SEED ?? 7);
  const rand = rng(seed);
  interface Txn {
    writes: Map<string, Uint8Array>;
  }
  const txns: Txn[] = [];
  for (let i = 0; i < 500; i++) {
    const writes = new Map<string, Uint8Array>();
    const n = 2 + Math.floor(rand() * 31);
    while (writes.size < n) {
      const size = rand() < 0.02 ? 60_000 : Math.floor(rand() * 200);
      writes.set(`/state/k${Math.floor(rand() * 400)}`, new Uint8Array(size).fill(i % 251));
    }
    // keep each transaction under the 128 KiB cap
    let total = 0;
    for (const [k, v] of writes) {
      total += v.length;
      if (total > 120_000) writes.delete(k);
    }
    txns.push({ writes });
  }
  const base = await memoryImage(16 << 20);
  const runAll = async (device: FaultDevice): Promise<number> => {
    const store = await Store.openDevice(device, { checkpointBytes: 512 * 1024 });
    let acked = 0;
    try {
      for (let i = 0; i < txns.length; i += 4) {
        const group = txns.slice(i, i + 4);
        if (device.crashed) return i; // a background checkpoint hit the crash
        const txs = group.map(() => store.begin('app'));
        await Promise.all(txs.map((tx, j) => Promise.all([...(group[j]?.writes ?? [])].map(([k, v]) => tx.put('app', k, v)))));
        // Commits issued in array order append in that order: the log order is the array order.
        const results = await Promise.allSettled(txs.map((tx) => tx.commit()));
        const firstFailed = results.findIndex((r) => r.status === 'rejected');
        if (firstFailed !== -1) return i + firstFailed;
        acked = i + group.length;
      }
    } finally {
      await store.close();
    }
    return acked;
  };
  const probe = new FaultDevice(base);
  await runAll(probe);
  const total = probe.writes;
  let checked = 0;
  for (let n = 1; n <= total; n++) {
    const device = new FaultDevice(base, { crash: { atWrite: n, keepUnsynced: n % 2 === 0, tornBytes: (n * 131) % 3000 } });
    const acked = await runAll(device);
    const r = await Store.openDevice(new MemoryDevice(device.diskImage()));
    // Replaying the log: the state must equal applying some prefix of the transactions, at least the acknowledged ones.
    const state = new Map<string, string>();
    for (const k of (await r.list('app', '/state/', { limit: 10_000 })).keys) state.set(k, Buffer.from((await r.get('app', k)) ?? []).toString('hex'));
    await r.close();
    let applied = -1;
    const model = new Map<string, string>();
    const matches = (): boolean => model.size === state.size && [...model].every(([k, v]) => state.get(k) === v);
    if (acked === 0 && matches()) applied = 0;
    for (let i = 0; i < txns.length && applied < 0; i++) {
      for (const [k, v] of txns[i]?.writes ?? []) model.set(k, Buffer.from(v).toString('hex'));
      if (i + 1 >= acked && matches()) applied = i + 1;
    }
    assert.ok(applied >= acked, `seed ${seed}, crash at write ${n}: recovered state is not a whole-transaction prefix covering the ${acked} acknowledged`);
    checked++;
  }
  console.log(`crash-txn: seed ${seed}, ${txns.length} transactions, ${checked} crash points checked`);
});
