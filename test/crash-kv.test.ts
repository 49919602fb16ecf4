import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FaultDevice, type CrashPlan } from '../src/device/fault-device.js';
import { MemoryDevice } from '../src/device/memory-device.js';
import { Store } from '../src/engine/store.js';
import type { OpenOptions } from '../src/engine/store-types.js';
import { memoryImage, rng } from './helpers.js';
import { guardResources } from './hygiene.js';

guardResources();

type Op = { kind: 'put'; subject: string; key: string; value: Uint8Array } | { kind: 'del'; subject: string; key: string };

/** A deterministic mixed workload: puts (new keys and overwrites) and deletes over 3 subjects. */
function workload(seed: number, count: number): Op[] {
  const rand = rng(seed);
  const live = new Map<string, boolean>();
  const ops: Op[] = [];
  const subjects = ['alpha', 'beta', 'gamma'];
  while (ops.length < count) {
    const subject = subjects[Math.floor(rand() * subjects.length)] ?? 'alpha';
    const key = `/state/${rand() < 0.3 ? `dir${Math.floor(rand() * 4)}/` : ''}k${Math.floor(rand() * 150)}`;
    const id = `${subject}:${key}`;
    if (live.get(id) === true && rand() < 0.25) {
      ops.push({ kind: 'del', subject, key });
      live.set(id, false);
    } else {
      const size = rand() < 0.1 ? Math.floor(rand() * 20_000) : Math.floor(rand() * 300);
      const value = new Uint8Array(size).map(() => Math.floor(rand() * 256));
      ops.push({ kind: 'put', subject, key, value });
      live.set(id, true);
    }
  }
  return ops;
}

/** Values each key may hold after a crash: the last acknowledged one, or any issued after it. */
interface KeyHistory {
  issued: (Uint8Array | null)[];
  lastAcked: number;
}

const GROUP = 8;

/** Run `ops` in groups of concurrent writes on distinct keys until a write fails (the crash). */
async function run(store: Store, ops: Op[], history: Map<string, KeyHistory>): Promise<void> {
  for (let i = 0; i < ops.length; ) {
    const group: Op[] = [];
    const keys = new Set<string>();
    while (i < ops.length && group.length < GROUP) {
      const op = ops[i];
      if (op === undefined) break;
      const id = `${op.subject}\0${op.key}`;
      if (keys.has(id)) break;
      keys.add(id);
      group.push(op);
      i++;
    }
    const results = await Promise.allSettled(
      group.map((op) => {
        const id = `${op.subject}\0${op.key}`;
        let h = history.get(id);
        if (h === undefined) history.set(id, (h = { issued: [], lastAcked: -1 }));
        h.issued.push(op.kind === 'put' ? op.value : null);
        const at = h.issued.length - 1;
        const p = op.kind === 'put' ? store.put(op.subject, op.key, op.value) : store.delete(op.subject, op.key);
        return p.then(() => {
          const hist = history.get(id);
          if (hist !== undefined) hist.lastAcked = Math.max(hist.lastAcked, at);
        });
      }),
    );
    if (results.some((r) => r.status === 'rejected')) return;
  }
}

async function checkRecovered(image: Uint8Array, history: Map<string, KeyHistory>, label: string): Promise<void> {
  const store = await Store.openDevice(new MemoryDevice(image));
  try {
    for (const [id, h] of history) {
      const [subject = '', key = ''] = id.split('\0');
      const got = (await store.get(subject, key)) ?? null;
      const allowed = h.issued.slice(Math.max(0, h.lastAcked));
      if (h.lastAcked < 0) allowed.push(null);
      const ok = allowed.some((v) => (v === null ? got === null : got !== null && Buffer.compare(got, v) === 0));
      assert.ok(ok, `${label}: ${subject} ${key} holds ${got === null ? 'nothing' : `${got.length} bytes`}, not an allowed value`);
    }
    // The recovered store accepts writes and survives another reopen (the torn tail is left behind).
    await store.put('alpha', '/state/after-crash', 'x');
  } finally {
    await store.close();
  }
}

async function crashRun(base: Uint8Array, ops: Op[], crash: CrashPlan, options: OpenOptions): Promise<{ image: Uint8Array; history: Map<string, KeyHistory>; crashed: boolean }> {
  const device = new FaultDevice(base, { crash });
  const store = await Store.openDevice(device, options);
  const history = new Map<string, KeyHistory>();
  await run(store, ops, history);
  await store.close();
  return { image: device.diskImage(), history, crashed: device.crashed };
}

/** Run the workload once per device write, crashing at that write (cleanly, and with a torn unsynced tail), and check each image. */
async function crashEveryWrite(label: string, count: number, options: OpenOptions): Promise<void> {
  const seed = Number(process.env.STATEFS_SEED ?? 20261126);
  const ops = workload(seed, count);
  const base = await memoryImage();
  // A clean run counts the device writes (journal rounds, checkpoints and superblock switches).
  const probe = new FaultDevice(base);
  const probeStore = await Store.openDevice(probe, options);
  await run(probeStore, ops, new Map());
  await probeStore.close();
  const totalWrites = probe.writes;
  assert.ok(totalWrites > 200, `workload made only ${totalWrites} writes`);
  let checked = 0;
  for (let n = 1; n <= totalWrites; n++) {
    const variants: CrashPlan[] = [
      { atWrite: n },
      { atWrite: n, keepUnsynced: true, tornBytes: 1 + ((n * 7919) % 4000) },
    ];
    for (const crash of variants) {
      const r = await crashRun(base, ops, crash, options);
      assert.ok(r.crashed, `crash point ${n} was not reached`);
      const after = await Store.openDevice(new MemoryDevice(r.image.slice()));
      await after.close();
      await checkRecovered(r.image, r.history, `seed ${seed} crash at write ${n} ${JSON.stringify(crash)}`);
      checked++;
    }
  }
  console.log(`crash-kv (${label}): seed ${seed}, ${ops.length} ops, ${totalWrites} device writes, ${checked} crash states checked`);
}

test('a crash at every device write of a 2,000-operation workload loses no acknowledged write', async () => {
  await crashEveryWrite('checkpoints in one step', 2000, { checkpointBytes: 96 * 1024 });
});

test('a crash at every device write loses no acknowledged write while checkpoints are built in steps between writes', async () => {
  // Steps of 8 entries: each checkpoint spans many turns, and the writes made meanwhile are
  // written again after its records.
  await crashEveryWrite('checkpoints in steps of 8 entries', 2000, { checkpointBytes: 48 * 1024, checkpointStepEntries: 8 });
});
