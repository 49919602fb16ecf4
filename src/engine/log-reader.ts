import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { Op } from '../format/opcodes.js';
import { RECORD_MAGIC, decodeRecord, type DecodedRecord, type RecordFault } from '../format/record.js';
import { SEGMENT_RECORD_LENGTH, SYNC_RECORD_LENGTH, decodeSegmentHeader, decodeSync, type SegmentHeader } from '../format/segment.js';
import { segmentOffset, type Superblock } from '../format/superblock.js';
import type { Extent, LogTail } from './journal-writer.js';

export interface LoggedRecord {
  record: DecodedRecord;
  extent: Extent;
}

/** Where replay stopped short of the end of the head segment (crash residue). */
export interface TornTail {
  /** Absolute byte offset in the image of the first byte that was discarded. */
  offset: number;
  fault: RecordFault | 'unsealed';
  /**
   * The discarded batch's own SYNC survived past the damage (the device kept a later part of the
   * write in flight but not an earlier one): the log must go on in a fresh segment, so that SYNC
   * can never seal anything later.
   */
  sealedPast?: true;
}

export interface LogScan {
  tail: LogTail;
  torn: TornTail | undefined;
  /** Segments the log runs through, in log order, from the checkpoint's segment to the head. */
  chain: number[];
  /** Highest segment sequence number seen in any header (the next one must be higher). */
  maxSegSeq: number;
  /** Complete batches replayed. */
  batches: number;
  records: number;
  /** Journal bytes from the checkpoint to the tail (what the next open will replay again). */
  bytes: number;
  /** Per segment, 1 where it holds no valid segment header: never written by the log, as far as the image shows. */
  unwritten: Uint8Array;
}

/**
 * Reads the log from the superblock's checkpoint position to its end, calling `onBatch` for each
 * complete batch (records up to a SYNC that names this segment's sequence and the batch start).
 *
 * A segment followed by another in the log ends exactly where the successor's header says; any
 * bad record before that point is damage (`EINTEGRITY` with its offset). In the head segment the
 * first bad or unsealed batch ends the log, unless a valid SYNC of this segment's life follows it:
 * then bytes written after the damage exist and the damage is not a torn tail (`EINTEGRITY`).
 */
export async function scanLog(
  device: BlockDevice,
  sb: Superblock,
  onBatch: (records: LoggedRecord[]) => void,
): Promise<LogScan> {
  const headers = await readSegmentHeaders(device, sb);
  let maxSegSeq = 0;
  for (const h of headers) if (h !== undefined) maxSegSeq = Math.max(maxSegSeq, h.segSeq);
  const first = headers[sb.ckptSegment];
  if (first?.segSeq !== sb.ckptSegSeq) {
    throw StatefsError.EINTEGRITY(`segment ${sb.ckptSegment} does not carry the checkpoint's sequence ${sb.ckptSegSeq}`, {
      op: 'open',
      offset: segmentOffset(sb.ckptSegment, sb.segmentSize),
    });
  }
  const successor = (seg: number, seq: number): { index: number; header: SegmentHeader } | undefined => {
    for (let i = 0; i < headers.length; i++) {
      const h = headers[i];
      if (h?.segSeq === seq + 1 && h.prevIndex === seg) return { index: i, header: h };
    }
    return undefined;
  };

  const chain: number[] = [];
  let segment = sb.ckptSegment;
  let segSeq = sb.ckptSegSeq;
  let start = sb.ckptOffset;
  let batches = 0;
  let records = 0;
  let bytes = 0;
  for (;;) {
    chain.push(segment);
    const base = segmentOffset(segment, sb.segmentSize);
    const buf = await device.read(base, sb.segmentSize);
    const next = successor(segment, segSeq);
    const end = next?.header.prevEnd ?? sb.segmentSize;
    let pos = start;
    if (start === 0) {
      // The segment header stands outside every batch (scanLog only gets here for a valid header).
      const h = decodeRecord(buf, 0, end);
      pos = h.ok ? h.record.length : 0;
    }
    let batchStart = pos;
    let batch: LoggedRecord[] = [];
    let fault: RecordFault | 'unsealed' | 'stale' | undefined;
    while (pos < end) {
      const r = decodeRecord(buf, pos, end);
      if (!r.ok) {
        fault = r.fault;
        break;
      }
      if (r.record.opcode === Op.SYNC) {
        const mark = decodeSync(r.record.value);
        if (mark?.segSeq !== segSeq || mark.batchStart !== batchStart) {
          // A SYNC of another life of this segment: old bytes from before it was reused.
          fault = mark !== undefined && mark.segSeq !== segSeq ? 'stale' : 'unsealed';
          break;
        }
        pos += r.record.length;
        onBatch(batch);
        batches++;
        records += batch.length;
        batch = [];
        batchStart = pos;
        continue;
      }
      batch.push({ record: r.record, extent: { segment, offset: pos, length: r.record.length } });
      pos += r.record.length;
    }
    if (next !== undefined) {
      if (fault !== undefined || batch.length > 0 || pos !== end) {
        const at = batch.length > 0 && fault === undefined ? batchStart : pos;
        throw StatefsError.EINTEGRITY(`damaged record in segment ${segment} (${fault ?? 'unsealed batch'})`, { op: 'open', offset: base + at });
      }
      bytes += end - start;
      segment = next.index;
      segSeq = next.header.segSeq;
      start = 0;
      continue;
    }
    // Head segment: decide between a clean end, a torn tail and damage.
    // Zeros, or the old bytes of a reused segment: records ending in another life's SYNC, or
    // (where this life's end falls inside one of the old records, as it mostly does) bytes that
    // are no record, with an earlier life's SYNC after them. Each write holds one batch and
    // starts with its first record's header, so a clean end followed by no header is a write
    // that never began, or whose start was lost with the rest unacknowledged: nothing to report.
    const clean =
      (fault === 'zero' && batch.length === 0) || fault === 'stale' || (fault === 'magic' && batch.length === 0 && findOlderLifeSync(buf, pos + 1, segSeq) !== undefined);
    let torn: TornTail | undefined;
    if (pos < sb.segmentSize) {
      // Even after zeros: the journal writes each segment's bytes in order with one write per
      // flush, so a valid batch of this segment's life past the end means the end is damage.
      const later = findLaterSync(buf, pos + 1, segSeq);
      // One exception: the only SYNC of this life past the stop is the one that seals the batch
      // the stop is in. Each write holds one batch, so that is the write in flight at a crash,
      // kept out of order (§6.2): a torn tail, though the batch's own SYNC survived.
      const ownSync = later !== undefined && decodeSyncAt(buf, later)?.batchStart === batchStart && findLaterSync(buf, later + 1, segSeq) === undefined;
      if (later !== undefined && !ownSync) {
        throw StatefsError.EINTEGRITY(`damaged record in segment ${segment} followed by valid records (a SYNC at ${base + later})`, {
          op: 'open',
          offset: base + pos,
        });
      }
      const faultName = fault === undefined || fault === 'stale' ? 'unsealed' : fault;
      if (ownSync) torn = { offset: base + batchStart, fault: faultName, sealedPast: true };
      else if (!clean) torn = { offset: base + batchStart, fault: faultName };
    }
    bytes += batchStart - start;
    // Headers are flushed in log order, each before any later one is written: a valid header
    // numbered past the head means the log went on and a link of it is damaged.
    const beyond = headers.findIndex((h) => h !== undefined && h.segSeq > segSeq);
    if (beyond !== -1) {
      throw StatefsError.EINTEGRITY(`segment ${beyond} continues the log past segment ${segment}, but the link to it is damaged`, {
        op: 'open',
        offset: segmentOffset(beyond, sb.segmentSize),
      });
    }
    const unwritten = new Uint8Array(headers.length);
    headers.forEach((h, i) => {
      if (h === undefined) unwritten[i] = 1;
    });
    return { tail: { segment, segSeq, offset: batchStart }, torn, chain, maxSegSeq, batches, records, bytes, unwritten };
  }
}

