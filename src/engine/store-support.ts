/** Small pieces the Store is made of: record keys, paging, error wrapping. */
import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { diffTrees, BTree } from './btree.js';
import { diffEntryBound, liveEntryBound } from './checkpoint-bound.js';
import type { EntryRef, EntryTable } from './entry-table.js';
import type { AppendOptions, Appended, JournalWriter, RecordToWrite } from './journal-writer.js';
import type { Tree, Trees } from './keyspace.js';
import { MOUNT_ROOT } from './mount-table.js';
import { fromBinary, indexKey } from './names.js';
import { SegmentUsage } from './segment-usage.js';
import type { SnapshotTable } from './snapshot-table.js';
import { VALUE_READS, type ListPage, type OpenOptions } from './store-types.js';

export const EMPTY = new Uint8Array(0);

/** Run `fn` and return its result (or the promise it returns) as a promise; a synchronous throw becomes a rejection. */
export function settle<T>(fn: () => T | PromiseLike<T>): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(asStatefsError(err, 'unknown'));
  }
}

export function isMountKey(key: unknown): key is string {
  return typeof key === 'string' && key.startsWith(MOUNT_ROOT);
}

/** The key field of snapshot and mount records: subject (or caller), NUL, name (or path). */
export function metaKey(subject: string, name: string): Uint8Array {
  return Buffer.from(`${subject}\0${name}`, 'latin1');
}

/**
 * Call `fn` for every entry held by a live tree or a snapshot, once each, with the subject that
 * holds it, and for a live entry its key (`liveBin`). Snapshots cost what they differ by from
 * their subject's live tree, not their size.
 */
export function forEachDistinctEntry(trees: Trees, snapshots: SnapshotTable, fn: (subject: string, entry: EntryRef, liveBin?: string) => void): void {
  for (const [subject, tree] of trees) {
    tree.forEachPair((bin, e) => {
      fn(subject, e, bin);
    });
  }
  const seen = new Set<EntryRef>();
  for (const snap of snapshots.all()) {
    const live = trees.get(snap.subject) ?? new BTree<string, EntryRef>();
    const add = (_k: string, e: EntryRef): void => {
      if (seen.has(e)) return;
      seen.add(e);
      fn(snap.subject, e);
    };
    diffTrees(snap.tree, live, add, () => undefined, add);
  }
}

/** What an opened index holds on disk: records per segment, and per subject the bytes of its records. */
export interface IndexAccounting {
  usage: SegmentUsage;
  subjectBytes: Map<string, number>;
  /** The most bytes the live entries take in a checkpoint (`liveEntryBound`), summed in the same walk. */
  liveEntriesBound: number;
  /** Per subject, the most bytes its live entries take as a snapshot's differences (`EmptyingBound`). */
  liveDiffBytes: Map<string, number>;
}

/**
 * Count every distinct entry of an opened index (live trees and snapshots) into a new
 * `SegmentUsage` and per-subject bytes, calling `visit` for each entry on the way: open walks
 * the index once for this and for its own needs (a million keys, one walk). Each subject's bytes
 * are summed first, one map update per subject, not per key.
 */
export function accountIndex(entries: EntryTable, trees: Trees, snapshots: SnapshotTable, layout: { segmentCount: number; segmentSize: number }, visit?: (entry: EntryRef) => void): IndexAccounting {
  const usage = new SegmentUsage(layout.segmentCount, layout.segmentSize, entries);
  const subjectBytes = new Map<string, number>();
  let subject = '';
  let sum = 0;
  let liveEntriesBound = 0;
  const liveDiffBytes = new Map<string, number>();
  let diffSum = 0;
  const flush = (): void => {
    if (sum !== 0) subjectBytes.set(subject, (subjectBytes.get(subject) ?? 0) + sum);
    if (diffSum !== 0) liveDiffBytes.set(subject, (liveDiffBytes.get(subject) ?? 0) + diffSum);
  };
  forEachDistinctEntry(trees, snapshots, (of, e, liveBin) => {
    if (of !== subject) {
      flush();
      subject = of;
      sum = 0;
      diffSum = 0;
    }
    usage.addEntry(e);
    sum += entries.diskBytes(e);
    if (liveBin !== undefined) {
      liveEntriesBound += liveEntryBound(entries, of, liveBin, e);
      diffSum += diffEntryBound(entries, liveBin, e);
    }
    visit?.(e);
  });
  flush();
  return { usage, subjectBytes, liveEntriesBound, liveDiffBytes };
}

