import { createRequire } from 'node:module';

/*
 * A small record encoder written from docs/storage/statefs-v3.md, independent of src/format, so
 * tests can build images (legacy v1 journals, damaged or hand-extended v3 logs) from the
 * documented format: magic 0x4E585346 | opcode u8 | key_len u16 | value_len u32 | key | value |
 * CRC-32C of everything before it, little-endian.
 */
const crc = (createRequire(import.meta.url)('crc-32/crc32c') as { buf: (b: Uint8Array) => number }).buf;

export function record(opcode: number, key: Buffer, value: Buffer): Buffer {
  const out = Buffer.alloc(15 + key.length + value.length);
  out.writeUInt32LE(0x4e585346, 0);
  out.writeUInt8(opcode, 4);
  out.writeUInt16LE(key.length, 5);
  out.writeUInt32LE(value.length, 7);
  key.copy(out, 11);
  value.copy(out, 11 + key.length);
  out.writeUInt32LE(crc(out.subarray(0, out.length - 4)) >>> 0, out.length - 4);
  return out;
}

/** The CRC-32C the records carry (for tests that alter a record and re-seal it). */
export function crc32cOf(bytes: Uint8Array): number {
  return crc(bytes) >>> 0;
}

export function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
