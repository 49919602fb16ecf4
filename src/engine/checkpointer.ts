import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { CHECKPOINT_VERSION, CKPT_CHUNK, CKPT_RECORD_LENGTH, encodeCheckpointChunkHeader } from '../format/checkpoint.js';
import { maxRecordLength } from '../format/segment.js';
import { Op } from '../format/opcodes.js';
import type { Superblock } from '../format/superblock.js';
import { DIGEST_BYTES, boundBesidesLiveEntries } from './checkpoint-bound.js';
import { EmptyingBound } from './emptying-bound.js';
import { batchRecords } from './batch-records.js';
import { CheckpointBuild, changesSince, frozenTrees, type LiveChange } from './checkpoint-builder.js';
import { isLowOnSpace } from './auto-gc.js';
import { failpoint } from './failpoints.js';
import type { JournalWriter, RecordToWrite } from './journal-writer.js';
import type { Trees } from './keyspace.js';
import type { MountTable } from './mount-table.js';
import type { Replayed } from './replay.js';
import type { SegmentUsage } from './segment-usage.js';
import type { EntryTable } from './entry-table.js';
import type { SnapshotTable } from './snapshot-table.js';
import { EMPTY, appendOrThrow, awaitDurable, recordKey, type IndexAccounting } from './store-support.js';
import type { OpenOptions } from './store-types.js';
import { writeSuperblock } from './superblock-io.js';

/**
 * Live entries a checkpoint encodes per turn of the event loop (`OpenOptions.checkpointStepEntries`):
 * about 5 ms here, against 0.65 s for a million keys in one go.
 */
const CHECKPOINT_STEP_ENTRIES = 8192;
/** Builds in steps a checkpoint starts over when snapshots are taken meanwhile, before it builds in one go. */
const CHECKPOINT_RESTARTS = 2;
/**
 * Journal bytes per entry of the last checkpoint before the next is due, at least: twice what a
 * typical entry took in payload version 2 (~40 bytes), the cadence the engine was tuned with.
 */
const JOURNAL_BYTES_PER_ENTRY = 80;

/** What the checkpointer needs from the store. */
export interface CheckpointerHost {
  readonly device: BlockDevice;
  readonly usage: SegmentUsage;
  readonly entries: EntryTable;
  readonly journal: Readonly<Pick<JournalWriter<unknown>, 'fits' | 'append' | 'bytesAppended'>>;
  readonly snapshots: SnapshotTable;
  readonly mounts: MountTable;
  /** The working trees: what a checkpoint describes. */
  trees(): Trees;
  /** The next transaction id (a checkpoint records it). */
  nextTxnId(): number;
  /** The superblock the store uses now. */
  superblock(): Superblock;
  /** `next` is on disk and names a newer checkpoint: the store uses it from now on. */
  switched(next: Superblock): void;
  /** The GC cycle running, if any: GC moves records, so a checkpoint is not built meanwhile. */
  gcRunning(): Promise<unknown> | undefined;
  /** A value of `subject` now lives in a record of another size. */
  moved(subject: string, beforeBytes: number, afterBytes: number): void;
  /** A superblock write failed: the store refuses writes with `error` until reopened. */
  writeFailed(error: StatefsError): void;
}

/** The options the checkpointer reads (see `OpenOptions`). */
export type CheckpointOptions = Readonly<Pick<OpenOptions, 'reserveSegments' | 'checkpointBytes' | 'checkpointStepEntries'>>;

/** `EINVAL` for a `checkpointStepEntries` that is not a whole number of at least 1, or Infinity. */
export function checkCheckpointOptions(options: CheckpointOptions): void {
  const step = options.checkpointStepEntries;
  if (step !== undefined && !((Number.isSafeInteger(step) && step >= 1) || step === Number.POSITIVE_INFINITY)) {
    throw StatefsError.EINVAL(`checkpointStepEntries ${String(step)}: use a whole number of at least 1, or Infinity`, { op: 'open' });
  }
}

/**
 * A checkpoint's records: its payload in CKPT chunks, then for the live changes made while it
 * was built a DELETE each, and each subject's new values as `putMany` writes them (PUTRUN runs,
 * or PUTs: section 7.2 of docs/storage/statefs-v3.md). `moves` says where each value went: its
 * change, and its record (an index into the records) and slice (lead and length).
 */
