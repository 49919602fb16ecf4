import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { CHAINED_SNAPSHOTS_VERSION, CKPT_CHUNK, decodeCheckpoint, decodeCheckpointChunk, type Checkpoint, type CheckpointEntries, type CheckpointSnapshot } from '../format/checkpoint.js';
import { Op } from '../format/opcodes.js';
import { intactRun, runEntries, runValueStart, type RunEntry } from '../format/put-run.js';
import { claimedRecordLength, decodeRecord, putValueStart, type DecodedRecord } from '../format/record.js';
import { PAYLOAD_DELETE, decodePayload, decodeTxnMark, type PayloadChunk } from '../format/txn-records.js';
import { directoryOrder } from './batch-order.js';
import { valueOfRecord } from './entry-reader.js';
import { segmentOffset, type Superblock } from '../format/superblock.js';
import { BTree, bulkTree } from './btree.js';
import { MOVED_RECORD_BOUND, changeBound, liveEntryBound, mountBound, movedEntryBound, restoreBound, snapshotHeaderBound } from './checkpoint-bound.js';
import { Entry } from './entry.js';
import { EntryTable, type EntryRef } from './entry-table.js';
import type { Tree, Trees } from './keyspace.js';
import { SnapshotTable } from './snapshot-table.js';
import { MountTable } from './mount-table.js';
import { decodeMount, decodeReloc, decodeSnapDigest, decodeSnapId } from '../format/meta-records.js';
import { splitIndexKey, splitRecordKey } from './names.js';
import type { Extent } from './journal-writer.js';
import { scanLog, type LogScan, type LoggedRecord } from './log-reader.js';
import { readImageKind } from './superblock-io.js';
import { replayLegacy, type LegacyImage } from './legacy-v1.js';
import { NO_SEGMENT } from '../format/segment.js';
import { accountIndex, forEachDistinctEntry, type IndexAccounting } from './store-support.js';

export interface Replayed {
  sb: Superblock;
  scan: LogScan;
  index: Trees;
  /** Above every transaction id in the checkpoint or the log. */
  nextTxnId: number;
  snapshots: SnapshotTable;
  mounts: MountTable;
  /** Transactions prepared in the log and neither committed nor aborted (replay dropped them). */
  orphans: Orphan[];
  /** Set for a legacy v1 image: `sb` then describes the v3 layout the first write will create. */
  legacy?: LegacyImage;
  /** The checkpoint replay started from: its records' bytes on disk, payload bytes and live entries. */
  /**
   * The checkpoint replay started from: its records' and payload's bytes, its live entries, its
   * payload version (0: none, a legacy image), its snapshots without a digest, and the most the
   * records replayed past it can add to the next checkpoint (`checkpoint-bound.ts`).
   */
  checkpoint: { recordBytes: number; payloadBytes: number; entries: number; version: number; undigested: number; growth: number };
  /** Records per segment and bytes per subject of the replayed index. */
  accounting: IndexAccounting;
  /** The entries loaded from the checkpoint, which the trees hold as rows of this table. */
  entries: EntryTable;
}

export interface Orphan {
  txnId: number;
  subject: string;
  /** Absolute byte offset of its PREPARE. */
  offset: number;
}

/** A transaction whose PREPARE has been replayed and whose COMMIT has not (yet). */
interface PendingTxn {
  /** Where its PREPARE is. */
  at: Extent;
  subject: string;
  opCount: number;
  chunks: { ik: string; chunk: PayloadChunk; extent: Extent }[];
}

const EMPTY_VALUE = new Uint8Array(0);
const NO_MORE_RECORDS: Extent[] = [];

/**
 * Rebuild the index of a v3 image: load the checkpoint the superblock names (extents only), apply
 * the batches logged after it, then read the values of entries that came from the checkpoint.
 * Cost: the checkpoint plus the journal since it plus the live values — not lifetime writes.
 */
