import { getU64, setU64, view } from './bytes.js';

/*
 * Transaction records (the v2 set). All keys and values little-endian.
 *
 * PREPARE (0x10)  key: subject          value: txn_id u64 | op_count u32
 * PAYLOAD (0x11)  key: subject NUL key  value: txn_id u64 | kind u8 (1 put, 2 delete)
 *                                              | chunk_index u16 | chunk_count u16 | data
 *                 A value longer than TXN_CHUNK bytes is split into chunk_count PAYLOAD records.
 *                 A delete is one PAYLOAD with chunk_count 1 and no data.
 * COMMIT  (0x12)  key: subject          value: txn_id u64 | op_count u32
 * ABORT   (0x13)  key: subject          value: txn_id u64 | op_count u32 (written by fsck repair)
 *
 * The engine writes PREPARE, the PAYLOADs and COMMIT together in one append; replay applies a
 * transaction only when its COMMIT is reached, and drops a PREPARE that never got one.
 */
export const TXN_CHUNK = 16 * 1024;
export const PAYLOAD_HEADER = 13;
export const PAYLOAD_PUT = 1;
export const PAYLOAD_DELETE = 2;

export interface TxnMark {
  txnId: number;
  opCount: number;
}

export function encodeTxnMark(m: TxnMark): Uint8Array {
  const out = new Uint8Array(12);
  const v = view(out);
  setU64(v, 0, m.txnId);
  v.setUint32(8, m.opCount, true);
  return out;
}

export function decodeTxnMark(value: Uint8Array): TxnMark | undefined {
  if (value.length !== 12) return undefined;
  const v = view(value);
  return { txnId: getU64(v, 0), opCount: v.getUint32(8, true) };
}

export interface PayloadChunk {
  txnId: number;
  kind: typeof PAYLOAD_PUT | typeof PAYLOAD_DELETE;
  index: number;
  count: number;
  data: Uint8Array;
}

export function encodePayload(p: PayloadChunk): Uint8Array {
  const out = new Uint8Array(PAYLOAD_HEADER + p.data.length);
  const v = view(out);
  setU64(v, 0, p.txnId);
  v.setUint8(8, p.kind);
  v.setUint16(9, p.index, true);
  v.setUint16(11, p.count, true);
  out.set(p.data, PAYLOAD_HEADER);
  return out;
}

export function decodePayload(value: Uint8Array): PayloadChunk | undefined {
  if (value.length < PAYLOAD_HEADER) return undefined;
  const v = view(value);
  const kind = v.getUint8(8);
  if (kind !== PAYLOAD_PUT && kind !== PAYLOAD_DELETE) return undefined;
  const index = v.getUint16(9, true);
  const count = v.getUint16(11, true);
  if (count === 0 || index >= count) return undefined;
  return { txnId: getU64(v, 0), kind, index, count, data: value.subarray(PAYLOAD_HEADER) };
}
