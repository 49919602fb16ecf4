import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { Op } from '../format/opcodes.js';
import { MAX_RECORD_VALUE, RECORD_MAGIC, RECORD_OVERHEAD, decodeRecord, encodeRecord, type DecodedRecord, type RecordFault } from '../format/record.js';
import { NO_SEGMENT, SEGMENT_RECORD_LENGTH, SYNC_RECORD_LENGTH, encodeSegmentHeader, encodeSync } from '../format/segment.js';
import { emptyCheckpoint, encodeCheckpoint, encodeCheckpointChunk } from '../format/checkpoint.js';
import { SUPERBLOCK_SLOT, segmentOffset } from '../format/superblock.js';
import { crc32cAppend } from '../format/crc32c.js';
import { UPGRADE_VALUE_LENGTH, decodeUpgrade, encodeUpgrade, type UpgradeMark } from '../format/meta-records.js';
import { BTree } from './btree.js';
import { Entry } from './entry.js';
import { defaultSegmentSize } from './mkfs.js';
import type { Trees } from './keyspace.js';
import { KEY_ROOT, indexKey } from './names.js';

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
  /** CRC-32C of the v1 journal's bytes, `[0, end)`: the upgrade names it in its UPGRADE record. */
  journalCrc: number;
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
const UPGRADE_RECORD_LENGTH = RECORD_OVERHEAD + UPGRADE_VALUE_LENGTH;