export async function replayImage(device: BlockDevice, legacySubject: string, valuesAtOpen = true): Promise<Replayed> {
  const kind = await readImageKind(device);
  if (kind.kind === 'legacy-v1') return replayedLegacy(await replayLegacy(device, legacySubject), device.size);
  const sb = kind.sb;
  const snapshots = new SnapshotTable();
  const entries = new EntryTable();
  const index = new IndexBuilder(sb, snapshots, entries);
  const payload = new PayloadAssembler(device.size);
  const ckpt = { loaded: false, recordBytes: 0, payloadBytes: 0, entries: 0, version: 0, undigested: 0 };
  const txns = new Map<number, PendingTxn>();
  const mounts = new MountTable();
  const ids = { next: 1 };
  const apply = (batch: LoggedRecord[]): void => {
    // The batch's PUT values in one buffer of their own (not a copy each, and never a view of the
    // segment, which would keep all of it alive): the rule `putMany` follows.
    let putBytes = 0;
    const runs: (RunEntry[] | undefined)[] = [];
    for (const { record } of batch) {
      if (record.opcode === Op.PUT) putBytes += record.value.length;
      const run = record.opcode === Op.PUTRUN ? runEntries(record) : undefined;
      runs.push(run);
      if (run !== undefined) for (const e of run) putBytes += e.value.length;
    }
    const packed = new Uint8Array(putBytes);
    let packedAt = 0;
    // The puts of consecutive PUT and PUTRUN records go into the trees together, grouped by
    // directory, once a record of another kind (or the batch's end) comes: each key's puts keep
    // their order, and nothing else reads the trees in between (batch-order.ts; a crash during a
    // bulk load leaves a journal of interleaved directories to replay).
    const putSubjects: string[] = [];
    const putBins: string[] = [];
    const putEntries: EntryRef[] = [];
    const indexPuts = (): void => {
      if (putBins.length === 0) return;
      for (const i of directoryOrder(putBins)) {
        const subject = putSubjects[i];
        const bin = putBins[i];
        const entry = putEntries[i];
        if (subject !== undefined && bin !== undefined && entry !== undefined) index.setIn(subject, bin, entry);
      }
      putSubjects.length = putBins.length = putEntries.length = 0;
    };
    const putLater = (subject: string, bin: string, entry: EntryRef): void => {
      // A subject's tree is made at its first put, as in record order (walks follow the map's order).
      if (subject !== putSubjects.at(-1)) index.tree(subject);
      putSubjects.push(subject);
      putBins.push(bin);
      putEntries.push(entry);
    };
    batch.forEach(({ record, extent }, at) => {
      if (record.opcode !== Op.PUT && record.opcode !== Op.PUTRUN) indexPuts();
      switch (record.opcode) {
        case Op.CKPT: {
          const c = decodeCheckpointChunk(record.value);
          if (c?.id !== sb.ckptId || ckpt.loaded) break; // an older or newer checkpoint: not ours
          if (c.index !== payload.chunks) throw damaged(sb, extent, 'checkpoint chunks out of order');
          payload.add(c.data, c.count);
          ckpt.recordBytes += extent.length;
          if (payload.chunks === c.count) {
            const decoded = decodeCheckpointAt(payload.bytes, sb, extent);
            ckpt.payloadBytes = payload.bytes.length;
            ckpt.version = payload.bytes[0] ?? 0; // decoded: a version it knows
            payload.release();
            ckpt.entries = decoded.entries.keys.length;
            ckpt.undigested = decoded.snapshots.filter((snap) => snap.digest === undefined).length;
            ids.next = Math.max(ids.next, decoded.nextTxnId);
            loadCheckpoint(decoded, ckpt.version, index, snapshots, mounts, extent);
            ckpt.loaded = true;
          }
          break;
        }
        case Op.PUT: {
          requireCheckpoint(ckpt.loaded, sb, extent);
          const [subject, bin] = index.putKey(record.key, extent);
          packed.set(record.value, packedAt);
          putLater(subject, bin, Entry.inRecord(packed, packedAt, record.value.length, extent.segment, extent.offset, extent.length));
          packedAt += record.value.length;
          break;
        }
        case Op.PUTRUN: {
          requireCheckpoint(ckpt.loaded, sb, extent);
          const run = runs[at];
          const subject = Buffer.from(record.key).toString('latin1');
          if (run === undefined || subject.length === 0 || subject.includes('\0')) throw damaged(sb, extent, 'malformed PUTRUN');
          for (const e of run) {
            packed.set(e.value, packedAt);
            const slice = { segment: extent.segment, offset: extent.offset + e.lead, length: e.length };
            index.checkRunKey(e.bin, slice);
            putLater(subject, e.bin, Entry.inRecord(packed, packedAt, e.value.length, slice.segment, slice.offset, slice.length, e.lead));
            packedAt += e.value.length;
          }
          break;
        }
        case Op.DELETE:
          requireCheckpoint(ckpt.loaded, sb, extent);
          index.delete(Buffer.from(record.key).toString('latin1'), extent);
          break;
        case Op.PREPARE: {
          requireCheckpoint(ckpt.loaded, sb, extent);
          const mark = decodeTxnMark(record.value);
          if (mark === undefined) throw damaged(sb, extent, 'malformed PREPARE');
          txns.set(mark.txnId, { at: extent, subject: Buffer.from(record.key).toString('latin1'), opCount: mark.opCount, chunks: [] });
          ids.next = Math.max(ids.next, mark.txnId + 1);
          break;
        }
        case Op.PAYLOAD: {
          const chunk = decodePayload(record.value);
          if (chunk === undefined) throw damaged(sb, extent, 'malformed PAYLOAD');
          txns.get(chunk.txnId)?.chunks.push({ ik: Buffer.from(record.key).toString('latin1'), chunk, extent });
          break;
        }
        case Op.COMMIT: {
          const mark = decodeTxnMark(record.value);
          if (mark === undefined) throw damaged(sb, extent, 'malformed COMMIT');
          const txn = txns.get(mark.txnId);
          txns.delete(mark.txnId);
          if (txn !== undefined) applyCommitted(txn, index, sb, extent);
          break;
        }
        case Op.ABORT: {
          const mark = decodeTxnMark(record.value);
          if (mark !== undefined) txns.delete(mark.txnId);
          break;
        }
        case Op.SNAPSHOT:
        case Op.SNAPDIGEST:
        case Op.SNAPDEL:
        case Op.RESTORE:
        case Op.MOUNT:
        case Op.UMOUNT:
          requireCheckpoint(ckpt.loaded, sb, extent);
          applyMeta(record, extent, index, snapshots, mounts, sb);
          break;
        case Op.RELOC: {
          requireCheckpoint(ckpt.loaded, sb, extent);
          const moved = decodeReloc(record.value);
          if (moved === undefined) throw damaged(sb, extent, 'malformed RELOC');
          index.relocate(moved, extent, moved.value);
          break;
        }
        case Op.SEGMENT:
        case Op.CHECKPOINT:
        case Op.UPGRADE: // before the upgrade's checkpoint, so not replayed; only an unfinished upgrade's open reads it
          break;
        default:
          throw StatefsError.ENOTSUP(`record opcode 0x${record.opcode.toString(16)} at byte ${absolute(sb, extent)}`, { op: 'open' });
      }
    });
    indexPuts();
  };
  const scan = await scanLog(device, sb, apply);
  if (!ckpt.loaded) throw StatefsError.EINTEGRITY('the checkpoint named by the superblock is incomplete', { op: 'open', offset: segmentOffset(sb.ckptSegment, sb.segmentSize) + sb.ckptOffset });
  const accounting = await readValues(device, sb, entries, index.trees, snapshots, index.relocated, valuesAtOpen);
  const orphans = [...txns].map(([txnId, t]) => ({ txnId, subject: t.subject, offset: absolute(sb, t.at) }));
  const { recordBytes, payloadBytes, version, undigested } = ckpt;
  const checkpoint = { recordBytes, payloadBytes, entries: ckpt.entries, version, undigested, growth: index.growth };
  return { sb, scan, index: index.trees, nextTxnId: ids.next, snapshots, mounts, orphans, checkpoint, accounting, entries };
}

