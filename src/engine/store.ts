import { EventEmitter } from 'node:events';
import {
  EMPTY,
  appendOrThrow,
  asStatefsError,
  awaitDurable,
  isMountKey,
  listTree,
  metaKey,
  recordKey,
  settle,
  readsOnDemand,
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
} from './store-types.js';
import type { BlockDevice } from '../device/device.js';
import { FileDevice } from '../device/file-device.js';
import { StatefsError } from '../errors.js';
import { Op } from '../format/opcodes.js';
import type { Superblock } from '../format/superblock.js';
import { Entry } from './entry.js';
import type { EntryRef, EntryTable } from './entry-table.js';
import { JournalWriter, type AppendOptions, type Appended, type Extent, type RecordToWrite } from './journal-writer.js';
import { recordLength } from '../format/record.js';
import { segmentOffset } from '../format/superblock.js';
import { DEFAULT_IMAGE_SIZE, formatDevice, type FormatOptions } from './mkfs.js';
import { KEY_ROOT, checkKey, checkMountPath, checkPrefix, checkSnapName, checkSubject, fromBinary, toValue } from './names.js';
import { BTree, diffTrees } from './btree.js';
import { batchRecords } from './batch-records.js';
import { directoryOrder } from './batch-order.js';
import { MOVED_RECORD_BOUND, changeBound, mountBound, restoreBound, snapshotHeaderBound } from './checkpoint-bound.js';
import { Checkpointer, checkCheckpointOptions, type CheckpointerHost } from './checkpointer.js';
import { writeUpgrade, type UpgradeHost } from './legacy-upgrade.js';
import { autoGcCycle } from './auto-gc.js';
import { MOUNT_ROOT, type MountTable } from './mount-table.js';
import { MountNamespace } from './mount-namespace.js';
import { SnapshotTable, type Snapshot } from './snapshot-table.js';
import { DigestJobs, snapshotDigest } from './snapshot-digest.js';
import { SpaceAccounting, type QuotaWarning } from './space-accounting.js';
import { SyncValueReader, readMovingEntryValue, type MovingLog } from './entry-reader.js';
import { readOnlyLog, replayReadOnly } from './read-only-view.js';
import { ownText, packValues } from './value-pool.js';
import { encodeMount, encodeSnapDigest, encodeSnapId } from '../format/meta-records.js';
import { replayImage, type Orphan, type Replayed } from './replay.js';
import { alignSuperblockSlots } from './superblock-io.js';
import type { SegmentUsage } from './segment-usage.js';
import { CommitPlacement } from './commit-mode.js';
import { Compactor, type GcOptions, type GcPlan, type GcResult } from './compactor.js';
import { Keyspace, UNDO_BUILD_LIMIT, type Sealed, type Tree } from './keyspace.js';
import { checkDeleteAllowed, checkPutAllowed } from './tree-rules.js';
import { checkBatchAllowed } from './batch-rules.js';
import { DEFAULT_TXN_LIMITS, OpenTxnCounts, Transaction, txnRecords, validateTxnOps, type TxnHost, type TxnLimits, type TxnOp } from './transaction.js';
import { encodeTxnMark } from '../format/txn-records.js';
import { failpoint, failpointArmed } from './failpoints.js';

type Status = 'open' | 'closing' | 'closed';

const DEFAULT_LIST_LIMIT = 1000;
const MAX_LIST_LIMIT = 10_000;

/**
 * A StateFS store: one image, many subjects. Every write resolves only when durable; concurrent
 * writes share flushes (group commit). Reads see acknowledged writes only: the index readers use
 * is replaced by the writers' index at the end of each durable round.
 */
export class Store extends EventEmitter {
  private status: Status = 'open';
  /** The live index: working (writers) and committed (readers) trees per subject. */
  private readonly keys: Keyspace;
  private sb: Superblock;
  private readonly checkpointer: Checkpointer;
  private writeFailure: StatefsError | undefined;
  /** Next transaction id; ids are assigned at commit, so they increase in log order. */
  private nextTxnId: number;
  /** Writes waiting for room (`writeInTurn`), and the last of them: later writes go after it. */
  private writesWaiting = 0;
  /** `close()` was called: new calls are EBADF, writes already waiting for room still run. */
  private closeRequested = false;
  private closing: Promise<void> | undefined;
  /** Woken when `writesWaiting` comes back to 0. */
  private readonly noWritesWaiting: (() => void)[] = [];
  private lastWaitingWrite: Promise<unknown> = Promise.resolve();
  private readonly txnLimits: TxnLimits;
  private readonly openTxns: OpenTxnCounts;
  private readonly snapshots: SnapshotTable;
  /** Transactions replay found prepared and never finished (see `abortOrphans`). */
  private orphans: Orphan[];
  private readonly mounts: MountTable;
  private readonly mountNamespace: MountNamespace;
  private readonly digests = new DigestJobs(
    (entry) => this.entries.value(entry),
    (snap, digest) => this.recordDigest(snap, digest),
    (snap) => this.snapshots.get(snap.subject, snap.name) === snap,
  );
  /** Snapshot and mount changes run one at a time (their checks and records must not interleave). */
  private metaQueue: Promise<unknown> = Promise.resolve();
  /** Every snapshot and mount operation called so far, settled (flushed or failed): what close() waits for. */
  private metaSettled: Promise<void> = Promise.resolve();
  /** A legacy v1 image not yet upgraded; the first write upgrades it (`upgradeLegacy`). */
  private legacy: boolean;
  private upgrading: Promise<void> | undefined;
  /** Set for a legacy v1 image only. */
  private readonly upgradeHost: UpgradeHost | undefined;
  private gcRunning: Promise<GcResult> | undefined;
  /** `verifySnapshot` calls still reading the device (close waits for them). */
  private readonly verifying = new Set<Promise<string>>();
  /** Whether a gcNow caller gets the running cycle's result (else it is a 'gc' event). */
  private gcReportedToCaller = false;
  private readonly compactor: Compactor;

  private readonly usage: SegmentUsage;
  /** The entries loaded at open, as rows (`EntryRef`), and the one way to read any entry. */
  private readonly entries: EntryTable;
  private readonly space: SpaceAccounting;
  private readonly journal: JournalWriter<Sealed>;
  /** What happened while opening: how much was replayed, and any torn tail cut off. */
  readonly openReport: OpenReport;

