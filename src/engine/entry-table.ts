import { StatefsError } from '../errors.js';
import type { Entry } from './entry.js';
import type { SyncValueReader } from './entry-reader.js';
import type { Extent } from './journal-writer.js';
import { copyInto, copyOut } from './value-pool.js';

/**
 * What a tree holds for a key: an `Entry` object (a value written since the store opened, or
 * replayed from the log), or a number, the row of an entry loaded from the checkpoint at open
 * in the store's `EntryTable`. Both are compared by identity (`===`): a row is one entry.
 */
export type EntryRef = Entry | number;

/** A row whose value replay has not read yet, or that is read from the device when asked for. */
const UNREAD = -1;
const NO_EXTENTS: readonly Extent[] = [];
const FIRST_CAPACITY = 1024;
/** Bytes of a slab that holds values of rows read on demand, once kept in memory (`holdValue`). */
const MOVED_SLAB_BYTES = 64 * 1024;

/** Where a writable store's rows read their values when asked for (`EntryTable.readOnDemand`). */
export interface ValuesOnDevice {
  reader: SyncValueReader;
  /** Whether `segment` still holds what it held at the open (the log has not taken it since). */
  unchanged(segment: number): boolean;
}

/**
 * The entries a store loaded from its checkpoint at open, as columns of typed arrays (one row
 * each), and the one way to read any `EntryRef`. A million keys loaded at open would otherwise
 * be a million objects for V8's young-generation collector to copy while the open builds them,
 * and for every later collection to trace (docs/performance.md, reopen and peak RSS).
 *
 * A row's value is `size` bytes at `start` in a slab: one buffer per segment read at open,
 * holding that segment's values. A row is never reused and its value never changes; `moveTo`
 * (GC wrote its record elsewhere) changes only where its record is, for every tree holding it.
 *
 * A store told to read values on demand (`readOnDemand`) reads none at open: a row's value is
 * read from its record on the device each time it is asked for, its CRC checked, and held in
 * memory only once GC or a checkpoint moves it (`holdValue`), or once the log takes its segment
 * while a reader may still read it after it was let go (`segmentTaken`). The open then holds no
 * memory for values (docs/storage/statefs-v3.md 6.3).
 *
 * Rows cannot tell when no tree holds them any more, so their values are released a slab at a
 * time: the store reports each row that stops being held by the live trees and snapshots
 * (`released`), and a slab whose rows are all released is dropped once a checkpoint that began
 * after its last release has completed (`checkpointStarted`, `checkpointDone`). By then no
 * committed tree, checkpoint or transaction can still read it (the background digest of a
 * deleted snapshot may: it fails, see `slabFor`); a read of a dropped slab is an `EIO`, never
 * another value.
 */
export class EntryTable {
  private rows = 0;
  private seg = new Int32Array(FIRST_CAPACITY);
  private off = new Int32Array(FIRST_CAPACITY);
  private len = new Int32Array(FIRST_CAPACITY);
  /** `Extent.lead` of the first extent (a PUTRUN slice's start in its record; at most `RUN_RECORD_MAX`). */
  private lead = new Uint16Array(FIRST_CAPACITY);
  private slabOf = new Int32Array(FIRST_CAPACITY);
  private start = new Int32Array(FIRST_CAPACITY);
  private size = new Int32Array(FIRST_CAPACITY).fill(UNREAD);
  /** Records after the first, for the rare value held in several records (transaction chunks). */
  private readonly more = new Map<number, readonly Extent[]>();
  /** Value buffers; `undefined` once released. */
  private readonly slabs: (Uint8Array | undefined)[] = [];
  /** Per slab, its rows still held. */
  private readonly heldRows: number[] = [];
  /** Slabs whose rows are all released, each with the number of checkpoints begun when it was. */
  private pending: { slab: number; begun: number }[] = [];
  private checkpointsBegun = 0;
  private onDevice: ValuesOnDevice | undefined;
  /** The slab that moved values are packed into (`-1`: none open), and its bytes used. */
  private movedSlab = -1;
  private movedAt = 0;
  /** Rows read on demand that were let go, by the checkpoints begun then, by segment (`noteLetGo`). */
  private readonly letGo = new Map<number, Map<number, number[]>>();

  /** From now on, rows whose value was not read at open read it from the device when asked for. */
  readOnDemand(values: ValuesOnDevice): void {
    this.onDevice = values;
  }