function checkpointRecords(entries: EntryTable, id: number, payload: Uint8Array, changes: readonly LiveChange[]): { records: RecordToWrite[]; moves: { change: LiveChange; record: number; lead: number; length: number }[] } {
  // Values read on demand are kept in memory before they move (entry-table.ts `holdValue`).
  for (const c of changes) if (c.entry !== undefined) entries.holdValue(c.entry);
  const count = Math.max(1, Math.ceil(payload.length / CKPT_CHUNK));
  const records: RecordToWrite[] = [];
  for (let i = 0; i < count; i++) {
    const chunk = payload.subarray(i * CKPT_CHUNK, (i + 1) * CKPT_CHUNK);
    // The header goes beside the slice, not copied with it: no second copy of a large payload.
    records.push({ opcode: Op.CKPT, key: EMPTY, value: chunk, valueHead: encodeCheckpointChunkHeader(id, i, count) });
  }
  const puts = new Map<string, LiveChange[]>();
  for (const c of changes) {
    if (c.entry === undefined) records.push({ opcode: Op.DELETE, key: recordKey(c.subject, c.bin), value: EMPTY });
    else {
      let list = puts.get(c.subject);
      if (list === undefined) puts.set(c.subject, (list = []));
      list.push(c);
    }
  }
  const moves: { change: LiveChange; record: number; lead: number; length: number }[] = [];
  for (const [subject, list] of puts) {
    const batch = batchRecords(
      subject,
      list.map((c) => c.bin),
      list.map((c) => (c.entry === undefined ? EMPTY : entries.value(c.entry))),
    );
    list.forEach((change, i) => moves.push({ change, record: records.length + (batch.slices[3 * i + 2] ?? 0), lead: batch.slices[3 * i] ?? 0, length: batch.slices[3 * i + 1] ?? 0 }));
    records.push(...batch.records);
  }
  return { records, moves };
}

/** Let timers, I/O and other requests run (setImmediate: after the poll phase, not before it). */
function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The store's checkpoints: when the next one is due, the segments kept in reserve for it, and
 * writing it (one at a time) and pointing the superblock at it.
 */
export class Checkpointer {
  private inProgress: Promise<void> | undefined;
  /** Snapshots taken and restored so far: a checkpoint built in steps checks that none was meanwhile. */
  private snapshotsTaken = 0;
  /** Journal bytes appended when the last checkpoint was written. */
  private bytesAtCheckpoint: number;
  /** The last checkpoint's payload bytes and live entries (they size the next one and its cadence). */
  private lastCheckpointBytes: number;
  private entriesAtCheckpoint: number;
  /**
   * The next checkpoint's payload is at most `boundBase + growth` bytes (what the reserve is sized
   * for): `boundBase` is a bound of the state at the last checkpoint (its payload, or at open a
   * bound of the state replayed), `growth` the most each change since can add (`grew`).
   */
  private boundBase: number;
  private growth = 0;
  /** `growth` when the checkpoint being built took its state (set by `checkpointBuild`): what that checkpoint covers. */
  private growthAtBuild = 0;
  /** What deleting the live keys can add to a checkpoint: the reserve keeps room for it too. */
  readonly emptying: EmptyingBound;
  /** Journal bytes and free segments when a checkpoint last failed for want of room (`mayRetry`). */
  private noRoomAt: { bytes: number; free: number } | undefined;

  /**
   * `journalBytes`: the journal replay read, `opened`: the checkpoint replay started from,
   * `accounting`: open's sums over the live entries replay left (their most bytes in a
   * checkpoint, whole and as differences).
   */
  constructor(
    private readonly host: CheckpointerHost,
    private readonly options: CheckpointOptions,
    journalBytes: number,
    opened: Replayed['checkpoint'],
    accounting: Pick<IndexAccounting, 'liveEntriesBound' | 'liveDiffBytes'>,
  ) {
    // The journal since the checkpoint, not counting the checkpoint itself: reopening an image
    // with a large checkpoint and a short log must not make close write the same checkpoint again.
    this.bytesAtCheckpoint = -(journalBytes - opened.recordBytes);
    this.lastCheckpointBytes = opened.payloadBytes;
    this.entriesAtCheckpoint = opened.entries;
    // From a checkpoint of this version: its bytes, the digests it lacked, and what the records
    // replayed past it can add. From an older one (or a legacy image), a bound of the whole state.
    this.boundBase =
      opened.version === CHECKPOINT_VERSION
        ? opened.payloadBytes + DIGEST_BYTES * opened.undigested + opened.growth
        : accounting.liveEntriesBound + boundBesidesLiveEntries(host.entries, host.trees(), host.snapshots, host.mounts);
    this.emptying = new EmptyingBound(host.entries, host.trees(), host.snapshots, accounting.liveDiffBytes);
  }