  private constructor(
    private readonly device: BlockDevice,
    replayed: Replayed,
    private options: OpenOptions,
    placement: CommitPlacement,
    /** A read-only store's segment headers as its open read them (`readOnlyLog`). */
    private readonly readOnlyHeaders?: Map<number, Uint8Array>,
  ) {
    super();
    const { sb, scan, index } = replayed;
    this.sb = sb;
    this.nextTxnId = replayed.nextTxnId;
    this.txnLimits = { ...DEFAULT_TXN_LIMITS, ...options.txnLimits };
    this.openTxns = new OpenTxnCounts(this.txnLimits);
    this.keys = new Keyspace(index);
    this.snapshots = replayed.snapshots;
    this.orphans = replayed.orphans;
    this.mounts = replayed.mounts;
    this.mountNamespace = new MountNamespace(this.mounts, this.snapshots);
    // Counted by replay in the walk of the index it makes anyway.
    this.usage = replayed.accounting.usage;
    this.entries = replayed.entries;
    const readSync = device.readSync?.bind(device);
    if (readSync !== undefined && readsOnDemand(options, device)) {
      const usage = this.usage;
      this.entries.readOnDemand({ reader: new SyncValueReader({ size: device.size, readSync }, sb.segmentSize), unchanged: (segment) => usage.takenCount(segment) === 0 });
    }
    this.space = new SpaceAccounting(
      {
        usage: this.usage,
        entries: this.entries,
        snapshots: this.snapshots,
        trees: () => this.keys.workingTrees(),
        quotaOptions: () => this.options,
        marker: (line) => {
          this.marker(line);
        },
      },
      replayed.accounting.subjectBytes,
    );
    this.usage.resetChain(scan.chain);

    this.journal = new JournalWriter<Sealed>(
      device,
      sb.segmentSize,
      scan.tail,
      scan.maxSegSeq + 1,
      this.usage,
      () => this.checkpointer.reserveSegments(),
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
      scan.unwritten,
    );
    const moved = (subject: string, before: number, after: number): void => {
      this.space.addSubjectBytes(subject, after - before);
      this.checkpointer.grew(MOVED_RECORD_BOUND);
    };
    // A legacy entry's first record: open's bound of the index counted it already.
    const upgradedValue = (subject: string, before: number, after: number): void => {
      this.space.addSubjectBytes(subject, after - before);
    };
    const imageHost: CheckpointerHost = {
      device,
      usage: this.usage,
      entries: this.entries,
      journal: this.journal,
      snapshots: this.snapshots,
      mounts: this.mounts,
      trees: () => this.keys.workingTrees(),
      nextTxnId: () => this.nextTxnId,
      superblock: () => this.sb,
      switched: (next) => {
        this.sb = next;
        this.usage.trimChainBefore(next.ckptSegment);
      },
      gcRunning: () => this.gcRunning,
      moved,
      writeFailed: (error) => {
        this.writeFailure = error;
      },
    };
    this.checkpointer = new Checkpointer(imageHost, options, scan.bytes, replayed.checkpoint, replayed.accounting);
    const legacy = replayed.legacy;
    this.upgradeHost = legacy && {
      ...imageHost,
      v1Journal: { v1End: legacy.end, v1Crc: legacy.journalCrc },
      journal: this.journal,
      moved: upgradedValue,
      upgraded: (next, checkpointBytes) => {
        this.sb = next;
        this.legacy = false;
        this.checkpointer.upgraded(checkpointBytes);
        this.usage.trimChainBefore(next.ckptSegment);
      },
    };
    this.legacy = legacy !== undefined;
    this.compactor = new Compactor({
      usage: this.usage,
      entries: this.entries,
      segmentSize: sb.segmentSize,
      heldEntriesIn: (segments) => this.space.heldEntriesIn(segments),
      stillHeld: (m) => this.keys.workingTree(m.subject)?.get(m.bin) === m.entry || this.snapshots.holds(m.subject, m.bin, m.entry),
      append: (records) => this.journal.append(records, { useReserve: true }),
      moved,
      marker: (line) => {
        this.marker(line);
      },
    });
    for (const snap of this.snapshots.all()) if (snap.digest === undefined) void this.digests.start(snap);
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
      checkCheckpointOptions(options);
      const placement = new CommitPlacement(options.commitMode);
      const onDemand = readsOnDemand(options, device);
      if (options.readOnly === true) {
        // No lock: another process may be writing the image (read-only-view.ts).
        const view = await replayReadOnly(device, legacySubject);
        return new Store(device, view.replayed, options, placement, view.headers);
      }
      const replayed = await replayImage(device, legacySubject, !onDemand);
      // Before anything is written: both superblock slots name the checkpoint in force.
      if (replayed.legacy === undefined) replayed.sb = await alignSuperblockSlots(device, replayed.sb);
      return new Store(device, replayed, options, placement);
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
    this.mountNamespace.checkWritePath(subject, key, op);
    if (this.legacy) await this.upgradeLegacy();
    const bin = checkKey(key, op, subject);
    const bytes = toValue(value, op, subject, key);
    checkPutAllowed(this.keys.view(subject), bin, subject, key, op);
    const records: RecordToWrite[] = [{ opcode: Op.PUT, key: recordKey(subject, bin), value: bytes }];
    let warning = this.options.quotas?.[subject] === undefined ? undefined : this.space.checkQuota(subject, recordLength(subject.length + 1 + bin.length, bytes.length) - this.space.freedBy(subject, bin), op, key);
    // The common case inline, with no closure: nothing waits for room and the record fits.
    const appended =
      this.writesWaiting === 0 && this.journal.fits(records)
        ? this.appendPut(subject, bin, key, bytes, records)
        : await this.writeInTurn(
            () => this.reclaimUnlessFits(records, op),
            () => {
              // Checked again in its turn: the tree, and the quota, may have moved meanwhile.
              checkPutAllowed(this.keys.view(subject), bin, subject, key, op);
              if (this.options.quotas?.[subject] !== undefined) {
                warning = this.space.checkQuota(subject, recordLength(subject.length + 1 + bin.length, bytes.length) - this.space.freedBy(subject, bin), op, key);
              }
              return this.appendPut(subject, bin, key, bytes, records);
            },
          );
    await awaitDurable(appended.durable, op, subject, key);
    this.space.warnQuota(warning);
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
    const values: Uint8Array[] = [];
    for (const pair of entries) {
      // Not destructured: `[key, value]` would walk each pair with an iterator.
      const key = pair[0];
      const value = pair[1];
      this.mountNamespace.checkWritePath(subject, key, op);
      const bin = checkKey(key, op, subject);
      keys.push(key);
      bins.push(bin);
      values.push(toValue(value, op, subject, key));
    }
    if (values.length === 0) return;
    if (this.legacy) await this.upgradeLegacy();
    // Into the index grouped by directory: consecutive inserts share their path (batch-order.ts).
    const order = directoryOrder(bins);
    checkBatchAllowed(this.keys.view(subject), bins, keys, order, subject, op);
    const { records, slices } = batchRecords(subject, bins, values);
    const checkQuota = (): QuotaWarning | undefined => {
      if (this.options.quotas?.[subject] === undefined) return undefined;
      // A key given twice keeps only its last record: the earlier ones are garbage at once.
      const last = new Map<string, number>();
      bins.forEach((bin, i) => last.set(bin, i));
      let delta = 0;
      for (const [bin, i] of last) delta += (slices[3 * i + 1] ?? 0) - this.space.freedBy(subject, bin);
      return this.space.checkQuota(subject, delta, op, undefined);
    };
    let warning = checkQuota();
    const write = (waited: boolean): Appended => {
      if (waited) {
        // Checked again in its turn: the tree, and the quota, may have moved meanwhile.
        checkBatchAllowed(this.keys.view(subject), bins, keys, order, subject, op);
        warning = checkQuota();
      }
      const appended = appendOrThrow(this.journal, records, op, subject, undefined, {});
      const packed = packValues(values);
      // Where each value starts in `packed` (the values in the order given; a batch may pass 2 GiB).
      const starts = new Float64Array(values.length);
      for (let i = 1; i < values.length; i++) starts[i] = (starts[i - 1] ?? 0) + (values[i - 1]?.length ?? 0);
      if (bins.length >= UNDO_BUILD_LIMIT) this.keys.batchAhead(subject);
      for (const i of order) {
        const bin = bins[i];
        const x = appended.extents[slices[3 * i + 2] ?? 0];
        const lead = slices[3 * i] ?? 0;
        if (bin !== undefined && x !== undefined) {
          this.setEntry(subject, bin, Entry.inRecord(packed, starts[i] ?? 0, values[i]?.length ?? 0, x.segment, x.offset + lead, slices[3 * i + 1] ?? 0, lead));
        }
      }
      return appended;
    };
    const appended = this.writeNow(() => this.journal.fits(records), write) ?? (await this.writeInTurn(() => this.reclaimUnlessFits(records, op), () => write(true)));
    await awaitDurable(appended.durable, op, subject, undefined);
    this.space.warnQuota(warning);
  }

