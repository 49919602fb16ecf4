import { EventEmitter } from 'node:events';
import {
  EMPTY,
  asStatefsError,
  isMountKey,
  listTree,
  metaKey,
  recordKey,
  settle,
  withContext,
} from './store-support.js';
import {
  LIVE,
  type CreateOptions,
  type ListOptions,
  type ListPage,
  type MountInfo,
  type OpenOptions,
  type OpenReport,
  type SnapshotDiff,
  type SnapshotInfo,
  type SnapshotPin,
  type StoreStat,
  type SubjectStat,
} from './store-types.js';
import type { BlockDevice } from '../device/device.js';
import { FileDevice } from '../device/file-device.js';
import { StatefsError } from '../errors.js';
import { CKPT_CHUNK, emptyCheckpoint, encodeCheckpoint, encodeCheckpointChunk, encodeCheckpointChunkHeader } from '../format/checkpoint.js';
import { Op } from '../format/opcodes.js';
import type { Superblock } from '../format/superblock.js';
import { Entry } from './entry.js';
import { JournalWriter, type Appended, type Extent, type RecordToWrite } from './journal-writer.js';
import { recordLength } from '../format/record.js';
import { segmentOffset } from '../format/superblock.js';
import { DEFAULT_IMAGE_SIZE, formatDevice, type FormatOptions } from './mkfs.js';
import { KEY_ROOT, checkKey, checkMountPath, checkPrefix, checkSnapName, checkSubject, fromBinary, indexKey, toBinary, toValue } from './names.js';
import { BTree, diffTrees } from './btree.js';
import { CheckpointBuild, changesSince, frozenTrees, type LiveChange } from './checkpoint-builder.js';
import { MOUNT_ROOT, MountTable } from './mount-table.js';
import { SnapshotTable, type Snapshot } from './snapshot-table.js';
import { snapshotDigest } from './snapshot-digest.js';
import { readEntryValue } from './entry-reader.js';
import { ownText, packValues } from './value-pool.js';
import { encodeMount, encodeSnapDigest, encodeSnapId } from '../format/meta-records.js';
import { replayImage, type Orphan, type Replayed } from './replay.js';
import type { SegmentUsage } from './segment-usage.js';
import { CommitPlacement } from './commit-mode.js';
import { Compactor, type GcOptions, type GcPlan, type GcResult } from './compactor.js';
import { Keyspace, type Sealed, type Tree } from './keyspace.js';
import { checkDeleteAllowed, checkPutAllowed } from './tree-rules.js';
import { checkBatchAllowed } from './batch-rules.js';
import { DEFAULT_TXN_LIMITS, Transaction, validateTxnOps, type TxnHost, type TxnLimits, type TxnOp } from './transaction.js';
import { PAYLOAD_DELETE, PAYLOAD_PUT, TXN_CHUNK, encodePayload, encodeTxnMark } from '../format/txn-records.js';
import { writeSuperblock } from './superblock-io.js';
import { failpoint, failpointArmed, type FailpointName } from './failpoints.js';

type Status = 'open' | 'closing' | 'closed';

const DEFAULT_LIST_LIMIT = 1000;
const MAX_LIST_LIMIT = 10_000;

/**
 * A StateFS store: one image, many subjects. Every write resolves only when durable; concurrent
 * writes share flushes (group commit). Reads see acknowledged writes only: the index readers use
 * is replaced by the writers' index at the end of each durable round.
 */
/*
 * Automatic GC (docs/storage/statefs-v3.md §8.3). The later a cycle starts, the more garbage the
 * segments it empties hold, and the fewer live bytes it moves per byte it frees: starting when an
 * eighth of the image is free (not a quarter), and emptying at most an eighth of the image per
 * cycle (the emptiest segments; the default bound alone is half of a 16 MiB image), cut the bytes
 * written per byte put under the GC benchmark's load from 1.99 to 1.46.
 */
/** A cycle starts when the free segments are at most this share of the image (or twice the reserve)… */
const AUTO_GC_FREE_SHARE = 1 / 8;
/** …or when the reclaimable garbage is at least this share of it. */
const AUTO_GC_GARBAGE_SHARE = 1 / 2;
/** An automatic cycle empties at most this share of the image's segments (and the default byte bound). */
const AUTO_GC_CYCLE_SHARE = 1 / 8;
/**
 * Live entries a checkpoint encodes per turn of the event loop (`OpenOptions.checkpointStepEntries`):
 * about 5 ms here, against 0.65 s for a million keys in one go.
 */
const CHECKPOINT_STEP_ENTRIES = 8192;
/** Builds in steps a checkpoint starts over when snapshots are taken meanwhile, before it builds in one go. */
const CHECKPOINT_RESTARTS = 2;

/**
 * A checkpoint's records: its payload in CKPT chunks, then a PUT or DELETE for each live change
 * made while it was built (section 7.2 of docs/storage/statefs-v3.md).
 */
function checkpointRecords(id: number, payload: Uint8Array, changes: readonly LiveChange[]): RecordToWrite[] {
  const count = Math.max(1, Math.ceil(payload.length / CKPT_CHUNK));
  const records: RecordToWrite[] = [];
  for (let i = 0; i < count; i++) {
    const chunk = payload.subarray(i * CKPT_CHUNK, (i + 1) * CKPT_CHUNK);
    // The header goes beside the slice, not copied with it: no second copy of a large payload.
    records.push({ opcode: Op.CKPT, key: EMPTY, value: chunk, valueHead: encodeCheckpointChunkHeader(id, i, count) });
  }
  for (const c of changes) records.push({ opcode: c.entry === undefined ? Op.DELETE : Op.PUT, key: recordKey(c.subject, c.bin), value: c.entry?.value ?? EMPTY });
  return records;
}

/** A transaction's records: PREPARE, the PAYLOAD chunks of each op (their counts, per op), COMMIT. */
function txnRecords(subject: string, ops: readonly TxnOp[], txnId: number): { records: RecordToWrite[]; chunkCounts: number[] } {
  const subjectKey = Buffer.from(subject, 'latin1');
  const records: RecordToWrite[] = [{ opcode: Op.PREPARE, key: subjectKey, value: encodeTxnMark({ txnId, opCount: ops.length }) }];
  const chunkCounts: number[] = [];
  for (const o of ops) {
    const key = recordKey(subject, o.bin);
    if (o.value === null) {
      records.push({ opcode: Op.PAYLOAD, key, value: encodePayload({ txnId, kind: PAYLOAD_DELETE, index: 0, count: 1, data: EMPTY }) });
      chunkCounts.push(1);
      continue;
    }
    const count = Math.max(1, Math.ceil(o.value.length / TXN_CHUNK));
    for (let i = 0; i < count; i++) {
      const data = o.value.subarray(i * TXN_CHUNK, (i + 1) * TXN_CHUNK);
      records.push({ opcode: Op.PAYLOAD, key, value: encodePayload({ txnId, kind: PAYLOAD_PUT, index: i, count, data }) });
    }
    chunkCounts.push(count);
  }
  records.push({ opcode: Op.COMMIT, key: subjectKey, value: encodeTxnMark({ txnId, opCount: ops.length }) });
  return { records, chunkCounts };
}

