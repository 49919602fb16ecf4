import type { BlockDevice } from '../device/device.js';
import { StatefsError } from '../errors.js';
import { decodeCheckpoint, decodeCheckpointChunk, type Checkpoint } from '../format/checkpoint.js';
import { Op } from '../format/opcodes.js';
import { decodeRecord, type DecodedRecord } from '../format/record.js';
import { PAYLOAD_DELETE, decodePayload, decodeTxnMark, type PayloadChunk } from '../format/txn-records.js';
import { valueOfRecord } from './entry-reader.js';
import { segmentOffset, type Superblock } from '../format/superblock.js';
import { BTree } from './btree.js';
import type { Entry } from './entry.js';
import type { Tree, Trees } from './keyspace.js';
import { SnapshotTable } from './snapshot-table.js';
import { MountTable } from './mount-table.js';
import { decodeMount, decodeReloc, decodeSnapDigest, decodeSnapId } from '../format/meta-records.js';
import { splitIndexKey } from './names.js';
import type { Extent } from './journal-writer.js';
import { scanLog, type LogScan, type LoggedRecord } from './log-reader.js';
import { readImageKind } from './superblock-io.js';
import { replayLegacy, type LegacyImage } from './legacy-v1.js';
import { NO_SEGMENT } from '../format/segment.js';

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

const NO_VALUE = new Uint8Array(0);

/**
 * Rebuild the index of a v3 image: load the checkpoint the superblock names (extents only), apply
 * the batches logged after it, then read the values of entries that came from the checkpoint.
 * Cost: the checkpoint plus the journal since it plus the live values — not lifetime writes.
 */
export async function replayImage(device: BlockDevice, legacySubject: string): Promise<Replayed> {
  const kind = await readImageKind(device);
  if (kind.kind === 'legacy-v1') return replayedLegacy(await replayLegacy(device, legacySubject), device.size);
  const sb = kind.sb;
  const index = new IndexBuilder(sb);
  const chunks: Uint8Array[] = [];
  const ckpt = { loaded: false };
  const txns = new Map<number, PendingTxn>();
  const snapshots = new SnapshotTable();
  const mounts = new MountTable();
  const ids = { next: 1 };
  /** Entries loaded from the checkpoint whose bytes are still to be read. */
  const unread = new Set<Entry>();
  const apply = (batch: LoggedRecord[]): void => {
    for (const { record, extent } of batch) {
      switch (record.opcode) {
        case Op.CKPT: {
          const c = decodeCheckpointChunk(record.value);
          if (c?.id !== sb.ckptId || ckpt.loaded) break; // an older or newer checkpoint: not ours
          if (c.index !== chunks.length) throw damaged(sb, extent, 'checkpoint chunks out of order');
          chunks.push(c.data.slice());
          if (chunks.length === c.count) {
            const decoded = decodeCheckpoint(Buffer.concat(chunks));
            ids.next = Math.max(ids.next, decoded.nextTxnId);
            loadCheckpoint(decoded, index, snapshots, mounts, unread, extent);
            ckpt.loaded = true;
          }
          break;
        }
        case Op.PUT: {
          requireCheckpoint(ckpt.loaded, sb, extent);
          index.set(Buffer.from(record.key).toString('latin1'), { value: record.value.slice(), extents: [extent] }, extent);
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
          index.relocate(`${moved.segment}:${moved.offset}`, extent, moved.value, unread);
          break;
        }
        case Op.SEGMENT:
        case Op.CHECKPOINT:
          break;
        default:
          throw StatefsError.ENOTSUP(`record opcode 0x${record.opcode.toString(16)} at byte ${absolute(sb, extent)}`, { op: 'open' });
      }
    }
  };
  const scan = await scanLog(device, sb, apply);
  if (!ckpt.loaded) throw StatefsError.EINTEGRITY('the checkpoint named by the superblock is incomplete', { op: 'open', offset: segmentOffset(sb.ckptSegment, sb.segmentSize) + sb.ckptOffset });
  const trees = [...index.trees.values(), ...snapshots.all().map((snap) => snap.tree)];
  await readValues(device, sb, trees, unread);
  const orphans = [...txns].map(([txnId, t]) => ({ txnId, subject: t.subject, offset: absolute(sb, t.at) }));
  return { sb, scan, index: index.trees, nextTxnId: ids.next, snapshots, mounts, orphans };
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
    else index.set(first.ik, { value: Buffer.concat(run.map((c) => c.chunk.data)), extents: run.map((c) => c.extent) }, first.extent);
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
    torn: undefined,
    chain,
    maxSegSeq: 0,
    batches: 0,
    records: legacy.records,
    bytes: 0,
  };
  return { sb, scan, index: legacy.index, nextTxnId: 1, snapshots: new SnapshotTable(), mounts: new MountTable(), orphans: [], legacy };
}

function requireCheckpoint(loaded: boolean, sb: Superblock, extent: Extent): void {
  if (!loaded) throw damaged(sb, extent, 'data record before the checkpoint is complete');
}

