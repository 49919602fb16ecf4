import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { Op } from '../format/opcodes.js';
import { RUN_RECORD_MAX, runEntryAt, runValueStart } from '../format/put-run.js';
import { claimedRecordLength, decodeRecord, putValueStart, type DecodeResult, type DecodedRecord } from '../format/record.js';
import { decodeReloc } from '../format/meta-records.js';
import { segmentOffset } from '../format/superblock.js';
import { PAYLOAD_PUT, decodePayload } from '../format/txn-records.js';
import type { EntryRef, EntryTable } from './entry-table.js';
import type { Extent } from './journal-writer.js';

/** The value bytes a PUT or a transaction's PAYLOAD record holds, or undefined for any other record. */
export function valueOfRecord(record: DecodedRecord): Uint8Array | undefined {
  if (record.opcode === Op.PUT) return record.value;
  if (record.opcode === Op.RELOC) return decodeReloc(record.value)?.value;
  if (record.opcode !== Op.PAYLOAD) return undefined;
  const chunk = decodePayload(record.value);
  return chunk?.kind === PAYLOAD_PUT ? chunk.data : undefined;
}

/**
 * The value the extent `x` names in `record`: a PUT's, RELOC's or PAYLOAD's value held whole, or
 * the value of the PUTRUN entry whose slice `x` is. Undefined if the record holds no such value.
 */
function valueInRecord(record: DecodedRecord, x: Extent): Uint8Array | undefined {
  const lead = x.lead ?? 0;
  if (record.opcode === Op.PUTRUN) return runEntryAt(record, lead, x.length)?.value;
  return lead === 0 && record.length === x.length ? valueOfRecord(record) : undefined;
}

/**
 * The record holding the extent `x`, read from the device: one read of its slice and at least
 * `RUN_RECORD_MAX` bytes (a slice of a PUTRUN is shorter than its record), a second one only for
 * a longer record.
 */
async function readRecordOf(device: BlockDevice, segmentSize: number, x: Extent): Promise<{ at: number; r: DecodeResult }> {
  const lead = x.lead ?? 0;
  const at = segmentOffset(x.segment, segmentSize) + x.offset - lead;
  if (lead > x.offset) return { at, r: { ok: false, fault: 'truncated' } }; // a lead past its segment's start: damage
  let buf = await device.read(at, firstReadLength(device.size, at, lead, x.length));
  const whole = claimedRecordLength(buf, 0);
  if (whole !== undefined && whole > buf.length && at + whole <= device.size) buf = await device.read(at, whole);
  return { at, r: decodeRecord(buf, 0) };
}

/** Bytes to read first for a slice of `length` bytes `lead` bytes into a record at `at`: the slice, and at least `RUN_RECORD_MAX`. */
function firstReadLength(deviceSize: number, at: number, lead: number, length: number): number {
  return Math.max(lead + length, Math.min(RUN_RECORD_MAX, deviceSize - at));
}

/** A device that can read on the calling thread. */
export type SyncReadable = Pick<BlockDevice, 'size'> & Required<Pick<BlockDevice, 'readSync'>>;

/**
 * Reads values from their records on the device on the calling thread, each record's CRC
 * checked, through one buffer reused by every read: a read costs a `pread` and no allocation.
 * For the values a writable store loaded from its checkpoint and reads when asked for
 * (`EntryTable.readOnDemand`).
 */
export class SyncValueReader {
  private buf = new Uint8Array(4096);

  constructor(
    private readonly device: SyncReadable,
    private readonly segmentSize: number,
  ) {}

  /**
   * The value a record (or a PUTRUN slice: `lead` bytes into its record) holds, as a view of this
   * reader's buffer that its next read overwrites. A damaged record is `EINTEGRITY`.
   */
  readOne(segment: number, offset: number, length: number, lead: number): Uint8Array {
    const at = segmentOffset(segment, this.segmentSize) + offset - lead;
    const size = this.device.size;
    let r: DecodeResult = { ok: false, fault: 'truncated' }; // a lead past its segment's start: damage
    if (lead <= offset && at < size) {
      let n = firstReadLength(size, at, lead, length);
      this.readAt(at, n);
      // The usual cases without decoding the record into objects: a whole PUT, a PUTRUN's slice.
      const put = lead === 0 ? putValueStart(this.buf, 0, length) : -1;
      if (put >= 0) return this.buf.subarray(put, length - 4);
      const whole = claimedRecordLength(this.buf.subarray(0, n), 0);
      if (whole !== undefined && whole > n && at + whole <= size) this.readAt(at, (n = whole));
      r = decodeRecord(this.buf, 0, n);
      if (r.ok && r.record.opcode === Op.PUTRUN) {
        const start = runValueStart(this.buf, 0, lead, length);
        const end = lead + length; // a run's last slice takes its CRC too
        if (start >= 0) return this.buf.subarray(start, end === r.record.length ? end - 4 : end);
      }
    }
    const value = r.ok ? valueInRecord(r.record, lead === 0 ? { segment, offset, length } : { segment, offset, length, lead }) : undefined;
    if (value === undefined) throw StatefsError.EINTEGRITY(`record holding a value is damaged (${r.ok ? 'wrong kind' : r.fault})`, { op: 'read', offset: at });
    return value;
  }