/**
 * A checkpoint's payload put together from its CKPT records' chunks in one buffer, sized from the
 * chunk count (not a copy of each chunk and then one of them all: a million-key checkpoint is
 * tens of MB).
 */
class PayloadAssembler {
  private buf = EMPTY_VALUE;
  private used = 0;
  /** Chunks added so far. */
  chunks = 0;

  /** `limit`: no checkpoint is larger than the image, whatever its chunk count says. */
  constructor(private readonly limit: number) {}

  add(data: Uint8Array, count: number): void {
    if (this.chunks === 0) this.buf = new Uint8Array(Math.min(count * CKPT_CHUNK, this.limit));
    if (this.used + data.length > this.buf.length) {
      const bigger = new Uint8Array(Math.max(2 * this.buf.length, this.used + data.length));
      bigger.set(this.bytes);
      this.buf = bigger;
    }
    this.buf.set(data, this.used);
    this.used += data.length;
    this.chunks++;
  }

  get bytes(): Uint8Array {
    return this.buf.subarray(0, this.used);
  }

  /** Let the payload go once it is decoded. */
  release(): void {
    this.buf = EMPTY_VALUE;
    this.used = 0;
  }
}

/** Decode a checkpoint's payload; damage is `EINTEGRITY` at the CKPT record that completed it. */
function decodeCheckpointAt(payload: Uint8Array, sb: Superblock, last: Extent): Checkpoint {
  try {
    return decodeCheckpoint(payload);
  } catch (err) {
    if (err instanceof StatefsError && err.code === 'EINTEGRITY' && err.offset === undefined) throw damaged(sb, last, err.message.slice(err.code.length + 2));
    throw err;
  }
}

/** Apply a committed transaction: each op is a run of PAYLOAD chunks 0..count-1 for one key. */
function applyCommitted(txn: PendingTxn, index: IndexBuilder, sb: Superblock, at: Extent): void {
  let ops = 0;
  for (let i = 0; i < txn.chunks.length; ) {
    const first = txn.chunks[i];
    if (first === undefined) break;
    const run = txn.chunks.slice(i, i + first.chunk.count);
    const whole = run.length === first.chunk.count && run.every((c, j) => c.chunk.index === j && c.ik === first.ik && c.chunk.kind === first.chunk.kind);
    if (!whole) throw damaged(sb, first.extent, 'transaction payload chunks do not form whole values');
    if (first.chunk.kind === PAYLOAD_DELETE) index.delete(first.ik, first.extent);
    else index.set(first.ik, Entry.of(Buffer.concat(run.map((c) => c.chunk.data)), run.map((c) => c.extent)), first.extent);
    i += run.length;
    ops++;
  }
  if (ops !== txn.opCount) throw damaged(sb, at, `transaction has ${ops} ops, its COMMIT says ${txn.opCount}`);
}

/**
 * A legacy image as the store sees it until its first write: the v1 state in the index, and a
 * log that starts (with segment sequence 1) in the first segment past the v1 journal.
 */