  /** The value of `key`, or `undefined` if it has none. */
  get(subject: string, key: string): Promise<Uint8Array | undefined> {
    return settle(() => this.getNow(subject, key));
  }

  /**
   * `get` without the promise, for embedded callers on a hot path: `get` reads on the calling
   * thread too (from memory, or with one `pread` for a value read on demand), so nothing is lost
   * but the wait for a microtask. Throws the same `StatefsError`s
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
      if (entry === undefined) return undefined;
      try {
        return this.entries.copyValueInto(entry, target);
      } catch (err) {
        throw withContext(err, 'get', subject, key);
      }
    } catch (err) {
      throw asStatefsError(err, 'get');
    }
  }

  private getNow(subject: string, key: string): Uint8Array | undefined {
    const entry = this.lookup(subject, key);
    if (entry === undefined) return undefined;
    try {
      return this.entries.copyValue(entry);
    } catch (err) {
      // A value read from the device (entry-table.ts): its damage names what was asked for.
      throw withContext(err, 'get', subject, key);
    }
  }

  /** The acknowledged entry `get` reads for `key` (a mounted snapshot's under `/mnt/`). */
  private lookup(subject: string, key: string): EntryRef | undefined {
    const op = 'get';
    this.checkOpen(op);
    checkSubject(subject, op);
    if (isMountKey(key)) return this.mountNamespace.read(subject, key, op);
    return this.keys.readPoint(subject, checkKey(key, op, subject));
  }

  /** A put's append and index change (its checks done). */
  private appendPut(subject: string, bin: string, key: string, bytes: Uint8Array, records: RecordToWrite[]): Appended {
    const appended = appendOrThrow(this.journal, records, 'put', subject, key, {});
    this.setEntry(subject, bin, Entry.ofText(ownText(bytes), appended.extents));
    return appended;
  }

  /** Remove `key`. `ENOENT` if it holds no value, `EISDIR` if it has children. Never `ENOSPC`. */
  async delete(subject: string, key: string): Promise<void> {
    const op = 'delete';
    this.checkWritable(op);
    checkSubject(subject, op);
    this.mountNamespace.checkWritePath(subject, key, op);
    if (this.legacy) await this.upgradeLegacy();
    const bin = checkKey(key, op, subject);
    checkDeleteAllowed(this.keys.view(subject), bin, subject, key, op);
    const records: RecordToWrite[] = [{ opcode: Op.DELETE, key: recordKey(subject, bin), value: EMPTY }];
    const write = (waited: boolean): Appended => {
      if (waited) checkDeleteAllowed(this.keys.view(subject), bin, subject, key, op);
      const appended = appendOrThrow(this.journal, records, op, subject, key, { useReserve: true });
      this.deleteEntry(subject, bin);
      return appended;
    };
    const appended =
      this.writeNow(() => !this.checkpointer.mustWaitFor(records) && !this.reserveUserMustReclaim(records), write) ?? (await this.writeInTurn(() => this.makeRoomForDeletes(records, op), () => write(true)));
    await awaitDurable(appended.durable, op, subject, key);
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
    if (binPrefix.startsWith(MOUNT_ROOT)) return this.mountNamespace.list(subject, binPrefix, after, limit, op);
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
    this.openTxns.open(subject, op);
    return new Transaction(this.txnHost, subject, this.txnLimits);
  }

  // ---- snapshots ----------------------------------------------------------------------------