  /** A new row for an entry loaded from a checkpoint: its records are known, its value is read later (`fill`). */
  addUnread(segment: number, offset: number, recordLength: number, more: readonly Extent[], lead = 0): number {
    if (this.rows === this.seg.length) this.grow();
    const row = this.rows++;
    this.seg[row] = segment;
    this.off[row] = offset;
    this.len[row] = recordLength;
    this.lead[row] = lead;
    if (more.length > 0) this.more.set(row, more);
    return row;
  }

  /** Room for `more` rows beyond those added so far (a checkpoint's entries: one growth, not twenty copies). */
  reserve(more: number): void {
    if (this.rows + more > this.seg.length) this.grow(this.rows + more);
  }

  private grow(capacity = this.seg.length * 2): void {
    const grown = (a: Int32Array, fill: number): Int32Array<ArrayBuffer> => {
      const b = new Int32Array(capacity);
      if (fill !== 0) b.fill(fill, a.length);
      b.set(a);
      return b;
    };
    this.seg = grown(this.seg, 0);
    this.off = grown(this.off, 0);
    this.len = grown(this.len, 0);
    const lead = new Uint16Array(capacity);
    lead.set(this.lead);
    this.lead = lead;
    this.slabOf = grown(this.slabOf, 0);
    this.start = grown(this.start, 0);
    this.size = grown(this.size, UNREAD);
  }

  /** A buffer of values for rows to `fillInSlab` with (it must not change). */
  addSlab(bytes: Uint8Array): number {
    this.slabs.push(bytes);
    this.heldRows.push(0);
    return this.slabs.length - 1;
  }

  /** Replay read the value of `row`: `length` bytes at `start` of slab `slab`. */
  fillInSlab(row: number, slab: number, start: number, length: number): void {
    this.slabOf[row] = slab;
    this.start[row] = start;
    this.size[row] = length;
    this.heldRows[slab] = (this.heldRows[slab] ?? 0) + 1;
  }

  /** Whether the value is known (false only during replay, for a row not read yet). */
  loaded(e: EntryRef): boolean {
    return typeof e !== 'number' || (this.size[e] ?? UNREAD) !== UNREAD;
  }

  /** Segment of the first record holding the value (`-1`: none yet). */
  segment(e: EntryRef): number {
    return typeof e === 'number' ? (this.seg[e] ?? 0) : e.segment;
  }

  /** Byte offset of the first record in its segment. */
  offset(e: EntryRef): number {
    return typeof e === 'number' ? (this.off[e] ?? 0) : e.offset;
  }

  /** Length of the first record, framing included (0: none yet). */
  recordLength(e: EntryRef): number {
    return typeof e === 'number' ? (this.len[e] ?? 0) : e.recordLength;
  }

  /** Where the first extent starts in its PUTRUN record (0: at the record's start; `Extent.lead`). */
  recordLead(e: EntryRef): number {
    return typeof e === 'number' ? (this.lead[e] ?? 0) : e.recordLead;
  }

  /** Records after the first; usually none. */
  moreRecords(e: EntryRef): readonly Extent[] {
    return typeof e === 'number' ? (this.more.get(e) ?? NO_EXTENTS) : e.moreRecords;
  }

  /** How many records hold the value. */
  extentCount(e: EntryRef): number {
    return 1 + this.moreRecords(e).length;
  }

  /** Every record holding the value, in order (a new array: for the colder paths). */
  extents(e: EntryRef): Extent[] {
    if (typeof e !== 'number') return e.extents;
    const lead = this.recordLead(e);
    const first: Extent = lead === 0 ? { segment: this.segment(e), offset: this.offset(e), length: this.recordLength(e) } : { segment: this.segment(e), offset: this.offset(e), length: this.recordLength(e), lead };
    return [first, ...this.moreRecords(e)];
  }

  /** Whether a record holding the value lies in one of `segments`. */
  hasRecordIn(e: EntryRef, segments: ReadonlySet<number>): boolean {
    if (typeof e !== 'number') return e.hasRecordIn(segments);
    if (segments.has(this.segment(e))) return true;
    for (const x of this.moreRecords(e)) if (segments.has(x.segment)) return true;
    return false;
  }

  /** Bytes the entry occupies on disk (framing included). */
  diskBytes(e: EntryRef): number {
    if (typeof e !== 'number') return e.diskBytes;
    let n = this.recordLength(e);
    for (const x of this.moreRecords(e)) n += x.length;
    return n;
  }