/** Offset of the first valid SYNC record of segment life `segSeq` at or after `from`, if any. */
function findLaterSync(buf: Uint8Array, from: number, segSeq: number): number | undefined {
  return findSync(buf, from, (seq) => seq === segSeq);
}

/** Offset of the first valid SYNC record of an earlier life of the segment (below `segSeq`) at or after `from`, if any. */
function findOlderLifeSync(buf: Uint8Array, from: number, segSeq: number): number | undefined {
  return findSync(buf, from, (seq) => seq < segSeq);
}

function findSync(buf: Uint8Array, from: number, ofLife: (segSeq: number) => boolean): number | undefined {
  const m0 = RECORD_MAGIC & 0xff;
  for (let at = from; at + SYNC_RECORD_LENGTH <= buf.length; at++) {
    if (buf[at] !== m0) continue;
    const r = decodeRecord(buf, at);
    const mark = r.ok && r.record.opcode === Op.SYNC ? decodeSync(r.record.value) : undefined;
    if (mark !== undefined && ofLife(mark.segSeq)) return at;
  }
  return undefined;
}

function decodeSyncAt(buf: Uint8Array, at: number): ReturnType<typeof decodeSync> {
  const r = decodeRecord(buf, at);
  return r.ok ? decodeSync(r.record.value) : undefined;
}

const HEADER_READS_IN_FLIGHT = 16;

/** The valid SEGMENT header of every segment (undefined where there is none). */
export async function readSegmentHeaders(device: BlockDevice, sb: Superblock): Promise<(SegmentHeader | undefined)[]> {
  const out: (SegmentHeader | undefined)[] = [];
  const header = async (i: number): Promise<SegmentHeader | undefined> => {
    const r = decodeRecord(await device.read(segmentOffset(i, sb.segmentSize), SEGMENT_RECORD_LENGTH), 0);
    const h = r.ok && r.record.opcode === Op.SEGMENT ? decodeSegmentHeader(r.record.value) : undefined;
    return h?.segIndex === i ? h : undefined;
  };
  // A few reads in flight at a time, not one trip to the thread pool and back per segment.
  for (let from = 0; from < sb.segmentCount; from += HEADER_READS_IN_FLIGHT) {
    const batch: Promise<SegmentHeader | undefined>[] = [];
    for (let i = from; i < Math.min(sb.segmentCount, from + HEADER_READS_IN_FLIGHT); i++) batch.push(header(i));
    out.push(...(await Promise.all(batch)));
  }
  return out;
}