  /**
   * Capture `subject`'s state — every write acknowledged before the call, no uncommitted
   * transaction — as snapshot `name`. O(1) in the number of keys. Resolves once the snapshot's
   * record is durable, then emits the marker `statefs: snapshot subject=<subject> name=<name>`.
   * `ENOSPC` if, even after a reclaim, the free segments cannot hold the reserve it needs: room
   * to delete every key it holds later (docs/storage/statefs-v3.md 8.2).
   */
  snapshot(subject: string, name: string): Promise<void> {
    const op = 'snapshot';
    const refused = this.refusal(op);
    if (refused !== undefined) return refused;
    const turn = this.writeTurn();
    return this.meta(op, async (moveOn) => {
      await turn.ready;
      checkSubject(subject, op);
      checkSnapName(name, op, subject);
      if (this.legacy) await this.upgradeLegacy();
      if (this.snapshots.get(subject, name) !== undefined) throw StatefsError.EEXIST(`snapshot ${name}`, { op, subject, name });
      const id = this.snapshots.nextId;
      const record = { opcode: Op.SNAPSHOT, key: metaKey(subject, name), value: encodeSnapId(id) };
      // Room to delete every key it holds later: reclaim first if that room is not free now.
      const growth = (): number => this.checkpointer.emptying.forNewSnapshot(subject) + snapshotHeaderBound(subject, name);
      const options = this.roomToGrow([record], growth()) ?? (await this.reclaimToGrow([record], growth, op, subject, name, 'keep', 'deleting the keys it holds later'));
      const appended = appendOrThrow(this.journal, [record], op, subject, undefined, options);
      const snap: Snapshot = {
        subject,
        name,
        id,
        tree: this.keys.workingTree(subject)?.clone() ?? new BTree<string, EntryRef>(),
        digest: undefined,
        at: this.absolute(appended.extents[0]),
      };
      this.snapshots.add(snap);
      this.checkpointer.emptying.taken(snap);
      this.checkpointer.grew(snapshotHeaderBound(subject, name));
      this.checkpointer.snapshotChanged();
      turn.release(); // appended and its tree taken: later writes may go
      moveOn();
      await awaitDurable(appended.durable, op, subject, undefined);
      failpoint('snapshot.create');
      this.marker(`statefs: snapshot subject=${subject} name=${name}`);
      void this.digests.start(snap);
    }).finally(turn.release);
  }

  /** Snapshot names of `subject`, bytewise ascending; with `details`, sizes and digests too. */
  listSnaps(subject: string): Promise<string[]>;
  listSnaps(subject: string, options: { details: true }): Promise<SnapshotInfo[]>;
  listSnaps(subject: string, options?: { details?: boolean }): Promise<string[] | SnapshotInfo[]> {
    return settle<string[] | SnapshotInfo[]>(() => {
      const op = 'listSnaps';
      this.checkOpen(op);
      checkSubject(subject, op);
      const snaps = this.snapshots.of(subject);
      // Details walk the index as it is now (over turns): taken here, not a microtask later.
      return options?.details === true ? this.space.snapshotInfos(snaps) : snaps.map((snap) => snap.name);
    });
  }

  /** Delete a snapshot. `ENOENT` if absent; `EBUSY` (naming the mounts) while mounted. Never `ENOSPC`. */
  deleteSnap(subject: string, name: string): Promise<void> {
    const op = 'deleteSnap';
    return this.meta(op, async (moveOn) => {
      const snap = this.requireSnapshot(subject, name, op);
      const pins = this.mounts.mountsOf(subject, name);
      if (pins.length > 0) {
        const where = pins.map((m) => `${m.caller}:${m.path}`).join(', ');
        throw StatefsError.EBUSY(`snapshot ${name} is mounted at ${where}`, { op, subject, name });
      }
      const record = { opcode: Op.SNAPDEL, key: metaKey(subject, name), value: encodeSnapId(snap.id) };
      if (this.checkpointer.mustWaitFor([record])) await this.waitForCheckpoint([record], op);
      const appended = appendOrThrow(this.journal, [record], op, subject, undefined, { useReserve: true });
      this.snapshots.remove(subject, name);
      this.space.releaseSnapshot(snap);
      this.checkpointer.emptying.deleted(snap);
      this.checkpointer.shrank();
      moveOn();
      await awaitDurable(appended.durable, op, subject, undefined);
    });
  }

  /**
   * Make `subject`'s live state equal to snapshot `name`, in one commit. `ENOSPC` if, even after
   * a reclaim, the free segments cannot hold the reserve the next checkpoint then needs
   * (docs/storage/statefs-v3.md 8.2).
   */
  restoreSnap(subject: string, name: string): Promise<void> {
    const op = 'restoreSnap';
    const refused = this.refusal(op);
    if (refused !== undefined) return refused;
    const turn = this.writeTurn();
    return this.meta(op, async (moveOn) => {
      await turn.ready;
      const snap = this.requireSnapshot(subject, name, op);
      const record = { opcode: Op.RESTORE, key: metaKey(subject, name), value: encodeSnapId(snap.id) };
      // A restore can grow the next checkpoint by a whole subject: room for that first.
      const growth = (): number => restoreBound(this.entries, subject, this.keys.workingTree(subject), snap.tree, this.snapshots.countOf(subject)) + this.checkpointer.emptying.forRestore(subject);
      const options = this.roomToGrow([record], growth()) ?? (await this.reclaimToGrow([record], growth, op, subject, name, 'restore', 'the next checkpoint'));
      const appended = appendOrThrow(this.journal, [record], op, subject, undefined, options);
      const old = this.keys.workingTree(subject) ?? new BTree<string, EntryRef>();
      const restored = snap.tree.clone();
      this.checkpointer.grew(restoreBound(this.entries, subject, old, restored, this.snapshots.countOf(subject)));
      diffTrees(
        old,
        restored,
        (bin, e) => {
          this.space.release(subject, bin, e);
        },
        () => undefined,
        (bin, e) => {
          this.space.release(subject, bin, e);
        },
      );
      this.keys.replace(subject, restored);
      this.checkpointer.emptying.restored(subject, snap);
      this.checkpointer.snapshotChanged();
      turn.release();
      moveOn();
      await awaitDurable(appended.durable, op, subject, undefined);
    }).finally(turn.release);
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
          let same: boolean;
          try {
            same = this.entries.sameValue(x, y);
          } catch (err) {
            throw withContext(err, op, subject, fromBinary(bin)); // a value read on demand, damaged
          }
          if (!same) out.changed.push(fromBinary(bin));
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
    const run = (async () => {
      this.checkOpen(op);
      const snap = this.requireSnapshot(subject, name, op);
      // Deleted while it was read (its values let go, its records reused): ENOENT, as a verify
      // called after the delete, not the error the reads met.
      const deletedMeanwhile = (err: unknown): StatefsError =>
        this.snapshots.get(subject, name) === snap ? asStatefsError(err, op) : StatefsError.ENOENT(`snapshot ${name} (deleted while it was verified)`, { op, subject, name });
      // GC may move the snapshot's records while they are read (readMovingEntryValue).
      const log: MovingLog =
        this.readOnlyHeaders === undefined
          ? { pending: (s, at) => this.journal.pending(s, at), drain: () => this.journal.drain(), mark: (s) => Promise.resolve(this.usage.takenCount(s)) }
          : readOnlyLog(this.device, this.sb.segmentSize, this.readOnlyHeaders);
      let expected: Uint8Array;
      let actual: Uint8Array;
      try {
        expected = snap.digest ?? (await this.digests.start(snap));
        actual = await snapshotDigest(snap.tree, async (bin, entry) => {
          try {
            return await readMovingEntryValue(this.device, this.sb.segmentSize, this.entries, entry, log);
          } catch (err) {
            throw withContext(err, op, subject, fromBinary(bin));
          }
        });
      } catch (err) {
        throw deletedMeanwhile(err);
      }
      if (this.snapshots.get(subject, name) !== snap) throw deletedMeanwhile(undefined);
      if (Buffer.compare(expected, actual) !== 0) {
        throw StatefsError.EINTEGRITY(`snapshot ${name}: content digest mismatch`, { op, subject, name });
      }
      return Buffer.from(actual).toString('hex');
    })();
    // close() lets a verify called before it finish its reads (the device stays open until then).
    this.verifying.add(run);
    const done = (): void => void this.verifying.delete(run);
    run.then(done, done);
    return run;
  }