function replayedLegacy(legacy: LegacyImage, capacity: number): Replayed {
  const chain: number[] = [];
  for (let s = 0; s < Math.min(legacy.firstSegment, legacy.segmentCount); s++) chain.push(s);
  const sb: Superblock = {
    generation: 0,
    capacity,
    segmentSize: legacy.segmentSize,
    segmentCount: legacy.segmentCount,
    ckptSegment: legacy.firstSegment,
    ckptOffset: 0,
    ckptSegSeq: 1,
    ckptId: 0,
  };
  const scan: LogScan = {
    tail: { segment: NO_SEGMENT, segSeq: 0, offset: legacy.segmentSize },
    torn: legacy.tornTail === undefined ? undefined : { offset: legacy.end, fault: legacy.tornTail },
    chain,
    maxSegSeq: 0,
    batches: 0,
    records: legacy.records,
    bytes: 0,
    unwritten: new Uint8Array(legacy.segmentCount), // a v1 image has no segment headers: no segment is known unwritten
  };
  const checkpoint = { recordBytes: 0, payloadBytes: 0, entries: 0, version: 0, undigested: 0, growth: 0 };
  const snapshots = new SnapshotTable();
  const entries = new EntryTable(); // a v1 image has no checkpoint: its entries are objects
  const accounting = accountIndex(entries, legacy.index, snapshots, legacy);
  return { sb, scan, index: legacy.index, nextTxnId: 1, snapshots, mounts: new MountTable(), orphans: [], legacy, checkpoint, accounting, entries };
}

function requireCheckpoint(loaded: boolean, sb: Superblock, extent: Extent): void {
  if (!loaded) throw damaged(sb, extent, 'data record before the checkpoint is complete');
}

/** Adjacent segments read at open with one device call, up to this many bytes. */
const READ_RUN_BYTES = 4 * 1024 * 1024;

/**
 * Read the values of checkpointed entries that survived replay (not yet `loaded`), in segment
 * order. Only entries still indexed after replay are read: a superseded one may point into a
 * reused segment. Adjacent segments are read with one call, and the next run is read while this
 * one's records are checked, so the disk and the CRCs overlap. Returns the index's accounting,
 * counted in the same walk.
 *
 * With `all` false only the values RELOC records after the checkpoint carry are taken; the rest
 * are left to be read when asked for (`EntryTable.readOnDemand`), and only where their records
 * are is checked: inside the image's segments.
 */
async function readValues(device: BlockDevice, sb: Superblock, table: EntryTable, trees: Trees, snapshots: SnapshotTable, relocated: ReadonlyMap<number, Uint8Array>, all: boolean): Promise<IndexAccounting> {
  // Only rows are unread, and a row's value is read once however many trees hold it.
  const bySegment = new Map<number, number[]>();
  const fromReloc: number[] = [];
  const accounting = accountIndex(table, trees, snapshots, sb, (e) => {
    if (typeof e !== 'number' || table.loaded(e)) return;
    if (relocated.has(e)) {
      fromReloc.push(e);
      return;
    }
    if (!all) {
      checkInImage(sb, table, e);
      return;
    }
    const segment = table.segment(e);
    let list = bySegment.get(segment);
    if (list === undefined) bySegment.set(segment, (list = []));
    list.push(e);
  });
  fillFromRelocs(table, fromReloc, relocated);
  if (!all) return accounting;
  const segments = [...bySegment.keys()].sort((a, b) => a - b);
  const runs = segmentRuns(segments, sb.segmentCount, Math.max(1, Math.floor(READ_RUN_BYTES / sb.segmentSize)));
  const readSegment = async (segment: number): Promise<Uint8Array> => {
    if (segment >= sb.segmentCount) throw StatefsError.EINTEGRITY(`checkpoint names segment ${segment}`, { op: 'open' });
    return device.read(segmentOffset(segment, sb.segmentSize), sb.segmentSize);
  };
  // Two buffers, reused: one being read while the other's records are checked.
  const most = runs.reduce((n, run) => Math.max(n, run.count), 0) * sb.segmentSize;
  const buffers = device.readInto === undefined ? [] : [new Uint8Array(most), new Uint8Array(runs.length > 1 ? most : 0)];
  const readRun = async (r: number): Promise<Uint8Array> => {
    const run = runs[r];
    if (run === undefined) return EMPTY_VALUE; // past the last run
    if (run.first >= sb.segmentCount) return readSegment(run.first);
    const offset = segmentOffset(run.first, sb.segmentSize);
    const length = run.count * sb.segmentSize;
    const into = buffers[r % 2];
    if (into === undefined || device.readInto === undefined) return device.read(offset, length);
    await device.readInto(offset, into.subarray(0, length));
    return into.subarray(0, length);
  };
  const filler = new SegmentFiller(sb, table, readSegment);
  let next = readRun(0);
  for (let r = 0; r < runs.length; r++) {
    const run = runs[r];
    if (run === undefined) break;
    const buf = await next;
    next = readRun(r + 1);
    next.catch(() => undefined); // its failure is reported when it is awaited, in order
    for (let i = 0; i < run.count; i++) {
      const entries = bySegment.get(run.first + i);
      if (entries !== undefined) await filler.fill(buf.subarray(i * sb.segmentSize, (i + 1) * sb.segmentSize), run.first + i, entries);
    }
  }  return accounting;
}

