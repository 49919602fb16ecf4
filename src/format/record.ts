import { crc32c } from './crc32c.js';

/*
 * Record framing (spec section 4), all integers little-endian:
 *
 *   offset  size  field
 *   0       4     magic      0x4E585346 ("NXSF"; bytes on disk 46 53 58 4E)
 *   4       1     opcode     see opcodes.ts
 *   5       2     key_len
 *   7       4     value_len
 *   11      k     key
 *   11+k    v     value
 *   11+k+v  4     crc32c     CRC-32C of bytes [0, 11+k+v)
 *
 * Header 11 bytes, overhead 15 bytes.
 */
export const RECORD_MAGIC = 0x4e585346;
export const RECORD_HEADER = 11;
export const RECORD_OVERHEAD = 15;
/** No record the engine writes has a value this large; a bigger length is damage, not data. */
export const MAX_RECORD_VALUE = 1 << 20;

export interface DecodedRecord {
  opcode: number;
  key: Uint8Array;
  value: Uint8Array;
  /** Bytes the record occupies, framing included. */
  length: number;
}

/** Why bytes at an offset are not a record. `zero` means unwritten space (all-zero header). */
export type RecordFault = 'zero' | 'magic' | 'truncated' | 'length' | 'crc';

export type DecodeResult = { ok: true; record: DecodedRecord } | { ok: false; fault: RecordFault };

export function recordLength(keyLen: number, valueLen: number): number {
  return RECORD_OVERHEAD + keyLen + valueLen;
}

/** Write one record into `out` at `at`; returns the bytes written. `out` must have room. */
export function encodeRecordInto(out: Uint8Array, at: number, opcode: number, key: Uint8Array, value: Uint8Array): number {
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(at, RECORD_MAGIC, true);
  view.setUint8(at + 4, opcode);
  view.setUint16(at + 5, key.length, true);
  view.setUint32(at + 7, value.length, true);
  out.set(key, at + RECORD_HEADER);
  out.set(value, at + RECORD_HEADER + key.length);
  const body = RECORD_HEADER + key.length + value.length;
  view.setUint32(at + body, crc32c(out.subarray(at, at + body)), true);
  return body + 4;
}

export function encodeRecord(opcode: number, key: Uint8Array, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(recordLength(key.length, value.length));
  encodeRecordInto(out, 0, opcode, key, value);
  return out;
}

/**
 * Decode the record at `at` in `buf`, never reading at or past `end`. Trusts no length: a length
 * that runs past `end` or over `MAX_RECORD_VALUE` is a fault, as is a CRC mismatch. The returned
 * key and value are views into `buf`.
 */
export function decodeRecord(buf: Uint8Array, at: number, end: number = buf.length): DecodeResult {
  if (at + RECORD_HEADER > end) return { ok: false, fault: isZero(buf, at, Math.min(end, at + RECORD_HEADER)) ? 'zero' : 'truncated' };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = view.getUint32(at, true);
  if (magic !== RECORD_MAGIC) return { ok: false, fault: magic === 0 && isZero(buf, at, at + RECORD_HEADER) ? 'zero' : 'magic' };
  const keyLen = view.getUint16(at + 5, true);
  const valueLen = view.getUint32(at + 7, true);
  if (valueLen > MAX_RECORD_VALUE) return { ok: false, fault: 'length' };
  const body = RECORD_HEADER + keyLen + valueLen;
  if (at + body + 4 > end) return { ok: false, fault: 'truncated' };
  const crc = view.getUint32(at + body, true);
  if (crc32c(buf.subarray(at, at + body)) !== crc) return { ok: false, fault: 'crc' };
  return {
    ok: true,
    record: {
      opcode: view.getUint8(at + 4),
      key: buf.subarray(at + RECORD_HEADER, at + RECORD_HEADER + keyLen),
      value: buf.subarray(at + RECORD_HEADER + keyLen, at + body),
      length: body + 4,
    },
  };
}

function isZero(buf: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] !== 0) return false;
  return true;
}