  // ---- mounts -------------------------------------------------------------------------------

  /**
   * Mount `owner`'s snapshot `name` read-only at `mountPath` (`/mnt/<label>`) in `caller`'s
   * namespace: owner key `/state/<rest>` reads as `<mountPath>/<rest>`. Another subject's snapshot
   * needs a grant (`EPERM`); a taken path is `EEXIST`.
   */
  mountSnap(caller: string, owner: string, name: string, mountPath: string): Promise<void> {
    const op = 'mountSnap';
    return this.meta(op, async (moveOn) => {
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
      const appended = appendOrThrow(this.journal, [{ opcode: Op.MOUNT, key: metaKey(caller, path), value: encodeMount(target) }], op, caller, undefined, {});
      this.mounts.add({ caller, path, ...target, at: this.absolute(appended.extents[0]) });
      this.checkpointer.grew(mountBound({ caller, path, ...target }));
      moveOn();
      await awaitDurable(appended.durable, op, caller, undefined);
    });
  }

  /** Remove the caller's mount at `mountPath` (`ENOENT` if there is none). */
  umount(caller: string, mountPath: string): Promise<void> {
    const op = 'umount';
    return this.meta(op, async (moveOn) => {
      checkSubject(caller, op);
      const path = checkMountPath(mountPath, op, caller);
      if (this.mounts.get(caller, path) === undefined) throw StatefsError.ENOENT(`mount ${mountPath}`, { op, subject: caller, name: mountPath });
      const record = { opcode: Op.UMOUNT, key: metaKey(caller, path), value: EMPTY };
      if (this.checkpointer.mustWaitFor([record])) await this.waitForCheckpoint([record], op);
      const appended = appendOrThrow(this.journal, [record], op, caller, undefined, { useReserve: true });
      this.mounts.remove(caller, path);
      this.checkpointer.shrank();
      moveOn();
      await awaitDurable(appended.durable, op, caller, undefined);
    });
  }

  /**
   * Unmount every mount of another subject's snapshot whose caller no longer has a grant on that
   * subject (`grants`, as `setAccess` last set them): a revoked grant ends the access it gave, and
   * no longer keeps the owner from deleting the snapshot (`EBUSY`). statefsd runs it at start,
   * after a reopen and after each policy load. `onUnmounted` hears of each as it is durable (a
   * later failure rejects, the ones before stay done). Resolves to the mounts removed.
   */
  async unmountUngranted(onUnmounted?: (mount: MountInfo & { caller: string }) => void | Promise<void>): Promise<(MountInfo & { caller: string })[]> {
    const done: (MountInfo & { caller: string })[] = [];
    for (const m of this.mounts.all()) {
      if (m.caller === m.owner || this.options.grants?.[m.caller]?.includes(m.owner) === true) continue;
      // Unmounted meanwhile (by its caller, or an earlier call still running): nothing to do.
      if (this.mounts.get(m.caller, m.path) !== m) continue;
      const info = { caller: m.caller, path: fromBinary(m.path), owner: m.owner, name: m.name };
      try {
        await this.umount(m.caller, info.path);
      } catch (err) {
        if (this.mounts.get(m.caller, m.path) === undefined) continue; // gone while we waited
        throw err;
      }
      done.push(info);
      await onUnmounted?.(info);
    }
    return done;
  }

  /**
   * The owner of the snapshot mounted where `subject`'s key or list prefix `key` reads (under
   * `/mnt/`), if any: the daemon lets a reader through only if it may read that owner too.
   */
  mountOwner(subject: string, key: string): string | undefined {
    return this.mountNamespace.ownerAt(subject, key);
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
    if (this.checkpointer.mustWaitFor(records)) await this.waitForCheckpoint(records, op);
    const appended = appendOrThrow(this.journal, records, op, undefined, undefined, { useReserve: true });
    await awaitDurable(appended.durable, op, undefined, undefined);
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
    // Writes made before this call and still waiting for room are appended first.
    if (this.writesWaiting > 0) await this.lastWaitingWrite;
    await this.journal.drain().catch((err: unknown) => {
      throw asStatefsError(err, 'sync');
    });
  }

  /** Drain, sync and release the image. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing; // a second call waits for the same close
  }

  private async closeNow(): Promise<void> {
    if (this.status !== 'open') return;
    this.closeRequested = true; // calls made from now on are EBADF
    try {
      // What was called before this still runs (checkWritableInTurn): writes held by the v1
      // upgrade, writes waiting for room, snapshot and mount operations.
      await this.upgrading?.catch(() => undefined);
      for (;;) {
        await this.writesDrained();
        const meta = this.metaSettled;
        await meta;
        if (meta === this.metaSettled && this.writesWaiting === 0) break;
      }
      this.status = 'closing';
      await this.gcRunning?.catch(() => undefined);
      await this.digests.recorded();
      await Promise.allSettled(this.verifying);
      await this.journal.drain().catch(() => undefined);
      await this.checkpointer.running?.catch(() => undefined);
      if (this.checkpointer.dueAtClose() && this.canCheckpoint()) await this.checkpointer.run().catch(() => undefined);
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
    return settle(() => {
      this.checkOpen('stat');
      // The head segment's unwritten tail is free space, not used. Everything is taken now, in
      // the call's turn: a write made right after the call must not show in any figure.
      const headFree = this.legacy ? 0 : this.sb.segmentSize - this.journal.position.offset;
      return this.space.stat(this.sb, headFree);
    });
  }

  // ---- compaction ---------------------------------------------------------------------------

  /**
   * Run one bounded reclaim cycle (see `GcOptions`): empty the segments with the least live data
   * by moving what they still hold, and free them. Deterministic; `gcPlan` predicts it.
   */
  gcNow(options: GcOptions = {}): Promise<GcResult> {
    return this.runGc(options, false);
  }