/** A row's records lie inside the image's segments (what reading its value at open would check first). */
function checkInImage(sb: Superblock, table: EntryTable, row: number): void {
  // Once per row of the open: no object made unless it fails.
  const segment = table.segment(row);
  const offset = table.offset(row);
  const length = table.recordLength(row);
  if (outsideImage(sb, segment, offset, length)) throw damaged(sb, { segment, offset, length }, 'checkpoint names a record outside the image');
  for (const x of table.moreRecords(row)) if (outsideImage(sb, x.segment, x.offset, x.length)) throw damaged(sb, x, 'checkpoint names a record outside the image');
}

function outsideImage(sb: Superblock, segment: number, offset: number, length: number): boolean {
  return segment >= sb.segmentCount || offset + length > sb.segmentSize;
}

/** The held rows whose value a RELOC record carried, packed into one slab. */
function fillFromRelocs(table: EntryTable, rows: readonly number[], relocated: ReadonlyMap<number, Uint8Array>): void {
  if (rows.length === 0) return;
  let bytes = 0;
  for (const row of rows) bytes += relocated.get(row)?.length ?? 0;
  const packed = new Uint8Array(bytes);
  const slab = table.addSlab(packed);
  let at = 0;
  for (const row of rows) {
    const value = relocated.get(row) ?? EMPTY_VALUE;
    packed.set(value, at);
    table.fillInSlab(row, slab, at, value.length);
    at += value.length;
  }
}

interface SegmentRun {
  first: number;
  count: number;
}

/** Ascending `segments` as runs of adjacent ones, each at most `most` long and within `segmentCount` (past it: alone). */
function segmentRuns(segments: readonly number[], segmentCount: number, most: number): SegmentRun[] {
  const runs: SegmentRun[] = [];
  let run: SegmentRun | undefined;
  for (const s of segments) {
    if (run !== undefined && s === run.first + run.count && run.count < most && s < segmentCount) run.count++;
    else runs.push((run = { first: s, count: 1 }));
  }
  return runs;
}

/**
 * Fills unread rows with their values from one segment's bytes. The values of a segment get one
 * slab holding exactly those values (never the segment's other bytes): one allocation per
 * segment, not one per value, and no view per value kept.
 */
class SegmentFiller {
  /** Per entry of the segment: its value's start in the segment, or -1 (the value is in `joined`). */
  private starts = new Int32Array(1024);
  /** Per entry of the segment with a `starts`: its value's end. */
  private ends = new Int32Array(1024);
  /** Offsets of the segment's PUTRUN records whose CRC is checked (a run holds several entries: once each). */
  private readonly runs = new Set<number>();
  /** Where the value `runValueStart` found last ends. */
  private runValueEnd = 0;

  constructor(
    private readonly sb: Superblock,
    private readonly table: EntryTable,
    private readonly readSegment: (segment: number) => Promise<Uint8Array>,
  ) {}

  async fill(buf: Uint8Array, segment: number, rows: readonly number[]): Promise<void> {
    this.runs.clear();
    const joined = new Map<number, Uint8Array>();
    let packed = this.locate(buf, segment, rows, joined);
    // A transaction value in several PAYLOAD records, possibly in other segments (rare). Kept out
    // of `locate` and `copy`: their loops run once per value, and stay free of awaits.
    for (const [i, first] of joined) {
      const row = rows[i];
      const more = row === undefined ? [] : this.table.moreRecords(row);
      if (more.length === 0) continue;
      const parts = [first];
      for (const x of more) parts.push(this.valueAt(x.segment === segment ? buf : await this.readSegment(x.segment), x.segment, x.offset, x.length));
      const value = Buffer.concat(parts);
      joined.set(i, value);
      packed += value.length - first.length;
    }
    this.copy(buf, rows, joined, packed);
  }

