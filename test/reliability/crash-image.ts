import type { BlockDevice } from '../../src/device/device.js';
import { FaultDevice, type TraceEvent } from '../../src/device/fault-device.js';
import { MemoryDevice, checkRange } from '../../src/device/memory-device.js';
import { StatefsError } from '../../src/errors.js';
import { fsckDevice } from '../../src/engine/fsck.js';
import { Store } from '../../src/engine/store.js';
import { mismatch, observe, type ModelState } from './model.js';
import { STORE_OPTIONS, runOp, type WorkOp } from './workload.js';

/** A write that reached (part of) the disk. */
export interface Placed {
  offset: number;
  data: Uint8Array;
}

/**
 * A read-only device showing `base` with `writes` laid over it in order: a crash state built
 * from a trace without copying the image. Writing to it is `EROFS`.
 */
export function overlayDevice(base: Uint8Array, writes: readonly Placed[]): BlockDevice {
  return {
    size: base.length,
    read(offset, length) {
      checkRange(base.length, offset, length, 'read');
      const out = base.slice(offset, offset + length);
      for (const w of writes) {
        const start = Math.max(offset, w.offset);
        const end = Math.min(offset + length, w.offset + w.data.length);
        if (start < end) out.set(w.data.subarray(start - w.offset, end - w.offset), start - offset);
      }
      return Promise.resolve(out);
    },
    write: () => Promise.reject(StatefsError.EROFS('crash image', { op: 'write' })),
    flush: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}

/**
 * Runs a workload to completion on a tracing device; `ackAt[i]` is the trace length when op i was
 * acknowledged. The device is sparse, as a file image is, so the log writes zeros ahead of its tail
 * in the segments it takes fresh, and the crash states include those writes torn and dropped.
 */
export async function tracedRun(base: Uint8Array, ops: readonly WorkOp[]): Promise<{ device: FaultDevice; ackAt: number[] }> {
  const device = new FaultDevice(base, { trace: true, sparse: true });
  const store = await Store.openDevice(device, STORE_OPTIONS);
  const ackAt: number[] = [];
  for (const op of ops) {
    await runOp(store, op);
    ackAt.push(device.trace.length);
  }
  await store.close();
  return { device, ackAt };
}

/** The disk at one point of a trace: flushed bytes, plus the writes issued since the last flush. */
export interface Boundary {
  /** Events applied so far (1-based index of the last one; 0 = before the first). */
  at: number;
  durable: Uint8Array;
  unsynced: Placed[];
}

/**
 * Walk a trace event by event, yielding the disk after each one. `durable` is updated in place:
 * use it before asking for the next boundary.
 */
export function* boundaries(base: Uint8Array, trace: readonly TraceEvent[]): Generator<Boundary> {
  const durable = base.slice();
  let unsynced: Placed[] = [];
  yield { at: 0, durable, unsynced };
  for (let i = 0; i < trace.length; i++) {
    const e = trace[i];
    if (e?.kind === 'write') unsynced = [...unsynced, { offset: e.offset, data: e.data }];
    else {
      for (const w of unsynced) durable.set(w.data, w.offset);
      unsynced = [];
    }
    yield { at: i + 1, durable, unsynced };
  }
}

/** `w` torn: its first `keep` bytes, then up to `junk` random bytes, within its own extent. */
export function torn(w: Placed, rand: () => number): Placed {
  const keep = Math.floor(rand() * w.data.length);
  const junk = Math.min(w.data.length - keep, 1 + Math.floor(rand() * 512));
  const data = new Uint8Array(keep + junk);
  data.set(w.data.subarray(0, keep));
  for (let i = keep; i < data.length; i++) data[i] = Math.floor(rand() * 256);
  return { offset: w.offset, data };
}

/** Index of the operation in flight at trace position `at`: the first one acknowledged after it. */
export function inFlight(ackAt: readonly number[], at: number, from: number): number {
  let j = from;
  while (j < ackAt.length && (ackAt[j] ?? Infinity) <= at) j++;
  return j;
}

export interface CheckOptions {
  /** Run the library fsck on the image too (it must exit 0). */
  fsck?: boolean;
  /** Then open it writable (on a copy), write, reopen: the writes are there and nothing old came back. */
  writeAfter?: boolean;
}

/**
 * Open a crash state and compare it with the model: it must open, and hold exactly the state
 * before or after the operation in flight (per key for concurrent writes), every snapshot equal
 * to its reference copy. Returns what is wrong, or `undefined`.
 */
export async function checkRecovery(device: BlockDevice, before: ModelState, after: ModelState, perKey: boolean, options: CheckOptions = {}): Promise<string | undefined> {
  let store: Store;
  try {
    store = await Store.openDevice(device, { ...STORE_OPTIONS, readOnly: true });
  } catch (err) {
    return `open failed: ${describeError(err)}`;
  }
  try {
    const wrong = mismatch(await observe(store), before, after, perKey);
    if (wrong !== undefined) return wrong;
  } catch (err) {
    return `read failed: ${describeError(err)}`;
  } finally {
    await store.close();
  }
  if (options.fsck === true) {
    const wrong = await checkFsck(device);
    if (wrong !== undefined) return wrong;
  }
  if (options.writeAfter === true) return checkWritesAfter(device, before, after, perKey);
  return undefined;
}

const AFTER_KEYS = ['/state/after-crash-1', '/state/after-crash-2'];

/**
 * Reopen a crash state writable (on a copy), write two small values (each a batch shorter than
 * most discarded tails), close and reopen: the store must show the recovered state plus exactly
 * those values, and fsck must pass.
 */
async function checkWritesAfter(device: BlockDevice, before: ModelState, after: ModelState, perKey: boolean): Promise<string | undefined> {
  const copy = new MemoryDevice(await device.read(0, device.size));
  try {
    const store = await Store.openDevice(copy, STORE_OPTIONS);
    try {
      for (const key of AFTER_KEYS) await store.put('beta', key, key);
    } finally {
      await store.close();
    }
    const again = await Store.openDevice(new MemoryDevice(copy.bytes), { ...STORE_OPTIONS, readOnly: true });
    const seen = await observe(again).finally(() => again.close());
    const beta = seen.live.get('beta');
    for (const key of AFTER_KEYS) {
      if (beta === undefined || Buffer.from(beta.get(key) ?? []).toString() !== key) return `after recovery: ${key} written, then not there`;
      beta.delete(key);
    }
    if (beta?.size === 0) seen.live.delete('beta');
    const wrong = mismatch(seen, before, after, perKey);
    if (wrong !== undefined) return `after recovery and two writes: ${wrong}`;
  } catch (err) {
    return `after recovery: ${describeError(err)}`;
  }
  return checkFsck(new MemoryDevice(copy.bytes));
}

/** Crash residue fsck reports as repairable (spec §8: exit 1) rather than as information. */
const RESIDUE = new Set(['superblock-a-damaged', 'superblock-b-damaged', 'orphaned-transaction']);

/** fsck figures: how often it ran, and how often it found (and repaired) crash residue. */
export const fsckRuns = { checked: 0, repaired: 0 };

/**
 * Run the library fsck on a crash state. It must exit 0, or exit 1 (repairable) with only crash
 * residue — one torn superblock slot, a transaction prepared but never committed — that
 * `repair` then fixes (on a copy) to a clean re-check. With `requireClean` (after I/O errors,
 * issue 9 item 3), only exit 0 passes. Returns what is wrong, or `undefined`.
 */
export async function checkFsck(device: BlockDevice, options: { requireClean?: boolean } = {}): Promise<string | undefined> {
  fsckRuns.checked++;
  const report = await fsckDevice(device);
  const list = report.findings.map((f) => `${f.reason}@${f.offset}`).join(', ');
  if (report.exitCode === 0) return undefined;
  if (options.requireClean === true) return `fsck exit ${report.exitCode}, not 0: ${list}`;
  if (report.exitCode !== 1 || report.findings.some((f) => f.severity !== 'info' && !RESIDUE.has(f.reason))) return `fsck exit ${report.exitCode}: ${list}`;
  const copy = new MemoryDevice(await device.read(0, device.size));
  const repaired = await fsckDevice(copy, { repair: true });
  if (!repaired.repaired || (await fsckDevice(new MemoryDevice(copy.bytes))).exitCode !== 0) return `fsck --repair did not clean ${list}`;
  fsckRuns.repaired++;
  return undefined;
}

export function describeError(err: unknown): string {
  return err instanceof StatefsError ? `${err.code} ${err.message}` : String(err);
}

/** Collects violations: counts all, keeps the first few messages for the failure report. */
export class Violations {
  count = 0;
  readonly first: string[] = [];

  add(label: string, what: string): void {
    this.count++;
    if (this.first.length < 10) this.first.push(`${label}: ${what}`);
  }

  get summary(): string {
    return `${this.count} violations:\n${this.first.join('\n')}`;
  }
}