  /** One GC cycle, or the one already running; `automatic`: the store starts it itself (`autoGc`). */
  private runGc(options: GcOptions, automatic: boolean): Promise<GcResult> {
    const op = 'gcNow';
    // A cycle the store starts for a write already made runs while close() lets that write finish.
    const check = (): void => {
      if (automatic) this.checkWritableInTurn(op);
      else this.checkWritable(op);
    };
    return (async () => {
      check();
      if (this.legacy) await this.upgradeLegacy();
      // Never while a checkpoint is being built: it has read where records are.
      while (this.checkpointer.running !== undefined) await this.checkpointer.running.catch(() => undefined);
      check(); // the store may be closing by now
      // A cycle is reported once: to the gcNow callers it ran for, or else (one the store started
      // and no gcNow joined) as a 'gc' event.
      if (this.gcRunning === undefined) {
        this.gcReportedToCaller = !automatic;
        this.gcRunning = this.compactor
          .run(options)
          .then((result) => {
            if (!this.gcReportedToCaller && (result.freedBytes > 0 || result.movedBytes > 0)) this.emit('gc', result);
            return result;
          })
          .finally(() => {
            this.gcRunning = undefined;
          });
      } else if (!automatic) {
        this.gcReportedToCaller = true;
      }
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
      // Both from the state of the call, taken now (not a microtask later, and the pins not after
      // the plan's walk); the pins are walked once the plan's walk is done.
      const pins = this.space.pinnedBySnapshotsNow();
      return this.compactor.plan(options).then(async ({ segments, freedBytes, movedBytes, scannedBytes, remainingGarbageBytes, segmentsFreed }) => {
        const pinnedBySnapshots = await pins();
        return { segments, freedBytes, movedBytes, scannedBytes, remainingGarbageBytes, segmentsFreed, pinnedBySnapshots };
      });
    });
  }

  /** Start a background cycle when the image is getting full of garbage (unless `autoGc: false`). */
  private maybeGc(): void {
    if (this.options.autoGc === false || this.gcRunning !== undefined || this.status !== 'open' || !this.canCheckpoint()) return;
    const cycle = autoGcCycle(this.compactor.garbageBytes(), this.checkpointer.lowOnSpace(), this.sb);
    if (cycle !== undefined) void this.autoGc(cycle);
  }

  /**
   * A GC cycle the store starts itself (automatic GC, or a write that found no room): when it has
   * freed or moved anything, the event `gc` carries its result (statefsd audits it, as it audits
   * the GC_NOW it is asked for).
   */
  private autoGc(options: GcOptions): Promise<void> {
    return this.runGc(options, true).then(
      () => undefined,
      () => undefined,
    );
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
    return this.checkpointNow();
  }

  /** `checkpoint` for the store's own needs (a reclaim for a write already made), once checked. */
  private checkpointNow(): Promise<void> {
    return this.checkpointer.run(this.legacy ? () => this.upgradeLegacy() : undefined);
  }

  // ---- internals ----------------------------------------------------------------------------

  /**
   * Upgrade a legacy v1 image in place before its first write (`writeUpgrade`); a failed upgrade
   * is tried again by the next write.
   */
  private upgradeLegacy(): Promise<void> {
    const host = this.upgradeHost;
    if (host === undefined) return Promise.resolve(); // a v3 image: nothing to upgrade
    this.upgrading ??= writeUpgrade(host).catch((err: unknown) => {
      this.upgrading = undefined;
      throw err;
    });
    return this.upgrading;
  }

  private maybeCheckpoint(): void {
    if (this.checkpointer.running !== undefined || this.gcRunning !== undefined || this.status !== 'open' || !this.canCheckpoint()) return;
    if (!this.checkpointer.due() || !this.checkpointer.mayRetry()) return;
    // Background work: a failure poisons the store (writeFailure) and surfaces on the next write.
    this.checkpoint().catch(() => undefined);
  }

  /**
   * Whether a reserve user (a delete, a transaction of deletes) reclaims before appending
   * `records`: when they do not fit even with the reserve, and also, if anything was written
   * since the last checkpoint, when they take a new segment and would leave less free than the
   * next checkpoint's bound needs (unless a checkpoint failed for want of room and nothing has
   * changed since: `Checkpointer.mayRetry`). Without the second, a run of deletes on a full image
   * could use the whole reserve before any checkpoint trimmed the chain, and the reclaim that
   * finally ran would have no room for its checkpoint (an 8 MiB image of 1-byte values: delete
   * 41,152 of 131,036 got `ENOSPC`).
   */
  private reserveUserMustReclaim(records: RecordToWrite[]): boolean {
    if (!this.journal.fits(records, { useReserve: true })) return true;
    if (this.checkpointer.journalBytesSinceCheckpoint() === 0) return false;
    const keepFree = this.checkpointer.segmentsForCheckpoint();
    // Not after a checkpoint failed for want of room, until something changed (`mayRetry`):
    // trying before every delete would rebuild it for each (deletes of keys that snapshots hold
    // make it grow: each such snapshot gains a difference). Its real size is often below the
    // bound, so it is tried again now and then.
    return !this.journal.fits(records, { useReserve: true, keepFree }) && this.checkpointer.mayRetry();
  }

  /**
   * Before a write gives up with `ENOSPC`: a checkpoint (frees segments that hold only
   * superseded records and lets GC at the ones behind it), then one GC cycle. With
   * `autoGc: false`, where GC runs only through `gcNow`: a checkpoint for a `reserveUser` (a
   * delete, a transaction of deletes), a wait for one already running for other writes. Then
   * `op` is checked again: a checkpoint that failed here, or a close meanwhile, answers `EIO` or
   * `EBADF`, not `ENOSPC`.
   */
  private async reclaim(op: string, reserveUser = false): Promise<void> {
    if (this.legacy || !this.canCheckpoint()) return;
    if (this.options.autoGc === false) {
      // No GC. A checkpoint gives back the journal it covers and brings the reserve's bound down
      // to its real size, but without GC not the segments it shares with live values: written
      // for ordinary writes it would eat the reserve (review: free 3 → 1, then deletes failed).
      // Deletes start one (only waiting for one let them fill the reserve with their records
      // before the journal reached the threshold: review, delete 5,673 of 60,608 on 16 MiB got
      // ENOSPC); other writes wait for one already running.
      await (reserveUser ? this.checkpointNow() : this.checkpointer.running)?.catch(() => undefined);
      this.checkWritableInTurn(op);
      return;
    }
    await this.gcRunning?.catch(() => undefined);
    this.checkWritableInTurn(op);
    await this.checkpointNow().catch(() => undefined);
    await this.autoGc({});
    this.checkWritableInTurn(op);
  }

