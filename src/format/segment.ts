import { getU64, putU32, putU64, setU64, view } from './bytes.js';
import { RECORD_OVERHEAD } from './record.js';

/*
 * SEGMENT record (opcode 0x20): the first record of every segment, key empty, value:
 *
 *   0   8  seg_seq     position of this segment in the log (1, 2, 3, ...); never reused
 *   8   4  seg_index   this segment's index (guards against a misplaced copy)
 *   12  4  prev_index  the segment before it in the log (0xFFFFFFFF for the first)
 *   16  4  prev_end    byte offset where the log ends in the previous segment
 *
 * SYNC record (opcode 0x14): the last record of every flush batch, key empty, value:
 *
 *   0   8  seg_seq      seg_seq of the segment the batch is in
 *   8   4  batch_start  byte offset of the batch's first record in the segment
 *
 * Replay applies a batch only when it reaches its SYNC; a SYNC from an earlier life of a reused
 * segment carries another seg_seq and is ignored.
 */
export const NO_SEGMENT = 0xffffffff;
export const SEGMENT_VALUE_LENGTH = 20;
export const SEGMENT_RECORD_LENGTH = RECORD_OVERHEAD + SEGMENT_VALUE_LENGTH;
export const SYNC_VALUE_LENGTH = 12;
export const SYNC_RECORD_LENGTH = RECORD_OVERHEAD + SYNC_VALUE_LENGTH;

/** The longest record a segment of `segmentSize` bytes holds: all of it but its header and one batch's SYNC. */
export function maxRecordLength(segmentSize: number): number {
  return segmentSize - SEGMENT_RECORD_LENGTH - SYNC_RECORD_LENGTH;
}

export interface SegmentHeader {
  segSeq: number;
  segIndex: number;
  prevIndex: number;
  prevEnd: number;
}

export function encodeSegmentHeader(h: SegmentHeader): Uint8Array {
  const out = new Uint8Array(SEGMENT_VALUE_LENGTH);
  const v = view(out);
  setU64(v, 0, h.segSeq);
  v.setUint32(8, h.segIndex, true);
  v.setUint32(12, h.prevIndex, true);
  v.setUint32(16, h.prevEnd, true);
  return out;
}

export function decodeSegmentHeader(value: Uint8Array): SegmentHeader | undefined {
  if (value.length !== SEGMENT_VALUE_LENGTH) return undefined;
  const v = view(value);
  return { segSeq: getU64(v, 0), segIndex: v.getUint32(8, true), prevIndex: v.getUint32(12, true), prevEnd: v.getUint32(16, true) };
}

export interface SyncMark {
  segSeq: number;
  batchStart: number;
}

export function encodeSync(s: SyncMark): Uint8Array {
  // Byte stores: one SYNC per write round, so a lone writer pays this on every put.
  const out = new Uint8Array(SYNC_VALUE_LENGTH);
  putU64(out, 0, s.segSeq);
  putU32(out, 8, s.batchStart);
  return out;
}

export function decodeSync(value: Uint8Array): SyncMark | undefined {
  if (value.length !== SYNC_VALUE_LENGTH) return undefined;
  const v = view(value);
  return { segSeq: getU64(v, 0), batchStart: v.getUint32(8, true) };
}
