import type { Extent } from './journal-writer.js';
import { copyInto, copyOut, copyOutText, copyTextInto } from './value-pool.js';

/** The segment of an entry that has no record on disk yet (a legacy v1 value before the upgrade). */
const NO_RECORD = -1;
const NO_EXTENTS: readonly Extent[] = [];

/**
 * One stored value written since the store opened (or replayed from the log past the
 * checkpoint) as the index holds it: one object per key. Entries loaded from the checkpoint at
 * open are rows of the store's `EntryTable` instead (`EntryRef`), so that a large store does
 * not open into a million objects.
 *
 * - the value is a binary string (one char per byte: a put's value, `ofText`), or `valueLength`
 *   bytes at `start` in `bytes`, a buffer usually shared with other values (a batch's), so there
 *   is no view per value: `copyValue` copies straight out of it;
 * - the first record holding it is kept as three numbers; a value in several records (a
 *   transaction value in several PAYLOAD chunks) keeps the others in `moreRecords`.
 *
 * Entries are shared by the working tree, committed trees, snapshots and mounts, so what an
 * entry holds never changes once it is in a tree. One change says where the value is, not what
 * it is, and every holder must see it: `moveTo` (GC or the v1 upgrade wrote the value's record
 * elsewhere).
 */
export class Entry {
  private readonly bytes: Uint8Array | string;
  private readonly start: number;
  private readonly size: number;
  private seg: number;
  private off: number;
  private len: number;
  /** Over 0: the first extent is a slice of a PUTRUN record starting this many bytes into it (`Extent.lead`). */
  private lead: number;
  private more: readonly Extent[];

  private constructor(bytes: Uint8Array | string, start: number, size: number, segment: number, offset: number, length: number, more: readonly Extent[], lead = 0) {
    this.bytes = bytes;
    this.start = start;
    this.size = size;
    this.seg = segment;
    this.off = offset;
    this.len = length;
    this.lead = lead;
    this.more = more;
  }

  /** `text` (a binary string: one char per byte), held in the records `extents`. */
  static ofText(text: string, extents: readonly Extent[]): Entry {
    const first = extents[0];
    if (first === undefined) return new Entry(text, 0, text.length, NO_RECORD, 0, 0, NO_EXTENTS);
    return new Entry(text, 0, text.length, first.segment, first.offset, first.length, extents.length === 1 ? NO_EXTENTS : extents.slice(1));
  }

  /** The value at `start..start+length` of `bytes` (which must not change), held in one record or run slice (`lead`). */
  static inRecord(bytes: Uint8Array, start: number, length: number, segment: number, offset: number, recordLength: number, lead = 0): Entry {
    return new Entry(bytes, start, length, segment, offset, recordLength, NO_EXTENTS, lead);
  }

  /** `value` (which must not change), held in the records `extents` (none: not on disk yet). */
  static of(value: Uint8Array, extents: readonly Extent[]): Entry {
    const first = extents[0];
    if (first === undefined) return new Entry(value, 0, value.length, NO_RECORD, 0, 0, NO_EXTENTS);
    return new Entry(value, 0, value.length, first.segment, first.offset, first.length, extents.length === 1 ? NO_EXTENTS : extents.slice(1));
  }

  /** The value was written to the record `to` (the only record holding it from now on). */
  moveTo(to: Extent): void {
    this.seg = to.segment;
    this.off = to.offset;
    this.len = to.length;
    this.lead = to.lead ?? 0;
    this.more = NO_EXTENTS;
  }

  get valueLength(): number {
    return this.size;
  }

  /** A view of the value (the store's own bytes: never hand it out, never change it). */
  get value(): Uint8Array {
    const bytes = this.bytes;
    if (typeof bytes === 'string') return Buffer.from(bytes, 'latin1'); // a copy: for the colder paths
    return bytes.subarray(this.start, this.start + this.valueLength);
  }

  /** A copy of the value that the caller owns (the hot read path: no intermediate view). */
  copyValue(): Uint8Array {
    const bytes = this.bytes;
    return typeof bytes === 'string' ? copyOutText(bytes) : copyOut(bytes, this.start, this.valueLength);
  }

  /** Copy the value to the start of `target` if it fits; returns its length either way. */
  copyValueInto(target: Uint8Array): number {
    const length = this.valueLength;
    if (length > target.length) return length;
    const bytes = this.bytes;
    if (typeof bytes === 'string') copyTextInto(bytes, target);
    else copyInto(bytes, this.start, length, target);
    return length;
  }

  /** Whether both entries hold the same value bytes. */
  sameValue(other: Entry): boolean {
    if (typeof this.bytes === 'string' && typeof other.bytes === 'string') return this.bytes === other.bytes;
    return this.valueLength === other.valueLength && Buffer.compare(this.value, other.value) === 0;
  }

  /** Segment of the first record holding the value (`-1`: none yet). */
  get segment(): number {
    return this.seg;
  }

  /** Byte offset of the first record in its segment. */
  get offset(): number {
    return this.off;
  }

  /** Length of the first record, framing included (0: none yet). */
  get recordLength(): number {
    return this.len;
  }

  /** Where the first extent starts in its PUTRUN record (0: at the record's start). */
  get recordLead(): number {
    return this.lead;
  }

  /** Records after the first (a value in several transaction chunks); usually none. */
  get moreRecords(): readonly Extent[] {
    return this.more;
  }

  /** Every record holding the value, in order (a new array: for the colder paths). */
  get extents(): Extent[] {
    if (this.seg === NO_RECORD) return [];
    const first: Extent = this.lead === 0 ? { segment: this.seg, offset: this.off, length: this.len } : { segment: this.seg, offset: this.off, length: this.len, lead: this.lead };
    return [first, ...this.more];
  }

  /** Whether a record holding the value lies in one of `segments`. */
  hasRecordIn(segments: ReadonlySet<number>): boolean {
    if (this.seg === NO_RECORD) return false;
    if (segments.has(this.seg)) return true;
    for (const x of this.more) if (segments.has(x.segment)) return true;
    return false;
  }

  /** Bytes the entry occupies on disk (framing included). */
  get diskBytes(): number {
    let n = this.len;
    for (const x of this.more) n += x.length;
    return n;
  }
}