  /**
   * Check each entry's (first) record and note where its value is: `starts[i]` to `ends[i]` for a
   * PUT's or a PUTRUN entry's value in `buf`, else -1 and the value (or its first part) in
   * `joined`. Returns the values' bytes.
   */
  private locate(buf: Uint8Array, segment: number, rows: readonly number[], joined: Map<number, Uint8Array>): number {
    if (this.starts.length < rows.length) {
      this.starts = new Int32Array(Math.max(rows.length, 2 * this.starts.length));
      this.ends = new Int32Array(this.starts.length);
    }
    const { starts, ends, table } = this;
    let packed = 0;
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i];
      if (row === undefined) continue;
      const offset = table.offset(row);
      const length = table.recordLength(row);
      const lead = table.recordLead(row);
      let start = -1;
      let end = offset + length - 4;
      if (table.moreRecords(row).length === 0) {
        start = lead === 0 ? putValueStart(buf, offset, length) : -1;
        if (start < 0) {
          start = this.runValueStart(buf, segment, offset, length, lead);
          end = this.runValueEnd;
        }
      }
      starts[i] = start;
      ends[i] = end;
      if (start >= 0) {
        packed += end - start;
      } else {
        const value = this.valueAt(buf, segment, offset, length);
        joined.set(i, value);
        packed += value.length;
      }
    }
    return packed;
  }

  /** Copy the values into one new slab of `packed` bytes, and fill the rows with them. */
  private copy(buf: Uint8Array, rows: readonly number[], joined: ReadonlyMap<number, Uint8Array>, packed: number): void {
    const { starts, ends, table } = this;
    const bytes = new Uint8Array(packed);
    const slab = table.addSlab(bytes);
    let at = 0;
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i];
      if (row === undefined) continue;
      const start = starts[i] ?? -1;
      const value = start >= 0 ? buf.subarray(start, ends[i]) : (joined.get(i) ?? EMPTY_VALUE);
      bytes.set(value, at);
      table.fillInSlab(row, slab, at, value.length);
      at += value.length;
    }
  }

  /**
   * Where the value of the slice at `offset` of a PUTRUN record `lead` bytes before it starts in
   * `buf` (it ends at `runValueEnd`), or -1 if the record there is not a PUTRUN and `lead` is 0
   * (another kind, or damage: `valueAt` says which). A slice that is not one of the record's
   * entries is `EINTEGRITY`.
   */
  private runValueStart(buf: Uint8Array, segment: number, offset: number, length: number, lead: number): number {
    const at = offset - lead;
    if (!this.runs.has(at)) {
      if (at < 0 || !intactRun(buf, at)) {
        // Decoded only now, to say what is there instead.
        const r = at >= 0 ? decodeRecord(buf, at) : undefined;
        if (r?.ok !== true || r.record.opcode !== Op.PUTRUN) {
          if (lead === 0) return -1;
          throw damaged(this.sb, { segment, offset: Math.max(at, 0), length }, `record holding a live value's PUTRUN slice is damaged (${r === undefined ? 'before the segment' : r.ok ? `opcode 0x${r.record.opcode.toString(16)}` : r.fault})`);
        }
        throw damaged(this.sb, { segment, offset: at, length }, 'malformed PUTRUN holding a live value');
      }
      this.runs.add(at);
    }
    const start = runValueStart(buf, at, lead, length);
    if (start < 0) throw damaged(this.sb, { segment, offset, length }, 'a live value names no entry of its PUTRUN record');
    this.runValueEnd = offset + length - (offset + length === at + (claimedRecordLength(buf, at) ?? 0) ? 4 : 0);
    return start;
  }

  /** The value held by the record at `offset` (any kind that holds one); damage is `EINTEGRITY`. */
  private valueAt(buf: Uint8Array, segment: number, offset: number, length: number): Uint8Array {
    // Decoded as far as the segment goes, not only `length` bytes: a damaged record whose header
    // claims more (the first slice of a PUTRUN, say) is then named for its damage, not "truncated".
    const r = decodeRecord(buf, offset);
    const x = { segment, offset, length };
    if (!r.ok || r.record.length !== length) throw damaged(this.sb, x, `record holding a live value is damaged (${r.ok ? 'length' : r.fault})`);
    const value = valueOfRecord(r.record);
    if (value === undefined) throw damaged(this.sb, x, `live value points at a record with opcode 0x${r.record.opcode.toString(16)}`);
    return value;
  }
}

/** Load a checkpoint of payload `version`: live entries, snapshots (as differences) and mounts. Values are read later. */
function loadCheckpoint(ckpt: Checkpoint, version: number, index: IndexBuilder, snapshots: SnapshotTable, mounts: MountTable, at: Extent): void {
  index.load(ckpt.entries);
  // The same record may be named by the live state and by snapshots: one EntryRef object per record.
  const entryFor = (extents: Extent[]): EntryRef => {
    const first = extents[0];
    const entry = first === undefined ? undefined : index.find(first.segment, first.offset);
    return entry ?? index.register(index.entries.addUnread(first?.segment ?? 0, first?.offset ?? 0, first?.length ?? 0, extents.slice(1), first?.lead ?? 0));
  };
  snapshots.nextId = Math.max(snapshots.nextId, ckpt.nextSnapId);
  const trees = snapshotTrees(ckpt.snapshots, (subject) => index.trees.get(subject), version >= CHAINED_SNAPSHOTS_VERSION, entryFor);
  for (const s of ckpt.snapshots) {
    const tree = trees.get(s.id) ?? new BTree<string, EntryRef>();
    snapshots.add({ subject: s.subject, name: s.name, id: s.id, tree, digest: s.digest, at: absolute(index.sb, at) });
  }
  for (const m of ckpt.mounts) mounts.add({ ...m, at: absolute(index.sb, at) });
}

