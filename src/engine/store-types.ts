import type { CommitMode } from './commit-mode.js';
import type { FormatOptions } from './mkfs.js';
import type { TxnLimits } from './transaction.js';

/** Options and results of the `Store` API. */

/** When a writable store reads the values its checkpoint holds (`OpenOptions.valueReads`). */
export type ValueReads = 'at-open' | 'on-demand';
export const VALUE_READS: readonly ValueReads[] = ['at-open', 'on-demand'];

export interface OpenOptions {
  /** Open without taking the lock and refuse every write with `EROFS`. */
  readOnly?: boolean;
  /**
   * Segments kept back for deletes, snapshot deletion, checkpoints and GC (default: 2, or 1/32
   * of the image, or room for an upper bound of the next checkpoint with what deleting live keys
   * can add to it while snapshots exist, and for the one after it — whichever is most, short of
   * the whole image; docs/storage/statefs-v3.md 8.2). When set, snapshots and restores are
   * checked against it as any ordinary write, not against what they grow.
   */
  reserveSegments?: number;
  /**
   * Journal bytes after which a checkpoint is written (default: 4 segments, or twice the last
   * checkpoint or 80 bytes per entry it held, but at most a quarter of the image outside the
   * reserve; docs/storage/statefs-v3.md 7.3).
   */
  checkpointBytes?: number;
  /**
   * Live entries a checkpoint encodes per turn of the event loop (default 8,192, about 5 ms): a
   * checkpoint of a large index is built over many turns while reads and writes go on, and the
   * keys written meanwhile are written again after it. `Infinity`: in one turn.
   */
  checkpointStepEntries?: number;
  /**
   * Cross-subject grants: `grants[caller]` lists the owners whose snapshots `caller` may mount
   * (the daemon fills this from its policy file). Mounting another subject's snapshot without a
   * grant is `EPERM`.
   */
  grants?: Readonly<Record<string, readonly string[]>>;
  /**
   * Run bounded GC cycles in the background when garbage or free space cross their thresholds
   * (default true). With `false` (fixtures), segments are emptied only by `gcNow`; checkpoints
   * still give back the journal they cover, and a delete that would take the room the next
   * checkpoint needs runs one first.
   */
  autoGc?: boolean;
  /**
   * Per-subject quotas in bytes of records held by the subject's live state and its snapshots.
   * Over `soft`: the write succeeds and, once it is durable, `statefs: quota warn ...` is emitted
   * once per subject per `quotaWarnIntervalMs`. Over `hard`: `EDQUOTA` and `statefs: quota deny ...`. Deletes, snapshot
   * deletion and restores are always allowed.
   */
  quotas?: Readonly<Record<string, { soft: number; hard: number }>>;
  /** Minimum time between two soft-quota warnings for one subject (default 60 s). */
  quotaWarnIntervalMs?: number;
  /** Subject that owns the state of a legacy v1 image (default `legacy`). */
  legacySubject?: string;
  /**
   * Where group commits wait for the disk (default `auto`: on the event loop's thread while the
   * average commit takes under 1 ms, on the I/O thread pool otherwise). See `CommitMode`.
   */
  commitMode?: CommitMode;
  /**
   * When a writable store reads the values its checkpoint holds (default `at-open`: all of them
   * while it opens, each record's CRC checked, and from memory ever after). `on-demand`: none at
   * open; each read of one reads its record from the device (a `pread`, its CRC checked then), so
   * the open is faster and holds no memory for them (a value GC moves is kept in memory from
   * then on, as is one let go whose segment the log takes while it may still be read), but
   * those reads cost a system call each, and
   * a damaged record is found by the read that needs it, not by the open. Values written since
   * the open are in memory either way. A read-only open always reads at open.
   * docs/storage/statefs-v3.md 6.3.
   */
  valueReads?: ValueReads;
  /** Transaction caps (defaults: the spec's 8 per subject, 1,024 per store, 32 keys, 128 KiB). */
  txnLimits?: Partial<TxnLimits>;
}

export interface CreateOptions extends OpenOptions, FormatOptions {
  /** Image size in bytes (default 256 MiB). */
  size?: number;
  /** Replace an existing file. */
  force?: boolean;
}

export interface ListOptions {
  /** At most this many keys (default 1,000, max 10,000). */
  limit?: number;
  /** Start after this key (the `next` of a previous page). */
  after?: string;
}

export interface ListPage {
  keys: string[];
  /** Pass as `after` to get the next page; absent on the last page. */
  next?: string;
}

export interface SubjectStat {
  subject: string;
  keys: number;
  /** Bytes of this subject's live records on disk, framing included. */
  liveBytes: number;
  /** Bytes only this subject's snapshots keep alive (not read by its live state). */
  snapshotOnlyBytes: number;
  /** What quotas count: liveBytes + snapshotOnlyBytes, kept up to date write by write. */
  usedBytes: number;
  snapshots: number;
}

/** A snapshot and the bytes only it keeps alive (what deleting it would make reclaimable). */
export interface SnapshotPin {
  subject: string;
  name: string;
  exclusiveBytes: number;
}

export interface StoreStat {
  capacity: number;
  segmentSize: number;
  segments: number;
  segmentsUsed: number;
  segmentsFree: number;
  /** Bytes in segments that are in use. */
  usedBytes: number;
  /** Bytes of records the live state or a snapshot still reads. */
  liveBytes: number;
  /**
   * Used but not read by anything. Not all of it is reclaimable at once: compaction takes
   * segments outside the log written since the last checkpoint (replay reads those), with at
   * least 1/16 of a segment of garbage; `gcPlan` says what the next cycle frees.
   */
  garbageBytes: number;
  freeBytes: number;
  subjects: SubjectStat[];
  /** What each snapshot pins. */
  snapshots: SnapshotPin[];
}

/** What happened while opening: how much was replayed and whether a torn tail was cut. */
export interface OpenReport {
  /** The layout found on the device; a legacy v1 image is upgraded to v3 by its first write. */
  format: 'v3' | 'legacy-v1';
  batchesReplayed: number;
  recordsReplayed: number;
  /** Byte offset of a torn tail that replay discarded (crash residue), if any. */
  tornTailAt?: number;
}

/** A snapshot as `listSnaps(subject, { details: true })` reports it. */
export interface SnapshotInfo {
  name: string;
  /** Store-wide creation sequence number. */
  id: number;
  keys: number;
  /** Bytes of the records the snapshot reads (framing included). */
  bytes: number;
  /** Bytes only this snapshot keeps alive: what deleting it would free. */
  exclusiveBytes: number;
  /** Hex SHA-256 of the content in canonical order (undefined while still being computed). */
  digest?: string;
}

/** Keys added, removed and changed from `a` to `b`, each bytewise sorted. */
export interface SnapshotDiff {
  added: string[];
  removed: string[];
  changed: string[];
}

export interface MountInfo {
  path: string;
  owner: string;
  name: string;
}

/** Names the live state in `diffSnaps`. */
export const LIVE = '@live';

