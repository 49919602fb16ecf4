import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryDevice } from '../../src/device/memory-device.js';
import { StatefsError } from '../../src/errors.js';
import { fsckDevice, type FsckReport } from '../../src/engine/fsck.js';
import { Store } from '../../src/engine/store.js';
import { Op } from '../../src/format/opcodes.js';
import { SUPERBLOCK_LENGTH, superblockOffset } from '../../src/format/superblock.js';
import { MiB, memoryImage, rng } from '../helpers.js';
import { recordFigures, reliabilityMode } from './counters.js';
import { Violations, describeError, overlayDevice } from './crash-image.js';
import { appendOrphan, currentSuperblock, recordsOf, type FoundRecord } from './image-records.js';
import { EMPTY_STATE, mismatch, observe, type ModelState } from './model.js';
import { apply, generate, runOp, seedFrom, STORE_OPTIONS, type WorkOp } from './workload.js';
import { guardResources } from '../hygiene.js';

/** Every opcode a v3 engine writes (CHECKPOINT 0x03 is a v1 no-op it never writes). */
// CHECKPOINT is v1's no-op; UPGRADE is written only by a v1 upgrade, before its checkpoint, and
// read only by the open of an upgrade cut short (its flips: test/legacy-v1.test.ts).
const KINDS = Object.entries(Op).filter(([name]) => name !== 'CHECKPOINT' && name !== 'UPGRADE');

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** Operations of every kind, run after the last checkpoint so that replay reads their records. */
const TAIL: WorkOp[] = [
  { kind: 'put', subject: 'alpha', key: '/state/tail-a', value: bytes('a') },
  { kind: 'put', subject: 'alpha', key: '/state/tail-b', value: bytes('b') },
  { kind: 'delete', subject: 'alpha', key: '/state/tail-b' },
  { kind: 'txn', subject: 'alpha', writes: [{ key: '/state/tail-c', value: bytes('c') }, { key: '/state/tail-a', value: null }] },
  { kind: 'snapshot', subject: 'alpha', name: 'tail-1' },
  { kind: 'mount', caller: 'beta', owner: 'alpha', name: 'tail-1', path: '/mnt/tail' },
  { kind: 'put', subject: 'alpha', key: '/state/tail-d', value: bytes('d') },
  { kind: 'restore', subject: 'alpha', name: 'tail-1' },
  { kind: 'umount', caller: 'beta', path: '/mnt/tail' },
  { kind: 'deleteSnap', subject: 'alpha', name: 'tail-1' },
  { kind: 'snapshot', subject: 'alpha', name: 'tail-2' },
  { kind: 'put', subject: 'alpha', key: '/state/tail-e', value: bytes('e') },
  { kind: 'putMany', subject: 'alpha', writes: ['f', 'g', 'h'].map((k) => ({ key: `/state/tail-${k}`, value: bytes(k.repeat(20)) })) },
];

type Outcome = 'open refused' | 'read refused' | 'replay stop' | 'other copy used' | 'not read';

/**
 * How a flipped image behaves, or a violation. Detected means: the open fails with EINTEGRITY, a
 * read or snapshot verification fails with EINTEGRITY (fsck exit 2 for both), or replay stops
 * before the damage and the state is an earlier state of the history (a torn tail: fsck exit 0).
 * A flip in a superblock slot must leave the state whole, through the other copy (fsck exit 1,
 * and --repair makes it clean). A flip nothing reads must change nothing (fsck exit 0).
 */