  /** A change since the last checkpoint may make the next one up to `bytes` longer (`checkpoint-bound.ts`). */
  grew(bytes: number): void {
    this.growth += bytes;
  }

  /** The v1 upgrade wrote its checkpoint (empty: the values follow it as records), `payloadBytes` long. */
  upgraded(payloadBytes: number): void {
    this.lastCheckpointBytes = payloadBytes;
  }

  /** Bytes the digests of snapshots still computing will add to a checkpoint. */
  private digestsToCome(): number {
    let n = 0;
    for (const snap of this.host.snapshots.all()) if (snap.digest === undefined) n += DIGEST_BYTES;
    return n;
  }

  /** The checkpoint being written, if any. */
  get running(): Promise<void> | undefined {
    return this.inProgress;
  }

  /**
   * Start `write` (by default: write a checkpoint of the index as it is now) unless a checkpoint
   * is running already; resolves when the running one is done. A legacy image's upgrade runs
   * here too: it writes the image's first v3 checkpoint.
   */
  run(write: () => Promise<void> = () => this.write()): Promise<void> {
    this.inProgress ??= write()
      .then(
        () => {
          this.noRoomAt = undefined;
        },
        (err: unknown) => {
          if (err instanceof StatefsError && err.code === 'ENOSPC') this.noRoomAt = { bytes: this.host.journal.bytesAppended, free: this.host.usage.freeCount() };
          throw err;
        },
      )
      .finally(() => {
        this.inProgress = undefined;
      });
    return this.inProgress;
  }

  /**
   * A snapshot or mount was deleted: the next checkpoint may be much smaller than the one that
   * last failed for want of room, with no segment freed (review: an image emptied of its keys and
   * snapshots refused puts with `autoGc: false`). Worth trying again.
   */
  shrank(): void {
    this.noRoomAt = undefined;
  }

  /**
   * Whether a checkpoint may be worth trying: none has failed for want of room, or since the
   * last one did a segment of journal was appended (its records may have shrunk the state),
   * segments were freed, or a snapshot or mount was deleted (`shrank`). Without this, a
   * checkpoint that cannot fit would be rebuilt after every write (deletes of keys that
   * snapshots hold grow it, and go on without it).
   */
  mayRetry(): boolean {
    const at = this.noRoomAt;
    return at === undefined || this.host.usage.freeCount() > at.free || this.host.journal.bytesAppended - at.bytes >= this.host.superblock().segmentSize;
  }

  /** A snapshot was taken or restored: a checkpoint being built in steps starts over. */
  snapshotChanged(): void {
    this.snapshotsTaken++;
  }

  /** Whether the journal since the last checkpoint has reached `checkpointThreshold`. */
  due(): boolean {
    return this.journalBytesSinceCheckpoint() >= this.checkpointThreshold();
  }

  /**
   * Whether close should leave a checkpoint behind: the journal since the last one is long (a
   * segment, or an eighth of that checkpoint). The next open replays what follows the
   * checkpoint, so this keeps reopen cost bounded across sessions.
   */
  dueAtClose(): boolean {
    return this.journalBytesSinceCheckpoint() >= Math.max(this.host.superblock().segmentSize, this.lastCheckpointBytes / 8);
  }

  /**
   * See `OpenOptions.reserveSegments`: the option, else `reserveFor` (room for the next
   * checkpoint and the one after it). Never the whole image: some segment must hold the log's head.
   */
  reserveSegments(): number {
    if (this.options.reserveSegments !== undefined) return this.options.reserveSegments;
    return Math.min(this.reserveFor(0), this.host.superblock().segmentCount - 1);
  }

  /**
   * The reserve before the cap, with `more` bytes to keep room for. Room for the next checkpoint:
   * its bound (`C`) and a quarter more (slack for what the last ordinary write let in), and what
   * deleting every live key can add to it (`E`, `EmptyingBound`); and for what that checkpoint
   * takes beyond the one on disk: that one is given back only once the next has landed, and
   * deletes then need room for the one after it, so twice the next less the one on disk (review:
   * a 16 MiB image whose checkpoints grew as it filled could not be emptied without it).
   */
  private reserveFor(more: number): number {
    const { segmentCount } = this.host.superblock();
    const bound = this.nextCheckpointBytes();
    const next = bound + this.emptying.bytes + more;
    const afterNext = 2 * this.segmentsToHold(next) - this.segmentsToHold(this.lastCheckpointBytes);
    return Math.max(2, Math.ceil(segmentCount / 32), this.segmentsToHold(next + bound / 4), afterNext);
  }