/**
 * The trees of a checkpoint's snapshots, by id: each is its differences applied to a clone of
 * its base. `chained` (payload version 4): the base is the next newer snapshot of its subject,
 * for the newest the live tree, so the newest are built first; else (version 3 and before) the
 * live tree for all.
 */
export function snapshotTrees(
  snaps: readonly CheckpointSnapshot[],
  live: (subject: string) => Tree | undefined,
  chained: boolean,
  entryFor: (extents: Extent[]) => EntryRef,
): Map<number, Tree> {
  const trees = new Map<number, Tree>();
  const newer = new Map<string, Tree>();
  for (const s of chained ? [...snaps].sort((a, b) => b.id - a.id) : snaps) {
    const base = (chained ? newer.get(s.subject) : undefined) ?? live(s.subject);
    const tree = base?.clone() ?? new BTree<string, EntryRef>();
    for (const d of s.diff) {
      if (d.extents === null) tree.delete(d.key);
      else tree.set(d.key, entryFor(d.extents));
    }
    trees.set(s.id, tree);
    newer.set(s.subject, tree);
  }
  return trees;
}

/** Apply a snapshot or mount record in log order. */
function applyMeta(record: DecodedRecord, at: Extent, index: IndexBuilder, snapshots: SnapshotTable, mounts: MountTable, sb: Superblock): void {
  const parts = splitIndexKey(Buffer.from(record.key).toString('latin1'));
  if (parts === undefined) throw damaged(sb, at, 'metadata record key has no subject');
  const [subject, name] = parts;
  switch (record.opcode) {
    case Op.SNAPSHOT: {
      const id = decodeSnapId(record.value);
      if (id === undefined) throw damaged(sb, at, 'malformed SNAPSHOT');
      const tree = index.trees.get(subject)?.clone() ?? new BTree<string, EntryRef>();
      snapshots.add({ subject, name, id, tree, digest: undefined, at: absolute(sb, at) });
      index.growth += snapshotHeaderBound(subject, name);
      return;
    }
    case Op.SNAPDIGEST: {
      const d = decodeSnapDigest(record.value);
      const snap = snapshots.get(subject, name);
      if (d !== undefined && snap?.id === d.id) snap.digest = d.digest;
      return;
    }
    case Op.SNAPDEL: {
      const id = decodeSnapId(record.value);
      if (snapshots.get(subject, name)?.id === id) snapshots.remove(subject, name);
      return;
    }
    case Op.RESTORE: {
      const snap = snapshots.get(subject, name);
      if (snap?.id !== decodeSnapId(record.value) || snap === undefined) throw damaged(sb, at, `RESTORE of unknown snapshot ${name}`);
      index.growth += restoreBound(index.entries, subject, index.trees.get(subject), snap.tree, snapshots.countOf(subject));
      index.trees.set(subject, snap.tree.clone());
      return;
    }
    case Op.MOUNT: {
      const target = decodeMount(record.value);
      if (target === undefined) throw damaged(sb, at, 'malformed MOUNT');
      mounts.add({ caller: subject, path: name, ...target, at: absolute(sb, at) });
      index.growth += mountBound({ caller: subject, path: name, ...target });
      return;
    }
    default:
      mounts.remove(subject, name);
  }
}

/** Builds the per-subject trees from index keys (`subject NUL key`) found in records and checkpoints. */
class IndexBuilder {
  readonly trees: Trees = new Map();
  /**
   * Every indexed entry by its first record, so a RELOC record or a snapshot's checkpointed
   * difference can find the entry it names. Built on first use (most opens never need it: a
   * map of every entry costs a second per million keys) and kept up to date after that.
   */
  private byRecord: Map<number, EntryRef> | undefined;
  /**
   * The most the records replayed past the checkpoint can add to the next one, as the store
   * counts its own changes (`checkpoint-bound.ts`): the reserve's bound after this open.
   */
  growth = 0;
  constructor(
    readonly sb: Superblock,
    private readonly snapshots: SnapshotTable,
    readonly entries: EntryTable,
  ) {}

  set(ik: string, entry: EntryRef, at: Extent): void {
    const [subject, bin] = this.split(ik, at);
    this.setIn(subject, bin, entry);
  }

  /** The subject and key of a PUT record whose key bytes are `key`. */
  putKey(key: Uint8Array, at: Extent): [subject: string, bin: string] {
    const parts = splitRecordKey(key);
    if (parts === undefined) throw damaged(this.sb, at, 'record key has no subject');
    return parts;
  }

  /** Check the key of a PUTRUN record's entry (its subject is checked by the caller). */
  checkRunKey(bin: string, at: Extent): void {
    if (bin.length === 0 || bin.includes('\0')) throw damaged(this.sb, at, 'PUTRUN entry key is empty or holds a NUL');
  }

  /** The tree of `subject`, made empty on first use. */
  tree(subject: string): Tree {
    let tree = this.trees.get(subject);
    if (tree === undefined) this.trees.set(subject, (tree = new BTree<string, EntryRef>()));
    return tree;
  }

