import { copyOut } from '../../engine/value-pool.js';
import { StatefsError } from '../../errors.js';

// Layouts: see wire-writer.ts. Every read is bounds-checked; a length is never trusted.

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Reads primitives from one frame body; anything short, out of range or trailing is EINVAL. */
export class WireReader {
  private readonly dv: DataView;
  private at = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly what: string,
  ) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  private fail(why: string): StatefsError {
    return StatefsError.EINVAL(`${this.what}: ${why}`, { op: 'decode', offset: this.at });
  }

  private need(n: number): number {
    if (n > this.buf.length - this.at) throw this.fail(`needs ${n} bytes, ${this.buf.length - this.at} left`);
    const at = this.at;
    this.at += n;
    return at;
  }

  u8(): number {
    return this.dv.getUint8(this.need(1));
  }

  u16(): number {
    return this.dv.getUint16(this.need(2), true);
  }

  u32(): number {
    return this.dv.getUint32(this.need(4), true);
  }

  u64(): number {
    const v = this.dv.getBigUint64(this.need(8), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.fail(`u64 ${v} over 2^53`);
    return Number(v);
  }

  flag(): boolean {
    const v = this.u8();
    if (v > 1) throw this.fail(`flag ${v} is neither 0 nor 1`);
    return v === 1;
  }

  str(): string {
    const n = this.u16();
    const at = this.need(n);
    try {
      return utf8.decode(this.buf.subarray(at, at + n));
    } catch (cause) {
      throw StatefsError.EINVAL(`${this.what}: invalid UTF-8`, { op: 'decode', offset: at, cause });
    }
  }

  /** A copy the caller owns (small ones share a slab, as the store's own reads do: see `copyOut`). */
  bytes(): Uint8Array {
    const n = this.u32();
    const at = this.need(n);
    return copyOut(this.buf, at, n);
  }

  optStr(): string | undefined {
    return this.flag() ? this.str() : undefined;
  }

  /** A list count, checked against what is left: each element takes at least `minBytes`. */
  count(minBytes: number): number {
    const n = this.u32();
    if (n * minBytes > this.buf.length - this.at) throw this.fail(`count ${n} exceeds the remaining bytes`);
    return n;
  }

  strList(): string[] {
    const n = this.count(2);
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(this.str());
    return out;
  }

  /** The body must be consumed exactly. */
  end(): void {
    if (this.at !== this.buf.length) throw this.fail(`${this.buf.length - this.at} trailing bytes`);
  }
}