  /**
   * The reserve an ordinary write that grows the next checkpoint by `bytes` beyond what `grew`
   * has counted must leave whole (a snapshot, a restore: `AppendOptions.reserveAfter`), or
   * undefined with a fixed `reserveSegments`.
   */
  reserveAfter(bytes: number): number | undefined {
    return this.options.reserveSegments === undefined ? this.reserveFor(bytes) : undefined;
  }

  /**
   * Free segments a reserve user must leave before it takes more of the reserve without a
   * reclaim first (`Store.reserveUserMustReclaim`): room for the next checkpoint, by its bound.
   * Never more than the reserve.
   */
  segmentsForCheckpoint(): number {
    return Math.min(this.reserveSegments(), this.segmentsToHold(this.nextCheckpointBytes()));
  }

  /**
   * Segments a checkpoint payload of `bytes` takes: its CKPT records, as many whole ones per
   * segment as fit beside the segment's own record and a SYNC (three of 64 KiB in a 256 KiB
   * segment), and the segment it starts in.
   */
  private segmentsToHold(bytes: number): number {
    const perSegment = Math.max(1, Math.floor(maxRecordLength(this.host.superblock().segmentSize) / CKPT_RECORD_LENGTH));
    return 1 + Math.ceil(Math.ceil(bytes / CKPT_CHUNK) / perSegment);
  }

  /** Journal bytes appended since the last checkpoint (above 0: a new one would differ from it). */
  journalBytesSinceCheckpoint(): number {
    return this.host.journal.bytesAppended - this.bytesAtCheckpoint;
  }

  /** The last checkpoint's payload bytes per entry of its own (undefined before one with entries). */
  private bytesPerEntry(): number | undefined {
    return this.entriesAtCheckpoint > 0 ? this.lastCheckpointBytes / this.entriesAtCheckpoint : undefined;
  }

  /** At least the payload bytes of a checkpoint of the state now (docs/storage/statefs-v3.md 8.2). */
  private nextCheckpointBytes(): number {
    return this.boundBase + this.growth;
  }

  /** Whether free segments are down to twice the reserve, or an eighth of the image (whichever is more). */
  lowOnSpace(): boolean {
    return isLowOnSpace(this.host.usage.freeCount(), this.reserveSegments(), this.host.superblock().segmentCount);
  }

  /**
   * Whether `records`, written with the reserve allowed (deletes and the like), would take some
   * of it while a checkpoint is being built: the reserve is what that checkpoint will be written
   * into, so such a write waits for it first (`Store.waitForCheckpoint`).
   */
  mustWaitFor(records: RecordToWrite[]): boolean {
    return this.inProgress !== undefined && !this.host.journal.fits(records, {});
  }

  /**
   * Journal bytes between checkpoints: the option, else four segments (fewer on small images: a
   * quarter of the segments outside the reserve), and never less than twice the last checkpoint
   * or `JOURNAL_BYTES_PER_ENTRY` per entry it held — but those two never past a quarter of the
   * segments outside the reserve. The per-entry bound keeps a large index from being checkpointed
   * too often: a checkpoint's work grows with its entries, not its bytes (version 3 entries of
   * sorted keys take ~11 bytes; twice that alone made the 1M-key bulk load checkpoint 8 times
   * instead of 5 and write 600k of its keys twice instead of 450k). The quarter keeps a small
   * image's journal short enough that its deletes reach a checkpoint before they use up the
   * reserve (a 2 MiB image of 1-byte values could not be emptied without it).
   */
  private checkpointThreshold(): number {
    if (this.options.checkpointBytes !== undefined) return this.options.checkpointBytes;
    const { segmentCount, segmentSize } = this.host.superblock();
    const quarter = Math.max(1, Math.floor((segmentCount - this.reserveSegments()) / 4));
    const bySize = Math.max(2 * this.lastCheckpointBytes, JOURNAL_BYTES_PER_ENTRY * this.entriesAtCheckpoint);
    return Math.max(Math.min(4, quarter) * segmentSize, Math.min(quarter * segmentSize, bySize));
  }

