import { createRequire } from 'node:module';
import type { buf as BufFn } from 'crc-32';

// crc-32 (SheetJS) ships CRC-32C as the CommonJS module `crc-32/crc32c` with the same shape as its
// CRC-32 module, whose types we borrow. Checked at load: CRC-32C("123456789") is 0xE3069283.
const require = createRequire(import.meta.url);
const crc32cModule = require('crc-32/crc32c') as { buf: typeof BufFn };

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `data`, as an unsigned 32-bit number. */
export function crc32c(data: Uint8Array): number {
  return crc32cModule.buf(data) >>> 0;
}

/** CRC-32C of the bytes whose CRC-32C is `previous` followed by `data` (0 for none before). */
export function crc32cAppend(previous: number, data: Uint8Array): number {
  return crc32cModule.buf(data, previous | 0) >>> 0;
}

if (crc32c(new TextEncoder().encode('123456789')) !== 0xe3069283) {
  throw new Error('crc-32/crc32c does not compute CRC-32C');
}
if (crc32cAppend(crc32c(new TextEncoder().encode('1234')), new TextEncoder().encode('56789')) !== 0xe3069283) {
  throw new Error('crc-32/crc32c does not continue a CRC-32C');
}