async function classify(img: Uint8Array, at: number, history: readonly ModelState[], superblock: boolean): Promise<{ outcome: Outcome; violation?: string }> {
  const final = history.at(-1);
  if (final === undefined) throw new Error('empty history');
  const fsck = await fsckDevice(overlayDevice(img, []));
  const fsckSays = `fsck exit ${fsck.exitCode} (${fsck.findings.map((f) => f.reason).join(', ')})`;
  let store: Store;
  try {
    store = await Store.openDevice(overlayDevice(img, []), { ...STORE_OPTIONS, readOnly: true });
  } catch (err) {
    if (!(err instanceof StatefsError) || err.code !== 'EINTEGRITY') return { outcome: 'open refused', violation: `open failed with ${describeError(err)}` };
    return { outcome: 'open refused', ...(fsck.exitCode === 2 ? {} : { violation: `open refused, but ${fsckSays}` }) };
  }
  try {
    const read = await observe(store).then(
      (o) => ({ ok: true as const, seen: o }),
      (err: unknown) => ({ ok: false as const, err }),
    );
    if (read.ok) {
      const { seen } = read;
      if (mismatch(seen, final, final, false) === undefined) {
        if (superblock) return await fsckCleanAfterRepair(img, fsck, 'other copy used');
        return { outcome: 'not read', ...(fsck.exitCode === 0 ? {} : { violation: `nothing changed, but ${fsckSays}` }) };
      }
      const torn = store.openReport.tornTailAt;
      const prefix = history.some((s) => mismatch(seen, s, s, false) === undefined);
      if (torn !== undefined && torn <= at && prefix && !superblock) return { outcome: 'replay stop', ...(fsck.exitCode === 0 ? {} : { violation: `torn tail, but ${fsckSays}` }) };
      return { outcome: 'replay stop', violation: `silent change: ${mismatch(seen, final, final, false) ?? ''} (tornTailAt ${torn ?? 'none'}, an earlier state: ${prefix})` };
    }
    if (read.err instanceof StatefsError && read.err.code === 'EINTEGRITY') return { outcome: 'read refused', ...(fsck.exitCode === 2 ? {} : { violation: `read refused, but ${fsckSays}` }) };
    return { outcome: 'read refused', violation: `read failed with ${describeError(read.err)}` };
  } finally {
    await store.close();
  }
}

async function fsckCleanAfterRepair(img: Uint8Array, fsck: FsckReport, outcome: Outcome): Promise<{ outcome: Outcome; violation?: string }> {
  const reasons = fsck.findings.filter((f) => f.severity !== 'info').map((f) => f.reason);
  if (fsck.exitCode !== 1 || reasons.some((r) => r !== 'superblock-a-damaged' && r !== 'superblock-b-damaged')) {
    // A flip that leaves the slot valid (e.g. in unused padding) changes nothing.
    if (fsck.exitCode === 0) return { outcome };
    return { outcome, violation: `one superblock damaged, but fsck exit ${fsck.exitCode} (${reasons.join(', ')})` };
  }
  const copy = new MemoryDevice(img.slice());
  const repaired = await fsckDevice(copy, { repair: true });
  const again = await fsckDevice(new MemoryDevice(copy.bytes));
  if (!repaired.repaired || again.exitCode !== 0) return { outcome, violation: `fsck --repair left exit ${again.exitCode}` };
  return { outcome };
}

/** Byte offsets (relative to the record) to flip: every byte, or one in each field. */
function positions(r: FoundRecord, every: boolean, limit: number): number[] {
  if (every) return Array.from({ length: Math.min(r.length, limit) }, (_, i) => i);
  const k = r.keyLength;
  const v = r.valueLength;
  const picks = [0, 4, 5, 7, 10, ...(k > 0 ? [11, 11 + k - 1] : []), ...(v > 0 ? [11 + k, 11 + k + Math.floor(v / 2), 11 + k + v - 1] : []), r.length - 4, r.length - 1];
  return [...new Set(picks)];
}


guardResources();