  /** The value was written to the record `to` (the only record holding it from now on). */
  moveTo(e: EntryRef, to: Extent): void {
    if (typeof e !== 'number') {
      e.moveTo(to);
      return;
    }
    this.holdValue(e); // done by the mover already (it may fail): then a no-op
    this.seg[e] = to.segment;
    this.off[e] = to.offset;
    this.len[e] = to.length;
    this.lead[e] = to.lead ?? 0;
    this.more.delete(e);
  }

  valueLength(e: EntryRef): number {
    if (typeof e !== 'number') return e.valueLength;
    const size = this.size[e] ?? 0;
    return size === UNREAD && this.onDevice !== undefined ? this.readFromDevice(e, this.onDevice).length : Math.max(size, 0);
  }

  /** A view of the value (the store's own bytes: never hand it out, never change it). */
  value(e: EntryRef): Uint8Array {
    if (typeof e !== 'number') return e.value;
    // Read from the device: a copy, as callers hold several values at once.
    if (this.onDevice !== undefined && (this.size[e] ?? 0) === UNREAD) return this.readFromDevice(e, this.onDevice).slice();
    const start = this.start[e] ?? 0;
    return this.slabFor(e).subarray(start, start + this.valueLength(e));
  }

  /** A copy of the value that the caller owns. */
  copyValue(e: EntryRef): Uint8Array {
    if (typeof e !== 'number') return e.copyValue();
    if (this.onDevice !== undefined && (this.size[e] ?? 0) === UNREAD) {
      const value = this.readFromDevice(e, this.onDevice);
      return copyOut(value, 0, value.length);
    }
    return copyOut(this.slabFor(e), this.start[e] ?? 0, this.valueLength(e));
  }

  /** Copy the value to the start of `target` if it fits; returns its length either way. */
  copyValueInto(e: EntryRef, target: Uint8Array): number {
    if (typeof e !== 'number') return e.copyValueInto(target);
    if (this.onDevice !== undefined && (this.size[e] ?? 0) === UNREAD) {
      const value = this.readFromDevice(e, this.onDevice);
      if (value.length <= target.length) target.set(value);
      return value.length;
    }
    const length = this.valueLength(e);
    if (length <= target.length) copyInto(this.slabFor(e), this.start[e] ?? 0, length, target);
    return length;
  }

  /**
   * The value of a row not read at open, from its records on the device: a view that the next
   * read overwrites. A record in a segment the log has taken since the open no longer holds it: a
   * held row is moved out (and kept in memory) first, and a let-go row is read into memory before
   * its segment is taken (`segmentTaken`), so only a row that no reader can reach, or whose read
   * failed then, is still there; the answer is the `EIO` of a dropped slab, never the bytes
   * written there since.
   */
  private readFromDevice(row: number, values: ValuesOnDevice): Uint8Array {
    const more = this.more.get(row);
    const segment = this.seg[row] ?? 0;
    if (!values.unchanged(segment) || (more !== undefined && !more.every((x) => values.unchanged(x.segment)))) throw gone();
    return more === undefined ? values.reader.readOne(segment, this.off[row] ?? 0, this.len[row] ?? 0, this.lead[row] ?? 0) : values.reader.readAll(this.extents(row));
  }

  /**
   * Keep in memory, from now on, the value of a row read on demand (a no-op for any other entry):
   * before GC moves its record, whose new one may not be written yet when it is next read. Throws
   * what the read throws, before anything changed.
   */
  holdValue(e: EntryRef): void {
    if (typeof e === 'number' && this.onDevice !== undefined && (this.size[e] ?? 0) === UNREAD) this.holdRead(e, this.readFromDevice(e, this.onDevice));
  }

  private holdRead(row: number, value: Uint8Array): void {
    let slab = this.slabs[this.movedSlab];
    if (slab === undefined || this.movedAt + value.length > slab.length) {
      // The full slab takes no more values: once none of its rows is held, it can go.
      if (slab !== undefined && this.heldRows[this.movedSlab] === 0) this.pending.push({ slab: this.movedSlab, begun: this.checkpointsBegun });
      this.movedSlab = this.addSlab((slab = new Uint8Array(Math.max(MOVED_SLAB_BYTES, value.length))));
      this.movedAt = 0;
    }
    slab.set(value, this.movedAt);
    this.fillInSlab(row, this.movedSlab, this.movedAt, value.length);
    this.movedAt += value.length;
  }