/** Let timers, I/O and other requests run (setImmediate: after the poll phase, not before it). */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export class Store extends EventEmitter {
  private status: Status = 'open';
  /** The live index: working (writers) and committed (readers) trees per subject. */
  private readonly keys: Keyspace;
  private sb: Superblock;
  private checkpointing: Promise<void> | undefined;
  /** Snapshots taken and restored so far: a checkpoint built in steps checks that none was meanwhile. */
  private snapshotsTaken = 0;
  private bytesAtCheckpoint = 0;

  private lastCheckpointBytes = 0;
  private entriesAtCheckpoint = 0;
  private writeFailure: StatefsError | undefined;
  /** Next transaction id; ids are assigned at commit, so they increase in log order. */
  private nextTxnId: number;
  private readonly txnLimits: TxnLimits;
  private readonly openTxns = new Map<string, number>();
  private readonly snapshots: SnapshotTable;
  /** Transactions replay found prepared and never finished (see `abortOrphans`). */
  private orphans: Orphan[];
  private readonly mounts: MountTable;
  /** Digests being computed, by snapshot id. */
  private readonly digestJobs = new Map<number, Promise<Uint8Array>>();
  /** Digests being computed and recorded; close waits for them so they reach the disk. */
  private readonly digestWrites = new Set<Promise<void>>();
  /** Snapshot and mount changes run one at a time (their checks and records must not interleave). */
  private metaQueue: Promise<unknown> = Promise.resolve();
  /** A legacy v1 image not yet upgraded; the first write upgrades it (`upgradeLegacy`). */
  private legacy: boolean;
  private upgrading: Promise<void> | undefined;
  private gcRunning: Promise<GcResult> | undefined;
  private readonly compactor: Compactor;
  private openTxnTotal = 0;

  private readonly usage: SegmentUsage;
  /** Per subject: bytes of the records its live tree or its snapshots hold (what quotas count). */
  private readonly subjectBytes = new Map<string, number>();
  /** When each subject was last warned about its soft quota (markers only, never a decision). */
  private readonly quotaWarnedAt = new Map<string, number>();
  private readonly journal: JournalWriter<Sealed>;
  /** What happened while opening: how much was replayed, and any torn tail cut off. */
  readonly openReport: OpenReport;

  private constructor(
    private readonly device: BlockDevice,
    replayed: Replayed,
    private options: OpenOptions,
    placement: CommitPlacement,
  ) {
    super();
    const { sb, scan, index } = replayed;
    this.sb = sb;
    this.nextTxnId = replayed.nextTxnId;
    this.txnLimits = { ...DEFAULT_TXN_LIMITS, ...options.txnLimits };
    this.keys = new Keyspace(index);
    this.snapshots = replayed.snapshots;
    this.orphans = replayed.orphans;
    this.mounts = replayed.mounts;
    // Counted by replay in the walk of the index it makes anyway.
    this.usage = replayed.accounting.usage;
    for (const [of, n] of replayed.accounting.subjectBytes) this.subjectBytes.set(of, n);
    this.usage.resetChain(scan.chain);

    this.journal = new JournalWriter<Sealed>(
      device,
      sb.segmentSize,
      scan.tail,
      scan.maxSegSeq + 1,
      this.usage,
      () => this.reserveSegments(),
      {
        sealed: () => this.keys.seal(),
        durable: (snapshot) => {
          this.onDurable(snapshot);
        },
      },
      // A legacy image starts its v3 log in a fresh segment, and so does a log whose torn tail
      // kept its own SYNC. After any other torn tail the log goes on in place: open refused any
      // tail holding a valid batch of this segment's life.
      replayed.legacy !== undefined || scan.torn?.sealedPast === true,
      placement,
    );
    // The journal since the checkpoint, not counting the checkpoint itself: reopening an image
    // with a large checkpoint and a short log must not make close write the same checkpoint again.
    this.bytesAtCheckpoint = -(scan.bytes - replayed.checkpoint.recordBytes);
    this.lastCheckpointBytes = replayed.checkpoint.payloadBytes;
    this.entriesAtCheckpoint = replayed.checkpoint.entries;
    this.legacy = replayed.legacy !== undefined;
    this.compactor = new Compactor({
      usage: this.usage,
      segmentSize: sb.segmentSize,
      heldEntriesIn: (segments) => this.heldEntriesIn(segments),
      stillHeld: (m) => this.keys.workingTree(m.subject)?.get(m.bin) === m.entry || this.snapshots.holds(m.subject, m.bin, m.entry),
      append: (records) => this.journal.append(records, { useReserve: true }),
      moved: (subject, before, after) => {
        this.addSubjectBytes(subject, after - before);
      },
      marker: (line) => {
        this.marker(line);
      },
    });
    for (const snap of this.snapshots.all()) if (snap.digest === undefined) void this.startDigest(snap);
    this.openReport = {
      format: replayed.legacy === undefined ? 'v3' : 'legacy-v1',
      batchesReplayed: scan.batches,
      recordsReplayed: scan.records,
      ...(scan.torn === undefined ? {} : { tornTailAt: scan.torn.offset }),
    };
  }

  /** Create an image file of `size` bytes, format it, and open it. `EEXIST` if it exists (unless `force`). */
  static async create(path: string, options: CreateOptions = {}): Promise<Store> {
    const size = options.size ?? DEFAULT_IMAGE_SIZE;
    const device = await FileDevice.open(path, { create: size, ...(options.force === true ? { force: true } : {}) });
    try {
      await formatDevice(device, { ...options, zeroed: true });
    } catch (err) {
      await device.close();
      throw err;
    }
    return Store.openDevice(device, options);
  }

  /** Open an image file. `EBUSY` if another process has it open. */
  static async open(path: string, options: OpenOptions = {}): Promise<Store> {
    const device = await FileDevice.open(path, options.readOnly === true ? { readOnly: true } : {});
    return Store.openDevice(device, options);
  }

  /** Format a device (memory or fault-injecting devices in tests, block devices). */
  static async format(device: BlockDevice, options: FormatOptions = {}): Promise<void> {
    await formatDevice(device, options);
  }

  /** Open a store on any block device. The store owns the device and closes it. */
  static async openDevice(device: BlockDevice, options: OpenOptions = {}): Promise<Store> {
    try {
      const legacySubject = checkSubject(options.legacySubject ?? 'legacy', 'open');
      const step = options.checkpointStepEntries;
      if (step !== undefined && !((Number.isSafeInteger(step) && step >= 1) || step === Number.POSITIVE_INFINITY)) {
        throw StatefsError.EINVAL(`checkpointStepEntries ${String(step)}: use a whole number of at least 1, or Infinity`, { op: 'open' });
      }
      const placement = new CommitPlacement(options.commitMode);
      return new Store(device, await replayImage(device, legacySubject), options, placement);
    } catch (err) {
      await device.close();
      throw err;
    }
  }

  // ---- KV API -------------------------------------------------------------------------------

  /** Store `value` under `key` for `subject`. Resolves once durable. */
  async put(subject: string, key: string, value: Uint8Array | string): Promise<void> {
    const op = 'put';
    this.checkWritable(op);
    checkSubject(subject, op);
    this.checkWritePath(subject, key, op);
    if (this.legacy) await this.upgradeLegacy();
    const bin = checkKey(key, op, subject);
    const bytes = toValue(value, op, subject, key);
    checkPutAllowed(this.keys.view(subject), bin, subject, key, op);
    const records: RecordToWrite[] = [{ opcode: Op.PUT, key: recordKey(subject, bin), value: bytes }];
    if (this.options.quotas?.[subject] !== undefined) this.checkQuota(subject, recordLength(subject.length + 1 + bin.length, bytes.length) - this.freedBy(subject, bin), op, key);
    if (!this.journal.fits(records)) {
      await this.reclaim(op);
      checkPutAllowed(this.keys.view(subject), bin, subject, key, op); // the tree may have moved meanwhile
    }
    const appended = this.appendOrThrow(records, op, subject, key, {});
    this.setEntry(subject, bin, Entry.ofText(ownText(bytes), appended.extents));
    await this.awaitDurable(appended.durable, op, subject, key);
  }

  /**
   * Store many values for `subject` with one journal append (a bulk load). Every key, value and
   * tree rule is checked, and space and quota reserved, before anything is written: a refused
   * batch writes nothing. Resolves once every record is durable. Not atomic across a crash: a
   * batch larger than a segment is several journal batches, so after a crash a prefix of it (in
   * the order given) may be present. Use a transaction for all-or-nothing. A key given twice
   * takes its last value.
   */
  async putMany(subject: string, entries: Iterable<readonly [key: string, value: Uint8Array | string]>): Promise<void> {
    const op = 'putMany';
    this.checkWritable(op);
    checkSubject(subject, op);
    const keys: string[] = [];
    const bins: string[] = [];
    const records: RecordToWrite[] = [];
    for (const [key, value] of entries) {
      this.checkWritePath(subject, key, op);
      const bin = checkKey(key, op, subject);
      const bytes = toValue(value, op, subject, key);
      keys.push(key);
      bins.push(bin);
      records.push({ opcode: Op.PUT, key: recordKey(subject, bin), value: bytes });
    }
    if (records.length === 0) return;
    if (this.legacy) await this.upgradeLegacy();
    checkBatchAllowed(this.keys.view(subject), bins, keys, subject, op);
    if (this.options.quotas?.[subject] !== undefined) {
      let delta = 0;
      for (const r of records) delta += recordLength(r.key.length, r.value.length);
      for (const bin of new Set(bins)) delta -= this.freedBy(subject, bin);
      this.checkQuota(subject, delta, op, undefined);
    }
    if (!this.journal.fits(records)) {
      await this.reclaim(op);
      checkBatchAllowed(this.keys.view(subject), bins, keys, subject, op);
    }
    const appended = this.appendOrThrow(records, op, subject, undefined, {});
    const packed = packValues(records.map((r) => r.value));
    let at = 0;
    records.forEach((r, i) => {
      const x = appended.extents[i];
      const bin = bins[i];
      if (x !== undefined && bin !== undefined) this.setEntry(subject, bin, Entry.inRecord(packed, at, r.value.length, x.segment, x.offset, x.length));
      at += r.value.length;
    });
    await this.awaitDurable(appended.durable, op, subject, undefined);
  }

  /** The value of `key`, or `undefined` if it has none. */
  get(subject: string, key: string): Promise<Uint8Array | undefined> {
    return settle(() => this.getNow(subject, key));
  }

  /**
   * `get` without the promise, for embedded callers on a hot path: reads are served from memory
   * either way, so nothing is lost but the wait for a microtask. Throws the same `StatefsError`s
   * `get` rejects with. Not offered by the daemon's client, whose reads cross a socket.
   */
  getSync(subject: string, key: string): Uint8Array | undefined {
    try {
      return this.getNow(subject, key);
    } catch (err) {
      throw asStatefsError(err, 'get');
    }
  }

  /**
   * `getSync` into the caller's buffer, for readers that take values one at a time: no allocation
   * per read. Returns the value's length (`undefined` if the key has no value). The bytes are
   * copied to the start of `target` only when they fit: a result larger than `target.length` means
   * nothing was copied — ask again with a buffer that large. `target` is the caller's; the store
   * never keeps it.
   */
  getInto(subject: string, key: string, target: Uint8Array): number | undefined {
    try {
      if (!(target instanceof Uint8Array)) throw StatefsError.EINVAL('getInto needs a Uint8Array to copy into', { op: 'get', subject, key });
      const entry = this.lookup(subject, key);
      return entry === undefined ? undefined : entry.copyValueInto(target);
    } catch (err) {
      throw asStatefsError(err, 'get');
    }
  }

  private getNow(subject: string, key: string): Uint8Array | undefined {
    return this.lookup(subject, key)?.copyValue();
  }

  /** The acknowledged entry `get` reads for `key` (a mounted snapshot's under `/mnt/`). */
  private lookup(subject: string, key: string): Entry | undefined {
    const op = 'get';
    this.checkOpen(op);
    checkSubject(subject, op);
    if (isMountKey(key)) return this.readMount(subject, key, op);
    return this.keys.readPoint(subject, checkKey(key, op, subject));
  }

  /** Remove `key`. `ENOENT` if it holds no value, `EISDIR` if it has children. Never `ENOSPC`. */
  async delete(subject: string, key: string): Promise<void> {
    const op = 'delete';
    this.checkWritable(op);
    checkSubject(subject, op);
    this.checkWritePath(subject, key, op);
    if (this.legacy) await this.upgradeLegacy();
    const bin = checkKey(key, op, subject);
    checkDeleteAllowed(this.keys.view(subject), bin, subject, key, op);
    const record: RecordToWrite = { opcode: Op.DELETE, key: recordKey(subject, bin), value: EMPTY };
    if (this.mustWaitForCheckpoint([record])) {
      await this.waitForCheckpoint([record], op);
      checkDeleteAllowed(this.keys.view(subject), bin, subject, key, op);
    }
    if (!this.journal.fits([record], { useReserve: true })) {
      await this.reclaim(op);
      checkDeleteAllowed(this.keys.view(subject), bin, subject, key, op);
    }
    const appended = this.appendOrThrow([record], op, subject, key, { useReserve: true });
    this.deleteEntry(subject, bin);
    await this.awaitDurable(appended.durable, op, subject, key);
  }

  /** Keys of `subject` starting with `prefix`, bytewise ascending, a page at a time. */
  list(subject: string, prefix: string = KEY_ROOT, options: ListOptions = {}): Promise<ListPage> {
    return settle(() => this.listNow(subject, prefix, options));
  }

  private listNow(subject: string, prefix: string, options: ListOptions): ListPage {
    const op = 'list';
    this.checkOpen(op);
    checkSubject(subject, op);
    const binPrefix = checkPrefix(prefix, op, subject);
    const limit = options.limit ?? DEFAULT_LIST_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
      throw StatefsError.EINVAL(`limit ${String(limit)}: use 1 to ${MAX_LIST_LIMIT}`, { op, subject });
    }
    const after = options.after === undefined ? undefined : checkPrefix(options.after, op, subject);
    if (binPrefix.startsWith(MOUNT_ROOT)) return this.listMount(subject, binPrefix, after, limit, op);
    return listTree(this.keys.read(subject), binPrefix, after, limit);
  }

  /**
   * Start a transaction on `subject`. `EAGAIN` when the subject or the store has reached its
   * limit of open transactions.
   */
  begin(subject: string): Transaction {
    const op = 'begin';
    this.checkWritable(op);
    checkSubject(subject, op);
    const mine = this.openTxns.get(subject) ?? 0;
    if (mine >= this.txnLimits.perSubject) throw StatefsError.EAGAIN(`${subject} has ${mine} open transactions`, { op, subject });
    if (this.openTxnTotal >= this.txnLimits.perStore) throw StatefsError.EAGAIN(`the store has ${this.openTxnTotal} open transactions`, { op, subject });
    this.openTxns.set(subject, mine + 1);
    this.openTxnTotal++;
    return new Transaction(this.txnHost, subject, this.txnLimits);
  }

  // ---- snapshots ----------------------------------------------------------------------------

  /**
   * Capture `subject`'s state — every write acknowledged before the call, no uncommitted
   * transaction — as snapshot `name`. O(1) in the number of keys. Resolves once the snapshot's
   * record is durable, then emits the marker `statefs: snapshot subject=<subject> name=<name>`.
   */
  snapshot(subject: string, name: string): Promise<void> {
    const op = 'snapshot';
    return this.meta(op, async () => {
      checkSubject(subject, op);
      checkSnapName(name, op, subject);
      if (this.legacy) await this.upgradeLegacy();
      if (this.snapshots.get(subject, name) !== undefined) throw StatefsError.EEXIST(`snapshot ${name}`, { op, subject, name });
      const id = this.snapshots.nextId;
      const appended = this.appendOrThrow([{ opcode: Op.SNAPSHOT, key: metaKey(subject, name), value: encodeSnapId(id) }], op, subject, undefined, {});
      const snap: Snapshot = {
        subject,
        name,
        id,
        tree: this.keys.workingTree(subject)?.clone() ?? new BTree<string, Entry>(),
        digest: undefined,
        at: this.absolute(appended.extents[0]),
      };
      this.snapshots.add(snap);
      this.snapshotsTaken++;
      await this.awaitDurable(appended.durable, op, subject, undefined);
      failpoint('snapshot.create');
      this.marker(`statefs: snapshot subject=${subject} name=${name}`);
      void this.startDigest(snap);
    });
  }

  /** Snapshot names of `subject`, bytewise ascending; with `details`, sizes and digests too. */
  listSnaps(subject: string): Promise<string[]>;
  listSnaps(subject: string, options: { details: true }): Promise<SnapshotInfo[]>;
  listSnaps(subject: string, options?: { details?: boolean }): Promise<string[] | SnapshotInfo[]> {
    return settle(() => {
      const op = 'listSnaps';
      this.checkOpen(op);
      checkSubject(subject, op);
      const snaps = this.snapshots.of(subject);
      if (options?.details !== true) return snaps.map((snap) => snap.name);
      return snaps.map((snap) => this.snapshotInfo(snap));
    });
  }

  /** Delete a snapshot. `ENOENT` if absent; `EBUSY` (naming the mounts) while mounted. Never `ENOSPC`. */
  deleteSnap(subject: string, name: string): Promise<void> {
    const op = 'deleteSnap';
    return this.meta(op, async () => {
      const snap = this.requireSnapshot(subject, name, op);
      const pins = this.mounts.mountsOf(subject, name);
      if (pins.length > 0) {
        const where = pins.map((m) => `${m.caller}:${m.path}`).join(', ');
        throw StatefsError.EBUSY(`snapshot ${name} is mounted at ${where}`, { op, subject, name });
      }
      const record = { opcode: Op.SNAPDEL, key: metaKey(subject, name), value: encodeSnapId(snap.id) };
      if (this.mustWaitForCheckpoint([record])) await this.waitForCheckpoint([record], op);
      const appended = this.appendOrThrow([record], op, subject, undefined, { useReserve: true });
      this.snapshots.remove(subject, name);
      for (const [bin, e] of this.notLive(snap)) if (!this.snapshots.holds(subject, bin, e)) this.uncount(subject, e);
      await this.awaitDurable(appended.durable, op, subject, undefined);
    });
  }

  /** Make `subject`'s live state equal to snapshot `name`, in one commit. */
  restoreSnap(subject: string, name: string): Promise<void> {
    const op = 'restoreSnap';
    return this.meta(op, async () => {
      const snap = this.requireSnapshot(subject, name, op);
      const appended = this.appendOrThrow([{ opcode: Op.RESTORE, key: metaKey(subject, name), value: encodeSnapId(snap.id) }], op, subject, undefined, {});
      const old = this.keys.workingTree(subject) ?? new BTree<string, Entry>();
      const restored = snap.tree.clone();
      diffTrees(
        old,
        restored,
        (bin, e) => {
          this.releaseAfterRestore(subject, bin, e);
        },
        () => undefined,
        (bin, e) => {
          this.releaseAfterRestore(subject, bin, e);
        },
      );
      this.keys.replace(subject, restored);
      this.snapshotsTaken++;
      await this.awaitDurable(appended.durable, op, subject, undefined);
    });
  }

  /** Keys added, removed and changed from `a` to `b`; either may be `LIVE` ('@live'). */
  diffSnaps(subject: string, a: string, b: string): Promise<SnapshotDiff> {
    return settle(() => {
      const op = 'diffSnaps';
      this.checkOpen(op);
      checkSubject(subject, op);
      const from = this.treeFor(subject, a, op);
      const to = this.treeFor(subject, b, op);
      const out: SnapshotDiff = { added: [], removed: [], changed: [] };
      diffTrees(
        from,
        to,
        (bin) => out.removed.push(fromBinary(bin)),
        (bin) => out.added.push(fromBinary(bin)),
        (bin, x, y) => {
          if (!x.sameValue(y)) out.changed.push(fromBinary(bin));
        },
      );
      // diffTrees walks from the highest key down; report bytewise ascending.
      for (const list of [out.added, out.removed, out.changed]) list.sort((p, q) => Buffer.compare(Buffer.from(p), Buffer.from(q)));
      return out;
    });
  }

  /**
   * Recompute the snapshot's digest from the records on the device and compare it with the one
   * taken at creation: `EINTEGRITY` on any mismatch or damaged record. Resolves to the hex digest.
   */
  verifySnapshot(subject: string, name: string): Promise<string> {
    const op = 'verifySnapshot';
    return (async () => {
      this.checkOpen(op);
      const snap = this.requireSnapshot(subject, name, op);
      const expected = snap.digest ?? (await this.startDigest(snap));
      const actual = await snapshotDigest(snap.tree, async (bin, entry) => {
        try {
          return await readEntryValue(this.device, this.sb.segmentSize, entry);
        } catch (err) {
          throw withContext(err, op, subject, fromBinary(bin));
        }
      });
      if (Buffer.compare(expected, actual) !== 0) {
        throw StatefsError.EINTEGRITY(`snapshot ${name}: content digest mismatch`, { op, subject, name });
      }
      return Buffer.from(actual).toString('hex');
    })();
  }

  // ---- mounts -------------------------------------------------------------------------------

  /**
   * Mount `owner`'s snapshot `name` read-only at `mountPath` (`/mnt/<label>`) in `caller`'s
   * namespace: owner key `/state/<rest>` reads as `<mountPath>/<rest>`. Another subject's snapshot
   * needs a grant (`EPERM`); a taken path is `EEXIST`.
   */
  mountSnap(caller: string, owner: string, name: string, mountPath: string): Promise<void> {
    const op = 'mountSnap';
    return this.meta(op, async () => {
      checkSubject(caller, op);
      checkSubject(owner, op);
      const path = checkMountPath(mountPath, op, caller);
      if (caller !== owner && this.options.grants?.[caller]?.includes(owner) !== true) {
        throw StatefsError.EPERM(`${caller} may not mount snapshots of ${owner}`, { op, subject: caller, name });
      }
      const snap = this.requireSnapshot(owner, name, op);
      if (this.mounts.get(caller, path) !== undefined) throw StatefsError.EEXIST(`mount ${mountPath}`, { op, subject: caller, name: mountPath });
      // No legacy upgrade here: a legacy v1 image has no snapshots, and creating one upgrades it.
      const target = { snapId: snap.id, owner, name };
      const appended = this.appendOrThrow([{ opcode: Op.MOUNT, key: metaKey(caller, path), value: encodeMount(target) }], op, caller, undefined, {});
      this.mounts.add({ caller, path, ...target, at: this.absolute(appended.extents[0]) });
      await this.awaitDurable(appended.durable, op, caller, undefined);
    });
  }

  /** Remove the caller's mount at `mountPath` (`ENOENT` if there is none). */
  umount(caller: string, mountPath: string): Promise<void> {
    const op = 'umount';
    return this.meta(op, async () => {
      checkSubject(caller, op);
      const path = checkMountPath(mountPath, op, caller);
      if (this.mounts.get(caller, path) === undefined) throw StatefsError.ENOENT(`mount ${mountPath}`, { op, subject: caller, name: mountPath });
      const record = { opcode: Op.UMOUNT, key: metaKey(caller, path), value: EMPTY };
      if (this.mustWaitForCheckpoint([record])) await this.waitForCheckpoint([record], op);
      const appended = this.appendOrThrow([record], op, caller, undefined, { useReserve: true });
      this.mounts.remove(caller, path);
      await this.awaitDurable(appended.durable, op, caller, undefined);
    });
  }

  /** The caller's mounts, sorted by path. */
  listMounts(caller: string): Promise<MountInfo[]> {
    return settle(() => {
      this.checkOpen('listMounts');
      checkSubject(caller, 'listMounts');
      return this.mounts.of(caller).map((m) => ({ path: m.path, owner: m.owner, name: m.name }));
    });
  }

  // ---- repair (fsck) -------------------------------------------------------------------------

  /**
   * Append an ABORT for every transaction the log prepared but never committed or aborted (replay
   * already ignores them; this closes them for good). Used by `fsck --repair`. Resolves to the count.
   */
  async abortOrphans(): Promise<number> {
    const op = 'abortOrphans';
    this.checkWritable(op);
    if (this.orphans.length === 0) return 0;
    const records = this.orphans.map((o) => ({ opcode: Op.ABORT, key: Buffer.from(o.subject, 'latin1'), value: encodeTxnMark({ txnId: o.txnId, opCount: 0 }) }));
    if (this.mustWaitForCheckpoint(records)) await this.waitForCheckpoint(records, op);
    const appended = this.appendOrThrow(records, op, undefined, undefined, { useReserve: true });
    await this.awaitDurable(appended.durable, op, undefined, undefined);
    const n = this.orphans.length;
    this.orphans = [];
    return n;
  }

  /** Mounts whose snapshot no longer exists (only damage or a hand-edited image makes them). */
  mountsOfMissingSnapshots(): { caller: string; path: string }[] {
    return this.mounts
      .all()
      .filter((m) => this.snapshots.get(m.owner, m.name)?.id !== m.snapId)
      .map((m) => ({ caller: m.caller, path: m.path }));
  }

  /**
   * Replace the access rules that come from outside the image: cross-subject mount grants and
   * quotas (the daemon calls this when it reloads its policy). Applies to the next request.
   */
  setAccess(access: Pick<OpenOptions, 'grants' | 'quotas'>): void {
    const next: OpenOptions = { ...this.options };
    delete next.grants;
    delete next.quotas;
    if (access.grants !== undefined) next.grants = access.grants;
    if (access.quotas !== undefined) next.quotas = access.quotas;
    this.options = next;
  }

  /** Resolves when every write issued before it is durable. */
  async sync(): Promise<void> {
    this.checkOpen('sync');
    await this.journal.drain().catch((err: unknown) => {
      throw asStatefsError(err, 'sync');
    });
  }

  /** Drain, sync and release the image. Idempotent. */
  async close(): Promise<void> {
    if (this.status !== 'open') return;
    this.status = 'closing';
    try {
      await this.metaQueue;
      await this.gcRunning?.catch(() => undefined);
      await Promise.all(this.digestWrites);
      await this.journal.drain().catch(() => undefined);
      await this.checkpointing?.catch(() => undefined);
      // Leave a checkpoint behind when the journal since the last one is long: the next open
      // replays what follows the checkpoint, so this keeps reopen cost bounded across sessions.
      if (this.journal.bytesAppended - this.bytesAtCheckpoint >= Math.max(this.sb.segmentSize, this.lastCheckpointBytes / 8) && this.canCheckpoint()) {
        this.checkpointing ??= this.writeCheckpoint().finally(() => {
          this.checkpointing = undefined;
        });
        await this.checkpointing.catch(() => undefined);
      }
      await this.journal.idle();
    } finally {
      this.status = 'closed';
      await this.device.close();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Space accounting for the image and each subject. */
  stat(): Promise<StoreStat> {
    return settle(() => this.statNow());
  }

  private statNow(): StoreStat {
    this.checkOpen('stat');
    const subjects: SubjectStat[] = [];
    const names = new Set([...this.keys.workingTrees().keys(), ...this.snapshots.all().map((snap) => snap.subject)]);
    for (const subject of [...names].sort()) {
      const tree = this.keys.workingTree(subject);
      const snaps = this.snapshots.of(subject);
      if ((tree === undefined || tree.size === 0) && snaps.length === 0) continue;
      const stat: SubjectStat = { subject, keys: tree?.size ?? 0, liveBytes: 0, snapshotOnlyBytes: 0, usedBytes: this.subjectBytes.get(subject) ?? 0, snapshots: snaps.length };
      for (const e of tree?.values() ?? []) stat.liveBytes += e.diskBytes;
      const counted = new Set<Entry>();
      for (const snap of snaps) {
        for (const [, e] of this.notLive(snap)) {
          if (counted.has(e)) continue;
          counted.add(e);
          stat.snapshotOnlyBytes += e.diskBytes;
        }
      }
      subjects.push(stat);
    }
    const { segmentSize, segmentCount, capacity } = this.sb;
    const segmentsFree = this.usage.freeCount();
    const segmentsUsed = segmentCount - segmentsFree;
    // The head segment's unwritten tail is free space, not used.
    const headFree = this.legacy ? 0 : segmentSize - this.journal.position.offset;
    const usedBytes = segmentsUsed * segmentSize - headFree;
    let liveBytes = 0;
    for (let seg = 0; seg < segmentCount; seg++) liveBytes += this.usage.liveBytes[seg] ?? 0;
    return {
      capacity,
      segmentSize,
      segments: segmentCount,
      segmentsUsed,
      segmentsFree,
      usedBytes,
      liveBytes,
      garbageBytes: usedBytes - liveBytes,
      freeBytes: segmentsFree * segmentSize + headFree,
      subjects,
      snapshots: this.snapshots.all().map((snap) => ({ subject: snap.subject, name: snap.name, exclusiveBytes: this.snapshotInfo(snap).exclusiveBytes })),
    };
  }

  // ---- compaction ---------------------------------------------------------------------------

  /**
   * Run one bounded reclaim cycle (see `GcOptions`): empty the segments with the least live data
   * by moving what they still hold, and free them. Deterministic; `gcPlan` predicts it.
   */
  gcNow(options: GcOptions = {}): Promise<GcResult> {
    const op = 'gcNow';
    return (async () => {
      this.checkWritable(op);
      if (this.legacy) await this.upgradeLegacy();
      // Never while a checkpoint is being built: it has read where records are.
      while (this.checkpointing !== undefined) await this.checkpointing.catch(() => undefined);
      this.checkWritable(op); // the store may be closing by now
      this.gcRunning ??= this.compactor.run(options).finally(() => {
        this.gcRunning = undefined;
      });
      try {
        return await this.gcRunning;
      } catch (err) {
        throw withContext(err, op, undefined, undefined);
      } finally {
        this.maybeCheckpoint();
      }
    })();
  }

  /**
   * What the next `gcNow` with the same options will do, without writing anything, and what each
   * snapshot pins (bytes no cycle can reclaim while it exists).
   */
  gcPlan(options: GcOptions = {}): Promise<GcPlan & { pinnedBySnapshots: SnapshotPin[] }> {
    return settle(() => {
      this.checkOpen('gcPlan');
      const { segments, freedBytes, movedBytes, scannedBytes, remainingGarbageBytes, segmentsFreed } = this.compactor.plan(options);
      const pinnedBySnapshots = this.snapshots.all().map((snap) => ({ subject: snap.subject, name: snap.name, exclusiveBytes: this.snapshotInfo(snap).exclusiveBytes }));
      return { segments, freedBytes, movedBytes, scannedBytes, remainingGarbageBytes, segmentsFreed, pinnedBySnapshots };
    });
  }

  /** Every distinct entry held by a live tree or a snapshot, with a subject and key that hold it. */
  private heldEntriesIn(segments: ReadonlySet<number>): { subject: string; bin: string; entry: Entry }[] {
    const out: { subject: string; bin: string; entry: Entry }[] = [];
    // An entry is in at most one live tree (one subject, one key): no dedupe needed there.
    for (const [subject, tree] of this.keys.workingTrees()) {
      tree.forEachPair((bin, entry) => {
        if (entry.hasRecordIn(segments)) out.push({ subject, bin, entry });
      });
    }
    const seen = new Set<Entry>();
    for (const snap of this.snapshots.all()) {
      for (const [bin, entry] of this.notLive(snap)) {
        if (seen.has(entry) || !entry.hasRecordIn(segments)) continue;
        seen.add(entry);
        out.push({ subject: snap.subject, bin, entry });
      }
    }
    return out;
  }

  /** A checkpoint of the working trees as they are now, its payload sized from the last one's bytes per entry. */
  private checkpointBuild(): CheckpointBuild {
    return new CheckpointBuild(frozenTrees(this.keys.workingTrees()), this.entriesAtCheckpoint > 0 ? this.lastCheckpointBytes / this.entriesAtCheckpoint : undefined);
  }

  /** Whether free segments are down to twice the reserve, or an eighth of the image (whichever is more). */
  private lowOnSpace(): boolean {
    return this.usage.freeCount() <= Math.max(2 * this.reserveSegments(), Math.floor(this.sb.segmentCount * AUTO_GC_FREE_SHARE));
  }

  /** Start a background cycle when the image is getting full of garbage (unless `autoGc: false`). */
  private maybeGc(): void {
    if (this.options.autoGc === false || this.gcRunning !== undefined || this.status !== 'open' || !this.canCheckpoint()) return;
    const { segmentCount, segmentSize } = this.sb;
    const lowOnSpace = this.lowOnSpace();
    const garbage = this.compactor.garbageBytes();
    if (garbage < segmentSize || (!lowOnSpace && garbage < segmentCount * segmentSize * AUTO_GC_GARBAGE_SHARE)) return;
    this.gcNow({ maxSegments: Math.max(1, Math.floor(segmentCount * AUTO_GC_CYCLE_SHARE)) }).catch(() => undefined);
  }

  /**
   * Write a checkpoint of the index and point the superblock at it, so the next open replays
   * only what follows it. Runs automatically as the journal grows.
   */
  checkpoint(): Promise<void> {
    try {
      this.checkWritable('checkpoint');
    } catch (err) {
      return Promise.reject(asStatefsError(err, 'checkpoint'));
    }
    this.checkpointing ??= (this.legacy ? this.upgradeLegacy() : this.writeCheckpoint()).finally(() => {
      this.checkpointing = undefined;
    });
    return this.checkpointing;
  }

  // ---- internals ----------------------------------------------------------------------------

  /**
   * A checkpoint describes the live trees as they were when it began (P), built a step at a time
   * between turns of the event loop, while writes go on. Its records land later (Q), and replay
   * starts at them, so the batch that holds them also holds, after them, every live change made
   * between P and Q, written again as PUT and DELETE records: replayed from the new checkpoint
   * the log gives the state at Q, and replayed from the old one (a crash before the superblock
   * switch) the re-written records repeat the state the log already reached. GC, which moves
   * records, does not run while a checkpoint is being built. When a snapshot was taken or
   * restored meanwhile the build starts over (in one turn after two restarts); when the
   * re-written records would not fit, it is built again at Q in one turn instead
   * (docs/storage/statefs-v3.md, section 7.2).
   */
  private async writeCheckpoint(): Promise<void> {
    while (this.gcRunning !== undefined) await this.gcRunning.catch(() => undefined);
    let build = this.checkpointBuild();
    for (let attempt = 1; ; attempt++) {
      const snapshotsAtP = this.snapshotsTaken;
      // Low on space, or after restarts, in one go: a write that finds no room waits for the
      // checkpoint (`reclaim`), and none may take the reserve meanwhile (`mustWaitForCheckpoint`).
      const oneGo = this.lowOnSpace() || attempt > CHECKPOINT_RESTARTS;
      const step = oneGo ? Number.POSITIVE_INFINITY : (this.options.checkpointStepEntries ?? CHECKPOINT_STEP_ENTRIES);
      while (!build.step(step)) await yieldToEventLoop();
      if (this.snapshotsTaken === snapshotsAtP) break;
      // A snapshot was taken or restored meanwhile: its differences from P would name records
      // written after P — at places P's superseded entries may name too, once their segments were
      // reused — and it would share values the checkpoint writes again for the live keys. Start
      // again from the state now.
      build = this.checkpointBuild();
    }
    // From here to the append: one turn, nothing changes under it.
    const id = this.sb.ckptId + 1;
    let payload = build.finish(this.snapshots, this.mounts, this.nextTxnId);
    let changes = changesSince(build.frozen, this.keys.workingTrees());
    let records = checkpointRecords(id, payload, changes);
    if (changes.length > 0 && !this.journal.fits(records, { useReserve: true, ownBatch: true })) {
      // The writes made meanwhile leave no room for the checkpoint beside them (the reserve is
      // sized for a checkpoint, not for it and every write made while it was built): the state
      // as it is now, in one go, with nothing to write again.
      build = this.checkpointBuild();
      payload = build.finish(this.snapshots, this.mounts, this.nextTxnId);
      changes = [];
      records = checkpointRecords(id, payload, changes);
    }
    const appended = this.appendOrThrow(records, 'checkpoint', undefined, undefined, { useReserve: true, ownBatch: true });
    const count = records.length - changes.length;
    changes.forEach((c, i) => {
      const to = appended.extents[count + i];
      if (c.entry === undefined || to === undefined) return;
      this.addSubjectBytes(c.subject, to.length - c.entry.diskBytes);
      this.usage.moveEntry(c.entry, to);
    });
    // The changes written again count with the checkpoint here: under heavy writes, counting
    // them toward the next one made checkpoints follow each other (1M-key load: peak RSS +70 MB,
    // +20 MB on disk). After a reopen replay counts them as journal (it reads them one by one).
    this.bytesAtCheckpoint = this.journal.bytesAppended;
    this.lastCheckpointBytes = payload.length;
    this.entriesAtCheckpoint = build.entries; // the payload's own entries, for its bytes per entry
    await this.awaitDurable(appended.durable, 'checkpoint', undefined, undefined);
    const next: Superblock = {
      ...this.sb,
      generation: this.sb.generation + 1,
      ckptSegment: appended.batchStart.segment,
      ckptOffset: appended.batchStart.offset,
      ckptSegSeq: appended.batchStart.segSeq,
      ckptId: id,
    };
    try {
      failpoint('superblock.switch');
      await writeSuperblock(this.device, next);
    } catch (err) {
      this.writeFailure = StatefsError.EIO('superblock write failed; reopen the store', { op: 'checkpoint', cause: err });
      throw this.writeFailure;
    }
    this.sb = next;
    this.usage.trimChainBefore(next.ckptSegment);
  }

  /**
   * Upgrade a legacy v1 image in place: write a v3 log (an empty checkpoint, then every v1 value
   * as a PUT) into the segments past the v1 journal, then superblock slot B — at the end of the
   * device, outside the v1 journal — so a crash at any point leaves either the intact v1 image or
   * the upgraded one. `ENOSPC` (nothing written; the image stays v1 and readable) if it cannot fit.
   */
  private upgradeLegacy(): Promise<void> {
    this.upgrading ??= this.writeUpgrade().catch((err: unknown) => {
      this.upgrading = undefined;
      throw err;
    });
    return this.upgrading;
  }

  private async writeUpgrade(): Promise<void> {
    const entries: [string, Entry][] = [];
    for (const [subject, tree] of this.keys.workingTrees()) for (const [bin, e] of tree.entries()) entries.push([indexKey(subject, bin), e]);
    const records: RecordToWrite[] = [
      { opcode: Op.CKPT, key: EMPTY, value: encodeCheckpointChunk(1, 0, 1, encodeCheckpoint(emptyCheckpoint())) },
      ...entries.map(([ik, e]) => ({ opcode: Op.PUT, key: Buffer.from(ik, 'latin1'), value: e.value })),
    ];
    const appended = this.appendOrThrow(records, 'upgrade', undefined, undefined, { ownBatch: true });
    entries.forEach(([ik, e], i) => {
      const extent = appended.extents[i + 1];
      if (extent === undefined) return;
      // Open counted the entry already (with no record): now its record, once.
      this.usage.moveEntry(e, extent);
      this.addSubjectBytes(ik.slice(0, ik.indexOf('\0')), e.diskBytes);
    });
    await this.awaitDurable(appended.durable, 'upgrade', undefined, undefined);
    const sb: Superblock = {
      ...this.sb,
      generation: 1,
      ckptSegment: appended.batchStart.segment,
      ckptOffset: appended.batchStart.offset,
      ckptSegSeq: appended.batchStart.segSeq,
      ckptId: 1,
    };
    try {
      await writeSuperblock(this.device, sb);
      // Then slot A (over the start of the old v1 journal) with the same pointers, so either slot
      // can be damaged later without losing the upgrade.
      await writeSuperblock(this.device, { ...sb, generation: 2 });
    } catch (err) {
      this.writeFailure = StatefsError.EIO('superblock write failed during the v1 upgrade; reopen the store', { op: 'upgrade', cause: err });
      throw this.writeFailure;
    }
    this.sb = { ...sb, generation: 2 };
    this.legacy = false;
    this.usage.trimChainBefore(sb.ckptSegment);
  }

  private maybeCheckpoint(): void {
    if (this.checkpointing !== undefined || this.gcRunning !== undefined || this.status !== 'open' || !this.canCheckpoint()) return;
    if (this.journal.bytesAppended - this.bytesAtCheckpoint < this.checkpointThreshold()) return;
    // Background work: a failure poisons the store (writeFailure) and surfaces on the next write.
    this.checkpoint().catch(() => undefined);
  }

  /**
   * Journal bytes between checkpoints: the option, else four segments (fewer on small images: a
   * quarter of the segments outside the reserve), and never less than twice the last checkpoint.
   */
  private checkpointThreshold(): number {
    if (this.options.checkpointBytes !== undefined) return this.options.checkpointBytes;
    const usable = this.sb.segmentCount - this.reserveSegments();
    const segments = Math.min(4, Math.max(1, Math.floor(usable / 4)));
    return Math.max(segments * this.sb.segmentSize, 2 * this.lastCheckpointBytes);
  }

  /**
   * Before a write gives up with `ENOSPC`: a checkpoint (frees segments that hold only
   * superseded records and lets GC at the ones behind it), then one GC cycle. Not with
   * `autoGc: false`, where space comes back only through `gcNow`. Then `op` is checked again: a
   * checkpoint that failed here, or a close meanwhile, answers `EIO` or `EBADF`, not `ENOSPC`.
   */
  private async reclaim(op: string): Promise<void> {
    if (this.legacy || !this.canCheckpoint() || this.options.autoGc === false) return;
    await this.gcRunning?.catch(() => undefined);
    await this.checkpoint().catch(() => undefined);
    await this.gcNow().catch(() => undefined);
    this.checkWritable(op);
  }

  /**
   * See `OpenOptions.reserveSegments`. The next checkpoint is estimated from the last one's bytes
   * per entry (48 before the first), times the entries held now, with a quarter for slack.
   */
  private reserveSegments(): number {
    if (this.options.reserveSegments !== undefined) return this.options.reserveSegments;
    const { segmentCount, segmentSize } = this.sb;
    const perEntry = this.entriesAtCheckpoint > 0 ? this.lastCheckpointBytes / this.entriesAtCheckpoint : 48;
    const checkpoint = Math.max(this.lastCheckpointBytes, this.usage.entries * perEntry);
    const forCheckpoint = 1 + Math.ceil((1.25 * checkpoint) / segmentSize);
    return Math.min(Math.max(2, Math.ceil(segmentCount / 32), forCheckpoint), Math.floor(segmentCount / 2));
  }

  /**
   * Whether `records`, written with the reserve allowed (deletes and the like), would take some
   * of it while a checkpoint is being built: the reserve is what that checkpoint will be written
   * into, so such a write waits for it first (`waitForCheckpoint`).
   */
  private mustWaitForCheckpoint(records: RecordToWrite[]): boolean {
    return this.checkpointing !== undefined && !this.journal.fits(records, {});
  }

  /** Then `op` is checked again, as after `reclaim`: the checkpoint waited for may have failed. */
  private async waitForCheckpoint(records: RecordToWrite[], op: string): Promise<void> {
    while (this.mustWaitForCheckpoint(records)) await this.checkpointing?.catch(() => undefined);
    this.checkWritable(op);
  }

  private canCheckpoint(): boolean {
    return this.options.readOnly !== true && !this.legacy && this.writeFailure === undefined && this.journal.failed === undefined;
  }

  private onDurable(sealed: Sealed): void {
    this.keys.publish(sealed);
    this.maybeCheckpoint();
    this.maybeGc();
  }

  private appendOrThrow(
    records: RecordToWrite[],
    op: string,
    subject: string | undefined,
    key: string | undefined,
    options: { useReserve?: boolean; ownBatch?: boolean; failpoint?: FailpointName },
  ): ReturnType<JournalWriter<unknown>['append']> {
    try {
      return this.journal.append(records, options);
    } catch (err) {
      throw withContext(err, op, subject, key);
    }
  }

  private async awaitDurable(durable: Promise<void>, op: string, subject: string | undefined, key: string | undefined): Promise<void> {
    try {
      await durable;
    } catch (err) {
      throw withContext(err, op, subject, key);
    }
  }

  /** Write a transaction as PREPARE, PAYLOADs, COMMIT in one append, then apply it. */
  private async commitTxn(subject: string, ops: TxnOp[]): Promise<void> {
    const op = 'txn.commit';
    this.checkWritable(op);
    if (this.legacy) await this.upgradeLegacy();
    validateTxnOps(this.keys.view(subject), (bin) => this.keys.children(subject, bin), subject, ops);
    let txnId = this.nextTxnId;
    let { records, chunkCounts } = txnRecords(subject, ops, txnId);
    const onlyDeletes = ops.every((o) => o.value === null);
    let delta = 0;
    for (const r of records) if (r.opcode === Op.PAYLOAD) delta += recordLength(r.key.length, r.value.length);
    for (const o of ops) delta -= this.freedBy(subject, o.bin);
    if (!onlyDeletes) this.checkQuota(subject, delta, op, undefined);
    if (onlyDeletes && this.mustWaitForCheckpoint(records)) {
      await this.waitForCheckpoint(records, op);
      validateTxnOps(this.keys.view(subject), (bin) => this.keys.children(subject, bin), subject, ops);
    }
    if (!this.journal.fits(records, { useReserve: onlyDeletes })) {
      await this.reclaim(op);
      validateTxnOps(this.keys.view(subject), (bin) => this.keys.children(subject, bin), subject, ops);
    }
    // Another transaction may have committed while this one waited: ids follow log order.
    if (txnId !== this.nextTxnId) {
      txnId = this.nextTxnId;
      ({ records, chunkCounts } = txnRecords(subject, ops, txnId));
    }
    const options = onlyDeletes ? { useReserve: true } : {};
    const appended = failpointArmed('txn.before-commit') ? this.appendTxnSplit(records, op, subject, options) : this.appendOrThrow(records, op, subject, undefined, options);
    this.nextTxnId++;
    let at = 1;
    ops.forEach((o, i) => {
      const count = chunkCounts[i] ?? 1;
      const extents = appended.extents.slice(at, at + count);
      at += count;
      if (o.value === null) this.deleteEntry(subject, o.bin);
      else this.setEntry(subject, o.bin, Entry.of(o.value, extents));
    });
    await this.awaitDurable(appended.durable, op, subject, undefined);
  }

  /**
   * Failpoint runs only: the COMMIT in a batch of its own (so a write and flush of its own), and
   * the failpoint hit just before that write, when PREPARE and the PAYLOADs are durable.
   */
  private appendTxnSplit(records: RecordToWrite[], op: string, subject: string, options: { useReserve?: boolean }): Appended {
    const head = this.appendOrThrow(records.slice(0, -1), op, subject, undefined, options);
    const commit = this.appendOrThrow(records.slice(-1), op, subject, undefined, { ...options, ownBatch: true, failpoint: 'txn.before-commit' });
    const durable = Promise.all([head.durable, commit.durable]).then(() => undefined);
    return { ...commit, extents: [...head.extents, ...commit.extents], durable };
  }

  /** Put `entry` in the working tree, releasing the entry it replaces. */
  private setEntry(subject: string, bin: string, entry: Entry): void {
    const old = this.keys.set(subject, bin, entry);
    this.release(subject, bin, old);
    this.count(subject, entry);
  }

  /** Bytes a write of `bin` releases: its current entry, unless a snapshot keeps holding it. */
  private freedBy(subject: string, bin: string): number {
    const old = this.keys.workingTree(subject)?.get(bin);
    return old === undefined || this.snapshots.holds(subject, bin, old) ? 0 : old.diskBytes;
  }

  /** Refuse a write that would take `subject` over its hard quota; warn over the soft one. */
  private checkQuota(subject: string, delta: number, op: string, key: string | undefined): void {
    const quota = this.options.quotas?.[subject];
    if (quota === undefined || delta <= 0) return;
    const used = (this.subjectBytes.get(subject) ?? 0) + delta;
    if (used > quota.hard) {
      this.marker(`statefs: quota deny subject=${subject} used=${used} hard=${quota.hard}`);
      throw StatefsError.EDQUOTA(`${subject} would use ${used} bytes (hard quota ${quota.hard})`, { op, subject, ...(key === undefined ? {} : { key }) });
    }
    if (used > quota.soft) {
      const now = Date.now();
      const last = this.quotaWarnedAt.get(subject);
      if (last === undefined || now - last >= (this.options.quotaWarnIntervalMs ?? 60_000)) {
        this.quotaWarnedAt.set(subject, now);
        this.marker(`statefs: quota warn subject=${subject} used=${used} soft=${quota.soft}`);
      }
    }
  }

  /** An entry starts being held (by the live tree or a snapshot): its records are in use. */
  private count(subject: string, e: Entry): void {
    this.usage.addEntry(e);
    this.addSubjectBytes(subject, e.diskBytes);
  }

  /** Nothing holds the entry any more. */
  private uncount(subject: string, e: Entry): void {
    this.usage.removeEntry(e);
    this.addSubjectBytes(subject, -e.diskBytes);
  }

  /** The subject's records take `delta` more bytes (fewer, if negative). */
  private addSubjectBytes(subject: string, delta: number): void {
    this.subjectBytes.set(subject, (this.subjectBytes.get(subject) ?? 0) + delta);
  }

  /** An entry left the live tree: its records stay in use only while a snapshot holds it. */
  private release(subject: string, bin: string, old: Entry | undefined): void {
    if (old !== undefined && !this.snapshots.holds(subject, bin, old)) this.uncount(subject, old);
  }

  private deleteEntry(subject: string, bin: string): void {
    const old = this.keys.delete(subject, bin);
    this.release(subject, bin, old);
  }

  private readonly txnHost: TxnHost = {
    view: (subject) => this.keys.view(subject),
    children: (subject, bin) => this.keys.children(subject, bin),
    readCommitted: (subject, bin) => {
      const entry = this.keys.read(subject)?.get(bin);
      return entry?.copyValue();
    },
    checkWritable: (op) => {
      this.checkWritable(op);
    },
    checkWritePath: (subject, key, op) => {
      this.checkWritePath(subject, key, op);
    },
    commitTxn: (subject, ops) => this.commitTxn(subject, ops),
    releaseTxn: (subject) => {
      const n = (this.openTxns.get(subject) ?? 1) - 1;
      if (n === 0) this.openTxns.delete(subject);
      else this.openTxns.set(subject, n);
      this.openTxnTotal--;
    },
  };


  /** Run a snapshot or mount change after the previous one finished. */
  private meta<T>(op: string, fn: () => Promise<T>): Promise<T> {
    const run = async (): Promise<T> => {
      this.checkWritable(op);
      return fn();
    };
    const next = this.metaQueue.then(run, run);
    this.metaQueue = next.catch(() => undefined);
    return next;
  }

  private absolute(x: Extent | undefined): number {
    return x === undefined ? 0 : segmentOffset(x.segment, this.sb.segmentSize) + x.offset;
  }

  private marker(line: string): void {
    this.emit('marker', line);
  }

  private requireSnapshot(subject: string, name: string, op: string): Snapshot {
    checkSubject(subject, op);
    checkSnapName(name, op, subject);
    const snap = this.snapshots.get(subject, name);
    if (snap === undefined) throw StatefsError.ENOENT(`snapshot ${name}`, { op, subject, name });
    return snap;
  }

  private treeFor(subject: string, name: string, op: string): Tree {
    if (name === LIVE) return this.keys.read(subject) ?? new BTree<string, Entry>();
    return this.requireSnapshot(subject, name, op).tree;
  }

  /** Entries of a snapshot that its subject's live tree does not hold. */
  private notLive(snap: Snapshot): [string, Entry][] {
    const out: [string, Entry][] = [];
    const live = this.keys.workingTree(snap.subject) ?? new BTree<string, Entry>();
    diffTrees(
      snap.tree,
      live,
      (bin, e) => out.push([bin, e]),
      () => undefined,
      (bin, e) => out.push([bin, e]),
    );
    return out;
  }

  private releaseAfterRestore(subject: string, bin: string, e: Entry): void {
    if (!this.snapshots.holds(subject, bin, e)) this.uncount(subject, e);
  }

  private snapshotInfo(snap: Snapshot): SnapshotInfo {
    let bytes = 0;
    for (const e of snap.tree.values()) bytes += e.diskBytes;
    let exclusiveBytes = 0;
    for (const [bin, e] of this.notLive(snap)) if (!this.snapshots.holds(snap.subject, bin, e, snap)) exclusiveBytes += e.diskBytes;
    const info: SnapshotInfo = { name: snap.name, id: snap.id, keys: snap.tree.size, bytes, exclusiveBytes };
    if (snap.digest !== undefined) info.digest = Buffer.from(snap.digest).toString('hex');
    return info;
  }

  /** Compute a snapshot's digest in the background and record it (SNAPDIGEST) once known. */
  private startDigest(snap: Snapshot): Promise<Uint8Array> {
    let job = this.digestJobs.get(snap.id);
    if (job !== undefined) return job;
    job = snapshotDigest(snap.tree, (_bin, entry) => entry.value);
    this.digestJobs.set(snap.id, job);
    const recorded = job
      .then(async (digest) => {
        snap.digest = digest;
        const record = { opcode: Op.SNAPDIGEST, key: metaKey(snap.subject, snap.name), value: encodeSnapDigest(snap.id, digest) };
        if (this.mustWaitForCheckpoint([record])) await this.waitForCheckpoint([record], 'snapshot.digest');
        if (this.status === 'closed' || !this.canCheckpoint() || this.snapshots.get(snap.subject, snap.name) !== snap) return;
        await this.journal.append([record], { useReserve: true }).durable;
      })
      // A digest that did not reach the disk is recomputed after the next open.
      .catch(() => undefined)
      .finally(() => {
        this.digestJobs.delete(snap.id);
        this.digestWrites.delete(recorded);
      });
    this.digestWrites.add(recorded);
    return job;
  }

  /** Writes only ever go under /state/: at or under a mount is `EROFS`, elsewhere under /mnt/ `EINVAL`. */
  private checkWritePath(subject: string, key: string, op: string): void {
    if (!isMountKey(key)) return;
    const bin = toBinary(key, 'key', op);
    const mount = this.mounts.covering(subject, bin);
    if (mount !== undefined) throw StatefsError.EROFS(`${key} is under the read-only mount ${fromBinary(mount.path)}`, { op, subject, key });
    throw StatefsError.EINVAL(`key ${key} is not under /state/ (and no snapshot is mounted there)`, { op, subject, key });
  }

  /** A read of `/mnt/<label>/<rest>`: the mounted snapshot's `/state/<rest>`. */
  private readMount(caller: string, key: string, op: string): Entry | undefined {
    const bin = checkKey(key, op, caller, MOUNT_ROOT);
    const mount = this.mounts.covering(caller, bin);
    if (mount === undefined) throw StatefsError.ENOENT(`mount for ${key}`, { op, subject: caller, key });
    if (bin === mount.path) return undefined;
    return this.snapshots.get(mount.owner, mount.name)?.tree.get(`/state${bin.slice(mount.path.length)}`);
  }

  private listMount(caller: string, prefix: string, after: string | undefined, limit: number, op: string): ListPage {
    const mount = this.mounts.covering(caller, prefix);
    if (mount === undefined) throw StatefsError.ENOENT(`mount for ${fromBinary(prefix)}`, { op, subject: caller });
    const tree = this.snapshots.get(mount.owner, mount.name)?.tree;
    const toOwner = (bin: string): string => `/state${bin.slice(mount.path.length)}`;
    const ownerAfter = after === undefined ? undefined : after.startsWith(mount.path) ? toOwner(after) : undefined;
    const page = listTree(tree, toOwner(prefix), ownerAfter, limit);
    const back = (k: string): string => `${fromBinary(mount.path)}${k.slice('/state'.length)}`;
    return page.next === undefined ? { keys: page.keys.map(back) } : { keys: page.keys.map(back), next: back(page.next) };
  }

  private checkOpen(op: string): void {
    if (this.status !== 'open') throw StatefsError.EBADF('store', { op });
  }

  private checkWritable(op: string): void {
    this.checkOpen(op);
    if (this.options.readOnly === true) throw StatefsError.EROFS('the store is open read-only', { op });
    const failed = this.writeFailure ?? this.journal.failed;
    if (failed !== undefined) throw StatefsError.EIO(`an earlier write failed; reopen the store (${failed.message})`, { op, cause: failed });
  }
}