  /**
   * Append options for `records`, an ordinary write that grows the next checkpoint by `bytes`
   * more than `grew` counts (a snapshot, a restore): the reserve they must leave whole is the one
   * that growth calls for (docs/storage/statefs-v3.md 8.2). Undefined if they do not fit.
   */
  private roomToGrow(records: RecordToWrite[], bytes: number): AppendOptions | undefined {
    const reserveAfter = this.checkpointer.reserveAfter(bytes);
    const options: AppendOptions = reserveAfter === undefined ? {} : { reserveAfter };
    return this.journal.fits(records, options) ? options : undefined;
  }

  /** `roomToGrow` after a reclaim; else `ENOSPC`: no room to `verb` snapshot `name`, which `why` needs. */
  private async reclaimToGrow(records: RecordToWrite[], growth: () => number, op: string, subject: string, name: string, verb: string, why: string): Promise<AppendOptions> {
    await this.reclaim(op);
    const bytes = growth();
    const options = this.roomToGrow(records, bytes);
    if (options !== undefined) return options;
    const needed = this.checkpointer.reserveAfter(bytes) ?? this.checkpointer.reserveSegments();
    throw StatefsError.ENOSPC(`no room to ${verb} snapshot ${name}: ${why} would need ${needed} segments kept in reserve, ${this.usage.freeCount()} free`, { op, subject, name });
  }

  /**
   * `write` (its checks again if it waited, its append and its index change, all synchronous)
   * now, if no write waits for room and `ready()`; else undefined: `writeInTurn`. Writes that
   * wait go in the order they were made, and a write made while any waits goes after them, even
   * if it could go at once: one caller's writes reach the journal in the order it made them (a
   * put waiting for a reclaim is never overtaken by a smaller one made after it, which would
   * leave the older value of a key live).
   */
  private writeNow(ready: () => boolean, write: (waited: boolean) => Appended): Appended | undefined {
    return this.writesWaiting === 0 && ready() ? write(false) : undefined;
  }

  /**
   * A place in the write order for an operation that is not a write of keys but must neither be
   * overtaken by one made after it nor overtake one made before it (a snapshot captures the live
   * keys, a restore replaces them). Taken when the operation is called: `ready` resolves once
   * every write made before it is appended, and until `release` (idempotent) every write made
   * after it waits.
   */
  private writeTurn(): { ready: Promise<unknown>; release: () => void } {
    const ready = this.lastWaitingWrite;
    let done = (): void => undefined;
    const released = new Promise<void>((resolve) => {
      done = resolve;
    });
    // Later writes go after this operation and after every write before it, even if it is
    // released early (refused before it waited for `ready`).
    this.lastWaitingWrite = Promise.all([ready, released]);
    this.writesWaiting++;
    let isReleased = false;
    const release = (): void => {
      if (isReleased) return;
      isReleased = true;
      this.writeDone();
      done();
    };
    return { ready, release };
  }

  /** `write` (its checks again, its append, its index change) after every write waiting before it, once `makeRoom` (a reclaim, a checkpoint) is done. */
  private async writeInTurn(makeRoom: () => Promise<void>, write: () => Appended): Promise<Appended> {
    const before = this.lastWaitingWrite;
    const turn = before.then(async () => {
      await makeRoom();
      return write();
    });
    this.lastWaitingWrite = turn.catch(() => undefined);
    this.writesWaiting++;
    try {
      return await turn;
    } finally {
      this.writeDone();
    }
  }

  /** A waiting write (or operation in the write order) is done; wake those waiting for none to be left. */
  private writeDone(): void {
    this.writesWaiting--;
    if (this.writesWaiting === 0) for (const wake of this.noWritesWaiting.splice(0)) wake();
  }

