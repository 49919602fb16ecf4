import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { Op } from '../format/opcodes.js';
import { encodeRecord, encodeRecordInto, recordLength } from '../format/record.js';
import { SEGMENT_RECORD_LENGTH, SYNC_RECORD_LENGTH, encodeSegmentHeader, encodeSync, maxRecordLength } from '../format/segment.js';
import { segmentOffset } from '../format/superblock.js';
import type { CommitPlacement } from './commit-mode.js';
import { failpoint, failpointArmed, type FailpointName } from './failpoints.js';

/** Where a record lives: segment index, byte offset in the segment, length with framing. */
/**
 * Bytes of the log an entry's value is charged to: a whole record, or (`lead` over 0) a slice of a
 * PUTRUN record that starts `lead` bytes into it (format/put-run.ts). A slice of a run's first
 * entry starts with the record, so its lead is 0 too: the record's opcode tells them apart.
 */
export interface Extent {
  segment: number;
  offset: number;
  length: number;
  lead?: number;
}

export interface RecordToWrite {
  opcode: number;
  key: Uint8Array;
  value: Uint8Array;
  /** Bytes of the value that come before `value` (a checkpoint chunk's header before its slice of the payload). */
  valueHead?: Uint8Array;
}

/** The record's length on disk, framing included. */
function lengthOf(r: RecordToWrite): number {
  return recordLength(r.key.length, (r.valueHead?.length ?? 0) + r.value.length);
}

/** The end of the log: the segment being appended to and the next free byte in it. */
export interface LogTail {
  segment: number;
  segSeq: number;
  offset: number;
}

export interface AppendOptions {
  /** May use the reserved segments (deletes, snapshot deletion, GC, checkpoints). */
  useReserve?: boolean;
  /** With `useReserve`: leave at least this many segments free (what a checkpoint needs). */
  keepFree?: number;
  /** Without `useReserve`: the reserve to leave whole, when the write makes it larger than it is now (a snapshot, a restore). */
  reserveAfter?: number;
  /** Start a fresh batch for these records (checkpoints start at a batch boundary). */
  ownBatch?: boolean;
  /** Hit this failpoint just before the batch holding these records is written (with `ownBatch`). */
  failpoint?: FailpointName;
}

export interface Appended {
  extents: Extent[];
  /** The batch start offset and segment of the first record (checkpoints record it). */
  batchStart: { segment: number; segSeq: number; offset: number };
  durable: Promise<void>;
}

/** Chooses free segments; the store knows which are in use. */
export interface SegmentAllocator {
  /** Free segments available now. */
  freeCount(): number;
  /** Take the lowest-numbered free segment. */
  take(): number;
}