  /** Index `entry` under `bin` of `subject` (both checked). */
  setIn(subject: string, bin: string, entry: EntryRef): void {
    const tree = this.tree(subject);
    const snaps = this.snapshots.countOf(subject);
    // The entry replaced matters to the bound only through snapshots: look it up only then.
    if (snaps > 0) {
      this.growth += changeBound(this.entries, subject, bin, tree.get(bin), entry, snaps);
      tree.set(bin, entry);
    } else {
      this.growth += tree.set(bin, entry) ? liveEntryBound(this.entries, subject, bin, entry) : movedEntryBound(this.entries, entry);
    }
    this.register(entry);
  }

  register(entry: EntryRef): EntryRef {
    this.byRecord?.set(this.recordId(this.entries.segment(entry), this.entries.offset(entry)), entry);
    return entry;
  }

  /** The indexed entry (live or in a snapshot) whose first record is at `offset` in `segment`. */
  find(segment: number, offset: number): EntryRef | undefined {
    if (this.byRecord === undefined) {
      const byRecord = new Map<number, EntryRef>();
      forEachDistinctEntry(this.trees, this.snapshots, (_subject, e) => byRecord.set(this.recordId(this.entries.segment(e), this.entries.offset(e)), e));
      this.byRecord = byRecord;
    }
    return this.byRecord.get(this.recordId(segment, offset));
  }

  /** A record's identity: its absolute byte offset (a number key keeps the map cheap at millions of entries). */
  private recordId(segment: number, offset: number): number {
    return segmentOffset(segment, this.sb.segmentSize) + offset;
  }

  /**
   * Load a checkpoint's entries into empty trees. Checkpoints list each subject's keys in
   * ascending order, so each tree is bulk-built in O(n); any other order is inserted key by key.
   */
  load(checkpointed: CheckpointEntries): void {
    const { runs, keys, counts, extents, leads } = checkpointed;
    this.entries.reserve(keys.length);
    let from = 0;
    let x = 0;
    for (const { subject, end } of runs) {
      const bins = from === 0 && end === keys.length ? keys : keys.slice(from, end);
      const entries: EntryRef[] = [];
      let sorted = !this.trees.has(subject);
      for (let i = from; i < end; i++) {
        const n = counts[i] ?? 1;
        const more: Extent[] = n === 1 ? NO_MORE_RECORDS : [];
        for (let k = 1; k < n; k++) more.push({ segment: extents[x + 3 * k] ?? 0, offset: extents[x + 3 * k + 1] ?? 0, length: extents[x + 3 * k + 2] ?? 0 });
        entries.push(this.entries.addUnread(extents[x] ?? 0, extents[x + 1] ?? 0, extents[x + 2] ?? 0, more, leads[i] ?? 0));
        x += 3 * n;
        if (i > from && (keys[i - 1] ?? '') >= (keys[i] ?? '')) sorted = false;
      }
      if (sorted) {
        this.trees.set(subject, bulkTree(bins, entries));
        if (this.byRecord !== undefined) for (const e of entries) this.register(e);
      } else {
        bins.forEach((bin, i) => {
          const entry = entries[i];
          if (entry !== undefined) this.setIn(subject, bin, entry);
        });
      }
      from = end;
    }
  }

  /**
   * Values of rows a RELOC record moved, from the RELOC itself: the old record may be in a reused
   * segment, and the new one is this RELOC. `readValues` takes the value from here for a row
   * still held when replay ends; one superseded later in the log is never read (a value filled
   * at once kept a slab that no release ever reached; review).
   */
  readonly relocated = new Map<number, Uint8Array>();

  /** GC moved the record at `from` to `to`: every tree holding that entry sees the new place. */
  relocate(from: { segment: number; offset: number }, to: Extent, value: Uint8Array): void {
    const entry = this.find(from.segment, from.offset);
    if (entry === undefined) return; // nothing holds it any more
    this.byRecord?.delete(this.recordId(from.segment, from.offset));
    this.growth += MOVED_RECORD_BOUND;
    this.entries.moveTo(entry, to);
    if (typeof entry === 'number') this.relocated.set(entry, value.slice());
    this.register(entry);
  }

  delete(ik: string, at: Extent): void {
    const [subject, bin] = this.split(ik, at);
    const tree = this.trees.get(subject);
    const snaps = this.snapshots.countOf(subject);
    if (snaps > 0) this.growth += changeBound(this.entries, subject, bin, tree?.get(bin), undefined, snaps);
    tree?.delete(bin);
  }

  private split(ik: string, at: Extent): [string, string] {
    const parts = splitIndexKey(ik);
    if (parts === undefined) throw damaged(this.sb, at, 'record key has no subject');
    return parts;
  }
}

function absolute(sb: Superblock, x: Extent): number {
  return segmentOffset(x.segment, sb.segmentSize) + x.offset;
}

function damaged(sb: Superblock, x: Extent, what: string): StatefsError {
  return StatefsError.EINTEGRITY(what, { op: 'open', offset: absolute(sb, x) });
}
