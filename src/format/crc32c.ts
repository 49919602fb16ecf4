import { createRequire } from 'node:module';
import type { crc32c as HardwareCrc32cFn } from '@node-rs/crc32';
import type { buf as BufFn } from 'crc-32';

// crc-32 (SheetJS) ships CRC-32C as the CommonJS module `crc-32/crc32c` with the same shape as its
// CRC-32 module, whose types we borrow. Checked at load: CRC-32C("123456789") is 0xE3069283.
const require = createRequire(import.meta.url);
const crc32cModule = require('crc-32/crc32c') as { buf: typeof BufFn };
const CHECK_INPUT = new TextEncoder().encode('123456789');
const CHECK_VALUE = 0xe3069283;

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `data`, as an unsigned 32-bit number. */
export function crc32c(data: Uint8Array): number {
  return crc32cModule.buf(data) >>> 0;
}

if (crc32c(CHECK_INPUT) !== CHECK_VALUE) {
  throw new Error('crc-32/crc32c does not compute CRC-32C');
}

type Crc32cFn = (data: Uint8Array) => number;

/**
 * @node-rs/crc32: CRC-32C in the CPU's own instructions (SSE 4.2, ARMv8), ~6 GB/s here against
 * crc-32's ~1.6, but a call costs ~150 ns more, so it only pays from a few hundred bytes. Its
 * binary comes in a per-platform package; where there is none, or it does not compute CRC-32C,
 * `crc32cBulk` is `crc32c`.
 */
function loadHardwareCrc32c(): Crc32cFn | undefined {
  try {
    // Its loader picks the platform's binary and throws if there is none; checked below.
    const native = (require('@node-rs/crc32') as { crc32c: typeof HardwareCrc32cFn }).crc32c;
    const hardware = (data: Uint8Array): number => native(data) >>> 0;
    return hardware(CHECK_INPUT) === CHECK_VALUE ? hardware : undefined;
  } catch {
    return undefined;
  }
}

/** Below this many bytes `crc32c` is the faster (the native call's own cost). */
const BULK_FROM = 512;
const hardwareCrc32c = loadHardwareCrc32c();
/** Whether `crc32cBulk` runs in hardware here. */
export const crc32cInHardware = hardwareCrc32c !== undefined;

/** `crc32c`, for data that may be large: in hardware when the platform has a binary for it. */
export function crc32cBulk(data: Uint8Array): number {
  return hardwareCrc32c !== undefined && data.length >= BULK_FROM ? hardwareCrc32c(data) : crc32c(data);
}

/*
 * Combining CRCs (Mark Adler's method in zlib's crc32_combine): over GF(2), in CRC-32C's reflected
 * bit order, crc(A ‖ B) = crc(A) · x^(8·|B|) mod P ⊕ crc(B). Multiplying by x^(8·2^k) is a linear
 * map of the 32-bit CRC, kept as four 256-entry tables (one per byte of the CRC) for each k, so
 * multiplying by x^(8·n) is a few table lookups per set bit of n.
 */
const POLY = 0x82f63b78;

/** a · b mod P, both polynomials in reflected bit order (bit 31 is x^0). */
function multModP(a: number, b: number): number {
  let product = 0;
  for (let m = 0x80000000; m !== 0; m >>>= 1) {
    if ((a & m) !== 0) product ^= b;
    b = (b & 1) !== 0 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return product >>> 0;
}

/** `SHIFT[k]`: the tables of multiplying by x^(8·2^k), k = 0..31, 1,024 entries each. Built on first use (~1 ms). */
let shiftTables: Uint32Array | undefined;

function shifts(): Uint32Array {
  if (shiftTables !== undefined) return shiftTables;
  const tables = new Uint32Array(32 * 1024);
  let power = multModP(0x40000000, 0x40000000); // x^2
  power = multModP(power, power); // x^4
  power = multModP(power, power); // x^8: one zero byte
  for (let k = 0; k < 32; k++) {
    for (let byte = 0; byte < 4; byte++) {
      const base = k * 1024 + byte * 256;
      // Linear: the entry for b is the XOR of the entries for b's bits.
      for (let bit = 0; bit < 8; bit++) tables[base + (1 << bit)] = multModP(power, (1 << (8 * byte + bit)) >>> 0);
      for (let b = 3; b < 256; b++) {
        const low = b & -b;
        if (low !== b) tables[base + b] = (tables[base + low] ?? 0) ^ (tables[base + (b ^ low)] ?? 0);
      }
    }
    power = multModP(power, power);
  }
  return (shiftTables = tables);
}

/** crc(A ‖ B) from crc(A), crc(B) and B's length in bytes (below 2^32). */
export function crc32cCombine(crcA: number, crcB: number, lengthB: number): number {
  const tables = shifts();
  let crc = crcA;
  for (let k = 0, n = lengthB >>> 0; n !== 0; k++, n >>>= 1) {
    if ((n & 1) === 0) continue;
    const base = k * 1024;
    crc = (tables[base + (crc & 0xff)] ?? 0) ^ (tables[base + 256 + ((crc >>> 8) & 0xff)] ?? 0) ^ (tables[base + 512 + ((crc >>> 16) & 0xff)] ?? 0) ^ (tables[base + 768 + (crc >>> 24)] ?? 0);
  }
  return (crc ^ crcB) >>> 0;
}
