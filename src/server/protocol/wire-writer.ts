import { putU32, putU64 } from '../../format/bytes.js';
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

/** A little-endian u16 into `buf` at `at` with byte stores (no `DataView` per frame: see `putU32`). */
function putU16(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value & 0xff;
  buf[at + 1] = value >>> 8;
}

function checkUint(value: number, max: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw StatefsError.EINVAL(`${what} ${value} is not an integer in 0..${max}`, { op: 'encode' });
  }
}

/**
 * Appends primitives to a growing buffer; every value is range-checked (EINVAL). The buffer comes
 * from Node's Buffer pool (`allocUnsafe`: every byte handed out is written first), so a small frame
 * costs no allocation of its own; give a capacity that fits the whole frame to avoid growing it.
 */
export class WireWriter {
  private buf: Uint8Array;
  private len: number;

  /** `head` bytes at the start are left for the caller to fill (a frame header, see `bytesWritten`). */
  constructor(capacity = 64, head = 0) {
    this.buf = Buffer.allocUnsafe(Math.max(capacity, head, 16));
    this.len = head;
  }

  private reserve(n: number): number {
    const at = this.len;
    if (at + n > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < at + n) size *= 2;
      const next = Buffer.allocUnsafe(size);
      next.set(this.buf.subarray(0, at));
      this.buf = next;
    }
    this.len = at + n;
    return at;
  }

  u8(value: number): this {
    checkUint(value, 0xff, 'u8');
    const at = this.reserve(1); // first: it may replace `this.buf`
    this.buf[at] = value;
    return this;
  }

  u16(value: number): this {
    checkUint(value, 0xffff, 'u16');
    const at = this.reserve(2);
    putU16(this.buf, at, value);
    return this;
  }

  u32(value: number): this {
    checkUint(value, 0xffff_ffff, 'u32');
    const at = this.reserve(4);
    putU32(this.buf, at, value);
    return this;
  }

  u64(value: number): this {
    checkUint(value, Number.MAX_SAFE_INTEGER, 'u64');
    const at = this.reserve(8);
    putU64(this.buf, at, value);
    return this;
  }

  flag(value: boolean): this {
    return this.u8(value ? 1 : 0);
  }

  str(value: string): this {
    // A caller's name that is not a string (a String object, a number) or holds an unpaired
    // surrogate would reach the store as some other name: UTF-8 has no bytes for a lone
    // surrogate (the encoder writes U+FFFD), so two different bad keys would name one key.
    if (typeof value !== 'string') throw StatefsError.EINVAL('a name must be a string', { op: 'encode' });
    // Most strings on the wire (subjects, keys, names) are ASCII: copy their char codes straight
    // into the buffer; anything else is encoded as UTF-8 in place.
    const chars = value.length;
    if (chars <= MAX_STRING_BYTES) {
      const at = this.reserve(2 + chars);
      const buf = this.buf;
      let i = 0;
      for (; i < chars; i++) {
        const c = value.charCodeAt(i);
        if (c > 0x7f) break;
        buf[at + 2 + i] = c;
      }
      if (i === chars) {
        putU16(buf, at, chars);
        return this;
      }
      this.len = at; // not ASCII: take the general path
    }
    return this.utf8Str(value);
  }

  private utf8Str(value: string): this {
    if (!value.isWellFormed()) throw StatefsError.EINVAL('a name holds an unpaired UTF-16 surrogate', { op: 'encode' });
    const at = this.reserve(2 + value.length * 3); // UTF-8 takes at most 3 bytes per UTF-16 unit
    const { written } = utf8.encodeInto(value, this.buf.subarray(at + 2));
    if (written > MAX_STRING_BYTES) {
      this.len = at;
      // Every string on the wire is a name (subject, key, prefix, snapshot, mount path) or a
      // token: too long for its u16 length is the code the store gives a name too long.
      throw StatefsError.ENAMETOOLONG(`a string of ${written} bytes (at most ${MAX_STRING_BYTES} on the wire)`, { op: 'encode' });
    }
    putU16(this.buf, at, written);
    this.len = at + 2 + written;
    return this;
  }

  bytes(value: Uint8Array): this {
    if (!(value instanceof Uint8Array)) throw StatefsError.EINVAL('a value must be a Uint8Array or a string', { op: 'encode' });
    this.u32(value.length);
    const at = this.reserve(value.length);
    this.buf.set(value, at);
    return this;
  }

  /** Bytes as they are, with no length before them. */
  raw(value: Uint8Array): this {
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

  /** Bytes written so far, the head included: a view of the writer's buffer (no copy). */
  bytesWritten(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}