test('bit flips in every record kind and every metadata byte are detected, with the fsck exit code the spec gives', async () => {
  const thorough = reliabilityMode() === 'thorough';
  const seed = seedFrom(20261204);
  const rand = rng(seed);
  const { ops, states } = generate(seed, thorough ? 400 : 160);
  console.log(`bit-flips: seed ${seed} (STATEFS_SEED), ${ops.length} operations, ${thorough ? 'thorough' : 'fast'} mode`);
  const dev = new MemoryDevice(await memoryImage(8 * MiB));
  const store = await Store.openDevice(dev, STORE_OPTIONS);
  for (const op of ops) await runOp(store, op);
  // RELOC records: a checkpoint moves the log's start past the older segments, GC empties them.
  await store.checkpoint();
  await store.gcNow();
  // Then one record of every other kind after the checkpoint, where replay reads them.
  let state = states.at(-1) ?? EMPTY_STATE;
  const history: ModelState[] = [...states];
  for (const op of TAIL) {
    await runOp(store, op);
    state = apply(state, op);
    history.push(state);
  }
  await store.close();
  // An ABORT record: a transaction left prepared (as by a crash), closed by abortOrphans.
  appendOrphan(dev.bytes, 'alpha', 1_000_000);
  const again = await Store.openDevice(dev, STORE_OPTIONS);
  assert.equal(await again.abortOrphans(), 1);
  await again.put('alpha', '/state/after-abort', 'x');
  await again.close();
  history.push(apply(state, { kind: 'put', subject: 'alpha', key: '/state/after-abort', value: new TextEncoder().encode('x') }));
  const img = dev.bytes;

  const clean = await classify(img, img.length, history, false);
  assert.deepEqual(clean, { outcome: 'not read' }, 'the unflipped image holds the final state and fsck is clean');

  const records = recordsOf(img);
  const violations = new Violations();
  const outcomes = new Map<string, Map<Outcome, number>>();
  let flips = 0;
  const flip = async (group: string, at: number, superblock: boolean): Promise<void> => {
    const bit = 1 << Math.floor(rand() * 8);
    const before = img[at] ?? 0;
    img[at] = before ^ bit;
    try {
      const r = await classify(img, at, history, superblock);
      flips++;
      const m = outcomes.get(group) ?? new Map<Outcome, number>();
      m.set(r.outcome, (m.get(r.outcome) ?? 0) + 1);
      outcomes.set(group, m);
      if (r.violation !== undefined) violations.add(`seed ${seed} ${group} byte ${at} bit ${bit}`, r.violation);
    } finally {
      img[at] = before;
    }
  };

  for (const [name, opcode] of KINDS) {
    const ofKind = records.filter((r) => r.opcode === opcode);
    assert.ok(ofKind.length > 0, `the workload wrote no ${name} record`);
    // The latest records (replayed on open) and the earliest (behind a checkpoint, or relocated);
    // in thorough mode every segment header and every byte of the current checkpoint too.
    const latest = thorough ? [...ofKind.slice(-6), ...ofKind.slice(0, 2)] : [ofKind.at(-1), ofKind[0]];
    const metadata = name === 'SEGMENT' || name === 'CKPT';
    const everyHeader = thorough && name === 'SEGMENT' ? ofKind : [];
    const chosen = [...new Set([...latest, ...everyHeader])];
    const limit = metadata ? (thorough ? 64 * 1024 : 48) : thorough ? 160 : 48;
    for (const r of chosen) if (r !== undefined) for (const p of positions(r, thorough || metadata, limit)) await flip(name, r.at + p, false);
  }
  for (const slot of [0, 1] as const) {
    const base = superblockOffset(slot, img.length);
    for (let i = 0; i < SUPERBLOCK_LENGTH; i++) await flip(`superblock ${slot === 0 ? 'A' : 'B'}`, base + i, true);
  }
  const sb = currentSuperblock(img);
  const table = [...outcomes].map(([group, m]) => `${group}: ${[...m].map(([o, n]) => `${o} ${n}`).join(', ')}`);
  console.log(`bit-flips: ${flips} flips in ${records.length} records (checkpoint in segment ${sb.ckptSegment}), ${violations.count} violations\n  ${table.join('\n  ')}`);
  recordFigures('bit-flips', { bitFlips: flips, violations: violations.count });
  // Every record kind had at least one flip detected (not only flips in records nothing reads).
  for (const [name] of KINDS) {
    const m = outcomes.get(name);
    const detected = (m?.get('open refused') ?? 0) + (m?.get('read refused') ?? 0) + (m?.get('replay stop') ?? 0);
    assert.ok(detected > 0, `no flip in a ${name} record was detected: ${JSON.stringify([...(m ?? [])])}`);
  }
  assert.equal(violations.count, 0, violations.summary);
});
