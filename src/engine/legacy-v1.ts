import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { Op } from '../format/opcodes.js';
import { MAX_RECORD_VALUE, RECORD_MAGIC, decodeRecord, type DecodedRecord, type RecordFault } from '../format/record.js';
import { SEGMENT_RECORD_LENGTH } from '../format/segment.js';
import { SUPERBLOCK_SLOT, segmentOffset } from '../format/superblock.js';
import { BTree } from './btree.js';
import { Entry } from './entry.js';
import type { EntryRef } from './entry-table.js';
import { defaultSegmentSize } from './mkfs.js';
import type { Trees } from './keyspace.js';
import { KEY_ROOT } from './names.js';

/*
 * Legacy v1 images: a device of 512-byte blocks holding v1 records back to back from byte 0 (PUT
 * and DELETE with keys `/state/...`, and the no-op CHECKPOINT), no superblock, the rest zero. The
 * journal ends at the first position that does not hold a whole valid record. A valid v1 record
 * after that point means damage, not a torn tail (`EINTEGRITY`).
 */

export interface LegacyImage {
  /** The v1 state, under the legacy subject, with values in memory and no v3 extents yet. */
  index: Trees;
  /** Byte offset where the v1 journal ends. */
  end: number;
  /** Why the record at the end is not one, when bytes other than zero follow the end: a torn last record (crash residue), reported. */
  tornTail: RecordFault | undefined;
  records: number;
  /** First v3 segment that lies wholly past the v1 journal: the upgrade writes from here. */
  firstSegment: number;
  segmentSize: number;
  segmentCount: number;
}

const WINDOW = 4 * 1024 * 1024;
/** Bytes looked at past the end of a v1 journal for the rest of a torn record: its header. */
const MAX_V1_HEADER = 11;
const MAX_V1_RECORD = 15 + 0xffff + MAX_RECORD_VALUE;

export async function replayLegacy(device: BlockDevice, subject: string): Promise<LegacyImage> {
  const tree = new BTree<string, EntryRef>();
  let windowStart = 0;
  let window: Uint8Array = new Uint8Array(0);
  const load = async (at: number): Promise<void> => {
    windowStart = at;
    window = await device.read(at, Math.min(WINDOW + MAX_V1_RECORD, device.size - at));
  };
  await load(0);
  let pos = 0;
  let records = 0;
  let endFault: RecordFault = 'zero';
  for (;;) {
    if (pos - windowStart > WINDOW) await load(pos);
    const r = decodeRecord(window, pos - windowStart);
    endFault = r.ok ? 'magic' : r.fault; // a record of a kind v1 does not have ends it as a bad magic would
    if (!r.ok || !isV1(r.record)) break;
    const bin = Buffer.from(r.record.key).toString('latin1');
    if (r.record.opcode === Op.PUT) tree.set(bin, Entry.of(r.record.value.slice(), []));
    else if (r.record.opcode === Op.DELETE) tree.delete(bin);
    pos += r.record.length;
    records++;
  }
  const segmentSize = defaultSegmentSize(device.size);
  const segmentCount = Math.floor((device.size - 2 * SUPERBLOCK_SLOT) / segmentSize);
  let firstSegment = 0;
  while (segmentOffset(firstSegment, segmentSize) < pos) firstSegment++;
  // An upgrade cut short before its superblock wrote a v3 log from `firstSegment` on (the rest of
  // a v1 image is zero, and only an intact image is upgraded): its records' values may hold any
  // bytes, a whole valid v1 record too, so they are stepped over record by record, not searched
  // (a value copy of a journal entry made such a crash an EINTEGRITY image; review). Past the
  // last of them the search goes on: damage followed by valid v1 records is found wherever the
  // bytes after the damage happen to look like a segment header (a second review).
  const upgradeAt = segmentOffset(firstSegment, segmentSize);
  const later = (await startsV3Segment(device, upgradeAt))
    ? ((await findLaterV1Record(device, pos + 1, upgradeAt)) ?? (await findV1AmongV3(device, firstSegment, segmentSize, segmentCount)))
    : await findLaterV1Record(device, pos + 1, device.size);
  if (later !== undefined) {
    throw StatefsError.EINTEGRITY(`damaged v1 record followed by a valid one at ${later}`, { op: 'open', offset: pos });
  }
  // The rest of a v1 image is zero: anything else right at the end is a record cut short.
  const after = pos >= upgradeAt ? new Uint8Array(0) : await device.read(pos, Math.min(MAX_V1_HEADER, upgradeAt - pos));
  const tornTail = after.some((b) => b !== 0) ? endFault : undefined;
  return { index: new Map([[subject, tree]]), end: pos, tornTail, records, firstSegment, segmentSize, segmentCount };
}

/** A v1 record: a v1 opcode and a key under /state/ (v3 records written by an upgrade have a NUL in theirs). */
function isV1(r: DecodedRecord): boolean {
  if (r.opcode !== Op.PUT && r.opcode !== Op.DELETE && r.opcode !== Op.CHECKPOINT) return false;
  if (r.opcode === Op.CHECKPOINT) return true;
  const key = Buffer.from(r.key).toString('latin1');
  return key.startsWith(KEY_ROOT) && !key.includes('\0');
}

/** Whether a v3 segment header (a SEGMENT record) starts at `offset`. */
async function startsV3Segment(device: BlockDevice, offset: number): Promise<boolean> {
  if (offset + SEGMENT_RECORD_LENGTH > device.size) return false;
  const r = decodeRecord(await device.read(offset, SEGMENT_RECORD_LENGTH), 0);
  return r.ok && r.record.opcode === Op.SEGMENT;
}

/**
 * Step over the v3 log an upgrade left from `first` on: each segment's records one after another,
 * into the next segment while it starts with a segment header. A v1 record among them, or one
 * anywhere after them, is returned.
 */
async function findV1AmongV3(device: BlockDevice, first: number, segmentSize: number, segmentCount: number): Promise<number | undefined> {
  for (let segment = first; ; segment++) {
    const base = segmentOffset(segment, segmentSize);
    const buf = await device.read(base, Math.min(segmentSize, device.size - base));
    let at = 0;
    for (let r = decodeRecord(buf, 0); r.ok; r = decodeRecord(buf, at)) {
      if (isV1(r.record)) return base + at;
      at += r.record.length;
    }
    const next = segment + 1;
    // Searched byte by byte from here, the rest of a torn last record included: skipping the
    // length its header claims hid real damage behind a crafted header (a review), where
    // searching it can only fail loudly (statefs-v3.md Appendix A, item 10).
    if (next >= segmentCount || !(await startsV3Segment(device, segmentOffset(next, segmentSize)))) return findLaterV1Record(device, base + at + 1, device.size);
  }
}

/** The offset of a valid v1 record starting in `from..end`, if any. */
async function findLaterV1Record(device: BlockDevice, from: number, end: number): Promise<number | undefined> {
  const m0 = RECORD_MAGIC & 0xff;
  for (let start = from; start < end; start += WINDOW) {
    const buf = await device.read(start, Math.min(WINDOW + MAX_V1_RECORD, device.size - start));
    for (let i = 0; i < Math.min(WINDOW, buf.length, end - start); i++) {
      if (buf[i] !== m0) continue;
      const r = decodeRecord(buf, i);
      if (r.ok && isV1(r.record)) return start + i;
    }
  }
  return undefined;
}
