import { StatefsError } from '../errors.js';
import { encodeReloc } from '../format/meta-records.js';
import { Op } from '../format/opcodes.js';
import { recordLength } from '../format/record.js';
import type { EntryRef, EntryTable } from './entry-table.js';
import type { Appended, RecordToWrite } from './journal-writer.js';
import { failpoint } from './failpoints.js';
import { indexKey } from './names.js';
import type { SegmentUsage } from './segment-usage.js';

export interface GcOptions {
  /** Segment bytes one cycle may process (default 8 MiB, at least one segment). */
  maxBytes?: number;
  /** Segments one cycle may empty (default: no limit beyond maxBytes). */
  maxSegments?: number;
  /** Cancels a running cycle between segments; work already durable stays done. */
  signal?: AbortSignal;
}

/** What one cycle did (`gcNow`) or will do (`gcPlan`). */
export interface GcResult {
  /** Bytes of segments returned to the free pool. */
  freedBytes: number;
  /** Bytes written to move still-readable records out of the emptied segments. */
  movedBytes: number;
  /** Bytes of the segments the cycle processed. */
  scannedBytes: number;
  /** Garbage left after the cycle: bytes in used segments that nothing reads. */
  remainingGarbageBytes: number;
  segmentsFreed: number;
}

export interface GcPlan extends GcResult {
  /** The segments the cycle will empty, in order. */
  segments: number[];
}

interface InternalPlan extends GcPlan {
  moves: Move[];
}

/** An entry to move: where it is held and what its RELOC record will be. */
interface Move {
  subject: string;
  bin: string;
  entry: EntryRef;
}

/** What the compactor needs from the store. */
export interface CompactorHost {
  readonly usage: SegmentUsage;
  readonly entries: EntryTable;
  readonly segmentSize: number;
  /** Every distinct entry held by a live tree or a snapshot with a record in `segments`, with one place that holds it, as of the call (found over turns of the event loop). */
  heldEntriesIn(segments: ReadonlySet<number>): Promise<Move[]>;
  /** Whether the entry is still held by anything (it may have been superseded since planning). */
  stillHeld(m: Move): boolean;
  append(records: RecordToWrite[]): Appended;
  /** A value of `subject` now lives in a record of another size. */
  moved(subject: string, beforeBytes: number, afterBytes: number): void;
  marker(line: string): void;
}

export const DEFAULT_GC_MAX_BYTES = 8 * 1024 * 1024;
/** RELOC records per append of a cycle (see `run`). */
const MOVES_PER_APPEND = 1024;

/**
 * Bounded, deterministic reclaim. A cycle picks the segments outside the log chain with the
 * fewest live bytes (ties: lowest index) until the byte bound, moves every value they still hold
 * (live or snapshot) to the head of the log as RELOC records, and frees them. No time or random
 * choice: the same state gives the same cycle, and `plan` predicts `run` exactly.
 */
export class Compactor {
  constructor(private readonly host: CompactorHost) {}

  /** The next cycle with these options, as of the call (the index walked over turns of the event loop). */
  async plan(options: GcOptions = {}): Promise<InternalPlan> {
    const { usage, segmentSize } = this.host;
    const segments = this.chooseSegments(options);
    // The segment figures before the walk: writes made while it is paused must not show in them
    // (a chosen segment they empty would count as reclaimed in full and be gone from the garbage).
    let reclaimed = 0;
    for (const s of segments) reclaimed += segmentSize - (usage.liveBytes[s] ?? 0);
    const remainingGarbageBytes = this.garbageBytes() - reclaimed;
    const moves = segments.length === 0 ? [] : await this.host.heldEntriesIn(new Set(segments));
    let movedBytes = 0;
    for (const m of moves) movedBytes += this.readingValue(m, () => relocLength(this.host.entries, m));
    return {
      segments,
      freedBytes: segments.length * segmentSize,
      movedBytes,
      scannedBytes: segments.length * segmentSize,
      remainingGarbageBytes,
      segmentsFreed: segments.length,
      moves,
    };
  }

