import { StatefsError } from '../../errors.js';

/*
 * Primitive encodings of the wire protocol (all little-endian):
 *
 *   u8 / u16 / u32     unsigned integers
 *   u64                unsigned integer below 2^53 (a JS safe integer)
 *   flag               u8, 0 = false/absent, 1 = true/present; any other value is EINVAL
 *   string             u16 byte_length | byte_length bytes of UTF-8
 *   bytes              u32 byte_length | byte_length bytes
 *   opt string         flag | string (only when flag = 1)
 *   list of X          u32 count | count × X
 */
export const MAX_STRING_BYTES = 0xffff;

const utf8 = new TextEncoder();

function checkUint(value: number, max: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw StatefsError.EINVAL(`${what} ${value} is not an integer in 0..${max}`, { op: 'encode' });
  }
}

/** Appends primitives to a growing buffer; every value is range-checked (EINVAL). */
export class WireWriter {
  private buf = new Uint8Array(64);
  private dv = new DataView(this.buf.buffer);
  private len = 0;

  private reserve(n: number): number {
    const at = this.len;
    if (at + n > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < at + n) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, at));
      this.buf = next;
      this.dv = new DataView(next.buffer);
    }
    this.len = at + n;
    return at;
  }

  u8(value: number): this {
    checkUint(value, 0xff, 'u8');
    const at = this.reserve(1);
    this.dv.setUint8(at, value);
    return this;
  }

  u16(value: number): this {
    checkUint(value, 0xffff, 'u16');
    const at = this.reserve(2);
    this.dv.setUint16(at, value, true);
    return this;
  }

  u32(value: number): this {
    checkUint(value, 0xffff_ffff, 'u32');
    const at = this.reserve(4);
    this.dv.setUint32(at, value, true);
    return this;
  }

  u64(value: number): this {
    checkUint(value, Number.MAX_SAFE_INTEGER, 'u64');
    const at = this.reserve(8);
    this.dv.setBigUint64(at, BigInt(value), true);
    return this;
  }

  flag(value: boolean): this {
    return this.u8(value ? 1 : 0);
  }

  str(value: string): this {
    const data = utf8.encode(value);
    if (data.length > MAX_STRING_BYTES) {
      throw StatefsError.EINVAL(`string of ${data.length} bytes over ${MAX_STRING_BYTES}`, { op: 'encode' });
    }
    this.u16(data.length);
    const at = this.reserve(data.length); // reserve first: it may replace this.buf
    this.buf.set(data, at);
    return this;
  }

  bytes(value: Uint8Array): this {
    this.u32(value.length);
    const at = this.reserve(value.length);
    this.buf.set(value, at);
    return this;
  }

  optStr(value: string | undefined): this {
    this.flag(value !== undefined);
    return value === undefined ? this : this.str(value);
  }

  strList(values: readonly string[]): this {
    this.u32(values.length);
    for (const v of values) this.str(v);
    return this;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}