  /** Resolves once no write waits for room (close: those made before it finish). */
  private writesDrained(): Promise<void> {
    if (this.writesWaiting === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.noWritesWaiting.push(resolve);
    });
  }

  /** The wait of a put, a batch or a transaction that writes values: a reclaim if its records do not fit. */
  private async reclaimUnlessFits(records: RecordToWrite[], op: string): Promise<void> {
    this.checkWritableInTurn(op);
    if (!this.journal.fits(records)) await this.reclaim(op);
  }

  /** The wait of a delete (or a transaction of deletes): for a running checkpoint, then a reclaim if the reserve calls for one. */
  private async makeRoomForDeletes(records: RecordToWrite[], op: string): Promise<void> {
    this.checkWritableInTurn(op);
    if (this.checkpointer.mustWaitFor(records)) await this.waitForCheckpoint(records, op);
    if (this.reserveUserMustReclaim(records)) await this.reclaim(op, true);
  }

  /**
   * Wait until `records` may take the reserve (`Checkpointer.mustWaitFor`). Then `op` is checked
   * again, as after `reclaim`: the checkpoint waited for may have failed.
   */
  private async waitForCheckpoint(records: RecordToWrite[], op: string): Promise<void> {
    while (this.checkpointer.mustWaitFor(records)) await this.checkpointer.running?.catch(() => undefined);
    this.checkWritableInTurn(op);
  }

  private canCheckpoint(): boolean {
    return this.options.readOnly !== true && !this.legacy && this.writeFailure === undefined && this.journal.failed === undefined;
  }

  private onDurable(sealed: Sealed): void {
    this.keys.publish(sealed);
    this.maybeCheckpoint();
    this.maybeGc();
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
    const checkQuota = (): QuotaWarning | undefined => {
      if (onlyDeletes) return undefined;
      let delta = 0;
      for (const r of records) if (r.opcode === Op.PAYLOAD) delta += recordLength(r.key.length, r.value.length);
      for (const o of ops) delta -= this.space.freedBy(subject, o.bin);
      return this.space.checkQuota(subject, delta, op, undefined);
    };
    let warning = checkQuota();
    const write = (waited: boolean): Appended => {
      if (waited) {
        // Checked again in its turn: the tree, and the quota, may have moved meanwhile.
        validateTxnOps(this.keys.view(subject), (bin) => this.keys.children(subject, bin), subject, ops);
        warning = checkQuota();
      }
      // Another transaction may have committed while this one waited: ids follow log order.
      if (txnId !== this.nextTxnId) {
        txnId = this.nextTxnId;
        ({ records, chunkCounts } = txnRecords(subject, ops, txnId));
      }
      const options = onlyDeletes ? { useReserve: true } : {};
      const appended = failpointArmed('txn.before-commit') ? this.appendTxnSplit(records, op, subject, options) : appendOrThrow(this.journal, records, op, subject, undefined, options);
      this.nextTxnId++;
      let at = 1;
      ops.forEach((o, i) => {
        const count = chunkCounts[i] ?? 1;
        const extents = appended.extents.slice(at, at + count);
        at += count;
        if (o.value === null) this.deleteEntry(subject, o.bin);
        else this.setEntry(subject, o.bin, Entry.of(o.value, extents));
      });
      return appended;
    };
    const ready = onlyDeletes ? () => !this.checkpointer.mustWaitFor(records) && !this.reserveUserMustReclaim(records) : () => this.journal.fits(records, {});
    const makeRoom = onlyDeletes ? () => this.makeRoomForDeletes(records, op) : () => this.reclaimUnlessFits(records, op);
    const appended = this.writeNow(ready, write) ?? (await this.writeInTurn(makeRoom, () => write(true)));
    await awaitDurable(appended.durable, op, subject, undefined);
    this.space.warnQuota(warning);
  }

  /**
   * Failpoint runs only: the COMMIT in a batch of its own (so a write and flush of its own), and
   * the failpoint hit just before that write, when PREPARE and the PAYLOADs are durable.
   */
  private appendTxnSplit(records: RecordToWrite[], op: string, subject: string, options: { useReserve?: boolean }): Appended {
    const head = appendOrThrow(this.journal, records.slice(0, -1), op, subject, undefined, options);
    const commit = appendOrThrow(this.journal, records.slice(-1), op, subject, undefined, { ...options, ownBatch: true, failpoint: 'txn.before-commit' });
    const durable = Promise.all([head.durable, commit.durable]).then(() => undefined);
    return { ...commit, extents: [...head.extents, ...commit.extents], durable };
  }

  /** Put `entry` in the working tree, releasing the entry it replaces. */
  private setEntry(subject: string, bin: string, entry: EntryRef): void {
    const old = this.keys.set(subject, bin, entry);
    this.space.release(subject, bin, old);
    this.space.count(subject, entry);
    this.checkpointer.grew(changeBound(this.entries, subject, bin, old, entry, this.snapshots.countOf(subject)));
    this.checkpointer.emptying.changed(subject, bin, old, entry);
  }

  private deleteEntry(subject: string, bin: string): void {
    const old = this.keys.delete(subject, bin);
    this.space.release(subject, bin, old);
    if (old === undefined) return;
    this.checkpointer.grew(changeBound(this.entries, subject, bin, old, undefined, this.snapshots.countOf(subject)));
    this.checkpointer.emptying.changed(subject, bin, old, undefined);
  }

  private readonly txnHost: TxnHost = {
    view: (subject) => this.keys.view(subject),
    children: (subject, bin) => this.keys.children(subject, bin),
    readCommitted: (subject, bin) => {
      const entry = this.keys.readEntry(subject, bin);
      try {
        return entry === undefined ? undefined : this.entries.copyValue(entry);
      } catch (err) {
        throw withContext(err, 'txn.get', subject, fromBinary(bin)); // a value read on demand, damaged
      }
    },
    checkWritable: (op) => {
      this.checkWritable(op);
    },
    checkWritePath: (subject, key, op) => {
      this.mountNamespace.checkWritePath(subject, key, op);
    },
    commitTxn: (subject, ops) => this.commitTxn(subject, ops),
    releaseTxn: (subject) => {
      this.openTxns.close(subject);
    },
  };

  /** Run a snapshot or mount change after the previous one finished. */
  /**
   * Run a snapshot or mount operation after those called before it. It is refused at once if the
   * store cannot be written (closed or closing included); once called, it runs even if `close()`
   * comes meanwhile (`close` waits for it). `fn` calls `appended()` once its record is appended
   * and the state it changes is changed: the next operation may start then, without waiting for
   * this one's flush (the journal keeps their records in call order).
   */
  private meta<T>(op: string, fn: (appended: () => void) => Promise<T>): Promise<T> {
    const refused = this.refusal(op);
    if (refused !== undefined) return refused;
    let appended = (): void => undefined;
    const movedOn = new Promise<void>((resolve) => {
      appended = resolve;
    });
    const run = async (): Promise<T> => {
      this.checkWritableInTurn(op);
      return fn(appended);
    };
    const next = this.metaQueue.then(run, run);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.metaQueue = Promise.race([movedOn, settled]);
    this.metaSettled = Promise.all([this.metaSettled, settled]).then(() => undefined);
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
    if (name === LIVE) return this.keys.read(subject) ?? new BTree<string, EntryRef>();
    return this.requireSnapshot(subject, name, op).tree;
  }

  /** Record a snapshot's digest (SNAPDIGEST), unless the store cannot write or the snapshot is gone by then. */
  private async recordDigest(snap: Snapshot, digest: Uint8Array): Promise<void> {
    const record = { opcode: Op.SNAPDIGEST, key: metaKey(snap.subject, snap.name), value: encodeSnapDigest(snap.id, digest) };
    if (this.checkpointer.mustWaitFor([record])) await this.waitForCheckpoint([record], 'snapshot.digest');
    if (this.status === 'closed' || !this.canCheckpoint() || this.snapshots.get(snap.subject, snap.name) !== snap) return;
    await this.journal.append([record], { useReserve: true }).durable;
  }

  /** `checkWritable` as a rejected promise (undefined: writable), for calls that must not throw. */
  private refusal(op: string): Promise<never> | undefined {
    try {
      this.checkWritable(op);
      return undefined;
    } catch (err) {
      return Promise.reject(asStatefsError(err, op));
    }
  }

  private checkOpen(op: string): void {
    if (this.status !== 'open' || this.closeRequested) throw StatefsError.EBADF('store', { op });
  }

  /**
   * `checkWritable` for a write already made, waiting in its turn (`writeInTurn`) or for room:
   * `close()` lets those finish, so only a closed store, a read-only one or a failed write stops
   * them.
   */
  private checkWritableInTurn(op: string): void {
    if (this.status !== 'open') throw StatefsError.EBADF('store', { op });
    if (this.options.readOnly === true) throw StatefsError.EROFS('the store is open read-only', { op });
    const failed = this.writeFailure ?? this.journal.failed;
    if (failed !== undefined) throw StatefsError.EIO(`an earlier write failed; reopen the store (${failed.message})`, { op, cause: failed });
  }

  private checkWritable(op: string): void {
    this.checkOpen(op);
    this.checkWritableInTurn(op);
  }
}