  /** The segments a cycle empties: the fewest live bytes first (ties: lowest index), within the options' bounds. */
  private chooseSegments(options: GcOptions): number[] {
    const { usage, segmentSize } = this.host;
    const { maxBytes: askedBytes, maxSegments = Number.POSITIVE_INFINITY } = options;
    if (askedBytes !== undefined && !(Number.isSafeInteger(askedBytes) && askedBytes > 0)) {
      throw StatefsError.EINVAL(`gc maxBytes ${String(askedBytes)}: use a whole number of bytes above 0`, { op: 'gc' });
    }
    if (!(maxSegments === Number.POSITIVE_INFINITY || (Number.isSafeInteger(maxSegments) && maxSegments >= 1))) {
      throw StatefsError.EINVAL(`gc maxSegments ${String(maxSegments)}: use a whole number of at least 1`, { op: 'gc' });
    }
    const maxBytes = Math.max(askedBytes ?? DEFAULT_GC_MAX_BYTES, segmentSize);
    const segments: number[] = [];
    for (const s of usage.gcCandidates()) {
      if ((segments.length + 1) * segmentSize > maxBytes || segments.length >= maxSegments) break;
      segments.push(s);
    }
    return segments;
  }

  /** Run one cycle. Emits `statefs: compact progress freed=<n>` after each segment's moves are durable. */
  async run(options: GcOptions = {}): Promise<GcResult> {
    const plan = await this.plan(options);
    let freed = 0;
    let moved = 0;
    let scanned = 0;
    let done = 0;
    for (const segment of plan.segments) {
      if (options.signal?.aborted === true) break;
      const here = new Set([segment]);
      const entries = this.host.entries;
      const candidates = plan.moves.filter((m) => entries.hasRecordIn(m.entry, here));
      scanned += this.host.segmentSize;
      let relocated = false;
      // A few hundred KiB of RELOC records per append, each durable before the next is encoded:
      // a segment of 100-byte values holds ~1,900, whose encoding in one go held the event loop
      // for tens of ms at a million keys.
      for (let from = 0; from < candidates.length; from += MOVES_PER_APPEND) {
        // Entries still here and still held (a write may have superseded one since planning).
        const moves = candidates.slice(from, from + MOVES_PER_APPEND).filter((m) => entries.hasRecordIn(m.entry, here) && this.host.stillHeld(m));
        if (moves.length === 0) continue;
        // Values read on demand are kept in memory before anything changes (a failed read changes
        // nothing): their new records are not written yet when they may next be read.
        for (const m of moves) {
          this.readingValue(m, () => {
            entries.holdValue(m.entry);
          });
        }
        const records = moves.map((m) => relocRecord(entries, m));
        const appended = this.host.append(records);
        moves.forEach((m, i) => {
          const to = appended.extents[i];
          if (to === undefined) return;
          this.host.moved(m.subject, entries.diskBytes(m.entry), to.length);
          this.host.usage.moveEntry(m.entry, to);
        });
        await appended.durable;
        relocated = true;
        for (const r of records) moved += recordLength(r.key.length, r.value.length);
      }
      if (relocated) failpoint('gc.relocate');
      if (this.host.usage.isFree(segment)) {
        freed += this.host.segmentSize;
        done++;
        this.host.marker(`statefs: compact progress freed=${freed}`);
      }
    }
    return { freedBytes: freed, movedBytes: moved, scannedBytes: scanned, remainingGarbageBytes: this.garbageBytes(), segmentsFreed: done };
  }

  /**
   * `read`, which reads the value of the move's entry (on demand, it may fail): when it finds the
   * value damaged and the entry still held, the segments that hold it are set aside before the
   * error goes on, so the next cycle empties others instead of failing on the same value again.
   * (A plan answers for the moment of the call, so it reads values written over since; one of
   * those is nobody's now, and setting its segments aside would outlast it.)
   */
  private readingValue<T>(m: Move, read: () => T): T {
    try {
      return read();
    } catch (err) {
      if (err instanceof StatefsError && err.code === 'EINTEGRITY' && this.host.stillHeld(m)) this.host.usage.setAsideFor(m.entry);
      throw err;
    }
  }

  /** Reclaimable garbage: bytes nothing reads in used segments outside the log chain. */
  garbageBytes(): number {
    return this.host.usage.candidateGarbage();
  }
}

function relocRecord(entries: EntryTable, m: Move): RecordToWrite {
  return {
    opcode: Op.RELOC,
    key: Buffer.from(indexKey(m.subject, m.bin), 'latin1'),
    value: encodeReloc({ segment: entries.segment(m.entry), offset: entries.offset(m.entry), value: entries.value(m.entry) }),
  };
}

function relocLength(entries: EntryTable, m: Move): number {
  return recordLength(m.subject.length + 1 + m.bin.length, 8 + entries.valueLength(m.entry));
}