  /** The value held by several records (a transaction's chunks), in a new buffer. */
  readAll(extents: readonly Extent[]): Uint8Array {
    const parts = extents.map((x) => this.readOne(x.segment, x.offset, x.length, x.lead ?? 0).slice());
    return new Uint8Array(Buffer.concat(parts));
  }

  private readAt(at: number, length: number): void {
    if (this.buf.length < length) this.buf = new Uint8Array(Math.max(length, 2 * this.buf.length));
    this.device.readSync(at, this.buf.subarray(0, length));
  }
}

/** Read a value from its records (`extents`) on the device, checking each record's CRC. */
export async function readEntryValue(device: BlockDevice, segmentSize: number, extents: readonly Extent[]): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (const x of extents) {
    const { at, r } = await readRecordOf(device, segmentSize, x);
    const value = r.ok ? valueInRecord(r.record, x) : undefined;
    if (value === undefined) throw StatefsError.EINTEGRITY(`record holding a value is damaged (${r.ok ? 'wrong kind' : r.fault})`, { op: 'read', offset: at });
    parts.push(value);
  }
  return parts.length === 1 && parts[0] !== undefined ? parts[0].slice() : new Uint8Array(Buffer.concat(parts));
}

/** What reading a value from the device needs to know while the store runs: GC may move its records and reuse their segments. */
export interface MovingLog {
  /** Whether the record at `offset` of `segment` is appended but not durable yet. */
  pending(segment: number, offset: number): boolean;
  /** Resolves once everything appended so far is durable. */
  drain(): Promise<void>;
  /**
   * A mark of `segment`'s current life, taken `before` and `after` a read of it, which changes
   * when the log takes it (it is rewritten only after that): a read between two equal marks read
   * that life. May throw instead (a read-only store whose image moved on since its open: it checks
   * only `after`, against the life its open saw, so its `before` mark is free).
   */
  mark(segment: number, when: 'before' | 'after'): Promise<number>;
}

/**
 * Read an entry's value from the device in a running store. GC may move the records meanwhile:
 * a moved entry's new record may not be durable yet (it is waited for), and a segment it left may
 * be taken and rewritten while the read is in flight (the read is then made again from where the
 * entry is now). So a move is never taken for damage, and `EINTEGRITY` means a damaged record
 * where the entry still is.
 */
export async function readMovingEntryValue(device: BlockDevice, segmentSize: number, table: EntryTable, entry: EntryRef, log: MovingLog): Promise<Uint8Array> {
  for (;;) {
    const extents = table.extents(entry);
    if (extents.some((x) => log.pending(x.segment, x.offset))) {
      await log.drain();
      continue;
    }
    const before = await marks(log, extents, 'before');
    const read = await readEntryValue(device, segmentSize, extents).then(
      (value) => ({ value }),
      (err: unknown) => ({ err }),
    );
    // Segments are written only after they are taken: if none of these was, the bytes read are the records the extents named.
    const after = await marks(log, extents, 'after');
    if (after.every((m, i) => m === before[i])) {
      if ('value' in read) return read.value;
      throw read.err;
    }
  }
}

function marks(log: MovingLog, extents: readonly Extent[], when: 'before' | 'after'): Promise<number[]> {
  return Promise.all(extents.map((x) => log.mark(x.segment, when)));
}

/**
 * Read the values of many entries with one read per segment (not one per record), in segment
 * order. `onValue` gets each entry's value, or the `EINTEGRITY` error of a damaged record.
 */
export async function readEntriesBySegment(
  device: BlockDevice,
  segmentSize: number,
  table: EntryTable,
  entries: Iterable<EntryRef>,
  onValue: (entry: EntryRef, value: Uint8Array | StatefsError) => void,
): Promise<void> {
  const bySegment = new Map<number, EntryRef[]>();
  for (const e of entries) {
    if (table.recordLength(e) === 0) continue;
    const segment = table.segment(e);
    let list = bySegment.get(segment);
    if (list === undefined) bySegment.set(segment, (list = []));
    list.push(e);
  }
  for (const segment of [...bySegment.keys()].sort((a, b) => a - b)) {
    const base = segmentOffset(segment, segmentSize);
    const buf = await device.read(base, segmentSize);
    for (const e of bySegment.get(segment) ?? []) {
      const parts: Uint8Array[] = [];
      let failure: StatefsError | undefined;
      for (const x of table.extents(e)) {
        // Chunks of one transaction value may sit in the next segment: read those directly.
        const start = x.offset - (x.lead ?? 0);
        const r = x.segment === segment ? decodeRecord(buf, start) : (await readRecordOf(device, segmentSize, x)).r;
        const value = r.ok ? valueInRecord(r.record, x) : undefined;
        if (value === undefined) {
          failure = StatefsError.EINTEGRITY(`record holding a value is damaged (${r.ok ? 'wrong kind' : r.fault})`, { op: 'read', offset: segmentOffset(x.segment, segmentSize) + start });
          break;
        }
        parts.push(value);
      }
      onValue(e, failure ?? (parts.length === 1 && parts[0] !== undefined ? parts[0] : new Uint8Array(Buffer.concat(parts))));
    }
  }
}
