import { copyOut } from '../../engine/value-pool.js';
import { u32At } from '../../format/bytes.js';
import { StatefsError } from '../../errors.js';

// Layouts: see wire-writer.ts. Every read is bounds-checked; a length is never trusted.

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Reads primitives from one frame body; anything short, out of range or trailing is EINVAL.
 * Integers are read byte by byte, as `format/bytes.ts` writes them: a `DataView` per frame cost
 * 0.2 µs to make in isolation and more in the daemon (a small typed array's buffer is made its own
 * for it); with the writer's, it was part of ~10 µs of daemon CPU per GET (docs/performance.md).
 */
export class WireReader {
  private at = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly what: string,
  ) {}

  /** The byte at `i`, which `need` has checked is in the body. */
  private byte(i: number): number {
    return this.buf[i] ?? 0;
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
    return this.byte(this.need(1));
  }

  u16(): number {
    const at = this.need(2);
    return this.byte(at) | (this.byte(at + 1) << 8);
  }

  u32(): number {
    return u32At(this.buf, this.need(4));
  }

  u64(): number {
    const at = this.need(8);
    const lo = u32At(this.buf, at);
    const hi = u32At(this.buf, at + 4);
    // Over 2^53 once the high word passes 21 bits.
    if (hi > 0x1f_ffff) throw this.fail(`u64 ${(BigInt(hi) << 32n) | BigInt(lo)} over 2^53`);
    return hi * 0x1_0000_0000 + lo;
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
