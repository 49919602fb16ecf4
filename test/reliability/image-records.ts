import { Op } from '../../src/format/opcodes.js';
import { RECORD_HEADER, decodeRecord, encodeRecord } from '../../src/format/record.js';
import { decodeSegmentHeader, decodeSync, encodeSync } from '../../src/format/segment.js';
import { decodeSuperblock, superblockOffset, SUPERBLOCK_LENGTH, segmentOffset, type Superblock } from '../../src/format/superblock.js';
import { PAYLOAD_PUT, encodePayload, encodeTxnMark } from '../../src/format/txn-records.js';

/** A record found in an image: absolute offset, opcode, lengths, and its segment's life. */
export interface FoundRecord {
  at: number;
  opcode: number;
  keyLength: number;
  valueLength: number;
  length: number;
  segment: number;
  segSeq: number;
}

/** The superblock an open would choose (the valid slot with the highest generation). */
export function currentSuperblock(img: Uint8Array): Superblock {
  const slots = ([0, 1] as const).map((slot) => decodeSuperblock(img.subarray(superblockOffset(slot, img.length), superblockOffset(slot, img.length) + SUPERBLOCK_LENGTH), img.length));
  let best: Superblock | undefined;
  for (const s of slots) if (s.ok && (best === undefined || s.sb.generation > best.generation)) best = s.sb;
  if (best === undefined) throw new Error('no valid superblock');
  return best;
}

/**
 * Every record of the current life of every segment that has a valid header, in log order
 * (by `seg_seq`, then offset): each segment is read from its header until a record does not
 * decode or a SYNC of another life appears.
 */
export function recordsOf(img: Uint8Array): FoundRecord[] {
  const sb = currentSuperblock(img);
  const out: FoundRecord[] = [];
  for (let segment = 0; segment < sb.segmentCount; segment++) {
    const base = segmentOffset(segment, sb.segmentSize);
    const seg = img.subarray(base, base + sb.segmentSize);
    const head = decodeRecord(seg, 0);
    if (!head.ok || head.record.opcode !== Op.SEGMENT) continue;
    const header = decodeSegmentHeader(head.record.value);
    if (header?.segIndex !== segment) continue;
    for (let at = 0; at < seg.length; ) {
      const r = decodeRecord(seg, at);
      if (!r.ok) break;
      const { opcode, key, value } = r.record;
      if (opcode === Op.SYNC && decodeSync(value)?.segSeq !== header.segSeq) break;
      const length = RECORD_HEADER + key.length + value.length + 4;
      out.push({ at: base + at, opcode, keyLength: key.length, valueLength: value.length, length, segment, segSeq: header.segSeq });
      at += length;
    }
  }
  return out.sort((a, b) => a.segSeq - b.segSeq || a.at - b.at);
}

/**
 * Append a sealed batch holding a transaction's PREPARE and one PAYLOAD and no COMMIT (what a
 * crash between the two parts of a transaction spanning a segment roll leaves) at the log's end.
 */
export function appendOrphan(img: Uint8Array, subject: string, txnId: number): void {
  const records = recordsOf(img);
  const last = records.at(-1);
  if (last === undefined) throw new Error('empty log');
  const sb = currentSuperblock(img);
  const start = last.at + last.length - segmentOffset(last.segment, sb.segmentSize);
  const key = new TextEncoder().encode(subject);
  const payloadKey = new TextEncoder().encode(`${subject}\0/state/orphan`);
  const payload = encodePayload({ txnId, kind: PAYLOAD_PUT, index: 0, count: 1, data: new Uint8Array([0x78]) });
  const body = [encodeRecord(Op.PREPARE, key, encodeTxnMark({ txnId, opCount: 1 })), encodeRecord(Op.PAYLOAD, payloadKey, payload)];
  let at = last.at + last.length;
  for (const r of body) {
    img.set(r, at);
    at += r.length;
  }
  img.set(encodeRecord(Op.SYNC, new Uint8Array(0), encodeSync({ segSeq: last.segSeq, batchStart: start })), at);
}