/** Called at the start of each write round and once the round is durable, in order. */
export interface RoundHooks<T> {
  sealed(): T;
  durable(token: T): void;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

function deferred(): Deferred {
  let resolve: () => void = () => undefined;
  let reject: (err: unknown) => void = () => undefined;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** The promise that settles with `part`. */
function doneOf(part: Part): Promise<void> {
  part.done ??= deferred();
  return part.done.promise;
}

/** A contiguous run of one batch inside one segment, waiting to be written. */
interface Part {
  segment: number;
  segSeq: number;
  start: number;
  /** The part's encoded bytes are `bytes[0, length)` (a buffer the journal reuses once written). */
  bytes: Uint8Array;
  length: number;
  /**
   * Resolves when the part is durable, rejects if its round fails: shared by every append whose
   * last record is in this part (one promise per part, not one per append). Made on first use.
   */
  done?: Deferred;
  /** A segment header: written alone and flushed, no SYNC. */
  header?: true;
  /** A failpoint to hit before this part is written (AppendOptions.failpoint). */
  failpoint?: FailpointName;
  /** Its segment was taken fresh on a sparse device: zeros may go ahead of it (`paddedLength`). */
  fresh?: true;
}

/** Rounds one turn of the event loop may start from microtasks (background rounds, chained inline rounds) before the next waits for its check phase. */
const ROUNDS_PER_TURN = 32;
/** How long inline rounds chained by one writer (`run`) may hold the event loop before it turns. */
const CHAIN_MAX_MS = 5;
/**
 * How far past a small write's end, in a fresh segment of a sparse device, the write goes on with
 * zeros: the blocks are then allocated by one write, not by every commit that reaches a new one.
 * A durable write into unallocated blocks costs the file system a journal commit besides the data
 * (measured on ext4 here: 10 KB `O_DSYNC` writes 360–380 µs into a hole, 175–245 µs into blocks
 * written before; 64 commits in flight, 9–11 KB each, ran at 24–39k puts/s on a sparse image and
 * 31–43k/s on one whose holes were filled with zeros first).
 */
export const PAD_AHEAD = 64 * 1024;
const BLOCK = 4096;

/**
 * The journal appender with group commit. `append` places records synchronously (so their
 * extents and any `ENOSPC` are known at once, in call order) and returns a promise that resolves
 * when they are durable. Appends that arrive while a flush is in flight share the next flush.
 *
 * A round writes every sealed part: each part is one device write, and the device is flushed
 * before the log moves to another segment (so a segment header never vouches for bytes that are
 * not durable) and at the end of the round. If a write or flush fails, every waiting append fails
 * with that error and the writer refuses all later appends: the store must be reopened.
 */
export class JournalWriter<T> {
  private tail: LogTail;
  private nextSegSeq: number;
  private open: Part | undefined;
  private sealedParts: Part[] = [];
  private writing = false;
  private inFlight: Part[] | undefined;
  private scheduled = false;
  /** Rounds started from a microtask since the event loop last reached its check phase, and when the first of them was. */
  private roundsThisTurn = 0;
  private turnStartedAt = 0;
  private failure: StatefsError | undefined;
  /** Parts of the failed round and those queued behind it: their records never became durable (`pending` keeps naming them). */
  private lostParts: Pick<Part, 'segment' | 'start' | 'length'>[] = [];
  private idleWaiters: (() => void)[] = [];
  /** Buffers of parts already written, for later parts to encode into (`reserve`). */
  private readonly spareBuffers: Uint8Array[] = [];
  /** Bytes appended since the writer was created (for checkpoint policy and stats). */
  bytesAppended = 0;
  /** The device can make a write durable on the calling thread (`writeDurableSync`). */
  private readonly canWriteInline: boolean;
  /** Whether the tail's segment was taken fresh (see `Part.fresh`). */
  private tailFresh = false;
  /** The segment written last, and the offset up to which the log has written it (zeros included). */
  private written = { segment: -1, to: 0 };

  constructor(
    private readonly device: BlockDevice,
    private readonly segmentSize: number,
    tail: LogTail,
    nextSegSeq: number,
    private readonly allocator: SegmentAllocator,
    /** Segments only deletes, snapshot deletion, checkpoints and GC may use (may grow with the index). */
    private readonly reserveSegments: () => number,
    private readonly hooks: RoundHooks<T>,
    /** After a torn tail the head segment holds garbage past `tail`: move to a fresh segment first. */
    private mustRoll: boolean,
    /** Whether each round's durable write runs on the calling thread or the thread pool. */
    private readonly placement: CommitPlacement,
    /**
     * Per segment, 1 where the image holds nothing of it yet (`LogScan.unwritten`): taking one
     * on a sparse device, the log writes zeros ahead of its tail there. Cleared as segments are taken.
     */
    private readonly unwritten: Uint8Array = new Uint8Array(0),
  ) {
    this.tail = { ...tail };
    this.nextSegSeq = nextSegSeq;
    this.canWriteInline = device.writeDurable !== undefined && device.writeDurableSync !== undefined;
  }

  get failed(): StatefsError | undefined {
    return this.failure;
  }

  get position(): LogTail {
    return { ...this.tail };
  }

  /** Largest record length that fits in a segment with its header and a SYNC. */
  get maxRecordLength(): number {
    return maxRecordLength(this.segmentSize);
  }

  /** Whether `append` would place these records now (false: it would throw `ENOSPC`). */
  fits(records: readonly RecordToWrite[], options: AppendOptions = {}): boolean {
    try {
      this.checkSpace(records, options);
      return true;
    } catch {
      return false;
    }
  }

  /** Throws `ENOSPC` if the records cannot be placed, without placing any. */
  checkSpace(records: readonly RecordToWrite[], options: AppendOptions = {}): void {
    let offset = this.mustRoll ? this.segmentSize : this.tail.offset;
    if (options.ownBatch === true && this.open !== undefined && this.open.length > 0) offset += SYNC_RECORD_LENGTH;
    let rolls = 0;
    for (const r of records) {
      const len = lengthOf(r);
      if (len > this.maxRecordLength) throw StatefsError.EFBIG(`record of ${len} bytes exceeds a segment`, { op: 'append' });
      if (offset + len + SYNC_RECORD_LENGTH > this.segmentSize) {
        rolls++;
        offset = SEGMENT_RECORD_LENGTH;
      }
      offset += len;
    }
    const free = this.allocator.freeCount();
    if (options.useReserve === true) {
      // A reserve user that takes no new segment leaves the free ones as they are: `keepFree` binds only when it rolls.
      if (rolls > free || (rolls > 0 && free - rolls < (options.keepFree ?? 0))) throw StatefsError.ENOSPC(`image full (${free} free segments, ${rolls} needed)`, { op: 'append' });
      return;
    }
    // Ordinary writes stop while the reserve is not whole — even in the current segment — so
    // what checkpoints and GC borrowed from it comes back before they go on.
    const reserve = Math.max(this.reserveSegments(), options.reserveAfter ?? 0);
    if (free - rolls < reserve) {
      throw StatefsError.ENOSPC(`no room outside the reserve (${free} free segments, ${rolls} needed, ${reserve} kept for deletes and the next checkpoint)`, { op: 'append' });
    }
  }

  /** Place the records at the end of the log. Throws `EIO` after a failure, `ENOSPC` when full. */
  append(records: readonly RecordToWrite[], options: AppendOptions = {}): Appended {
    if (this.failure !== undefined) throw this.failure;
    this.checkSpace(records, options);
    if (this.mustRoll) {
      this.roll();
      this.mustRoll = false;
    }
    if (options.ownBatch === true && this.open !== undefined && this.open.length > 0) this.seal();
    const extents: Extent[] = [];
    let batchStart: Appended['batchStart'] | undefined;
    for (let i = 0; i < records.length; ) {
      const first = records[i];
      if (first === undefined) break;
      if (this.tail.offset + lengthOf(first) + SYNC_RECORD_LENGTH > this.segmentSize) this.roll();
      const part = this.openPart();
      batchStart ??= { segment: part.segment, segSeq: part.segSeq, offset: part.start };
      // The records that fit in this segment, encoded into one buffer (one allocation, not one per record).
      let end = i;
      let bytes = 0;
      for (let r = records[end]; r !== undefined; r = records[++end]) {
        const len = lengthOf(r);
        if (this.tail.offset + bytes + len + SYNC_RECORD_LENGTH > this.segmentSize) break;
        extents.push({ segment: this.tail.segment, offset: this.tail.offset + bytes, length: len });
        bytes += len;
      }
      const run = this.reserve(part, bytes);
      for (let at = run.at; i < end; i++) {
        const r = records[i];
        if (r !== undefined) at += encodeRecordInto(run.bytes, at, r.opcode, r.key, r.value, r.valueHead);
      }
    }
    const part = this.openPart();
    batchStart ??= { segment: part.segment, segSeq: part.segSeq, offset: part.start };
    if (options.failpoint !== undefined) part.failpoint = options.failpoint;
    const durable = doneOf(part);
    this.schedule();
    return { extents, batchStart, durable };
  }

  /** Resolves when everything appended so far is durable (rejects if the journal failed). */
  drain(): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const last = this.open !== undefined && this.open.length > 0 ? this.open : (this.sealedParts.at(-1) ?? this.inFlight?.at(-1));
    if (last === undefined) return Promise.resolve();
    const p = doneOf(last);
    this.schedule();
    return p;
  }

  /** Whether the byte at `offset` of `segment` belongs to an append that is not durable yet (a read of the device may not find it there). */
  pending(segment: number, offset: number): boolean {
    const covers = (p: Pick<Part, 'segment' | 'start' | 'length'>): boolean => p.segment === segment && offset >= p.start && offset < p.start + p.length;
    return (this.open !== undefined && covers(this.open)) || this.sealedParts.some(covers) || (this.inFlight?.some(covers) ?? false) || this.lostParts.some(covers);
  }

  /** Resolves once no round is running (used by close after a failure). */
  idle(): Promise<void> {
    if (!this.writing && !this.scheduled) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private openPart(): Part {
    if (this.open === undefined) {
      this.open = { segment: this.tail.segment, segSeq: this.tail.segSeq, start: this.tail.offset, bytes: EMPTY, length: 0 };
      if (this.tailFresh) this.open.fresh = true;
    }
    return this.open;
  }

  /**
   * Room for `n` more bytes at the end of `part` (and the log): the buffer to encode them into and
   * where. Records are encoded straight into the part's buffer, one per part rather than one per
   * append, taken from the buffers of rounds already written where one is large enough.
   */
  private reserve(part: Part, n: number): { bytes: Uint8Array; at: number } {
    const at = part.length;
    if (at + n > part.bytes.length) {
      // An empty part gets just what it needs (a bulk append is not copied again); a growing one
      // doubles, so a round of many small appends copies its bytes about once.
      const wanted = at === 0 ? n + SYNC_RECORD_LENGTH : Math.max(at + n + SYNC_RECORD_LENGTH, 2 * part.bytes.length);
      const grown = this.takeBuffer(Math.min(wanted, this.segmentSize));
      grown.set(part.bytes.subarray(0, at));
      this.giveBuffer(part.bytes);
      part.bytes = grown;
    }
    part.length += n;
    this.tail.offset += n;
    this.bytesAppended += n;
    return { bytes: part.bytes, at };
  }

  private push(part: Part, bytes: Uint8Array): void {
    const room = this.reserve(part, bytes.length);
    room.bytes.set(bytes, room.at);
  }

  private takeBuffer(min: number): Uint8Array {
    const i = this.spareBuffers.findIndex((b) => b.length >= min);
    if (i === -1) return new Uint8Array(Math.max(min, SPARE_BUFFER_MIN));
    const [taken] = this.spareBuffers.splice(i, 1);
    return taken ?? new Uint8Array(Math.max(min, SPARE_BUFFER_MIN));
  }

  /** Keep a written part's buffer for later parts (a few, and none of a bulk append's size). */
  private giveBuffer(bytes: Uint8Array): void {
    if (bytes.length >= SPARE_BUFFER_MIN && bytes.length <= SPARE_BUFFER_MAX && this.spareBuffers.length < SPARE_BUFFERS) this.spareBuffers.push(bytes);
  }

  /** Close the open part with its SYNC record and queue it for writing. */
  private seal(): void {
    const part = this.open;
    if (part === undefined) return;
    this.open = undefined;
    if (part.length === 0) {
      // Only waiters, no records (cannot happen through append, which always writes): keep them.
      this.open = part;
      return;
    }
    const room = this.reserve(part, SYNC_RECORD_LENGTH);
    encodeRecordInto(room.bytes, room.at, Op.SYNC, EMPTY, encodeSync({ segSeq: part.segSeq, batchStart: part.start }));
    this.sealedParts.push(part);
  }

  /** Seal the current part and continue the log in a newly allocated segment. */
  private roll(): void {
    this.seal();
    const prev = this.tail;
    const segment = this.allocator.take();
    const segSeq = this.nextSegSeq++;
    this.tail = { segment, segSeq, offset: 0 };
    this.tailFresh = this.device.sparse === true && this.unwritten[segment] === 1;
    if (segment < this.unwritten.length) this.unwritten[segment] = 0;
    // The header is a part of its own, outside every batch, written and flushed before any other
    // byte of the segment: once a byte of this life can be on disk, its sequence number is.
    const header = encodeSegmentHeader({ segSeq, segIndex: segment, prevIndex: prev.segment, prevEnd: prev.offset });
    const part: Part = { segment, segSeq, start: 0, bytes: EMPTY, length: 0, header: true };
    if (this.tailFresh) part.fresh = true;
    this.push(part, encodeRecord(Op.SEGMENT, EMPTY, header));
    this.sealedParts.push(part);
  }

  private schedule(): void {
    if (this.scheduled || this.writing) return;
    this.scheduled = true;
    const start = (): void => {
      this.scheduled = false;
      void this.run();
    };
    // A round written in the background starts at the next microtask: appends issued in the same
    // tick join it, and later ones gather behind it while it is written. A round written inline
    // holds the event loop until it is durable, so it waits for the loop's next check phase
    // instead: every request already read from a socket in this turn joins it (otherwise each
    // connection's put would get a flush of its own).
    if (this.writesInline() || !this.roundInThisTurn()) {
      setImmediate(start);
      return;
    }
    queueMicrotask(start);
  }

  private writesInline(): boolean {
    return this.canWriteInline && this.placement.inline;
  }

  /**
   * Whether one more round may start without the event loop turning, and if so counts it. On a
   * device whose writes complete at once (a memory image), or with rounds written inline and
   * chained (`run`), rounds chained by microtasks would never let the loop turn under a loop of
   * awaited writes: timers and sockets would wait, and a checkpoint built in steps (which runs
   * between turns) would wait until the image ran low on space. So after ROUNDS_PER_TURN rounds in
   * one turn, the next waits for the check phase.
   */
  private roundInThisTurn(): boolean {
    if (this.roundsThisTurn >= ROUNDS_PER_TURN) return false;
    if (this.roundsThisTurn++ === 0) {
      this.turnStartedAt = performance.now();
      setImmediate(() => {
        this.roundsThisTurn = 0;
      });
    }
    return true;
  }

  /**
   * Whether the next inline round may follow this one without the event loop turning: within
   * ROUNDS_PER_TURN rounds and CHAIN_MAX_MS of the turn's first chained round (each is a sync of
   * the disk, so on a slow disk fewer rounds follow one another before timers and sockets run).
   */
  private mayChain(): boolean {
    if (this.roundsThisTurn > 0 && performance.now() - this.turnStartedAt > CHAIN_MAX_MS) return false;
    return this.roundInThisTurn();
  }

  private async run(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      for (;;) {
        this.seal();
        const parts = this.sealedParts;
        if (parts.length === 0 || this.failure !== undefined) break;
        this.sealedParts = [];
        this.inFlight = parts;
        const token = this.hooks.sealed();
        try {
          for (const part of parts) await this.writePart(part);
          failpoint('journal.before-ack');
        } catch (err) {
          this.fail(err, parts);
          break;
        }
        this.hooks.durable(token);
        for (const part of parts) {
          part.done?.resolve();
          this.giveBuffer(part.bytes);
          part.bytes = EMPTY;
        }
        // Durable: no longer pending (a reader waiting for these parts must not find them again
        // while the tick below is awaited, or it would spin on their settled promise).
        this.inFlight = undefined;
        // An inline round's waiters may append again at once (one writer awaiting each put): wait
        // until the microtasks its answers set off have run, so those appends make the next round
        // here rather than wait a turn of the event loop for theirs (docs/storage/statefs-v3.md
        // 5.2). Requests from sockets come in later turns, so a daemon's rounds still gather them
        // at the check phase (see `schedule`).
        if (this.writesInline() && this.mayChain()) await afterMicrotasks();
      }
    } finally {
      this.writing = false;
      this.inFlight = undefined;
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * Write one part (one batch, or a segment header) with one write, then flush. A write then never
   * holds more than one SYNC, so a write the device tears or reorders leaves at most its own
   * batch's SYNC past the damage, which replay tells apart from damage inside the log
   * (docs/storage/statefs-v3.md §6.2).
   */
  private async writePart(part: Part): Promise<void> {
    if (part.failpoint !== undefined) failpoint(part.failpoint);
    const at = segmentOffset(part.segment, this.segmentSize) + part.start;
    const padded = this.paddedLength(part);
    if (padded > part.length) {
      part.bytes.fill(0, part.length, padded);
      try {
        await this.writeBytes(at, part.bytes.subarray(0, padded));
        return;
      } catch (err) {
        // The zeros may be what the file system has no room for: the records alone may fit (and
        // the rest of this segment is written without zeros ahead).
        if (!(err instanceof StatefsError && err.code === 'ENOSPC')) throw err;
        this.written.to = this.segmentSize;
      }
    }
    await this.writeBytes(at, part.bytes.subarray(0, part.length));
  }

  /**
   * How many bytes of `part.bytes` to write: the part, and in a fresh segment whose blocks the log
   * has not reached yet, zeros from its end to `PAD_AHEAD` past the block it ends in (within the
   * segment and the part's buffer). Bytes past the tail of a segment the log took are free: the
   * log writes there next, and replay ends the log at the first bytes that are no valid batch.
   */
  private paddedLength(part: Part): number {
    if (this.written.segment !== part.segment) this.written = { segment: part.segment, to: 0 };
    const end = part.start + part.length;
    if (part.fresh !== true || end <= this.written.to) {
      this.written.to = Math.max(this.written.to, end);
      return part.length;
    }
    const padEnd = Math.min(this.segmentSize, part.start + part.bytes.length, Math.ceil(end / BLOCK) * BLOCK + PAD_AHEAD);
    this.written.to = Math.max(end, padEnd);
    return Math.max(part.length, padEnd - part.start);
  }

  private async writeBytes(at: number, bytes: Uint8Array): Promise<void> {
    // One O_DSYNC write where the device offers it; write then flush otherwise, and while the
    // failpoint between the two is armed (it needs a moment when the bytes are written, not flushed).
    if (this.device.writeDurable !== undefined && !failpointArmed('journal.before-flush')) {
      const started = performance.now();
      let inline = false;
      if (this.device.writeDurableSync !== undefined && this.placement.inlineFor(bytes.length, started)) {
        inline = true;
        this.device.writeDurableSync(at, bytes);
      } else {
        await this.device.writeDurable(at, bytes);
      }
      const ended = performance.now();
      this.placement.record(ended - started, bytes.length, inline, ended);
    } else {
      await this.device.write(at, bytes);
      failpoint('journal.before-flush');
      await this.device.flush();
    }
  }

  /**
   * The appends of the failed round get the device's own error (`EIO` or `ENOSPC`); everything
   * queued behind it, and every later append, gets `EIO`: the store must be reopened.
   */
  private fail(err: unknown, inFlight: Part[]): void {
    const cause = err instanceof StatefsError ? err : StatefsError.EIO(String(err), { op: 'flush', cause: err });
    this.failure = StatefsError.EIO(`an earlier journal write failed (${cause.message}); reopen the store`, { op: 'append', cause });
    const queued = [...this.sealedParts, ...(this.open === undefined ? [] : [this.open])];
    this.sealedParts = [];
    this.open = undefined;
    this.lostParts = [...inFlight, ...queued].map(({ segment, start, length }) => ({ segment, start, length }));
    for (const part of inFlight) part.done?.reject(cause);
    for (const part of queued) part.done?.reject(this.failure);
  }
}

const EMPTY = new Uint8Array(0);

/** Resolves once the microtasks queued so far, and those they queue, have run (a `nextTick` runs after the queue drains). */
function afterMicrotasks(): Promise<void> {
  return new Promise((resolve) => {
    process.nextTick(resolve);
  });
}

/** Part buffers: the smallest allocated, the largest kept for reuse, and how many are kept. */
const SPARE_BUFFER_MIN = 64 * 1024;
const SPARE_BUFFER_MAX = 1024 * 1024;
const SPARE_BUFFERS = 4;
