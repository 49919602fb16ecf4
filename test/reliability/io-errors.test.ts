import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FaultDevice } from '../../src/device/fault-device.js';
import { MemoryDevice } from '../../src/device/memory-device.js';
import { StatefsError } from '../../src/errors.js';
import { Store } from '../../src/engine/store.js';
import { MiB, memoryImage } from '../helpers.js';
import { recordFigures, reliabilityMode } from './counters.js';
import { Violations, checkFsck, checkRecovery, describeError, fsckRuns, overlayDevice } from './crash-image.js';
import { mismatch, observe, type ModelState } from './model.js';
import { generate, perKey, runOp, seedFrom, STORE_OPTIONS, type WorkOp } from './workload.js';
import { guardResources } from '../hygiene.js';

type Code = 'EIO' | 'ENOSPC';

const FOLLOW_SUBJECT = 'alpha';
const FOLLOW_KEY = '/state/follow-up';
const FOLLOW_VALUE = new TextEncoder().encode('written after the fault');

/** The device error's code, found in the error itself or in its chain of causes. */
function codesOf(err: unknown): string[] {
  const out: string[] = [];
  for (let e: unknown = err; e instanceof Error && out.length < 8; e = e.cause) if (e instanceof StatefsError) out.push(e.code);
  return out;
}

/** The model state with the follow-up key as the store must show it (present only if acknowledged). */
function withFollowUp(state: ModelState, present: boolean): ModelState {
  if (!present) return state;
  const live = new Map(state.live);
  live.set(FOLLOW_SUBJECT, new Map(live.get(FOLLOW_SUBJECT)).set(FOLLOW_KEY, FOLLOW_VALUE));
  return { ...state, live };
}

interface Outcome {
  fired: boolean;
  violation?: string;
}

/**
 * One run: open the image, fail device call `n` (counted from the end of the open; with
 * `sticky`, every call after it too) with `code`, run `op`, then try one more put. Checks:
 * the error carries the injected code; a store that saw a write or flush fail refuses the
 * follow-up with `EIO` (a failed flush is never retried and acknowledged); what reaches the disk
 * is exactly the state before or after `op` (after, if it was acknowledged), with the follow-up
 * present if it was acknowledged; the image reopens and takes writes; fsck exits 0 (nothing to
 * repair: an I/O error leaves no residue that fsck reports).
 */
async function faultRun(image: Uint8Array, op: WorkOp, before: ModelState, after: ModelState, n: number, code: Code, sticky: boolean): Promise<Outcome> {
  const device = new FaultDevice(image);
  const store = await Store.openDevice(device, STORE_OPTIONS);
  device.failCalls({ at: n, code, sticky });
  let opError: unknown;
  await runOp(store, op).catch((err: unknown) => {
    opError = err;
  });
  const writesBefore = device.writes + device.flushes;
  const firedOnWrite = device.injected > 0 && !(device.reads > 0 && writesBefore === 0);
  let followError: unknown;
  await store.put(FOLLOW_SUBJECT, FOLLOW_KEY, FOLLOW_VALUE).catch((err: unknown) => {
    followError = err;
  });
  await store.close();
  const fired = device.injected > 0;
  if (opError !== undefined) {
    if (!fired) return { fired, violation: `failed with no fault injected: ${describeError(opError)}` };
    const codes = codesOf(opError);
    if (codes[0] !== code && !(codes[0] === 'EIO' && codes.includes(code))) return { fired, violation: `error ${describeError(opError)} does not carry ${code}` };
  }
  if (opError !== undefined && firedOnWrite && followError === undefined) return { fired, violation: 'a write after a failed write or flush was acknowledged' };
  if (followError !== undefined && !codesOf(followError).includes('EIO') && !codesOf(followError).includes(code)) {
    return { fired, violation: `follow-up failed with ${describeError(followError)}` };
  }
  // What the disk holds: only the flushed writes, or (the OS wrote them back anyway) everything.
  const acked = opError === undefined;
  const followAcked = followError === undefined;
  for (const [which, bytes] of [
    ['flushed', device.diskImage()],
    ['all written', device.powerCut(true)],
  ] as const) {
    const wrong = await checkImage(bytes, op, before, after, acked, followAcked);
    if (wrong !== undefined) return { fired, violation: `${which}: ${wrong}` };
  }
  return { fired };
}

async function checkImage(bytes: Uint8Array, op: WorkOp, before: ModelState, after: ModelState, acked: boolean, followAcked: boolean): Promise<string | undefined> {
  const dev = overlayDevice(bytes, []);
  const from = withFollowUp(acked ? after : before, followAcked);
  const to = withFollowUp(after, followAcked);
  // The follow-up, when not acknowledged, may or may not have reached the disk: accept both.
  let wrong = await checkRecovery(dev, from, to, perKey(op));
  if (wrong !== undefined && !followAcked) {
    const store = await Store.openDevice(overlayDevice(bytes, []), { ...STORE_OPTIONS, readOnly: true });
    const seen = await observe(store).finally(() => store.close());
    seen.live.get(FOLLOW_SUBJECT)?.delete(FOLLOW_KEY);
    wrong = mismatch(seen, acked ? after : before, after, perKey(op));
  }
  if (wrong !== undefined) return wrong;
  const fsck = await checkFsck(dev, { requireClean: true });
  if (fsck !== undefined) return fsck;
  // The image takes writes again after a reopen.
  const again = await Store.openDevice(new MemoryDevice(bytes.slice()), STORE_OPTIONS);
  try {
    await again.put('beta', '/state/after-reopen', 'ok');
  } catch (err) {
    return `reopened store refused a write: ${describeError(err)}`;
  } finally {
    await again.close();
  }
  return undefined;
}