  /** Whether both entries hold the same value bytes. */
  sameValue(a: EntryRef, b: EntryRef): boolean {
    if (typeof a !== 'number' && typeof b !== 'number') return a.sameValue(b);
    return Buffer.compare(this.value(a), this.value(b)) === 0; // a value read on demand is a copy: both can be held
  }

  private slabFor(row: number): Uint8Array {
    const slab = this.slabs[this.slabOf[row] ?? 0];
    // A released slab's rows are held by no tree the store reads (a snapshot digest still
    // running over a deleted snapshot aside: it fails, and verifySnapshot says ENOENT); reaching
    // one otherwise is a bug, and failing the read is the only answer that cannot be wrong.
    if (slab === undefined || (this.size[row] ?? UNREAD) === UNREAD) throw gone();
    return slab;
  }

  /** No live tree or snapshot holds `e` any more (the store's accounting says so, once per entry). */
  released(e: EntryRef): void {
    if (typeof e !== 'number') return;
    if ((this.size[e] ?? UNREAD) === UNREAD) {
      if (this.onDevice !== undefined) this.noteLetGo(e);
      return;
    }
    this.releaseFromSlab(e);
  }

  private releaseFromSlab(row: number): void {
    const slab = this.slabOf[row] ?? 0;
    const held = (this.heldRows[slab] ?? 0) - 1;
    this.heldRows[slab] = held;
    // The slab moved values are packed into now goes when it is full (`holdRead`).
    if (held === 0 && slab !== this.movedSlab) this.pending.push({ slab, begun: this.checkpointsBegun });
  }

  /**
   * A row read on demand was let go. Readers of the committed tree may read it until the change
   * that let it go is durable, and older trees until a checkpoint begun after that completes (as
   * for a slab), while its segment is free at once: if the log takes the segment before then, the
   * value is read into memory first (`segmentTaken`). Most never are: no read, no memory.
   */
  private noteLetGo(row: number): void {
    let bySegment = this.letGo.get(this.checkpointsBegun);
    if (bySegment === undefined) this.letGo.set(this.checkpointsBegun, (bySegment = new Map<number, number[]>()));
    const note = (segment: number): void => {
      const rows = bySegment.get(segment);
      if (rows === undefined) bySegment.set(segment, [row]);
      else rows.push(row);
    };
    note(this.seg[row] ?? 0);
    for (const x of this.more.get(row) ?? NO_EXTENTS) note(x.segment);
  }

  /**
   * The log takes `segment` (before writing to it): the rows read on demand that were let go
   * there and may still be read are read into memory now, while their records are intact. A row
   * whose read fails stays on the device, and reading it is then `EIO` (`readFromDevice`).
   */
  segmentTaken(segment: number): void {
    const { onDevice } = this;
    if (onDevice === undefined) return;
    for (const bySegment of this.letGo.values()) {
      const rows = bySegment.get(segment);
      if (rows === undefined) continue;
      bySegment.delete(segment);
      for (const row of rows) {
        if ((this.size[row] ?? 0) !== UNREAD) continue; // read already (its other segment was taken)
        try {
          this.holdRead(row, this.readFromDevice(row, onDevice));
        } catch {
          continue; // damaged, or the device failed: the read that needs it says so
        }
        this.releaseFromSlab(row); // held by no tree: its slab goes as a slab of the open's does
      }
    }
  }

  /** A checkpoint begins (its build); pass the result to `checkpointDone` when it completes. */
  checkpointStarted(): number {
    return ++this.checkpointsBegun;
  }

  /** The checkpoint `begun` completed: slabs released before it began are dropped. */
  checkpointDone(begun: number): void {
    // Rows let go before it began are read by nothing any more: their segments may be rewritten.
    for (const since of this.letGo.keys()) if (since < begun) this.letGo.delete(since);
    if (this.pending.length === 0) return;
    const keep: { slab: number; begun: number }[] = [];
    for (const p of this.pending) {
      if (p.begun < begun) this.slabs[p.slab] = undefined;
      else keep.push(p);
    }
    this.pending = keep;
  }
}

function gone(): StatefsError {
  return StatefsError.EIO('value of an entry loaded at open is no longer held', { op: 'read' });
}