export async function replayLegacy(device: BlockDevice, subject: string): Promise<LegacyImage> {
  const tree = new BTree<string, Entry>();
  let windowStart = 0;
  let window: Uint8Array = new Uint8Array(0);
  // CRC-32C of the journal's bytes before `windowStart`, taken a window at a time.
  let crc = 0;
  const load = async (at: number): Promise<void> => {
    crc = crc32cAppend(crc, window.subarray(0, at - windowStart));
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
  const journalCrc = crc32cAppend(crc, window.subarray(0, pos - windowStart));
  const segmentSize = defaultSegmentSize(device.size);
  const segmentCount = Math.floor((device.size - 2 * SUPERBLOCK_SLOT) / segmentSize);
  let firstSegment = 0;
  while (segmentOffset(firstSegment, segmentSize) < pos) firstSegment++;
  // An upgrade cut short before its superblock wrote a v3 log from `firstSegment` on (the rest of
  // a v1 image is zero, and only an intact image is upgraded): its records' values may hold any
  // bytes, a whole valid v1 record too. Its first batch, flushed before any other, is an UPGRADE
  // record naming the journal it read: when that is this very journal (its end and CRC), a v1
  // record past it is the upgrade's copy if its bytes are the ones the upgrade of this state
  // writes there (`upgradeLog`), wherever a crash tore the log; any other is damage (a v1 value
  // can forge the UPGRADE record itself: a review). Otherwise (damage cut the journal short, or an upgrade written before the
  // UPGRADE record existed) the records are stepped over one by one, not searched (a value copy
  // of a journal entry made such a crash an EINTEGRITY image; review), and past the last of them
  // the search goes on: damage followed by valid v1 records is found wherever the bytes after
  // the damage happen to look like a segment header (a second review).
  const upgradeAt = segmentOffset(firstSegment, segmentSize);
  const upgrade = firstSegment < segmentCount ? await v3SegmentStart(device, upgradeAt) : undefined;
  const ownUpgrade = upgrade?.mark?.v1End === pos && upgrade.mark.v1Crc === journalCrc;
  const later =
    upgrade === undefined
      ? await findLaterV1Record(device, pos + 1, device.size)
      : ((await findLaterV1Record(device, pos + 1, upgradeAt)) ??
        (ownUpgrade
          ? await findLaterV1Record(device, upgradeAt, device.size, upgradeLog(tree, subject, firstSegment, segmentSize, { v1End: pos, v1Crc: journalCrc }))
          : await findV1AmongV3(device, firstSegment, segmentSize, segmentCount)));
  if (later !== undefined) {
    throw StatefsError.EINTEGRITY(`damaged v1 record followed by a valid one at ${later}`, { op: 'open', offset: pos });
  }
  // The rest of a v1 image is zero: anything else right at the end is a record cut short.
  const after = pos >= upgradeAt ? new Uint8Array(0) : await device.read(pos, Math.min(MAX_V1_HEADER, upgradeAt - pos, device.size - pos));
  const tornTail = after.some((b) => b !== 0) ? endFault : undefined;
  return { index: new Map([[subject, tree]]), end: pos, journalCrc, tornTail, records, firstSegment, segmentSize, segmentCount };
}

/** One record of the log the upgrade of a v1 state writes: where it lands, its length, its bytes. */
interface Piece {
  at: number;
  length: number;
  bytes: () => Uint8Array;
}

/**
 * The log the upgrade of `tree` writes from `firstSegment` on, laid out as JournalWriter places
 * its two batches ([UPGRADE], then [CKPT, PUT...], each sealed by a SYNC; a record rolls to the
 * next segment when it and a SYNC do not fit), with each record's bytes made on demand. Returns
 * whether a v1 record `found` at `at` is a copy the upgrade made (its bytes are
 * the ones this log has there).
 */
function upgradeLog(tree: BTree<string, Entry>, subject: string, firstSegment: number, segmentSize: number, mark: UpgradeMark): (at: number, found: Uint8Array) => boolean {
  const empty = new Uint8Array(0);
  const ckpt = encodeCheckpointChunk(1, 0, 1, encodeCheckpoint(emptyCheckpoint()));
  const pieces: Piece[] = [];
  let segment = NO_SEGMENT;
  let nextSegment = firstSegment;
  let segSeq = 0;
  let offset = segmentSize;
  let batchStart: number | undefined;
  const push = (length: number, bytes: () => Uint8Array): void => {
    pieces.push({ at: segmentOffset(segment, segmentSize) + offset, length, bytes });
    offset += length;
  };
  const seal = (): void => {
    if (batchStart === undefined) return;
    const sync = { segSeq, batchStart };
    push(SYNC_RECORD_LENGTH, () => encodeRecord(Op.SYNC, empty, encodeSync(sync)));
    batchStart = undefined;
  };
  const roll = (): void => {
    seal();
    const h = { segSeq: ++segSeq, segIndex: nextSegment, prevIndex: segment, prevEnd: offset };
    segment = nextSegment++;
    offset = 0;
    push(SEGMENT_RECORD_LENGTH, () => encodeRecord(Op.SEGMENT, empty, encodeSegmentHeader(h)));
  };
  const puts: Piece[] = [];
  for (const [bin, e] of tree.entries()) {
    const key = Buffer.from(indexKey(subject, bin), 'latin1');
    const value = e.value;
    puts.push({ at: 0, length: RECORD_OVERHEAD + key.length + value.length, bytes: () => encodeRecord(Op.PUT, key, value) });
  }
  const batches: Omit<Piece, 'at'>[][] = [
    [{ length: UPGRADE_RECORD_LENGTH, bytes: () => encodeRecord(Op.UPGRADE, empty, encodeUpgrade(mark)) }],
    [{ length: RECORD_OVERHEAD + ckpt.length, bytes: () => encodeRecord(Op.CKPT, empty, ckpt) }, ...puts],
  ];
  for (const batch of batches) {
    for (const r of batch) {
      if (offset + r.length + SYNC_RECORD_LENGTH > segmentSize) roll();
      batchStart ??= offset;
      push(r.length, r.bytes);
    }
    seal();
  }
  return (at, found) => {
    // The pieces that cover [at, at + found.length), in order and without a gap. They are in
    // offset order: the first is found by halving (an image may hold many copied records).
    let lo = 0;
    let hi = pieces.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const p = pieces[mid];
      if (p !== undefined && p.at + p.length <= at) lo = mid + 1;
      else hi = mid;
    }
    let i = lo;
    if ((pieces[i]?.at ?? Infinity) > at) return false;
    const expected = new Uint8Array(found.length);
    for (let done = 0; done < found.length; i++) {
      const p = pieces[i];
      if (p === undefined || (done > 0 && p.at !== at + done)) return false;
      const from = at + done - p.at;
      const take = Math.min(p.length - from, found.length - done);
      expected.set(p.bytes().subarray(from, from + take), done);
      done += take;
    }
    return Buffer.compare(expected, found) === 0;
  };
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
 * Whether a v3 segment header starts at `offset` (undefined if not), and the UPGRADE record that
 * follows it there when there is one (the first record of an upgrade's log).
 */
async function v3SegmentStart(device: BlockDevice, offset: number): Promise<{ mark: UpgradeMark | undefined } | undefined> {
  if (!(await startsV3Segment(device, offset))) return undefined;
  const at = offset + SEGMENT_RECORD_LENGTH;
  if (at + UPGRADE_RECORD_LENGTH > device.size) return { mark: undefined };
  const r = decodeRecord(await device.read(at, UPGRADE_RECORD_LENGTH), 0);
  return { mark: r.ok && r.record.opcode === Op.UPGRADE ? decodeUpgrade(r.record.value) : undefined };
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

/** The offset of a valid v1 record starting in `from..end`, if any (but for those `copied` says the upgrade made). */
async function findLaterV1Record(device: BlockDevice, from: number, end: number, copied?: (at: number, found: Uint8Array) => boolean): Promise<number | undefined> {
  const m0 = RECORD_MAGIC & 0xff;
  for (let start = from; start < end; start += WINDOW) {
    const buf = await device.read(start, Math.min(WINDOW + MAX_V1_RECORD, device.size - start));
    for (let i = 0; i < Math.min(WINDOW, buf.length, end - start); i++) {
      if (buf[i] !== m0) continue;
      const r = decodeRecord(buf, i);
      if (r.ok && isV1(r.record) && copied?.(start + i, buf.subarray(i, i + r.record.length)) !== true) return start + i;
    }
  }
  return undefined;
}