/** The key field of a v3 data record: subject, NUL, key bytes. */
export function recordKey(subject: string, bin: string): Uint8Array {
  const length = subject.length + 1 + bin.length;
  // A short key is copied char by char into a typed array small enough to live on the JS heap:
  // cheaper than a call into Buffer's latin1 encoder and a slice of its pool.
  if (length > SHORT_RECORD_KEY) return Buffer.from(indexKey(subject, bin), 'latin1');
  const out = new Uint8Array(length);
  for (let i = 0; i < subject.length; i++) out[i] = subject.charCodeAt(i);
  for (let i = 0, at = subject.length + 1; i < bin.length; i++) out[at + i] = bin.charCodeAt(i);
  return out;
}

/** Record keys up to this length are built by `recordKey`'s loop (V8 keeps typed arrays this small on its heap). */
const SHORT_RECORD_KEY = 64;

/** One page of a tree's keys under `prefix`, after `after`, bytewise ascending. */
export function listTree(tree: Tree | undefined, prefix: string, after: string | undefined, limit: number): ListPage {
  const keys: string[] = [];
  if (tree === undefined) return { keys };
  const start = after !== undefined && after > prefix ? after : prefix;
  let next: string | undefined;
  // Binary strings hold chars up to 0xff, so every key with the prefix sorts below prefix + U+0100.
  tree.forRange(start, `${prefix}\u0100`, false, (k) => {
    if (after !== undefined && k <= after) return undefined;
    if (keys.length === limit) {
      next = keys.at(-1) ?? '';
      return { break: true };
    }
    keys.push(fromBinary(k));
    return undefined;
  });
  return next === undefined ? { keys } : { keys, next };
}

export function asStatefsError(err: unknown, op: string): StatefsError {
  return err instanceof StatefsError ? err : StatefsError.EIO(String(err), { op, cause: err });
}

/** Attach the operation and target to an error raised below the API. */
export function withContext(err: unknown, op: string, subject: string | undefined, key: string | undefined): StatefsError {
  const e = asStatefsError(err, op);
  return new StatefsError(e.code, e.message.slice(e.code.length + 2), {
    op,
    ...(subject === undefined ? {} : { subject }),
    ...(key === undefined ? {} : { key }),
    ...(e.offset === undefined ? {} : { offset: e.offset }),
    cause: e,
  });
}

/** Append `records` to the journal; an error (no room, a failed store) gets the operation and target. */
export function appendOrThrow(
  journal: Pick<JournalWriter<unknown>, 'append'>,
  records: RecordToWrite[],
  op: string,
  subject: string | undefined,
  key: string | undefined,
  options: AppendOptions,
): Appended {
  try {
    return journal.append(records, options);
  } catch (err) {
    throw withContext(err, op, subject, key);
  }
}

/** Wait for appended records to be durable; a failed write gets the operation and target. */
export async function awaitDurable(durable: Promise<void>, op: string, subject: string | undefined, key: string | undefined): Promise<void> {
  try {
    await durable;
  } catch (err) {
    throw withContext(err, op, subject, key);
  }
}

/** Whether a writable open leaves its checkpoint's values on the device (`OpenOptions.valueReads`); a bad option is `EINVAL`. */
export function readsOnDemand(options: Pick<OpenOptions, 'valueReads' | 'readOnly'>, device: Pick<BlockDevice, 'readSync'>): boolean {
  // Options reach here from JavaScript callers and the daemon's command line unchecked by types.
  const when: string = options.valueReads ?? 'at-open';
  if (!VALUE_READS.some((v) => v === when)) throw StatefsError.EINVAL(`valueReads ${when}: use ${VALUE_READS.join(' or ')}`, { op: 'open' });
  if (when === 'at-open' || options.readOnly === true) return false; // a read-only open reads at open (read-only-view.ts)
  if (device.readSync === undefined) throw StatefsError.EINVAL('valueReads on-demand needs a device that reads on the calling thread (readSync)', { op: 'open' });
  return true;
}