/** Each kind of operation, the first `perKind` times it occurs after `skip` operations. */
function chosen(ops: readonly WorkOp[], skip: number, perKind: number): number[] {
  const seen = new Map<string, number>();
  const out: number[] = [];
  ops.forEach((op, i) => {
    if (i < skip) return;
    const n = seen.get(op.kind) ?? 0;
    if (n >= perKind) return;
    seen.set(op.kind, n + 1);
    out.push(i);
  });
  return out;
}


guardResources();

test('I/O error loops: fail the nth device call of every kind of operation with EIO and ENOSPC, once and from then on', async () => {
  const thorough = reliabilityMode() === 'thorough';
  const seed = seedFrom(20261202);
  const count = thorough ? 400 : 120;
  const { ops, states } = generate(seed, count);
  const picks = chosen(ops, Math.floor(count / 3), thorough ? 6 : 1);
  console.log(`io-errors: seed ${seed} (STATEFS_SEED), ${picks.length} operations of ${new Set(picks.map((i) => ops[i]?.kind)).size} kinds, ${thorough ? 'thorough' : 'fast'} mode`);
  // The image before each chosen operation.
  const images = new Map<number, Uint8Array>();
  const dev = new MemoryDevice(await memoryImage(8 * MiB));
  const store = await Store.openDevice(dev, STORE_OPTIONS);
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i];
    if (op === undefined) break;
    if (picks.includes(i)) {
      await store.sync();
      images.set(i, dev.bytes.slice());
    }
    await runOp(store, op);
  }
  await store.close();

  const violations = new Violations();
  let injected = 0;
  let runs = 0;
  for (const i of picks) {
    const op = ops[i];
    const image = images.get(i);
    const before = states[i];
    const after = states[i + 1];
    if (op === undefined || image === undefined || before === undefined || after === undefined) throw new Error('bad pick');
    for (const code of ['EIO', 'ENOSPC'] as const) {
      for (const sticky of [false, true]) {
        for (let n = 1; ; n++) {
          const outcome = await faultRun(image, op, before, after, n, code, sticky);
          runs++;
          if (outcome.violation !== undefined) violations.add(`seed ${seed} op ${i} (${op.kind}) call ${n} ${code}${sticky ? ' and every later call' : ''}`, outcome.violation);
          if (!outcome.fired) break;
          injected++;
          assert.ok(n < 500, `op ${i} (${op.kind}) still making device calls after ${n}`);
        }
      }
    }
  }
  console.log(`io-errors: ${runs} runs, ${injected} faults injected, fsck on ${fsckRuns.checked} images (${fsckRuns.repaired} repaired residue), ${violations.count} violations`);
  recordFigures('io-errors', { injectedFaults: injected, fsckRuns: fsckRuns.checked, repairableResidue: fsckRuns.repaired, violations: violations.count });
  assert.ok(injected > picks.length * 4, `only ${injected} faults injected`);
  assert.equal(violations.count, 0, violations.summary);
});

test('I/O error loops: fail the nth device call while opening', async () => {
  const seed = seedFrom(20261203);
  const { ops } = generate(seed, 60);
  const dev = new MemoryDevice(await memoryImage(8 * MiB));
  const store = await Store.openDevice(dev, STORE_OPTIONS);
  for (const op of ops) await runOp(store, op);
  await store.close();
  const image = dev.bytes.slice();
  const violations = new Violations();
  let injected = 0;
  for (const code of ['EIO', 'ENOSPC'] as const) {
    for (let n = 1; ; n++) {
      const device = new FaultDevice(image);
      device.failCalls({ at: n, code });
      const opened = await Store.openDevice(device, STORE_OPTIONS).then(
        async (s) => {
          await s.close();
          return undefined;
        },
        (err: unknown) => err,
      );
      if (device.injected === 0) break;
      injected++;
      if (opened === undefined) violations.add(`open call ${n} ${code}`, 'opened although a read failed');
      else if (!codesOf(opened).includes(code)) violations.add(`open call ${n} ${code}`, `error ${describeError(opened)}`);
      if (Buffer.compare(device.diskImage(), image) !== 0) violations.add(`open call ${n} ${code}`, 'a failed open changed the image');
    }
  }
  console.log(`io-errors open: seed ${seed}, ${injected} faults injected, ${violations.count} violations`);
  recordFigures('io-errors-open', { injectedFaults: injected, violations: violations.count });
  assert.ok(injected > 10);
  assert.equal(violations.count, 0, violations.summary);
});
