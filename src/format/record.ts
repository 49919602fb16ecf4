import { putU32, u32At } from './bytes.js';
import { crc32c } from './crc32c.js';
import { Op } from './opcodes.js';

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

const EMPTY = new Uint8Array(0);

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

/**
 * Write one record into `out` at `at`; returns the bytes written. `out` must have room. The value
 * is `valueHead` followed by `value` (a caller with a header for a slice of a large buffer need
 * not copy the slice to prepend it).
 */
export function encodeRecordInto(out: Uint8Array, at: number, opcode: number, key: Uint8Array, value: Uint8Array, valueHead: Uint8Array = EMPTY): number {
  // Byte stores rather than a DataView: records are encoded once per write, and a DataView per
  // record shows up in profiles of bulk loads.
  const valueLength = valueHead.length + value.length;
  putU32(out, at, RECORD_MAGIC);
  out[at + 4] = opcode;
  out[at + 5] = key.length & 0xff;
  out[at + 6] = key.length >>> 8;
  putU32(out, at + 7, valueLength);
  out.set(key, at + RECORD_HEADER);
  out.set(valueHead, at + RECORD_HEADER + key.length);
  out.set(value, at + RECORD_HEADER + key.length + valueHead.length);
  const body = RECORD_HEADER + key.length + valueLength;
  putU32(out, at + body, crc32c(out.subarray(at, at + body)));
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
  const magic = u32At(buf, at);
  if (magic !== RECORD_MAGIC) return { ok: false, fault: magic === 0 && isZero(buf, at, at + RECORD_HEADER) ? 'zero' : 'magic' };
  const keyLen = u16At(buf, at + 5);
  const valueLen = u32At(buf, at + 7);
  if (valueLen > MAX_RECORD_VALUE) return { ok: false, fault: 'length' };
  const body = RECORD_HEADER + keyLen + valueLen;
  if (at + body + 4 > end) return { ok: false, fault: 'truncated' };
  const crc = u32At(buf, at + body);
  if (crc32c(buf.subarray(at, at + body)) !== crc) return { ok: false, fault: 'crc' };
  return {
    ok: true,
    record: {
      opcode: buf[at + 4] ?? 0,
      key: buf.subarray(at + RECORD_HEADER, at + RECORD_HEADER + keyLen),
      value: buf.subarray(at + RECORD_HEADER + keyLen, at + body),
      length: body + 4,
    },
  };
}

/**
 * The length the record header at `at` in `buf` claims (framing included), or undefined if there
 * is no header there (too short, another magic, a value over `MAX_RECORD_VALUE`). Nothing is
 * checked but the header: `decodeRecord` the bytes it names.
 */
export function claimedRecordLength(buf: Uint8Array, at: number): number | undefined {
  if (at + RECORD_HEADER > buf.length || u32At(buf, at) !== RECORD_MAGIC) return undefined;
  const valueLen = u32At(buf, at + 7);
  if (valueLen > MAX_RECORD_VALUE) return undefined;
  return RECORD_OVERHEAD + u16At(buf, at + 5) + valueLen;
}

/**
 * Where the value of the PUT record of exactly `length` bytes at `at` in `buf` starts (it ends
 * where the record's CRC does: 4 bytes before the record's end), checked like `decodeRecord`
 * (bounds, lengths, CRC) but without allocating. -1 for anything else — damage, another opcode,
 * another length — which the caller decodes with `decodeRecord` to learn what it is. For reading
 * millions of values at open.
 */
export function putValueStart(buf: Uint8Array, at: number, length: number): number {
  if (at + length > buf.length || length < RECORD_OVERHEAD) return -1;
  if (u32At(buf, at) !== RECORD_MAGIC || buf[at + 4] !== Op.PUT) return -1;
  const keyLen = u16At(buf, at + 5);
  const valueLen = u32At(buf, at + 7);
  const body = RECORD_HEADER + keyLen + valueLen;
  if (valueLen > MAX_RECORD_VALUE || body + 4 !== length) return -1;
  if (crc32c(buf.subarray(at, at + body)) !== u32At(buf, at + body)) return -1;
  return at + RECORD_HEADER + keyLen;
}

/** Little-endian u16 at `at`; the caller has checked the bounds. */
function u16At(buf: Uint8Array, at: number): number {
  return (buf[at] ?? 0) | ((buf[at + 1] ?? 0) << 8);
}

function isZero(buf: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] !== 0) return false;
  return true;
}