/** Read the values of checkpointed entries that survived replay, one segment read at a time. */
async function readValues(device: BlockDevice, sb: Superblock, trees: readonly Tree[], unread: Set<Entry>): Promise<void> {
  const bySegment = new Map<number, Entry[]>();
  // Only entries still indexed after replay: a superseded one may point into a reused segment.
  const live = new Set<Entry>();
  for (const tree of trees) for (const e of tree.values()) if (unread.has(e)) live.add(e);
  for (const e of live) {
    for (const x of e.extents) {
      let list = bySegment.get(x.segment);
      if (list === undefined) bySegment.set(x.segment, (list = []));
      if (list.at(-1) !== e) list.push(e);
    }
  }
  const cache = new Map<number, Uint8Array>();
  const segmentBytes = async (segment: number): Promise<Uint8Array> => {
    let buf = cache.get(segment);
    if (buf === undefined) {
      if (segment >= sb.segmentCount) throw StatefsError.EINTEGRITY(`checkpoint names segment ${segment}`, { op: 'open' });
      buf = await device.read(segmentOffset(segment, sb.segmentSize), sb.segmentSize);
      cache.clear(); // keep one segment in memory at a time
      cache.set(segment, buf);
    }
    return buf;
  };
  for (const segment of [...bySegment.keys()].sort((a, b) => a - b)) {
    for (const e of bySegment.get(segment) ?? []) {
      if (!unread.has(e)) continue;
      const parts: Uint8Array[] = [];
      for (const x of e.extents) {
        const buf = await segmentBytes(x.segment);
        const r = decodeRecord(buf, x.offset, Math.min(buf.length, x.offset + x.length));
        if (!r.ok || r.record.length !== x.length) throw damaged(sb, x, `record holding a live value is damaged (${r.ok ? 'length' : r.fault})`);
        const value = valueOfRecord(r.record);
        if (value === undefined) throw damaged(sb, x, `live value points at a record with opcode 0x${r.record.opcode.toString(16)}`);
        parts.push(value);
      }
      e.value = parts.length === 1 && parts[0] !== undefined ? parts[0].slice() : Buffer.concat(parts);
      unread.delete(e);
    }
  }
}

/** Load a checkpoint: live entries, snapshots (as differences from live) and mounts. Values are read later. */
function loadCheckpoint(ckpt: Checkpoint, index: IndexBuilder, snapshots: SnapshotTable, mounts: MountTable, unread: Set<Entry>, at: Extent): void {
  // The same record may be named by the live state and by snapshots: one Entry object per record.
  const entryFor = (extents: Extent[]): Entry => {
    let entry = index.byRecord.get(recordId(extents[0]));
    if (entry === undefined) {
      entry = { value: NO_VALUE, extents };
      unread.add(entry);
    }
    return entry;
  };
  for (const e of ckpt.entries) index.set(e.key, entryFor(e.extents), at);
  const register = (e: Entry): void => {
    index.byRecord.set(recordId(e.extents[0]), e);
  };
  snapshots.nextId = Math.max(snapshots.nextId, ckpt.nextSnapId);
  for (const s of ckpt.snapshots) {
    const tree = index.trees.get(s.subject)?.clone() ?? new BTree<string, Entry>();
    for (const d of s.diff) {
      if (d.extents === null) tree.delete(d.key);
      else {
        const entry = entryFor(d.extents);
        register(entry);
        tree.set(d.key, entry);
      }
    }
    snapshots.add({ subject: s.subject, name: s.name, id: s.id, tree, digest: s.digest, at: absolute(index.sb, at) });
  }
  for (const m of ckpt.mounts) mounts.add({ ...m, at: absolute(index.sb, at) });
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
      const tree = index.trees.get(subject)?.clone() ?? new BTree<string, Entry>();
      snapshots.add({ subject, name, id, tree, digest: undefined, at: absolute(sb, at) });
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
      index.trees.set(subject, snap.tree.clone());
      return;
    }
    case Op.MOUNT: {
      const target = decodeMount(record.value);
      if (target === undefined) throw damaged(sb, at, 'malformed MOUNT');
      mounts.add({ caller: subject, path: name, ...target, at: absolute(sb, at) });
      return;
    }
    default:
      mounts.remove(subject, name);
  }
}

/** Builds the per-subject trees from index keys (`subject NUL key`) found in records and checkpoints. */
class IndexBuilder {
  readonly trees: Trees = new Map();
  /** Every entry seen, by its first record, so a RELOC record can find what it moved. */
  readonly byRecord = new Map<string, Entry>();
  constructor(readonly sb: Superblock) {}

  set(ik: string, entry: Entry, at: Extent): void {
    const [subject, bin] = this.split(ik, at);
    let tree = this.trees.get(subject);
    if (tree === undefined) this.trees.set(subject, (tree = new BTree<string, Entry>()));
    tree.set(bin, entry);
    this.byRecord.set(recordId(entry.extents[0]), entry);
  }

  /** GC moved the record at `from` to `to`: every tree holding that entry sees the new place. */
  relocate(from: string, to: Extent, value: Uint8Array, unread: Set<Entry>): void {
    const entry = this.byRecord.get(from);
    if (entry === undefined) return; // nothing holds it any more
    this.byRecord.delete(from);
    entry.extents = [to];
    entry.value = value.slice();
    unread.delete(entry);
    this.byRecord.set(recordId(to), entry);
  }

  delete(ik: string, at: Extent): void {
    const [subject, bin] = this.split(ik, at);
    this.trees.get(subject)?.delete(bin);
  }

  private split(ik: string, at: Extent): [string, string] {
    const parts = splitIndexKey(ik);
    if (parts === undefined) throw damaged(this.sb, at, 'record key has no subject');
    return parts;
  }
}

function recordId(x: Extent | undefined): string {
  return x === undefined ? '' : `${x.segment}:${x.offset}`;
}

function absolute(sb: Superblock, x: Extent): number {
  return segmentOffset(x.segment, sb.segmentSize) + x.offset;
}

function damaged(sb: Superblock, x: Extent, what: string): StatefsError {
  return StatefsError.EINTEGRITY(what, { op: 'open', offset: absolute(sb, x) });
}
