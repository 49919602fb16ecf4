import { StatefsError } from '../errors.js';
import { getU64, setU64, view } from './bytes.js';

/*
 * Index checkpoint. Its payload is split into CKPT records (opcode 0x30), key empty, value:
 *
 *   0   8  ckpt_id      equals the superblock's ckpt_id
 *   8   4  chunk_index  0-based
 *   12  4  chunk_count
 *   16  n  payload bytes (at most CKPT_CHUNK)
 *
 * Payload, little-endian:
 *
 *   0   1  version        1
 *   1   8  next_txn_id    transaction ids below this were used
 *   9   4  entry_count
 *   then entry_count entries, in index-key order:
 *       2  key_len, then key (subject NUL key bytes)
 *       1  extent_count (1 for PUT, one per PAYLOAD chunk for transaction values)
 *       extent_count x (4 segment, 4 offset, 4 length): records holding the value
 */
export const CKPT_CHUNK = 64 * 1024;
const CKPT_HEADER = 16;

export interface CheckpointExtent {
  segment: number;
  offset: number;
  length: number;
}

export interface CheckpointEntry {
  key: string; // binary string (one char per byte)
  extents: CheckpointExtent[];
}

export interface Checkpoint {
  nextTxnId: number;
  entries: CheckpointEntry[];
}

export function encodeCheckpoint(ckpt: Checkpoint): Uint8Array {
  let size = 13;
  for (const e of ckpt.entries) size += 3 + e.key.length + 12 * e.extents.length;
  const out = new Uint8Array(size);
  const v = view(out);
  v.setUint8(0, 1);
  setU64(v, 1, ckpt.nextTxnId);
  v.setUint32(9, ckpt.entries.length, true);
  let at = 13;
  for (const e of ckpt.entries) {
    v.setUint16(at, e.key.length, true);
    out.set(Buffer.from(e.key, 'latin1'), at + 2);
    at += 2 + e.key.length;
    v.setUint8(at++, e.extents.length);
    for (const x of e.extents) {
      v.setUint32(at, x.segment, true);
      v.setUint32(at + 4, x.offset, true);
      v.setUint32(at + 8, x.length, true);
      at += 12;
    }
  }
  return out;
}

export function decodeCheckpoint(buf: Uint8Array): Checkpoint {
  const bad = (what: string): StatefsError => StatefsError.EINTEGRITY(`checkpoint payload: ${what}`, { op: 'open' });
  if (buf.length < 13) throw bad('too short');
  const v = view(buf);
  if (v.getUint8(0) !== 1) throw bad(`unknown version ${v.getUint8(0)}`);
  const nextTxnId = getU64(v, 1);
  const count = v.getUint32(9, true);
  const entries: CheckpointEntry[] = [];
  let at = 13;
  for (let i = 0; i < count; i++) {
    if (at + 2 > buf.length) throw bad('truncated entry');
    const keyLen = v.getUint16(at, true);
    if (at + 3 + keyLen > buf.length) throw bad('truncated key');
    const key = Buffer.from(buf.subarray(at + 2, at + 2 + keyLen)).toString('latin1');
    at += 2 + keyLen;
    const n = v.getUint8(at++);
    if (n === 0 || at + 12 * n > buf.length) throw bad('bad extent list');
    const extents: CheckpointExtent[] = [];
    for (let j = 0; j < n; j++) {
      extents.push({ segment: v.getUint32(at, true), offset: v.getUint32(at + 4, true), length: v.getUint32(at + 8, true) });
      at += 12;
    }
    entries.push({ key, extents });
  }
  if (at !== buf.length) throw bad('trailing bytes');
  return { nextTxnId, entries };
}

export function encodeCheckpointChunk(id: number, index: number, count: number, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(CKPT_HEADER + data.length);
  const v = view(out);
  setU64(v, 0, id);
  v.setUint32(8, index, true);
  v.setUint32(12, count, true);
  out.set(data, CKPT_HEADER);
  return out;
}

export function decodeCheckpointChunk(value: Uint8Array): { id: number; index: number; count: number; data: Uint8Array } | undefined {
  if (value.length < CKPT_HEADER) return undefined;
  const v = view(value);
  return { id: getU64(v, 0), index: v.getUint32(8, true), count: v.getUint32(12, true), data: value.subarray(CKPT_HEADER) };
}