  /** A checkpoint of the working trees as they are now, its payload sized from the last one's bytes per entry. */
  private checkpointBuild(): CheckpointBuild {
    this.growthAtBuild = this.growth;
    return new CheckpointBuild(frozenTrees(this.host.trees()), this.host.entries, this.bytesPerEntry());
  }

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
  private async write(): Promise<void> {
    for (let gc = this.host.gcRunning(); gc !== undefined; gc = this.host.gcRunning()) await gc.catch(() => undefined);
    const begun = this.host.entries.checkpointStarted();
    let build = this.checkpointBuild();
    for (let attempt = 1; ; attempt++) {
      const snapshotsAtP = this.snapshotsTaken;
      // Low on space, or after restarts, in one go: a write that finds no room waits for the
      // checkpoint (`Store.reclaim`), and none may take the reserve meanwhile (`mustWaitFor`).
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
    const { journal, snapshots, mounts } = this.host;
    const id = this.host.superblock().ckptId + 1;
    let payload = build.finish(snapshots, mounts, this.host.nextTxnId());
    const changes = changesSince(build.frozen, this.host.trees());
    let { records, moves } = checkpointRecords(this.host.entries, id, payload, changes);
    if (changes.length > 0 && !journal.fits(records, { useReserve: true, ownBatch: true })) {
      // The writes made meanwhile leave no room for the checkpoint beside them (the reserve is
      // sized for a checkpoint, not for it and every write made while it was built): the state
      // as it is now, in one go, with nothing to write again.
      build = this.checkpointBuild();
      payload = build.finish(snapshots, mounts, this.host.nextTxnId());
      ({ records, moves } = checkpointRecords(this.host.entries, id, payload, []));
    }
    const appended = appendOrThrow(journal, records, 'checkpoint', undefined, undefined, { useReserve: true, ownBatch: true });
    for (const { change, record, lead, length } of moves) {
      const x = appended.extents[record];
      if (change.entry === undefined || x === undefined) continue;
      const to = lead === 0 ? { segment: x.segment, offset: x.offset, length } : { segment: x.segment, offset: x.offset + lead, length, lead };
      const entry = change.entry;
      this.host.moved(change.subject, this.host.entries.diskBytes(entry), to.length);
      // A value that was a PUT may now be a slice with a lead: its difference grows (EmptyingBound.moved).
      this.emptying.moved(change.subject, change.bin, entry, () => {
        this.host.usage.moveEntry(entry, to);
      });
    }
    // The changes written again count with the checkpoint here: under heavy writes, counting
    // them toward the next one made checkpoints follow each other (1M-key load: peak RSS +70 MB,
    // +20 MB on disk). After a reopen replay counts them as journal (it reads them one by one).
    this.bytesAtCheckpoint = journal.bytesAppended;
    // The payload is the state when the build began; what changed since (the moves just made too) still grows the next.
    this.boundBase = payload.length + this.digestsToCome();
    this.growth = Math.max(0, this.growth - this.growthAtBuild);
    this.growthAtBuild = 0;
    this.lastCheckpointBytes = payload.length;
    this.emptying.tighten(build.heldDifferences);
    this.entriesAtCheckpoint = build.entries; // the payload's own entries, for its bytes per entry
    await awaitDurable(appended.durable, 'checkpoint', undefined, undefined);
    const sb = this.host.superblock();
    const next: Superblock = {
      ...sb,
      generation: sb.generation + 1,
      ckptSegment: appended.batchStart.segment,
      ckptOffset: appended.batchStart.offset,
      ckptSegSeq: appended.batchStart.segSeq,
      ckptId: id,
    };
    // Both slots, one after the other: the first switches to the new checkpoint (a crash before
    // it leaves the old one), the second makes the other slot name it too, so one damaged slot
    // never leaves only a superblock whose checkpoint's segments were freed and reused (a review
    // lost a whole image to one flipped byte in the newest slot). The old chain is given back
    // only after both.
    const both: Superblock = { ...next, generation: next.generation + 1 };
    try {
      failpoint('superblock.switch');
      await writeSuperblock(this.host.device, next);
      await writeSuperblock(this.host.device, both);
    } catch (err) {
      const failure = StatefsError.EIO('superblock write failed; reopen the store', { op: 'checkpoint', cause: err });
      this.host.writeFailed(failure);
      throw failure;
    }
    this.host.switched(both);
    this.host.entries.checkpointDone(begun);
  }
}
